//! The index's pages in PostgreSQL's shared buffers: the core's page store over buffers and
//! Generic WAL.
//!
//! Every change to a main-fork page goes through Generic WAL: the pages of one change are
//! registered in one record (new pages with a full image), edited in the record's copies, and the
//! record is finished or, when the edit fails, aborted, so that a half-made change is never
//! applied. Buffer guards release their lock and pin when dropped; when an ERROR is unwinding
//! through them, they leave both to the transaction's abort, which releases every buffer lock
//! and pin itself (releasing them again would count interrupts held off below zero).

use pgivf_core::page::{self, FormatError, Special, BLOCK_SIZE, INVALID_BLOCK, SPECIAL_SIZE};
use pgivf_core::store::{Hint, Image, LockedPage, PageStore};
use pgrx::pg_sys;
use std::cell::RefCell;

/// A pinned and locked buffer, released on drop.
pub struct Locked {
    buffer: pg_sys::Buffer,
}

impl Drop for Locked {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // SAFETY: we hold the pin and the lock we took.
        unsafe { pg_sys::UnlockReleaseBuffer(self.buffer) }
    }
}

impl LockedPage for Locked {
    type Bytes<'p> = &'p [u8];

    fn block(&self) -> u32 {
        // SAFETY: the buffer is pinned.
        unsafe { pg_sys::BufferGetBlockNumber(self.buffer) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the buffer is pinned and locked; a page is BLOCK_SIZE bytes.
        unsafe {
            std::slice::from_raw_parts(pg_sys::BufferGetPage(self.buffer).cast::<u8>(), BLOCK_SIZE)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Share,
    Exclusive,
    Cleanup,
}

/// Which pages a store writes: the index's main fork through Generic WAL, or (for an unlogged
/// table's empty index) its init fork, written in place and WAL-logged wholesale by the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    Main,
    Init,
}

/// One index's pages.
pub struct PgStore<'a> {
    index: pg_sys::Relation,
    fork: Fork,
    strategy: pg_sys::BufferAccessStrategy,
    /// The shared buffer each block was last found in, so that scans can pin it again with
    /// ReadRecentBuffer instead of a buffer-table lookup (a hash probe that misses the CPU cache
    /// and was a quarter of a scan's time), and prefetch what they read next.
    hints: Option<&'a RefCell<Vec<pg_sys::Buffer>>>,
}

impl<'a> PgStore<'a> {
    pub fn new(index: pg_sys::Relation) -> Self {
        PgStore {
            index,
            fork: Fork::Main,
            strategy: std::ptr::null_mut(),
            hints: None,
        }
    }

    /// A store that remembers where blocks were found (scans).
    pub fn with_hints(index: pg_sys::Relation, hints: &'a RefCell<Vec<pg_sys::Buffer>>) -> Self {
        PgStore {
            hints: Some(hints),
            ..PgStore::new(index)
        }
    }

    /// A store reading through VACUUM's buffer ring.
    pub fn with_strategy(index: pg_sys::Relation, strategy: pg_sys::BufferAccessStrategy) -> Self {
        PgStore {
            strategy,
            ..PgStore::new(index)
        }
    }

    /// A store writing the init fork.
    pub fn init_fork(index: pg_sys::Relation) -> Self {
        PgStore {
            fork: Fork::Init,
            ..PgStore::new(index)
        }
    }

    fn fork_number(&self) -> pg_sys::ForkNumber::Type {
        match self.fork {
            Fork::Main => pg_sys::ForkNumber::MAIN_FORKNUM,
            Fork::Init => pg_sys::ForkNumber::INIT_FORKNUM,
        }
    }

    fn read_mode(&self, block: u32, mode: Mode) -> Result<Locked, FormatError> {
        // PostgreSQL 15 reads block 0xFFFFFFFF (P_NEW) by extending the relation: a block number
        // from a damaged page would make a read append a page to the index, unlogged.
        if block == INVALID_BLOCK {
            return Err(FormatError::Corrupted("a page refers to block 0xFFFFFFFF"));
        }
        // SAFETY: an open relation; ReadBufferExtended raises an ERROR for a block past the end
        // rather than returning garbage.
        unsafe {
            let buffer = pg_sys::ReadBufferExtended(
                self.index,
                self.fork_number(),
                block,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                self.strategy,
            );
            match mode {
                Mode::Share => pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32),
                Mode::Exclusive => pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32),
                Mode::Cleanup => pg_sys::LockBufferForCleanup(buffer),
            }
            Ok(Locked { buffer })
        }
    }

    /// Reads and share-locks `block`, first trying the buffer it was in last time.
    fn read_hinted(
        &self,
        block: u32,
        hints: &RefCell<Vec<pg_sys::Buffer>>,
    ) -> Result<Locked, FormatError> {
        let slot = block as usize;
        let candidate = hints
            .borrow()
            .get(slot)
            .copied()
            .unwrap_or(pg_sys::InvalidBuffer as pg_sys::Buffer);
        // SAFETY: ReadRecentBuffer pins `candidate` only if it still holds this very block (it
        // checks the buffer tag under the header lock), so a stale hint is harmless.
        unsafe {
            if candidate != pg_sys::InvalidBuffer as pg_sys::Buffer
                && crate::compat::read_recent_buffer(self.index, block, candidate)
            {
                pg_sys::LockBuffer(candidate, pg_sys::BUFFER_LOCK_SHARE as i32);
                return Ok(Locked { buffer: candidate });
            }
        }
        // Read first: a block number past the end (from a damaged page) is an ERROR here, before
        // the hints grow to its size.
        let locked = self.read_mode(block, Mode::Share)?;
        let mut hints = hints.borrow_mut();
        if slot >= hints.len() {
            hints.resize(slot + 1, pg_sys::InvalidBuffer as pg_sys::Buffer);
        }
        hints[slot] = locked.buffer;
        Ok(locked)
    }
}

impl PageStore for PgStore<'_> {
    type Page<'s>
        = Locked
    where
        Self: 's;

    fn read(&self, block: u32) -> Result<Locked, FormatError> {
        match self.hints {
            Some(hints) if self.fork == Fork::Main => self.read_hinted(block, hints),
            _ => self.read_mode(block, Mode::Share),
        }
    }

    fn lock(&self, block: u32) -> Result<Locked, FormatError> {
        self.read_mode(block, Mode::Exclusive)
    }

    fn lock_for_cleanup(&self, block: u32) -> Result<Locked, FormatError> {
        self.read_mode(block, Mode::Cleanup)
    }

    fn extend(&self) -> Result<Locked, FormatError> {
        // SAFETY: the relation-extension lock serialises extenders (PostgreSQL 15's rule for
        // P_NEW); the new buffer is locked before the extension lock is released, so no one else
        // can touch it first. An index created in this transaction (CREATE INDEX, REINDEX) is
        // seen by no other backend, so its build extends it without the lock, as PostgreSQL's
        // RELATION_IS_LOCAL lets its own access methods do.
        unsafe {
            let local = (*self.index).rd_islocaltemp || (*self.index).rd_createSubid != 0; // InvalidSubTransactionId
            if !local {
                pg_sys::LockRelationForExtension(self.index, pg_sys::ExclusiveLock as i32);
            }
            let buffer = pg_sys::ReadBufferExtended(
                self.index,
                self.fork_number(),
                pg_sys::InvalidBlockNumber,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            if !local {
                pg_sys::UnlockRelationForExtension(self.index, pg_sys::ExclusiveLock as i32);
            }
            Ok(Locked { buffer })
        }
    }

    fn blocks(&self) -> u32 {
        // SAFETY: an open relation.
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(self.index, self.fork_number()) }
    }

    fn log<const N: usize, R>(
        &self,
        pages: [(&Locked, Image); N],
        edit: impl FnOnce([&mut [u8]; N]) -> Result<R, FormatError>,
    ) -> Result<R, FormatError> {
        if self.fork == Fork::Init {
            return log_init_fork(pages, edit);
        }
        let mut record = Record::start(self.index);
        let bytes = pages.map(|(page, image)| record.register(page, image));
        let result = edit(bytes);
        if result.is_ok() {
            record.finish();
        }
        result
    }

    fn check_interrupts(&self) {
        pgrx::check_for_interrupts!();
    }

    fn vacuum_delay(&self) {
        crate::compat::vacuum_delay_point()
    }

    fn hint(&self, block: u32) -> Option<Hint<'_>> {
        let buffer = *self.hints?.borrow().get(block as usize)?;
        if buffer <= 0 {
            return None; // no hint, or a local buffer
        }
        // SAFETY: `buffer` is a shared buffer number (1..=NBuffers) this backend saw holding a
        // block of the index: its descriptor and its page are inside the shared buffer pool, so
        // prefetching them cannot fault, and neither is read here (the caller only prefetches the
        // page: it may hold another block by now, and it is neither pinned nor locked).
        unsafe {
            let descriptor = std::slice::from_raw_parts(
                pg_sys::BufferDescriptors
                    .add(buffer as usize - 1)
                    .cast::<u8>(),
                std::mem::size_of::<pg_sys::BufferDescPadded>(),
            );
            // Pinning and locking the buffer writes its descriptor: a cache miss of its own.
            pgivf_core::distance::prefetch(descriptor);
            let bytes =
                std::slice::from_raw_parts(pg_sys::BufferGetBlock(buffer).cast::<u8>(), BLOCK_SIZE);
            Some(Hint::new(bytes))
        }
    }
}

/// An init-fork change: made in place (the caller WAL-logs the whole fork at the end, as
/// contrib/bloom and pgvector do: Generic WAL does not cover init forks).
fn log_init_fork<const N: usize, R>(
    pages: [(&Locked, Image); N],
    edit: impl FnOnce([&mut [u8]; N]) -> Result<R, FormatError>,
) -> Result<R, FormatError> {
    let bytes = pages.map(|(page, image)| {
        // SAFETY: the buffer is pinned and exclusively locked by us (an init fork being built).
        let bytes = unsafe {
            pg_sys::MarkBufferDirty(page.buffer);
            std::slice::from_raw_parts_mut(
                pg_sys::BufferGetPage(page.buffer).cast::<u8>(),
                BLOCK_SIZE,
            )
        };
        if let Image::New { kind, first_entry } = image {
            init_page(bytes, kind, first_entry);
        }
        bytes
    });
    edit(bytes)
}

/// One Generic WAL record, aborted when dropped unfinished.
struct Record {
    state: *mut pg_sys::GenericXLogState,
}

impl Record {
    fn start(index: pg_sys::Relation) -> Record {
        // SAFETY: `index` is open and the caller holds the locks of the buffers it registers.
        Record {
            state: unsafe { pg_sys::GenericXLogStart(index) },
        }
    }

    /// Registers a locked page (a new one with a full image, initialised) and returns the
    /// record's copy of it, which is what the change edits. The copy lives until the record is
    /// finished or aborted, which happens after the edit that borrows it returns.
    #[allow(clippy::mut_from_ref)]
    fn register<'p>(&mut self, page: &'p Locked, image: Image) -> &'p mut [u8] {
        let flags = match image {
            Image::Existing => 0,
            Image::New { .. } => pg_sys::GENERIC_XLOG_FULL_IMAGE as i32,
        };
        // SAFETY: the buffer is exclusively locked by the caller; GenericXLogRegisterBuffer
        // returns a BLOCK_SIZE copy owned by the record (each buffer registered once: the page
        // store's callers pass distinct pages).
        let bytes = unsafe {
            let copy = pg_sys::GenericXLogRegisterBuffer(self.state, page.buffer, flags);
            std::slice::from_raw_parts_mut(copy.cast::<u8>(), BLOCK_SIZE)
        };
        if let Image::New { kind, first_entry } = image {
            init_page(bytes, kind, first_entry);
        }
        bytes
    }

    fn finish(mut self) {
        let state = std::mem::replace(&mut self.state, std::ptr::null_mut());
        // SAFETY: a started, unfinished record.
        unsafe {
            pg_sys::GenericXLogFinish(state);
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // After an ERROR the record's memory goes with the transaction's.
        if !self.state.is_null() && !std::thread::panicking() {
            // SAFETY: a started, unfinished record; aborting discards the page copies.
            unsafe { pg_sys::GenericXLogAbort(self.state) }
        }
    }
}

/// PostgreSQL's PageInit plus our special area.
fn init_page(page: &mut [u8], kind: page::PageKind, first_entry: u16) {
    // SAFETY: `page` is BLOCK_SIZE bytes.
    unsafe { pg_sys::PageInit(page.as_mut_ptr().cast(), BLOCK_SIZE, SPECIAL_SIZE) };
    page::write_special(
        page,
        Special {
            next: INVALID_BLOCK,
            first_entry,
            kind,
        },
    );
}
