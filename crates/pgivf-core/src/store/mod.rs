//! Where an index's pages live: the page store every index operation is written against.
//!
//! The extension implements [`PageStore`] over PostgreSQL's shared buffers, with Generic WAL for
//! every change; [`memory::MemoryStore`] implements it over plain memory for the unit tests, and
//! refuses what would deadlock a backend (a page locked twice). The contract is PostgreSQL's:
//!
//! - A page is read under a share lock and changed under an exclusive one; a guard holds the pin
//!   and the lock until it is dropped.
//! - A change to up to four locked pages is made through [`PageStore::log`]: the closure edits
//!   copies of the pages, and either every edit is applied (one WAL record) or, when the closure
//!   returns an error, none is. New pages are initialised in the same call.
//! - Locks are taken in an order that cannot deadlock with other backends: pages of a chain in
//!   chain order, then directory and summary pages, then the meta page. Nothing waits for a lock
//!   while holding a lock on a later kind.

pub mod memory;

use crate::page::{FormatError, PageKind};
use std::ops::Deref;

/// What a page registered with [`PageStore::log`] starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The page as it is: the record holds what the edit changes.
    Existing,
    /// A page just added by [`PageStore::extend`], initialised as an empty page of `kind` whose
    /// first entry starts at data offset `first_entry`; the record holds all of it.
    New { kind: PageKind, first_entry: u16 },
}

/// A locked page.
pub trait LockedPage {
    type Bytes<'p>: Deref<Target = [u8]>
    where
        Self: 'p;

    fn block(&self) -> u32;

    /// The page's `BLOCK_SIZE` bytes, valid while the lock is held.
    fn bytes(&self) -> Self::Bytes<'_>;
}

/// Where a block's page probably lies in memory, for prefetch instructions only: it may hold
/// another block by now, and it is neither pinned nor locked, so it is never read.
#[derive(Clone, Copy)]
pub struct Hint<'a>(&'a [u8]);

impl<'a> Hint<'a> {
    /// # Safety
    /// `bytes` must be mapped memory (prefetching it must not fault); it is never read.
    pub unsafe fn new(bytes: &'a [u8]) -> Self {
        Hint(bytes)
    }

    /// The bytes to hand to prefetch instructions, and to nothing else.
    pub fn for_prefetch(self) -> &'a [u8] {
        self.0
    }
}

/// The pages of one index.
pub trait PageStore {
    type Page<'s>: LockedPage
    where
        Self: 's;

    /// Block `block`, share-locked.
    fn read(&self, block: u32) -> Result<Self::Page<'_>, FormatError>;

    /// Block `block`, exclusively locked.
    fn lock(&self, block: u32) -> Result<Self::Page<'_>, FormatError>;

    /// Block `block`, exclusively locked once no other backend holds a pin on it: what VACUUM
    /// takes on entry pages, so that no scan is in the middle of the page.
    fn lock_for_cleanup(&self, block: u32) -> Result<Self::Page<'_>, FormatError> {
        self.lock(block)
    }

    /// A new block at the end of the index, exclusively locked, to be initialised by
    /// [`log`](Self::log) with [`Image::New`].
    fn extend(&self) -> Result<Self::Page<'_>, FormatError>;

    /// Blocks in the index.
    fn blocks(&self) -> u32;

    /// Changes up to four locked pages at once: `edit` gets their bytes (new ones initialised),
    /// and what it wrote is applied and WAL-logged when it returns `Ok`, discarded when it
    /// returns `Err`.
    fn log<'s, const N: usize, R>(
        &'s self,
        pages: [(&Self::Page<'s>, Image); N],
        edit: impl FnOnce([&mut [u8]; N]) -> Result<R, FormatError>,
    ) -> Result<R, FormatError>;

    /// Raises the query's cancel, if any; long loops call it once per page.
    fn check_interrupts(&self) {}

    /// VACUUM's cost-based delay (and its cancel check), once per page.
    fn vacuum_delay(&self) {
        self.check_interrupts()
    }

    /// Where block `block` is probably in memory, if known; prefetching it may also fetch what
    /// locking it touches.
    fn hint(&self, _block: u32) -> Option<Hint<'_>> {
        None
    }
}

/// Bounds a walk along a chain of pages. A chain can only be longer than the index if its `next`
/// links form a cycle (damage): without this a scan, insert or VACUUM would loop forever. Also
/// checks for interrupts at every page, so that any long walk can be cancelled.
pub struct ChainWalk {
    steps: u64,
    limit: Option<u64>,
}

impl ChainWalk {
    pub fn new() -> Self {
        ChainWalk {
            steps: 0,
            limit: None,
        }
    }

    /// Call once per page visited.
    pub fn step(&mut self, store: &impl PageStore) -> Result<(), FormatError> {
        store.check_interrupts();
        self.steps += 1;
        // The index's size is only looked up for long walks, which keeps short ones free of it.
        if self.steps.is_multiple_of(4096) {
            let limit = *self.limit.get_or_insert_with(|| u64::from(store.blocks()));
            if self.steps > limit {
                return Err(FormatError::Corrupted("a list's page chain is a cycle"));
            }
        }
        Ok(())
    }
}

impl Default for ChainWalk {
    fn default() -> Self {
        Self::new()
    }
}
