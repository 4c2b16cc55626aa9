//! Ordered index scans: `ambeginscan`, `amrescan`, `amgettuple`, `amendscan`.
//!
//! The query's distance to every centroid picks the lists to probe, nearest first. Probing a list
//! streams its pages and computes each entry's distance straight from the page bytes with the SIMD
//! kernels (no fmgr call and no allocation per row); the candidates go into a lazy top-k that hands
//! them to the executor in exact distance order, sorting only as far as the executor reads. With
//! `ivfflat.iterative_scan = relaxed_order`, running out of candidates (a WHERE clause rejected them)
//! probes the next lists, up to `ivfflat.max_probes`.
//!
//! Quantized lists hold codes: a probe estimates each row's distance from its code and keeps a lower
//! bound (the estimate less `ivfflat.rerank_factor` standard errors). Rows are re-ranked with their
//! exact distance, from the vector in the index or in the table, lowest bound first, and a row is
//! handed out once its exact distance is no greater than every bound still waiting: rows come out
//! in exact order with exact distances, and only rows that may belong to the result are re-ranked.

use super::build::{item_pointer, normalize};
use super::cache::{self, IndexCache};
use super::filters::read_summary;
use super::guc::{IterativeScan, ITERATIVE_SCAN, MAX_PROBES, PROBES, RERANK_FACTOR};
use super::storage::{ChainWalk, Locked, OrCorrupt};
use crate::error::raise_with;
use pgivf_core::filter::FilterQuery;
use pgivf_core::page::{self, Location, Metric, StreamReader, Tid, INVALID_BLOCK};
use pgivf_core::quant::queue::{RerankQueue as CodeQueue, NO_LOCATION};
use pgivf_core::quant::PreparedQuery;
use pgivf_core::topk::Candidates;
use pgivf_core::{bounds, distance, VectorError};
use pgrx::{pg_sys, PgMemoryContexts, PgSqlErrorCode};
use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

/// `ivfflat.iterative_scan = strict_order`: a row is handed out only once no unread list can hold a
/// nearer one, so rows come out in exact distance order however many batches the scan takes (and,
/// unlike dropping rows that arrive out of order, the LIMIT still fills).
struct StrictOrder {
    /// (lower bound on the ordering key of the list's rows, list), ascending.
    by_bound: Vec<(f32, u32)>,
    cursor: usize,
}

struct ScanState {
    cache: Option<Rc<IndexCache>>,
    /// None for a NULL query: every row is at distance 0, like pgvector.
    query: Option<Vec<f32>>,
    /// Lists to probe, nearest centroid first.
    lists: Vec<u32>,
    next_list: usize,
    probes: usize,
    /// The index conditions on filter columns, if any.
    filter: Option<FilterQuery>,
    /// With `strict_order`: the lists by the nearest any of their rows can be (bounds.rs).
    strict: Option<StrictOrder>,
    /// With a radius (radius.rs): the largest ordering key a row may have.
    threshold: Option<f32>,
    /// Which lists this scan has read (or skipped by their filter summary), and how many.
    probed: Vec<bool>,
    probed_count: usize,
    max_probes: usize,
    started: bool,
    /// Rows by exact distance (all rows of flat lists; re-ranked rows of quantized ones).
    candidates: Candidates,
    reader: StreamReader,
    /// Quantized lists: rows waiting to be re-ranked.
    rerank: RerankQueue,
    /// The list a plain batch probes next and its head block, read while the list before it was
    /// probed (to prefetch its first page during that list's last).
    head_ahead: Option<(u32, u32)>,
    /// Rows handed to the executor since the scan started.
    returned: usize,
}

/// A scan's large buffers, kept by the backend between scans: every execution of a query is a new
/// scan, and growing hundreds of kilobytes of fresh memory each time (page faults, copies on
/// growth) cost more than the probing itself.
struct SpareBuffers {
    candidates: Candidates,
    queue: CodeQueue,
    seen: HashSet<u64, BuildHasherDefault<TidHasher>>,
}

/// Largest buffers kept between scans (entries), so one huge scan does not pin its memory.
const SPARE_ENTRIES: usize = 1 << 20;

thread_local! {
    static SPARE: std::cell::RefCell<Option<SpareBuffers>> = const { std::cell::RefCell::new(None) };
}

fn take_spare() -> SpareBuffers {
    SPARE
        .with(|spare| spare.borrow_mut().take())
        .unwrap_or_else(|| SpareBuffers {
            candidates: Candidates::new(),
            queue: CodeQueue::new(),
            seen: HashSet::default(),
        })
}

impl Drop for ScanState {
    fn drop(&mut self) {
        if self.candidates.capacity() > SPARE_ENTRIES
            || self.rerank.queue.capacity() > 2 * SPARE_ENTRIES
            || self.rerank.seen.capacity() > SPARE_ENTRIES
        {
            return;
        }
        let mut buffers = SpareBuffers {
            candidates: std::mem::take(&mut self.candidates),
            queue: std::mem::take(&mut self.rerank.queue),
            seen: std::mem::take(&mut self.rerank.seen),
        };
        buffers.candidates.clear();
        buffers.queue.clear();
        buffers.seen.clear();
        SPARE.with(|spare| *spare.borrow_mut() = Some(buffers));
    }
}

/// Rows of quantized lists waiting to be re-ranked, and what re-ranking needs.
#[derive(Default)]
struct RerankQueue {
    prepared: Option<PreparedQuery>,
    factor: f32,
    queue: CodeQueue,
    vector: Vec<f32>,
    heap: Option<HeapFetch>,
    /// Rows re-ranked by this scan (shown at DEBUG1 when it ends).
    reranked: u64,
    /// In an index that spills (`Meta::spill`), the heap TIDs this scan has re-ranked: a row's
    /// second code is met in another list, and the row must be re-ranked (and returned) once.
    seen: HashSet<u64, BuildHasherDefault<TidHasher>>,
}

/// Hashes packed heap TIDs, which are unique and need no protection from crafted collisions:
/// a multiply spreads block and offset over every bit, folded so the low bits the table indexes
/// by see all of them.
#[derive(Default)]
struct TidHasher(u64);

impl std::hash::Hasher for TidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64((self.0 << 8) | u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        let mixed = value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 29);
    }
}

/// Reads rows' vectors from the table for `rerank = 'heap'`, with the scan's snapshot.
struct HeapFetch {
    fetch: *mut pg_sys::IndexFetchTableData,
    slot: *mut pg_sys::TupleTableSlot,
    heap: pg_sys::Relation,
}

impl HeapFetch {
    fn new(heap: pg_sys::Relation) -> Self {
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
            }
        }
    }

    /// The vector of the row version at `tid` visible to `snapshot`, or None.
    fn vector(
        &mut self,
        tid: Tid,
        snapshot: pg_sys::Snapshot,
        attribute: i16,
        out: &mut Vec<f32>,
    ) -> bool {
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
                snapshot,
                self.slot,
                &mut call_again,
                &mut all_dead,
            ) {
                return false;
            }
            pg_sys::slot_getsomeattrs_int(self.slot, attribute as i32);
            let at = (attribute - 1) as usize;
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
        if !unsafe { pg_sys::IsTransactionState() } {
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

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(
    index: pg_sys::Relation,
    nkeys: i32,
    norderbys: i32,
) -> pg_sys::IndexScanDesc {
    // SAFETY: standard index scan descriptor allocation.
    let scan = unsafe { pg_sys::RelationGetIndexScan(index, nkeys, norderbys) };
    let spare = take_spare();
    let state = ScanState {
        cache: None,
        query: None,
        lists: Vec::new(),
        next_list: 0,
        probes: 1,
        filter: None,
        strict: None,
        threshold: None,
        probed: Vec::new(),
        probed_count: 0,
        max_probes: 0,
        started: false,
        candidates: spare.candidates,
        reader: StreamReader::new(),
        rerank: RerankQueue {
            queue: spare.queue,
            seen: spare.seen,
            ..RerankQueue::default()
        },
        head_ahead: None,
        returned: 0,
    };
    // The state lives as long as the scan's memory context and is dropped with it, so an error in the
    // middle of a query cannot leak it; rescans reuse it (no growth in nested loops).
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
    // SAFETY: our scan; keys and orderbys have numberOfKeys and numberOfOrderBys keys when non-NULL.
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
        state.candidates.clear();
        state.rerank.queue.clear();
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state is dropped with the scan's memory context; the table fetch holds a buffer pin,
    // which must be released now (an error instead releases it with the transaction).
    // SAFETY: our scan, with the state set up by ambeginscan.
    unsafe {
        let state = &mut *(*scan).opaque.cast::<ScanState>();
        state.rerank.heap = None;
        state.remember_demand();
        if state.started && state.rerank.prepared.is_some() {
            // What ivfflat.rerank_factor trades: SET client_min_messages = debug1 shows it.
            pgrx::debug1!(
                "ivfflat scan: {} lists probed, {} rows estimated from codes, {} re-ranked",
                state.probed_count,
                state.rerank.queue.queued(),
                state.rerank.reranked
            );
        }
    }
}

/// Reads the query vector from the ORDER BY key, normalised for cosine.
///
/// # Safety
/// `scan` must be an ordered ivfflat scan with its order-by key set.
unsafe fn query_value(scan: &pg_sys::IndexScanDescData, cache: &IndexCache) -> Option<Vec<f32>> {
    // SAFETY: guaranteed by the caller.
    let key = unsafe { &*scan.orderByData };
    if key.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
        return None;
    }
    // SAFETY: a non-NULL vector datum.
    let value = unsafe { crate::types::vector::detoast(key.sk_argument) };
    let dim = cache.meta.dimensions as usize;
    if value.len() != dim {
        crate::error::raise(VectorError::DimensionMismatch(dim, value.len()), None);
    }
    let mut query = value.to_vec();
    if cache.meta.metric == Metric::Cosine {
        // A zero query has no direction: every row is then at the same distance, as in pgvector.
        normalize(&mut query);
    }
    Some(query)
}

/// The index's ordering distance: squared L2, or the negative inner product (of unit vectors, for
/// cosine), with the kernels chosen for this CPU.
fn list_distance(
    kernels: &distance::Kernels,
    metric: Metric,
    query: &[f32],
    vector: &[f32],
) -> f32 {
    match metric {
        Metric::L2 => kernels.l2_squared(query, vector),
        Metric::InnerProduct | Metric::Cosine => -kernels.dot(query, vector),
    }
}

impl ScanState {
    fn start(&mut self, scan: &pg_sys::IndexScanDescData) {
        let index = scan.indexRelation;
        let cache = cache::get(index);
        let meta = cache.meta;
        // SAFETY: the scan's order-by key was set by amrescan.
        self.query = unsafe { query_value(scan, &cache) };
        let lists = meta.lists as usize;
        self.probes = (PROBES.get().max(1) as usize).min(lists);
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
        self.threshold = radius_keys
            .iter()
            .map(|key| threshold(meta.metric, key))
            .reduce(f32::min);
        self.filter = (!filter_keys.is_empty()).then(|| {
            // SAFETY: keys on this index's filter columns.
            unsafe { cache.filters.query(&filter_keys) }
        });
        // With index conditions the scan goes on to further matching lists whenever it runs out of
        // rows (skipping the others costs little), so that the LIMIT fills whenever enough matching
        // rows exist; with a radius it goes on through every list that can hold a row inside it.
        let mode = ITERATIVE_SCAN.get();
        let conditions = self.filter.is_some() || self.threshold.is_some();
        let mut max_probes = match (conditions, mode) {
            _ if self
                .filter
                .as_ref()
                .is_some_and(FilterQuery::is_unsatisfiable) =>
            {
                0
            }
            (true, _) => lists,
            (false, IterativeScan::Off) => self.probes,
            (false, IterativeScan::RelaxedOrder | IterativeScan::StrictOrder) => {
                (MAX_PROBES.get().max(1) as usize)
                    .max(self.probes)
                    .min(lists)
            }
        };
        self.probed.clear();
        self.probed.resize(lists, false);
        self.probed_count = 0;
        let dim = meta.dimensions as usize;
        let kernels = distance::kernels();
        let centroid = |list: u32| &cache.centroids[list as usize * dim..(list as usize + 1) * dim];
        // The nearest any row of each list can be, when a radius or strict order needs it.
        let needs_bounds =
            max_probes > 0 && (self.threshold.is_some() || mode == IterativeScan::StrictOrder);
        let lower_bounds: Vec<f32> = match &self.query {
            Some(query) if needs_bounds && meta.radii => cache::read_radii(index, &meta)
                .into_iter()
                .enumerate()
                .map(|(list, radius)| {
                    bounds::lower_bound(
                        meta.metric,
                        query,
                        centroid(list as u32),
                        radius,
                        meta.max_norm,
                    )
                })
                .collect(),
            // No radii (an index built before them) or no query: nothing to prune by.
            _ if needs_bounds => vec![f32::NEG_INFINITY; lists],
            _ => Vec::new(),
        };
        // Lists that can hold a row inside the radius; the others are never read.
        let eligible = |list: u32| match self.threshold {
            Some(limit) => lower_bounds[list as usize] <= limit,
            None => true,
        };
        self.strict = (mode == IterativeScan::StrictOrder && max_probes > 0).then(|| {
            let mut by_bound: Vec<(f32, u32)> = (0..lists as u32)
                .filter(|&list| eligible(list))
                .map(|list| (lower_bounds[list as usize], list))
                .collect();
            by_bound.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            StrictOrder {
                by_bound,
                cursor: 0,
            }
        });
        // Lists nearest first; a NULL query keeps list order (every distance is 0).
        let mut order: Vec<(f32, u32)> = Vec::new();
        match &self.query {
            Some(q) if max_probes > 0 => cache.ranker.nearest(
                meta.metric,
                q,
                max_probes,
                eligible,
                |list| list_distance(kernels, meta.metric, q, centroid(list)),
                &mut order,
            ),
            Some(_) => {}
            None => order.extend(
                (0..lists as u32)
                    .filter(|&list| max_probes > 0 && eligible(list))
                    .take(max_probes)
                    .map(|list| (0.0, list)),
            ),
        }
        max_probes = max_probes.min(
            order
                .len()
                .max(self.strict.as_ref().map_or(0, |s| s.by_bound.len())),
        );
        self.max_probes = max_probes;
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        self.lists.clear();
        self.lists.extend(order.iter().map(|(_, list)| *list));
        self.next_list = 0;
        self.candidates.clear();
        self.rerank.queue.clear();
        self.rerank.queue.expect_rows(expected_demand());
        self.returned = 0;
        // In an index that spills, a row of the result usually sits in two probed lists, and is
        // missed only if both of its estimates are too high: each code's bound can be narrower for
        // the same certainty. Independent estimates would allow the factor whose tail probability,
        // squared, is the factor's own (1.79 for 3); dividing by sqrt(2) (2.12 for 3) leaves room
        // for the correlation between them. Real set, lists 250, 1,000 queries: at probes = lists
        // factor 2 kept every row (the unspilled index needs 3) and halved the re-ranks.
        self.rerank.factor = RERANK_FACTOR.get() as f32
            / if meta.spill {
                std::f32::consts::SQRT_2
            } else {
                1.0
            };
        self.rerank.reranked = 0;
        self.rerank.seen.clear();
        self.rerank.prepared = match (&cache.quantizer, &self.query) {
            (Some(quantizer), Some(query)) => {
                let mut prepared = quantizer.new_query();
                quantizer.prepare_query(query, &mut prepared);
                Some(prepared)
            }
            (Some(quantizer), None) => Some(quantizer.new_query()),
            (None, _) => None,
        };
        if cache.quantizer.is_some() && !meta.keeps_vectors() && self.rerank.heap.is_none() {
            if scan.heapRelation.is_null() {
                raise_with(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "an ivfflat index with rerank = 'heap' can only be scanned with its table"
                        .into(),
                    None,
                );
            }
            self.rerank.heap = Some(HeapFetch::new(scan.heapRelation));
        }
        self.cache = Some(cache);
        self.started = true;
    }

    /// Probes the next `probes` lists; false when every allowed list has been probed.
    ///
    /// With index conditions, lists whose summary rules the conditions out are skipped, and a batch
    /// goes on until it has probed `probes` lists holding matching rows and collected as many
    /// matching candidates as an unfiltered batch would examine (`probes` lists' worth of rows):
    /// rows matching a selective condition lie farther from the query, spread over more lists, and a
    /// batch of only `probes` lists would leave nearer matches for later batches, which strict order
    /// then has to drop.
    fn probe_next_batch(&mut self, index: pg_sys::Relation) -> bool {
        if self.next_list >= self.lists.len() || self.probed_count >= self.max_probes {
            return false;
        }
        let cache = self.cache.clone().expect("scan started");
        let wanted_candidates = if self.filter.is_some() {
            self.probes as f64 * rows_per_list(index, &cache)
        } else {
            0.0
        };
        let mut probed = 0;
        let mut collected = 0usize;
        while (probed < self.probes || (collected as f64) < wanted_candidates)
            && self.next_list < self.lists.len()
            && self.probed_count < self.max_probes
        {
            let list = self.lists[self.next_list];
            self.next_list += 1;
            if self.probed[list as usize] {
                continue;
            }
            let following = self.lists.get(self.next_list).copied().filter(|&next| {
                self.filter.is_none() && probed + 1 < self.probes && !self.probed[next as usize]
            });
            let added = self.visit_list(index, &cache, list, following);
            collected += added.unwrap_or(0);
            if added.is_some_and(|n| n > 0) || (self.filter.is_none() && added.is_some()) {
                probed += 1;
            }
        }
        // A head read ahead is for the very next list only, never for a later batch.
        self.head_ahead = None;
        true
    }

    /// Reads a list (unless its filter summary rules the index conditions out) and marks it probed;
    /// returns how many candidates it added, or None when skipped. `following` is the list to be
    /// read next, if known (its first page is prefetched).
    fn visit_list(
        &mut self,
        index: pg_sys::Relation,
        cache: &IndexCache,
        list: u32,
        following: Option<u32>,
    ) -> Option<usize> {
        self.probed[list as usize] = true;
        self.probed_count += 1;
        if let Some(filter) = &self.filter {
            pgrx::check_for_interrupts!();
            if !filter.list_may_match(&read_summary(index, &cache.meta, list)) {
                return None;
            }
        }
        Some(self.probe_list(index, cache, list, following))
    }

    /// strict_order: the smallest lower bound among the lists not read yet (within max_probes).
    fn next_bound(&mut self) -> Option<f32> {
        if self.probed_count >= self.max_probes {
            return None;
        }
        let strict = self.strict.as_mut()?;
        while strict
            .by_bound
            .get(strict.cursor)
            .is_some_and(|&(_, list)| self.probed[list as usize])
        {
            strict.cursor += 1;
        }
        strict.by_bound.get(strict.cursor).map(|&(bound, _)| bound)
    }

    /// strict_order: reads lists, nearest possible first, until no unread list can hold a row
    /// nearer than the nearest candidate.
    fn settle_order(&mut self, index: pg_sys::Relation) {
        let cache = self.cache.clone().expect("scan started");
        while let Some(bound) = self.next_bound() {
            if self
                .nearest_possible()
                .is_some_and(|nearest| nearest <= bound)
            {
                return;
            }
            let strict = self.strict.as_ref().expect("strict_order");
            let list = strict.by_bound[strict.cursor].1;
            self.visit_list(index, &cache, list, None);
        }
    }

    /// The nearest a row read so far and not handed out can be: its exact distance, or for rows
    /// waiting to be re-ranked, their lower bound.
    fn nearest_possible(&mut self) -> Option<f32> {
        let exact = self.candidates.peek_nearest().map(|(d, _)| d);
        let bound = self.rerank.queue.peek_bound();
        match (exact, bound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether strict order still needs lists read before the nearest row can be handed out.
    fn unsettled(&mut self) -> bool {
        let nearest = self.candidates.peek_nearest().map(|(d, _)| d);
        match self.next_bound() {
            Some(bound) => nearest.is_none_or(|d| d > bound),
            None => false,
        }
    }

    /// Re-ranks rows, lowest bound first, until the nearest exact distance is no greater than any
    /// bound left (or none is left).
    fn resolve(&mut self, scan: &pg_sys::IndexScanDescData) {
        let cache = self.cache.clone().expect("scan started");
        let threshold = self.threshold.unwrap_or(f32::INFINITY);
        // Rows after the head already prefetched (by an earlier turn of this loop).
        let mut prefetched = 0usize;
        while let Some(bound) = self.rerank.queue.peek_bound() {
            if self
                .candidates
                .peek_nearest()
                .is_some_and(|(nearest, _)| nearest <= bound)
            {
                return;
            }
            let (_, [tid, location]) = self.rerank.queue.pop().expect("peeked");
            if cache.meta.spill && !self.rerank.seen.insert(tid) {
                continue;
            }
            self.rerank.reranked += 1;
            // The next row's page and vector load while this one's distance is computed: each
            // re-ranked row is otherwise a few memory round trips in a row (buffer header, page
            // header and special area, then the vector). Rows come up one place per turn: only
            // the one new to the window is prefetched.
            let skip = prefetched.saturating_sub(1);
            prefetched = 0;
            for [_, next] in self.rerank.queue.upcoming(RERANK_PREFETCH) {
                if next != NO_LOCATION && prefetched >= skip {
                    prefetch_vector(&cache, unpack_location(next));
                }
                prefetched += 1;
            }
            let tid = Tid::from_u64(tid);
            let location = (location != NO_LOCATION).then(|| unpack_location(location));
            if let Some(distance) = self.exact_distance(scan, &cache, tid, location) {
                if distance <= threshold {
                    self.candidates.push(distance, tid.to_u64());
                }
            }
        }
    }

    /// The exact distance of a quantized row, from its vector in the index or the table; None when
    /// the row is gone (its vector entry was vacuumed or reused, or no version is visible).
    fn exact_distance(
        &mut self,
        scan: &pg_sys::IndexScanDescData,
        cache: &IndexCache,
        tid: Tid,
        location: Option<Location>,
    ) -> Option<f32> {
        pgrx::check_for_interrupts!();
        let index = scan.indexRelation;
        let query = self.query.as_deref()?;
        let dim = cache.meta.dimensions as usize;
        let vector = &mut self.rerank.vector;
        match location {
            Some(location) => {
                let metric = cache.meta.metric;
                let mut recent = cache.recent_buffers.borrow_mut();
                return super::storage::with_located_vector(
                    index,
                    location,
                    dim,
                    Some(&mut recent),
                    vector,
                    |owner, dead, values| {
                        (!dead && owner == tid)
                            .then(|| list_distance(distance::kernels(), metric, query, values))
                    },
                )
                .or_corrupt(index);
            }
            None => {
                let attribute = cache.heap_attribute?;
                let heap = self.rerank.heap.as_mut()?;
                if !heap.vector(tid, scan.xs_snapshot, attribute, vector) {
                    return None;
                }
                if vector.len() != dim {
                    return None;
                }
                if cache.meta.metric == Metric::Cosine && !normalize(vector) {
                    return None;
                }
            }
        }
        Some(list_distance(
            distance::kernels(),
            cache.meta.metric,
            query,
            vector,
        ))
    }

    /// Adds the list's live (and, with index conditions, matching) entries to the candidates;
    /// returns how many. `following`: as for visit_list.
    fn probe_list(
        &mut self,
        index: pg_sys::Relation,
        cache: &IndexCache,
        list: u32,
        following: Option<u32>,
    ) -> usize {
        pgrx::check_for_interrupts!();
        let meta = &cache.meta;
        let head = match self.head_ahead.take() {
            Some((ahead_list, head)) if ahead_list == list => head,
            _ => cache::read_directory_hinted(index, cache, list).head,
        };
        // The next list's head, read now so that its first page loads during this list's last.
        let after = following.map_or(INVALID_BLOCK, |next| {
            let head = cache::read_directory_hinted(index, cache, next).head;
            self.head_ahead = Some((next, head));
            head
        });
        let format = meta.entry_format();
        let metric = meta.metric;
        let query = self.query.as_deref();
        let kernels = distance::kernels();
        let candidates = &mut self.candidates;
        let filter = self.filter.as_ref();
        let threshold = self.threshold.unwrap_or(f32::INFINITY);
        let rerank = &mut self.rerank;
        if let (Some(prepared), Some(quantizer), Some(q)) =
            (rerank.prepared.as_mut(), cache.quantizer.as_ref(), query)
        {
            let dim = meta.dimensions as usize;
            let centroid = &cache.centroids[list as usize * dim..(list as usize + 1) * dim];
            quantizer.prepare_list(q, centroid, prepared);
            if filter.is_none() {
                let prepared = self.rerank.prepared.take().expect("prepared above");
                let added = self.probe_codes(index, cache, head, after, &prepared);
                self.rerank.prepared = Some(prepared);
                return added;
            }
        }
        let mut added = 0;
        let mut bad_tid = None;
        let reader = &mut self.reader;
        reader.reset();
        for_each_page(index, cache, head, after, |page, ahead| {
            // Flat entries are read faster than a progressive prefetch would pace itself.
            pgivf_core::distance::prefetch(ahead);
            reader
                .feed(page, format, |entry| {
                    if entry.flags.is_dead() || filter.is_some_and(|f| !f.matches(entry.filters)) {
                        return;
                    }
                    if !valid_heap_tid(entry.tid) {
                        bad_tid = Some(entry.tid);
                    }
                    if let (Some(prepared), Some(_)) = (rerank.prepared.as_ref(), query) {
                        let bounds = prepared.estimate(entry.code).bounds(rerank.factor);
                        if bounds[0] > threshold {
                            return;
                        }
                        let location = entry.location.map_or(NO_LOCATION, |l| {
                            (u64::from(l.block) << 16) | u64::from(l.offset)
                        });
                        rerank.queue.push(bounds, [entry.tid.to_u64(), location]);
                        added += 1;
                        return;
                    }
                    if entry.flags.is_spilled() {
                        // Without a query to re-rank by, the row's first entry stands for it.
                        return;
                    }
                    let d = query.map_or(0.0, |q| list_distance(kernels, metric, q, entry.vector));
                    if d > threshold {
                        return;
                    }
                    candidates.push(d, entry.tid.to_u64());
                    added += 1;
                })
                .or_corrupt(index);
            if let Some(tid) = bad_tid {
                // Handing such a TID to the executor would make it read (or, for block 0xFFFFFFFF,
                // PostgreSQL 15's P_NEW, even extend) the table.
                crate::error::raise_format(
                    &relation_name(index),
                    page::FormatError::Corrupted(if tid.offset == 0 {
                        "an entry has heap offset 0"
                    } else {
                        "an entry has an invalid heap TID"
                    }),
                );
            }
        });
        added
    }

    /// probe_list for quantized lists without filter conditions: each entry's lower bound straight
    /// from its bytes, with the estimator fixed for the whole list.
    fn probe_codes(
        &mut self,
        index: pg_sys::Relation,
        cache: &IndexCache,
        head: u32,
        after: u32,
        prepared: &PreparedQuery,
    ) -> usize {
        let format = cache.meta.entry_format();
        let threshold = self.threshold.unwrap_or(f32::INFINITY);
        let rerank = &mut self.rerank;
        let factor = rerank.factor;
        let mut added = 0;
        let max_offset = super::build::MAX_HEAP_TUPLES_PER_PAGE as u16;
        let reader = &mut self.reader;
        reader.reset();
        for_each_page(index, cache, head, after, |page, ahead| {
            let mut bad_tid = false;
            let mut ahead = Some(ahead);
            reader
                .feed_raw(page, format, |entries| {
                    // The next page loads while this page's codes are computed (the first run
                    // handed out may be one entry carried over from the previous page).
                    let ahead = if entries.len() > format.stride() {
                        ahead.take().unwrap_or_default()
                    } else {
                        &[]
                    };
                    let queued = prepared.queue_entries(
                        entries,
                        ahead,
                        format,
                        factor,
                        threshold,
                        max_offset,
                        &mut rerank.queue,
                    );
                    added += queued.rows;
                    bad_tid |= queued.bad_tid;
                })
                .or_corrupt(index);
            if bad_tid {
                crate::error::raise_format(
                    &relation_name(index),
                    page::FormatError::Corrupted("an entry has an invalid heap TID"),
                );
            }
        });
        added
    }
}

/// Calls `visit` with each page of the list whose first page is `head`, in chain order, each
/// share-locked while it is visited, and with the bytes of the buffer that last held the page read
/// next: the list's next page, or after its last page block `after` (the next list's first page,
/// or INVALID_BLOCK). The scan is bound by memory and the CPU's own prefetcher does not follow a
/// chain of buffers, so `visit` prefetches those bytes; they may hold another block by now, or be
/// empty when the scan has no hint for the block: for prefetching only, never to be read.
fn for_each_page(
    index: pg_sys::Relation,
    cache: &IndexCache,
    head: u32,
    after: u32,
    mut visit: impl FnMut(&[u8], &[u8]),
) {
    let mut recent = cache.recent_buffers.borrow_mut();
    let mut walk = ChainWalk::new(index);
    let mut block = head;
    while block != INVALID_BLOCK {
        walk.step();
        let buffer = Locked::read_recent(index, block, &mut recent);
        let page = buffer.page();
        let next = page::read_special(page).or_corrupt(index).next;
        let following = if next == INVALID_BLOCK { after } else { next };
        let hint = recent.get(following as usize).copied().unwrap_or_default();
        // The next page's buffer descriptor too: pinning and locking it is a cache miss otherwise.
        pgivf_core::distance::prefetch(descriptor_bytes(hint));
        visit(page, buffer_bytes(hint));
        block = next;
    }
}

/// The largest ordering key (squared L2, or negative inner product) of a row inside a radius key's
/// distance (radius.rs): `<->` is the square root of the key, `<#>` the key itself, and `<=>` one
/// plus it. A little slack keeps rows on the boundary; the query's own condition decides them.
fn threshold(metric: Metric, key: &pg_sys::ScanKeyData) -> f32 {
    let flags = key.sk_flags as u32;
    if flags & pg_sys::SK_ISNULL != 0 {
        return f32::NEG_INFINITY; // distance < NULL holds for no row
    }
    if flags & pg_sys::SK_SEARCHARRAY != 0 {
        return f32::INFINITY; // `<<op>> ANY(...)`, written by hand: no radius to prune by
    }
    let radius = f64::from_bits(key.sk_argument.value() as u64);
    if radius.is_nan() {
        return f32::INFINITY; // float8 NaN sorts above every number: every row is inside
    }
    let slack = |x: f64| x + x.abs() * 1e-5 + 1e-6;
    let limit = match metric {
        Metric::L2 if radius < 0.0 => f64::NEG_INFINITY,
        Metric::L2 => slack(radius) * slack(radius),
        Metric::InnerProduct => slack(radius),
        Metric::Cosine => slack(radius - 1.0),
    };
    limit as f32
}

/// Average rows per list: the index's row count (pg_class.reltuples, kept by VACUUM and ANALYZE, or
/// the build's count when larger) over its lists.
fn rows_per_list(index: pg_sys::Relation, cache: &IndexCache) -> f64 {
    // SAFETY: an open relation.
    let reltuples = f64::from(unsafe { (*(*index).rd_rel).reltuples });
    reltuples.max(cache.meta.rows_at_build as f64) / f64::from(cache.meta.lists)
}

/// Heap TIDs PostgreSQL could have given us: a real block and a line pointer in 1..=MaxHeapTuplesPerPage.
pub fn valid_heap_tid(tid: Tid) -> bool {
    tid.block != pg_sys::InvalidBlockNumber
        && tid.offset >= 1
        && tid.offset as usize <= super::build::MAX_HEAP_TUPLES_PER_PAGE
}

fn relation_name(index: pg_sys::Relation) -> String {
    // SAFETY: an open relation.
    unsafe {
        std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

thread_local! {
    /// Rows handed out by this backend's last scans, oldest first. A quantized scan keeps sorted
    /// only the rows that may be among as many nearest as the most of these
    /// (`RerankQueue::expect_rows`): under `LIMIT 10` about a dozen, and the rest of the probed rows
    /// wait unsorted. Only speed depends on the guess: a scan that reads further sorts them in.
    static DEMAND: std::cell::Cell<[usize; 8]> = const {
        std::cell::Cell::new([pgivf_core::quant::queue::OVERFLOW_AFTER; 8])
    };
}

impl ScanState {
    /// Adds the rows this scan handed out to the backend's last scans, when it ran: at its end
    /// or before a rescan starts it again.
    fn remember_demand(&self) {
        if !self.started {
            return;
        }
        DEMAND.with(|demand| {
            let mut recent = demand.get();
            recent.rotate_left(1);
            recent[recent.len() - 1] = self.returned;
            demand.set(recent);
        });
    }
}

/// Rows the next scan is expected to hand out: the most of the last scans', and two more.
fn expected_demand() -> usize {
    DEMAND.with(|demand| demand.get().into_iter().max().unwrap_or(0) + 2)
}

/// Rows whose vectors a re-rank prefetches ahead of it.
const RERANK_PREFETCH: usize = 4;

/// A vector location as the re-rank queue packs it (block << 16 | offset).
fn unpack_location(packed: u64) -> Location {
    Location {
        block: (packed >> 16) as u32,
        offset: packed as u16,
    }
}

/// Prefetches what reading the vector at `location` touches, when the scan's buffer hints know the
/// buffer of its page (it may hold another block by now, which only wastes the prefetch).
fn prefetch_vector(cache: &IndexCache, location: Location) {
    let Some(&buffer) = cache.recent_buffers.borrow().get(location.block as usize) else {
        return;
    };
    let page = buffer_bytes(buffer);
    if page.is_empty() {
        return;
    }
    pgivf_core::distance::prefetch(descriptor_bytes(buffer));
    let dim = cache.meta.dimensions as usize;
    let [header, special, vector] = page::vector_touches(location, dim);
    pgivf_core::distance::prefetch(&page[header]);
    pgivf_core::distance::prefetch(&page[special]);
    // The vector is read last and is many cache lines: to L2, so that the first-level cache's
    // few miss buffers do not hold up the rows before it.
    pgivf_core::distance::prefetch_to_l2(&page[vector]);
}

/// The descriptor of `buffer` (a shared buffer: `buffer` in 1..=NBuffers), for prefetching only:
/// pinning and locking the buffer writes to it, and it is a cache miss of its own.
fn descriptor_bytes(buffer: pg_sys::Buffer) -> &'static [u8] {
    if buffer <= 0 {
        return &[];
    }
    // SAFETY: an address inside the buffer descriptor array (buffer - 1 < NBuffers), computed
    // and handed to prefetch instructions only, never read.
    unsafe {
        std::slice::from_raw_parts(
            pg_sys::BufferDescriptors
                .add(buffer as usize - 1)
                .cast::<u8>(),
            std::mem::size_of::<pg_sys::BufferDescPadded>(),
        )
    }
}

/// The bytes of `buffer`, a shared buffer this backend saw holding a block of the index, for
/// prefetching only: it may hold another block by now, and it is neither pinned nor locked.
fn buffer_bytes(buffer: pg_sys::Buffer) -> &'static [u8] {
    if buffer <= 0 {
        return &[]; // no hint, or a local buffer
    }
    // SAFETY: computing a shared buffer's address (BufferBlocks + (buffer - 1) * BLCKSZ) reads
    // nothing; the slice is only handed to prefetch instructions, and prefetching any address
    // inside the shared buffer pool is harmless.
    unsafe {
        std::slice::from_raw_parts(
            pg_sys::BufferGetBlock(buffer).cast::<u8>(),
            page::BLOCK_SIZE,
        )
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
        count_index_scan(scan.indexRelation);
        if scan.orderByData.is_null() || scan.numberOfOrderBys == 0 {
            raise_with(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "cannot scan ivfflat index without order".into(),
                None,
            );
        }
        // Results are computed up front and no buffer pin is kept while the executor visits the heap,
        // which only an MVCC snapshot makes safe (see PostgreSQL's "Index Locking Considerations").
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
        state.probe_next_batch(scan.indexRelation);
    }
    loop {
        if state.strict.is_some() {
            state.settle_order(scan.indexRelation);
        }
        state.resolve(scan);
        // Re-ranking may have replaced a bound by a larger exact distance than a list not read yet
        // can hold.
        if state.strict.is_some() && state.unsettled() {
            continue;
        }
        if let Some((_, payload)) = state.candidates.pop_nearest() {
            scan.xs_heaptid = item_pointer(Tid::from_u64(payload));
            // Filter values are compared by hash, which can collide: the executor rechecks them.
            scan.xs_recheck = state.filter.is_some();
            scan.xs_recheckorderby = false;
            state.returned += 1;
            return true;
        }
        if !state.probe_next_batch(scan.indexRelation) {
            return false;
        }
    }
}

/// PostgreSQL's pgstat_count_index_scan macro: counts the scan in pg_stat_user_indexes.idx_scan.
fn count_index_scan(index: pg_sys::Relation) {
    // SAFETY: an open relation; pgstat_assoc_relation attaches its statistics entry when enabled.
    unsafe {
        let rel = &mut *index;
        if rel.pgstat_info.is_null() {
            if !rel.pgstat_enabled {
                return;
            }
            pg_sys::pgstat_assoc_relation(index);
        }
        if !rel.pgstat_info.is_null() {
            (*rel.pgstat_info).t_counts.t_numscans += 1;
        }
    }
}
