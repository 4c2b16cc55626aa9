//! `ivfflat_stats(index regclass)`: how an ivfflat index's lists hold up, and whether to rebuild it.
//!
//! IVF lists are trained once, at build time; rows inserted later go to the nearest existing centroid.
//! When new rows come from a different part of the space (new topics, a new embedding model) they
//! land far from every centroid, lists grow unevenly and recall at a given `probes` drops. pgvector
//! users ask how to tell; this function measures it. Entries written by inserts carry a flag, so the
//! mean distance of inserted rows to their list's centroid can be set against that of the rows the
//! index was built with: the ratio is the drift.

use super::cache;
use super::storage::{ChainWalk, Locked, Mode, OrCorrupt};
use pgivf_core::distance;
use pgivf_core::page::{self, Metric, Origin, StreamReader, INVALID_BLOCK};
use pgrx::{pg_sys, IntoDatum};

/// Inserted rows this much farther from their centroids than the build's rows mean the lists no
/// longer fit the data.
const DRIFT_LIMIT: f64 = 1.2;
/// Fewer inserted rows than this say little about drift.
const DRIFT_MIN_ROWS: u64 = 100;

#[derive(Debug, Default)]
struct DistanceSum {
    rows: u64,
    sum: f64,
}

impl DistanceSum {
    fn add(&mut self, distance: f64) {
        self.rows += 1;
        self.sum += distance;
    }

    fn mean(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.sum / self.rows as f64)
    }
}

#[derive(Debug)]
pub struct Stats {
    lists: u32,
    dimensions: u32,
    metric: Metric,
    pages: u32,
    rows: u64,
    dead_entries: u64,
    list_rows: Vec<u64>,
    rows_at_build: u64,
    from_build: DistanceSum,
    from_inserts: DistanceSum,
}

impl Stats {
    fn empty_lists(&self) -> usize {
        self.list_rows.iter().filter(|&&n| n == 0).count()
    }

    /// Min, median and max rows per list.
    fn list_sizes(&self) -> (u64, f64, u64) {
        let mut sorted = self.list_rows.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        if n == 0 {
            return (0, 0.0, 0);
        }
        let median = if n % 2 == 1 {
            sorted[n / 2] as f64
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0
        };
        (sorted[0], median, sorted[n - 1])
    }

    fn drift(&self) -> Option<f64> {
        match (self.from_build.mean(), self.from_inserts.mean()) {
            (Some(build), Some(inserts)) if build > 0.0 => Some(inserts / build),
            _ => None,
        }
    }

    fn recommendation(&self, index_name: &str) -> String {
        let mut reasons = Vec::new();
        let lists = u64::from(self.lists);
        if self.rows_at_build < lists && self.rows > lists {
            reasons.push(format!(
                "it was built on {} rows, too few to train {} lists, and now holds {}",
                self.rows_at_build, self.lists, self.rows
            ));
        } else if self.from_inserts.rows > self.rows_at_build.max(DRIFT_MIN_ROWS) {
            reasons.push(format!(
                "more rows were inserted after the build ({}) than it was built with ({})",
                self.from_inserts.rows, self.rows_at_build
            ));
        }
        if let Some(drift) = self.drift() {
            if drift > DRIFT_LIMIT
                && self.from_inserts.rows >= DRIFT_MIN_ROWS
                && self.from_build.rows >= DRIFT_MIN_ROWS
            {
                reasons.push(format!(
                    "rows inserted after the build are {:.0}% farther from their centroids than the rows it was built with: the data has drifted",
                    (drift - 1.0) * 100.0
                ));
            }
        }
        if reasons.is_empty() {
            "none: the lists still fit the data".into()
        } else {
            format!(
                "REINDEX INDEX CONCURRENTLY {}: {}",
                quote_identifier(index_name),
                reasons.join("; ")
            )
        }
    }
}

fn quote_identifier(name: &str) -> String {
    let c_name = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a NUL-terminated string; the result is a NUL-terminated palloc'd or static string.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::quote_identifier(c_name.as_ptr()))
            .to_string_lossy()
            .into_owned()
    }
}

/// Distance of an entry to its list's centroid, as the lists were trained: Euclidean for L2, angular
/// (1 - cosine similarity) for inner product and cosine, whose k-means is spherical.
fn distance_to_centroid(metric: Metric, vector: &[f32], centroid: &[f32]) -> f64 {
    match metric {
        Metric::L2 => f64::from(distance::l2_squared(vector, centroid)).sqrt(),
        _ => {
            let (dot, norm_a, norm_b) = distance::cosine_parts(vector, centroid);
            let denominator = (f64::from(norm_a) * f64::from(norm_b)).sqrt();
            if denominator > 0.0 {
                1.0 - f64::from(dot) / denominator
            } else {
                0.0
            }
        }
    }
}

fn collect(index: pg_sys::Relation) -> Stats {
    let cached = cache::get(index);
    let meta = cached.meta;
    let dim = meta.dimensions as usize;
    let format = meta.entry_format();
    // SAFETY: an open index.
    let pages =
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    let mut stats = Stats {
        lists: meta.lists,
        dimensions: meta.dimensions,
        metric: meta.metric,
        pages,
        rows: 0,
        dead_entries: 0,
        list_rows: vec![0; meta.lists as usize],
        rows_at_build: meta.rows_at_build,
        from_build: DistanceSum::default(),
        from_inserts: DistanceSum::default(),
    };
    let mut reader = StreamReader::new();
    let mut walk = ChainWalk::new(index);
    let mut located = Vec::new();
    for list in 0..meta.lists {
        let centroid = &cached.centroids[list as usize * dim..(list as usize + 1) * dim];
        let mut block = cache::read_directory(index, &meta, list).head;
        reader.reset();
        while block != INVALID_BLOCK {
            walk.step();
            let buffer = Locked::read(index, block, Mode::Share);
            reader
                .feed(buffer.page(), format, |entry| {
                    let flags = entry.flags;
                    // Quantized entries: the vector from its location (none with rerank = 'heap').
                    let vector = match (cached.quantizer.is_some(), entry.location) {
                        (false, _) => entry.vector,
                        (true, Some(location)) => {
                            super::storage::read_located_vector(index, location, dim, &mut located)
                                .or_corrupt(index);
                            &located[..]
                        }
                        (true, None) => &[],
                    };
                    if flags.is_dead() {
                        stats.dead_entries += 1;
                        return;
                    }
                    if flags.is_spilled() {
                        // Rows are counted where they were filed first.
                        return;
                    }
                    stats.rows += 1;
                    stats.list_rows[list as usize] += 1;
                    if vector.is_empty() {
                        return;
                    }
                    let distance = distance_to_centroid(meta.metric, vector, centroid);
                    match flags.origin() {
                        Origin::Build => stats.from_build.add(distance),
                        Origin::Insert => stats.from_inserts.add(distance),
                    }
                })
                .or_corrupt(index);
            block = page::read_special(buffer.page()).or_corrupt(index).next;
        }
    }
    stats
}

pg_function!(ivfflat_stats, pg_finfo_ivfflat_stats, |fcinfo| {
    // SAFETY: a regclass argument, non-NULL (STRICT).
    let oid = pg_sys::Oid::from(unsafe { crate::fmgr::arg_datum(fcinfo, 0) }.value() as u32);
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let (heap, index, name) = super::verify::open_ivfflat(oid, lock, "ivfflat_stats");
    let stats = collect(index);
    // SAFETY: opened above with this lock.
    unsafe {
        pg_sys::index_close(index, lock);
        pg_sys::table_close(heap, lock);
    }
    let (min, median, max) = stats.list_sizes();
    let drift = stats.drift();
    let values: Vec<Option<pg_sys::Datum>> = vec![
        (stats.lists as i32).into_datum(),
        (stats.dimensions as i32).into_datum(),
        match stats.metric {
            Metric::L2 => "l2",
            Metric::InnerProduct => "inner product",
            Metric::Cosine => "cosine",
        }
        .into_datum(),
        i64::from(stats.pages).into_datum(),
        (stats.rows as i64).into_datum(),
        (stats.dead_entries as i64).into_datum(),
        (stats.empty_lists() as i32).into_datum(),
        (min as i64).into_datum(),
        median.into_datum(),
        (max as i64).into_datum(),
        (stats.rows_at_build as i64).into_datum(),
        (stats.from_inserts.rows as i64).into_datum(),
        stats.from_build.mean().and_then(|m| m.into_datum()),
        stats.from_inserts.mean().and_then(|m| m.into_datum()),
        drift.and_then(|d| d.into_datum()),
        stats.recommendation(&name).into_datum(),
    ];
    // SAFETY: the function is declared with OUT parameters matching `values`, one by one.
    unsafe { crate::fmgr::return_record(fcinfo, &values) }
});
