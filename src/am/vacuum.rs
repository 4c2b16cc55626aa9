//! `ambulkdelete` and `amvacuumcleanup`: VACUUM's callbacks around the core's bulk delete
//! (`pgivf_core::index::vacuum`).

use super::heap::item_pointer;
use super::storage::PgStore;
use crate::error::OrCorrupt;
use pgivf_core::index::{layout, vacuum};
use pgivf_core::store::PageStore;
use pgrx::pg_sys;

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM's info for an open ivfflat index.
    let (index, strategy) = unsafe { ((*info).index, (*info).strategy) };
    let stats = if stats.is_null() {
        // SAFETY: PostgreSQL expects a palloc0'd result it will pfree.
        unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()).cast() }
    } else {
        stats
    };
    let store = PgStore::with_strategy(index, strategy);
    let meta = layout::read_meta(&store).or_corrupt(index);
    let is_dead = |tid| {
        let mut pointer = item_pointer(tid);
        match callback {
            // SAFETY: the callback VACUUM gave us, with its own state.
            Some(callback) => unsafe { callback(&mut pointer, callback_state) },
            None => false,
        }
    };
    let deleted = vacuum::bulk_delete(&store, &meta, is_dead).or_corrupt(index);
    // SAFETY: our stats struct.
    unsafe {
        (*stats).num_index_tuples = deleted.live_rows;
        (*stats).tuples_removed += deleted.removed_rows;
        (*stats).num_pages = store.blocks();
    }
    stats
}

/// After a bulk delete, the index's size; without one (nothing was deleted) nothing changed that
/// VACUUM must hear of, and reading the index to count it again would make every autovacuum after
/// inserts read the whole index: like pgvector, it reports nothing then.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM's info.
    let (index, analyze_only) = unsafe { ((*info).index, (*info).analyze_only) };
    if analyze_only || stats.is_null() {
        return stats;
    }
    // SAFETY: our stats struct.
    unsafe { (*stats).num_pages = PgStore::new(index).blocks() };
    stats
}
