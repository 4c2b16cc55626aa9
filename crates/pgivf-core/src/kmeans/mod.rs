//! k-means for the IVFFlat index build: the centroids ("lists") the table rows are filed under.
//!
//! [`train`] seeds with k-means++ and refines with Lloyd iterations that skip most distance
//! computations using Hamerly's test and Yinyang-style bounds: one upper bound and at most 32
//! group lower bounds per sample, so O(n) extra memory rather than the O(n·k) bound matrix of
//! Elkan's algorithm that makes pgvector run out of memory (see `lloyd`). Nearest-centroid
//! searches compare blocks of samples with blocks of centroids (see `panels`). Everything
//! parallel runs on the caller's rayon pool; the [`Progress`] callback runs on the calling thread
//! between bounded chunks of work so the backend can react to query cancel.
//!
//! Results are deterministic for a given seed and input, whatever the number of threads: every
//! floating-point sum is taken in an order fixed by the data alone.

mod init;
mod lloyd;
mod panels;
mod spill;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use thiserror::Error;

use crate::distance;
use panels::{Panels, ROWS};

pub use init::SEEDING_WORK_LIMIT;
pub use spill::{centroid_norms, BetweenRows, Spiller, SPILL_LAMBDA};

/// pgvector's iteration cap for IVFFlat k-means.
pub const DEFAULT_MAX_ITERATIONS: usize = 500;

/// Lloyd passes stop once fewer than one sample in this many changed cluster in a pass (after
/// the centroids are updated for those moves). The last passes before full convergence each move
/// a handful of samples by a hair and, in high dimensions where bounds prune little, still cost
/// a good part of a full search each: on debian-minilm-384 (12,500 samples, 250 lists, one
/// thread) passes 12 to 22 took 0.15 of 0.55 s, and the index's recall@10 at equal probes moved
/// by less than 0.003. pgvector iterates until no sample moves.
pub const DEFAULT_SETTLED_SHARE_INVERSE: usize = 100;

/// Multiply-adds per thread between two progress checkpoints, counted as if no distance were
/// skipped: about 4 ms for the blocked search with AVX2, 10-30 ms for k-means++ (bound by memory
/// bandwidth) and around 50 ms for portable code. Bounds and k-means++'s triangle test only ever
/// make the real gap shorter; the longest gaps measured on a busy two-core machine were 40 ms
/// (90 ms under heavy load from other processes).
const WORK_PER_CHECKPOINT_PER_THREAD: usize = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KMeansError {
    #[error("k-means needs at least one cluster")]
    NoClusters,
    #[error("k-means needs vectors of at least one dimension")]
    NoDimensions,
    #[error("sample buffer of {len} values is not a whole number of {dim}-dimensional vectors")]
    RaggedSamples { len: usize, dim: usize },
    #[error("k-means supports at most {max} samples and clusters, got {got}")]
    TooLarge { got: usize, max: usize },
    /// The callback's way to stop the computation, e.g. on query cancel.
    #[error("k-means was interrupted")]
    Interrupted,
    /// Only a bug (or non-finite input) can get here; returned rather than storing garbage.
    #[error("k-means produced a non-finite centroid")]
    NonFiniteCentroid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansMetric {
    /// Squared Euclidean distance.
    L2,
    /// Samples are L2-normalised by the caller; centroids are re-normalised after every update
    /// and the nearest centroid is the one with the largest dot product.
    Spherical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KMeansParams {
    /// Number of centroids (the index's lists).
    pub k: usize,
    /// Most Lloyd passes; 0 returns the seeding.
    pub max_iterations: usize,
    /// Passes stop once fewer than one sample in this many changed cluster in a pass; 0 runs
    /// until none moves (see [`DEFAULT_SETTLED_SHARE_INVERSE`]).
    pub settled_share_inverse: usize,
    pub seed: u64,
    pub metric: KMeansMetric,
}

impl KMeansParams {
    /// `DEFAULT_MAX_ITERATIONS`, `DEFAULT_SETTLED_SHARE_INVERSE` and seed 0.
    pub fn new(k: usize, metric: KMeansMetric) -> Self {
        Self {
            k,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            settled_share_inverse: DEFAULT_SETTLED_SHARE_INVERSE,
            seed: 0,
            metric,
        }
    }
}

/// Where [`train`] is when it calls [`Progress::checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansStage {
    /// Seeding has placed `chosen` of the `k` initial centroids.
    Seeding { chosen: usize, k: usize },
    /// Centroids are being arranged for the iterations (sorted into groups that prune together).
    Preparing,
    /// Lloyd iteration `iteration` (1-based) has assigned `done` of `total` samples.
    Assigning {
        iteration: usize,
        done: usize,
        total: usize,
    },
    /// Lloyd iteration `iteration` is recomputing centroids from its assignments.
    Updating { iteration: usize },
}

/// Called by [`train`] on the calling thread, never from a pool worker, between chunks of at
/// most 1e8 multiply-adds per pool thread (well under 0.2 s even with portable kernels), and
/// often much more frequently, so it must be cheap. Returning an error abandons the
/// computation promptly and `train` returns that error. Panicking (e.g. a PostgreSQL error raised
/// through pgrx) is safe as well: no lock is held and no worker is running at that point.
pub trait Progress {
    fn checkpoint(&mut self, stage: KMeansStage) -> Result<(), KMeansError>;
}

impl<F: FnMut(KMeansStage) -> Result<(), KMeansError>> Progress for F {
    fn checkpoint(&mut self, stage: KMeansStage) -> Result<(), KMeansError> {
        self(stage)
    }
}

/// Computes `params.k` centroids (k·dim values, row-major) from `samples` (n·dim values).
///
/// Fewer than k distinct samples is fine: the distinct ones come first and the remaining
/// centroids repeat samples (or, with no samples at all, are uniform random in [0, 1)^dim,
/// normalised for [`KMeansMetric::Spherical`]).
pub fn train(
    samples: &[f32],
    dim: usize,
    params: &KMeansParams,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<Vec<f32>, KMeansError> {
    let k = params.k;
    validate(samples.len(), dim, k)?;
    // Coordinates near f32's limits (anything finite is a valid vector) make squared distances
    // overflow to infinity, and the bounds and sums of the iterations stop meaning anything. Train
    // on a copy scaled by a power of two, which changes no comparison and no rounding, then scale
    // the centroids back.
    let exponent = overflow_safe_exponent(samples, dim);
    if exponent > 0 {
        let scaled: Vec<f32> = samples
            .iter()
            .map(|&v| scale_by_power_of_two(v, -exponent))
            .collect();
        let mut centroids = train(&scaled, dim, params, pool, progress)?;
        centroids
            .iter_mut()
            .for_each(|c| *c = scale_by_power_of_two(*c, exponent));
        return if centroids.iter().all(|v| v.is_finite()) {
            Ok(centroids)
        } else {
            Err(KMeansError::NonFiniteCentroid)
        };
    }
    let n = samples.len() / dim;
    let mut centroids = vec![0.0f32; k * dim];
    let mut rng = StdRng::seed_from_u64(params.seed);
    init::seed(
        samples,
        dim,
        &mut centroids,
        params.metric,
        &mut rng,
        pool,
        progress,
    )?;
    if n > 0 {
        lloyd::run(samples, dim, &mut centroids, params, pool, progress)?;
    }
    if centroids.iter().all(|v| v.is_finite()) {
        Ok(centroids)
    } else {
        Err(KMeansError::NonFiniteCentroid)
    }
}

fn validate(values: usize, dim: usize, k: usize) -> Result<(), KMeansError> {
    if k == 0 {
        return Err(KMeansError::NoClusters);
    }
    if dim == 0 {
        return Err(KMeansError::NoDimensions);
    }
    if !values.is_multiple_of(dim) {
        return Err(KMeansError::RaggedSamples { len: values, dim });
    }
    let max = u32::MAX as usize;
    let largest = k.max(values / dim);
    if largest > max {
        return Err(KMeansError::TooLarge { got: largest, max });
    }
    Ok(())
}

/// Upper bound on the bytes [`train`] allocates for `n` samples (the returned centroids
/// included, the samples themselves not), for checking against `maintenance_work_mem` before
/// starting. Monotone in each argument.
///
/// Per sample: 12 bytes for seeding; 12 for cluster, upper bound and sort index, 4 per group
/// lower bound (at most 32 groups, and at most dim/2 so the bounds never outweigh the samples),
/// and up to 16 for the list of samples that changed cluster. Per centroid value: 4 for the
/// result, 4 for the next centroids, 8 for the f64 sums, 4 for the packed copy used by the
/// blocked search. Plus 1 MiB for scratch.
pub fn memory_required(n: usize, dim: usize, k: usize) -> usize {
    let result = k * dim * size_of::<f32>();
    // Seeding's buffers are freed before the iterations start, but adding them keeps this simple
    // and monotone; they are small next to the samples.
    result + init::bytes_required(n, k) + lloyd::bytes_required(n, dim, k)
}

/// Rows per parallel task of [`assign`]: enough to amortise the score buffer.
const ASSIGN_ROWS_PER_TASK: usize = 16 * ROWS;

/// Index of the nearest centroid of every row (n·dim values), computed in parallel on `pool`.
/// The result equals [`nearest`] row by row, ties included: the blocked search is only used to
/// shortlist the centroids within its rounding error of the best, which are then compared with
/// the exact distance kernels.
///
/// Cost is about rows·k·dim multiply-adds, with scratch of 16·k bytes per worker; call it on
/// batches small enough to check for interrupts between them.
///
/// # Panics
/// If `dim` is 0, there are no centroids, or a buffer is not a whole number of vectors.
pub fn assign(
    rows: &[f32],
    dim: usize,
    centroids: &[f32],
    metric: KMeansMetric,
    pool: &rayon::ThreadPool,
) -> Vec<u32> {
    assert!(dim > 0, "dimension must be positive");
    assert!(
        !centroids.is_empty()
            && centroids.len().is_multiple_of(dim)
            && rows.len().is_multiple_of(dim),
        "buffers must hold whole {dim}-dimensional vectors and at least one centroid"
    );
    let n = rows.len() / dim;
    let mut labels = vec![0u32; n];
    if n == 0 {
        return labels;
    }
    let panels = Panels::new(centroids, dim, metric == KMeansMetric::L2);
    let max_centroid_norm = panels.max_norm();
    pool.install(|| {
        labels
            .par_chunks_mut(ASSIGN_ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, labels)| {
                let stride = panels.padded_len();
                let mut scores = vec![0.0f32; ROWS * stride];
                let first_row = task * ASSIGN_ROWS_PER_TASK;
                for (group, labels) in labels.chunks_mut(ROWS).enumerate() {
                    let first = first_row + group * ROWS;
                    let group_rows: [&[f32]; ROWS] = std::array::from_fn(|r| {
                        let row = (first + r).min(n - 1);
                        &rows[row * dim..][..dim]
                    });
                    let group_rows = &group_rows[..labels.len()];
                    panels.scores(group_rows, metric == KMeansMetric::Spherical, &mut scores);
                    for (r, (label, row)) in labels.iter_mut().zip(group_rows).enumerate() {
                        let row_scores = &scores[r * stride..][..stride];
                        let row_norm = panels.row_sq_norm(row).sqrt();
                        *label = confirm_nearest(
                            row,
                            row_scores,
                            centroids,
                            metric,
                            row_norm,
                            max_centroid_norm,
                        );
                    }
                }
            })
    });
    labels
}

/// Picks the exact nearest centroid among those whose approximate score is within rounding
/// error of the best one.
pub(crate) fn confirm_nearest(
    row: &[f32],
    scores: &[f32],
    centroids: &[f32],
    metric: KMeansMetric,
    row_norm: f32,
    max_centroid_norm: f32,
) -> u32 {
    let dim = row.len();
    // Panels pad the centroids to whole lanes; the padding's scores are not centroids (and are NaN
    // when a row's products overflow).
    let scores = &scores[..centroids.len() / dim];
    let best_score = scores.iter().fold(f32::INFINITY, |best, &s| best.min(s));
    // Worst-case error of an f32 sum of `dim` products is about dim·ε/2 of the sum of absolute
    // terms; each side of the comparison (blocked dot and norm versus exact kernel) contributes
    // such a term. The margin doubles that so that the true winner is always shortlisted. Norms
    // are measured from the panels' origin, as the scores are.
    let row_norm = f64::from(row_norm);
    let centroid_norm = f64::from(max_centroid_norm);
    let eps = f64::from(f32::EPSILON);
    let margin = match metric {
        KMeansMetric::L2 => (3.0 * dim as f64 + 8.0) * eps * (row_norm + centroid_norm).powi(2),
        KMeansMetric::Spherical => (2.0 * dim as f64 + 4.0) * eps * row_norm * centroid_norm,
    };
    let limit = f64::from(best_score) + 2.0 * margin;
    let shortlist = scores
        .iter()
        .enumerate()
        .filter(|&(_, &score)| f64::from(score) <= limit || score.is_nan())
        .map(|(j, _)| j);
    exact_nearest(row, centroids, shortlist, metric)
}

/// Index of the centroid nearest to `row`: smallest squared Euclidean distance for L2, largest
/// dot product for spherical; ties go to the lowest index.
///
/// # Panics
/// If `dim` is 0 or there is no centroid.
pub fn nearest(row: &[f32], centroids: &[f32], dim: usize, metric: KMeansMetric) -> u32 {
    assert!(
        dim > 0 && centroids.len() >= dim,
        "need at least one centroid"
    );
    exact_nearest(row, centroids, 0..centroids.len() / dim, metric)
}

/// The nearest of the `candidates` (in increasing index order) by the exact distance kernels.
fn exact_nearest(
    row: &[f32],
    centroids: &[f32],
    candidates: impl Iterator<Item = usize>,
    metric: KMeansMetric,
) -> u32 {
    let dim = row.len();
    // Negated dot products make "smaller is nearer" hold for both metrics.
    let score = |j: usize| {
        let centroid = &centroids[j * dim..][..dim];
        match metric {
            KMeansMetric::L2 => distance::l2_squared(row, centroid),
            KMeansMetric::Spherical => -distance::dot(row, centroid),
        }
    };
    let mut best = (0, f32::INFINITY);
    for j in candidates {
        let s = score(j);
        if s < best.1 {
            best = (j, s);
        }
    }
    if best.1.is_finite() {
        best.0 as u32
    } else {
        // Every f32 score overflowed (coordinates near f32's limits): compare them all in f64,
        // where they cannot.
        nearest_f64(row, centroids, metric)
    }
}

/// [`nearest`] computed in f64 over all centroids, for rows whose f32 distances overflow.
fn nearest_f64(row: &[f32], centroids: &[f32], metric: KMeansMetric) -> u32 {
    let dim = row.len();
    let score = |centroid: &[f32]| -> f64 {
        let pairs = row
            .iter()
            .zip(centroid)
            .map(|(&a, &b)| (f64::from(a), f64::from(b)));
        match metric {
            KMeansMetric::L2 => pairs.map(|(a, b)| (a - b) * (a - b)).sum(),
            KMeansMetric::Spherical => -pairs.map(|(a, b)| a * b).sum::<f64>(),
        }
    };
    let mut best = (0, f64::INFINITY);
    for (j, centroid) in centroids.chunks_exact(dim).enumerate() {
        let s = score(centroid);
        if s < best.1 {
            best = (j, s);
        }
    }
    best.0 as u32
}

/// The power of two to divide `samples` by so that squared distances between them (and centroids
/// inside their range) stay finite in f32: coordinates at most 2^59 / sqrt(dim) keep every sum
/// of `dim` squared differences below 2^120. 0 for all ordinary data.
fn overflow_safe_exponent(samples: &[f32], dim: usize) -> i32 {
    let largest = samples.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let limit = 2f64.powi(59) / (dim.max(1) as f64).sqrt();
    if f64::from(largest) <= limit {
        0
    } else {
        (f64::from(largest) / limit).log2().ceil() as i32
    }
}

/// v · 2^exponent, exact unless the result leaves f32's normal range.
fn scale_by_power_of_two(v: f32, exponent: i32) -> f32 {
    (f64::from(v) * 2f64.powi(exponent)) as f32
}

/// Samples per parallel chunk between checkpoints when each sample may cost `work_per_sample`
/// multiply-adds.
fn chunk_len(work_per_sample: usize, pool: &rayon::ThreadPool) -> usize {
    let threads = pool.current_num_threads().max(1);
    (WORK_PER_CHECKPOINT_PER_THREAD * threads / work_per_sample.max(1)).max(threads * ROWS)
}

/// Scales to unit length; a zero vector becomes the first basis vector so the result is still a
/// valid unit centroid.
fn normalize(vector: &mut [f32]) {
    if !crate::metric::normalize(vector) {
        vector.fill(0.0);
        vector[0] = 1.0;
    }
}
