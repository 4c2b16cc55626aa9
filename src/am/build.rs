//! `ambuild` and `ambuildempty`.
//!
//! A build samples rows (random blocks, then a reservoir), runs k-means in the core crate on a rayon
//! pool, then reads the whole table, assigns rows to their nearest centroid in parallel batches, and
//! writes every list's entries as one contiguous run of pages. PostgreSQL is only ever called from
//! the backend's own thread: worker threads see plain slices. Interrupts are checked and progress is
//! reported between batches and k-means chunks.

use super::filters::FilterColumns;
use super::storage::{init_page, Locked, Mode, OrCorrupt, Xlog};
use super::{metric_of, PHASE_ASSIGN, PHASE_KMEANS, PHASE_LOAD};
use crate::error::raise_with;
use pgivf_core::filter::Summary;
use pgivf_core::kmeans::{self, KMeansError, KMeansMetric, KMeansParams, KMeansStage};
use pgivf_core::page::{
    self, centroids_per_page, DirectoryEntry, EntryFormat, Meta, Metric, Origin, PageKind, Tid,
    DATA_CAPACITY, DIRECTORY_ENTRIES_PER_PAGE, INVALID_BLOCK, SUMMARIES_PER_PAGE,
};
use pgivf_core::quant::{Quantizer, QuantizerKind, Rabitq, Rerank, Sq8};
use pgivf_core::sample::{block_sample, Reservoir};
use pgivf_core::{bounds, distance};
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

/// Rows per parallel assignment batch: large enough to keep both cores busy, small enough that a
/// cancel is noticed quickly.
const ASSIGN_BATCH_ROWS: usize = 8192;
/// Heap tuples per page at most (MaxHeapTuplesPerPage for 8 kB pages): caps the sample of tiny tables.
pub const MAX_HEAP_TUPLES_PER_PAGE: usize = 291;
const KMEANS_SEED: u64 = 0x5EED_1F1F;
/// RaBitQ's rotation seed: fixed, like k-means', so that a build of the same rows gives the same
/// index (and the same answers) every time.
const ROTATION_SEED: u64 = 0x0BAD_5EED_2024;

/// What the build needs to know about the index, checked up front with pgvector's errors.
pub struct BuildParams {
    pub dimensions: usize,
    pub lists: usize,
    pub metric: Metric,
    pub filters: FilterColumns,
    /// Which key column (0-based) holds the vector.
    pub vector_column: usize,
    pub quantizer: QuantizerKind,
    pub rerank: Rerank,
    /// Whether rows get a second, spilled entry (see `super::Spill`).
    pub spill: bool,
}

/// The index's parameters; `heap` is the table being indexed (None for the empty init fork of an
/// unlogged table), used to size the index when `lists` was not given.
pub fn build_params(index: pg_sys::Relation, heap: Option<pg_sys::Relation>) -> BuildParams {
    // SAFETY: `index` is an open index relation with at least one attribute.
    let first_type = unsafe { (*(*index).rd_att).attrs.as_slice(1)[0].atttypid };
    if first_type == pg_sys::VARBITOID {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "type not supported for ivfflat index".into(),
            None,
        );
    }
    let vector_column = super::vector_column(index);
    // SAFETY: the vector column is one of the index's attributes.
    let typmod =
        unsafe { (*(*index).rd_att).attrs.as_slice(vector_column + 1)[vector_column].atttypmod };
    let filters = FilterColumns::of(index);
    if typmod < 0 {
        raise_with(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "column does not have dimensions".into(),
            None,
        );
    }
    let dimensions = typmod as usize;
    if dimensions > super::MAX_DIMENSIONS {
        raise_with(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "column cannot have more than {} dimensions for ivfflat index",
                super::MAX_DIMENSIONS
            ),
            None,
        );
    }
    let metric = metric_of(index);
    if metric != Metric::L2 && dimensions == 1 {
        raise_with(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "dimensions must be greater than one for this opclass".into(),
            None,
        );
    }
    let lists = super::lists_option(index).unwrap_or_else(|| {
        let rows = heap.map_or(0.0, estimated_rows);
        let lists = super::lists_for_rows(rows);
        if rows >= super::DEFAULT_LISTS as f64 {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                format!(
                    "ivfflat index uses {lists} {} for about {rows:.0} rows",
                    if lists == 1 { "list" } else { "lists" }
                ),
                "ambuild",
            )
            .set_detail("Without a lists option the index gets rows / 1000 lists up to 1M rows and sqrt(rows) beyond; REINDEX sizes it again.")
            .set_hint("Give WITH (lists = n) to choose the number yourself.")
            .report(PgLogLevel::NOTICE);
        }
        lists
    });
    let (quantizer, rerank) = super::quantizer_options(index);
    if quantizer == QuantizerKind::None && rerank == Rerank::Heap {
        raise_with(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "rerank = 'heap' needs a quantizer".into(),
            Some("Give quantizer = 'sq8' or 'rabitq'; an index without one holds the vectors themselves."),
        );
    }
    if rerank == Rerank::Heap && super::heap_vector_attribute(index, vector_column).is_none() {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "rerank = 'heap' needs the vector to be a table column, not an expression".into(),
            Some("Use rerank = 'index'."),
        );
    }
    let spill = match super::spill_option(index) {
        super::Spill::Auto => quantizer != QuantizerKind::None && rerank == Rerank::Index,
        super::Spill::On if quantizer == QuantizerKind::None => raise_with(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "spill = 'on' needs a quantizer".into(),
            Some("Give quantizer = 'sq8' or 'rabitq'; lists without one would hold every vector twice."),
        ),
        super::Spill::On => true,
        super::Spill::Off => false,
    };
    // The list format lets an entry span two pages, not more.
    let stride = EntryFormat {
        dim: dimensions,
        filters: filters.len(),
        code_bytes: quantizer.code_bytes(dimensions),
        located: quantizer != QuantizerKind::None && rerank == Rerank::Index,
    }
    .stride();
    if stride > DATA_CAPACITY {
        raise_with(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "ivfflat index entries of {dimensions} dimensions and {} filter columns take {stride} bytes, more than a page's {DATA_CAPACITY}",
                filters.len()
            ),
            Some("Use fewer filter columns."),
        );
    }
    BuildParams {
        dimensions,
        lists,
        metric,
        filters,
        vector_column,
        quantizer,
        rerank,
        spill,
    }
}

/// Heap pages up to which a never-analyzed table's rows are counted rather than guessed.
const COUNT_ROWS_UP_TO_BLOCKS: u32 = 10_000;

/// The table's rows, as the planner estimates them: pg_class.reltuples scaled to the table's current
/// size. A table never vacuumed or analyzed has no reltuples, and the planner's guess from the row
/// width assumes full pages (and at least 10 of them), which makes a table of 3 rows look like
/// hundreds; up to COUNT_ROWS_UP_TO_BLOCKS pages its row versions are counted instead.
fn estimated_rows(heap: pg_sys::Relation) -> f64 {
    // SAFETY: `heap` is open and locked by CREATE INDEX.
    let (blocks, never_analyzed) = unsafe {
        (
            pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM),
            (*(*heap).rd_rel).reltuples < 0.0,
        )
    };
    if never_analyzed && blocks <= COUNT_ROWS_UP_TO_BLOCKS {
        return (0..blocks)
            .map(|block| heap_tuples_on(heap, block))
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

/// Row versions stored on one heap page (line pointers in use), read under a share lock.
fn heap_tuples_on(heap: pg_sys::Relation, block: u32) -> u64 {
    const LP_NORMAL: u32 = 1;
    let buffer = Locked::read(heap, block, Mode::Share);
    let page = buffer.page();
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

/// How a row's vector is clustered and stored. Returns false for rows the index leaves out:
/// zero vectors under cosine, which have no direction.
pub fn prepare_row(metric: Metric, vector: &[f32], stored: &mut Vec<f32>) -> bool {
    stored.clear();
    stored.extend_from_slice(vector);
    if metric == Metric::Cosine && !normalize(stored) {
        return false;
    }
    true
}

/// Scales to unit length (in f64, like l2_normalize); false for a zero vector.
pub fn normalize(values: &mut [f32]) -> bool {
    let norm = distance::norm_squared_f64(values).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    for x in values.iter_mut() {
        *x = (*x as f64 / norm) as f32;
    }
    true
}

pub fn kmeans_metric(metric: Metric) -> KMeansMetric {
    match metric {
        Metric::L2 => KMeansMetric::L2,
        Metric::InnerProduct | Metric::Cosine => KMeansMetric::Spherical,
    }
}

fn progress(param: u32, value: i64) {
    // SAFETY: plain progress counter update for the current backend.
    unsafe { pg_sys::pgstat_progress_update_param(param as i32, value) }
}

fn check_for_interrupts() {
    pgrx::check_for_interrupts!();
}

/// A rayon pool sized like PostgreSQL would size a parallel build: the leader plus
/// max_parallel_maintenance_workers, but no more threads than cores.
fn thread_pool() -> rayon::ThreadPool {
    // SAFETY: reading a GUC variable on the backend thread.
    let workers = unsafe { pg_sys::max_parallel_maintenance_workers }.max(0) as usize;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads((workers + 1).min(cores).max(1))
        .thread_name(|i| format!("pgivf-build-{i}"))
        .build()
        .unwrap_or_else(|e| {
            raise_with(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
                format!("could not start build threads: {e}"),
                None,
            )
        })
}

fn maintenance_work_mem_bytes() -> usize {
    // SAFETY: reading a GUC variable on the backend thread.
    (unsafe { pg_sys::maintenance_work_mem }).max(64) as usize * 1024
}

/// A short-lived memory context for per-row detoasting, reset after every row.
pub(super) struct RowContext {
    context: pg_sys::MemoryContext,
}

impl RowContext {
    pub(super) fn new() -> Self {
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
    pub(super) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Makes `0` current again when dropped, also when `f` raises an ERROR (a row that cannot
        /// be read): the row context is deleted as the error unwinds, and must not be left current.
        struct Restore(pg_sys::MemoryContext);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: the context that was current before, which outlives the row context.
                unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
            }
        }
        // SAFETY: switching to a valid context and back, then resetting it; `f` must not keep pointers
        // into it, which callers honour by copying the vector out.
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
        // SAFETY: our own context; on an error PostgreSQL deletes it with its parent instead, and
        // `Drop` does not run twice for it.
        unsafe { pg_sys::MemoryContextDelete(self.context) }
    }
}

/// Column `column`'s vector in a build callback, or None for NULL.
///
/// # Safety
/// `values` and `isnull` must be the build callback's arrays, with more than `column` entries, and
/// `column` the index's vector column.
pub(super) unsafe fn row_vector<'a>(
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

/// Reads the index's columns of a heap row in a build-style callback (the build, the verifier): the
/// vector as the index stores it (normalised for cosine) and the filter columns' hashes, with any
/// detoasted copies freed row by row.
pub(super) struct RowReader {
    metric: Metric,
    vector_column: usize,
    pub filters: FilterColumns,
    context: RowContext,
    /// The last row read: its stored vector and filter hashes.
    pub vector: Vec<f32>,
    pub hashes: Vec<u64>,
}

impl RowReader {
    pub(super) fn new(metric: Metric, vector_column: usize, filters: FilterColumns) -> Self {
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
    pub(super) unsafe fn read(&mut self, values: *mut pg_sys::Datum, isnull: *mut bool) -> bool {
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
                Some(row) => prepare_row(*metric, row, vector),
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
    scratch: Vec<f32>,
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
            state.scratch.clear();
            state.scratch.extend_from_slice(vector);
            // Spherical k-means clusters directions: ip and cosine samples are normalised, and zero
            // vectors (no direction) are left out.
            if metric == Metric::L2 || normalize(&mut state.scratch) {
                state.reservoir.offer(state.scratch.clone());
            }
        }
    });
}

/// Samples up to `target` rows: a random sample of heap blocks (as many blocks as rows wanted, like
/// ANALYZE and pgvector), each block's rows fed through a reservoir.
fn sample_rows(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    info: *mut pg_sys::IndexInfo,
    metric: Metric,
    vector_column: usize,
    target: usize,
) -> Vec<Vec<f32>> {
    let mut state = SampleState {
        metric,
        vector_column,
        reservoir: Reservoir::new(target, KMEANS_SEED),
        row_context: RowContext::new(),
        scratch: Vec::new(),
    };
    // SAFETY: heap and index are open for the build.
    let blocks =
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM) };
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
        for block in block_sample(blocks, target, KMEANS_SEED) {
            check_for_interrupts();
            scan(block, 1, &mut state);
        }
    }
    state.reservoir.into_vec()
}

/// Where pages go: the main fork through Generic WAL, or (for unlogged tables' empty index) the init
/// fork, written directly and WAL-logged wholesale at the end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Main,
    InitFork,
}

struct PageWriter {
    index: pg_sys::Relation,
    target: Target,
}

impl PageWriter {
    fn new_page(&self, kind: PageKind, first_entry: u16, fill: impl FnOnce(&mut [u8])) -> u32 {
        match self.target {
            Target::Main => {
                let buffer = Locked::extend(self.index, pg_sys::ForkNumber::MAIN_FORKNUM);
                let mut xlog = Xlog::start(self.index);
                fill(xlog.register_new(&buffer, kind, first_entry));
                xlog.finish();
                buffer.block()
            }
            Target::InitFork => {
                let mut buffer = Locked::extend(self.index, pg_sys::ForkNumber::INIT_FORKNUM);
                let page = buffer.page_mut_unlogged();
                init_page(page, kind, first_entry);
                fill(page);
                // SAFETY: pinned and exclusively locked.
                unsafe { pg_sys::MarkBufferDirty(buffer.buffer) };
                buffer.block()
            }
        }
    }
}

/// Writes the meta, centroid and directory pages (blocks 0, 1.., then directory) and returns the meta.
fn write_structure(
    writer: &PageWriter,
    params: &BuildParams,
    centroids: &[f32],
    quantizer: Option<&Quantizer>,
    rows: u64,
) -> Meta {
    let dim = params.dimensions;
    let per_page = centroids_per_page(dim);
    let centroid_pages = params.lists.div_ceil(per_page);
    let keeps_vectors = quantizer.is_some() && params.rerank == Rerank::Index;
    let chains = params.lists * if keeps_vectors { 2 } else { 1 };
    let directory_pages = chains.div_ceil(DIRECTORY_ENTRIES_PER_PAGE);
    let grid = match quantizer {
        Some(Quantizer::Sq8(sq8)) => [sq8.low(), sq8.step()].concat(),
        _ => Vec::new(),
    };
    let quantizer_pages = if grid.is_empty() {
        0
    } else {
        page::quantizer_pages(dim)
    };
    let summary_pages = if params.filters.is_empty() {
        0
    } else {
        params.lists.div_ceil(SUMMARIES_PER_PAGE)
    };
    let meta = Meta {
        dimensions: dim as u32,
        lists: params.lists as u32,
        metric: params.metric,
        build_id: build_id(writer.index),
        centroid_start: 1,
        centroid_pages: centroid_pages as u32,
        directory_start: 1 + centroid_pages as u32,
        directory_pages: directory_pages as u32,
        rows_at_build: rows,
        filter_columns: params.filters.len() as u32,
        summary_start: if summary_pages == 0 {
            0
        } else {
            1 + (centroid_pages + directory_pages) as u32
        },
        summary_pages: summary_pages as u32,
        radii: true,
        max_norm: 0.0,
        // With fewer than two lists there is nowhere to spill to.
        spill: params.spill && quantizer.is_some() && params.lists > 1,
        quantizer: quantizer.map_or(QuantizerKind::None, Quantizer::kind),
        rerank: params.rerank,
        quantizer_start: if quantizer_pages == 0 {
            0
        } else {
            1 + (centroid_pages + directory_pages + summary_pages) as u32
        },
        quantizer_pages: quantizer_pages as u32,
        quantizer_seed: ROTATION_SEED,
    };
    let block = writer.new_page(PageKind::Meta, 0, |page| meta.write(page));
    assert_eq!(block, 0, "the meta page must be block 0 of a new index");
    for first in (0..params.lists).step_by(per_page) {
        let count = per_page.min(params.lists - first);
        writer.new_page(PageKind::Centroids, 0, |page| {
            page::write_centroids(page, centroids, dim, first, count)
        });
    }
    let empty = DirectoryEntry {
        head: INVALID_BLOCK,
        tail: INVALID_BLOCK,
        free_hint: INVALID_BLOCK,
        radius: 0.0,
    };
    for first in (0..chains).step_by(DIRECTORY_ENTRIES_PER_PAGE) {
        let count = DIRECTORY_ENTRIES_PER_PAGE.min(chains - first);
        writer.new_page(PageKind::Directory, 0, |page| {
            for slot in 0..count {
                page::write_directory_entry(page, slot, empty);
            }
        });
    }
    let empty = Summary::default();
    for first in (0..params.lists)
        .step_by(SUMMARIES_PER_PAGE)
        .take(summary_pages)
    {
        let count = SUMMARIES_PER_PAGE.min(params.lists - first);
        writer.new_page(PageKind::Summaries, 0, |page| {
            for slot in 0..count {
                page::write_summary(page, slot, &empty);
            }
        });
    }
    for number in 0..quantizer_pages {
        writer.new_page(PageKind::Quantizer, 0, |page| {
            page::write_quantizer_page(page, &grid, number)
        });
    }
    meta
}

/// The index's quantizer: SQ8's grid is learned from the residuals of the k-means sample.
fn make_quantizer(
    params: &BuildParams,
    samples: &[f32],
    centroids: &[f32],
    pool: &rayon::ThreadPool,
) -> Option<Quantizer> {
    let dim = params.dimensions;
    match params.quantizer {
        QuantizerKind::None => None,
        QuantizerKind::Rabitq => Some(Quantizer::Rabitq(Rabitq::new(
            dim,
            params.metric,
            ROTATION_SEED,
        ))),
        QuantizerKind::Sq8 => {
            check_for_interrupts();
            let mut residuals = samples.to_vec();
            if !centroids.is_empty() && !samples.is_empty() {
                let labels =
                    kmeans::assign(samples, dim, centroids, kmeans_metric(params.metric), pool);
                for (row, list) in residuals.chunks_exact_mut(dim).zip(labels) {
                    let centroid = &centroids[list as usize * dim..(list as usize + 1) * dim];
                    for (x, c) in row.iter_mut().zip(centroid) {
                        *x -= c;
                    }
                }
            }
            Some(Quantizer::Sq8(Sq8::train(dim, params.metric, &residuals)))
        }
    }
}

/// Writes every list's filter summary (the build's, from all its entries) to the summary pages.
fn write_summaries(index: pg_sys::Relation, meta: &Meta, summaries: &[Summary]) {
    for (page_number, chunk) in summaries.chunks(SUMMARIES_PER_PAGE).enumerate() {
        let buffer = Locked::read(
            index,
            meta.summary_start + page_number as u32,
            Mode::Exclusive,
        );
        let mut xlog = Xlog::start(index);
        let page = xlog.register(&buffer);
        for (slot, summary) in chunk.iter().enumerate() {
            page::write_summary(page, slot, summary);
        }
        xlog.finish();
    }
}

/// A value that differs between builds, so backends notice that their cached centroids are stale.
fn build_id(index: pg_sys::Relation) -> u64 {
    // SAFETY: plain reads of the clock, the backend's pid and the index's file number.
    let (now, pid, node) = unsafe {
        (
            pg_sys::GetCurrentTimestamp() as u64,
            pg_sys::MyProcPid as u64,
            u32::from((*index).rd_node.relNode) as u64,
        )
    };
    let mut x = now ^ (pid << 48) ^ (node << 20);
    // splitmix64 finaliser: spreads nearby inputs far apart.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// Runs k-means over the samples, checking for cancel and reporting progress between chunks.
fn compute_centroids(
    samples: Vec<Vec<f32>>,
    params: &BuildParams,
    pool: &rayon::ThreadPool,
) -> (Vec<f32>, Vec<f32>) {
    let dim = params.dimensions;
    let n = samples.len();
    let required = n * dim * 4
        + if n > 0 {
            kmeans::memory_required(n, dim, params.lists)
        } else {
            0
        };
    let allowed = maintenance_work_mem_bytes();
    if required > allowed {
        raise_with(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "memory required is {} MB, maintenance_work_mem is {} MB",
                required.div_ceil(1024 * 1024),
                allowed / (1024 * 1024)
            ),
            None,
        );
    }
    let mut flat = Vec::with_capacity(n * dim);
    for sample in samples {
        flat.extend_from_slice(&sample);
    }
    let kparams = KMeansParams {
        seed: KMEANS_SEED,
        ..KMeansParams::new(params.lists, kmeans_metric(params.metric))
    };
    let mut on_checkpoint = |stage: KMeansStage| -> Result<(), KMeansError> {
        check_for_interrupts();
        if let KMeansStage::Assigning { done, total, .. } = stage {
            progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, done as i64);
            progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, total as i64);
        }
        Ok(())
    };
    let centroids = kmeans::train(&flat, dim, &kparams, pool, &mut on_checkpoint)
        .unwrap_or_else(|e| crate::error::raise_kmeans(e));
    (centroids, flat)
}

/// Per-chain entry bytes waiting to be written, and where each chain ends so far.
struct Lists {
    meta: Meta,
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    /// Per chain: (head, tail, bytes of stream written so far).
    chains: Vec<(u32, u32, usize)>,
    /// Per vector chain (quantized indexes that re-rank from the index): its pages in order, to
    /// turn a vector's ordinal into its location, and how many vectors it has.
    vector_pages: Vec<Vec<u32>>,
    vector_counts: Vec<usize>,
}

impl Lists {
    fn new(meta: Meta) -> Self {
        let chains = meta.chains() as usize;
        let vector_chains = chains - meta.lists as usize;
        Lists {
            meta,
            pending: vec![Vec::new(); chains],
            pending_bytes: 0,
            chains: vec![(INVALID_BLOCK, INVALID_BLOCK, 0); chains],
            vector_pages: vec![Vec::new(); vector_chains],
            vector_counts: vec![0; vector_chains],
        }
    }

    /// Appends every pending chain to the index, vectors before the codes that locate them, chain
    /// after chain, so each flush lays a chain's pages out contiguously (one flush, the usual case,
    /// makes every list one contiguous run).
    fn flush(&mut self, writer: &PageWriter) {
        let lists = self.meta.lists as usize;
        let order = (lists..self.pending.len()).chain(0..lists);
        for list in order {
            let stride = self.meta.chain_format(list as u32).stride();
            if self.pending[list].is_empty() {
                continue;
            }
            if list < lists && self.meta.keeps_vectors() {
                // Code entries hold their vector's ordinal and list until now (a spilled entry's
                // vector is in its primary list's chain).
                let format = self.meta.entry_format();
                let vector_format = self.meta.chain_format(self.meta.lists);
                for entry in self.pending[list].chunks_exact_mut(stride) {
                    let held = format.location_of(entry);
                    let pages = &self.vector_pages[held.offset as usize];
                    let location =
                        page::location_in_chain(pages, held.block as usize, vector_format)
                            .expect("vectors are written before their codes");
                    format.set_location(entry, location);
                }
            }
            let bytes = &mut self.pending[list];
            check_for_interrupts();
            let (head, tail, written) = &mut self.chains[list];
            let mut pos = 0;
            if *tail != INVALID_BLOCK && *written % DATA_CAPACITY != 0 {
                let buffer = Locked::read(writer.index, *tail, Mode::Exclusive);
                let mut xlog = Xlog::start(writer.index);
                let n = page::append_bytes(xlog.register(&buffer), bytes).or_corrupt(writer.index);
                xlog.finish();
                pos += n;
                *written += n;
            }
            while pos < bytes.len() {
                // The first entry starting on the new page is after the rest of a split entry.
                let first_entry = ((stride - *written % stride) % stride) as u16;
                let new = Locked::extend(writer.index, pg_sys::ForkNumber::MAIN_FORKNUM);
                let mut xlog = Xlog::start(writer.index);
                let previous = (*tail != INVALID_BLOCK)
                    .then(|| Locked::read(writer.index, *tail, Mode::Exclusive));
                if let Some(previous) = &previous {
                    page::set_next(xlog.register(previous), new.block());
                }
                let n = page::append_bytes(
                    xlog.register_new(&new, PageKind::Entries, first_entry),
                    &bytes[pos..],
                )
                .or_corrupt(writer.index);
                xlog.finish();
                if *head == INVALID_BLOCK {
                    *head = new.block();
                }
                *tail = new.block();
                if list >= lists {
                    self.vector_pages[list - lists].push(new.block());
                }
                pos += n;
                *written += n;
            }
            self.pending_bytes -= bytes.len();
            bytes.clear();
            bytes.shrink_to_fit();
        }
    }

    /// Records every list's head, tail and radius in the directory.
    fn write_directory(&self, index: pg_sys::Relation, meta: &Meta, radii: &[f32]) {
        for (page_number, chunk) in self.chains.chunks(DIRECTORY_ENTRIES_PER_PAGE).enumerate() {
            let buffer = Locked::read(
                index,
                meta.directory_start + page_number as u32,
                Mode::Exclusive,
            );
            let mut xlog = Xlog::start(index);
            let page = xlog.register(&buffer);
            for (slot, (head, tail, _)) in chunk.iter().enumerate() {
                page::write_directory_entry(
                    page,
                    slot,
                    DirectoryEntry {
                        head: *head,
                        tail: *tail,
                        free_hint: INVALID_BLOCK,
                        // Vector chains (after the lists) have no radius.
                        radius: radii
                            .get(page_number * DIRECTORY_ENTRIES_PER_PAGE + slot)
                            .copied()
                            .unwrap_or(0.0),
                    },
                );
            }
            xlog.finish();
        }
    }
}

struct AssignState<'a> {
    metric: Metric,
    dim: usize,
    centroids: &'a [f32],
    pool: &'a rayon::ThreadPool,
    lists: Lists,
    writer: &'a PageWriter,
    memory_budget: usize,
    batch_rows: Vec<f32>,
    batch_tids: Vec<Tid>,
    /// The batch's filter hashes, one per filter column per row.
    batch_filters: Vec<u64>,
    reader: RowReader,
    /// Per list, with filter columns: the summary of its entries' filter hashes.
    summaries: Vec<Summary>,
    /// Per list: the largest distance of a member from the centroid (bounds.rs).
    radii: Vec<f32>,
    max_norm: f32,
    indexed: u64,
    quantizer: Option<&'a Quantizer>,
    /// Per list, what encoding its rows needs of its centroid (RaBitQ: the rotated centroid),
    /// computed once; None when that would take more than LIST_CONTEXT_BYTES (each row then
    /// computes its own).
    list_contexts: Option<Vec<f32>>,
    /// With `Meta::spill`: picks each row's second list.
    spiller: Option<kmeans::Spiller<'a>>,
}

/// Memory for the quantizer's per-list contexts at build (250 lists of 384-d take 0.5 MB).
const LIST_CONTEXT_BYTES: usize = 64 << 20;

/// The quantizer's contexts of every list of `centroids`, computed on the pool.
fn list_contexts(
    quantizer: Option<&Quantizer>,
    centroids: &[f32],
    dim: usize,
    pool: &rayon::ThreadPool,
) -> Option<Vec<f32>> {
    use rayon::prelude::*;
    let quantizer = quantizer?;
    let len = quantizer.list_context_len();
    let lists = centroids.len() / dim;
    if len == 0 || lists * len * std::mem::size_of::<f32>() > LIST_CONTEXT_BYTES {
        return None;
    }
    let mut contexts = vec![0.0f32; lists * len];
    pool.install(|| {
        contexts
            .par_chunks_mut(len)
            .zip(centroids.par_chunks(dim))
            .for_each(|(context, centroid)| {
                context.copy_from_slice(&quantizer.list_context(centroid))
            });
    });
    Some(contexts)
}

impl AssignState<'_> {
    /// The batch's codes, computed on the pool (plain slices in, bytes out).
    fn encode_batch(&self, quantizer: &Quantizer, labels: &[u32]) -> Vec<u8> {
        use rayon::prelude::*;
        let code_bytes = quantizer.code_bytes();
        let dim = self.dim;
        let mut codes = vec![0u8; self.batch_tids.len() * code_bytes];
        let centroids = self.centroids;
        let contexts = self.list_contexts.as_deref();
        let context_len = quantizer.list_context_len();
        let rows = &self.batch_rows[..];
        self.pool.install(|| {
            codes
                .par_chunks_mut(code_bytes)
                .zip(rows.par_chunks(dim))
                .zip(labels.par_iter())
                .for_each_init(Vec::new, |scratch, ((code, row), &list)| {
                    let list = list as usize;
                    let centroid = &centroids[list * dim..(list + 1) * dim];
                    match contexts {
                        Some(contexts) => quantizer.encode_in_list(
                            row,
                            centroid,
                            &contexts[list * context_len..(list + 1) * context_len],
                            scratch,
                            code,
                        ),
                        None => quantizer.encode(row, centroid, scratch, code),
                    }
                });
        });
        codes
    }

    fn assign_batch(&mut self) {
        if self.batch_tids.is_empty() {
            return;
        }
        check_for_interrupts();
        let labels = kmeans::assign(
            &self.batch_rows,
            self.dim,
            self.centroids,
            kmeans_metric(self.metric),
            self.pool,
        );
        let format = self.lists.meta.entry_format();
        let stride = format.stride();
        let filter_count = self.reader.filters.len();
        let mut entry = vec![0u8; stride];
        let lists = self.lists.meta.lists as usize;
        let codes = self
            .quantizer
            .map(|quantizer| self.encode_batch(quantizer, &labels));
        // Each row's second list and its code there (u32::MAX: none).
        let seconds = self
            .spiller
            .as_ref()
            .map(|spiller| spiller.second_lists(&self.batch_rows, &labels, self.pool));
        let second_codes = match (self.quantizer, &seconds) {
            (Some(quantizer), Some(seconds)) => {
                let encodable: Vec<u32> = seconds
                    .iter()
                    .zip(&labels)
                    .map(|(&second, &primary)| if second == u32::MAX { primary } else { second })
                    .collect();
                Some(self.encode_batch(quantizer, &encodable))
            }
            _ => None,
        };
        let vector_format = self.lists.meta.chain_format(self.lists.meta.lists);
        let mut vector_entry = vec![0u8; vector_format.stride()];
        let mut spilled_entry = vec![0u8; stride];
        for (i, ((tid, row), list)) in self
            .batch_tids
            .iter()
            .zip(self.batch_rows.chunks_exact(self.dim))
            .zip(labels)
            .enumerate()
        {
            let hashes = &self.batch_filters[i * filter_count..(i + 1) * filter_count];
            let centroid =
                &self.centroids[list as usize * self.dim..(list as usize + 1) * self.dim];
            cover_row(
                &mut self.radii,
                &mut self.summaries,
                self.metric,
                centroid,
                list as usize,
                row,
                hashes,
            );
            self.max_norm = self
                .max_norm
                .max(distance::norm_squared_f64(row).sqrt() as f32);
            match &codes {
                None => format.encode(*tid, hashes, row, Origin::Build, &mut entry),
                Some(codes) => {
                    let code_bytes = format.code_bytes;
                    let code = &codes[i * code_bytes..(i + 1) * code_bytes];
                    // The vector's ordinal in its list's vector chain and that list (at most
                    // MAX_LISTS, so a u16), made a location when written (flush).
                    let location = self.lists.meta.keeps_vectors().then(|| {
                        let ordinal = &mut self.lists.vector_counts[list as usize];
                        *ordinal += 1;
                        page::Location {
                            block: (*ordinal - 1) as u32,
                            offset: list as u16,
                        }
                    });
                    format.encode_code(*tid, hashes, location, code, Origin::Build, &mut entry);
                    if location.is_some() {
                        vector_format.encode(*tid, &[], row, Origin::Build, &mut vector_entry);
                        self.lists.pending[lists + list as usize].extend_from_slice(&vector_entry);
                        self.lists.pending_bytes += vector_entry.len();
                    }
                    let second = seconds.as_ref().map_or(u32::MAX, |s| s[i]);
                    if let (Some(second_codes), true) = (&second_codes, second != u32::MAX) {
                        let second = second as usize;
                        let centroid = &self.centroids[second * self.dim..(second + 1) * self.dim];
                        cover_row(
                            &mut self.radii,
                            &mut self.summaries,
                            self.metric,
                            centroid,
                            second,
                            row,
                            hashes,
                        );
                        let code = &second_codes[i * code_bytes..(i + 1) * code_bytes];
                        format.encode_code(
                            *tid,
                            hashes,
                            location,
                            code,
                            Origin::Build,
                            &mut spilled_entry,
                        );
                        page::mark_spilled(&mut spilled_entry);
                        self.lists.pending[second].extend_from_slice(&spilled_entry);
                        self.lists.pending_bytes += stride;
                    }
                }
            }
            self.lists.pending[list as usize].extend_from_slice(&entry);
            self.lists.pending_bytes += stride;
        }
        self.indexed += self.batch_tids.len() as u64;
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, self.indexed as i64);
        self.batch_rows.clear();
        self.batch_tids.clear();
        self.batch_filters.clear();
        if self.lists.pending_bytes > self.memory_budget {
            progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_LOAD);
            self.lists.flush(self.writer);
            progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_ASSIGN);
        }
    }
}

/// Widens list `list`'s radius and filter summary (when it has filter columns) to cover `row`.
fn cover_row(
    radii: &mut [f32],
    summaries: &mut [Summary],
    metric: Metric,
    centroid: &[f32],
    list: usize,
    row: &[f32],
    hashes: &[u64],
) {
    radii[list] = radii[list].max(bounds::member_distance(metric, row, centroid));
    if let Some(summary) = summaries.get_mut(list) {
        for &hash in hashes {
            summary.insert(hash);
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the AssignState passed to the scan below.
    let state = unsafe { &mut *state.cast::<AssignState>() };
    // SAFETY: the callback's own arrays.
    if !unsafe { state.reader.read(values, isnull) } {
        return;
    }
    // SAFETY: `tid` points at the heap tuple's ItemPointer.
    let tid = unsafe { tid_of(&*tid) };
    state.batch_filters.extend_from_slice(&state.reader.hashes);
    state.batch_rows.extend_from_slice(&state.reader.vector);
    state.batch_tids.push(tid);
    if state.batch_tids.len() >= ASSIGN_BATCH_ROWS {
        state.assign_batch();
    }
}

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

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let params = build_params(index, Some(heap));
    // SAFETY: a block count of the index being built (must be empty).
    if unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) }
        != 0
    {
        raise_with(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "index is not empty at the start of the build".into(),
            None,
        );
    }
    let pool = thread_pool();
    if pool.current_num_threads() > 1 {
        // pgvector reports its parallel builds this way, and its tests look for the message.
        pgrx::debug1!("using {} parallel workers", pool.current_num_threads());
    }

    // pgvector's sample size: 50 rows per list, at least 10,000, never more than the table can hold.
    // SAFETY: heap is open.
    let heap_blocks =
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM) }
            as usize;
    let target = (params.lists * 50)
        .max(10_000)
        .min(heap_blocks * MAX_HEAP_TUPLES_PER_PAGE)
        .max(1);
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_KMEANS);
    let started = std::time::Instant::now();
    let samples = sample_rows(
        heap,
        index,
        info,
        params.metric,
        params.vector_column,
        target,
    );
    let sample_count = samples.len();
    let sampled = started.elapsed();
    let (centroids, samples) = compute_centroids(samples, &params, &pool);
    let quantizer = make_quantizer(&params, &samples, &centroids, &pool);
    drop(samples);
    let clustered = started.elapsed();

    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_ASSIGN);
    // SAFETY: heap's pg_class row is loaded.
    let estimated_rows = unsafe { (*(*heap).rd_rel).reltuples }.max(0.0) as i64;
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, estimated_rows);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, 0);
    let writer = PageWriter {
        index,
        target: Target::Main,
    };
    let meta = write_structure(&writer, &params, &centroids, quantizer.as_ref(), 0);
    let mut state = AssignState {
        metric: params.metric,
        dim: params.dimensions,
        centroids: &centroids,
        pool: &pool,
        lists: Lists::new(meta),
        writer: &writer,
        memory_budget: maintenance_work_mem_bytes(),
        batch_rows: Vec::with_capacity(ASSIGN_BATCH_ROWS * params.dimensions),
        batch_tids: Vec::with_capacity(ASSIGN_BATCH_ROWS),
        batch_filters: Vec::with_capacity(ASSIGN_BATCH_ROWS * params.filters.len()),
        reader: RowReader::new(params.metric, params.vector_column, params.filters.clone()),
        summaries: if params.filters.is_empty() {
            Vec::new()
        } else {
            vec![Summary::default(); params.lists]
        },
        radii: vec![0.0; params.lists],
        max_norm: 0.0,
        indexed: 0,
        quantizer: quantizer.as_ref(),
        list_contexts: list_contexts(quantizer.as_ref(), &centroids, params.dimensions, &pool),
        spiller: meta.spill.then(|| {
            kmeans::Spiller::new(
                &centroids,
                params.dimensions,
                kmeans_metric(params.metric),
                kmeans::SPILL_LAMBDA,
            )
        }),
    };
    // SAFETY: the callback matches IndexBuildCallback and `state` outlives the scan.
    let heap_tuples = unsafe {
        pg_sys::table_index_build_scan(
            heap,
            index,
            info,
            true,
            true,
            Some(assign_callback),
            (&mut state as *mut AssignState).cast(),
            std::ptr::null_mut(),
        )
    };
    state.assign_batch();
    let assigned = started.elapsed();
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_LOAD);
    state.lists.flush(&writer);
    state.lists.write_directory(index, &meta, &state.radii);
    if !state.summaries.is_empty() {
        write_summaries(index, &meta, &state.summaries);
    }
    // The phase times users and benchmarks ask about (SET client_min_messages = debug1 shows them).
    pgrx::debug1!(
        "ivfflat build: {} samples in {:.3} s, k-means {:.3} s, reading and assigning {} rows {:.3} s, writing {:.3} s, {} threads",
        sample_count,
        sampled.as_secs_f64(),
        (clustered - sampled).as_secs_f64(),
        state.indexed,
        (assigned - clustered).as_secs_f64(),
        (started.elapsed() - assigned).as_secs_f64(),
        pool.current_num_threads()
    );
    let indexed = state.indexed;
    let max_norm = state.max_norm;
    drop(state);
    if indexed > 0 {
        // Remember the row count for statistics and the largest norm for bounds.
        let buffer = Locked::read(index, 0, Mode::Exclusive);
        let mut xlog = Xlog::start(index);
        Meta {
            rows_at_build: indexed,
            max_norm,
            ..meta
        }
        .write(xlog.register(&buffer));
        xlog.finish();
    }

    if sample_count < params.lists {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "ivfflat index created with little data",
            "ambuild",
        )
        .set_detail("This will cause low recall.")
        .set_hint("Drop the index until the table has more data.")
        .report(PgLogLevel::NOTICE);
    }

    // SAFETY: palloc0 of the result struct PostgreSQL expects.
    unsafe {
        let result = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>())
            .cast::<pg_sys::IndexBuildResult>();
        (*result).heap_tuples = heap_tuples;
        (*result).index_tuples = indexed as f64;
        result
    }
}

/// The empty index of an unlogged table, written to the init fork (copied over the main fork after a
/// crash). Generic WAL does not cover init forks, so the pages are WAL-logged wholesale, as
/// contrib/bloom and pgvector do.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let params = build_params(index, None);
    let pool = thread_pool();
    let (centroids, samples) = compute_centroids(Vec::new(), &params, &pool);
    let quantizer = make_quantizer(&params, &samples, &centroids, &pool);
    let writer = PageWriter {
        index,
        target: Target::InitFork,
    };
    write_structure(&writer, &params, &centroids, quantizer.as_ref(), 0);
    // SAFETY: the init fork exists now and holds exactly the pages written above.
    unsafe {
        let blocks =
            pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::INIT_FORKNUM);
        pg_sys::log_newpage_range(index, pg_sys::ForkNumber::INIT_FORKNUM, 0, blocks, true);
    }
}
