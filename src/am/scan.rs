//! Ordered index scans: `ambeginscan`, `amrescan`, `amgettuple`, `amendscan`, around the core's
//! search (`pgivf_core::index::search`): the scan keys, settings and snapshot turned into a
//! search, and its rows handed to the executor.

use super::cache::{self, IndexCache};
use super::guc::{
    IterativeScan, ITERATIVE_SCAN, MAX_PROBES, PROBES, RERANK_FACTOR, SCAN_MEM_MULTIPLIER,
};
use super::heap::{item_pointer, HeapFetch};
use crate::error::{raise_with, OrCorrupt};
use pgivf_core::index::search::{
    Demand, Iterative, NoRows, Radius, Search, SearchBuffers, Settings,
};
use pgivf_core::VectorError;
use pgrx::{pg_sys, PgMemoryContexts, PgSqlErrorCode};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

struct ScanState {
    /// Set when the scan starts (its first row is asked for).
    cache: Option<Rc<IndexCache>>,
    /// Always Some but while being dropped.
    search: Option<Search>,
    /// `rerank = 'heap'`: the table rows' vectors.
    heap: Option<HeapFetch>,
    started: bool,
    /// Whether the executor rechecks the scan's conditions on the rows it gets.
    recheck: bool,
}

thread_local! {
    /// The last scan's buffers, kept for the next (see `SearchBuffers`).
    static SPARE: RefCell<Option<SearchBuffers>> = const { RefCell::new(None) };
    /// Rows handed out by this backend's last scans (see `Demand`).
    static DEMAND: Cell<Option<Demand>> = const { Cell::new(None) };
}

impl ScanState {
    /// Adds the rows this scan handed out to the backend's last scans, when it ran: at its end
    /// or before a rescan starts it again.
    fn remember_demand(&self) {
        if let (true, Some(search)) = (self.started, &self.search) {
            DEMAND.with(|demand| {
                let mut recent = demand.get().unwrap_or_default();
                recent.record(search.stats().rows_returned);
                demand.set(Some(recent));
            });
        }
    }
}

impl Drop for ScanState {
    fn drop(&mut self) {
        if let Some(buffers) = self.search.take().and_then(Search::into_buffers) {
            SPARE.with(|spare| *spare.borrow_mut() = Some(buffers));
        }
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(
    index: pg_sys::Relation,
    nkeys: i32,
    norderbys: i32,
) -> pg_sys::IndexScanDesc {
    // SAFETY: standard index scan descriptor allocation.
    let scan = unsafe { pg_sys::RelationGetIndexScan(index, nkeys, norderbys) };
    let buffers = SPARE
        .with(|spare| spare.borrow_mut().take())
        .unwrap_or_default();
    let state = ScanState {
        cache: None,
        search: Some(Search::new(buffers)),
        heap: None,
        started: false,
        recheck: false,
    };
    // The state lives as long as the scan's memory context and is dropped with it, so an error in
    // the middle of a query cannot leak it; rescans reuse it (no growth in nested loops).
    let state = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
    // SAFETY: scan was just allocated.
    unsafe { (*scan).opaque = state.cast() };
    scan
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    keys: pg_sys::ScanKey,
    _nkeys: i32,
    orderbys: pg_sys::ScanKey,
    _norderbys: i32,
) {
    // SAFETY: our scan; keys and orderbys have numberOfKeys and numberOfOrderBys keys when
    // non-NULL.
    unsafe {
        let scan = &mut *scan;
        if !keys.is_null() && scan.numberOfKeys > 0 {
            std::ptr::copy(keys, scan.keyData, scan.numberOfKeys as usize);
        }
        if !orderbys.is_null() && scan.numberOfOrderBys > 0 {
            std::ptr::copy(orderbys, scan.orderByData, scan.numberOfOrderBys as usize);
        }
        let state = &mut *scan.opaque.cast::<ScanState>();
        state.remember_demand();
        state.started = false;
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state is dropped with the scan's memory context; the table fetch holds a buffer pin,
    // which must be released now (an error instead releases it with the transaction).
    // SAFETY: our scan, with the state set up by ambeginscan.
    let state = unsafe { &mut *(*scan).opaque.cast::<ScanState>() };
    state.heap = None;
    state.remember_demand();
    let quantized = state
        .cache
        .as_ref()
        .is_some_and(|cache| cache.index.quantizer.is_some());
    if let (true, true, Some(search)) = (state.started, quantized, &state.search) {
        // What ivfflat.rerank_factor trades: SET client_min_messages = debug1 shows it.
        let stats = search.stats();
        pgrx::debug1!(
            "ivfflat scan: {} lists probed, {} rows estimated from codes, {} re-ranked",
            stats.lists_probed,
            stats.rows_estimated,
            stats.rows_reranked
        );
    }
}

/// The ORDER BY key's vector (None for NULL), checked to have the index's dimensions.
///
/// # Safety
/// `scan` must be an ordered ivfflat scan with its order-by key set.
unsafe fn query_vector<'a>(
    scan: &pg_sys::IndexScanDescData,
    dimensions: usize,
) -> Option<&'a [f32]> {
    // SAFETY: guaranteed by the caller.
    let key = unsafe { &*scan.orderByData };
    if key.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
        return None;
    }
    // SAFETY: a non-NULL vector datum.
    let value = unsafe { crate::types::vector::detoast(key.sk_argument) };
    if value.len() != dimensions {
        crate::error::raise(
            VectorError::DimensionMismatch(dimensions, value.len()),
            None,
        );
    }
    Some(value)
}

/// A radius key (`embedding <<->> sphere(q, r)`, radius.rs): what the scan can prune by. Only a
/// sphere around the ORDER BY vector bounds the ordering key; the executor rechecks every sphere.
fn radius_of(key: &pg_sys::ScanKeyData, query: Option<&[f32]>) -> Radius {
    let flags = key.sk_flags as u32;
    if flags & pg_sys::SK_ISNULL != 0 {
        return Radius::Nothing; // within a NULL sphere holds for no row
    }
    if flags & pg_sys::SK_SEARCHARRAY != 0 {
        return Radius::Everything; // `<<op>> ANY(...)`, written by hand: no radius to prune by
    }
    // SAFETY: a non-NULL sphere datum, the operator's right argument.
    match unsafe { super::radius::sphere_of(key.sk_argument) } {
        None => Radius::Nothing,
        Some((center, radius)) if query == Some(center) => Radius::Within(radius),
        Some(_) => Radius::Everything,
    }
}

fn settings(index: pg_sys::Relation) -> Settings {
    // SAFETY: an open relation.
    let index_rows = f64::from(unsafe { (*(*index).rd_rel).reltuples });
    Settings {
        probes: PROBES.get().max(1) as usize,
        iterative: match ITERATIVE_SCAN.get() {
            IterativeScan::Off => Iterative::Off,
            IterativeScan::RelaxedOrder => Iterative::RelaxedOrder,
            IterativeScan::StrictOrder => Iterative::StrictOrder,
        },
        max_probes: MAX_PROBES.get().max(1) as usize,
        rerank_factor: RERANK_FACTOR.get(),
        index_rows,
        expected_rows: DEMAND.with(|d| d.get().unwrap_or_default().expected()),
        memory_limit: scan_memory_limit(),
    }
}

/// work_mem × ivfflat.scan_mem_multiplier, in bytes.
fn scan_memory_limit() -> usize {
    // SAFETY: a GUC variable, read on the backend's thread.
    let work_mem_kb = unsafe { pg_sys::work_mem }.max(64) as f64;
    (work_mem_kb * 1024.0 * SCAN_MEM_MULTIPLIER.get()).min(usize::MAX as f64 / 2.0) as usize
}

impl ScanState {
    fn start(&mut self, scan: &pg_sys::IndexScanDescData) {
        let index = scan.indexRelation;
        let cache = cache::get(index);
        let meta = cache.index.meta();
        // SAFETY: the scan's order-by key was set by amrescan.
        let query = unsafe { query_vector(scan, meta.dimensions as usize) };
        // SAFETY: the scan's keys, copied in by amrescan.
        let keys: &[pg_sys::ScanKeyData] = if scan.numberOfKeys > 0 {
            unsafe { std::slice::from_raw_parts(scan.keyData, scan.numberOfKeys as usize) }
        } else {
            &[]
        };
        let vector_attno = (cache.vector_column + 1) as pg_sys::AttrNumber;
        let (radius_keys, filter_keys): (Vec<_>, Vec<_>) = keys
            .iter()
            .copied()
            .partition(|key| key.sk_attno == vector_attno);
        let radii: Vec<Radius> = radius_keys
            .iter()
            .map(|key| radius_of(key, query))
            .collect();
        let filter = (!filter_keys.is_empty()).then(|| {
            // SAFETY: keys on this index's filter columns.
            unsafe { cache.filters.query(&filter_keys) }
        });
        // Filter values are compared by hash, which can collide, and the radius with slack: the
        // executor rechecks both.
        self.recheck = filter.is_some() || !radii.is_empty();
        if cache.index.quantizer.is_some() && !meta.keeps_vectors() && self.heap.is_none() {
            let attribute = cache
                .heap_attribute
                .expect("rerank = 'heap' indexes a table column");
            if scan.heapRelation.is_null() {
                raise_with(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "an ivfflat index with rerank = 'heap' can only be scanned with its table"
                        .into(),
                    None,
                );
            }
            self.heap = Some(HeapFetch::new(
                scan.heapRelation,
                scan.xs_snapshot,
                attribute,
            ));
        }
        let search = self.search.as_mut().expect("a search");
        search
            .start(
                &cache.store(index),
                &cache.index,
                query,
                &radii,
                filter,
                &settings(index),
            )
            .or_corrupt(index);
        self.cache = Some(cache);
        self.started = true;
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(
    scan: pg_sys::IndexScanDesc,
    direction: pg_sys::ScanDirection::Type,
) -> bool {
    // SAFETY: our scan, with the state set up by ambeginscan.
    let scan = unsafe { &mut *scan };
    let state = unsafe { &mut *scan.opaque.cast::<ScanState>() };
    if direction != pg_sys::ScanDirection::ForwardScanDirection {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "ivfflat only supports forward scans".into(),
            None,
        );
    }
    if !state.started {
        crate::compat::count_index_scan(scan.indexRelation);
        if scan.orderByData.is_null() || scan.numberOfOrderBys == 0 {
            raise_with(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "cannot scan ivfflat index without order".into(),
                None,
            );
        }
        // Results are computed up front and no buffer pin is kept while the executor visits the
        // heap, which only an MVCC snapshot makes safe (see PostgreSQL's "Index Locking
        // Considerations").
        // SAFETY: the scan's snapshot.
        let snapshot_type = unsafe { (*scan.xs_snapshot).snapshot_type };
        if snapshot_type != pg_sys::SnapshotType::SNAPSHOT_MVCC
            && snapshot_type != pg_sys::SnapshotType::SNAPSHOT_HISTORIC_MVCC
        {
            raise_with(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "non-MVCC snapshots are not supported with ivfflat".into(),
                None,
            );
        }
        state.start(scan);
    }
    let index = scan.indexRelation;
    let cache = state.cache.clone().expect("scan started");
    let store = cache.store(index);
    let search = state.search.as_mut().expect("a search");
    let next = match &mut state.heap {
        Some(heap) => search.next(&store, &cache.index, heap),
        None => search.next(&store, &cache.index, &mut NoRows),
    }
    .or_corrupt(index);
    match next {
        Some(tid) => {
            scan.xs_heaptid = item_pointer(tid);
            scan.xs_recheck = state.recheck;
            scan.xs_recheckorderby = false;
            true
        }
        None => {
            let stats = search.stats();
            if stats.stopped_at_memory_limit {
                // Fewer rows than the lists allowed would give: say why, once, where it happens.
                pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                    "ivfflat index scan stopped reading lists at its memory limit",
                    "amgettuple",
                )
                .set_detail(format!(
                    "Its buffers took {} kB after {} lists, more than work_mem × ivfflat.scan_mem_multiplier ({} kB).",
                    stats.memory_bytes / 1024,
                    stats.lists_probed,
                    scan_memory_limit() / 1024
                ))
                .set_hint("Raise work_mem or ivfflat.scan_mem_multiplier for iterative scans to read further.")
                .report(pgrx::PgLogLevel::NOTICE);
            }
            false
        }
    }
}
