//! `ambulkdelete` and `amvacuumcleanup`.
//!
//! VACUUM walks every list, and under a cleanup lock (no scan holds a pin on the page) marks the
//! entries of dead heap rows dead in place. Entries never move, so a concurrent scan reading a list
//! page by page sees each entry exactly once. The list's free-slot hint is set to its first page with
//! a dead entry, where later inserts reuse the slots: the index does not grow under churn.

use super::cache;
use super::storage::{ChainWalk, Locked, Mode, OrCorrupt, Xlog};
use pgivf_core::page::{self, INVALID_BLOCK};
use pgrx::pg_sys;

fn new_stats(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: PostgreSQL expects a palloc0'd result it will pfree.
        unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()).cast() }
    } else {
        stats
    }
}

/// Calls VACUUM's "is this heap TID dead?" callback.
fn is_dead(
    callback: pg_sys::IndexBulkDeleteCallback,
    state: *mut std::ffi::c_void,
    tid: page::Tid,
) -> bool {
    let mut pointer = super::build::item_pointer(tid);
    match callback {
        // SAFETY: the callback VACUUM gave us, with its own state.
        Some(callback) => unsafe { callback(&mut pointer, state) },
        None => false,
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM's info for an open ivfflat index.
    let (index, strategy) = unsafe { ((*info).index, (*info).strategy) };
    let stats = new_stats(stats);
    let meta = cache::read_meta(index);
    let mut live = 0f64;
    let mut removed = 0f64;
    // A quantized index's vector chains are vacuumed like its lists (their entries carry the same
    // heap TIDs), so their slots are reused too; only the lists' entries are counted. A vector's
    // chain comes after every list, so by the time its slot can be reused, both of a spilling
    // row's codes that locate it are dead.
    for list in 0..meta.chains() {
        let format = meta.chain_format(list);
        let counted = if list < meta.lists { 1.0 } else { 0.0 };
        let (directory_block, slot) = meta.directory_slot(list);
        let head = cache::read_directory(index, &meta, list).head;
        let mut first_free = INVALID_BLOCK;
        let mut block = head;
        let mut walk = ChainWalk::new(index);
        while block != INVALID_BLOCK {
            walk.step();
            // SAFETY: VACUUM's cost-based delay and interrupt check, on the backend thread.
            unsafe { pg_sys::vacuum_delay_point() };
            let buffer = Locked::read_with(index, block, Mode::Cleanup, strategy);
            let mut has_dead = false;
            let mut kill = Vec::new();
            let mut killed_rows = 0.0;
            for offset in page::entry_starts(buffer.page(), format).or_corrupt(index) {
                let (tid, flags) = page::entry_header(page::data(buffer.page()), offset);
                // A row's spilled second entry is not another row.
                let counted = if flags.is_spilled() { 0.0 } else { counted };
                if flags.is_dead() {
                    has_dead = true;
                } else if is_dead(callback, callback_state, tid) {
                    kill.push(offset);
                    killed_rows += counted;
                } else {
                    live += counted;
                }
            }
            if !kill.is_empty() {
                let mut xlog = Xlog::start(index);
                let page = xlog.register(&buffer);
                for offset in &kill {
                    page::mark_dead(page, *offset);
                }
                xlog.finish();
                removed += killed_rows;
                has_dead = true;
            }
            if has_dead && first_free == INVALID_BLOCK {
                first_free = block;
            }
            block = page::read_special(buffer.page()).or_corrupt(index).next;
        }
        let buffer = Locked::read(index, directory_block, Mode::Exclusive);
        let mut entry = page::read_directory_entry(buffer.page(), slot).or_corrupt(index);
        if entry.free_hint != first_free {
            entry.free_hint = first_free;
            let mut xlog = Xlog::start(index);
            page::write_directory_entry(xlog.register(&buffer), slot, entry);
            xlog.finish();
        }
    }
    // SAFETY: our stats struct.
    unsafe {
        (*stats).num_index_tuples = live;
        (*stats).tuples_removed += removed;
        (*stats).num_pages =
            pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    }
    stats
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM's info.
    let (index, analyze_only) = unsafe { ((*info).index, (*info).analyze_only) };
    if analyze_only {
        return stats;
    }
    // No bulk delete ran (nothing to delete): count what is there for the statistics.
    let stats = if stats.is_null() {
        let stats = new_stats(stats);
        let meta = cache::read_meta(index);
        let mut reader = page::StreamReader::new();
        let mut live = 0f64;
        for list in 0..meta.lists {
            let (directory_block, slot) = meta.directory_slot(list);
            let mut block = {
                let buffer = Locked::read(index, directory_block, Mode::Share);
                page::read_directory_entry(buffer.page(), slot)
                    .or_corrupt(index)
                    .head
            };
            reader.reset();
            let mut walk = ChainWalk::new(index);
            while block != INVALID_BLOCK {
                walk.step();
                let buffer = Locked::read(index, block, Mode::Share);
                reader
                    .feed(buffer.page(), meta.entry_format(), |entry| {
                        let row = !entry.flags.is_dead() && !entry.flags.is_spilled();
                        live += if row { 1.0 } else { 0.0 }
                    })
                    .or_corrupt(index);
                block = page::read_special(buffer.page()).or_corrupt(index).next;
            }
        }
        // SAFETY: our stats struct.
        unsafe { (*stats).num_index_tuples = live };
        stats
    } else {
        stats
    };
    // SAFETY: our stats struct; an open index.
    unsafe {
        (*stats).num_pages =
            pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    }
    stats
}
