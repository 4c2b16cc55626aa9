//! Lloyd iterations with Yinyang-style bounds (Ding et al., 2015), built on Hamerly's.
//!
//! Per sample we keep its cluster, an upper bound on the distance to that cluster's centroid and,
//! for each of up to [`MAX_GROUPS`] groups of centroids, a lower bound on the distance to every
//! centroid of the group other than its own. After centroids move, bounds are loosened by how
//! far they moved instead of being recomputed. A sample whose upper bound is below all its group
//! bounds, or below half the distance from its centroid to the nearest other centroid
//! (Hamerly's test), cannot change cluster and is skipped; otherwise only the groups whose bound
//! is below the upper bound are searched.
//!
//! Hamerly's single lower bound has to drop by the largest move of any centroid, so in high
//! dimensions, where the gap between nearest and second-nearest centroid is small, one centroid
//! moving a little forces almost every sample into a full search. Per-group bounds only drop by
//! the largest move within the group, at 4 bytes per group per sample instead of Elkan's 4 per
//! centroid.
//!
//! Bounds are Euclidean distances (not squared) because they rely on the triangle inequality.
//! Spherical k-means uses the same machinery: for unit vectors the largest dot product is the
//! smallest Euclidean distance.

use std::ops::Range;

use rayon::prelude::*;

use super::panels::{Panels, LANES, ROWS};
use super::{
    chunk_len, KMeansError, KMeansMetric, KMeansParams, KMeansStage, Progress,
    WORK_PER_CHECKPOINT_PER_THREAD,
};
use crate::distance;

const UNASSIGNED: u32 = u32::MAX;

/// Most lower bounds kept per sample (at most 64: the groups a sample must search are a `u64`
/// mask). More groups prune better but cost 4 bytes each per sample. For 200,000 × 128 × 4,000
/// the centroid comparisons after the first pass went from 1.6e9 with 16 groups to 1.2e9 with
/// 32 and 1.0e9 with 64.
const MAX_GROUPS: usize = 32;

/// Samples searched together within one task; bounds the per-task scratch.
const SEARCH_BATCH: usize = 256;

/// When more samples than this fraction change cluster, centroid sums are rebuilt from scratch
/// in parallel rather than patched one move at a time on the calling thread. A fixed fraction
/// (not one that depends on the thread count) keeps the rounding of the sums reproducible.
const REBUILD_SUMS_FRACTION: usize = 4;

/// Samples that changed cluster in one assignment pass: (sample, previous cluster), in sample
/// order, one vector per parallel task.
type Moves = Vec<Vec<(u32, u32)>>;

/// Centroids are grouped as runs of whole panels so that a group is searched with the blocked
/// kernel.
#[derive(Debug, Clone, Copy)]
struct Groups {
    count: usize,
    panels_per_group: usize,
    panel_count: usize,
}

impl Groups {
    fn new(k: usize, dim: usize) -> Self {
        let panel_count = k.div_ceil(LANES);
        let panels_per_group = panel_count.div_ceil(group_limit(k, dim));
        Self {
            count: panel_count.div_ceil(panels_per_group),
            panels_per_group,
            panel_count,
        }
    }

    fn of_centroid(&self, j: usize) -> usize {
        j / LANES / self.panels_per_group
    }

    fn panels(&self, group: usize) -> Range<usize> {
        let start = group * self.panels_per_group;
        start..(start + self.panels_per_group).min(self.panel_count)
    }

    fn centroids(&self, group: usize, k: usize) -> Range<usize> {
        let panels = self.panels(group);
        panels.start * LANES..(panels.end * LANES).min(k)
    }
}

/// Upper limit on groups: [`MAX_GROUPS`], one per panel, and no more than half the dimensions so
/// that the bounds never take more than half the memory of the samples.
fn group_limit(k: usize, dim: usize) -> usize {
    MAX_GROUPS.min(k.div_ceil(LANES)).min((dim / 2).max(1))
}

/// Bytes [`run`] allocates.
pub(super) fn bytes_required(n: usize, dim: usize, k: usize) -> usize {
    // Cluster, upper bound, sort order, group lower bounds; the move list can reach 8 bytes per
    // sample, twice that while its vectors grow.
    let per_sample =
        3 * size_of::<u32>() + group_limit(k, dim) * size_of::<f32>() + 2 * size_of::<(u32, u32)>();
    // Next centroids and f64 sums.
    let per_value = size_of::<f32>() + size_of::<f64>();
    // Counts, offsets and cursors of the counting sort, half-separations, shifts, degenerate
    // flags.
    let per_centroid = 3 * size_of::<usize>() + 2 * size_of::<f32>() + 1;
    // Rayon's bookkeeping, per-task vector headers and the search scratch of tasks in flight
    // (about 64 KiB per pool thread).
    let slack = (1 << 20) + n / 8;
    n * per_sample + k * dim * per_value + Panels::bytes_required(k, dim) + k * per_centroid + slack
}

/// How far each centroid, and at most any centroid of each group, moved in the last update.
struct Shifts {
    per_centroid: Vec<f32>,
    per_group: Vec<f32>,
}

impl Shifts {
    fn none(k: usize, groups: &Groups) -> Self {
        Self {
            per_centroid: vec![0.0; k],
            per_group: vec![0.0; groups.count],
        }
    }

    fn measure(
        &mut self,
        old: &[f32],
        new: &[f32],
        dim: usize,
        groups: &Groups,
        pool: &rayon::ThreadPool,
    ) {
        pool.install(|| {
            old.par_chunks_exact(dim)
                .zip(new.par_chunks_exact(dim))
                .map(|(old, new)| distance::l2_squared(old, new).sqrt())
                .collect_into_vec(&mut self.per_centroid)
        });
        let k = self.per_centroid.len();
        for (group, largest) in self.per_group.iter_mut().enumerate() {
            *largest = self.per_centroid[groups.centroids(group, k)]
                .iter()
                .fold(0.0f32, |max, &s| max.max(s));
        }
    }
}

/// Per-sample state, indexed like the samples (`lower` has one run of `groups.count` per sample).
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
    params: &KMeansParams,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<(), KMeansError> {
    let KMeansParams {
        metric,
        max_iterations,
        settled_share_inverse,
        ..
    } = *params;
    let n = samples.len() / dim;
    let k = centroids.len() / dim;
    let groups = Groups::new(k, dim);
    let mut next = vec![0.0f32; k * dim];
    arrange_in_groups(centroids, &mut next, dim, &groups, pool, progress)?;
    let mut bounds = Bounds {
        cluster: vec![UNASSIGNED; n],
        upper: vec![f32::INFINITY; n],
        lower: vec![0.0; n * groups.count],
    };
    let mut sums = Sums {
        sums: vec![0.0; k * dim],
        counts: vec![0; k],
        order: Vec::new(),
        offsets: Vec::new(),
    };
    let mut panels = Panels::new(centroids, dim, true);
    let mut half_separation = vec![0.0f32; k];
    let mut shifts = Shifts::none(k, &groups);

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
        let pass = Pass {
            samples,
            dim,
            centroids,
            panels: &panels,
            groups,
            half_separation: &half_separation,
            shifts: &shifts,
        };
        let moves = pass.run(&mut bounds, pool, progress, iteration)?;
        let moved: usize = moves.iter().map(Vec::len).sum();
        if moved == 0 {
            break;
        }
        if iteration == 1 || moved > n / REBUILD_SUMS_FRACTION {
            drop(moves);
            rebuild_sums(
                samples,
                dim,
                &bounds.cluster,
                &mut sums,
                pool,
                progress,
                iteration,
            )?;
        } else {
            patch_sums(
                samples,
                dim,
                &bounds.cluster,
                &moves,
                &mut sums,
                progress,
                iteration,
            )?;
        }
        let mut candidates = ReseedCandidates::new();
        refill_empty_clusters(
            samples,
            dim,
            centroids,
            &mut bounds,
            &mut sums,
            &mut candidates,
        );
        let degenerate = compute_centroids(&sums, centroids, &mut next, dim, metric, pool);
        for j in degenerate {
            // Spherical only: members cancel out, so the mean has no direction. Moving the
            // centroid onto a badly served sample lets the members spread to better clusters.
            let target = &mut next[j * dim..][..dim];
            let candidate = candidates.next_eligible(
                samples,
                dim,
                centroids,
                &bounds,
                &sums.counts,
                1,
                &mut sums.order,
            );
            match candidate {
                Some(i) => target.copy_from_slice(&samples[i * dim..][..dim]),
                None => target.copy_from_slice(&centroids[j * dim..][..dim]),
            }
        }
        shifts.measure(centroids, &next, dim, &groups, pool);
        centroids.swap_with_slice(&mut next);
        progress.checkpoint(KMeansStage::Updating { iteration })?;
        if settled_share_inverse > 0 && moved.saturating_mul(settled_share_inverse) < n {
            break;
        }
    }
    Ok(())
}

/// Iterations of the small k-means that arranges centroids into groups; the grouping only needs
/// to be roughly spatial.
const GROUPING_ITERATIONS: usize = 5;

/// Reorders the centroids so that each group (a fixed run of panels) holds centroids that are
/// near each other: a sample far from a group then has a large lower bound for the whole group.
/// The order of centroids carries no meaning, so this is free to do. The centroids are clustered
/// into as many groups by a few Lloyd iterations started from evenly spaced centroids, then
/// sorted by group; runs cut across group boundaries, which only costs some pruning.
fn arrange_in_groups(
    centroids: &mut [f32],
    scratch: &mut [f32],
    dim: usize,
    groups: &Groups,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<(), KMeansError> {
    let k = centroids.len() / dim;
    let g = groups.count;
    if g <= 1 {
        return Ok(());
    }
    let mut centres: Vec<f32> = (0..g)
        .flat_map(|group| centroids[group * k / g * dim..][..dim].iter().copied())
        .collect();
    let mut labels = vec![0u32; k];
    let chunk = chunk_len(g * dim, pool).next_multiple_of(ROWS);
    for iteration in 0..=GROUPING_ITERATIONS {
        let panels = Panels::new(&centres, dim, true);
        for start in (0..k).step_by(chunk) {
            let end = (start + chunk).min(k);
            let centroids = &*centroids;
            pool.install(|| {
                labels[start..end]
                    .par_chunks_mut(ROWS)
                    .enumerate()
                    .for_each(|(group, out)| {
                        let first = start + group * ROWS;
                        let rows: Vec<&[f32]> = (first..first + out.len())
                            .map(|j| &centroids[j * dim..][..dim])
                            .collect();
                        let norms: Vec<f32> = rows.iter().map(|r| panels.row_sq_norm(r)).collect();
                        let nearest =
                            panels.two_nearest(&rows, &norms, 0..panels.panel_count(), None);
                        for (out, nearest) in out.iter_mut().zip(nearest) {
                            *out = nearest.index;
                        }
                    })
            });
            progress.checkpoint(KMeansStage::Preparing)?;
        }
        if iteration == GROUPING_ITERATIONS {
            break;
        }
        let mut sums = vec![0.0f64; g * dim];
        let mut counts = vec![0usize; g];
        for (row, &label) in centroids.chunks_exact(dim).zip(&labels) {
            let label = label as usize;
            counts[label] += 1;
            for (s, &v) in sums[label * dim..][..dim].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let means = centres.chunks_exact_mut(dim).zip(sums.chunks_exact(dim));
        for ((centre, sum), &count) in means.zip(&counts) {
            if count > 0 {
                for (c, &s) in centre.iter_mut().zip(sum) {
                    *c = (s / count as f64) as f32;
                }
            }
        }
    }
    let mut order: Vec<u32> = (0..k as u32).collect();
    order.sort_by_key(|&j| labels[j as usize]);
    scratch.copy_from_slice(centroids);
    for (target, &source) in centroids.chunks_exact_mut(dim).zip(&order) {
        target.copy_from_slice(&scratch[source as usize * dim..][..dim]);
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
                    let rows = &rows[..out.len()];
                    let norms: [f32; ROWS] =
                        std::array::from_fn(|r| panels.row_sq_norm(rows[r.min(rows.len() - 1)]));
                    let nearest = panels.two_nearest(
                        rows,
                        &norms[..rows.len()],
                        0..panels.panel_count(),
                        Some(first),
                    );
                    for (out, nearest) in out.iter_mut().zip(nearest) {
                        *out = 0.5 * nearest.first.sqrt();
                    }
                })
        });
        progress.checkpoint(KMeansStage::Updating { iteration })?;
    }
    Ok(())
}

/// What every task of an assignment pass reads.
struct Pass<'a> {
    samples: &'a [f32],
    dim: usize,
    centroids: &'a [f32],
    panels: &'a Panels,
    groups: Groups,
    half_separation: &'a [f32],
    shifts: &'a Shifts,
}

/// A sample the bounds could not settle, with the groups it must search.
#[derive(Clone, Copy)]
struct Pending {
    offset: usize,
    groups: u64,
}

impl Pass<'_> {
    /// One assignment pass over all samples, in chunks with a checkpoint after each.
    fn run(
        &self,
        bounds: &mut Bounds,
        pool: &rayon::ThreadPool,
        progress: &mut dyn Progress,
        iteration: usize,
    ) -> Result<Moves, KMeansError> {
        let n = bounds.cluster.len();
        let k = self.half_separation.len();
        let g = self.groups.count;
        let chunk = chunk_len(k * self.dim, pool);
        // Several tasks per thread even in one chunk: skipped samples are cheap and searched ones
        // are not, so work per task varies a lot.
        let task_len = (chunk.min(n) / (4 * pool.current_num_threads().max(1))).max(4 * ROWS);
        let mut moves = Moves::new();
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let chunk_moves: Moves = pool.install(|| {
                bounds.cluster[start..end]
                    .par_chunks_mut(task_len)
                    .zip(bounds.upper[start..end].par_chunks_mut(task_len))
                    .zip(bounds.lower[start * g..end * g].par_chunks_mut(task_len * g))
                    .enumerate()
                    .map(|(task, ((cluster, upper), lower))| {
                        let mut moves = Vec::new();
                        let mut task = Task {
                            pass: self,
                            first: start + task * task_len,
                            cluster,
                            upper,
                            lower,
                        };
                        task.run(&mut moves);
                        moves
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

    fn row(&self, i: usize) -> &[f32] {
        &self.samples[i * self.dim..][..self.dim]
    }
}

/// The samples `first..first + cluster.len()` of one assignment pass.
struct Task<'p, 'a> {
    pass: &'p Pass<'a>,
    first: usize,
    cluster: &'p mut [u32],
    upper: &'p mut [f32],
    lower: &'p mut [f32],
}

impl Task<'_, '_> {
    fn run(&mut self, moves: &mut Vec<(u32, u32)>) {
        let pass = self.pass;
        let g = pass.groups.count;
        let all_groups = u64::MAX >> (64 - g);
        let mut pending = Vec::with_capacity(SEARCH_BATCH.min(self.cluster.len()));
        for offset in 0..self.cluster.len() {
            let current = self.cluster[offset];
            let lower = &mut self.lower[offset * g..][..g];
            if current == UNASSIGNED {
                pending.push(Pending {
                    offset,
                    groups: all_groups,
                });
            } else {
                let c = current as usize;
                let upper = &mut self.upper[offset];
                *upper += pass.shifts.per_centroid[c];
                let mut lowest = f32::INFINITY;
                for (bound, &shift) in lower.iter_mut().zip(&pass.shifts.per_group) {
                    *bound -= shift;
                    lowest = lowest.min(*bound);
                }
                let threshold = pass.half_separation[c].max(lowest);
                if *upper <= threshold {
                    continue;
                }
                let centroid = &pass.centroids[c * pass.dim..][..pass.dim];
                *upper = distance::l2_squared(pass.row(self.first + offset), centroid).sqrt();
                if *upper <= threshold {
                    continue;
                }
                let groups = lower
                    .iter()
                    .enumerate()
                    .filter(|&(_, &bound)| bound < *upper)
                    .fold(0u64, |mask, (group, _)| mask | 1 << group);
                pending.push(Pending { offset, groups });
            }
            if pending.len() == SEARCH_BATCH {
                self.search(&pending, moves);
                pending.clear();
            }
        }
        if !pending.is_empty() {
            self.search(&pending, moves);
        }
    }

    /// Searches each pending sample's groups, then settles its cluster and bounds.
    fn search(&mut self, pending: &[Pending], moves: &mut Vec<(u32, u32)>) {
        let pass = self.pass;
        let g = pass.groups.count;
        let norms: Vec<f32> = pending
            .iter()
            .map(|p| pass.panels.row_sq_norm(pass.row(self.first + p.offset)))
            .collect();
        let unsearched = super::panels::TwoNearest {
            index: UNASSIGNED,
            first: f32::INFINITY,
            second: f32::INFINITY,
        };
        let mut found = vec![unsearched; pending.len() * g];
        let mut members = Vec::with_capacity(pending.len());
        for group in 0..g {
            members.clear();
            members.extend((0..pending.len()).filter(|&p| pending[p].groups & (1 << group) != 0));
            for batch in members.chunks(ROWS) {
                let member = |r: usize| batch[r.min(batch.len() - 1)];
                let rows: [&[f32]; ROWS] =
                    std::array::from_fn(|r| pass.row(self.first + pending[member(r)].offset));
                let batch_norms: [f32; ROWS] = std::array::from_fn(|r| norms[member(r)]);
                let nearest = pass.panels.two_nearest(
                    &rows[..batch.len()],
                    &batch_norms[..batch.len()],
                    pass.groups.panels(group),
                    None,
                );
                for (&p, nearest) in batch.iter().zip(nearest) {
                    found[p * g + group] = nearest;
                }
            }
        }
        for (p, pending) in pending.iter().enumerate() {
            let offset = pending.offset;
            let found = &found[p * g..][..g];
            let previous = self.cluster[offset];
            let (mut best, mut best_distance) = (previous, self.upper[offset]);
            if previous == UNASSIGNED {
                best_distance = f32::INFINITY;
            }
            for hit in found {
                let distance = hit.first.sqrt();
                if hit.index != UNASSIGNED && distance < best_distance {
                    best = hit.index;
                    best_distance = distance;
                }
            }
            let lower = &mut self.lower[offset * g..][..g];
            for (bound, hit) in lower.iter_mut().zip(found) {
                if hit.index != UNASSIGNED {
                    *bound = if hit.index == best {
                        hit.second
                    } else {
                        hit.first
                    }
                    .sqrt();
                }
            }
            if best != previous {
                if previous != UNASSIGNED {
                    // The old centroid now counts among the "others" of its group.
                    let group = pass.groups.of_centroid(previous as usize);
                    if found[group].index == UNASSIGNED {
                        lower[group] = lower[group].min(self.upper[offset]);
                    }
                }
                moves.push(((self.first + offset) as u32, previous));
                self.cluster[offset] = best;
            }
            self.upper[offset] = best_distance;
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
        let g = bounds.lower.len() / bounds.cluster.len();
        bounds.lower[i * g..][..g].fill(0.0);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_from(samples: &[f32], dim: usize, init: &[f32], metric: KMeansMetric) -> Vec<f32> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut centroids = init.to_vec();
        let params = KMeansParams {
            max_iterations: 100,
            settled_share_inverse: 0,
            ..KMeansParams::new(init.len() / dim, metric)
        };
        run(
            samples,
            dim,
            &mut centroids,
            &params,
            &pool,
            &mut |_| Ok(()),
        )
        .unwrap();
        centroids
    }

    fn counts(samples: &[f32], dim: usize, centroids: &[f32]) -> Vec<usize> {
        let mut counts = vec![0; centroids.len() / dim];
        for row in samples.chunks_exact(dim) {
            counts[super::super::nearest(row, centroids, dim, KMeansMetric::L2) as usize] += 1;
        }
        counts
    }

    #[test]
    fn centroid_far_from_all_samples_is_reseeded() {
        let dim = 2;
        let samples: Vec<f32> = (0..40)
            .flat_map(|i| {
                let x = (i % 10) as f32 * 0.1;
                if i < 20 {
                    [x, 0.0]
                } else {
                    [x + 5.0, 5.0]
                }
            })
            .collect();
        let init = [0.0, 0.0, 5.0, 5.0, 1000.0, 1000.0, -1000.0, 0.0];
        let centroids = run_from(&samples, dim, &init, KMeansMetric::L2);
        assert!(counts(&samples, dim, &centroids).iter().all(|&c| c > 0));
        assert!(centroids.iter().all(|v| v.abs() < 10.0), "{centroids:?}");
    }

    #[test]
    fn duplicate_initial_centroids_are_separated() {
        let dim = 3;
        let samples: Vec<f32> = (0..300).map(|i| ((i * 37) % 101) as f32).collect();
        let init: Vec<f32> = samples[..dim].repeat(8);
        let centroids = run_from(&samples, dim, &init, KMeansMetric::L2);
        assert!(counts(&samples, dim, &centroids).iter().all(|&c| c > 0));
    }

    #[test]
    fn zero_sum_spherical_cluster_gets_a_direction() {
        let samples = [1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0];
        let init = [0.6, 0.8];
        let centroid = run_from(&samples, 2, &init, KMeansMetric::Spherical);
        let norm = (centroid[0] * centroid[0] + centroid[1] * centroid[1]).sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "{centroid:?}");
    }

    #[test]
    fn groups_cover_every_centroid_once() {
        for (k, dim) in [
            (1, 1),
            (15, 3),
            (16, 100),
            (17, 100),
            (250, 384),
            (4000, 128),
            (5000, 20),
        ] {
            let groups = Groups::new(k, dim);
            assert!(groups.count >= 1 && groups.count <= MAX_GROUPS);
            let mut next = 0;
            for group in 0..groups.count {
                let range = groups.centroids(group, k);
                assert_eq!(range.start, next);
                assert!(!range.is_empty());
                assert!(range.clone().all(|j| groups.of_centroid(j) == group));
                next = range.end;
            }
            assert_eq!(next, k);
        }
    }
}
