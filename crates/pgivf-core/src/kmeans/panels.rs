//! Centroids repacked for blocked nearest-centroid search.
//!
//! Comparing one sample with one centroid at a time reloads both vectors for every pair, so the
//! search is bound by loads rather than arithmetic. Here the centroids are stored in panels of
//! [`LANES`] centroids, dimension-major (`panel[d * LANES + lane]`), and [`ROWS`] samples are
//! compared with a whole panel at once: each loaded sample value is broadcast against 16
//! centroids, each loaded centroid column is reused for 4 samples. Distances then come from
//! `‖x‖² − 2·x·c + ‖c‖²`.
//!
//! That expansion loses precision when the vectors are far from the origin compared with their
//! distances (rounding error grows with the norms, the distances do not), so for Euclidean
//! comparisons everything is measured from an origin at the centroids' mean: centroids are
//! packed as `c − o`, each group of samples is copied as `x − o` into a per-thread buffer before
//! the kernel runs (subtracting inside the kernel would slow it by half), and norms are those of
//! `x − o` and `c − o`. Distances are unchanged, rounding error shrinks to the scale of the
//! data's spread.
//!
//! Every dot product is accumulated lane by lane in dimension order, so its value does not depend
//! on which other samples happen to share its group of rows; that keeps k-means deterministic no
//! matter how the samples are split between threads.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

use crate::distance;

/// Centroids per panel; 16 `f32` are two AVX registers or four NEON/SSE registers.
pub(super) const LANES: usize = 16;
/// Samples compared with a panel at once; 4 × 16 accumulators fit the 16 AVX registers.
pub(super) const ROWS: usize = 4;

type Dots = [[f32; LANES]; ROWS];
type Kernel = fn(&[&[f32]; ROWS], &[f32]) -> Dots;
type SqDistancesKernel = fn(&[f32], &[&[f32]; ROWS]) -> [f32; ROWS];

/// The two smallest squared Euclidean distances from one sample to the centroids.
#[derive(Debug, Clone, Copy)]
pub(super) struct TwoNearest {
    pub index: u32,
    pub first: f32,
    pub second: f32,
}

pub(super) struct Panels {
    dim: usize,
    k: usize,
    /// Whether `origin` follows the centroids' mean or stays at zero (needed for dot products).
    centred: bool,
    origin: Vec<f32>,
    packed: Vec<f32>,
    /// `‖c − o‖²` per lane; padding lanes hold +∞ so they never win an L2 comparison.
    sq_norms: Vec<f32>,
    /// 0 for real centroids and +∞ for padding lanes, added to negated dot products.
    padding_penalty: Vec<f32>,
    kernel: Kernel,
}

impl Panels {
    /// `centred` moves the origin to the centroids' mean, which keeps Euclidean distances exact
    /// but changes dot products; [`Panels::scores`] for spherical needs `false`.
    pub fn new(centroids: &[f32], dim: usize, centred: bool) -> Self {
        let mut panels = Self {
            dim,
            k: 0,
            centred,
            origin: vec![0.0; dim],
            packed: Vec::new(),
            sq_norms: Vec::new(),
            padding_penalty: Vec::new(),
            kernel: select_kernel(),
        };
        panels.repack(centroids);
        panels
    }

    /// Bytes allocated for `k` centroids of `dim` dimensions.
    pub fn bytes_required(k: usize, dim: usize) -> usize {
        let lanes = k.div_ceil(LANES) * LANES;
        (lanes + 1) * dim * size_of::<f32>() + 2 * lanes * size_of::<f32>()
    }

    /// Reuses the allocations when the centroids move between k-means iterations.
    pub fn repack(&mut self, centroids: &[f32]) {
        let dim = self.dim;
        self.k = centroids.len() / dim;
        if self.centred && self.k > 0 {
            for (d, origin) in self.origin.iter_mut().enumerate() {
                let column = centroids.iter().skip(d).step_by(dim);
                let mean = column.map(|&v| f64::from(v)).sum::<f64>() / self.k as f64;
                *origin = mean as f32;
            }
        }
        let lanes = self.padded_len();
        self.packed.clear();
        self.packed.resize(lanes * dim, 0.0);
        self.sq_norms.clear();
        self.sq_norms.resize(lanes, f32::INFINITY);
        self.padding_penalty.clear();
        self.padding_penalty.resize(lanes, f32::INFINITY);
        for (j, centroid) in centroids.chunks_exact(dim).enumerate() {
            let panel = &mut self.packed[(j / LANES) * dim * LANES..][..dim * LANES];
            for (d, (&value, &origin)) in centroid.iter().zip(&self.origin).enumerate() {
                panel[d * LANES + j % LANES] = value - origin;
            }
            self.sq_norms[j] = self.row_sq_norm(centroid);
            self.padding_penalty[j] = 0.0;
        }
    }

    /// Number of centroids rounded up to whole panels: the stride of [`Panels::scores`] output.
    pub fn padded_len(&self) -> usize {
        self.k.div_ceil(LANES) * LANES
    }

    /// `‖x − o‖²`, the squared norm that [`Panels::two_nearest`] expects for a sample.
    pub fn row_sq_norm(&self, row: &[f32]) -> f32 {
        distance::l2_squared(row, &self.origin)
    }

    /// Largest centroid norm (not squared), measured from the origin.
    pub fn max_norm(&self) -> f32 {
        self.sq_norms[..self.k]
            .iter()
            .fold(0.0f32, |max, &v| max.max(v))
            .sqrt()
    }

    fn panel_dots(&self, rows: &[&[f32]; ROWS], panel: usize) -> Dots {
        let span = self.dim * LANES;
        (self.kernel)(rows, &self.packed[panel * span..][..span])
    }

    /// Runs `body` on a full group of [`ROWS`] samples, measured from the origin: `rows` padded
    /// by repeating the first one (the extra results are simply ignored), copied minus the origin
    /// when the panels are centred.
    fn with_group<T>(&self, rows: &[&[f32]], body: impl FnOnce(&[&[f32]; ROWS]) -> T) -> T {
        let pick = |r: usize| r.min(rows.len() - 1);
        if !self.centred {
            return body(&std::array::from_fn(|r| rows[pick(r)]));
        }
        CENTRED_ROWS.with_borrow_mut(|buffer| {
            buffer.clear();
            for row in rows {
                buffer.extend(row.iter().zip(&self.origin).map(|(&x, &o)| x - o));
            }
            let dim = self.dim;
            body(&std::array::from_fn(|r| &buffer[pick(r) * dim..][..dim]))
        })
    }

    pub fn panel_count(&self) -> usize {
        self.padded_len() / LANES
    }

    /// Nearest and second-nearest centroid, among those in `panels`, of each of up to [`ROWS`]
    /// samples whose [`Panels::row_sq_norm`]s are `row_sq_norms`. With `exclude_from = Some(j)`,
    /// row `r` ignores centroid `j + r` (used when the rows are the centroids themselves).
    pub fn two_nearest(
        &self,
        rows: &[&[f32]],
        row_sq_norms: &[f32],
        panels: Range<usize>,
        exclude_from: Option<usize>,
    ) -> [TwoNearest; ROWS] {
        debug_assert!(!rows.is_empty() && rows.len() <= ROWS && row_sq_norms.len() == rows.len());
        let mut result = [TwoNearest {
            index: 0,
            first: f32::INFINITY,
            second: f32::INFINITY,
        }; ROWS];
        self.with_group(rows, |group| {
            for panel in panels {
                let dots = self.panel_dots(group, panel);
                let norms: &[f32; LANES] = self.sq_norms[panel * LANES..][..LANES]
                    .try_into()
                    .expect("panel of LANES norms");
                for (r, (row_dots, best)) in dots.iter().zip(result.iter_mut()).enumerate() {
                    if r >= rows.len() {
                        break;
                    }
                    let mut sq_distances = [0.0f32; LANES];
                    for ((out, &dot), &norm) in sq_distances.iter_mut().zip(row_dots).zip(norms) {
                        *out = row_sq_norms[r] + norm - 2.0 * dot;
                    }
                    if let Some(excluded) = exclude_from.map(|j| j + r) {
                        if excluded / LANES == panel {
                            sq_distances[excluded % LANES] = f32::INFINITY;
                        }
                    }
                    // Most panels hold nothing closer than the current runner-up; a branch-free test
                    // over all lanes skips them without a scalar compare per centroid.
                    let threshold = best.second;
                    let closer: u32 = sq_distances.iter().map(|&v| u32::from(v < threshold)).sum();
                    if closer == 0 {
                        continue;
                    }
                    for (lane, &v) in sq_distances.iter().enumerate() {
                        if v < best.first {
                            best.second = best.first;
                            best.first = v;
                            best.index = (panel * LANES + lane) as u32;
                        } else if v < best.second {
                            best.second = v;
                        }
                    }
                }
            }
        });
        for best in &mut result {
            // Cancellation in ‖x‖² − 2x·c + ‖c‖² can dip slightly below zero.
            best.first = best.first.max(0.0);
            best.second = best.second.max(0.0);
        }
        result
    }

    /// Approximate "lower is better" scores of up to [`ROWS`] samples against every centroid:
    /// `‖c − o‖² − 2(x − o)·(c − o)` for L2 and `−x·c` for spherical (which needs panels built
    /// uncentred). Row `r` goes to `out[r * padded_len()..][..padded_len()]`; padding lanes
    /// score +∞.
    pub fn scores(&self, rows: &[&[f32]], spherical: bool, out: &mut [f32]) {
        debug_assert!(!rows.is_empty() && rows.len() <= ROWS);
        debug_assert!(
            !(spherical && self.centred),
            "dot products need the true origin"
        );
        let stride = self.padded_len();
        self.with_group(rows, |group| {
            for panel in 0..stride / LANES {
                let dots = self.panel_dots(group, panel);
                let offsets = if spherical {
                    &self.padding_penalty
                } else {
                    &self.sq_norms
                };
                let offsets = &offsets[panel * LANES..][..LANES];
                let dot_weight = if spherical { -1.0 } else { -2.0 };
                for (r, row_dots) in dots.iter().enumerate().take(rows.len()) {
                    let row_out = &mut out[r * stride + panel * LANES..][..LANES];
                    for ((score, &dot), &offset) in row_out.iter_mut().zip(row_dots).zip(offsets) {
                        *score = offset + dot_weight * dot;
                    }
                }
            }
        });
    }
}

thread_local! {
    /// Samples minus the origin for [`Panels::with_group`]; per thread because the search runs on
    /// every pool worker, and kept between calls to avoid an allocation per group.
    static CENTRED_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Squared Euclidean distances from one centre to [`ROWS`] rows, for k-means++ where every
/// sample meets one new centre at a time. Four rows share each load of the centre and give the
/// processor four independent sums, about three times the throughput of four separate calls.
/// Each row's sum is accumulated in a fixed order, so its value does not depend on the other
/// rows of the group.
pub(super) fn sq_distances_to(centre: &[f32], rows: &[&[f32]; ROWS]) -> [f32; ROWS] {
    static SELECTED: OnceLock<SqDistancesKernel> = OnceLock::new();
    let kernel = SELECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return sq_distances_avx2_fma;
            }
        }
        sq_distances_portable
    });
    kernel(centre, rows)
}

#[inline(always)]
fn sq_distances_generic<const FUSED: bool>(centre: &[f32], rows: &[&[f32]; ROWS]) -> [f32; ROWS] {
    const { assert!(ROWS == 4, "the rows are unrolled by hand") };
    let add_square = |sum: f32, x: f32, c: f32| {
        let difference = x - c;
        if FUSED {
            difference.mul_add(difference, sum)
        } else {
            sum + difference * difference
        }
    };
    let dim = centre.len();
    let [r0, r1, r2, r3] = rows.map(|row| &row[..dim]);
    // Four separately named accumulators: an indexed array of them ends up on the stack.
    let (mut a0, mut a1, mut a2, mut a3) =
        ([0.0f32; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
    let chunks = centre
        .chunks_exact(LANES)
        .zip(r0.chunks_exact(LANES))
        .zip(r1.chunks_exact(LANES))
        .zip(r2.chunks_exact(LANES))
        .zip(r3.chunks_exact(LANES));
    for ((((c, x0), x1), x2), x3) in chunks {
        for l in 0..LANES {
            a0[l] = add_square(a0[l], x0[l], c[l]);
            a1[l] = add_square(a1[l], x1[l], c[l]);
            a2[l] = add_square(a2[l], x2[l], c[l]);
            a3[l] = add_square(a3[l], x3[l], c[l]);
        }
    }
    let tail_start = dim - dim % LANES;
    let finish = |mut lanes: [f32; LANES], row: &[f32]| {
        // A fixed pairwise reduction, then the tail in order.
        let mut width = LANES / 2;
        while width > 0 {
            for l in 0..width {
                lanes[l] += lanes[l + width];
            }
            width /= 2;
        }
        let tail = row[tail_start..].iter().zip(&centre[tail_start..]);
        tail.fold(lanes[0], |sum, (&x, &c)| add_square(sum, x, c))
    };
    [
        finish(a0, r0),
        finish(a1, r1),
        finish(a2, r2),
        finish(a3, r3),
    ]
}

fn sq_distances_portable(centre: &[f32], rows: &[&[f32]; ROWS]) -> [f32; ROWS] {
    sq_distances_generic::<{ cfg!(target_arch = "aarch64") }>(centre, rows)
}

#[cfg(target_arch = "x86_64")]
fn sq_distances_avx2_fma(centre: &[f32], rows: &[&[f32]; ROWS]) -> [f32; ROWS] {
    #[target_feature(enable = "avx2,fma")]
    fn kernel(centre: &[f32], rows: &[&[f32]; ROWS]) -> [f32; ROWS] {
        sq_distances_generic::<true>(centre, rows)
    }
    // SAFETY: selected only after detecting AVX2 and FMA.
    unsafe { kernel(centre, rows) }
}

fn select_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dots_avx2_fma;
        }
    }
    dots_portable
}

/// The blocked dot-product kernel, written so that the compiler vectorises the lane loop for
/// whatever instruction set the calling function enables.
#[inline(always)]
fn dots_generic<const FUSED: bool>(rows: &[&[f32]; ROWS], panel: &[f32]) -> Dots {
    let dim = panel.len() / LANES;
    let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &rows[r][..dim]);
    let mut acc = [[0.0f32; LANES]; ROWS];
    for (d, column) in panel.chunks_exact(LANES).enumerate() {
        let column: &[f32; LANES] = column.try_into().expect("chunk of LANES values");
        for (acc_row, row) in acc.iter_mut().zip(&rows) {
            let x = row[d];
            for (a, &c) in acc_row.iter_mut().zip(column) {
                *a = if FUSED { x.mul_add(c, *a) } else { *a + x * c };
            }
        }
    }
    acc
}

/// Without a known FMA unit `mul_add` would be a libm call, so only fuse where it is baseline.
fn dots_portable(rows: &[&[f32]; ROWS], panel: &[f32]) -> Dots {
    dots_generic::<{ cfg!(target_arch = "aarch64") }>(rows, panel)
}

#[cfg(target_arch = "x86_64")]
fn dots_avx2_fma(rows: &[&[f32]; ROWS], panel: &[f32]) -> Dots {
    #[target_feature(enable = "avx2,fma")]
    fn kernel(rows: &[&[f32]; ROWS], panel: &[f32]) -> Dots {
        dots_generic::<true>(rows, panel)
    }
    // SAFETY: `select_kernel` hands out this function only after detecting AVX2 and FMA.
    unsafe { kernel(rows, panel) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn two_nearest_matches_pairwise_distances() {
        for (dim, k) in [(1, 1), (3, 17), (19, 40), (64, 5)] {
            let centroids = pseudo_random(dim * k, 7);
            let samples = pseudo_random(dim * 6, 11);
            let panels = Panels::new(&centroids, dim, true);
            let rows: Vec<&[f32]> = samples.chunks_exact(dim).collect();
            for group in rows.chunks(ROWS) {
                let norms: Vec<f32> = group.iter().map(|r| panels.row_sq_norm(r)).collect();
                let found = panels.two_nearest(group, &norms, 0..panels.panel_count(), None);
                for (row, got) in group.iter().zip(found) {
                    let mut exact: Vec<f32> = centroids
                        .chunks_exact(dim)
                        .map(|c| distance::l2_squared(row, c))
                        .collect();
                    let nearest =
                        distance::l2_squared(row, &centroids[got.index as usize * dim..][..dim]);
                    exact.sort_by(f32::total_cmp);
                    assert!(
                        (nearest - exact[0]).abs() < 1e-4,
                        "{nearest} vs {}",
                        exact[0]
                    );
                    assert!((got.first - exact[0]).abs() < 1e-4);
                    let second = exact.get(1).copied().unwrap_or(f32::INFINITY);
                    assert!(got.second == second || (got.second - second).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn sq_distances_match_pairwise_kernel() {
        for dim in [1, 15, 16, 17, 100, 384] {
            let centre = pseudo_random(dim, 1);
            let rows = pseudo_random(dim * ROWS, 2);
            let group: [&[f32]; ROWS] = std::array::from_fn(|r| &rows[r * dim..][..dim]);
            let found = sq_distances_to(&centre, &group);
            for (row, got) in group.iter().zip(found) {
                let expected = distance::l2_squared(row, &centre);
                assert!(
                    (got - expected).abs() <= 1e-5 * expected.max(1.0),
                    "{got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn exclusion_skips_own_centroid() {
        let dim = 5;
        let centroids = pseudo_random(dim * 21, 3);
        let panels = Panels::new(&centroids, dim, true);
        let rows: Vec<&[f32]> = centroids.chunks_exact(dim).collect();
        for (base, group) in rows.chunks(ROWS).enumerate() {
            let base = base * ROWS;
            let norms: Vec<f32> = group.iter().map(|r| panels.row_sq_norm(r)).collect();
            let found = panels.two_nearest(group, &norms, 0..panels.panel_count(), Some(base));
            for (r, got) in found.iter().enumerate() {
                assert_ne!(got.index as usize, base + r);
                assert!(got.first > 0.0);
            }
        }
    }
}
