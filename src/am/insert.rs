//! `aminsert`: the row's datums turned into the core's insert (`pgivf_core::index::insert`).

use super::cache;
use super::heap::tid_of;
use crate::error::OrCorrupt;
use pgivf_core::index::insert::insert_row;
use pgrx::pg_sys;

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _info: *mut pg_sys::IndexInfo,
) -> bool {
    let cached = cache::get(index);
    let meta = cached.index.meta();
    // SAFETY: the executor passes one value and null flag per key column.
    if unsafe { *isnull.add(cached.vector_column) } {
        return false;
    }
    // SAFETY: a non-NULL vector datum.
    let vector = unsafe { crate::types::vector::detoast(*values.add(cached.vector_column)) };
    if vector.len() != meta.dimensions as usize {
        crate::error::raise(
            pgivf_core::VectorError::DimensionMismatch(meta.dimensions as usize, vector.len()),
            None,
        );
    }
    let mut stored = Vec::with_capacity(vector.len());
    if !meta.metric.prepare_row(vector, &mut stored) {
        return false;
    }
    let mut filter_hashes = Vec::with_capacity(cached.filters.len());
    if !cached.filters.is_empty() {
        // SAFETY: the executor's arrays, one datum and flag per key column.
        unsafe {
            cached
                .filters
                .row_hashes(values, isnull, &mut filter_hashes)
        };
    }
    // SAFETY: the heap TID of the new row.
    let tid = tid_of(unsafe { &*heap_tid });
    insert_row(
        &cached.store(index),
        &cached.index,
        tid,
        &stored,
        &filter_hashes,
    )
    .or_corrupt(index);
    false
}
