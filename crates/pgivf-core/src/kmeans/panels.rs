//! Centroids repacked for blocked nearest-centroid search.
//!
//! Comparing one sample with one centroid at a time reloads both vectors for every pair, so the
//! search is bound by loads rather than arithmetic. Here the centroids are stored in panels of
//! [`LANES`] centroids, dimension-major (`panel[d * LANES + lane]`), and [`ROWS`] samples are
//! compared with a whole panel at once: each loaded sample value is broadcast against 16
//! centroids, each loaded centroid column is reused for 4 samples. Distances then come from
//! `‖x‖² − 2·x·c + ‖c‖²`.
//!
//! Every dot product is accumulated lane by lane in dimension order, so its value does not depend
//! on which other samples happen to share its group of rows; that keeps k-means deterministic no
//! matter how the samples are split between threads.

use std::ops::Range;

use crate::distance;

/// Centroids per panel; 16 `f32` are two AVX registers or four NEON/SSE registers.
pub(super) const LANES: usize = 16;
/// Samples compared with a panel at once; 4 × 16 accumulators fit the 16 AVX registers.
pub(super) const ROWS: usize = 4;

type Dots = [[f32; LANES]; ROWS];
type Kernel = fn(&[&[f32]; ROWS], &[f32]) -> Dots;

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
    packed: Vec<f32>,
    /// `‖c‖²` per lane; padding lanes hold +∞ so they never win an L2 comparison.
    sq_norms: Vec<f32>,
    /// 0 for real centroids and +∞ for padding lanes, added to negated dot products.
    padding_penalty: Vec<f32>,
    kernel: Kernel,
}

impl Panels {
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        let mut panels = Self {
            dim,
            k: 0,
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
        lanes * dim * size_of::<f32>() + 2 * lanes * size_of::<f32>()
    }

    /// Reuses the allocations when the centroids move between k-means iterations.
    pub fn repack(&mut self, centroids: &[f32]) {
        let dim = self.dim;
        self.k = centroids.len() / dim;
        let lanes = self.padded_len();
        self.packed.clear();
        self.packed.resize(lanes * dim, 0.0);
        self.sq_norms.clear();
        self.sq_norms.resize(lanes, f32::INFINITY);
        self.padding_penalty.clear();
        self.padding_penalty.resize(lanes, f32::INFINITY);
        for (j, centroid) in centroids.chunks_exact(dim).enumerate() {
            let panel = &mut self.packed[(j / LANES) * dim * LANES..][..dim * LANES];
            for (d, &value) in centroid.iter().enumerate() {
                panel[d * LANES + j % LANES] = value;
            }
            self.sq_norms[j] = distance::dot(centroid, centroid);
            self.padding_penalty[j] = 0.0;
        }
    }

    /// Number of centroids rounded up to whole panels: the stride of [`Panels::scores`] output.
    pub fn padded_len(&self) -> usize {
        self.k.div_ceil(LANES) * LANES
    }

    /// Largest centroid norm (not squared).
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

    /// Pads a group of up to [`ROWS`] samples by repeating the first one; the extra results are
    /// simply ignored.
    fn full_group<'a>(rows: &[&'a [f32]]) -> [&'a [f32]; ROWS] {
        std::array::from_fn(|r| rows.get(r).copied().unwrap_or(rows[0]))
    }

    pub fn panel_count(&self) -> usize {
        self.padded_len() / LANES
    }

    /// Nearest and second-nearest centroid, among those in `panels`, of each of up to [`ROWS`]
    /// samples with squared norms `row_sq_norms`. With `exclude_from = Some(j)`, row `r` ignores
    /// centroid `j + r` (used when the rows are the centroids themselves).
    pub fn two_nearest(
        &self,
        rows: &[&[f32]],
        row_sq_norms: &[f32],
        panels: Range<usize>,
        exclude_from: Option<usize>,
    ) -> [TwoNearest; ROWS] {
        debug_assert!(!rows.is_empty() && rows.len() <= ROWS && row_sq_norms.len() == rows.len());
        let group = Self::full_group(rows);
        let mut result = [TwoNearest {
            index: 0,
            first: f32::INFINITY,
            second: f32::INFINITY,
        }; ROWS];
        for panel in panels {
            let dots = self.panel_dots(&group, panel);
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
        for best in &mut result {
            // Cancellation in ‖x‖² − 2x·c + ‖c‖² can dip slightly below zero.
            best.first = best.first.max(0.0);
            best.second = best.second.max(0.0);
        }
        result
    }

    /// Approximate "lower is better" scores of up to [`ROWS`] samples against every centroid:
    /// `‖c‖² − 2x·c` for L2 and `−x·c` for spherical. Row `r` goes to
    /// `out[r * padded_len()..][..padded_len()]`; padding lanes score +∞.
    pub fn scores(&self, rows: &[&[f32]], spherical: bool, out: &mut [f32]) {
        debug_assert!(!rows.is_empty() && rows.len() <= ROWS);
        let group = Self::full_group(rows);
        let stride = self.padded_len();
        for panel in 0..stride / LANES {
            let dots = self.panel_dots(&group, panel);
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
    }
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
            let panels = Panels::new(&centroids, dim);
            let rows: Vec<&[f32]> = samples.chunks_exact(dim).collect();
            for group in rows.chunks(ROWS) {
                let norms: Vec<f32> = group.iter().map(|r| distance::dot(r, r)).collect();
                let found = panels.two_nearest(group, &norms, 0..panels.panel_count(), None);
                for (row, got) in group.iter().zip(found) {
                    let mut exact: Vec<f32> = centroids
                        .chunks_exact(dim)
                        .map(|c| distance::l2_squared(row, c))
                        .collect();
                    let nearest = distance::l2_squared(row, &centroids[got.index as usize * dim..][..dim]);
                    exact.sort_by(f32::total_cmp);
                    assert!((nearest - exact[0]).abs() < 1e-4, "{nearest} vs {}", exact[0]);
                    assert!((got.first - exact[0]).abs() < 1e-4);
                    let second = exact.get(1).copied().unwrap_or(f32::INFINITY);
                    assert!(got.second == second || (got.second - second).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn exclusion_skips_own_centroid() {
        let dim = 5;
        let centroids = pseudo_random(dim * 21, 3);
        let panels = Panels::new(&centroids, dim);
        let rows: Vec<&[f32]> = centroids.chunks_exact(dim).collect();
        for (base, group) in rows.chunks(ROWS).enumerate() {
            let base = base * ROWS;
            let norms: Vec<f32> = group.iter().map(|r| distance::dot(r, r)).collect();
            let found = panels.two_nearest(group, &norms, 0..panels.panel_count(), Some(base));
            for (r, got) in found.iter().enumerate() {
                assert_ne!(got.index as usize, base + r);
                assert!(got.first > 0.0);
            }
        }
    }
}
