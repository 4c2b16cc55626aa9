//! How an index's lists hold up, and whether to rebuild it (`ivfflat_stats`).
//!
//! IVF lists are trained once, at build time; rows inserted later go to the nearest existing
//! centroid. When new rows come from a different part of the space (new topics, a new embedding
//! model) they land far from every centroid, lists grow unevenly and recall at a given `probes`
//! drops. Entries written by inserts carry a flag, so the mean distance of inserted rows to their
//! list's centroid can be set against that of the rows the index was built with: the ratio is the
//! drift.

use crate::page::{FormatError, Meta, Origin};
use crate::store::PageStore;

use super::chain::{for_each_entry, read_located_vector};
use super::loaded::LoadedIndex;

/// Inserted rows this much farther from their centroids than the build's rows mean the lists no
/// longer fit the data.
const DRIFT_LIMIT: f64 = 1.2;
/// Fewer inserted rows than this say little about drift.
const DRIFT_MIN_ROWS: u64 = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct DistanceSum {
    pub rows: u64,
    pub sum: f64,
}

impl DistanceSum {
    fn add(&mut self, distance: f64) {
        self.rows += 1;
        self.sum += distance;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.sum / self.rows as f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub meta: Meta,
    pub rows: u64,
    pub dead_entries: u64,
    pub list_rows: Vec<u64>,
    pub from_build: DistanceSum,
    pub from_inserts: DistanceSum,
}

impl Stats {
    pub fn empty_lists(&self) -> usize {
        self.list_rows.iter().filter(|&&n| n == 0).count()
    }

    /// Min, median and max rows per list.
    pub fn list_sizes(&self) -> (u64, f64, u64) {
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

    /// How much farther inserted rows lie from their centroids than the build's.
    pub fn drift(&self) -> Option<f64> {
        match (self.from_build.mean(), self.from_inserts.mean()) {
            (Some(build), Some(inserts)) if build > 0.0 => Some(inserts / build),
            _ => None,
        }
    }

    /// Why to rebuild the index, if it should be: None when the lists still fit the data.
    pub fn reasons_to_rebuild(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let lists = u64::from(self.meta.lists);
        let rows_at_build = self.meta.rows_at_build;
        if rows_at_build < lists && self.rows > lists {
            reasons.push(format!(
                "it was built on {rows_at_build} rows, too few to train {lists} lists, and now holds {}",
                self.rows
            ));
        } else if self.from_inserts.rows > rows_at_build.max(DRIFT_MIN_ROWS) {
            reasons.push(format!(
                "more rows were inserted after the build ({}) than it was built with ({rows_at_build})",
                self.from_inserts.rows
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
        reasons
    }
}

/// Counts every list's rows and measures their distances from their centroids.
pub fn collect<S: PageStore>(store: &S, index: &LoadedIndex) -> Result<Stats, FormatError> {
    let meta = index.meta();
    let dim = meta.dimensions as usize;
    let mut stats = Stats {
        meta,
        rows: 0,
        dead_entries: 0,
        list_rows: vec![0; meta.lists as usize],
        from_build: DistanceSum::default(),
        from_inserts: DistanceSum::default(),
    };
    let mut located = Vec::new();
    for list in 0..meta.lists {
        let centroid = index.centroid(list);
        let mut failed = None;
        for_each_entry(store, &meta, list, |entry, _| {
            let flags = entry.flags;
            if flags.is_dead() {
                stats.dead_entries += 1;
                return;
            }
            // Rows are counted where they were filed first.
            if flags.is_spilled() {
                return;
            }
            stats.rows += 1;
            stats.list_rows[list as usize] += 1;
            // Quantized entries: the vector from its location (none with rerank = 'heap').
            let vector = match (index.quantizer.is_some(), entry.location) {
                (false, _) => entry.vector,
                (true, Some(location)) => {
                    if let Err(e) = read_located_vector(store, location, dim, &mut located) {
                        failed.get_or_insert(e);
                        return;
                    }
                    &located[..]
                }
                (true, None) => return,
            };
            let distance = meta.metric.centroid_distance(vector, centroid);
            match flags.origin() {
                Origin::Build => stats.from_build.add(distance),
                Origin::Insert => stats.from_inserts.add(distance),
            }
        })?;
        if let Some(error) = failed {
            return Err(error);
        }
    }
    Ok(stats)
}
