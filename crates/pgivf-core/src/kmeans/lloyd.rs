//! Lloyd iterations with Hamerly's bounds.
//!
//! Per sample we keep its cluster, an upper bound on the distance to that cluster's centroid and
//! a lower bound on the distance to every other centroid. After centroids move by `shift`, the
//! bounds are loosened by the shifts instead of recomputed; a sample whose upper bound is below
//! both its lower bound and half the distance from its centroid to the nearest other centroid
//! cannot change cluster and is skipped. Once k-means settles almost every sample is skipped.
//!
//! Bounds are Euclidean distances (not squared) because they rely on the triangle inequality.
//! Spherical k-means uses the same machinery: for unit vectors the largest dot product is the
//! smallest Euclidean distance.

use rayon::prelude::*;

use super::panels::{Panels, ROWS};
use super::{
    chunk_len, KMeansError, KMeansMetric, KMeansStage, Progress, WORK_PER_CHECKPOINT_PER_THREAD,
};
use crate::distance;

const UNASSIGNED: u32 = u32::MAX;

/// When more samples than this fraction change cluster, centroid sums are rebuilt from scratch
/// in parallel rather than patched one move at a time on the calling thread. A fixed fraction
/// (not one that depends on the thread count) keeps the rounding of the sums reproducible.
const REBUILD_SUMS_FRACTION: usize = 4;

/// Samples that changed cluster in one assignment pass: (sample, previous cluster), in sample
/// order, one vector per parallel task.
type Moves = Vec<Vec<(u32, u32)>>;

/// Bytes [`run`] allocates.
pub(super) fn bytes_required(n: usize, dim: usize, k: usize) -> usize {
    // Cluster, upper bound, lower bound, sort order; the move list can reach 8 bytes per sample,
    // twice that while its vectors grow.
    let per_sample = 4 * size_of::<u32>() + 2 * size_of::<(u32, u32)>();
    // Next centroids and f64 sums.
    let per_value = size_of::<f32>() + size_of::<f64>();
    // Counts, offsets and cursors of the counting sort, half-separations, shifts, degenerate
    // flags.
    let per_centroid = 3 * size_of::<usize>() + 2 * size_of::<f32>() + 1;
    // Rayon's job bookkeeping and per-task vector headers.
    let slack = 64 * 1024 + n / 8;
    n * per_sample + k * dim * per_value + Panels::bytes_required(k, dim) + k * per_centroid + slack
}

/// How far each centroid moved in the last update.
struct Shifts {
    per_centroid: Vec<f32>,
    largest: f32,
    largest_index: u32,
    second_largest: f32,
}

impl Shifts {
    fn none(k: usize) -> Self {
        Self {
            per_centroid: vec![0.0; k],
            largest: 0.0,
            largest_index: 0,
            second_largest: 0.0,
        }
    }

    /// The most any centroid other than `cluster` moved: how much a lower bound must drop.
    fn largest_except(&self, cluster: u32) -> f32 {
        if cluster == self.largest_index {
            self.second_largest
        } else {
            self.largest
        }
    }

    fn measure(&mut self, old: &[f32], new: &[f32], dim: usize, pool: &rayon::ThreadPool) {
        pool.install(|| {
            old.par_chunks_exact(dim)
                .zip(new.par_chunks_exact(dim))
                .map(|(old, new)| distance::l2_squared(old, new).sqrt())
                .collect_into_vec(&mut self.per_centroid)
        });
        self.largest = 0.0;
        self.largest_index = 0;
        self.second_largest = 0.0;
        for (j, &shift) in self.per_centroid.iter().enumerate() {
            if shift > self.largest {
                self.second_largest = self.largest;
                self.largest = shift;
                self.largest_index = j as u32;
            } else if shift > self.second_largest {
                self.second_largest = shift;
            }
        }
    }
}

/// Per-sample state, indexed like the samples.
struct Bounds {
    cluster: Vec<u32>,
    upper: Vec<f32>,
    lower: Vec<f32>,
}

/// Running per-cluster sums, rebuilt or patched after each assignment pass.
struct Sums {
    sums: Vec<f64>,
    counts: Vec<usize>,
    /// Counting-sort scratch, also reused to rank reseeding candidates.
    order: Vec<u32>,
    offsets: Vec<usize>,
}

/// Refines `centroids` in place for at most `max_iterations` passes.
pub(super) fn run(
    samples: &[f32],
    dim: usize,
    centroids: &mut [f32],
    metric: KMeansMetric,
    max_iterations: usize,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<(), KMeansError> {
    let n = samples.len() / dim;
    let k = centroids.len() / dim;
    let mut bounds = Bounds {
        cluster: vec![UNASSIGNED; n],
        upper: vec![f32::INFINITY; n],
        lower: vec![0.0; n],
    };
    let mut sums = Sums {
        sums: vec![0.0; k * dim],
        counts: vec![0; k],
        order: Vec::new(),
        offsets: Vec::new(),
    };
    let mut next = vec![0.0f32; k * dim];
    let mut panels = Panels::new(centroids, dim);
    let mut half_separation = vec![0.0f32; k];
    let mut shifts = Shifts::none(k);

    for iteration in 1..=max_iterations {
        if iteration > 1 {
            panels.repack(centroids);
        }
        measure_half_separation(
            &panels,
            centroids,
            dim,
            &mut half_separation,
            pool,
            progress,
            iteration,
        )?;
        let moves = assign_samples(
            samples,
            dim,
            centroids,
            &panels,
            &half_separation,
            &shifts,
            &mut bounds,
            pool,
            progress,
            iteration,
        )?;
        let moved: usize = moves.iter().map(Vec::len).sum();
        if moved == 0 {
            break;
        }
        if iteration == 1 || moved > n / REBUILD_SUMS_FRACTION {
            drop(moves);
            rebuild_sums(samples, dim, &bounds.cluster, &mut sums, pool, progress, iteration)?;
        } else {
            patch_sums(samples, dim, &bounds.cluster, &moves, &mut sums, progress, iteration)?;
        }
        let mut candidates = ReseedCandidates::new();
        refill_empty_clusters(samples, dim, centroids, &mut bounds, &mut sums, &mut candidates);
        let degenerate = compute_centroids(&sums, centroids, &mut next, dim, metric, pool);
        for j in degenerate {
            // Spherical only: members cancel out, so the mean has no direction. Moving the
            // centroid onto a badly served sample lets the members spread to better clusters.
            let target = &mut next[j * dim..][..dim];
            match candidates.next_eligible(samples, dim, centroids, &bounds, &sums.counts, 1, &mut sums.order) {
                Some(i) => target.copy_from_slice(&samples[i * dim..][..dim]),
                None => target.copy_from_slice(&centroids[j * dim..][..dim]),
            }
        }
        shifts.measure(centroids, &next, dim, pool);
        centroids.swap_with_slice(&mut next);
        progress.checkpoint(KMeansStage::Updating { iteration })?;
    }
    Ok(())
}

/// Half the distance from each centroid to its nearest other centroid (Hamerly's `s`): a sample
/// closer than that to its own centroid cannot be closer to any other.
fn measure_half_separation(
    panels: &Panels,
    centroids: &[f32],
    dim: usize,
    half_separation: &mut [f32],
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
    iteration: usize,
) -> Result<(), KMeansError> {
    let k = half_separation.len();
    let chunk = chunk_len(k * dim, pool).next_multiple_of(ROWS);
    for start in (0..k).step_by(chunk) {
        let end = (start + chunk).min(k);
        pool.install(|| {
            half_separation[start..end]
                .par_chunks_mut(ROWS)
                .enumerate()
                .for_each(|(group, out)| {
                    let first = start + group * ROWS;
                    let rows: [&[f32]; ROWS] = std::array::from_fn(|r| {
                        let j = (first + r).min(k - 1);
                        &centroids[j * dim..][..dim]
                    });
                    let nearest = panels.two_nearest(&rows[..out.len()], Some(first));
                    for (out, nearest) in out.iter_mut().zip(nearest) {
                        *out = 0.5 * nearest.first.sqrt();
                    }
                })
        });
        progress.checkpoint(KMeansStage::Updating { iteration })?;
    }
    Ok(())
}

/// One assignment pass over all samples, in chunks with a checkpoint after each.
#[allow(clippy::too_many_arguments)]
fn assign_samples(
    samples: &[f32],
    dim: usize,
    centroids: &[f32],
    panels: &Panels,
    half_separation: &[f32],
    shifts: &Shifts,
    bounds: &mut Bounds,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
    iteration: usize,
) -> Result<Moves, KMeansError> {
    let n = bounds.cluster.len();
    let k = half_separation.len();
    let chunk = chunk_len(k * dim, pool);
    // Several tasks per thread even in one chunk: skipped samples are cheap and full searches
    // are not, so work per task varies a lot.
    let task_len = (chunk.min(n) / (4 * pool.current_num_threads().max(1))).max(4 * ROWS);
    let context = PassContext {
        samples,
        dim,
        centroids,
        panels,
        half_separation,
        shifts,
    };
    let mut moves = Moves::new();
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        let chunk_moves: Moves = pool.install(|| {
            bounds.cluster[start..end]
                .par_chunks_mut(task_len)
                .zip(bounds.upper[start..end].par_chunks_mut(task_len))
                .zip(bounds.lower[start..end].par_chunks_mut(task_len))
                .enumerate()
                .map(|(task, ((cluster, upper), lower))| {
                    context.assign_task(start + task * task_len, cluster, upper, lower)
                })
                .collect()
        });
        moves.extend(chunk_moves.into_iter().filter(|m| !m.is_empty()));
        progress.checkpoint(KMeansStage::Assigning {
            iteration,
            done: end,
            total: n,
        })?;
    }
    Ok(moves)
}

/// What every task of an assignment pass reads.
struct PassContext<'a> {
    samples: &'a [f32],
    dim: usize,
    centroids: &'a [f32],
    panels: &'a Panels,
    half_separation: &'a [f32],
    shifts: &'a Shifts,
}

impl PassContext<'_> {
    fn row(&self, i: usize) -> &[f32] {
        &self.samples[i * self.dim..][..self.dim]
    }

    /// Updates the bounds of samples `first..first + cluster.len()`; returns those that moved.
    fn assign_task(
        &self,
        first: usize,
        cluster: &mut [u32],
        upper: &mut [f32],
        lower: &mut [f32],
    ) -> Vec<(u32, u32)> {
        let mut moves = Vec::new();
        // Samples whose bounds could not rule out a move, searched together in groups of ROWS.
        let mut pending = [0usize; ROWS];
        let mut pending_len = 0;
        for t in 0..cluster.len() {
            let current = cluster[t];
            if current != UNASSIGNED {
                let c = current as usize;
                upper[t] += self.shifts.per_centroid[c];
                lower[t] -= self.shifts.largest_except(current);
                let threshold = self.half_separation[c].max(lower[t]);
                if upper[t] <= threshold {
                    continue;
                }
                let centroid = &self.centroids[c * self.dim..][..self.dim];
                upper[t] = distance::l2_squared(self.row(first + t), centroid).sqrt();
                if upper[t] <= threshold {
                    continue;
                }
            }
            pending[pending_len] = t;
            pending_len += 1;
            if pending_len == ROWS {
                self.search(first, &pending, cluster, upper, lower, &mut moves);
                pending_len = 0;
            }
        }
        if pending_len > 0 {
            self.search(first, &pending[..pending_len], cluster, upper, lower, &mut moves);
        }
        moves
    }

    fn search(
        &self,
        first: usize,
        pending: &[usize],
        cluster: &mut [u32],
        upper: &mut [f32],
        lower: &mut [f32],
        moves: &mut Vec<(u32, u32)>,
    ) {
        let rows: [&[f32]; ROWS] =
            std::array::from_fn(|r| self.row(first + pending[r.min(pending.len() - 1)]));
        let found = self.panels.two_nearest(&rows[..pending.len()], None);
        for (&t, nearest) in pending.iter().zip(found) {
            upper[t] = nearest.first.sqrt();
            lower[t] = nearest.second.sqrt();
            if nearest.index != cluster[t] {
                moves.push(((first + t) as u32, cluster[t]));
                cluster[t] = nearest.index;
            }
        }
    }
}

/// Recomputes every cluster's sum from its members, in parallel by cluster. Members are visited
/// in sample order, so the rounding does not depend on how clusters are spread over threads.
fn rebuild_sums(
    samples: &[f32],
    dim: usize,
    cluster: &[u32],
    sums: &mut Sums,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
    iteration: usize,
) -> Result<(), KMeansError> {
    let k = sums.counts.len();
    sums.counts.fill(0);
    for &c in cluster {
        sums.counts[c as usize] += 1;
    }
    sums.offsets.clear();
    sums.offsets.push(0);
    let mut total = 0;
    for &count in &sums.counts {
        total += count;
        sums.offsets.push(total);
    }
    let mut cursor = sums.offsets.clone();
    sums.order.resize(cluster.len(), 0);
    for (i, &c) in cluster.iter().enumerate() {
        let slot = &mut cursor[c as usize];
        sums.order[*slot] = i as u32;
        *slot += 1;
    }
    drop(cursor);

    let members_per_chunk = chunk_len(dim, pool);
    let mut start = 0;
    while start < k {
        let mut end = start + 1;
        while end < k && sums.offsets[end + 1] - sums.offsets[start] <= members_per_chunk {
            end += 1;
        }
        let (order, offsets) = (&sums.order, &sums.offsets);
        pool.install(|| {
            sums.sums[start * dim..end * dim]
                .par_chunks_mut(dim)
                .enumerate()
                .for_each(|(offset, sum)| {
                    let j = start + offset;
                    sum.fill(0.0);
                    for &i in &order[offsets[j]..offsets[j + 1]] {
                        let row = &samples[i as usize * dim..][..dim];
                        for (s, &v) in sum.iter_mut().zip(row) {
                            *s += f64::from(v);
                        }
                    }
                })
        });
        progress.checkpoint(KMeansStage::Updating { iteration })?;
        start = end;
    }
    Ok(())
}

/// Applies a few moves to the sums on the calling thread, in sample order.
fn patch_sums(
    samples: &[f32],
    dim: usize,
    cluster: &[u32],
    moves: &Moves,
    sums: &mut Sums,
    progress: &mut dyn Progress,
    iteration: usize,
) -> Result<(), KMeansError> {
    let moves_per_checkpoint = (WORK_PER_CHECKPOINT_PER_THREAD / (2 * dim)).max(1);
    for (done, &(i, from)) in moves.iter().flatten().enumerate() {
        let i = i as usize;
        let row = &samples[i * dim..][..dim];
        let to = cluster[i] as usize;
        if from != UNASSIGNED {
            let from = from as usize;
            for (s, &v) in sums.sums[from * dim..][..dim].iter_mut().zip(row) {
                *s -= f64::from(v);
            }
            sums.counts[from] -= 1;
        }
        for (s, &v) in sums.sums[to * dim..][..dim].iter_mut().zip(row) {
            *s += f64::from(v);
        }
        sums.counts[to] += 1;
        if (done + 1) % moves_per_checkpoint == 0 {
            progress.checkpoint(KMeansStage::Updating { iteration })?;
        }
    }
    Ok(())
}

/// Samples ranked by how badly their centroid serves them (largest upper bound first), consumed
/// by reseeding. Ranked lazily because empty clusters are rare.
struct ReseedCandidates {
    ranked: bool,
    position: usize,
}

impl ReseedCandidates {
    fn new() -> Self {
        Self {
            ranked: false,
            position: 0,
        }
    }

    /// The next sample that is not sitting on its own centroid and whose cluster keeps at least
    /// `min_remaining` members without it.
    #[allow(clippy::too_many_arguments)]
    fn next_eligible(
        &mut self,
        samples: &[f32],
        dim: usize,
        centroids: &[f32],
        bounds: &Bounds,
        counts: &[usize],
        min_remaining: usize,
        order: &mut Vec<u32>,
    ) -> Option<usize> {
        if !self.ranked {
            let upper = &bounds.upper;
            order.clear();
            order.extend(0..bounds.cluster.len() as u32);
            order.sort_unstable_by(|&a, &b| {
                upper[b as usize]
                    .total_cmp(&upper[a as usize])
                    .then(a.cmp(&b))
            });
            self.ranked = true;
        }
        while let Some(&i) = order.get(self.position) {
            self.position += 1;
            let i = i as usize;
            let c = bounds.cluster[i] as usize;
            if counts[c] <= min_remaining {
                continue;
            }
            // Upper bounds can be loose; only a sample really away from its centroid helps,
            // otherwise identical samples would be shuffled between equal centroids forever.
            let row = &samples[i * dim..][..dim];
            if distance::l2_squared(row, &centroids[c * dim..][..dim]) > 0.0 {
                return Some(i);
            }
        }
        None
    }
}

/// Gives every empty cluster one sample, taken from a cluster that keeps at least one member.
/// Clusters stay empty only when every sample already coincides with its centroid (fewer
/// distinct samples than clusters).
fn refill_empty_clusters(
    samples: &[f32],
    dim: usize,
    centroids: &[f32],
    bounds: &mut Bounds,
    sums: &mut Sums,
    candidates: &mut ReseedCandidates,
) {
    for j in 0..sums.counts.len() {
        if sums.counts[j] != 0 {
            continue;
        }
        let Some(i) = candidates.next_eligible(
            samples,
            dim,
            centroids,
            bounds,
            &sums.counts,
            1,
            &mut sums.order,
        ) else {
            return;
        };
        let row = &samples[i * dim..][..dim];
        let from = bounds.cluster[i] as usize;
        for (s, &v) in sums.sums[from * dim..][..dim].iter_mut().zip(row) {
            *s -= f64::from(v);
        }
        sums.counts[from] -= 1;
        for (s, &v) in sums.sums[j * dim..][..dim].iter_mut().zip(row) {
            *s = f64::from(v);
        }
        sums.counts[j] = 1;
        bounds.cluster[i] = j as u32;
        // Exactly on its new centroid; the lower bound is simply unknown.
        bounds.upper[i] = 0.0;
        bounds.lower[i] = 0.0;
    }
}

/// Writes the new centroids (means, normalised for spherical) into `next`; clusters without
/// members keep their old centroid. Returns the spherical clusters whose members sum to zero.
fn compute_centroids(
    sums: &Sums,
    centroids: &[f32],
    next: &mut [f32],
    dim: usize,
    metric: KMeansMetric,
    pool: &rayon::ThreadPool,
) -> Vec<usize> {
    let degenerate: Vec<bool> = pool.install(|| {
        next.par_chunks_exact_mut(dim)
            .zip(sums.sums.par_chunks_exact(dim))
            .zip(sums.counts.par_iter())
            .zip(centroids.par_chunks_exact(dim))
            .map(|(((next, sum), &count), old)| {
                if count == 0 {
                    next.copy_from_slice(old);
                    return false;
                }
                // For spherical the mean's scale is irrelevant: normalise the sum directly.
                let scale = match metric {
                    KMeansMetric::L2 => 1.0 / count as f64,
                    KMeansMetric::Spherical => {
                        let norm = sum.iter().map(|s| s * s).sum::<f64>().sqrt();
                        if !(norm > 0.0 && norm.is_finite()) {
                            return true;
                        }
                        1.0 / norm
                    }
                };
                for (c, &s) in next.iter_mut().zip(sum) {
                    *c = (s * scale) as f32;
                }
                false
            })
            .collect()
    });
    degenerate
        .iter()
        .enumerate()
        .filter(|(_, &d)| d)
        .map(|(j, _)| j)
        .collect()
}
