//! SQ8: each coordinate of a row's residual from its list centroid as one byte on a per-dimension
//! grid learned at build (`lo[i] + step[i] · k`, k in 0..=255).
//!
//! With r = o − c, r̂ its grid value and v = q − c:
//!
//! - L2:            |q − o|² = |v|² + |r|² − 2 <v, r>
//! - inner product: −<q, o>  = −<q, c> − <c, r> − <v, r>
//!
//! so every distance is `A + B − coef·<v, r>`, with B (|r|² or −<c, r>) stored exactly per row and
//! <v, r> estimated as <v, r̂> = <v, lo> + Σ (v_i · step_i) · k_i: one byte-by-float dot product per
//! row. Grid rounding leaves each coordinate within step/2, an error of standard deviation
//! coef · sqrt(Σ v_i² step_i² / 12). A row outside the learned range (inserted after the build) is
//! clamped; its excess error e is stored as |e| and bounds the estimate strictly by coef·|v|·|e|.
//!
//! Code layout (little-endian): B f32, |clamp excess| f32, then one byte per dimension.

use super::kernels;
use super::Estimate;
use crate::metric::Metric;

const HEADER_BYTES: usize = 8;
/// The learned range is widened by this fraction on each side, so that rows inserted later that
/// lie a little outside the build's rows are not clamped.
const RANGE_MARGIN: f32 = 0.05;

#[derive(Debug, Clone)]
pub struct Sq8 {
    metric: Metric,
    low: Vec<f32>,
    step: Vec<f32>,
}

#[derive(Debug, Clone, Default)]
pub struct Sq8Query {
    /// A − coef·<v, lo>.
    base: f32,
    /// coef · v_i · step_i.
    weights: Vec<f32>,
    sigma: f32,
    /// coef · |v|: multiplies a row's clamp excess.
    excess_factor: f32,
    rounding: f32,
}

fn get_f32(bytes: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn put_f32(bytes: &mut [u8], at: usize, value: f32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Bytes of an SQ8 code for `dim` dimensions.
pub fn code_bytes(dim: usize) -> usize {
    HEADER_BYTES + dim
}

impl Sq8 {
    /// Learns the grid from residuals (`dim` wide, row-major) of the build's sample.
    pub fn train(dim: usize, metric: Metric, residuals: &[f32]) -> Self {
        let mut low = vec![f32::INFINITY; dim];
        let mut high = vec![f32::NEG_INFINITY; dim];
        for row in residuals.chunks_exact(dim) {
            for (i, &x) in row.iter().enumerate() {
                low[i] = low[i].min(x);
                high[i] = high[i].max(x);
            }
        }
        let mut step = vec![0.0; dim];
        for i in 0..dim {
            if low[i] > high[i] {
                (low[i], high[i]) = (0.0, 0.0); // no rows
            }
            let margin = (high[i] - low[i]) * RANGE_MARGIN;
            low[i] -= margin;
            step[i] = (high[i] + margin - low[i]) / 255.0;
        }
        Sq8 { metric, low, step }
    }

    /// A grid read back from the index.
    pub fn from_parts(metric: Metric, low: Vec<f32>, step: Vec<f32>) -> Self {
        Sq8 { metric, low, step }
    }

    pub fn low(&self) -> &[f32] {
        &self.low
    }

    pub fn step(&self) -> &[f32] {
        &self.step
    }

    pub fn code_bytes(&self) -> usize {
        code_bytes(self.low.len())
    }

    fn coefficient(&self) -> f64 {
        match self.metric {
            Metric::L2 => 2.0,
            Metric::InnerProduct | Metric::Cosine => 1.0,
        }
    }

    pub fn encode(&self, row: &[f32], centroid: &[f32], out: &mut [u8]) {
        assert_eq!(out.len(), self.code_bytes());
        let mut b = 0.0f64;
        let mut excess = 0.0f64;
        for i in 0..row.len() {
            let r = row[i] - centroid[i];
            b += match self.metric {
                Metric::L2 => r as f64 * r as f64,
                Metric::InnerProduct | Metric::Cosine => -(centroid[i] as f64 * r as f64),
            };
            let (low, step) = (self.low[i], self.step[i]);
            let k = if step > 0.0 {
                ((r - low) / step).round().clamp(0.0, 255.0)
            } else {
                0.0
            };
            out[HEADER_BYTES + i] = k as u8;
            let error = (r as f64 - (low as f64 + step as f64 * k as f64)).abs();
            let over = error - step as f64 / 2.0;
            if over > 0.0 {
                excess += over * over;
            }
        }
        put_f32(out, 0, b as f32);
        // Rounded up a little: the stored excess must cover the true one.
        put_f32(out, 4, (excess.sqrt() * (1.0 + 1e-6)) as f32);
    }

    pub fn prepare(&self, query: &[f32], centroid: &[f32], into: &mut Sq8Query) {
        let coef = self.coefficient();
        let mut dot_low = 0.0f64;
        let mut norm = 0.0f64;
        let mut variance = 0.0f64;
        into.weights.clear();
        for i in 0..query.len() {
            let v = query[i] as f64 - centroid[i] as f64;
            dot_low += v * self.low[i] as f64;
            norm += v * v;
            variance += (v * self.step[i] as f64).powi(2) / 12.0;
            into.weights.push((coef * v * self.step[i] as f64) as f32);
        }
        let a = match self.metric {
            Metric::L2 => norm,
            Metric::InnerProduct | Metric::Cosine => -query
                .iter()
                .zip(centroid)
                .map(|(&q, &c)| q as f64 * c as f64)
                .sum::<f64>(),
        };
        into.base = (a - coef * dot_low) as f32;
        into.sigma = (coef * variance.sqrt()) as f32;
        into.excess_factor = (coef * norm.sqrt()) as f32;
        into.rounding = 1e-5 * (a.abs() + norm) as f32 + f32::MIN_POSITIVE;
    }
}

impl Sq8Query {
    #[inline]
    pub fn estimate(&self, code: &[u8]) -> Estimate {
        let b = get_f32(code, 0);
        let excess = get_f32(code, 4);
        let dot = kernels::weighted_sum(&self.weights, &code[HEADER_BYTES..]);
        Estimate {
            distance: self.base + b - dot,
            sigma: self.sigma,
            slack: self.excess_factor * excess + self.rounding + 1e-5 * b.abs(),
        }
    }
}

/// SQ8 in the index's table of quantizers.
pub static REGISTRATION: super::Registration = super::Registration {
    name: "sq8",
    code: 1,
    code_bytes,
    parameter_floats: |dim| 2 * dim,
    train: |t| {
        // The grid is learned from residuals: each sample less its nearest centroid.
        let mut residuals = t.samples.to_vec();
        if !t.centroids.is_empty() && !t.samples.is_empty() {
            let labels =
                crate::kmeans::assign(t.samples, t.dim, t.centroids, t.metric.kmeans(), t.pool);
            for (row, list) in residuals.chunks_exact_mut(t.dim).zip(labels) {
                let centroid = &t.centroids[list as usize * t.dim..(list as usize + 1) * t.dim];
                for (x, c) in row.iter_mut().zip(centroid) {
                    *x -= c;
                }
            }
        }
        Box::new(Sq8::train(t.dim, t.metric, &residuals))
    },
    load: |l| {
        let grid = l.parameters;
        if grid.len() != 2 * l.dim || grid.iter().any(|x| !x.is_finite()) {
            return Err(crate::page::FormatError::Corrupted(
                "the quantizer's grid is damaged",
            ));
        }
        let (low, step) = grid.split_at(l.dim);
        Ok(Box::new(Sq8::from_parts(
            l.metric,
            low.to_vec(),
            step.to_vec(),
        )))
    },
};

/// The `quantizer` option's value for SQ8.
pub static KIND: super::QuantizerKind = super::QuantizerKind::of(&REGISTRATION);

impl super::Quantizer for Sq8 {
    fn kind(&self) -> super::QuantizerKind {
        super::QuantizerKind::of(&REGISTRATION)
    }

    fn code_bytes(&self) -> usize {
        Sq8::code_bytes(self)
    }

    fn parameters(&self) -> Vec<f32> {
        [self.low(), self.step()].concat()
    }

    fn encode_in_list(
        &self,
        row: &[f32],
        centroid: &[f32],
        _context: &[f32],
        _scratch: &mut Vec<f32>,
        out: &mut [u8],
    ) {
        Sq8::encode(self, row, centroid, out)
    }

    fn new_query(&self) -> Box<dyn super::PreparedQuery> {
        Box::<Sq8Query>::default()
    }

    fn prepare_list(&self, query: &[f32], centroid: &[f32], into: &mut dyn super::PreparedQuery) {
        self.prepare(query, centroid, super::prepared(into))
    }
}

impl super::PreparedQuery for Sq8Query {
    fn estimate(&self, code: &[u8]) -> Estimate {
        Sq8Query::estimate(self, code)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn exact(metric: Metric, q: &[f32], o: &[f32]) -> f64 {
        match metric {
            Metric::L2 => q
                .iter()
                .zip(o)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum(),
            _ => -q
                .iter()
                .zip(o)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>(),
        }
    }

    #[test]
    fn codes_decode_within_half_a_step() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let dim = 40;
        let residuals: Vec<f32> = (0..dim * 200).map(|_| rng.gen_range(-2.0..3.0)).collect();
        let sq8 = Sq8::train(dim, Metric::L2, &residuals);
        let centroid = vec![0.0; dim];
        let mut code = vec![0u8; sq8.code_bytes()];
        for row in residuals.chunks_exact(dim).take(50) {
            sq8.encode(row, &centroid, &mut code);
            for i in 0..dim {
                let decoded = sq8.low()[i] + sq8.step()[i] * code[HEADER_BYTES + i] as f32;
                assert!((decoded - row[i]).abs() <= sq8.step()[i] / 2.0 + 1e-6);
            }
            assert_eq!(
                get_f32(&code, 4),
                0.0,
                "no clamping inside the learned range"
            );
        }
    }

    #[test]
    fn estimates_stay_within_their_stated_error() {
        for dim in [3, 8, 100, 384, 768, 2000] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(dim as u64);
                let centroid: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let rows: Vec<f32> = (0..dim * 300)
                    .map(|i| centroid[i % dim] + rng.gen_range(-0.3..0.3))
                    .collect();
                let residuals: Vec<f32> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x - centroid[i % dim])
                    .collect();
                let sq8 = Sq8::train(dim, metric, &residuals);
                let mut code = vec![0u8; sq8.code_bytes()];
                let mut prepared = Sq8Query::default();
                let (mut total, mut outside3) = (0, 0);
                for qi in 0..10 {
                    let q: Vec<f32> = centroid
                        .iter()
                        .map(|c| c + rng.gen_range(-0.5..0.5))
                        .collect();
                    sq8.prepare(&q, &centroid, &mut prepared);
                    for row in rows.chunks_exact(dim).skip(qi * 30).take(30) {
                        sq8.encode(row, &centroid, &mut code);
                        let e = prepared.estimate(&code);
                        let err = (e.distance as f64 - exact(metric, &q, row)).abs();
                        total += 1;
                        if err > 3.0 * e.sigma as f64 + e.slack as f64 {
                            outside3 += 1;
                        }
                        // The grid's worst case: every coordinate off by half a step.
                        let worst: f64 = (0..dim)
                            .map(|i| ((q[i] - centroid[i]) * sq8.step()[i]).abs() as f64)
                            .sum::<f64>()
                            * if metric == Metric::L2 { 1.0 } else { 0.5 };
                        assert!(err <= worst + e.slack as f64 + 1e-4, "dim {dim} {metric:?}");
                    }
                }
                // Normal errors leave 3 standard errors 0.27% of the time; 2% allows for chance.
                assert!(
                    outside3 * 50 <= total,
                    "dim {dim} {metric:?}: {outside3}/{total}"
                );
            }
        }
    }

    #[test]
    fn clamped_rows_are_bounded_strictly() {
        let dim = 16;
        let residuals = vec![0.1f32; dim * 4];
        let sq8 = Sq8::train(dim, Metric::L2, &residuals);
        let centroid = vec![0.0; dim];
        let row: Vec<f32> = (0..dim)
            .map(|i| if i % 2 == 0 { 5.0 } else { -5.0 })
            .collect();
        let mut code = vec![0u8; sq8.code_bytes()];
        sq8.encode(&row, &centroid, &mut code);
        assert!(get_f32(&code, 4) > 4.0);
        let q = vec![1.0f32; dim];
        let mut prepared = Sq8Query::default();
        sq8.prepare(&q, &centroid, &mut prepared);
        let e = prepared.estimate(&code);
        let err = (e.distance as f64 - exact(Metric::L2, &q, &row)).abs();
        assert!(err <= e.slack as f64, "{err} > {}", e.slack);
    }
}
