//! The distances an index orders by, and everything the index does differently for each.
//!
//! An operator class names its metric (support function 6, `ivfflat_metric_*`), the build stores
//! it in the meta page, and from then on every part of the index asks this type: how a row is
//! stored, which k-means clusters it, the key rows are ordered by, how a radius becomes a bound on
//! that key, and how far a row lies from its centroid.

use crate::bounds;
use crate::distance::{self, Kernels};
use crate::kmeans::KMeansMetric;

/// How distances are computed and what is stored, fixed at build time by the operator class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Metric {
    /// `<->`: the index orders by squared L2.
    L2 = 0,
    /// `<#>`: the negative inner product of the vectors as given; lists come from spherical
    /// k-means.
    InnerProduct = 1,
    /// `<=>`: vectors normalised on the way in, then the negative inner product.
    Cosine = 2,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];

    /// The meta page's code for the metric.
    pub fn code(self) -> u32 {
        self as u8 as u32
    }

    /// The metric of a meta page's code, all four bytes of it.
    pub fn from_code(code: u32) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.code() == code)
    }

    /// What `ivfflat_stats` and the verifier call it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "inner product",
            Metric::Cosine => "cosine",
        }
    }

    /// The metric an operator class names through its support function 6: the function's C
    /// symbol (`ivfflat_metric_l2`, ...). Anything else is not an operator class of ours.
    pub fn from_support_symbol(symbol: &str) -> Option<Metric> {
        match symbol {
            "ivfflat_metric_l2" => Some(Metric::L2),
            "ivfflat_metric_ip" => Some(Metric::InnerProduct),
            "ivfflat_metric_cosine" => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// Angles have no meaning in one dimension: pgvector refuses such indexes for its
    /// spherical metrics, with the same error.
    pub fn needs_two_dimensions(self) -> bool {
        self != Metric::L2
    }

    /// The k-means that makes this metric's lists.
    pub fn kmeans(self) -> KMeansMetric {
        match self {
            Metric::L2 => KMeansMetric::L2,
            Metric::InnerProduct | Metric::Cosine => KMeansMetric::Spherical,
        }
    }

    /// Spherical k-means clusters directions: its samples are normalised, and rows without a
    /// direction are not sampled. False for a row to leave out of the sample.
    pub fn prepare_sample(self, row: &mut [f32]) -> bool {
        match self.kmeans() {
            KMeansMetric::L2 => true,
            KMeansMetric::Spherical => normalize(row),
        }
    }

    /// How a row's vector is stored in the index (into `stored`). False for rows the index
    /// leaves out: zero vectors under cosine, which have no direction.
    pub fn prepare_row(self, vector: &[f32], stored: &mut Vec<f32>) -> bool {
        stored.clear();
        stored.extend_from_slice(vector);
        self != Metric::Cosine || normalize(stored)
    }

    /// The query as the index compares it with stored rows. A zero query under cosine has no
    /// direction and stays zero: every row is then at the same distance, as in pgvector.
    pub fn prepare_query(self, query: &[f32]) -> Vec<f32> {
        let mut prepared = query.to_vec();
        if self == Metric::Cosine {
            normalize(&mut prepared);
        }
        prepared
    }

    /// The key the index orders rows by (query and row as prepared): squared L2, or the negative
    /// inner product. Monotone in the operator's distance.
    #[inline]
    pub fn order_key(self, kernels: &Kernels, query: &[f32], row: &[f32]) -> f32 {
        match self {
            Metric::L2 => kernels.l2_squared(query, row),
            Metric::InnerProduct | Metric::Cosine => -kernels.dot(query, row),
        }
    }

    /// An ordering key as a distance on one scale for rows and centroids alike: the Euclidean
    /// distance for L2 (whose key is its square), the key itself for the inner-product metrics.
    #[inline]
    pub fn key_distance(self, key: f32) -> f32 {
        match self {
            Metric::L2 => key.max(0.0).sqrt(),
            Metric::InnerProduct | Metric::Cosine => key,
        }
    }

    /// The largest ordering key of a row whose distance by the operator (`<->` the square root of
    /// the key, `<#>` the key itself, `<=>` one plus it) is at most `radius`, for a query of
    /// `query_norm` and rows of norms up to `max_norm`. The index's f32 key and the operator's
    /// distance round differently, by up to about `dim` float epsilons of the sum of the terms'
    /// magnitudes (as `bounds` budgets): the key is raised by twice that, so that rows on the
    /// boundary reach the query's own condition, which decides them. NaN admits every row (a
    /// float8 NaN sorts above every number); a negative L2 radius admits none.
    pub fn radius_key(self, radius: f64, dim: usize, query_norm: f64, max_norm: f64) -> f32 {
        if radius.is_nan() {
            return f32::INFINITY;
        }
        let rounding = 2.0 * dim as f64 * bounds::F32_SUM_ERROR_PER_TERM;
        let slack = |x: f64| x + x.abs() * 1e-5 + 1e-6;
        let limit = match self {
            Metric::L2 if radius < 0.0 => f64::NEG_INFINITY,
            Metric::L2 => slack(radius) * slack(radius) * (1.0 + rounding) + 1e-6,
            Metric::InnerProduct => slack(radius) + query_norm * max_norm * rounding,
            // Unit query and rows: the terms' magnitudes sum to at most one.
            Metric::Cosine => slack(radius - 1.0) + rounding,
        };
        bounds::round_up(limit)
    }

    /// How far a row lies from its list's centroid, as the lists were trained: Euclidean for
    /// L2, angular (one less the cosine similarity) for the spherical metrics. `ivfflat_stats`
    /// compares rows inserted after the build with the build's own by it.
    pub fn centroid_distance(self, row: &[f32], centroid: &[f32]) -> f64 {
        match self.kmeans() {
            KMeansMetric::L2 => f64::from(distance::l2_squared(row, centroid)).sqrt(),
            KMeansMetric::Spherical => {
                let (dot, norm_a, norm_b) = distance::cosine_parts(row, centroid);
                let denominator = (f64::from(norm_a) * f64::from(norm_b)).sqrt();
                if denominator > 0.0 {
                    1.0 - f64::from(dot) / denominator
                } else {
                    0.0
                }
            }
        }
    }

    /// The distance of a row from its list's centroid that the list's radius covers (see
    /// `bounds`).
    pub fn member_distance(self, row: &[f32], centroid: &[f32]) -> f32 {
        bounds::member_distance(self, row, centroid)
    }

    /// The smallest ordering key any row of a list (with this centroid and radius) can have.
    pub fn lower_bound(self, query: &[f32], centroid: &[f32], radius: f32, max_norm: f32) -> f32 {
        bounds::lower_bound(self, query, centroid, radius, max_norm)
    }
}

/// Scales `values` to unit length, in f64 as pgvector's `l2_normalize` does. False, with the values
/// unchanged, for a zero vector (or one whose norm overflows).
pub fn normalize(values: &mut [f32]) -> bool {
    let norm = distance::norm_squared_f64(values).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    for x in values.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_code(metric.code()), Some(metric));
        }
        assert_eq!(Metric::from_code(3), None);
        assert_eq!(Metric::from_code(0x100), None);
    }

    #[test]
    fn support_symbols_name_each_metric_and_nothing_else() {
        assert_eq!(
            Metric::from_support_symbol("ivfflat_metric_cosine"),
            Some(Metric::Cosine)
        );
        assert_eq!(Metric::from_support_symbol("l2_distance"), None);
    }

    #[test]
    fn rows_and_queries_are_prepared_per_metric() {
        let mut stored = Vec::new();
        assert!(Metric::L2.prepare_row(&[3.0, 4.0], &mut stored));
        assert_eq!(stored, [3.0, 4.0]);
        assert!(Metric::Cosine.prepare_row(&[3.0, 4.0], &mut stored));
        assert_eq!(stored, [0.6, 0.8]);
        assert!(!Metric::Cosine.prepare_row(&[0.0, 0.0], &mut stored));
        assert!(Metric::InnerProduct.prepare_row(&[0.0, 0.0], &mut stored));
        assert_eq!(Metric::Cosine.prepare_query(&[0.0, 0.0]), [0.0, 0.0]);
        let mut sample = [0.0, 2.0];
        assert!(Metric::InnerProduct.prepare_sample(&mut sample));
        assert_eq!(sample, [0.0, 1.0]);
        assert!(!Metric::Cosine.prepare_sample(&mut [0.0, 0.0]));
    }

    /// The distance the SQL operator computes for a row, in f64 from the raw vectors (as
    /// pgvector's operators do, up to their own rounding).
    fn operator_distance(metric: Metric, query: &[f32], row: &[f32]) -> f64 {
        let dot: f64 = query
            .iter()
            .zip(row)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        match metric {
            Metric::L2 => query
                .iter()
                .zip(row)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum::<f64>()
                .sqrt(),
            Metric::InnerProduct => -dot,
            Metric::Cosine => {
                let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
                1.0 - dot / (norm(query) * norm(row)).sqrt()
            }
        }
    }

    /// Every row whose operator distance is at most the radius has an index key at most the
    /// radius's key, for rows right on the boundary, at the dimensions embeddings come in.
    #[test]
    fn radius_keys_keep_rows_on_the_boundary() {
        let kernels = distance::kernels();
        let mut rng = rand::rngs::StdRng::seed_from_u64(27);
        for dim in [3, 384, 1536, 3072] {
            for metric in Metric::ALL {
                for _ in 0..40 {
                    let query: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let row: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let radius = operator_distance(metric, &query, &row);
                    let q = metric.prepare_query(&query);
                    let mut stored = Vec::new();
                    assert!(metric.prepare_row(&row, &mut stored));
                    let key = metric.order_key(kernels, &q, &stored);
                    let q_norm = distance::norm_squared_f64(&q).sqrt();
                    let r_norm = distance::norm_squared_f64(&stored).sqrt();
                    let limit = metric.radius_key(radius, dim, q_norm, r_norm);
                    assert!(
                        key <= limit,
                        "{metric:?} at {dim} dimensions: key {key} above the radius's {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn radius_keys_of_special_radii() {
        assert_eq!(Metric::L2.radius_key(f64::NAN, 4, 1.0, 1.0), f32::INFINITY);
        assert_eq!(Metric::L2.radius_key(-1.0, 4, 1.0, 1.0), f32::NEG_INFINITY);
        // A cosine radius of 2 admits every unit row: the key is at most one above -1.
        assert!(Metric::Cosine.radius_key(2.0, 4, 1.0, 1.0) >= 1.0);
    }

    #[test]
    fn centroid_distances() {
        assert_eq!(Metric::L2.centroid_distance(&[3.0, 4.0], &[0.0, 0.0]), 5.0);
        assert!(
            Metric::Cosine
                .centroid_distance(&[1.0, 0.0], &[2.0, 0.0])
                .abs()
                < 1e-12
        );
        assert_eq!(
            Metric::InnerProduct.centroid_distance(&[0.0, 0.0], &[1.0, 0.0]),
            0.0
        );
    }
}
