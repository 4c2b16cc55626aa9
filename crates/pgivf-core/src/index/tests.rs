//! The index's operations end to end on pages in memory: builds of every kind, inserts that
//! extend and reuse, VACUUM, searches against brute force, the verifier, and what damaged pages
//! must do (an error, never a write to the wrong page or a wait on a lock already held).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::build::{self, BuildProgress, Builder, Request, Spill};
use super::layout::{self, Shape};
use super::search::{Iterative, NoRows, Radius, RowSource, Search, SearchBuffers, Settings};
use super::{insert, vacuum, verify, LoadedIndex};
use crate::distance;
use crate::filter::{hash_integer, FilterQuery};
use crate::metric::Metric;
use crate::page::{self, FormatError, PageKind, Tid};
use crate::quant::{rabitq, sq8, QuantizerKind, Rerank};
use crate::store::memory::MemoryStore;
use crate::store::{Image, PageStore};

struct Quiet;
impl BuildProgress for Quiet {
    fn rows_done(&mut self, _rows: u64) {}
    fn writing(&mut self, _writing: bool) {}
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

/// `n` rows of `dim` dimensions in a few clusters.
fn clustered_rows(rng: &mut StdRng, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..8)
        .map(|_| (0..dim).map(|_| rng.gen_range(-2.0..2.0)).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[i % centres.len()]
                .iter()
                .map(|c| c + rng.gen_range(-0.3..0.3))
                .collect()
        })
        .collect()
}

fn tid(i: usize) -> Tid {
    Tid {
        block: (i / 100) as u32,
        offset: (i % 100 + 1) as u16,
    }
}

fn row_of(tid: Tid) -> usize {
    tid.block as usize * 100 + tid.offset as usize - 1
}

struct Options {
    metric: Metric,
    lists: usize,
    quantizer: QuantizerKind,
    rerank: Rerank,
    spill: Spill,
    filter_columns: usize,
    /// What the builder may hold before writing.
    memory_budget: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            metric: Metric::L2,
            lists: 6,
            quantizer: QuantizerKind::NONE,
            rerank: Rerank::Index,
            spill: Spill::Auto,
            filter_columns: 0,
            memory_budget: 20_000,
        }
    }
}

/// Builds an index of `rows` (row i at `tid(i)`, filter column value `i % 3`), with a small
/// memory budget so that the writer flushes more than once.
fn build_index(rows: &[Vec<f32>], options: &Options) -> (MemoryStore, LoadedIndex) {
    let dim = rows[0].len();
    let shape = build::plan(
        &Request {
            dimensions: Some(dim),
            metric: options.metric,
            lists: Some(options.lists),
            filter_columns: options.filter_columns,
            quantizer: options.quantizer,
            rerank: options.rerank,
            spill: options.spill,
            vector_is_column: true,
        },
        || unreachable!(),
        42,
    )
    .unwrap();
    let pool = pool();
    let mut samples = Vec::new();
    let mut stored = Vec::new();
    for row in rows {
        let mut sample = row.clone();
        if options.metric.prepare_sample(&mut sample) {
            samples.extend_from_slice(&sample);
        }
    }
    let (centroids, quantizer) =
        build::train(&shape, &samples, &pool, usize::MAX, &mut |_| {}).unwrap();
    let store = MemoryStore::new();
    let mut builder = Builder::start(
        &store,
        &shape,
        &centroids,
        quantizer.as_deref(),
        &pool,
        options.memory_budget,
    )
    .unwrap();
    for (i, row) in rows.iter().enumerate() {
        if options.metric.prepare_row(row, &mut stored) {
            let hashes: Vec<u64> = (0..options.filter_columns)
                .map(|column| hash_integer(column, (i % 3) as i64))
                .collect();
            builder
                .add_row(&store, &mut Quiet, tid(i), &stored, &hashes)
                .unwrap();
        }
    }
    builder.finish(&store, &mut Quiet).unwrap();
    assert!(!store.any_locked());
    let meta = layout::read_meta(&store).unwrap();
    let index = LoadedIndex::load(&store, meta).unwrap();
    (store, index)
}

/// The table of a `rerank = 'heap'` index.
struct Table<'a>(&'a [Vec<f32>]);

impl RowSource for Table<'_> {
    fn vector(&mut self, tid: Tid, out: &mut Vec<f32>) -> bool {
        out.clear();
        out.extend_from_slice(&self.0[row_of(tid)]);
        true
    }
}

fn settings(probes: usize) -> Settings {
    Settings {
        probes,
        iterative: Iterative::Off,
        max_probes: probes,
        rerank_factor: 3.0,
        index_rows: 0.0,
        expected_rows: 10,
        memory_limit: usize::MAX,
    }
}

/// Every row a search hands out, in order.
fn search_all(
    store: &MemoryStore,
    index: &LoadedIndex,
    rows: &[Vec<f32>],
    query: &[f32],
    radii: &[Radius],
    filter: Option<FilterQuery>,
    settings: &Settings,
) -> Vec<Tid> {
    let mut search = Search::new(SearchBuffers::default());
    search
        .start(store, index, Some(query), radii, filter, settings)
        .unwrap();
    let mut table = Table(rows);
    let mut found = Vec::new();
    while let Some(tid) = search.next(store, index, &mut table).unwrap() {
        found.push(tid);
    }
    assert!(!store.any_locked());
    found
}

/// The operator's distance, as SQL computes it.
fn operator_distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        Metric::L2 => f64::from(distance::l2_squared(a, b)).sqrt(),
        Metric::InnerProduct => -f64::from(distance::dot(a, b)),
        Metric::Cosine => {
            let (dot, na, nb) = distance::cosine_parts(a, b);
            1.0 - f64::from(dot) / (f64::from(na) * f64::from(nb)).sqrt()
        }
    }
}

/// Rows by exact distance from `query`, as a brute-force search orders them.
fn exact_order(metric: Metric, rows: &[Vec<f32>], query: &[f32]) -> Vec<(f64, usize)> {
    let mut order: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (operator_distance(metric, query, row), i))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    order
}

fn all_kinds() -> Vec<Options> {
    let mut kinds = Vec::new();
    for metric in Metric::ALL {
        for (quantizer, rerank, spill) in [
            (QuantizerKind::NONE, Rerank::Index, Spill::Auto),
            (sq8::KIND, Rerank::Index, Spill::Auto),
            (rabitq::KIND, Rerank::Index, Spill::Auto),
            (rabitq::KIND, Rerank::Index, Spill::Off),
            (rabitq::KIND, Rerank::Heap, Spill::Auto),
            (sq8::KIND, Rerank::Heap, Spill::On),
        ] {
            kinds.push(Options {
                metric,
                quantizer,
                rerank,
                spill,
                filter_columns: 1,
                ..Options::default()
            });
        }
    }
    kinds
}

/// Lists of codes alone take vectors past 2,000 dimensions (their centroids span pages), and are
/// exact at probes = lists; lists that keep the vectors, or SQ8 codes of a byte a dimension, are
/// refused with what to use instead.
#[test]
fn codes_only_lists_take_thousands_of_dimensions() {
    let mut rng = StdRng::seed_from_u64(30);
    for dim in [3072, 16000] {
        let rows = clustered_rows(&mut rng, 120, dim);
        let options = Options {
            metric: Metric::Cosine,
            lists: 4,
            quantizer: rabitq::KIND,
            rerank: Rerank::Heap,
            memory_budget: 1 << 20,
            ..Options::default()
        };
        let (store, index) = build_index(&rows, &options);
        assert_eq!(index.meta().dimensions as usize, dim);
        assert_eq!(
            index.meta().centroid_pages as usize,
            page::centroid_pages(4, dim)
        );
        let report = verify::verify(&store, &index).unwrap();
        assert_eq!(report.live.len(), rows.len());
        let query = &rows[7];
        let settings = Settings {
            rerank_factor: 10.0,
            ..settings(4)
        };
        let found = search_all(&store, &index, &rows, query, &[], None, &settings);
        let exact = exact_order(Metric::Cosine, &rows, query);
        assert_eq!(found.len(), rows.len(), "{dim}");
        for (got, (d, _)) in found.iter().zip(&exact).take(20) {
            let got = operator_distance(Metric::Cosine, query, &rows[row_of(*got)]);
            assert!((got - d).abs() <= 1e-5, "{dim}: {got} against {d}");
        }
    }
    let request = |quantizer, rerank| Request {
        dimensions: Some(3072),
        metric: Metric::Cosine,
        lists: Some(4),
        filter_columns: 0,
        quantizer,
        rerank,
        spill: Spill::Auto,
        vector_is_column: true,
    };
    let plan = |request: Request| build::plan(&request, || unreachable!(), 1).map(|_| ());
    assert_eq!(
        plan(request(QuantizerKind::NONE, Rerank::Index)),
        Err(build::BuildError::TooManyDimensions)
    );
    assert_eq!(
        plan(request(rabitq::KIND, Rerank::Index)),
        Err(build::BuildError::TooManyDimensionsForVectorsInIndex)
    );
    assert!(matches!(
        plan(Request {
            dimensions: Some(9000),
            ..request(sq8::KIND, Rerank::Heap)
        }),
        Err(build::BuildError::EntryTooLarge { .. })
    ));
    assert_eq!(
        plan(Request {
            dimensions: Some(16001),
            ..request(rabitq::KIND, Rerank::Heap)
        }),
        Err(build::BuildError::TooManyDimensions)
    );
}

/// Lists of many pages, written at the end (new pages four to a record, linked as they are
/// written) or in many small flushes (each continuing the chain's tail page): every row is in
/// the index once and comes back.
#[test]
fn long_chains_are_whole_however_they_are_flushed() {
    let mut rng = StdRng::seed_from_u64(9);
    let rows = clustered_rows(&mut rng, 3000, 61);
    for memory_budget in [usize::MAX, 50_000, 9_000] {
        for quantizer in [QuantizerKind::NONE, rabitq::KIND] {
            let options = Options {
                lists: 3,
                quantizer,
                memory_budget,
                ..Options::default()
            };
            let (store, index) = build_index(&rows, &options);
            let report = verify::verify(&store, &index).unwrap();
            assert_eq!(report.live.len(), rows.len(), "budget {memory_budget}");
            let found = search_all(&store, &index, &rows, &rows[5], &[], None, &settings(3));
            let mut found: Vec<usize> = found.iter().map(|&t| row_of(t)).collect();
            found.sort_unstable();
            assert_eq!(
                found,
                (0..rows.len()).collect::<Vec<_>>(),
                "budget {memory_budget}"
            );
        }
    }
}

/// At probes = lists every kind of index hands out every row, in exact distance order.
#[test]
fn every_kind_of_index_is_exact_when_it_probes_every_list() {
    let mut rng = StdRng::seed_from_u64(1);
    let rows = clustered_rows(&mut rng, 600, 24);
    for options in all_kinds() {
        let (store, index) = build_index(&rows, &options);
        let report = verify::verify(&store, &index).unwrap();
        assert_eq!(report.live.len(), rows.len(), "{:?}", options.quantizer);
        // Re-ranking bounds hold with high probability at factor 3; far above it they always hold.
        let settings = Settings {
            rerank_factor: 10.0,
            ..settings(options.lists)
        };
        for q in 0..5 {
            let query = &rows[q * 37];
            let found = search_all(&store, &index, &rows, query, &[], None, &settings);
            let exact = exact_order(options.metric, &rows, query);
            assert_eq!(found.len(), rows.len());
            // Distances in order (ties may come either way, and the index rounds in f32).
            let distances: Vec<f64> = found
                .iter()
                .map(|&t| operator_distance(options.metric, query, &rows[row_of(t)]))
                .collect();
            for (i, pair) in distances.windows(2).enumerate() {
                assert!(
                    pair[0] <= pair[1] + 1e-5,
                    "{:?} {:?} out of order at {i}: {pair:?}",
                    options.metric,
                    options.quantizer
                );
            }
            let nearest: Vec<usize> = found[..10].iter().map(|&t| row_of(t)).collect();
            let expected: Vec<usize> = exact[..10].iter().map(|&(_, i)| i).collect();
            let mut a = nearest.clone();
            let mut b = expected.clone();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{:?} {:?}", options.metric, options.quantizer);
        }
    }
}

#[test]
fn filters_and_radii_return_exactly_the_rows_that_qualify() {
    let mut rng = StdRng::seed_from_u64(2);
    let rows = clustered_rows(&mut rng, 500, 16);
    for options in all_kinds() {
        let (store, index) = build_index(&rows, &options);
        let query = &rows[11];
        let mut filter = FilterQuery::new();
        filter.require(0, vec![hash_integer(0, 2)]);
        let found = search_all(
            &store,
            &index,
            &rows,
            query,
            &[],
            Some(filter),
            &settings(1),
        );
        let expected = rows.len() / 3;
        assert_eq!(found.len(), expected, "{:?}", options.quantizer);
        assert!(found.iter().all(|&t| row_of(t) % 3 == 2));
        // The radius of the 20th nearest row: every row within it, and only those.
        let exact = exact_order(options.metric, &rows, query);
        let radius = exact[19].0;
        let inside = exact.iter().filter(|&&(d, _)| d <= radius).count();
        let found = search_all(
            &store,
            &index,
            &rows,
            query,
            &[Radius::Within(radius)],
            None,
            &settings(1),
        );
        let found_inside = found
            .iter()
            .filter(|&&t| operator_distance(options.metric, query, &rows[row_of(t)]) <= radius)
            .count();
        assert_eq!(
            found_inside, inside,
            "{:?} {:?}",
            options.metric, options.quantizer
        );
        let none = search_all(
            &store,
            &index,
            &rows,
            query,
            &[Radius::Nothing],
            None,
            &settings(1),
        );
        assert!(none.is_empty());
    }
}

#[test]
fn strict_order_hands_out_rows_in_exact_order_across_batches() {
    let mut rng = StdRng::seed_from_u64(3);
    let rows = clustered_rows(&mut rng, 400, 8);
    for quantizer in [QuantizerKind::NONE, rabitq::KIND] {
        let (store, index) = build_index(
            &rows,
            &Options {
                quantizer,
                lists: 10,
                ..Options::default()
            },
        );
        let settings = Settings {
            iterative: Iterative::StrictOrder,
            max_probes: 10,
            ..settings(1)
        };
        let query = &rows[5];
        let found = search_all(&store, &index, &rows, query, &[], None, &settings);
        assert_eq!(found.len(), rows.len());
        let exact = exact_order(Metric::L2, &rows, query);
        for (got, (d, _)) in found.iter().zip(&exact) {
            let got = operator_distance(Metric::L2, query, &rows[row_of(*got)]);
            assert!((got - d).abs() <= 1e-5 * d.max(1.0));
        }
    }
}

/// An iterative search reads lists beyond its first `probes` only while its buffers are within the
/// memory limit: it then ends as at `max_probes`, says so, and its buffers stay near the limit.
#[test]
fn iterative_searches_stop_reading_lists_at_the_memory_limit() {
    let mut rng = StdRng::seed_from_u64(21);
    let rows = clustered_rows(&mut rng, 20_000, 8);
    for quantizer in [QuantizerKind::NONE, rabitq::KIND] {
        let (store, index) = build_index(
            &rows,
            &Options {
                quantizer,
                lists: 50,
                ..Options::default()
            },
        );
        for iterative in [Iterative::RelaxedOrder, Iterative::StrictOrder] {
            let unlimited = Settings {
                iterative,
                max_probes: 50,
                ..settings(2)
            };
            let query = &rows[17];
            let all = search_all(&store, &index, &rows, query, &[], None, &unlimited);
            assert_eq!(all.len(), rows.len(), "{quantizer:?} {iterative:?}");
            let limit = 128 << 10;
            let limited = Settings {
                memory_limit: limit,
                ..unlimited
            };
            let mut search = Search::new(SearchBuffers::default());
            search
                .start(&store, &index, Some(query), &[], None, &limited)
                .unwrap();
            let mut found = 0;
            let mut table = Table(&rows);
            let mut peak = 0;
            while search.next(&store, &index, &mut table).unwrap().is_some() {
                found += 1;
                peak = peak.max(search.memory_bytes());
            }
            let stats = search.stats();
            assert!(stats.stopped_at_memory_limit, "{quantizer:?} {iterative:?}");
            assert!(
                found < rows.len() && stats.lists_probed < 50 && stats.lists_probed >= 2,
                "{quantizer:?} {iterative:?}: {found} rows, {stats:?}"
            );
            // Over the limit by at most what the list that crossed it added and the doubling of
            // the buffers (the first `probes` lists are read whatever they take).
            assert!(
                peak <= 4 * limit,
                "{quantizer:?} {iterative:?}: {peak} bytes"
            );
        }
    }
}

/// Inserts fill lists past many pages (entries straddling pages), spilled indexes file rows
/// twice, VACUUM frees slots that later inserts reuse without growing the index.
#[test]
fn inserts_vacuum_and_reuse() {
    let mut rng = StdRng::seed_from_u64(4);
    let all = clustered_rows(&mut rng, 900, 40);
    for options in all_kinds().into_iter().filter(|o| o.metric == Metric::L2) {
        let (store, index) = build_index(&all[..300], &options);
        let mut stored = Vec::new();
        for (i, row) in all.iter().enumerate().skip(300) {
            assert!(options.metric.prepare_row(row, &mut stored));
            let hashes = [hash_integer(0, (i % 3) as i64)];
            insert::insert_row(&store, &index, tid(i), &stored, &hashes).unwrap();
        }
        assert!(!store.any_locked());
        let report = verify::verify(&store, &index).unwrap();
        assert_eq!(report.live.len(), all.len());
        let query = &all[450];
        let found = search_all(
            &store,
            &index,
            &all,
            query,
            &[],
            None,
            &settings(options.lists),
        );
        assert_eq!(found.len(), all.len(), "{:?}", options.quantizer);

        // Delete every other row, then insert as many again: the index must not grow.
        let meta = index.meta();
        let deleted = vacuum::bulk_delete(&store, &meta, |t| row_of(t).is_multiple_of(2)).unwrap();
        assert_eq!(deleted.removed_rows, (all.len() / 2) as f64);
        assert_eq!(deleted.live_rows, (all.len() / 2) as f64);
        assert!(!store.any_locked());
        let blocks = store.blocks();
        for (i, row) in all.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            assert!(options.metric.prepare_row(row, &mut stored));
            let hashes = [hash_integer(0, (i % 3) as i64)];
            insert::insert_row(&store, &index, tid(i + 10_000), &stored, &hashes).unwrap();
        }
        assert!(
            store.blocks() <= blocks + 2,
            "{:?}: {} blocks after reuse, {blocks} before",
            options.quantizer,
            store.blocks()
        );
        verify::verify(&store, &index).unwrap();
    }
}

/// Entry pages as a damaged index could link them: writers must refuse, not write into a page
/// of another kind or lock a page they already hold.
#[test]
fn damaged_links_are_errors_not_deadlocks() {
    let mut rng = StdRng::seed_from_u64(5);
    let rows = clustered_rows(&mut rng, 300, 40);
    let (store, index) = build_index(&rows, &Options::default());
    let meta = index.meta();
    let mut stored = Vec::new();
    Metric::L2.prepare_row(&rows[0], &mut stored);

    // A list's tail is the directory page itself.
    layout::update_directory(&store, &meta, 0, |entry| {
        entry.tail = meta.directory_start;
        true
    })
    .unwrap();
    let entry = {
        let mut entry = vec![0u8; meta.entry_format().stride()];
        meta.entry_format()
            .encode(tid(5000), &[], &stored, page::Origin::Insert, &mut entry);
        entry
    };
    let before = store.page(meta.directory_start);
    assert!(super::chain::insert_entry(&store, &meta, 0, &entry).is_err());
    assert_eq!(store.page(meta.directory_start), before);
    assert!(!store.any_locked());

    // A free-slot hint on a page whose dead entry continues on the "next" page, which is itself.
    let (store, index) = build_index(&rows, &Options::default());
    let meta = index.meta();
    let format = meta.entry_format();
    let (list, head, straddling) = (0..meta.lists)
        .find_map(|list| {
            let head = layout::read_directory(&store, &meta, list).unwrap().head;
            let bytes = store.page(head);
            let offset = page::entry_starts(&bytes, format)
                .unwrap()
                .find(|&offset| page::entry_spills(offset, format))?;
            Some((list, head, offset))
        })
        .expect("an entry that continues on the next page");
    {
        let locked = store.lock(head).unwrap();
        store
            .log([(&locked, Image::Existing)], |[bytes]| {
                page::mark_dead(bytes, straddling);
                page::set_next(bytes, head);
                Ok(())
            })
            .unwrap();
    }
    layout::update_directory(&store, &meta, list, |entry| {
        entry.free_hint = head;
        true
    })
    .unwrap();
    let result = super::chain::insert_entry(&store, &meta, list, &entry);
    assert_eq!(
        result,
        Err(FormatError::Corrupted("an entry continues past its chain"))
    );
    assert!(!store.any_locked());
}

#[test]
fn the_verifier_names_damage() {
    let mut rng = StdRng::seed_from_u64(6);
    let rows = clustered_rows(&mut rng, 300, 16);
    type Damage = Box<dyn Fn(&MemoryStore, &LoadedIndex)>;
    let damage: Vec<(&str, Damage)> = vec![
        (
            "last page",
            Box::new(|store, index| {
                let meta = index.meta();
                let other = layout::read_directory(store, &meta, 3).unwrap().head;
                layout::update_directory(store, &meta, 2, |entry| {
                    entry.tail = other;
                    true
                })
                .unwrap();
            }),
        ),
        (
            "indexed 2 times",
            Box::new(|store, index| {
                let row = clustered_rows(&mut StdRng::seed_from_u64(6), 1, 16).remove(0);
                insert::insert_row(store, index, tid(0), &row, &[]).unwrap();
            }),
        ),
        (
            "outside the list's bounds",
            Box::new(|store, index| {
                let meta = index.meta();
                layout::update_directory(store, &meta, 0, |entry| {
                    entry.radius = 0.0;
                    true
                })
                .unwrap();
            }),
        ),
    ];
    for (expected, damage) in damage {
        let (store, index) = build_index(&rows, &Options::default());
        damage(&store, &index);
        let error = verify::verify(&store, &index).unwrap_err();
        assert!(
            error.0.contains(expected),
            "expected \"{expected}\", got \"{error}\""
        );
    }
}

/// A store that inserts rows into its own index whenever the code running on it checks for
/// interrupts (with no lock held): what other backends' inserts do to a verifier meanwhile.
struct Busy<'a> {
    inner: &'a MemoryStore,
    index: &'a LoadedIndex,
    rows: &'a [Vec<f32>],
    next: std::cell::Cell<usize>,
}

impl PageStore for Busy<'_> {
    type Page<'s>
        = crate::store::memory::MemoryPage
    where
        Self: 's;

    fn read(&self, block: u32) -> Result<Self::Page<'_>, FormatError> {
        self.inner.read(block)
    }
    fn lock(&self, block: u32) -> Result<Self::Page<'_>, FormatError> {
        self.inner.lock(block)
    }
    fn extend(&self) -> Result<Self::Page<'_>, FormatError> {
        self.inner.extend()
    }
    fn blocks(&self) -> u32 {
        self.inner.blocks()
    }
    fn log<'s, const N: usize, R>(
        &'s self,
        pages: [(&Self::Page<'s>, Image); N],
        edit: impl FnOnce([&mut [u8]; N]) -> Result<R, FormatError>,
    ) -> Result<R, FormatError> {
        self.inner.log(pages, edit)
    }
    fn check_interrupts(&self) {
        if self.inner.any_locked() {
            return;
        }
        for _ in 0..8 {
            let i = self.next.get();
            if i < self.rows.len() {
                self.next.set(i + 1);
                let mut stored = Vec::new();
                Metric::L2.prepare_row(&self.rows[i], &mut stored);
                insert::insert_row(self.inner, self.index, tid(20_000 + i), &stored, &[]).unwrap();
            }
        }
    }
}

#[test]
fn the_verifier_tolerates_concurrent_inserts() {
    let mut rng = StdRng::seed_from_u64(7);
    let rows = clustered_rows(&mut rng, 300, 40);
    let far: Vec<Vec<f32>> = clustered_rows(&mut rng, 400, 40)
        .into_iter()
        .map(|row| row.iter().map(|x| x * 3.0).collect())
        .collect();
    for quantizer in [QuantizerKind::NONE, rabitq::KIND] {
        let options = Options {
            quantizer,
            ..Options::default()
        };
        let (store, index) = build_index(&rows, &options);
        let busy = Busy {
            inner: &store,
            index: &index,
            rows: &far,
            next: std::cell::Cell::new(0),
        };
        verify::verify(&busy, &index).unwrap();
        assert!(busy.next.get() > 40, "inserts ran during the walk");
    }
}

#[test]
fn plans_refuse_what_cannot_be_built() {
    let request = Request {
        dimensions: Some(8),
        metric: Metric::L2,
        lists: Some(4),
        filter_columns: 0,
        quantizer: QuantizerKind::NONE,
        rerank: Rerank::Index,
        spill: Spill::Auto,
        vector_is_column: true,
    };
    let refused = |request: Request| build::plan(&request, || 4, 1).unwrap_err();
    assert_eq!(
        refused(Request {
            dimensions: None,
            ..request
        }),
        build::BuildError::NoDimensions
    );
    assert_eq!(
        refused(Request {
            dimensions: Some(1),
            metric: Metric::Cosine,
            ..request
        }),
        build::BuildError::OneDimension
    );
    assert_eq!(
        refused(Request {
            rerank: Rerank::Heap,
            ..request
        }),
        build::BuildError::HeapWithoutQuantizer
    );
    assert_eq!(
        refused(Request {
            spill: Spill::On,
            ..request
        }),
        build::BuildError::SpillWithoutQuantizer
    );
    assert!(matches!(
        refused(Request {
            dimensions: Some(2000),
            filter_columns: 31,
            ..request
        }),
        build::BuildError::EntryTooLarge { .. }
    ));
    let shape: Shape = build::plan(
        &Request {
            quantizer: rabitq::KIND,
            lists: None,
            ..request
        },
        || 9,
        1,
    )
    .unwrap();
    assert!(shape.spill);
    assert_eq!(shape.lists, 9);
}

#[test]
fn structure_pages_are_where_the_meta_page_says() {
    let mut rng = StdRng::seed_from_u64(8);
    let rows = clustered_rows(&mut rng, 200, 700);
    let (store, index) = build_index(
        &rows,
        &Options {
            quantizer: sq8::KIND,
            filter_columns: 2,
            lists: 5,
            ..Options::default()
        },
    );
    let meta = index.meta();
    let kind = |block: u32| page::read_special(&store.page(block)).unwrap().kind;
    assert_eq!(kind(0), PageKind::Meta);
    assert_eq!(kind(meta.centroid_start), PageKind::Centroids);
    assert_eq!(kind(meta.directory_start), PageKind::Directory);
    assert_eq!(kind(meta.summary_start), PageKind::Summaries);
    assert_eq!(kind(meta.quantizer_start), PageKind::Quantizer);
    assert_eq!(meta.quantizer_pages, 1);
    assert_eq!(index.quantizer.as_ref().unwrap().kind(), sq8::KIND);
    assert!(!index.refresh(page::Meta {
        build_id: 7,
        ..meta
    }));
    assert!(index.refresh(page::Meta {
        max_norm: meta.max_norm * 2.0,
        ..meta
    }));
    assert_eq!(index.meta().max_norm, meta.max_norm * 2.0);
    let _ = NoRows;
}

/// maintenance_work_mem too small for pgvector's sample: as many samples as fit, down to ten per
/// list; below that the error names the memory the smallest sample needs, which is then enough.
#[test]
fn samples_shrink_to_fit_the_memory_down_to_ten_per_list() {
    let shape = build::plan(
        &Request {
            dimensions: Some(384),
            metric: Metric::Cosine,
            lists: Some(1000),
            filter_columns: 0,
            quantizer: QuantizerKind::NONE,
            rerank: Rerank::Index,
            spill: Spill::Auto,
            vector_is_column: true,
        },
        || unreachable!(),
        1,
    )
    .unwrap();
    let wanted = 50_000;
    let all = build::training_memory(&shape, wanted);
    assert_eq!(build::samples_within(&shape, wanted, all), wanted);
    let limit = 64 << 20;
    assert!(
        all > limit,
        "pgvector's sample for 1000 lists of 384-d fits 64 MB"
    );
    let fits = build::samples_within(&shape, wanted, limit);
    assert!((10_000..wanted).contains(&fits), "{fits}");
    assert!(build::training_memory(&shape, fits) <= limit);
    assert!(build::training_memory(&shape, fits + 1) > limit);
    // Below ten a list, the sample stays at ten a list and training refuses it, saying what it needs.
    let least = build::training_memory(&shape, 10_000);
    assert_eq!(build::samples_within(&shape, wanted, least - 1), 10_000);
    let samples = vec![0.5f32; 10_000 * 384];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    match build::train(&shape, &samples, &pool, least - 1, &mut |_| {}) {
        Err(build::BuildError::NotEnoughMemory { required_mb, .. }) => {
            assert_eq!(required_mb, least.div_ceil(1 << 20));
            // The memory it names is enough for that sample.
            assert!(build::training_memory(&shape, 10_000) <= required_mb << 20);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}
