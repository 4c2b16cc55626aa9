//! Initial centroids: k-means++ (D² weighting), on a random subset or replaced by random samples
//! when the full version would cost more than the iterations that follow.

use rand::rngs::StdRng;
use rand::Rng;
use rayon::prelude::*;

use super::panels::{Panels, LANES, ROWS};
use super::{chunk_len, normalize, KMeansError, KMeansMetric, KMeansStage, Progress};
use crate::distance;

/// Multiply-adds above which k-means++ over all samples is replaced by k-means++ over a random
/// subset of `SEEDING_WORK_LIMIT / (k·dim)` samples. Exact k-means++ costs n·k·dim, as much as a
/// full Lloyd iteration but with one pass over the samples per centre instead of cache-blocked
/// work; 4e10 is a few seconds on two cores, and seeding from a large subset loses little.
pub const SEEDING_WORK_LIMIT: f64 = 4e10;

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
        ((SEEDING_WORK_LIMIT / per_sample) as usize).min(n)
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

impl Weights {
    /// Takes a drawn candidate out of the running, so the rest of its batch is distinct from it.
    fn remove(&mut self, i: usize) {
        let weight = f64::from(self.min_sq_distance[i]);
        if weight.is_finite() {
            self.block_weight[i / WEIGHT_BLOCK] -= weight;
        }
        self.min_sq_distance[i] = 0.0;
    }
}

/// Centres drawn from one D² distribution before distances are updated.
///
/// Updating the distances after every single centre means one pass over all candidates per
/// centre, each comparing one vector with one centre: bound by memory bandwidth, not arithmetic.
/// Drawing a batch and comparing every candidate with the whole batch at once uses the blocked
/// kernel (a batch fills one 16-centroid panel) and reads the candidates k/16 times instead of
/// k times. Within a batch later draws do not see earlier ones, a mild version of k-means||'s
/// oversampling; keeping batches at most k/32 leaves at least 32 rounds of re-weighting, which
/// in our measurements changed the final inertia by well under 1%.
fn batch_len(k: usize) -> usize {
    (k / 32).clamp(1, LANES)
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
    // For each chosen centre, its squared distance to the nearest centre of the current batch.
    let mut centre_to_batch: Vec<f32> = vec![0.0; k];
    let blocks_per_chunk = chunk_len(LANES * dim, pool).div_ceil(WEIGHT_BLOCK);

    let mut chosen = 0;
    while chosen < k {
        let batch = match chosen {
            0 => 1,
            _ => batch_len(k).min(k - chosen),
        };
        for slot in chosen..chosen + batch {
            let pick = match chosen {
                0 => rng.gen_range(0..m),
                _ => draw(&weights, rng),
            };
            weights.remove(pick);
            centroids[slot * dim..][..dim].copy_from_slice(candidates.row(pick));
        }
        let (previous, rest) = centroids.split_at(chosen * dim);
        let batch_panels = Panels::new(&rest[..batch * dim], dim);

        // Triangle inequality: a candidate whose nearest centre c satisfies
        // d(c, b)² ≥ 4·d(x, c)² for every batch centre b cannot get closer to the batch, so it is
        // skipped without touching its vector. Clustered data skips most candidates this way.
        let centre_to_batch = &mut centre_to_batch[..chosen];
        pool.install(|| {
            centre_to_batch
                .par_chunks_mut(ROWS)
                .enumerate()
                .for_each(|(group, out)| {
                    let rows: Vec<&[f32]> = (0..out.len())
                        .map(|r| &previous[(group * ROWS + r) * dim..][..dim])
                        .collect();
                    let norms: Vec<f32> = rows.iter().map(|r| distance::dot(r, r)).collect();
                    let nearest = batch_panels.two_nearest(&rows, &norms, 0..1, None);
                    for (out, nearest) in out.iter_mut().zip(nearest) {
                        *out = nearest.first;
                    }
                })
        });
        let centre_to_batch = &*centre_to_batch;
        let first_centre = chosen as u32;
        for first_block in (0..weights.block_weight.len()).step_by(blocks_per_chunk) {
            let blocks =
                first_block..(first_block + blocks_per_chunk).min(weights.block_weight.len());
            let rows = blocks.start * WEIGHT_BLOCK..(blocks.end * WEIGHT_BLOCK).min(m);
            pool.install(|| {
                weights.min_sq_distance[rows.clone()]
                    .par_chunks_mut(WEIGHT_BLOCK)
                    .zip(weights.nearest_centre[rows.clone()].par_chunks_mut(WEIGHT_BLOCK))
                    .zip(weights.block_weight[blocks.clone()].par_iter_mut())
                    .enumerate()
                    .for_each(|(b, ((min_sq, nearest), weight))| {
                        let update = BlockUpdate {
                            candidates,
                            first: rows.start + b * WEIGHT_BLOCK,
                            batch: &batch_panels,
                            first_centre,
                            centre_to_batch,
                        };
                        *weight = update.run(min_sq, nearest);
                    })
            });
            progress.checkpoint(KMeansStage::Seeding {
                chosen: chosen + batch,
                k,
            })?;
        }
        chosen += batch;
    }
    Ok(())
}

/// Brings one weight block's distances up to date with a new batch of centres.
struct BlockUpdate<'a> {
    candidates: &'a Candidates<'a>,
    first: usize,
    batch: &'a Panels,
    first_centre: u32,
    centre_to_batch: &'a [f32],
}

impl BlockUpdate<'_> {
    /// Returns the block's new total weight.
    fn run(&self, min_sq: &mut [f32], nearest: &mut [u32]) -> f64 {
        let mut pending = [0usize; ROWS];
        let mut pending_len = 0;
        for offset in 0..min_sq.len() {
            let skip = self
                .centre_to_batch
                .get(nearest[offset] as usize)
                .is_some_and(|&cc| cc >= 4.0 * min_sq[offset]);
            if skip {
                continue;
            }
            pending[pending_len] = offset;
            pending_len += 1;
            if pending_len == ROWS {
                self.search(&pending, min_sq, nearest);
                pending_len = 0;
            }
        }
        if pending_len > 0 {
            self.search(&pending[..pending_len], min_sq, nearest);
        }
        min_sq.iter().map(|&w| f64::from(w)).sum()
    }

    fn search(&self, pending: &[usize], min_sq: &mut [f32], nearest: &mut [u32]) {
        let rows: [&[f32]; ROWS] = std::array::from_fn(|r| {
            self.candidates
                .row(self.first + pending[r.min(pending.len() - 1)])
        });
        let rows = &rows[..pending.len()];
        let norms: [f32; ROWS] = std::array::from_fn(|r| {
            let row = rows[r.min(rows.len() - 1)];
            distance::dot(row, row)
        });
        let found = self.batch.two_nearest(rows, &norms[..rows.len()], 0..1, None);
        for (&offset, found) in pending.iter().zip(found) {
            // The very first centre must replace the initial +∞ even if its distance overflowed.
            if found.first < min_sq[offset] || !min_sq[offset].is_finite() {
                min_sq[offset] = found.first;
                nearest[offset] = self.first_centre + found.index;
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
