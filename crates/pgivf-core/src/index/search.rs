//! Ordered searches: which lists to probe and in what order ([`ScanPlan`]), then rows out in exact
//! distance order ([`Search`]).
//!
//! The query's distance to every centroid picks the lists to probe, nearest first. Probing a list
//! streams its pages and computes each entry's distance straight from the page bytes with the SIMD
//! kernels (no call per row into PostgreSQL and no allocation per row); the candidates go into a
//! lazy top-k that hands them out in exact distance order, sorting only as far as the caller
//! reads. With an iterative scan, running out of candidates (a WHERE clause rejected them) probes
//! the next lists, up to a budget.
//!
//! Quantized lists hold codes: a probe estimates each row's distance from its code and keeps a
//! lower bound (the estimate less `rerank_factor` standard errors). Rows are re-ranked with their
//! exact distance, from the vector in the index or in the table, lowest bound first, and a row is
//! handed out once its exact distance is no greater than every bound still waiting: rows come out
//! in exact order with exact distances, and only rows that may belong to the result are re-ranked.

use std::collections::{HashSet, TryReserveError};
use std::hash::BuildHasherDefault;

use thiserror::Error;

use crate::distance;
use crate::filter::FilterQuery;
use crate::metric::Metric;
use crate::page::{self, FormatError, Location, Meta, StreamReader, Tid, INVALID_BLOCK};
use crate::quant::queue::{RerankQueue, NO_LOCATION, OVERFLOW_AFTER};
use crate::quant::PreparedQuery;
use crate::store::{Hint, PageStore};
use crate::topk::Candidates;

use super::chain;
use super::layout;
use super::loaded::LoadedIndex;

/// `ivfflat.iterative_scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Iterative {
    #[default]
    Off,
    /// Further lists when the first ones run out of rows; rows of a later batch may be nearer
    /// than rows already handed out.
    RelaxedOrder,
    /// A row is handed out only once no unread list can hold a nearer one, so rows come out in
    /// exact distance order however many batches the scan takes (and, unlike dropping rows that
    /// arrive out of order, the LIMIT still fills).
    StrictOrder,
}

/// A radius condition on the ordering distance (`embedding <<->> r`: the planner's addition for
/// `WHERE embedding <-> q < r ORDER BY embedding <-> q`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Radius {
    /// `distance < NULL`: no row.
    Nothing,
    /// Nothing to prune by (`<<op>> ANY(...)` written by hand).
    Everything,
    /// The operator's distance is at most this.
    Within(f64),
}

/// The settings and statistics a search goes by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `ivfflat.probes`.
    pub probes: usize,
    pub iterative: Iterative,
    /// `ivfflat.max_probes`.
    pub max_probes: usize,
    /// `ivfflat.rerank_factor`.
    pub rerank_factor: f64,
    /// The index's rows as the planner knows them (pg_class.reltuples).
    pub index_rows: f64,
    /// Rows the search is expected to hand out ([`Demand::expected`]).
    pub expected_rows: usize,
    /// Bytes the search's buffers may take before it stops reading lists beyond its first
    /// `probes` (`work_mem` × `ivfflat.scan_mem_multiplier`): an iterative scan then ends as if
    /// it had reached `max_probes`.
    pub memory_limit: usize,
}

/// Why a search failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SearchError {
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Growing the search's buffers by `bytes` failed: the system had no memory for it. (An
    /// allocation that fails inside a push would abort the process.)
    #[error("out of memory")]
    OutOfMemory { bytes: usize },
}

impl SearchError {
    fn out_of_memory(bytes: usize) -> impl FnOnce(TryReserveError) -> SearchError {
        move |_| SearchError::OutOfMemory { bytes }
    }
}

/// Where a quantized row's full vector is when it is not in the index (`rerank = 'heap'`).
pub trait RowSource {
    /// The vector of the table row at `tid` visible to the search, as the table holds it, into
    /// `out`; false when no version is visible.
    fn vector(&mut self, tid: Tid, out: &mut Vec<f32>) -> bool;
}

/// A search without a table to read from: quantized indexes that re-rank from the index.
pub struct NoRows;

impl RowSource for NoRows {
    fn vector(&mut self, _tid: Tid, _out: &mut Vec<f32>) -> bool {
        false
    }
}

/// Which lists a search reads, in what order, and how many at most.
#[derive(Debug, Default)]
pub struct ScanPlan {
    pub iterative: Iterative,
    /// Lists to probe, nearest centroid first, and each one's centroid's ordering key.
    pub lists: Vec<u32>,
    pub centroid_keys: Vec<f32>,
    /// Most lists the search may read.
    pub max_probes: usize,
    /// Lists per batch.
    pub probes: usize,
    /// With strict order: (lower bound on the ordering key of the list's rows, list), ascending.
    pub by_bound: Option<Vec<(f32, u32)>>,
    /// With a radius: the largest ordering key a row may have.
    pub threshold: Option<f32>,
}

impl ScanPlan {
    /// Plans a search for `query` (as the index compares it; None for a NULL query, which puts
    /// every row at distance 0, as in pgvector).
    pub fn new<S: PageStore>(
        store: &S,
        index: &LoadedIndex,
        query: Option<&[f32]>,
        radii: &[Radius],
        filter: Option<&FilterQuery>,
        settings: &Settings,
    ) -> Result<ScanPlan, FormatError> {
        let meta = index.meta();
        let lists = meta.lists as usize;
        let probes = settings.probes.clamp(1, lists);
        let threshold = radii
            .iter()
            .map(|&radius| radius_threshold(&meta, query, radius))
            .reduce(f32::min);
        // With index conditions the search goes on to further matching lists whenever it runs
        // out of rows (skipping the others costs little), so that the LIMIT fills whenever
        // enough matching rows exist; with a radius it goes on through every list that can hold
        // a row inside it.
        let conditions = filter.is_some() || threshold.is_some();
        let mut max_probes = if filter.is_some_and(FilterQuery::is_unsatisfiable) {
            0
        } else if conditions {
            lists
        } else if settings.iterative == Iterative::Off {
            probes
        } else {
            settings.max_probes.max(1).max(probes).min(lists)
        };
        // The nearest any row of each list can be, when a radius or strict order needs it.
        let needs_bounds =
            max_probes > 0 && (threshold.is_some() || settings.iterative == Iterative::StrictOrder);
        let lower_bounds: Vec<f32> = match query {
            Some(query) if needs_bounds && meta.radii => layout::read_radii(store, &meta)?
                .into_iter()
                .enumerate()
                .map(|(list, radius)| {
                    meta.metric.lower_bound(
                        query,
                        index.centroid(list as u32),
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
        let eligible =
            |list: u32| threshold.is_none_or(|limit| lower_bounds[list as usize] <= limit);
        let by_bound =
            (settings.iterative == Iterative::StrictOrder && max_probes > 0).then(|| {
                let mut by_bound: Vec<(f32, u32)> = (0..lists as u32)
                    .filter(|&list| eligible(list))
                    .map(|list| (lower_bounds[list as usize], list))
                    .collect();
                by_bound.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                by_bound
            });
        let mut order: Vec<(f32, u32)> = Vec::new();
        match query {
            Some(q) if max_probes > 0 => {
                let kernels = distance::kernels();
                index.ranker.nearest(
                    meta.metric,
                    q,
                    max_probes,
                    eligible,
                    |list| meta.metric.order_key(kernels, q, index.centroid(list)),
                    &mut order,
                )
            }
            Some(_) => {}
            // A NULL query keeps list order: every distance is 0.
            None => order.extend(
                (0..lists as u32)
                    .filter(|&list| max_probes > 0 && eligible(list))
                    .take(max_probes)
                    .map(|list| (0.0, list)),
            ),
        }
        max_probes = max_probes.min(order.len().max(by_bound.as_ref().map_or(0, Vec::len)));
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(ScanPlan {
            iterative: settings.iterative,
            centroid_keys: order.iter().map(|&(key, _)| key).collect(),
            lists: order.into_iter().map(|(_, list)| list).collect(),
            max_probes,
            probes,
            by_bound,
            threshold,
        })
    }
}

/// The largest ordering key of a row inside `radius` of `query`.
fn radius_threshold(meta: &Meta, query: Option<&[f32]>, radius: Radius) -> f32 {
    match radius {
        Radius::Nothing => f32::NEG_INFINITY,
        Radius::Everything => f32::INFINITY,
        Radius::Within(radius) => {
            let query_norm = query.map_or(0.0, |q| distance::norm_squared_f64(q).sqrt());
            meta.metric.radius_key(
                radius,
                meta.dimensions as usize,
                query_norm,
                f64::from(meta.max_norm),
            )
        }
    }
}

/// Hashes packed heap TIDs, which are unique and need no protection from crafted collisions:
/// a multiply spreads block and offset over every bit, folded so that the low bits the table
/// indexes by see all of them.
#[derive(Default)]
pub struct TidHasher(u64);

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

type TidSet = HashSet<u64, BuildHasherDefault<TidHasher>>;

/// A search's large buffers, which a backend keeps between searches: every execution of a query
/// is a new search, and growing hundreds of kilobytes of fresh memory each time (page faults,
/// copies on growth) costs more than the probing itself.
#[derive(Default)]
pub struct SearchBuffers {
    candidates: Candidates,
    queue: RerankQueue,
    seen: TidSet,
}

/// Largest buffers kept between searches (entries), so that one huge search does not pin its
/// memory.
const SPARE_ENTRIES: usize = 1 << 20;

/// The rows a backend's last searches handed out: a quantized search keeps sorted only the rows
/// that may be among as many nearest as the most of these (under `LIMIT 10` about a dozen); the
/// rest of the probed rows wait unsorted. Only speed depends on the guess: a search that reads
/// further sorts them in.
#[derive(Debug, Clone, Copy)]
pub struct Demand([usize; 8]);

impl Default for Demand {
    fn default() -> Self {
        Demand([OVERFLOW_AFTER; 8])
    }
}

impl Demand {
    pub fn record(&mut self, rows: usize) {
        self.0.rotate_left(1);
        self.0[7] = rows;
    }

    /// Rows the next search is expected to hand out: the most of the last searches', and two more.
    pub fn expected(&self) -> usize {
        self.0.iter().copied().max().unwrap_or(0) + 2
    }
}

/// Rows whose vectors a re-rank prefetches ahead of it.
const RERANK_PREFETCH: usize = 4;

/// Rows a relaxed-order search hands out as an ordinary one would (its first `probes` lists'
/// nearest); their neighbourhood measures how far the probed lists reach (see
/// `Search::widen_relaxed`). The recall users tune `probes` for is recall@10.
const CALIBRATION_ROWS: usize = 10;

/// A search in progress: [`start`](Self::start) it, then take rows with [`next`](Self::next).
pub struct Search {
    metric: Metric,
    /// None for a NULL query: every row is at distance 0, like pgvector.
    query: Option<Vec<f32>>,
    plan: ScanPlan,
    next_list: usize,
    filter: Option<FilterQuery>,
    /// Which lists this search has read (or skipped by their filter summary), and how many.
    probed: Vec<bool>,
    probed_count: usize,
    /// With strict order: where in `plan.by_bound` the unread lists start.
    bound_cursor: usize,
    /// Rows of the index's average list (for filtered batches).
    rows_per_list: f64,
    /// Rows by exact distance (all rows of flat lists; re-ranked rows of quantized ones).
    candidates: Candidates,
    reader: StreamReader,
    /// Quantized lists: rows waiting to be re-ranked, by lower bound.
    queue: RerankQueue,
    prepared: Option<Box<dyn PreparedQuery>>,
    factor: f32,
    vector: Vec<f32>,
    /// A table row's vector as the index stores it.
    stored: Vec<f32>,
    /// In an index that spills, the heap TIDs this search has re-ranked: a row's second code is
    /// met in another list, and the row must be re-ranked (and returned) once.
    seen: TidSet,
    /// The list a plain batch probes next and its head block, read while the list before it was
    /// probed (to prefetch its first page during that list's last).
    head_ahead: Option<(u32, u32)>,
    /// Rows re-ranked, and rows handed out.
    reranked: u64,
    returned: usize,
    /// Relaxed order: the distance of the `CALIBRATION_ROWS`-th row handed out, and how far beyond
    /// it the first batch's lists reached (see `widen_relaxed`).
    reach: Option<f32>,
    last_distance: f32,
    memory_limit: usize,
    /// Whether the search stopped reading lists at `memory_limit`.
    stopped_at_memory_limit: bool,
}

/// What a search did, for `SET client_min_messages = debug1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchStats {
    pub lists_probed: usize,
    pub rows_estimated: u64,
    pub rows_reranked: u64,
    pub rows_returned: usize,
    /// Bytes the search's buffers took at the end.
    pub memory_bytes: usize,
    /// Whether it read fewer lists than allowed because its buffers reached the memory limit.
    pub stopped_at_memory_limit: bool,
}

impl Search {
    /// A search that starts with `buffers`' allocations.
    pub fn new(buffers: SearchBuffers) -> Self {
        Search {
            metric: Metric::L2,
            query: None,
            plan: ScanPlan::default(),
            next_list: 0,
            filter: None,
            probed: Vec::new(),
            probed_count: 0,
            bound_cursor: 0,
            rows_per_list: 0.0,
            candidates: buffers.candidates,
            reader: StreamReader::new(),
            queue: buffers.queue,
            prepared: None,
            factor: 0.0,
            vector: Vec::new(),
            stored: Vec::new(),
            seen: buffers.seen,
            head_ahead: None,
            reranked: 0,
            returned: 0,
            reach: None,
            last_distance: 0.0,
            memory_limit: usize::MAX,
            stopped_at_memory_limit: false,
        }
    }

    /// The search's buffers, emptied, to keep for the next search (None when they grew too big to
    /// keep).
    pub fn into_buffers(mut self) -> Option<SearchBuffers> {
        if self.candidates.capacity() > SPARE_ENTRIES
            || self.queue.capacity() > 2 * SPARE_ENTRIES
            || self.seen.capacity() > SPARE_ENTRIES
        {
            return None;
        }
        self.candidates.clear();
        self.queue.clear();
        self.seen.clear();
        Some(SearchBuffers {
            candidates: self.candidates,
            queue: self.queue,
            seen: self.seen,
        })
    }

    pub fn stats(&self) -> SearchStats {
        SearchStats {
            lists_probed: self.probed_count,
            rows_estimated: self.queue.queued(),
            rows_reranked: self.reranked,
            rows_returned: self.returned,
            memory_bytes: self.memory_bytes(),
            stopped_at_memory_limit: self.stopped_at_memory_limit,
        }
    }

    /// Bytes the search's growing buffers take (candidates, re-rank queue, rows seen).
    pub fn memory_bytes(&self) -> usize {
        self.candidates.memory_bytes()
            + self.queue.memory_bytes()
            + self.seen.capacity() * (size_of::<u64>() + 1)
            + self.probed.capacity()
    }

    /// Whether the search may read lists beyond its first batch: within `max_probes` and, once
    /// its buffers reach the memory limit, no further.
    fn may_read_more(&mut self) -> bool {
        if self.probed_count >= self.plan.max_probes {
            return false;
        }
        // The first `probes` lists are what the user asked for.
        if self.probed_count >= self.plan.probes && self.memory_bytes() > self.memory_limit {
            self.stopped_at_memory_limit = true;
            return false;
        }
        true
    }

    /// Starts (or restarts) a search for `query` (as given, of the index's dimensions; None for
    /// NULL) with radius conditions and filter conditions.
    pub fn start<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
        query: Option<&[f32]>,
        radii: &[Radius],
        filter: Option<FilterQuery>,
        settings: &Settings,
    ) -> Result<(), SearchError> {
        let meta = index.meta();
        self.metric = meta.metric;
        self.query = query.map(|q| meta.metric.prepare_query(q));
        self.plan = ScanPlan::new(
            store,
            index,
            self.query.as_deref(),
            radii,
            filter.as_ref(),
            settings,
        )?;
        self.filter = filter;
        self.next_list = 0;
        self.probed.clear();
        self.probed.resize(meta.lists as usize, false);
        self.probed_count = 0;
        self.bound_cursor = 0;
        self.rows_per_list =
            settings.index_rows.max(meta.rows_at_build as f64) / f64::from(meta.lists);
        self.candidates.clear();
        self.queue.clear();
        self.queue.expect_rows(settings.expected_rows);
        self.returned = 0;
        // In an index that spills, a row of the result usually sits in two probed lists, and is
        // missed only if both of its estimates are too high: each code's bound can be narrower
        // for the same certainty. Independent estimates would allow the factor whose tail
        // probability, squared, is the factor's own (1.79 for 3); dividing by sqrt(2) (2.12 for
        // 3) leaves room for the correlation between them.
        self.factor = settings.rerank_factor as f32
            / if meta.spill {
                std::f32::consts::SQRT_2
            } else {
                1.0
            };
        self.reranked = 0;
        self.seen.clear();
        self.head_ahead = None;
        self.reach = None;
        self.last_distance = 0.0;
        self.memory_limit = settings.memory_limit;
        self.stopped_at_memory_limit = false;
        self.prepared = index.quantizer.as_deref().map(|quantizer| {
            let mut prepared = quantizer.new_query();
            if let Some(query) = &self.query {
                quantizer.prepare_query(query, prepared.as_mut());
            }
            prepared
        });
        self.probe_next_batch(store, index)?;
        Ok(())
    }

    /// The next row's heap TID, in exact distance order; None when the search is done.
    pub fn next<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
        rows: &mut impl RowSource,
    ) -> Result<Option<Tid>, SearchError> {
        loop {
            if self.plan.by_bound.is_some() {
                self.settle_order(store, index)?;
            }
            self.resolve(store, index, rows)?;
            // Re-ranking may have replaced a bound by a larger exact distance than a list not
            // read yet can hold.
            if self.plan.by_bound.is_some() && self.unsettled() {
                continue;
            }
            if self.widen_relaxed(store, index)? {
                continue;
            }
            if let Some((key, payload)) = self.candidates.pop_nearest() {
                self.returned += 1;
                self.last_distance = self.metric.key_distance(key);
                return Ok(Some(Tid::from_u64(payload)));
            }
            if !self.probe_next_batch(store, index)? {
                return Ok(None);
            }
        }
    }

    /// Probes the next `probes` lists; false when every allowed list has been probed.
    ///
    /// With index conditions, lists whose summary rules the conditions out are skipped, and a
    /// batch goes on until it has probed `probes` lists holding matching rows and collected as
    /// many matching candidates as an unfiltered batch would examine (`probes` lists' worth of
    /// rows): rows matching a selective condition lie farther from the query, spread over more
    /// lists, and a batch of only `probes` lists would leave nearer matches for later batches,
    /// which strict order then has to drop.
    fn probe_next_batch<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
    ) -> Result<bool, SearchError> {
        let plan_len = self.plan.lists.len();
        if self.next_list >= plan_len || !self.may_read_more() {
            return Ok(false);
        }
        let probes = self.plan.probes;
        let wanted_candidates = if self.filter.is_some() {
            probes as f64 * self.rows_per_list
        } else {
            0.0
        };
        let mut probed = 0;
        let mut collected = 0usize;
        while (probed < probes || (collected as f64) < wanted_candidates)
            && self.next_list < plan_len
            && self.may_read_more()
        {
            let list = self.plan.lists[self.next_list];
            self.next_list += 1;
            if self.probed[list as usize] {
                continue;
            }
            let following = self
                .plan
                .lists
                .get(self.next_list)
                .copied()
                .filter(|&next| {
                    self.filter.is_none() && probed + 1 < probes && !self.probed[next as usize]
                });
            let added = self.visit_list(store, index, list, following)?;
            collected += added.unwrap_or(0);
            if added.is_some_and(|n| n > 0) || (self.filter.is_none() && added.is_some()) {
                probed += 1;
            }
        }
        // A head read ahead is for the very next list only, never for a later batch.
        self.head_ahead = None;
        Ok(true)
    }

    /// Reads a list (unless its filter summary rules the conditions out) and marks it probed;
    /// returns how many candidates it added, or None when skipped. `following` is the list to be
    /// read next, if known (its first page is prefetched).
    fn visit_list<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
        list: u32,
        following: Option<u32>,
    ) -> Result<Option<usize>, SearchError> {
        self.probed[list as usize] = true;
        self.probed_count += 1;
        if let Some(filter) = &self.filter {
            store.check_interrupts();
            if !filter.list_may_match(&layout::read_summary(store, &index.meta(), list)?) {
                return Ok(None);
            }
        }
        self.probe_list(store, index, list, following).map(Some)
    }

    /// Relaxed order: reads the next lists, nearest centroid first, while the row to hand out lies
    /// farther out than the lists read so far reach; true when it read one.
    ///
    /// The first `probes` lists are what an ordinary search reads for its nearest rows, and their
    /// reach is how far the farthest of their centroids lies beyond the `CALIBRATION_ROWS`-th row
    /// handed out. A WHERE clause the index cannot apply (an iterative scan's reason to be) makes
    /// the executor take many more rows, farther out: each of them is handed out only once every
    /// list whose centroid lies within its distance plus that reach has been read, so that its
    /// neighbourhood is searched as thoroughly as the nearest rows' was. Without this, the first
    /// lists' rows filled the LIMIT while nearer matching rows waited in lists never read.
    fn widen_relaxed<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
    ) -> Result<bool, SearchError> {
        if self.plan.iterative != Iterative::RelaxedOrder
            || self.filter.is_some()
            || self.plan.threshold.is_some()
            || self.returned < CALIBRATION_ROWS
            || !self.may_read_more()
        {
            return Ok(false);
        }
        let metric = self.metric;
        let reach = *self.reach.get_or_insert_with(|| {
            let batch_edge = self.plan.probes.min(self.plan.centroid_keys.len()).max(1) - 1;
            let edge = self
                .plan
                .centroid_keys
                .get(batch_edge)
                .copied()
                .unwrap_or(0.0);
            (metric.key_distance(edge) - self.last_distance).max(0.0)
        });
        let Some((key, _)) = self.candidates.peek_nearest() else {
            return Ok(false);
        };
        let within = metric.key_distance(key) + reach;
        while self.next_list < self.plan.lists.len() {
            let list = self.plan.lists[self.next_list];
            if self.probed[list as usize] {
                self.next_list += 1;
                continue;
            }
            if metric.key_distance(self.plan.centroid_keys[self.next_list]) > within {
                return Ok(false);
            }
            self.next_list += 1;
            self.visit_list(store, index, list, None)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Strict order: the smallest lower bound among the lists not read yet (within the budget).
    fn next_bound(&mut self) -> Option<f32> {
        if !self.may_read_more() {
            return None;
        }
        let by_bound = self.plan.by_bound.as_ref()?;
        while by_bound
            .get(self.bound_cursor)
            .is_some_and(|&(_, list)| self.probed[list as usize])
        {
            self.bound_cursor += 1;
        }
        by_bound.get(self.bound_cursor).map(|&(bound, _)| bound)
    }

    /// Strict order: reads lists, nearest possible first, until no unread list can hold a row
    /// nearer than the nearest candidate.
    fn settle_order<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
    ) -> Result<(), SearchError> {
        while let Some(bound) = self.next_bound() {
            if self
                .nearest_possible()
                .is_some_and(|nearest| nearest <= bound)
            {
                return Ok(());
            }
            let list = self.plan.by_bound.as_ref().expect("strict order")[self.bound_cursor].1;
            self.visit_list(store, index, list, None)?;
        }
        Ok(())
    }

    /// The nearest a row read so far and not handed out can be: its exact distance, or for rows
    /// waiting to be re-ranked, their lower bound.
    fn nearest_possible(&mut self) -> Option<f32> {
        let exact = self.candidates.peek_nearest().map(|(d, _)| d);
        let bound = self.queue.peek_bound();
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

    /// Re-ranks rows, lowest bound first, until the nearest exact distance is no greater than
    /// any bound left (or none is left).
    fn resolve<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
        rows: &mut impl RowSource,
    ) -> Result<(), SearchError> {
        let threshold = self.plan.threshold.unwrap_or(f32::INFINITY);
        let spill = index.meta().spill;
        let dim = index.dimensions();
        // Rows after the head already prefetched (by an earlier turn of this loop).
        let mut prefetched = 0usize;
        while let Some(bound) = self.queue.peek_bound() {
            if self
                .candidates
                .peek_nearest()
                .is_some_and(|(nearest, _)| nearest <= bound)
            {
                return Ok(());
            }
            let (_, [tid, location]) = self
                .queue
                .try_pop()
                .map_err(SearchError::out_of_memory(self.queue.memory_bytes()))?
                .expect("peeked");
            self.candidates
                .try_reserve(1)
                .map_err(SearchError::out_of_memory(self.candidates.memory_bytes()))?;
            if spill {
                self.seen
                    .try_reserve(1)
                    .map_err(SearchError::out_of_memory(
                        self.seen.capacity() * size_of::<u64>(),
                    ))?;
            }
            if spill && !self.seen.insert(tid) {
                continue;
            }
            self.reranked += 1;
            // The next row's page and vector load while this one's distance is computed: each
            // re-ranked row is otherwise a few memory round trips in a row (buffer header, page
            // header and special area, then the vector). Rows come up one place per turn: only
            // the one new to the window is prefetched.
            let skip = prefetched.saturating_sub(1);
            prefetched = 0;
            for [_, next] in self.queue.upcoming(RERANK_PREFETCH) {
                if next != NO_LOCATION && prefetched >= skip {
                    prefetch_vector(store, unpack_location(next), dim);
                }
                prefetched += 1;
            }
            let tid = Tid::from_u64(tid);
            let location = (location != NO_LOCATION).then(|| unpack_location(location));
            if let Some(distance) = self.exact_distance(store, dim, tid, location, rows)? {
                if distance <= threshold {
                    self.candidates.push(distance, tid.to_u64());
                }
            }
        }
        Ok(())
    }

    /// The exact distance of a quantized row, from its vector in the index or the table; None
    /// when the row is gone (its vector entry was vacuumed or reused, or no version is visible).
    fn exact_distance<S: PageStore>(
        &mut self,
        store: &S,
        dim: usize,
        tid: Tid,
        location: Option<Location>,
        rows: &mut impl RowSource,
    ) -> Result<Option<f32>, SearchError> {
        store.check_interrupts();
        let Some(query) = self.query.as_deref() else {
            return Ok(None);
        };
        let metric = self.metric;
        let kernels = distance::kernels();
        if let Some(location) = location {
            return Ok(chain::with_located_vector(
                store,
                location,
                dim,
                &mut self.vector,
                |owner, dead, values| {
                    (!dead && owner == tid).then(|| metric.order_key(kernels, query, values))
                },
            )?);
        }
        let mut vector = std::mem::take(&mut self.vector);
        let stored = &mut self.stored;
        let distance = (rows.vector(tid, &mut vector)
            && vector.len() == dim
            && metric.prepare_row(&vector, stored))
        .then(|| metric.order_key(kernels, query, stored));
        self.vector = vector;
        Ok(distance)
    }

    /// Adds the list's live (and, with index conditions, matching) entries to the candidates;
    /// returns how many. `following`: as for visit_list.
    fn probe_list<S: PageStore>(
        &mut self,
        store: &S,
        index: &LoadedIndex,
        list: u32,
        following: Option<u32>,
    ) -> Result<usize, SearchError> {
        store.check_interrupts();
        let meta = index.meta();
        let head = match self.head_ahead.take() {
            Some((ahead_list, head)) if ahead_list == list => head,
            _ => layout::read_directory(store, &meta, list)?.head,
        };
        // The next list's head, read now so that its first page loads during this list's last.
        let after = match following {
            Some(next) => {
                let head = layout::read_directory(store, &meta, next)?.head;
                self.head_ahead = Some((next, head));
                head
            }
            None => INVALID_BLOCK,
        };
        if let (Some(prepared), Some(quantizer), Some(q)) = (
            self.prepared.as_deref_mut(),
            index.quantizer.as_deref(),
            self.query.as_deref(),
        ) {
            quantizer.prepare_list(q, index.centroid(list), prepared);
            if self.filter.is_none() {
                return self.probe_codes(store, &meta, head, after);
            }
        }
        self.probe_entries(store, &meta, head, after)
    }

    /// `probe_list` entry by entry: flat lists, and quantized lists with filter conditions.
    fn probe_entries<S: PageStore>(
        &mut self,
        store: &S,
        meta: &Meta,
        head: u32,
        after: u32,
    ) -> Result<usize, SearchError> {
        let format = meta.entry_format();
        let metric = meta.metric;
        let query = self.query.as_deref();
        let kernels = distance::kernels();
        let candidates = &mut self.candidates;
        let filter = self.filter.as_ref();
        let threshold = self.plan.threshold.unwrap_or(f32::INFINITY);
        let prepared = self.prepared.as_deref();
        let queue = &mut self.queue;
        let factor = self.factor;
        let mut added = 0;
        let mut bad_tid = None;
        let reader = &mut self.reader;
        reader.reset();
        let per_page = page::DATA_CAPACITY / format.stride() + 2;
        chain::walk(store, head, after, |bytes, ahead| {
            // Room for the page's rows first: a push that has to grow and cannot would abort.
            if prepared.is_some() {
                queue
                    .try_reserve(per_page)
                    .map_err(SearchError::out_of_memory(queue.memory_bytes()))?;
            } else {
                candidates
                    .try_reserve(per_page)
                    .map_err(SearchError::out_of_memory(candidates.memory_bytes()))?;
            }
            // Flat entries are read faster than a progressive prefetch would pace itself.
            distance::prefetch(ahead);
            reader.feed(bytes, format, |entry| {
                if entry.flags.is_dead() || filter.is_some_and(|f| !f.matches(entry.filters)) {
                    return;
                }
                if !entry.tid.is_valid_heap_tid() {
                    bad_tid = Some(entry.tid);
                }
                if let (Some(prepared), Some(_)) = (prepared, query) {
                    let bounds = prepared.estimate(entry.code).bounds(factor);
                    if bounds[0] > threshold {
                        return;
                    }
                    let location = entry.location.map_or(NO_LOCATION, pack_location);
                    queue.push(bounds, [entry.tid.to_u64(), location]);
                    added += 1;
                    return;
                }
                if entry.flags.is_spilled() {
                    // Without a query to re-rank by, the row's first entry stands for it.
                    return;
                }
                let d = query.map_or(0.0, |q| metric.order_key(kernels, q, entry.vector));
                if d > threshold {
                    return;
                }
                candidates.push(d, entry.tid.to_u64());
                added += 1;
            })?;
            // Handing such a TID out would make the executor read (or, for block 0xFFFFFFFF,
            // PostgreSQL 15's P_NEW, even extend) the table.
            match bad_tid {
                Some(tid) if tid.offset == 0 => Err(SearchError::Format(FormatError::Corrupted(
                    "an entry has heap offset 0",
                ))),
                Some(_) => Err(SearchError::Format(FormatError::Corrupted(
                    "an entry has an invalid heap TID",
                ))),
                None => Ok(()),
            }
        })?;
        Ok(added)
    }

    /// `probe_list` for quantized lists without filter conditions: each entry's lower bound
    /// straight from its bytes, with the estimator fixed for the whole list.
    fn probe_codes<S: PageStore>(
        &mut self,
        store: &S,
        meta: &Meta,
        head: u32,
        after: u32,
    ) -> Result<usize, SearchError> {
        let format = meta.entry_format();
        let threshold = self.plan.threshold.unwrap_or(f32::INFINITY);
        let prepared = self.prepared.as_deref().expect("a quantized search");
        let queue = &mut self.queue;
        let factor = self.factor;
        let mut added = 0;
        let max_offset = page::MAX_HEAP_TUPLES_PER_PAGE as u16;
        let reader = &mut self.reader;
        reader.reset();
        let per_page = page::DATA_CAPACITY / format.stride() + 2;
        chain::walk(store, head, after, |bytes, ahead| {
            queue
                .try_reserve(per_page)
                .map_err(SearchError::out_of_memory(queue.memory_bytes()))?;
            let mut bad_tid = false;
            let mut ahead = Some(ahead);
            reader.feed_raw(bytes, format, |entries| {
                // The next page loads while this page's codes are computed (the first run handed
                // out may be one entry carried over from the previous page).
                let ahead = if entries.len() > format.stride() {
                    ahead.take().unwrap_or_default()
                } else {
                    &[]
                };
                let queued = prepared
                    .queue_entries(entries, ahead, format, factor, threshold, max_offset, queue);
                added += queued.rows;
                bad_tid |= queued.bad_tid;
            })?;
            if bad_tid {
                return Err(SearchError::Format(FormatError::Corrupted(
                    "an entry has an invalid heap TID",
                )));
            }
            Ok(())
        })?;
        Ok(added)
    }
}

/// A vector location as the re-rank queue packs it (block << 16 | offset).
fn pack_location(location: Location) -> u64 {
    (u64::from(location.block) << 16) | u64::from(location.offset)
}

fn unpack_location(packed: u64) -> Location {
    Location {
        block: (packed >> 16) as u32,
        offset: packed as u16,
    }
}

/// Prefetches what reading the vector at `location` touches, when the store knows where its page
/// probably is (it may hold another block by now, which only wastes the prefetch).
fn prefetch_vector<S: PageStore>(store: &S, location: Location, dim: usize) {
    let Some(bytes) = store.hint(location.block).map(Hint::for_prefetch) else {
        return;
    };
    if bytes.len() < page::BLOCK_SIZE {
        return;
    }
    let [header, special, vector] = page::vector_touches(location, dim);
    distance::prefetch(&bytes[header]);
    distance::prefetch(&bytes[special]);
    // The vector is read last and is many cache lines: to L2, so that the first-level cache's
    // few miss buffers do not hold up the rows before it.
    distance::prefetch_to_l2(&bytes[vector]);
}
