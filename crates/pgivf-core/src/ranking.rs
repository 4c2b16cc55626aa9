//! Choosing the lists a scan probes without reading every centroid in full.
//!
//! A scan ranks all lists by their centroid's distance to the query, and reading every centroid
//! (4 bytes a dimension) was a tenth of a quantized query at 250 lists: the centroids leave the
//! CPU's caches while the probed lists stream through them. Ranking from a byte per dimension
//! reads a quarter of that; a bound on each approximate key then leaves only the lists near the
//! cut to be computed exactly, and the lists chosen, and their order, are exactly those of the
//! exact keys.

use crate::bounds::round_up;
use crate::metric::Metric;
use crate::quant::kernels::wide_weighted_sum_kernel;

/// Centroids as bytes: `code = round(c / scale) + 128`, so `c ≈ scale (code - 128)`.
#[derive(Debug, Clone, Default)]
pub struct CentroidRanker {
    dim: usize,
    codes: Vec<u8>,
    scales: Vec<f32>,
    /// |c - scale (code - 128)|, rounded up: the Cauchy-Schwarz bound on a key's error is |q| times it.
    errors: Vec<f32>,
    /// |c|, rounded up, for the rounding allowance.
    norms: Vec<f32>,
    /// |c|², for L2 keys (|q|² + |c|² - 2 q·c).
    squared_norms: Vec<f32>,
}

/// Relative error allowed for f32 sums over `dim` terms (theirs and the exact kernels').
fn rounding_unit(dim: usize) -> f32 {
    (dim as f32 + 8.0) * f32::EPSILON
}

impl CentroidRanker {
    /// `centroids`: lists × `dim`, row-major, finite.
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        if dim == 0 {
            return Self::default();
        }
        let lists = centroids.len() / dim;
        let mut ranker = CentroidRanker {
            dim,
            codes: Vec::with_capacity(lists * dim),
            scales: Vec::with_capacity(lists),
            errors: Vec::with_capacity(lists),
            norms: Vec::with_capacity(lists),
            squared_norms: Vec::with_capacity(lists),
        };
        for centroid in centroids.chunks_exact(dim) {
            let largest = centroid.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
            let scale = largest / 127.0;
            // A subnormal scale has no finite inverse: such a centroid is all bound, no code.
            let inverse = Some(1.0 / scale).filter(|i| i.is_finite()).unwrap_or(0.0);
            let (mut error, mut norm) = (0.0f64, 0.0f64);
            for &x in centroid {
                let step = (x * inverse).round().clamp(-127.0, 127.0);
                ranker.codes.push((step as i32 + 128) as u8);
                let approximate = f64::from(scale) * f64::from(step);
                error += (f64::from(x) - approximate).powi(2);
                norm += f64::from(x).powi(2);
            }
            ranker.scales.push(scale);
            ranker.errors.push(round_up(error.sqrt()));
            ranker.norms.push(round_up(norm.sqrt()));
            ranker.squared_norms.push(norm as f32);
        }
        ranker
    }

    pub fn lists(&self) -> usize {
        self.scales.len()
    }

    /// Puts into `out` the `n` lists, among those `eligible`, with the smallest `exact` keys, as
    /// (key, list) ascending, ties by list: what sorting every eligible list by (exact key, list)
    /// and keeping the first `n` gives. `exact` is the scan's own key (squared L2 for L2, the
    /// negative inner product otherwise); it is called only for lists whose approximate key
    /// cannot rule them out.
    pub fn nearest(
        &self,
        metric: Metric,
        query: &[f32],
        n: usize,
        eligible: impl Fn(u32) -> bool,
        mut exact: impl FnMut(u32) -> f32,
        out: &mut Vec<(f32, u32)>,
    ) {
        assert_eq!(query.len(), self.dim, "a query of the index's dimensions");
        out.clear();
        let lists = self.lists() as u32;
        let mut approximate: Vec<(f32, f32, u32)> = Vec::with_capacity(lists as usize);
        let q_norm = round_up(crate::distance::norm_squared_f64(query).sqrt());
        let byte_dot = wide_weighted_sum_kernel();
        let q_sum: f32 = query.iter().sum();
        let q_abs_sum: f64 = query.iter().map(|&x| f64::from(x.abs())).sum();
        let unit = rounding_unit(self.dim);
        let mut usable = q_norm.is_finite() && q_abs_sum.is_finite();
        for list in (0..lists).filter(|&list| eligible(list)) {
            let l = list as usize;
            let codes = &self.codes[l * self.dim..(l + 1) * self.dim];
            let scale = self.scales[l];
            let dot = scale * (byte_dot(query, codes) - 128.0 * q_sum);
            // The key's error: the bytes' (Cauchy-Schwarz), then rounding, both sums counted on
            // their absolute terms (the offset of 128 included).
            let spread = q_norm + self.norms[l] + self.errors[l];
            let rounding = unit * (256.0 * scale * q_abs_sum as f32 + spread * spread);
            let (key, error) = match metric {
                Metric::L2 => (
                    q_norm * q_norm + self.squared_norms[l] - 2.0 * dot,
                    2.0 * q_norm * self.errors[l] + 2.0 * rounding,
                ),
                Metric::InnerProduct | Metric::Cosine => (-dot, q_norm * self.errors[l] + rounding),
            };
            usable &= key.is_finite() && error.is_finite();
            approximate.push((key - error, key + error, list));
        }
        let count = approximate.len();
        if n == 0 || count == 0 {
            return;
        }
        // Nothing to save when most lists are wanted, or when the bounds overflowed.
        if !usable || n * 2 >= count {
            out.extend(approximate.iter().map(|&(_, _, list)| (exact(list), list)));
            keep_nearest(out, n);
            return;
        }
        // At least n lists have exact keys at most their upper bounds, so the n-th smallest exact
        // key is at most the n-th smallest upper bound; a list whose lower bound is above that
        // cannot be among the n nearest.
        let mut uppers: Vec<f32> = approximate.iter().map(|&(_, upper, _)| upper).collect();
        let (_, &mut cut, _) = uppers.select_nth_unstable_by(n - 1, f32::total_cmp);
        out.extend(
            approximate
                .iter()
                .filter(|&&(lower, _, _)| lower <= cut)
                .map(|&(_, _, list)| (exact(list), list)),
        );
        keep_nearest(out, n);
    }
}

/// Sorts by (key, list) and keeps the first `n`.
fn keep_nearest(keys: &mut Vec<(f32, u32)>, n: usize) {
    let order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if n < keys.len() {
        keys.select_nth_unstable_by(n, order);
        keys.truncate(n);
    }
    keys.sort_unstable_by(order);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::kernels::weighted_sum;
    use rand::{Rng, SeedableRng};

    fn exact_key(metric: Metric, query: &[f32], centroid: &[f32]) -> f32 {
        match metric {
            Metric::L2 => crate::distance::l2_squared(query, centroid),
            Metric::InnerProduct | Metric::Cosine => -crate::distance::dot(query, centroid),
        }
    }

    fn brute_force(
        metric: Metric,
        query: &[f32],
        centroids: &[f32],
        dim: usize,
        n: usize,
        eligible: &dyn Fn(u32) -> bool,
    ) -> Vec<(f32, u32)> {
        let mut keys: Vec<(f32, u32)> = centroids
            .chunks_exact(dim)
            .enumerate()
            .filter(|&(list, _)| eligible(list as u32))
            .map(|(list, c)| (exact_key(metric, query, c), list as u32))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        keys.truncate(n);
        keys
    }

    /// Checks `nearest` against sorting every list; returns how many exact keys it computed.
    fn check(
        metric: Metric,
        query: &[f32],
        centroids: &[f32],
        dim: usize,
        n: usize,
        eligible: &dyn Fn(u32) -> bool,
    ) -> usize {
        let ranker = CentroidRanker::new(centroids, dim);
        let mut calls = 0;
        let mut out = Vec::new();
        ranker.nearest(
            metric,
            query,
            n,
            eligible,
            |list| {
                calls += 1;
                let l = list as usize;
                exact_key(metric, query, &centroids[l * dim..(l + 1) * dim])
            },
            &mut out,
        );
        let expected = brute_force(metric, query, centroids, dim, n, eligible);
        assert_eq!(
            out.iter().map(|k| (k.0.to_bits(), k.1)).collect::<Vec<_>>(),
            expected
                .iter()
                .map(|k| (k.0.to_bits(), k.1))
                .collect::<Vec<_>>(),
            "{metric:?} dim {dim} n {n}"
        );
        calls
    }

    fn clustered(rng: &mut rand::rngs::SmallRng, lists: usize, dim: usize) -> Vec<f32> {
        // Centroids close together, as k-means leaves them on real embeddings: a shared direction
        // plus a smaller individual part.
        let shared: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        (0..lists)
            .flat_map(|_| {
                shared
                    .iter()
                    .map(|&s| s + rng.gen_range(-0.5..0.5))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_nearest_lists_are_those_of_the_exact_keys() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
        for dim in [1, 2, 3, 17, 64, 384, 1000] {
            for lists in [1, 2, 10, 250] {
                let centroids = clustered(&mut rng, lists, dim);
                for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                    for _ in 0..4 {
                        let query: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.5..1.5)).collect();
                        for n in [1, 2, 5, 12, lists / 2, lists, lists + 3] {
                            check(metric, &query, &centroids, dim, n, &|_| true);
                            check(metric, &query, &centroids, dim, n, &|l| l % 3 != 1);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_lists_near_the_cut_get_exact_keys() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(12);
        let (lists, dim) = (250, 384);
        let mut centroids = clustered(&mut rng, lists, dim);
        for c in centroids.chunks_exact_mut(dim) {
            let norm = c.iter().map(|x| x * x).sum::<f32>().sqrt();
            c.iter_mut().for_each(|x| *x /= norm);
        }
        let mut total = 0;
        for _ in 0..20 {
            let l = rng.gen_range(0..lists);
            let mut query: Vec<f32> = centroids[l * dim..(l + 1) * dim]
                .iter()
                .map(|&c| c + rng.gen_range(-0.05..0.05))
                .collect();
            let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
            query.iter_mut().for_each(|x| *x /= norm);
            total += check(Metric::Cosine, &query, &centroids, dim, 12, &|_| true);
        }
        assert!(total < 20 * lists / 4, "{total} exact keys for 20 queries");
    }

    #[test]
    fn ties_and_degenerate_centroids() {
        let dim = 8;
        // Duplicates (ties broken by list), a zero centroid, tiny and huge values.
        let mut centroids = Vec::new();
        for row in [
            [1.0f32; 8],
            [1.0; 8],
            [0.0; 8],
            [1e-30; 8],
            [-1.0; 8],
            [1.0; 8],
            [3e18; 8],
            [1e-40; 8],
            [0.5; 8],
        ] {
            centroids.extend_from_slice(&row);
        }
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            for query in [[1.0f32; 8], [0.0; 8], [-1e-20; 8], [2e19; 8]] {
                for n in 1..=10 {
                    check(metric, &query, &centroids, dim, n, &|_| true);
                    check(metric, &query, &centroids, dim, n, &|l| l != 1);
                }
            }
        }
    }

    #[test]
    fn byte_dots_match_the_reference() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(14);
        for n in [0, 1, 15, 16, 31, 32, 33, 384, 1000, 2000] {
            let query: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let codes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let exact: f64 = query
                .iter()
                .zip(&codes)
                .map(|(&q, &c)| f64::from(q) * f64::from(c))
                .sum();
            let magnitude: f64 = query
                .iter()
                .zip(&codes)
                .map(|(&q, &c)| f64::from(q.abs()) * f64::from(c))
                .sum();
            let allowed = f64::from(rounding_unit(n)) * magnitude;
            let byte_dot = wide_weighted_sum_kernel();
            assert!((f64::from(byte_dot(&query, &codes)) - exact).abs() <= allowed);
            assert!((f64::from(weighted_sum(&query, &codes)) - exact).abs() <= allowed);
        }
    }

    #[test]
    fn codes_bound_their_error() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(13);
        for dim in [1, 5, 384, 2000] {
            let centroids: Vec<f32> = (0..3 * dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
            let ranker = CentroidRanker::new(&centroids, dim);
            for (l, c) in centroids.chunks_exact(dim).enumerate() {
                let error: f64 = c
                    .iter()
                    .zip(&ranker.codes[l * dim..(l + 1) * dim])
                    .map(|(&x, &code)| {
                        let back = f64::from(ranker.scales[l]) * (f64::from(code) - 128.0);
                        (f64::from(x) - back).powi(2)
                    })
                    .sum::<f64>()
                    .sqrt();
                assert!(f64::from(ranker.errors[l]) >= error);
                // A byte a coordinate: at most half a step each.
                assert!(error <= 0.5 * f64::from(ranker.scales[l]) * (dim as f64).sqrt() * 1.0001);
            }
        }
    }
}
