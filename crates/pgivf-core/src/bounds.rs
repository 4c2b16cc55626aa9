//! How near to a query a list's rows can possibly be.
//!
//! Each list records its radius: the largest distance from its centroid of any row it ever held
//! (Euclidean for L2; the angle for inner product and cosine, whose centroids are unit vectors), and
//! the index records the largest row norm. By the triangle inequality (for angles, on the sphere), no
//! row of a list is nearer to the query than the query's distance to the centroid minus the radius.
//! A scan that must return rows in exact order (`strict_order`) only hands out a row once no list it
//! has not read can hold a nearer one.
//!
//! Lower bounds are on the scan's ordering key: squared Euclidean distance for L2, the negative inner
//! product for inner product and cosine (with unit query and rows for cosine).

use crate::metric::Metric;

/// The distance of a row (as stored) from its list's centroid that radii measure, computed in f64
/// (f32 sums lose tiny angles: acos near 1 turns a rounding error of 1e-7 into 3e-4 radians).
pub fn member_distance(metric: Metric, row: &[f32], centroid: &[f32]) -> f32 {
    let d = match metric {
        Metric::L2 => euclidean(row, centroid),
        Metric::InnerProduct | Metric::Cosine => angle(row, centroid),
    };
    // Rounded up, so that the stored radius covers the exact value.
    round_up(d)
}

/// `value` as the nearest f32 no smaller than it.
pub(crate) fn round_up(value: f64) -> f32 {
    let rounded = value as f32;
    if f64::from(rounded) < value {
        rounded.next_up()
    } else {
        rounded
    }
}

/// `value` as the nearest f32 no larger than it.
fn round_down(value: f64) -> f32 {
    let rounded = value as f32;
    if f64::from(rounded) > value {
        rounded.next_down()
    } else {
        rounded
    }
}

fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    sum_terms(a, b, |x, y| (x - y) * (x - y)).sqrt()
}

/// Angle between two vectors in radians (0 when either is zero), as 2·atan2(|â − b̂|, |â + b̂|),
/// which stays accurate for tiny and for near-opposite angles.
fn angle(a: &[f32], b: &[f32]) -> f64 {
    let norm = |v: &[f32]| sum_terms(v, v, |x, _| x * x).sqrt();
    let (norm_a, norm_b) = (norm(a), norm(b));
    if norm_a == 0.0 || norm_b == 0.0 || !norm_a.is_finite() || !norm_b.is_finite() {
        return 0.0;
    }
    let (inverse_a, inverse_b) = (1.0 / norm_a, 1.0 / norm_b);
    let difference = sum_terms(a, b, |x, y| (x * inverse_a - y * inverse_b).powi(2));
    let sum = sum_terms(a, b, |x, y| (x * inverse_a + y * inverse_b).powi(2));
    2.0 * difference.sqrt().atan2(sum.sqrt())
}

/// Σ term(a[i], b[i]) in f64, over eight accumulators: one running sum is a chain of dependent
/// additions, eight overlap (a build takes a radius for every row). The order of the additions is
/// not part of any format: radii carry slack (verify.rs and [`lower_bound`] allow 1e-4).
fn sum_terms(a: &[f32], b: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| term(x.into(), y.into()))
        .sum();
    let mut lanes = [0.0f64; 8];
    for (x, y) in chunks_a.zip(chunks_b) {
        for k in 0..8 {
            lanes[k] += term(x[k].into(), y[k].into());
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Relative slack for the stored radius and the centroid distance.
const SLACK: f64 = 1e-4;
/// The scan's keys are f32 sums of `dim` terms: their error is at most about dim · 2^-24 of the sum
/// of the terms' magnitudes. Bounds are lowered by twice that.
pub(crate) const F32_SUM_ERROR_PER_TERM: f64 = 1.2e-7;

/// A lower bound on the ordering key of any row of a list with this centroid and radius, for
/// `query` (normalised for cosine), as the scan's f32 kernels compute the key. `max_norm` is the
/// largest row norm in the index (inner product).
pub fn lower_bound(
    metric: Metric,
    query: &[f32],
    centroid: &[f32],
    radius: f32,
    max_norm: f32,
) -> f32 {
    let radius = f64::from(radius) * (1.0 + SLACK) + 1e-6;
    let rounding = query.len() as f64 * F32_SUM_ERROR_PER_TERM;
    let query_norm = query
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    let bound = match metric {
        Metric::L2 => {
            let nearest = (euclidean(query, centroid) * (1.0 - SLACK) - radius).max(0.0);
            // The key's terms are all positive: its error is relative to the key itself.
            nearest * nearest * (1.0 - rounding) - 1e-6
        }
        Metric::Cosine | Metric::InnerProduct => {
            // No row is at a smaller angle to the query than this, so its inner product with the
            // query is at most |q| · |row| · cos(angle), and |row| is at most max_norm (1 for cosine).
            let smallest_angle = (angle(query, centroid) - radius).max(0.0);
            let row_norm = match metric {
                Metric::Cosine => 1.0,
                _ => f64::from(max_norm) * (1.0 + SLACK),
            };
            let largest_dot = match metric {
                // Unit rows: the similarity at that angle, negative past 90°.
                Metric::Cosine => query_norm * smallest_angle.cos(),
                // Rows of any norm up to max_norm: past 90° the best is a row near zero.
                _ => query_norm * row_norm * smallest_angle.cos().max(0.0),
            };
            // The key's error is relative to the sum of |q_i · x_i| <= |q| · |x|.
            -(largest_dot + largest_dot.abs() * SLACK + query_norm * row_norm * rounding) - 1e-6
        }
    };
    if bound.is_nan() {
        f32::NEG_INFINITY
    } else {
        // Rounded down, so that the f32 bound stays below the exact one.
        round_down(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance;
    use rand::{Rng, SeedableRng};

    fn ordering_key(metric: Metric, query: &[f32], row: &[f32]) -> f32 {
        match metric {
            Metric::L2 => distance::l2_squared(query, row),
            _ => -distance::dot(query, row),
        }
    }

    fn unit(v: &mut [f32]) {
        let norm = distance::norm_squared_f64(v).sqrt() as f32;
        v.iter_mut().for_each(|x| *x /= norm);
    }

    /// Records the list's radius and largest norm from `rows` as the index does, then checks that
    /// no row's key is below its list's bound for random queries with coordinates in ±`spread`.
    fn assert_rows_within_bound(
        rng: &mut rand::rngs::StdRng,
        metric: Metric,
        centroid: &[f32],
        rows: &[Vec<f32>],
        query_spread: f32,
        queries: usize,
        context: &str,
    ) {
        let radius = rows
            .iter()
            .map(|r| member_distance(metric, r, centroid))
            .fold(0.0f32, f32::max);
        let max_norm = rows
            .iter()
            .map(|r| distance::norm_squared_f64(r).sqrt() as f32)
            .fold(0.0f32, f32::max);
        for _ in 0..queries {
            let mut query: Vec<f32> = (0..centroid.len())
                .map(|_| rng.gen_range(-query_spread..query_spread))
                .collect();
            if metric == Metric::Cosine {
                unit(&mut query);
            }
            let bound = lower_bound(metric, &query, centroid, radius, max_norm);
            for row in rows {
                let key = ordering_key(metric, &query, row);
                assert!(
                    key >= bound,
                    "{metric:?} {context}: key {key} below bound {bound}"
                );
            }
        }
    }

    /// The distances as first written: one running f64 sum, divisions by the norms.
    fn member_distance_reference(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
        let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        match metric {
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum::<f64>()
                .sqrt(),
            _ => {
                let (norm_a, norm_b) = (norm(a), norm(b));
                if norm_a == 0.0 || norm_b == 0.0 || !norm_a.is_finite() || !norm_b.is_finite() {
                    return 0.0;
                }
                let (mut difference, mut sum) = (0.0f64, 0.0f64);
                for (&x, &y) in a.iter().zip(b) {
                    let (x, y) = (f64::from(x) / norm_a, f64::from(y) / norm_b);
                    difference += (x - y).powi(2);
                    sum += (x + y).powi(2);
                }
                2.0 * difference.sqrt().atan2(sum.sqrt())
            }
        }
    }

    #[test]
    fn member_distances_cover_the_straightforward_sums() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for dim in [1, 2, 7, 8, 9, 100, 384, 2000] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                for case in 0..50 {
                    let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    // Near, far, equal and opposite rows.
                    let b: Vec<f32> = match case {
                        0 => a.clone(),
                        1 => a.iter().map(|x| -x).collect(),
                        2 => a.iter().map(|x| x * (1.0 + 1e-6)).collect(),
                        3 => vec![0.0; dim],
                        _ => a.iter().map(|x| x + rng.gen_range(-0.1..0.1)).collect(),
                    };
                    let reference = member_distance_reference(metric, &a, &b);
                    let stored = f64::from(member_distance(metric, &a, &b));
                    // Rounded up to f32 from a sum within a few f64 ulps of the reference.
                    assert!(
                        stored >= reference * (1.0 - 1e-12) - 1e-300,
                        "{metric:?} dim {dim} case {case}: {stored} below {reference}"
                    );
                    assert!(
                        stored <= reference * (1.0 + 2.0f64.powi(-22)) + 1e-12,
                        "{metric:?} dim {dim} case {case}: {stored} far above {reference}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_row_is_nearer_than_its_list_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            for dim in [2, 3, 17, 128, 768] {
                for _ in 0..20 {
                    let spread = rng.gen_range(0.01..2.0f32);
                    let mut centroid: Vec<f32> =
                        (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    if metric != Metric::L2 {
                        unit(&mut centroid);
                    }
                    let rows: Vec<Vec<f32>> = (0..50)
                        .map(|_| {
                            let scale = rng.gen_range(0.1..3.0f32);
                            let mut row: Vec<f32> = centroid
                                .iter()
                                .map(|c| (c + rng.gen_range(-spread..spread)) * scale)
                                .collect();
                            if metric == Metric::Cosine {
                                unit(&mut row);
                            }
                            row
                        })
                        .collect();
                    let context = format!("dim {dim}");
                    assert_rows_within_bound(&mut rng, metric, &centroid, &rows, 2.0, 10, &context);
                }
            }
        }
    }

    /// Near-duplicate clusters: rows a few 1e-4 radians from their centroid, where f32 angles round
    /// to 0 (found in review: the bound came out above the true key).
    #[test]
    fn tight_lists_and_large_norms_stay_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
            for dim in [3, 384, 768, 2000] {
                for spread in [1e-5f32, 2e-4, 1e-3, 2e-3] {
                    let mut centroid: Vec<f32> =
                        (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    unit(&mut centroid);
                    let scale = if metric == Metric::InnerProduct {
                        1e4
                    } else {
                        1.0
                    };
                    let rows: Vec<Vec<f32>> = (0..40)
                        .map(|_| {
                            let mut row: Vec<f32> = centroid
                                .iter()
                                .map(|c| c + rng.gen_range(-spread..spread) / (dim as f32).sqrt())
                                .collect();
                            unit(&mut row);
                            row.iter_mut().for_each(|x| *x *= scale);
                            row
                        })
                        .collect();
                    let context = format!("dim {dim} spread {spread}");
                    assert_rows_within_bound(&mut rng, metric, &centroid, &rows, 1.0, 20, &context);
                }
            }
        }
    }

    #[test]
    fn bounds_are_tight_enough_to_prune_far_lists() {
        // A tight list far from the query: its bound is close to the true nearest key.
        let centroid = [10.0f32, 0.0];
        let bound = lower_bound(Metric::L2, &[0.0, 0.0], &centroid, 1.0, 0.0);
        assert!(bound > 80.0 && bound <= 81.0, "{bound}");
        // The query inside the list's ball: no pruning possible.
        let inside = lower_bound(Metric::L2, &[10.5, 0.0], &centroid, 1.0, 0.0);
        assert!((-1e-5..=0.0).contains(&inside), "{inside}");
        // Cosine: a list 90° away with a 10° radius holds no row nearer than 80°.
        let bound = lower_bound(Metric::Cosine, &[1.0, 0.0], &[0.0, 1.0], 0.1745, 1.0);
        assert!((bound + 80f32.to_radians().cos()).abs() < 1e-3, "{bound}");
        // ... and one 180° away with a 10° radius none nearer than 170°.
        let bound = lower_bound(Metric::Cosine, &[1.0, 0.0], &[-1.0, 0.0], 0.1745, 1.0);
        assert!(
            (bound - 170f32.to_radians().cos().abs()).abs() < 1e-3,
            "{bound}"
        );
        // Inner product past 90°: a row near zero has inner product near 0.
        let bound = lower_bound(Metric::InnerProduct, &[1.0, 0.0], &[-1.0, 0.0], 0.1745, 5.0);
        assert!(bound.abs() < 1e-5, "{bound}");
        assert_eq!(
            member_distance(Metric::Cosine, &[0.0, 0.0], &[1.0, 0.0]),
            0.0
        );
    }
}
