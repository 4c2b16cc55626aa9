//! RaBitQ (Gao and Long, SIGMOD 2024): one bit per (rotated) dimension of a row's residual from its
//! list centroid, plus three correction factors, and an unbiased estimate of the row's distance to a
//! query with a known standard error.
//!
//! For a row o in a list with centroid c, r = o − c and n = |r|; o' = P r / n is the rotated unit
//! residual (see `rotation`) and the code holds its signs, x̄ = sign(o') / sqrt(D) (D the padded
//! dimensions), with a = <x̄, o'> = Σ|o'_i| / sqrt(D) (about 0.8). For a query q, v = P (q − c):
//!
//! - L2:            |q − o|² = |q − c|² + n² − 2 n <o', v>
//! - inner product: −<q, o>  = −<q, c> − <c, r> − n <o', v>
//!
//! so every distance is `A + B + coef·<o', v>` with A per query and list, and B and coef per row.
//! RaBitQ's estimator is <o', v> ≈ <x̄, v> / a, unbiased, with a standard error of
//! |v| · sqrt(1 − a²) / (a · sqrt(D − 1)). <x̄, v> is computed with bit operations against v
//! quantized to 4 bits per coordinate (`kernels::bit_sums`), whose rounding adds a small known error.
//!
//! Since <x̄, v> = <x̄, P q> − <x̄, P c>, the second term is stored with the code and a query is
//! rotated and quantized once, not once per list.
//!
//! Code layout (little-endian): B f32, coef / a f32, the error coefficient coef·sqrt(1−a²)/(a·sqrt(D−1))
//! f32, <x̄, P c> f32, then D / 8 bytes of bits (bit i of the code is bit i % 8 of byte i / 8).

use super::kernels::{self, QUERY_BITS};
use super::rotation::Rotation;
use super::Estimate;
use crate::metric::Metric;

const HEADER_BYTES: usize = 16;

#[derive(Debug, Clone)]
pub struct Rabitq {
    dim: usize,
    metric: Metric,
    rotation: Rotation,
}

/// A vector on a 4-bit grid, as bit planes (plane j holds bit j of every coordinate's level).
#[derive(Debug, Clone, Default)]
struct Grid {
    planes: Vec<u64>,
    low: f32,
    step: f32,
    /// Σ of the grid values (not the exact ones: rounding errors then enter the estimate as
    /// Σ (2 b_i − 1) e_i, which averages out over the code's bits).
    sum: f32,
    /// Standard error the grid adds to <x̄, ·>: the root mean square of the rounding errors.
    error: f32,
}

impl Grid {
    fn quantize(&mut self, v: &[f32]) {
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let (mut low, mut high) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in v {
            low = low.min(x);
            high = high.max(x);
        }
        let step = if high > low {
            (high - low) / levels
        } else {
            0.0
        };
        let scale = if step > 0.0 { 1.0 / step } else { 0.0 };
        let words = v.len() / 64;
        self.planes.clear();
        self.planes.resize(QUERY_BITS * words, 0);
        let (mut sum, mut squared_error) = (0.0f32, 0.0f32);
        let mut chunk_levels = [0u8; 64];
        for (w, chunk) in v.chunks_exact(64).enumerate() {
            for (level, &x) in chunk_levels.iter_mut().zip(chunk) {
                // x ≥ low, so adding one half and truncating rounds to the nearest level.
                *level = (((x - low) * scale + 0.5) as u32).min(levels as u32) as u8;
            }
            for (&level, &x) in chunk_levels.iter().zip(chunk) {
                let value = low + step * f32::from(level);
                sum += value;
                squared_error += (value - x) * (value - x);
            }
            for j in 0..QUERY_BITS {
                self.planes[j * words + w] = bit_plane(&chunk_levels, j);
            }
        }
        self.low = low;
        self.step = step;
        self.sum = sum;
        self.error = (squared_error / v.len() as f32).sqrt();
    }
}

/// Bit `j` of each of 64 levels, level `i` at bit `i`: eight levels at a time, a multiply moving
/// the bit of each byte to its place in the top byte (the partial products never overlap, so no
/// carry disturbs it). A bit at a time was most of a query's preparation.
fn bit_plane(levels: &[u8; 64], j: usize) -> u64 {
    levels
        .chunks_exact(8)
        .enumerate()
        .map(|(k, bytes)| {
            let eight = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            let bits =
                ((eight >> j) & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            bits << (8 * k)
        })
        .fold(0, |plane, bits| plane | bits)
}

/// A query prepared against one list.
#[derive(Debug, Clone)]
pub struct RabitqQuery {
    kernel: kernels::BitSums,
    /// P q on the grid, made once per query.
    query_grid: Grid,
    /// P (q − c) on the grid, made per list when P q's grid would be too coarse for it.
    list_grid: Grid,
    per_list: bool,
    /// A: |q − c|² or −<q, c>.
    base: f32,
    /// |q − c|.
    norm: f32,
    /// 1 / sqrt(D).
    inv_sqrt_padded: f32,
    /// Rounding slack for estimates that are exact (zero residuals).
    rounding: f32,
    /// P q, and scratch for P c.
    rotated: Vec<f32>,
    scratch: Vec<f32>,
}

impl Default for RabitqQuery {
    fn default() -> Self {
        RabitqQuery {
            kernel: kernels::bit_sums_kernel(),
            query_grid: Grid::default(),
            list_grid: Grid::default(),
            per_list: false,
            base: 0.0,
            norm: 0.0,
            inv_sqrt_padded: 1.0,
            rounding: 0.0,
            rotated: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

fn get_f32(bytes: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn put_f32(bytes: &mut [u8], at: usize, value: f32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

impl Rabitq {
    pub fn new(dim: usize, metric: Metric, seed: u64) -> Self {
        Rabitq {
            dim,
            metric,
            rotation: Rotation::new(dim, seed),
        }
    }

    pub fn padded(&self) -> usize {
        self.rotation.padded()
    }

    pub fn code_bytes(&self) -> usize {
        code_bytes(self.dim)
    }

    fn coefficient(&self, norm: f64) -> f64 {
        match self.metric {
            Metric::L2 => -2.0 * norm,
            Metric::InnerProduct | Metric::Cosine => -norm,
        }
    }

    /// P c for a list's `centroid`: every code of the list needs it (see
    /// [`encode_with`](Self::encode_with)); a build computes it once per list.
    pub fn rotate_centroid(&self, centroid: &[f32]) -> Vec<f32> {
        let mut rotated = vec![0.0f32; self.padded()];
        self.rotation.apply(centroid, &mut rotated);
        rotated
    }

    /// Encodes `row` (as stored: normalised for cosine) against its list's `centroid` into `out`
    /// (`code_bytes()` long). `scratch` is reused between calls.
    pub fn encode(&self, row: &[f32], centroid: &[f32], scratch: &mut Vec<f32>, out: &mut [u8]) {
        let rotated_centroid = self.rotate_centroid(centroid);
        self.encode_with(row, centroid, &rotated_centroid, scratch, out);
    }

    /// [`encode`](Self::encode) with the list's [`rotate_centroid`](Self::rotate_centroid) given.
    ///
    /// The factors are f64 sums in coordinate order: codes are compared byte for byte by the
    /// verifier, so the order is part of the format.
    pub fn encode_with(
        &self,
        row: &[f32],
        centroid: &[f32],
        rotated_centroid: &[f32],
        scratch: &mut Vec<f32>,
        out: &mut [u8],
    ) {
        assert_eq!(out.len(), self.code_bytes());
        let padded = self.padded();
        let dim = row.len();
        assert_eq!(centroid.len(), dim);
        assert_eq!(rotated_centroid.len(), padded);
        // scratch: the residual, then its rotation.
        scratch.clear();
        scratch.resize(dim + padded, 0.0);
        let (residual, rotated) = scratch.split_at_mut(dim);
        // |r|² and <c, r> in one pass (two chains of additions that overlap).
        let (mut norm_squared, mut centroid_dot) = (-0.0f64, -0.0f64);
        for i in 0..dim {
            let c = centroid[i];
            let r = row[i] - c;
            residual[i] = r;
            norm_squared += r as f64 * r as f64;
            centroid_dot += c as f64 * r as f64;
        }
        let norm = norm_squared.sqrt();
        let b = match self.metric {
            Metric::L2 => norm * norm,
            Metric::InnerProduct | Metric::Cosine => -centroid_dot,
        };
        out.fill(0);
        put_f32(out, 0, b as f32);
        if !(norm > 0.0 && norm.is_finite()) {
            return; // the row is its centroid: the distance is A + B exactly
        }
        self.rotation.apply(residual, rotated);
        // The code's bits, sum |P r| and <x̄, P c> in one pass: x̄'s coordinate i is +1 where bit
        // i is set (P r > 0), else -1. Each byte is assembled in a register (or-ing bits into
        // memory one at a time chained the loop through store-to-load forwarding), and ±c by
        // flipping the sign bit, exactly -c: a branch on the signs, random, mispredicts half the
        // time.
        let (mut abs_sum, mut centroid_sum) = (0.0f64, 0.0f64);
        let chunks = rotated
            .chunks_exact(8)
            .zip(rotated_centroid.chunks_exact(8));
        for (code, (values, centroid_values)) in out[HEADER_BYTES..].iter_mut().zip(chunks) {
            let mut bits = 0u8;
            for (j, (&value, &c)) in values.iter().zip(centroid_values).enumerate() {
                abs_sum += value.abs() as f64;
                let positive = value > 0.0;
                bits |= u8::from(positive) << j;
                let signed = f32::from_bits(c.to_bits() ^ (u32::from(!positive) << 31));
                centroid_sum += signed as f64;
            }
            *code = bits;
        }
        let a = (abs_sum / norm / (padded as f64).sqrt()).clamp(1e-6, 1.0);
        let coef = self.coefficient(norm);
        let error = coef.abs() * (1.0 - a * a).max(0.0).sqrt() / (a * ((padded - 1) as f64).sqrt());
        put_f32(out, 4, (coef / a) as f32);
        put_f32(out, 8, error as f32);
        // <x̄, P c>: what the centroid contributes to <x̄, v>, so that a query is quantized once
        // (P q) rather than once per list (P (q − c)).
        put_f32(out, 12, (centroid_sum / (padded as f64).sqrt()) as f32);
    }

    /// Prepares `query` (as stored) for estimating distances to the rows of the list of `centroid`.
    pub fn prepare(&self, query: &[f32], centroid: &[f32], into: &mut RabitqQuery) {
        self.prepare_query(query, into);
        self.prepare_list(query, centroid, into);
    }

    /// The per-query part: P q on a 4-bit grid, as bit planes.
    pub fn prepare_query(&self, query: &[f32], into: &mut RabitqQuery) {
        let padded = self.padded();
        into.rotated.resize(padded, 0.0);
        self.rotation.apply(query, &mut into.rotated);
        into.query_grid.quantize(&into.rotated);
        into.inv_sqrt_padded = 1.0 / (padded as f32).sqrt();
    }

    /// The per-list part, after [`prepare_query`](Self::prepare_query) with the same query.
    pub fn prepare_list(&self, query: &[f32], centroid: &[f32], into: &mut RabitqQuery) {
        let padded = self.padded();
        let norm = crate::distance::l2_squared(query, centroid);
        let dot = crate::distance::dot(query, centroid);
        let base = match self.metric {
            Metric::L2 => norm,
            Metric::InnerProduct | Metric::Cosine => -dot,
        };
        into.base = base;
        into.norm = norm.sqrt();
        // f32 sums over the rotation: relative rounding of a few 1e-7 per coordinate.
        into.rounding = 1e-5 * (base.abs() + norm + into.norm) + f32::MIN_POSITIVE;
        // P q's grid serves every list when its rounding is small next to RaBitQ's own error for
        // this list (about 0.75 |q − c| / sqrt(D)): near the origin (unit vectors under cosine).
        // Far from it, |q| dwarfs |q − c| and the list's residual gets a grid of its own.
        into.per_list = into.query_grid.error > 0.2 * into.norm * into.inv_sqrt_padded;
        if into.per_list {
            into.scratch.resize(padded, 0.0);
            self.rotation.apply(centroid, &mut into.scratch);
            for (c, q) in into.scratch.iter_mut().zip(&into.rotated) {
                *c = q - *c;
            }
            into.list_grid.quantize(&into.scratch);
        }
    }
}

/// Bytes of a RaBitQ code for `dim` dimensions.
pub fn code_bytes(dim: usize) -> usize {
    HEADER_BYTES + super::rotation::padded_dimensions(dim) / 8
}

impl RabitqQuery {
    /// The distance estimate of the row whose code is `code`.
    #[inline]
    pub fn estimate(&self, code: &[u8]) -> Estimate {
        let bits = &code[HEADER_BYTES..];
        let grid = self.grid();
        assert_eq!(
            bits.len() * QUERY_BITS,
            grid.planes.len() * 8,
            "a code of this index"
        );
        let (count, weighted) = (self.kernel)(bits, &grid.planes);
        self.finish(code, count, weighted)
    }

    fn grid(&self) -> &Grid {
        if self.per_list {
            &self.list_grid
        } else {
            &self.query_grid
        }
    }

    /// The estimate from a code's factors and its bit sums against the grid.
    #[inline(always)]
    fn finish(&self, code: &[u8], count: u32, weighted: u32) -> Estimate {
        let grid = self.grid();
        let b = get_f32(code, 0);
        let coef = get_f32(code, 4);
        let error = get_f32(code, 8);
        let selected = grid.low * count as f32 + grid.step * weighted as f32;
        let mut xv = (2.0 * selected - grid.sum) * self.inv_sqrt_padded;
        if !self.per_list {
            xv -= get_f32(code, 12); // <x̄, P c>
        }
        let sigma = ((error * self.norm).powi(2) + (coef * grid.error).powi(2)).sqrt();
        Estimate {
            distance: self.base + b + coef * xv,
            sigma,
            slack: self.rounding + 1e-5 * b.abs(),
        }
    }

    /// Queues the live entries of a run of `format` entries (see `queue::queue_with`), with the
    /// bit kernel inlined into the loop.
    #[allow(clippy::too_many_arguments)]
    pub fn queue_entries(
        &self,
        entries: &[u8],
        ahead: &[u8],
        format: crate::page::EntryFormat,
        factor: f32,
        threshold: f32,
        max_offset: u16,
        queue: &mut super::queue::RerankQueue,
    ) -> super::queue::Queued {
        let words = self.grid().planes.len() / QUERY_BITS;
        match kernels::level() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: level() reports Avx512 only after detecting the features.
            kernels::Level::Avx512
                if (words <= 8 || words.is_multiple_of(8))
                    && format.code_bytes == HEADER_BYTES + 8 * words =>
            unsafe {
                self.queue_entries_avx512(
                    entries, ahead, format, factor, threshold, max_offset, queue,
                )
            },
            _ => {
                crate::distance::prefetch(ahead);
                super::queue::queue_with(entries, format, threshold, max_offset, queue, |code| {
                    self.estimate(code).bounds(factor)
                })
            }
        }
    }

    /// queue_entries eight entries at a time: the codes' bit sums 512 bits at a time (for codes of
    /// up to 512 bits, the query's planes stay in registers), the eight codes' sums reduced together
    /// and their bounds computed in one vector, in the same order of operations as [`finish`](Self::finish) so that the bounds are
    /// the same to the bit. Only rows within the threshold reach the scalar queue.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
    #[allow(clippy::too_many_arguments)]
    fn queue_entries_avx512(
        &self,
        entries: &[u8],
        ahead: &[u8],
        format: crate::page::EntryFormat,
        factor: f32,
        threshold: f32,
        max_offset: u16,
        queue: &mut super::queue::RerankQueue,
    ) -> super::queue::Queued {
        use super::queue::LANES;
        use std::arch::x86_64::*;
        let grid = self.grid();
        let planes = &grid.planes;
        let words = planes.len() / QUERY_BITS;
        let mask: __mmask8 = if words >= 8 { 0xFF } else { (1u8 << words) - 1 };
        // Codes longer than 512 bits are whole 512-bit chunks (checked by the caller).
        let chunks = words.div_ceil(8);
        let stride = format.stride();
        let code_at = format.code_range().start;
        assert_eq!(format.code_bytes, HEADER_BYTES + 8 * words);
        // The query's planes for 512-bit chunk `k` of the codes. SAFETY: masked loads of at most
        // `words` words of each plane from word 8k on (planes has QUERY_BITS × words; k < chunks).
        let query_chunk = |k: usize| unsafe {
            let plane = |j: usize| planes.as_ptr().add(j * words + 8 * k).cast::<i64>();
            [
                _mm512_maskz_loadu_epi64(mask, plane(0)),
                _mm512_maskz_loadu_epi64(mask, plane(1)),
                _mm512_maskz_loadu_epi64(mask, plane(2)),
                _mm512_maskz_loadu_epi64(mask, plane(3)),
            ]
        };
        let query = query_chunk(0);
        let splat = _mm256_set1_ps;
        let (low, step, sum) = (splat(grid.low), splat(grid.step), splat(grid.sum));
        let (two, inv_sqrt) = (splat(2.0), splat(self.inv_sqrt_padded));
        let (norm, grid_error) = (splat(self.norm), splat(grid.error));
        let (base, rounding, tiny) = (splat(self.base), splat(self.rounding), splat(1e-5));
        let (factor_v, threshold_v) = (splat(factor), splat(threshold));
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let lane_offsets = |at: usize| {
            let offsets: [i64; LANES] = std::array::from_fn(|i| (i * stride + at) as i64);
            // SAFETY: a load of eight i64 from an eight-i64 array.
            unsafe { _mm512_loadu_si512(offsets.as_ptr().cast()) }
        };
        let entry_starts = lane_offsets(0);
        let location_starts = lane_offsets(format.location_offset());
        let dead_bit = _mm512_set1_epi64(crate::page::DEAD_BIT_IN_HEADER as i64);
        let invalid_block = _mm512_set1_epi64(i64::from(u32::MAX));
        let max_offset_v = _mm512_set1_epi64(i64::from(max_offset));
        let batches = entries.chunks_exact(stride * LANES);
        let tail = batches.remainder();
        let mut queued = super::queue::Queued::default();
        // `batch` holds LANES entries; only the `valid` lanes are real.
        let mut queue_batch = |batch: &[u8], valid: u32| {
            let at = |i: usize| &batch[i * stride..(i + 1) * stride];
            // SAFETY: each entry is `stride` bytes and holds its code (HEADER_BYTES + 8 × words
            // bytes, asserted) at `code_at`; the masked loads read only the code's words (chunk
            // k < chunks: words 8k..8k + 8, within them) and the header loads its first 16 bytes.
            let (sums, headers) = unsafe {
                let chunk_sums = |k: usize, query: [__m512i; QUERY_BITS], i: usize| {
                    let bits = at(i).as_ptr().add(code_at + HEADER_BYTES + 64 * k);
                    let c = _mm512_maskz_loadu_epi64(mask, bits.cast());
                    _mm512_add_epi64(
                        kernels::weighted_planes_512(c, query),
                        _mm512_slli_epi64::<32>(_mm512_popcnt_epi64(c)),
                    )
                };
                let mut sums: [__m512i; LANES] = std::array::from_fn(|i| chunk_sums(0, query, i));
                for k in 1..chunks {
                    let query = query_chunk(k);
                    for (i, sum) in sums.iter_mut().enumerate() {
                        *sum = _mm512_add_epi64(*sum, chunk_sums(k, query, i));
                    }
                }
                let headers: [__m128; LANES] =
                    std::array::from_fn(|i| _mm_loadu_ps(at(i).as_ptr().add(code_at).cast()));
                (sums, headers)
            };
            let both = reduce_lanes(sums);
            let count = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(both)));
            let weighted = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(both));
            let [b, coef, error, centroid_dot] = transpose_headers(headers);
            let selected = _mm256_add_ps(_mm256_mul_ps(low, count), _mm256_mul_ps(step, weighted));
            let mut xv = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(two, selected), sum), inv_sqrt);
            if !self.per_list {
                xv = _mm256_sub_ps(xv, centroid_dot);
            }
            let residual_error = _mm256_mul_ps(error, norm);
            let query_error = _mm256_mul_ps(coef, grid_error);
            let sigma = _mm256_sqrt_ps(_mm256_add_ps(
                _mm256_mul_ps(residual_error, residual_error),
                _mm256_mul_ps(query_error, query_error),
            ));
            let distance = _mm256_add_ps(_mm256_add_ps(base, b), _mm256_mul_ps(coef, xv));
            let slack = _mm256_add_ps(rounding, _mm256_mul_ps(tiny, _mm256_and_ps(b, abs_mask)));
            let width = _mm256_add_ps(_mm256_mul_ps(factor_v, sigma), slack);
            let lower = _mm256_sub_ps(distance, width);
            let upper = _mm256_add_ps(distance, width);
            let within = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(lower, threshold_v)) as u32;
            // The eight entries' headers (TID and flags) and vector locations, one gather each.
            // SAFETY: every offset is an entry's start (or its location slot, inside the entry)
            // in `batch`, with 8 bytes there.
            let (heads, places) = unsafe {
                let base = batch.as_ptr().cast::<i64>();
                let heads = _mm512_i64gather_epi64::<1>(entry_starts, base);
                let places = if format.located {
                    _mm512_i64gather_epi64::<1>(location_starts, base)
                } else {
                    _mm512_set1_epi64(super::queue::NO_LOCATION as i64)
                };
                (heads, places)
            };
            let dead = _mm512_test_epi64_mask(heads, dead_bit) as u32;
            let lanes = within & valid & !dead;
            let (tids, tid_block, tid_offset) = packed_tids(heads);
            let bad = _mm512_cmpeq_epi64_mask(tid_block, invalid_block)
                | _mm512_cmpeq_epi64_mask(tid_offset, _mm512_setzero_si512())
                | _mm512_cmpgt_epu64_mask(tid_offset, max_offset_v);
            queued.bad_tid |= u32::from(bad) & lanes != 0;
            let locations = if format.located {
                packed_tids(places).0
            } else {
                places
            };
            // SAFETY: this function's features include push_lanes_avx512's.
            unsafe { queue.push_lanes_avx512(lower, upper, tids, locations, lanes) };
            queued.rows += lanes.count_ones() as usize;
        };
        // `ahead` is spread over the batches: the share of its cache lines due after batch i.
        let batch_count = batches.len().max(1);
        crate::distance::prefetch_page_starts(ahead);
        let mut prefetched = 0;
        for (i, batch) in batches.enumerate() {
            let due = ahead.len() * (i + 1) / batch_count;
            if due > prefetched {
                crate::distance::prefetch_to_l2(&ahead[prefetched..due]);
                prefetched = due;
            }
            queue_batch(batch, u32::MAX);
        }
        crate::distance::prefetch_to_l2(&ahead[prefetched..]);
        // The last few entries of a run go through the same loop as the high lanes of the run's
        // last eight entries; a run shorter than that (an entry split across pages) one by one.
        let whole = entries.len() - tail.len();
        if !tail.is_empty() && whole > 0 {
            let last = &entries[entries.len() - stride * LANES..];
            let skip = LANES - tail.len() / stride;
            queue_batch(last, u32::MAX << skip);
        } else if !tail.is_empty() {
            let rest =
                super::queue::queue_with(tail, format, threshold, max_offset, queue, |code| {
                    self.estimate(code).bounds(factor)
                });
            queued.rows += rest.rows;
            queued.bad_tid |= rest.bad_tid;
        }
        queued
    }
}

/// The packed TIDs (`Tid::to_u64`: block << 16 | offset) of eight entry headers or vector
/// locations read as little-endian u64 (block u32, offset u16, two more bytes), with their blocks
/// and offsets.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn packed_tids(
    words: std::arch::x86_64::__m512i,
) -> (
    std::arch::x86_64::__m512i,
    std::arch::x86_64::__m512i,
    std::arch::x86_64::__m512i,
) {
    use std::arch::x86_64::*;
    let block = _mm512_and_si512(words, _mm512_set1_epi64(i64::from(u32::MAX)));
    let offset = _mm512_and_si512(_mm512_srli_epi64::<32>(words), _mm512_set1_epi64(0xFFFF));
    (
        _mm512_or_si512(_mm512_slli_epi64::<16>(block), offset),
        block,
        offset,
    )
}

/// Lane i of the result: the sum of the eight lanes of `v[i]` (a transpose-and-add tree).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn reduce_lanes(v: [std::arch::x86_64::__m512i; 8]) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // Each 128-bit lane k of pair(a, b): [a[2k] + a[2k+1], b[2k] + b[2k+1]].
    let pair = |a, b| _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    // 128-bit lanes [x0 + x1, x2 + x3, y0 + y1, y2 + y3].
    let fold = |x, y| {
        _mm512_add_epi64(
            _mm512_shuffle_i64x2::<0b10_00_10_00>(x, y),
            _mm512_shuffle_i64x2::<0b11_01_11_01>(x, y),
        )
    };
    let low = fold(pair(v[0], v[1]), pair(v[2], v[3]));
    let high = fold(pair(v[4], v[5]), pair(v[6], v[7]));
    fold(low, high)
}

/// Eight 16-byte code headers (four floats each) as four vectors of eight: one per factor.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn transpose_headers(h: [std::arch::x86_64::__m128; 8]) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    let rows = |a, b| _mm256_set_m128(b, a);
    let (r0, r1, r2, r3) = (
        rows(h[0], h[4]),
        rows(h[1], h[5]),
        rows(h[2], h[6]),
        rows(h[3], h[7]),
    );
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    [
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    ]
}

/// RaBitQ in the index's table of quantizers: no parameters but the meta page's rotation seed.
pub static REGISTRATION: super::Registration = super::Registration {
    name: "rabitq",
    code: 2,
    code_bytes,
    parameter_floats: |_| 0,
    train: |t| Box::new(Rabitq::new(t.dim, t.metric, t.seed)),
    load: |l| Ok(Box::new(Rabitq::new(l.dim, l.metric, l.seed))),
};

/// The `quantizer` option's value for RaBitQ.
pub static KIND: super::QuantizerKind = super::QuantizerKind::of(&REGISTRATION);

impl super::Quantizer for Rabitq {
    fn kind(&self) -> super::QuantizerKind {
        super::QuantizerKind::of(&REGISTRATION)
    }

    fn code_bytes(&self) -> usize {
        Rabitq::code_bytes(self)
    }

    fn list_context_len(&self) -> usize {
        self.padded()
    }

    fn list_context(&self, centroid: &[f32]) -> Vec<f32> {
        self.rotate_centroid(centroid)
    }

    fn encode_in_list(
        &self,
        row: &[f32],
        centroid: &[f32],
        context: &[f32],
        scratch: &mut Vec<f32>,
        out: &mut [u8],
    ) {
        self.encode_with(row, centroid, context, scratch, out)
    }

    fn new_query(&self) -> Box<dyn super::PreparedQuery> {
        Box::<RabitqQuery>::default()
    }

    fn prepare_query(&self, query: &[f32], into: &mut dyn super::PreparedQuery) {
        Rabitq::prepare_query(self, query, super::prepared(into))
    }

    fn prepare_list(&self, query: &[f32], centroid: &[f32], into: &mut dyn super::PreparedQuery) {
        Rabitq::prepare_list(self, query, centroid, super::prepared(into))
    }
}

impl super::PreparedQuery for RabitqQuery {
    fn estimate(&self, code: &[u8]) -> Estimate {
        RabitqQuery::estimate(self, code)
    }

    fn queue_entries(
        &self,
        entries: &[u8],
        ahead: &[u8],
        format: crate::page::EntryFormat,
        factor: f32,
        threshold: f32,
        max_offset: u16,
        queue: &mut super::queue::RerankQueue,
    ) -> super::queue::Queued {
        RabitqQuery::queue_entries(
            self, entries, ahead, format, factor, threshold, max_offset, queue,
        )
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

    fn normalized(mut v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// Rows scattered around a centroid, queries around it too, as in a probed list.
    fn check_bound(dim: usize, metric: Metric, seed: u64) -> (usize, usize, f64) {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let quantizer = Rabitq::new(dim, metric, seed ^ 0xABCD);
        let mut gauss = || -> f32 {
            let (u, v): (f32, f32) = (rng.gen_range(1e-7..1.0), rng.gen());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        };
        let point = |g: &mut dyn FnMut() -> f32, scale: f32, around: &[f32]| -> Vec<f32> {
            around.iter().map(|&c| c + scale * g()).collect()
        };
        let zero = vec![0.0; dim];
        let mut centroid = point(&mut gauss, 1.0, &zero);
        if metric == Metric::Cosine {
            centroid = normalized(centroid);
        }
        let mut scratch = Vec::new();
        let mut code = vec![0u8; quantizer.code_bytes()];
        let mut prepared = RabitqQuery::default();
        let (mut total, mut outside3, mut worst) = (0, 0, 0.0f64);
        for _ in 0..20 {
            let mut q = point(&mut gauss, 0.5, &centroid);
            if metric == Metric::Cosine {
                q = normalized(q);
            }
            quantizer.prepare(&q, &centroid, &mut prepared);
            for _ in 0..100 {
                let mut o = point(&mut gauss, 0.3, &centroid);
                if metric == Metric::Cosine {
                    o = normalized(o);
                }
                quantizer.encode(&o, &centroid, &mut scratch, &mut code);
                let e = prepared.estimate(&code);
                let err = (e.distance as f64 - exact(metric, &q, &o)).abs();
                let allowed = e.sigma as f64 + e.slack as f64;
                total += 1;
                if err > 3.0 * allowed {
                    outside3 += 1;
                }
                worst = worst.max(err / allowed);
            }
        }
        (total, outside3, worst)
    }

    /// Encoding as first written (one rotation of the centroid per row, bits read back for
    /// <x̄, P c>): codes written by that version must read the same today.
    fn encode_as_first_written(q: &Rabitq, row: &[f32], centroid: &[f32], out: &mut [u8]) {
        let padded = q.padded();
        let residual: Vec<f32> = row.iter().zip(centroid).map(|(&x, &c)| x - c).collect();
        let norm = residual
            .iter()
            .map(|&x| x as f64 * x as f64)
            .sum::<f64>()
            .sqrt();
        let b = match q.metric {
            Metric::L2 => norm * norm,
            Metric::InnerProduct | Metric::Cosine => -centroid
                .iter()
                .zip(&residual)
                .map(|(&c, &r)| c as f64 * r as f64)
                .sum::<f64>(),
        };
        out.fill(0);
        put_f32(out, 0, b as f32);
        if !(norm > 0.0 && norm.is_finite()) {
            return;
        }
        let mut rotated = vec![0.0; padded];
        q.rotation.apply(&residual, &mut rotated);
        let mut abs_sum = 0.0f64;
        for (i, &value) in rotated.iter().enumerate() {
            abs_sum += value.abs() as f64;
            if value > 0.0 {
                out[HEADER_BYTES + i / 8] |= 1 << (i % 8);
            }
        }
        let a = (abs_sum / norm / (padded as f64).sqrt()).clamp(1e-6, 1.0);
        let coef = q.coefficient(norm);
        let error = coef.abs() * (1.0 - a * a).max(0.0).sqrt() / (a * ((padded - 1) as f64).sqrt());
        put_f32(out, 4, (coef / a) as f32);
        put_f32(out, 8, error as f32);
        let mut rotated_centroid = vec![0.0f32; padded];
        q.rotation.apply(centroid, &mut rotated_centroid);
        let code = &out[HEADER_BYTES..];
        let term = rotated_centroid
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if code[i / 8] >> (i % 8) & 1 == 1 {
                    c as f64
                } else {
                    -c as f64
                }
            })
            .sum::<f64>()
            / (padded as f64).sqrt();
        put_f32(out, 12, term as f32);
    }

    #[test]
    fn bit_planes_hold_each_levels_bits() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(21);
        for _ in 0..200 {
            let levels: [u8; 64] = std::array::from_fn(|_| rng.gen_range(0..16));
            for j in 0..QUERY_BITS {
                let expected = (0..64).fold(0u64, |plane, i| {
                    plane | u64::from((levels[i] >> j) & 1) << i
                });
                assert_eq!(bit_plane(&levels, j), expected);
            }
        }
        assert_eq!(bit_plane(&[15; 64], 3), u64::MAX);
        assert_eq!(bit_plane(&[0; 64], 0), 0);
    }

    #[test]
    fn codes_equal_the_first_versions_to_the_bit() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(17);
        for dim in [3, 50, 64, 384, 1536, 2000] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let q = Rabitq::new(dim, metric, 99);
                let centroid: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let mut scratch = Vec::new();
                // Signed zeros decide the bytes of B when every term is zero: a row at a centroid
                // of negative coordinates sums only -0.0 products, a -0.0 row at a +0.0 centroid
                // only +0.0 ones.
                let negative: Vec<f32> = centroid.iter().map(|c| -c.abs() - 0.5).collect();
                let (zero, negative_zero) = (vec![0.0f32; dim], vec![-0.0f32; dim]);
                let mut cases: Vec<(Vec<f32>, Vec<f32>)> =
                    vec![(negative.clone(), negative), (negative_zero, zero)];
                cases.push((centroid.clone(), centroid.clone())); // the row is its centroid
                for _ in 0..20 {
                    let row = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    cases.push((row, centroid.clone()));
                }
                for (r, (row, centroid)) in cases.iter().enumerate() {
                    let context = q.rotate_centroid(centroid);
                    let mut expected = vec![0u8; q.code_bytes()];
                    encode_as_first_written(&q, row, centroid, &mut expected);
                    let (mut with, mut plain) = (expected.clone(), expected.clone());
                    q.encode_with(row, centroid, &context, &mut scratch, &mut with);
                    q.encode(row, centroid, &mut scratch, &mut plain);
                    assert_eq!(with, expected, "dim {dim} {metric:?} row {r}");
                    assert_eq!(plain, expected, "dim {dim} {metric:?} row {r}");
                }
            }
        }
    }

    #[test]
    fn estimates_stay_within_their_stated_error() {
        for dim in [3, 8, 50, 64, 100, 384, 768, 1536, 2000] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let (total, outside3, worst) = check_bound(dim, metric, dim as u64);
                // A Gaussian error leaves 3 standard errors 0.27% of the time; allow 1%, and never 6.
                assert!(
                    outside3 * 100 <= total,
                    "dim {dim} {metric:?}: {outside3} of {total} beyond 3 sigma"
                );
                assert!(
                    worst < 6.0,
                    "dim {dim} {metric:?}: worst error {worst} sigma"
                );
            }
        }
    }

    #[test]
    fn estimates_are_unbiased_and_informative() {
        // Averaged over many rows the signed error vanishes, and sigma is small next to the
        // spread of the distances (else the estimate would order nothing).
        let dim = 384;
        let quantizer = Rabitq::new(dim, Metric::L2, 5);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
        let centroid: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let q: Vec<f32> = centroid
            .iter()
            .map(|c| c + rng.gen_range(-0.1..0.1))
            .collect();
        let mut prepared = RabitqQuery::default();
        quantizer.prepare(&q, &centroid, &mut prepared);
        let (mut signed, mut sigma, mut spread) = (0.0, 0.0, Vec::new());
        let mut code = vec![0u8; quantizer.code_bytes()];
        let mut scratch = Vec::new();
        for _ in 0..2000 {
            let o: Vec<f32> = centroid
                .iter()
                .map(|c| c + rng.gen_range(-0.1..0.1))
                .collect();
            quantizer.encode(&o, &centroid, &mut scratch, &mut code);
            let e = prepared.estimate(&code);
            let d = exact(Metric::L2, &q, &o);
            signed += e.distance as f64 - d;
            sigma += e.sigma as f64;
            spread.push(d);
        }
        let mean_sigma = sigma / 2000.0;
        assert!(
            (signed / 2000.0).abs() < 0.2 * mean_sigma,
            "bias {}",
            signed / 2000.0
        );
        let mean = spread.iter().sum::<f64>() / 2000.0;
        let sd = (spread.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 2000.0).sqrt();
        assert!(mean_sigma < sd, "sigma {mean_sigma} vs spread {sd}");
    }

    #[test]
    fn codes_decode_to_the_signs_of_the_rotated_residual() {
        // Round trip: the bits are the signs of P (o − c), and the stored factors are the ones
        // they imply (coef / a with a = <x̄, o'>, and <x̄, P c>).
        let mut rng = rand::rngs::SmallRng::seed_from_u64(21);
        for dim in [3, 100, 384, 1536] {
            let quantizer = Rabitq::new(dim, Metric::L2, 77);
            let padded = quantizer.padded();
            let c: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let o: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-0.2..0.2)).collect();
            let mut code = vec![0u8; quantizer.code_bytes()];
            quantizer.encode(&o, &c, &mut Vec::new(), &mut code);
            let r: Vec<f32> = o.iter().zip(&c).map(|(a, b)| a - b).collect();
            let norm = r.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
            let (mut pr, mut pc) = (vec![0.0; padded], vec![0.0; padded]);
            quantizer.rotation.apply(&r, &mut pr);
            quantizer.rotation.apply(&c, &mut pc);
            let sign = |i: usize| {
                if code[HEADER_BYTES + i / 8] >> (i % 8) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                }
            };
            let scale = 1.0 / (padded as f64).sqrt();
            let a: f64 = (0..padded)
                .map(|i| sign(i) * pr[i] as f64 * scale)
                .sum::<f64>()
                / norm;
            let centroid_term: f64 = (0..padded).map(|i| sign(i) * pc[i] as f64 * scale).sum();
            for (i, &value) in pr.iter().enumerate() {
                assert!(
                    value == 0.0 || (sign(i) > 0.0) == (value > 0.0),
                    "dim {dim} bit {i}"
                );
            }
            assert!((get_f32(&code, 0) as f64 - norm * norm).abs() < 1e-4 * norm * norm);
            assert!((get_f32(&code, 4) as f64 - (-2.0 * norm / a)).abs() < 1e-3 * (2.0 * norm / a));
            assert!(
                (get_f32(&code, 12) as f64 - centroid_term).abs()
                    < 1e-3 * (1.0 + centroid_term.abs())
            );
            assert!(a > 0.6 && a <= 1.0, "a = {a}");
        }
    }

    #[test]
    fn batch_lower_bounds_match_one_by_one() {
        // The page loop (eight codes at a time where the CPU allows, then a scalar tail) queues
        // exactly the live rows within the threshold, with the bounds `estimate` gives one by one,
        // for every metric, near and far from the origin (a per-list query grid), with and
        // without vector locations.
        use crate::page::{EntryFormat, Location, Origin, Tid};
        use crate::quant::queue::{RerankQueue, NO_LOCATION};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        let mut cases = 0;
        for dim in [3, 100, 384, 512, 768, 1536, 2000] {
            for (metric, offset, located) in [
                (Metric::Cosine, 0.0, false),
                (Metric::L2, 0.0, true),
                (Metric::L2, 20.0, false),
                (Metric::InnerProduct, 5.0, true),
            ] {
                let quantizer = Rabitq::new(dim, metric, 3);
                let format = EntryFormat {
                    dim,
                    filters: 1,
                    code_bytes: quantizer.code_bytes(),
                    located,
                };
                let c: Vec<f32> = (0..dim)
                    .map(|_| offset + rng.gen_range(-1.0..1.0))
                    .collect();
                // Runs with a tail of every length, and one shorter than a batch.
                let rows = if dim == 100 { 5 } else { 37 + (dim % 11) };
                let mut entries = vec![0u8; rows * format.stride()];
                let (mut scratch, mut code) = (Vec::new(), vec![0u8; quantizer.code_bytes()]);
                for (i, entry) in entries.chunks_exact_mut(format.stride()).enumerate() {
                    let o: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-0.3..0.3)).collect();
                    quantizer.encode(&o, &c, &mut scratch, &mut code);
                    let tid = Tid {
                        block: i as u32,
                        offset: if i == 11 { 0 } else { 1 },
                    };
                    let location = located.then_some(Location {
                        block: 1000 + i as u32,
                        offset: 3,
                    });
                    format.encode_code(tid, &[7], location, &code, Origin::Build, entry);
                    if i % 5 == 2 {
                        entry[6] |= 1; // the dead flag, as VACUUM sets it
                    }
                }
                let q: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-0.3..0.3)).collect();
                let mut prepared = RabitqQuery::default();
                quantizer.prepare(&q, &c, &mut prepared);
                let live = |i: usize| i % 5 != 2;
                let mut one_by_one: Vec<(f32, u32)> = entries
                    .chunks_exact(format.stride())
                    .enumerate()
                    .filter(|&(i, _)| live(i))
                    .map(|(i, e)| {
                        let bounds = prepared.estimate(&e[format.code_range()]).bounds(2.0);
                        (bounds[0], i as u32)
                    })
                    .collect();
                one_by_one.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for threshold in [f32::INFINITY, one_by_one[one_by_one.len() / 2].0] {
                    let expected: Vec<(f32, u32)> = one_by_one
                        .iter()
                        .copied()
                        .filter(|&(bound, _)| bound <= threshold)
                        .collect();
                    let mut queue = RerankQueue::new();
                    let queued = prepared.queue_entries(
                        &entries,
                        &[],
                        format,
                        2.0,
                        threshold,
                        291,
                        &mut queue,
                    );
                    let bad = expected.iter().any(|&(_, i)| i == 11);
                    assert_eq!((queued.rows, queued.bad_tid), (expected.len(), bad));
                    let mut batch = Vec::new();
                    while let Some((bound, [tid, location])) = queue.pop() {
                        let block = Tid::from_u64(tid).block;
                        let expected_location = if located {
                            ((1000 + u64::from(block)) << 16) | 3
                        } else {
                            NO_LOCATION
                        };
                        assert_eq!(location, expected_location);
                        batch.push((bound, block));
                    }
                    batch.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    assert_eq!(batch, expected, "dim {dim} {metric:?} offset {offset}");
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 56);
    }

    #[test]
    fn a_row_at_its_centroid_is_exact() {
        let quantizer = Rabitq::new(16, Metric::L2, 1);
        let c = vec![0.5f32; 16];
        let q = vec![1.5f32; 16];
        let mut code = vec![0u8; quantizer.code_bytes()];
        quantizer.encode(&c, &c, &mut Vec::new(), &mut code);
        let mut prepared = RabitqQuery::default();
        quantizer.prepare(&q, &c, &mut prepared);
        let e = prepared.estimate(&code);
        assert!((e.distance - 16.0).abs() <= e.slack, "{e:?}");
        assert_eq!(e.sigma, 0.0);
    }
}
