//! Buffers, page images and Generic WAL.
//!
//! Every change to an index page goes through Generic WAL: [`Xlog`] registers buffers (new pages with
//! a full image, existing ones as deltas), hands out the registered copy of each page to modify, and
//! either finishes the record or, when dropped unfinished (an early return or an error unwinding
//! through it), aborts it so that a half-made change is never applied. [`Locked`] releases its buffer
//! lock and pin when dropped, so an error in the middle of an operation leaves nothing locked.

use pgivf_core::page::{
    self, FormatError, PageKind, Special, BLOCK_SIZE, INVALID_BLOCK, SPECIAL_SIZE,
};
use pgrx::pg_sys;

/// A pinned and locked buffer, released on drop.
pub struct Locked {
    pub buffer: pg_sys::Buffer,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Share,
    Exclusive,
    /// Exclusive and no other backend holding a pin: what VACUUM takes on entry pages.
    Cleanup,
}

impl Locked {
    /// Reads block `block` of the main fork and locks it.
    pub fn read(index: pg_sys::Relation, block: u32, mode: Mode) -> Locked {
        Self::read_with(index, block, mode, std::ptr::null_mut())
    }

    pub fn read_with(
        index: pg_sys::Relation,
        block: u32,
        mode: Mode,
        strategy: pg_sys::BufferAccessStrategy,
    ) -> Locked {
        // PostgreSQL 15 reads block 0xFFFFFFFF (P_NEW) by extending the relation: a block number
        // from a damaged page (a vector location, a list's head, a next pointer) would make a read
        // append a page to the index, unlogged, and the scan's buffer hints grow to 16 GB.
        if block == INVALID_BLOCK {
            corrupted(
                index,
                FormatError::Corrupted("a page refers to block 0xFFFFFFFF"),
            );
        }
        // SAFETY: `index` is an open relation; ReadBufferExtended raises an ERROR for a block past the
        // end rather than returning garbage.
        unsafe {
            let buffer = pg_sys::ReadBufferExtended(
                index,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                block,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                strategy,
            );
            match mode {
                Mode::Share => pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32),
                Mode::Exclusive => pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32),
                Mode::Cleanup => pg_sys::LockBufferForCleanup(buffer),
            }
            Locked { buffer }
        }
    }

    /// Reads and share-locks `block`, first trying the buffer it was in last time (`recent`, updated).
    pub fn read_recent(
        index: pg_sys::Relation,
        block: u32,
        recent: &mut Vec<pg_sys::Buffer>,
    ) -> Locked {
        let slot = block as usize;
        let candidate = recent
            .get(slot)
            .copied()
            .unwrap_or(pg_sys::InvalidBuffer as pg_sys::Buffer);
        // SAFETY: ReadRecentBuffer pins `candidate` only if it still holds this very block (it checks
        // the buffer tag under the header lock), so a stale hint is harmless.
        unsafe {
            if candidate != pg_sys::InvalidBuffer as pg_sys::Buffer
                && pg_sys::ReadRecentBuffer(
                    (*index).rd_node,
                    pg_sys::ForkNumber::MAIN_FORKNUM,
                    block,
                    candidate,
                )
            {
                pg_sys::LockBuffer(candidate, pg_sys::BUFFER_LOCK_SHARE as i32);
                return Locked { buffer: candidate };
            }
        }
        // Read first: a block number past the end (from a damaged page) is an ERROR here, before
        // the hints grow to its size.
        let locked = Self::read(index, block, Mode::Share);
        if slot >= recent.len() {
            recent.resize(slot + 1, pg_sys::InvalidBuffer as pg_sys::Buffer);
        }
        recent[slot] = locked.buffer;
        locked
    }

    /// Adds a new block at the end of `fork` and returns it locked exclusively. Its content must be
    /// initialised (through [`Xlog::register_new`] for the main fork).
    pub fn extend(index: pg_sys::Relation, fork: pg_sys::ForkNumber::Type) -> Locked {
        // SAFETY: the relation-extension lock serialises extenders (PG15's rule for P_NEW); the new
        // buffer is locked before the extension lock is released, so no one else can touch it first.
        unsafe {
            pg_sys::LockRelationForExtension(index, pg_sys::ExclusiveLock as i32);
            let buffer = pg_sys::ReadBufferExtended(
                index,
                fork,
                pg_sys::InvalidBlockNumber,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            pg_sys::UnlockRelationForExtension(index, pg_sys::ExclusiveLock as i32);
            Locked { buffer }
        }
    }

    pub fn block(&self) -> u32 {
        // SAFETY: the buffer is pinned.
        unsafe { pg_sys::BufferGetBlockNumber(self.buffer) }
    }

    /// The page, read-only. Valid while the lock is held.
    pub fn page(&self) -> &[u8] {
        // SAFETY: the buffer is pinned and locked; a page is BLOCK_SIZE bytes.
        unsafe {
            std::slice::from_raw_parts(pg_sys::BufferGetPage(self.buffer).cast::<u8>(), BLOCK_SIZE)
        }
    }

    /// The page for direct modification, only for init-fork pages that are WAL-logged wholesale later.
    pub fn page_mut_unlogged(&mut self) -> &mut [u8] {
        // SAFETY: the buffer is pinned and exclusively locked by us.
        unsafe {
            std::slice::from_raw_parts_mut(
                pg_sys::BufferGetPage(self.buffer).cast::<u8>(),
                BLOCK_SIZE,
            )
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we hold the pin and the lock we took.
        unsafe { pg_sys::UnlockReleaseBuffer(self.buffer) }
    }
}

/// One Generic WAL record covering up to four buffers (PostgreSQL's limit).
pub struct Xlog {
    state: *mut pg_sys::GenericXLogState,
}

impl Xlog {
    pub fn start(index: pg_sys::Relation) -> Xlog {
        // SAFETY: `index` is open and the caller holds the buffer locks it will register.
        Xlog {
            state: unsafe { pg_sys::GenericXLogStart(index) },
        }
    }

    /// Registers an existing page; the returned copy is what must be modified.
    pub fn register<'a>(&mut self, buffer: &'a Locked) -> &'a mut [u8] {
        self.register_flags(buffer, 0)
    }

    /// Registers a freshly extended page with a full image and initialises it as an ivfflat page.
    pub fn register_new<'a>(
        &mut self,
        buffer: &'a Locked,
        kind: PageKind,
        first_entry: u16,
    ) -> &'a mut [u8] {
        let page = self.register_flags(buffer, pg_sys::GENERIC_XLOG_FULL_IMAGE as i32);
        init_page(page, kind, first_entry);
        page
    }

    // The page handed out is the record's private copy, not the buffer: it is tied to the buffer
    // guard's borrow so that several registered pages can be modified at once, and finish/abort
    // (which free it) consume or drop the Xlog after those borrows end.
    #[allow(clippy::mut_from_ref)]
    fn register_flags<'a>(&mut self, buffer: &'a Locked, flags: i32) -> &'a mut [u8] {
        // SAFETY: the buffer is exclusively locked by the caller; GenericXLogRegisterBuffer returns a
        // BLOCK_SIZE copy owned by the record, valid until finish/abort, which cannot happen while the
        // returned borrow (tied to the buffer guard) is alive in correct use.
        unsafe {
            let page = pg_sys::GenericXLogRegisterBuffer(self.state, buffer.buffer, flags);
            std::slice::from_raw_parts_mut(page.cast::<u8>(), BLOCK_SIZE)
        }
    }

    /// Applies the changes to the buffers and writes the WAL record.
    pub fn finish(mut self) {
        let state = std::mem::replace(&mut self.state, std::ptr::null_mut());
        // SAFETY: a started, unfinished record.
        unsafe {
            pg_sys::GenericXLogFinish(state);
        }
    }
}

impl Drop for Xlog {
    fn drop(&mut self) {
        if !self.state.is_null() {
            // SAFETY: a started, unfinished record; aborting discards the page copies.
            unsafe { pg_sys::GenericXLogAbort(self.state) }
        }
    }
}

/// PostgreSQL's PageInit plus our special area.
pub fn init_page(page: &mut [u8], kind: PageKind, first_entry: u16) {
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

/// Raises a corrupted-index error naming the index.
pub fn corrupted(index: pg_sys::Relation, error: FormatError) -> ! {
    // SAFETY: `index` is an open relation.
    let name = unsafe { std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()) };
    crate::error::raise_format(&name.to_string_lossy(), error)
}

/// Unwraps a format result or raises a corrupted-index error.
pub trait OrCorrupt<T> {
    fn or_corrupt(self, index: pg_sys::Relation) -> T;
}

impl<T> OrCorrupt<T> for Result<T, FormatError> {
    fn or_corrupt(self, index: pg_sys::Relation) -> T {
        self.unwrap_or_else(|e| corrupted(index, e))
    }
}

/// Bounds a walk along a list's page chain. A chain can only be longer than the index if its `next`
/// links form a cycle (corruption); without this a scan, insert or VACUUM would loop forever. Also
/// checks for interrupts at every page so that any long walk can be cancelled.
pub struct ChainWalk {
    index: pg_sys::Relation,
    steps: u64,
    limit: Option<u64>,
}

impl ChainWalk {
    pub fn new(index: pg_sys::Relation) -> Self {
        ChainWalk {
            index,
            steps: 0,
            limit: None,
        }
    }

    /// Call once per page visited.
    pub fn step(&mut self) {
        pgrx::check_for_interrupts!();
        self.steps += 1;
        // The relation size is only looked up for long walks, which keeps short ones free of it.
        if self.steps.is_multiple_of(4096) {
            let limit = *self.limit.get_or_insert_with(|| {
                // SAFETY: an open index.
                u64::from(unsafe {
                    pg_sys::RelationGetNumberOfBlocksInFork(
                        self.index,
                        pg_sys::ForkNumber::MAIN_FORKNUM,
                    )
                })
            });
            if self.steps > limit {
                corrupted(
                    self.index,
                    FormatError::Corrupted("a list's page chain is a cycle"),
                );
            }
        }
    }
}

/// Calls `use_vector(owner TID, dead, vector)` with the vector entry at `location` (a quantized
/// index's vector chain), read in place while its page is share-locked. `recent` is the scan's
/// buffer hints (see [`Locked::read_recent`]), if any.
pub fn with_located_vector<R>(
    index: pg_sys::Relation,
    location: page::Location,
    dim: usize,
    recent: Option<&mut Vec<pg_sys::Buffer>>,
    scratch: &mut Vec<f32>,
    use_vector: impl FnOnce(page::Tid, bool, &[f32]) -> R,
) -> Result<R, FormatError> {
    let mut no_hints = Vec::new();
    let recent = recent.unwrap_or(&mut no_hints);
    let first = Locked::read_recent(index, location.block, recent);
    let second = if page::vector_spills(location, dim) {
        let next = page::read_special(first.page())?.next;
        if next == INVALID_BLOCK {
            return Err(FormatError::Corrupted("vector continues past its chain"));
        }
        Some(Locked::read_recent(index, next, recent))
    } else {
        None
    };
    let (owner, dead, vector) = page::vector_at(
        first.page(),
        location,
        second.as_ref().map(Locked::page),
        dim,
        scratch,
    )?;
    Ok(use_vector(owner, dead, vector))
}

/// [`with_located_vector`], with the vector copied into `out`.
pub fn read_located_vector(
    index: pg_sys::Relation,
    location: page::Location,
    dim: usize,
    out: &mut Vec<f32>,
) -> Result<(page::Tid, bool), FormatError> {
    let mut scratch = Vec::new();
    with_located_vector(
        index,
        location,
        dim,
        None,
        &mut scratch,
        |owner, dead, vector| {
            out.clear();
            out.extend_from_slice(vector);
            (owner, dead)
        },
    )
}
