//! Reading the indexed table: rows for a build or a check (the vector as the index stores it and
//! the filter columns' hashes), samples for k-means, row counts, and single rows by TID for scans
//! that re-rank from the table.

use super::filters::FilterColumns;
use super::storage::PgStore;
use pgivf_core::metric::Metric;
use pgivf_core::page::Tid;
use pgivf_core::sample::{block_sample, Reservoir};
use pgivf_core::store::{LockedPage, PageStore};
use pgrx::pg_sys;

pub fn tid_of(pointer: &pg_sys::ItemPointerData) -> Tid {
    Tid {
        block: ((pointer.ip_blkid.bi_hi as u32) << 16) | pointer.ip_blkid.bi_lo as u32,
        offset: pointer.ip_posid,
    }
}

pub fn item_pointer(tid: Tid) -> pg_sys::ItemPointerData {
    pg_sys::ItemPointerData {
        ip_blkid: pg_sys::BlockIdData {
            bi_hi: (tid.block >> 16) as u16,
            bi_lo: tid.block as u16,
        },
        ip_posid: tid.offset,
    }
}

/// A short-lived memory context for per-row detoasting, reset after every row.
pub struct RowContext {
    context: pg_sys::MemoryContext,
}

impl RowContext {
    pub fn new() -> Self {
        // SAFETY: a child of the current context, deleted with it at the latest.
        let context = unsafe {
            pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"pgivf build row".as_ptr(),
                0,
                8 * 1024,
                8 * 1024 * 1024,
            )
        };
        RowContext { context }
    }

    /// Runs `f` with the row context current, then frees whatever it allocated there.
    pub fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Makes `0` current again when dropped, also when `f` raises an ERROR (a row that cannot
        /// be read): the row context is deleted as the error unwinds, and must not be left current.
        struct Restore(pg_sys::MemoryContext);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: the context that was current before, which outlives the row context.
                unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
            }
        }
        // SAFETY: switching to a valid context and back, then resetting it; `f` must not keep
        // pointers into it, which callers honour by copying the vector out.
        let restore = Restore(unsafe { pg_sys::MemoryContextSwitchTo(self.context) });
        let result = f();
        drop(restore);
        // SAFETY: our own context, no longer current.
        unsafe { pg_sys::MemoryContextReset(self.context) };
        result
    }
}

impl Drop for RowContext {
    fn drop(&mut self) {
        // After an ERROR PostgreSQL deletes the context with its parent.
        if !std::thread::panicking() {
            // SAFETY: our own context.
            unsafe { pg_sys::MemoryContextDelete(self.context) }
        }
    }
}

/// Column `column`'s vector in a build callback, or None for NULL.
///
/// # Safety
/// `values` and `isnull` must be the build callback's arrays, with more than `column` entries,
/// and `column` the index's vector column.
pub unsafe fn row_vector<'a>(
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    column: usize,
) -> Option<&'a [f32]> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if *isnull.add(column) {
            None
        } else {
            Some(crate::types::vector::detoast(*values.add(column)))
        }
    }
}

/// Reads the index's columns of a table row in a build-style callback (the build, the verifier):
/// the vector as the index stores it (normalised for cosine) and the filter columns' hashes, with
/// any detoasted copies freed row by row.
pub struct RowReader {
    metric: Metric,
    vector_column: usize,
    pub filters: FilterColumns,
    context: RowContext,
    /// The last row read: its stored vector and filter hashes.
    pub vector: Vec<f32>,
    pub hashes: Vec<u64>,
}

impl RowReader {
    pub fn new(metric: Metric, vector_column: usize, filters: FilterColumns) -> Self {
        RowReader {
            metric,
            vector_column,
            hashes: Vec::with_capacity(filters.len()),
            filters,
            context: RowContext::new(),
            vector: Vec::new(),
        }
    }

    /// Reads a row; false when it gets no entry (NULL vector, or a zero vector for cosine).
    ///
    /// # Safety
    /// `values` and `isnull` must be a build callback's arrays for this index.
    pub unsafe fn read(&mut self, values: *mut pg_sys::Datum, isnull: *mut bool) -> bool {
        let RowReader {
            metric,
            vector_column,
            filters,
            context,
            vector,
            hashes,
        } = self;
        context.with(|| {
            // SAFETY: guaranteed by the caller.
            let keep = match unsafe { row_vector(values, isnull, *vector_column) } {
                Some(row) => metric.prepare_row(row, vector),
                None => false,
            };
            if keep && !filters.is_empty() {
                // SAFETY: as above.
                unsafe { filters.row_hashes(values, isnull, hashes) };
            }
            keep
        })
    }
}

struct SampleState {
    metric: Metric,
    vector_column: usize,
    reservoir: Reservoir<Vec<f32>>,
    row_context: RowContext,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn sample_callback(
    _index: pg_sys::Relation,
    _tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the SampleState passed to the scan below.
    let state = unsafe { &mut *state.cast::<SampleState>() };
    if !state.reservoir.wants_next() {
        state.reservoir.offer_with(Vec::new);
        return;
    }
    let metric = state.metric;
    state.row_context.with(|| {
        // SAFETY: the callback's own arrays.
        if let Some(vector) = unsafe { row_vector(values, isnull, state.vector_column) } {
            let mut sample = vector.to_vec();
            if metric.prepare_sample(&mut sample) {
                state.reservoir.offer(sample);
            }
        }
    });
}

/// Samples up to `target` rows as k-means takes them (flattened): a random sample of table blocks
/// (as many blocks as rows wanted, like ANALYZE and pgvector), each block's rows fed through a
/// reservoir.
pub fn sample_rows(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    info: *mut pg_sys::IndexInfo,
    metric: Metric,
    vector_column: usize,
    target: usize,
    seed: u64,
) -> Vec<f32> {
    let mut state = SampleState {
        metric,
        vector_column,
        reservoir: Reservoir::new(target, seed),
        row_context: RowContext::new(),
    };
    let blocks = table_blocks(heap);
    let scan = |start: u32, count: u32, state: &mut SampleState| {
        // SAFETY: the callback matches IndexBuildCallback and `state` outlives the scan.
        unsafe {
            pg_sys::table_index_build_range_scan(
                heap,
                index,
                info,
                false,
                false,
                false,
                start,
                count,
                Some(sample_callback),
                (state as *mut SampleState).cast(),
                std::ptr::null_mut(),
            );
        }
    };
    if blocks as usize <= target {
        if blocks > 0 {
            scan(0, pg_sys::InvalidBlockNumber, &mut state);
        }
    } else {
        for block in block_sample(blocks, target, seed) {
            pgrx::check_for_interrupts!();
            scan(block, 1, &mut state);
        }
    }
    state.reservoir.into_vec().concat()
}

pub fn table_blocks(heap: pg_sys::Relation) -> u32 {
    // SAFETY: an open relation.
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM) }
}

/// Heap pages up to which a never-analyzed table's rows are counted rather than guessed.
const COUNT_ROWS_UP_TO_BLOCKS: u32 = 10_000;

/// The table's rows, as the planner estimates them: pg_class.reltuples scaled to the table's
/// current size. A table never vacuumed or analyzed has no reltuples, and the planner's guess from
/// the row width assumes full pages (and at least 10 of them), which makes a table of 3 rows look
/// like hundreds; up to COUNT_ROWS_UP_TO_BLOCKS pages its row versions are counted instead.
pub fn estimated_rows(heap: pg_sys::Relation) -> f64 {
    let blocks = table_blocks(heap);
    // SAFETY: `heap` is open and locked by CREATE INDEX.
    let never_analyzed = unsafe { (*(*heap).rd_rel).reltuples < 0.0 };
    if never_analyzed && blocks <= COUNT_ROWS_UP_TO_BLOCKS {
        let store = PgStore::new(heap);
        return (0..blocks)
            .map(|block| store.read(block).map_or(0, |page| tuples_on(page.bytes())))
            .sum::<u64>() as f64;
    }
    let mut pages: pg_sys::BlockNumber = 0;
    let mut tuples = 0.0;
    let mut all_visible = 0.0;
    // SAFETY: as above; estimate_rel_size only reads the relation.
    unsafe {
        pg_sys::estimate_rel_size(
            heap,
            std::ptr::null_mut(),
            &mut pages,
            &mut tuples,
            &mut all_visible,
        )
    };
    if pages == 0 {
        0.0
    } else {
        (tuples * (blocks as f64 / pages as f64)).max(0.0)
    }
}

/// Row versions stored on one heap page (line pointers in use).
fn tuples_on(page: &[u8]) -> u64 {
    const LP_NORMAL: u32 = 1;
    let header = std::mem::size_of::<pg_sys::PageHeaderData>();
    let lower = (u16::from_le_bytes([page[12], page[13]]) as usize).clamp(header, page.len());
    page[header..lower]
        .chunks_exact(4)
        .filter(|item| {
            let word = u32::from_ne_bytes([item[0], item[1], item[2], item[3]]);
            (word >> 15) & 3 == LP_NORMAL
        })
        .count() as u64
}

/// Reads rows' vectors from the table for `rerank = 'heap'`, with the scan's snapshot.
pub struct HeapFetch {
    fetch: *mut pg_sys::IndexFetchTableData,
    slot: *mut pg_sys::TupleTableSlot,
    heap: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    /// The table column of the vector.
    attribute: i16,
}

impl HeapFetch {
    pub fn new(heap: pg_sys::Relation, snapshot: pg_sys::Snapshot, attribute: i16) -> Self {
        // SAFETY: the scan's open table; its table AM provides index fetches (heap does).
        unsafe {
            let am = &*(*heap).rd_tableam;
            let begin = am
                .index_fetch_begin
                .expect("table AM supports index fetches");
            HeapFetch {
                fetch: begin(heap),
                slot: pg_sys::table_slot_create(heap, std::ptr::null_mut()),
                heap,
                snapshot,
                attribute,
            }
        }
    }
}

impl pgivf_core::index::search::RowSource for HeapFetch {
    fn vector(&mut self, tid: Tid, out: &mut Vec<f32>) -> bool {
        let mut pointer = item_pointer(tid);
        let (mut call_again, mut all_dead) = (false, false);
        // SAFETY: fetch and slot were made for this table; the slot holds the fetched tuple until
        // the next fetch; slot_getsomeattrs_int deforms up to `attribute`.
        unsafe {
            let am = &*(*self.heap).rd_tableam;
            let fetch_tuple = am
                .index_fetch_tuple
                .expect("table AM supports index fetches");
            if !fetch_tuple(
                self.fetch,
                &mut pointer,
                self.snapshot,
                self.slot,
                &mut call_again,
                &mut all_dead,
            ) {
                return false;
            }
            pg_sys::slot_getsomeattrs_int(self.slot, self.attribute as i32);
            let at = (self.attribute - 1) as usize;
            if *(*self.slot).tts_isnull.add(at) {
                return false;
            }
            let datum = *(*self.slot).tts_values.add(at);
            let original = datum.cast_mut_ptr::<pg_sys::varlena>();
            let varlena = pg_sys::pg_detoast_datum(original);
            out.clear();
            out.extend_from_slice(crate::types::vector::elements(varlena));
            if varlena != original {
                pg_sys::pfree(varlena.cast());
            }
        }
        true
    }
}

impl Drop for HeapFetch {
    fn drop(&mut self) {
        // After an error the scan's memory, and this with it, goes while the transaction aborts,
        // once the resource owner has taken back the fetch's buffer pin and the slot's tuple
        // descriptor: releasing them again would raise an ERROR inside the abort ("buffer is not
        // owned by resource owner"). The slot's memory goes with the context.
        // SAFETY: reads the current transaction's state.
        if std::thread::panicking() || !unsafe { pg_sys::IsTransactionState() } {
            return;
        }
        // SAFETY: made by new(); releases the fetch's buffer pin and the slot.
        unsafe {
            let am = &*(*self.heap).rd_tableam;
            if let Some(end) = am.index_fetch_end {
                end(self.fetch);
            }
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
        }
    }
}
