//! Initial centroids: k-means++ (D² weighting), on a random subset or replaced by random samples
//! when the full version would cost more than the iterations that follow.

use rand::rngs::StdRng;
use rand::Rng;
use rayon::prelude::*;

use super::panels::{sq_distances_to, ROWS};
use super::{chunk_len, normalize, KMeansError, KMeansMetric, KMeansStage, Progress};

/// Multiply-adds above which k-means++ over all n samples is replaced by k-means++ over a random
/// subset of `max(SEEDING_WORK_LIMIT / (k·dim), n / SEEDING_SUBSET_DIVISOR)` of them.
///
/// k-means++ needs one pass over the samples per centre, comparing each sample with a single
/// centre, so unlike the cache-blocked Lloyd iterations it is bound by memory bandwidth, several
/// times slower per multiply-add. (Drawing several centres per pass to use the blocked kernel
/// was tried: it cost 3-25% in final inertia.) At 12,500 × 384 × 250 (pgvector's sample for 250
/// lists) seeding over every sample took 0.32 s on one thread, more than half of all the Lloyd
/// passes after it; over a subset of about ten candidates per centre it takes a fifth of that,
/// and the index's recall@10 at equal probes on debian-minilm-384 stayed within 0.006 either way
/// (the Lloyd passes move the centres far more than the seeding's choice among candidates does).
pub const SEEDING_WORK_LIMIT: f64 = 2.5e8;

/// Above the limit the subset still holds at least 1/16 of the samples: seeding then costs at
/// most a few full Lloyd passes, and the subset stays large enough for k-means++ to matter.
const SEEDING_SUBSET_DIVISOR: usize = 16;

/// A subset smaller than this many samples per centroid gives k-means++ too little choice to be
/// worth it; the centroids are then simply distinct random samples.
const MIN_SUBSET_PER_CENTROID: usize = 2;

/// Samples per D²-weight block. Fixed (not derived from the thread count) so that the weight
/// sums, and with them the random draws, are identical however many threads run.
const WEIGHT_BLOCK: usize = 1024;

/// The samples k-means++ chooses from: all of them, or a sorted random subset.
struct Candidates<'a> {
    samples: &'a [f32],
    dim: usize,
    subset: Option<Vec<u32>>,
}

impl Candidates<'_> {
    fn len(&self) -> usize {
        match &self.subset {
            Some(subset) => subset.len(),
            None => self.samples.len() / self.dim,
        }
    }

    fn row(&self, i: usize) -> &[f32] {
        let sample = match &self.subset {
            Some(subset) => subset[i] as usize,
            None => i,
        };
        &self.samples[sample * self.dim..][..self.dim]
    }
}

/// How many samples seeding looks at, given `n` samples in all.
pub(super) fn seeding_sample_count(n: usize, dim: usize, k: usize) -> usize {
    let per_sample = (k as f64) * (dim as f64);
    if (n as f64) * per_sample <= SEEDING_WORK_LIMIT {
        n
    } else {
        let within_limit = (SEEDING_WORK_LIMIT / per_sample) as usize;
        within_limit.max(n / SEEDING_SUBSET_DIVISOR).min(n)
    }
}

/// Bytes the seeding stage allocates besides the output centroids. Counted as if all n samples
/// took part, which keeps the estimate monotone in every argument.
pub(super) fn bytes_required(n: usize, k: usize) -> usize {
    // Subset indices, current minimum distance, nearest centre.
    let per_candidate = 3 * size_of::<u32>();
    let weight_blocks = n.div_ceil(WEIGHT_BLOCK) * size_of::<f64>();
    // Centre-to-centre distances, or the indices of randomly chosen samples.
    let per_centroid = 2 * size_of::<f32>();
    n * per_candidate + weight_blocks + k * per_centroid
}

/// Fills `centroids` (k·dim) with the initial centres.
pub(super) fn seed(
    samples: &[f32],
    dim: usize,
    centroids: &mut [f32],
    metric: KMeansMetric,
    rng: &mut StdRng,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<(), KMeansError> {
    let n = samples.len() / dim;
    let k = centroids.len() / dim;
    if n == 0 {
        for value in centroids.iter_mut() {
            *value = rng.gen::<f32>();
        }
        if metric == KMeansMetric::Spherical {
            centroids.chunks_exact_mut(dim).for_each(normalize);
        }
        return Ok(());
    }
    let m = seeding_sample_count(n, dim, k);
    if m < n && m < k.saturating_mul(MIN_SUBSET_PER_CENTROID) {
        random_distinct(samples, dim, centroids, rng);
        return progress.checkpoint(KMeansStage::Seeding { chosen: k, k });
    }
    let candidates = Candidates {
        samples,
        dim,
        subset: (m < n).then(|| crate::sample::sorted_subset(n, m, rng)),
    };
    kmeans_plus_plus(&candidates, centroids, rng, pool, progress)
}

/// Distinct random samples, then uniform repeats if there are fewer than k. The order of
/// centroids carries no meaning, so the sorted subset is used as it is.
fn random_distinct(samples: &[f32], dim: usize, centroids: &mut [f32], rng: &mut StdRng) {
    let n = samples.len() / dim;
    let k = centroids.len() / dim;
    let row = |i: usize| &samples[i * dim..][..dim];
    let distinct = crate::sample::sorted_subset(n, k.min(n), rng);
    for (centroid, &i) in centroids.chunks_exact_mut(dim).zip(&distinct) {
        centroid.copy_from_slice(row(i as usize));
    }
    for centroid in centroids.chunks_exact_mut(dim).skip(n) {
        centroid.copy_from_slice(row(rng.gen_range(0..n)));
    }
}

/// State of D² sampling: for every candidate its squared distance to the nearest chosen centre
/// and which centre that is, plus the weight of each fixed block of candidates.
struct Weights {
    min_sq_distance: Vec<f32>,
    nearest_centre: Vec<u32>,
    block_weight: Vec<f64>,
}

fn kmeans_plus_plus(
    candidates: &Candidates,
    centroids: &mut [f32],
    rng: &mut StdRng,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<(), KMeansError> {
    let dim = candidates.dim;
    let m = candidates.len();
    let k = centroids.len() / dim;
    let mut weights = Weights {
        min_sq_distance: vec![f32::INFINITY; m],
        nearest_centre: vec![0; m],
        block_weight: vec![0.0; m.div_ceil(WEIGHT_BLOCK)],
    };
    let mut centre_sq_distances: Vec<f32> = Vec::with_capacity(k);
    let blocks_per_chunk = chunk_len(dim, pool).div_ceil(WEIGHT_BLOCK);

    for chosen in 0..k {
        let pick = match chosen {
            0 => rng.gen_range(0..m),
            _ => draw(&weights, rng),
        };
        let (previous, rest) = centroids.split_at_mut(chosen * dim);
        let centre = &mut rest[..dim];
        centre.copy_from_slice(candidates.row(pick));
        let centre = &*centre;

        // Triangle inequality: a candidate whose nearest centre c satisfies
        // d(c, new)² ≥ 4·d(x, c)² cannot get closer to the new centre, so it is skipped without
        // reading its vector. Clustered data skips most candidates this way.
        centre_sq_distances.resize(chosen, 0.0);
        pool.install(|| {
            centre_sq_distances
                .par_chunks_mut(ROWS)
                .zip(previous.par_chunks(ROWS * dim))
                .for_each(|(out, group)| {
                    let rows: [&[f32]; ROWS] =
                        std::array::from_fn(|r| &group[r.min(out.len() - 1) * dim..][..dim]);
                    out.copy_from_slice(&sq_distances_to(centre, &rows)[..out.len()]);
                })
        });
        let update = CentreUpdate {
            candidates,
            centre,
            index: chosen as u32,
            centre_sq_distances: &centre_sq_distances,
        };
        let block_count = weights.block_weight.len();
        for first_block in (0..block_count).step_by(blocks_per_chunk) {
            let blocks = first_block..(first_block + blocks_per_chunk).min(block_count);
            let rows = blocks.start * WEIGHT_BLOCK..(blocks.end * WEIGHT_BLOCK).min(m);
            pool.install(|| {
                weights.min_sq_distance[rows.clone()]
                    .par_chunks_mut(WEIGHT_BLOCK)
                    .zip(weights.nearest_centre[rows.clone()].par_chunks_mut(WEIGHT_BLOCK))
                    .zip(weights.block_weight[blocks.clone()].par_iter_mut())
                    .enumerate()
                    .for_each(|(b, ((min_sq, nearest), weight))| {
                        *weight = update.block(rows.start + b * WEIGHT_BLOCK, min_sq, nearest);
                    })
            });
            progress.checkpoint(KMeansStage::Seeding {
                chosen: chosen + 1,
                k,
            })?;
        }
    }
    Ok(())
}

/// Brings the D² weights up to date with one new centre.
struct CentreUpdate<'a> {
    candidates: &'a Candidates<'a>,
    centre: &'a [f32],
    index: u32,
    /// Squared distance from each earlier centre to this one.
    centre_sq_distances: &'a [f32],
}

impl CentreUpdate<'_> {
    /// Updates the candidates `first..first + min_sq.len()`; returns their new total weight.
    fn block(&self, first: usize, min_sq: &mut [f32], nearest: &mut [u32]) -> f64 {
        let mut pending = [0usize; ROWS];
        let mut pending_len = 0;
        for offset in 0..min_sq.len() {
            let far = self
                .centre_sq_distances
                .get(nearest[offset] as usize)
                .is_some_and(|&cc| cc >= 4.0 * min_sq[offset]);
            if !far {
                pending[pending_len] = offset;
                pending_len += 1;
                if pending_len == ROWS {
                    self.measure(first, &pending, min_sq, nearest);
                    pending_len = 0;
                }
            }
        }
        if pending_len > 0 {
            self.measure(first, &pending[..pending_len], min_sq, nearest);
        }
        min_sq.iter().map(|&w| f64::from(w)).sum()
    }

    /// Compares up to [`ROWS`] candidates (offsets from `first`) with the new centre.
    fn measure(&self, first: usize, pending: &[usize], min_sq: &mut [f32], nearest: &mut [u32]) {
        let rows: [&[f32]; ROWS] = std::array::from_fn(|r| {
            self.candidates
                .row(first + pending[r.min(pending.len() - 1)])
        });
        let distances = sq_distances_to(self.centre, &rows);
        for (&offset, d) in pending.iter().zip(distances) {
            // The first centre replaces +∞ even if its distance overflowed.
            if d < min_sq[offset] || self.index == 0 {
                min_sq[offset] = d;
                nearest[offset] = self.index;
            }
        }
    }
}

/// Draws a candidate with probability proportional to its weight, or uniformly when all weights
/// are zero (every candidate coincides with a chosen centre) or overflowed.
fn draw(weights: &Weights, rng: &mut StdRng) -> usize {
    let total: f64 = weights.block_weight.iter().sum();
    let m = weights.min_sq_distance.len();
    if !(total > 0.0 && total.is_finite()) {
        return rng.gen_range(0..m);
    }
    let mut remaining = rng.gen::<f64>() * total;
    for (block, &block_weight) in weights.block_weight.iter().enumerate() {
        if remaining < block_weight {
            let rows = block * WEIGHT_BLOCK..((block + 1) * WEIGHT_BLOCK).min(m);
            let mut last_positive = None;
            for i in rows {
                let weight = f64::from(weights.min_sq_distance[i]);
                if weight > 0.0 {
                    remaining -= weight;
                    last_positive = Some(i);
                    if remaining < 0.0 {
                        return i;
                    }
                }
            }
            if let Some(i) = last_positive {
                return i;
            }
        }
        remaining -= block_weight;
    }
    // Rounding left `remaining` just above the total: take the last candidate that has weight.
    (0..m)
        .rev()
        .find(|&i| weights.min_sq_distance[i] > 0.0)
        .unwrap_or(m - 1)
}
