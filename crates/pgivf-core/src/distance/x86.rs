//! x86-64 kernels: AVX2 with FMA (8 lanes) and AVX-512F (16 lanes).
//!
//! The kernels are safe functions with `#[target_feature]`, so arithmetic intrinsics need no
//! `unsafe`; it is needed only for loads through pointers and for entering a kernel from a dispatch
//! table, which `kernels_for` hands out only after detecting the features.

#![allow(unsafe_code)]

use super::Kernels;

macro_rules! entry_point {
    ($kernel:path, $($argument:ident),+) => {
        |$($argument),+| {
            // SAFETY: the tables below are reachable only through `kernels_for`, which returns
            // each only after detecting the CPU features its kernels are compiled for.
            unsafe { $kernel($($argument),+) }
        }
    };
}

pub(super) static AVX2_FMA_KERNELS: Kernels = simd_kernels!("avx2+fma", avx2);
pub(super) static AVX512F_KERNELS: Kernels = simd_kernels!("avx512f", avx512);

/// Independent accumulators per kernel: an FMA has a latency of 4 cycles and two issue per cycle, so
/// a single running sum would leave most of the hardware idle.
const UNROLL: usize = 4;

/// Rows per pass of the batch kernels: every query block loaded is used for this many rows.
const BATCH_ROWS: usize = 4;

mod avx2 {
    use std::arch::x86_64::*;

    use super::{BATCH_ROWS, UNROLL};

    const LANES: usize = 8;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(values: &[f32; LANES]) -> __m256 {
        // SAFETY: reads exactly the floats of `values`; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(values.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum_f64(v: __m256d) -> f64 {
        let pair = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
    }

    /// Sums `term` over the element pairs of `a` and `b`; `accumulate(sum, x, y)` adds the terms of
    /// eight pairs to `sum`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum_terms(
        a: &[f32],
        b: &[f32],
        accumulate: impl Fn(__m256, __m256, __m256) -> __m256,
        term: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let (a_blocks, a_tail) = a.as_chunks::<LANES>();
        let (b_blocks, b_tail) = b.as_chunks::<LANES>();
        let a_groups = a_blocks.chunks_exact(UNROLL);
        let b_groups = b_blocks.chunks_exact(UNROLL);
        let (a_rest, b_rest) = (a_groups.remainder(), b_groups.remainder());
        let mut sums = [_mm256_setzero_ps(); UNROLL];
        for (x, y) in a_groups.zip(b_groups) {
            for k in 0..UNROLL {
                sums[k] = accumulate(sums[k], load(&x[k]), load(&y[k]));
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            sums[0] = accumulate(sums[0], load(x), load(y));
        }
        let total = _mm256_add_ps(
            _mm256_add_ps(sums[0], sums[1]),
            _mm256_add_ps(sums[2], sums[3]),
        );
        a_tail
            .iter()
            .zip(b_tail)
            .fold(horizontal_sum(total), |sum, (&x, &y)| sum + term(x, y))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn squared_difference(sum: __m256, x: __m256, y: __m256) -> __m256 {
        let difference = _mm256_sub_ps(x, y);
        _mm256_fmadd_ps(difference, difference, sum)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn product(sum: __m256, x: __m256, y: __m256) -> __m256 {
        _mm256_fmadd_ps(x, y, sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(
            a,
            b,
            |s, x, y| squared_difference(s, x, y),
            |x, y| (x - y) * (x - y),
        )
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(a, b, |s, x, y| product(s, x, y), |x, y| x * y)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
        let sign_bit = _mm256_set1_ps(-0.0);
        sum_terms(
            a,
            b,
            |sum, x, y| _mm256_add_ps(sum, _mm256_andnot_ps(sign_bit, _mm256_sub_ps(x, y))),
            |x, y| (x - y).abs(),
        )
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        // Three running sums per block already give some parallelism; two blocks per pass give six.
        const PAIR: usize = 2;
        let (a_blocks, a_tail) = a.as_chunks::<LANES>();
        let (b_blocks, b_tail) = b.as_chunks::<LANES>();
        let a_groups = a_blocks.chunks_exact(PAIR);
        let b_groups = b_blocks.chunks_exact(PAIR);
        let (a_rest, b_rest) = (a_groups.remainder(), b_groups.remainder());
        let mut ab = [_mm256_setzero_ps(); PAIR];
        let mut aa = [_mm256_setzero_ps(); PAIR];
        let mut bb = [_mm256_setzero_ps(); PAIR];
        for (x, y) in a_groups.zip(b_groups) {
            for k in 0..PAIR {
                let (x, y) = (load(&x[k]), load(&y[k]));
                ab[k] = _mm256_fmadd_ps(x, y, ab[k]);
                aa[k] = _mm256_fmadd_ps(x, x, aa[k]);
                bb[k] = _mm256_fmadd_ps(y, y, bb[k]);
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            let (x, y) = (load(x), load(y));
            ab[0] = _mm256_fmadd_ps(x, y, ab[0]);
            aa[0] = _mm256_fmadd_ps(x, x, aa[0]);
            bb[0] = _mm256_fmadd_ps(y, y, bb[0]);
        }
        let mut sums = (
            horizontal_sum(_mm256_add_ps(ab[0], ab[1])),
            horizontal_sum(_mm256_add_ps(aa[0], aa[1])),
            horizontal_sum(_mm256_add_ps(bb[0], bb[1])),
        );
        for (&x, &y) in a_tail.iter().zip(b_tail) {
            sums.0 += x * y;
            sums.1 += x * x;
            sums.2 += y * y;
        }
        sums
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn norm_squared_f64(a: &[f32]) -> f64 {
        let (blocks, tail) = a.as_chunks::<LANES>();
        let mut sums = [_mm256_setzero_pd(); 2];
        for x in blocks {
            let x = load(x);
            let low = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
            let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x));
            sums[0] = _mm256_fmadd_pd(low, low, sums[0]);
            sums[1] = _mm256_fmadd_pd(high, high, sums[1]);
        }
        tail.iter().fold(
            horizontal_sum_f64(_mm256_add_pd(sums[0], sums[1])),
            |sum, &x| sum + f64::from(x) * f64::from(x),
        )
    }

    /// `out[i] = finish(sum of term over query and row i)`, four rows per pass.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn batch(
        query: &[f32],
        rows: &[f32],
        out: &mut [f32],
        accumulate: impl Fn(__m256, __m256, __m256) -> __m256 + Copy,
        term: impl Fn(f32, f32) -> f32 + Copy,
        finish: impl Fn(f32) -> f32,
    ) {
        let dim = query.len();
        let (query_blocks, query_tail) = query.as_chunks::<LANES>();
        let mut row_groups = rows.chunks_exact(BATCH_ROWS * dim);
        let mut out_groups = out.chunks_exact_mut(BATCH_ROWS);
        for (group, results) in (&mut row_groups).zip(&mut out_groups) {
            let row = |r: usize| &group[r * dim..(r + 1) * dim];
            // Cut to the query's length so the compiler can drop the bounds checks in the loop.
            let blocks = |r: usize| &row(r).as_chunks::<LANES>().0[..query_blocks.len()];
            let row_blocks: [_; BATCH_ROWS] = [blocks(0), blocks(1), blocks(2), blocks(3)];
            let mut sums = [_mm256_setzero_ps(); BATCH_ROWS];
            for (j, query_block) in query_blocks.iter().enumerate() {
                let query_block = load(query_block);
                for r in 0..BATCH_ROWS {
                    sums[r] = accumulate(sums[r], query_block, load(&row_blocks[r][j]));
                }
            }
            for r in 0..BATCH_ROWS {
                let row_tail = &row(r)[dim - query_tail.len()..];
                let sum = query_tail
                    .iter()
                    .zip(row_tail)
                    .fold(horizontal_sum(sums[r]), |sum, (&x, &y)| sum + term(x, y));
                results[r] = finish(sum);
            }
        }
        let rest = row_groups.remainder().chunks_exact(dim);
        for (row, result) in rest.zip(out_groups.into_remainder()) {
            *result = finish(sum_terms(query, row, accumulate, term));
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn l2_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
        batch(
            query,
            rows,
            out,
            |s, x, y| squared_difference(s, x, y),
            |x, y| (x - y) * (x - y),
            |sum| sum,
        );
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn neg_dot_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
        batch(
            query,
            rows,
            out,
            |s, x, y| product(s, x, y),
            |x, y| x * y,
            |sum| -sum,
        );
    }
}

mod avx512 {
    use std::arch::x86_64::*;

    use super::{BATCH_ROWS, UNROLL};

    const LANES: usize = 16;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(values: &[f32; LANES]) -> __m512 {
        // SAFETY: reads exactly the floats of `values`; `loadu` has no alignment requirement.
        unsafe { _mm512_loadu_ps(values.as_ptr()) }
    }

    /// The first `min(values.len(), 16)` floats of `values`, zeros in the other lanes. Zero lanes add
    /// nothing to any of the sums, so tails need no scalar loop.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_partial(values: &[f32]) -> __m512 {
        let mask = ((1u32 << values.len().min(LANES)) - 1) as __mmask16;
        // SAFETY: only lanes selected by `mask` are read, all within `values`; masked-off lanes are
        // not accessed and cannot fault.
        unsafe { _mm512_maskz_loadu_ps(mask, values.as_ptr()) }
    }

    /// Sums over the element pairs of `a` and `b`; `accumulate(sum, x, y)` adds the terms of sixteen
    /// pairs to `sum` and must add nothing for zero lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sum_terms(
        a: &[f32],
        b: &[f32],
        accumulate: impl Fn(__m512, __m512, __m512) -> __m512,
    ) -> f32 {
        let (a_blocks, a_tail) = a.as_chunks::<LANES>();
        let (b_blocks, b_tail) = b.as_chunks::<LANES>();
        let a_groups = a_blocks.chunks_exact(UNROLL);
        let b_groups = b_blocks.chunks_exact(UNROLL);
        let (a_rest, b_rest) = (a_groups.remainder(), b_groups.remainder());
        let mut sums = [_mm512_setzero_ps(); UNROLL];
        for (x, y) in a_groups.zip(b_groups) {
            for k in 0..UNROLL {
                sums[k] = accumulate(sums[k], load(&x[k]), load(&y[k]));
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            sums[0] = accumulate(sums[0], load(x), load(y));
        }
        sums[1] = accumulate(sums[1], load_partial(a_tail), load_partial(b_tail));
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(sums[0], sums[1]),
            _mm512_add_ps(sums[2], sums[3]),
        ))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn squared_difference(sum: __m512, x: __m512, y: __m512) -> __m512 {
        let difference = _mm512_sub_ps(x, y);
        _mm512_fmadd_ps(difference, difference, sum)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn product(sum: __m512, x: __m512, y: __m512) -> __m512 {
        _mm512_fmadd_ps(x, y, sum)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(a, b, |s, x, y| squared_difference(s, x, y))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(a, b, |s, x, y| product(s, x, y))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(a, b, |sum, x, y| {
            _mm512_add_ps(sum, _mm512_abs_ps(_mm512_sub_ps(x, y)))
        })
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        const PAIR: usize = 2;
        let (a_blocks, a_tail) = a.as_chunks::<LANES>();
        let (b_blocks, b_tail) = b.as_chunks::<LANES>();
        let a_groups = a_blocks.chunks_exact(PAIR);
        let b_groups = b_blocks.chunks_exact(PAIR);
        let (a_rest, b_rest) = (a_groups.remainder(), b_groups.remainder());
        let mut ab = [_mm512_setzero_ps(); PAIR];
        let mut aa = [_mm512_setzero_ps(); PAIR];
        let mut bb = [_mm512_setzero_ps(); PAIR];
        let mut accumulate = |k: usize, x: __m512, y: __m512| {
            ab[k] = _mm512_fmadd_ps(x, y, ab[k]);
            aa[k] = _mm512_fmadd_ps(x, x, aa[k]);
            bb[k] = _mm512_fmadd_ps(y, y, bb[k]);
        };
        for (x, y) in a_groups.zip(b_groups) {
            for k in 0..PAIR {
                accumulate(k, load(&x[k]), load(&y[k]));
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            accumulate(0, load(x), load(y));
        }
        accumulate(1, load_partial(a_tail), load_partial(b_tail));
        (
            _mm512_reduce_add_ps(_mm512_add_ps(ab[0], ab[1])),
            _mm512_reduce_add_ps(_mm512_add_ps(aa[0], aa[1])),
            _mm512_reduce_add_ps(_mm512_add_ps(bb[0], bb[1])),
        )
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn norm_squared_f64(a: &[f32]) -> f64 {
        let (blocks, tail) = a.as_chunks::<LANES>();
        let mut sums = [_mm512_setzero_pd(); 2];
        let mut accumulate = |x: __m512| {
            let low = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
            let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(x),
            )));
            sums[0] = _mm512_fmadd_pd(low, low, sums[0]);
            sums[1] = _mm512_fmadd_pd(high, high, sums[1]);
        };
        for x in blocks {
            accumulate(load(x));
        }
        accumulate(load_partial(tail));
        _mm512_reduce_add_pd(_mm512_add_pd(sums[0], sums[1]))
    }

    /// `out[i] = finish(sum over query and row i)`, four rows per pass.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn batch(
        query: &[f32],
        rows: &[f32],
        out: &mut [f32],
        accumulate: impl Fn(__m512, __m512, __m512) -> __m512 + Copy,
        finish: impl Fn(f32) -> f32,
    ) {
        let dim = query.len();
        let (query_blocks, query_tail) = query.as_chunks::<LANES>();
        let query_tail = load_partial(query_tail);
        let mut row_groups = rows.chunks_exact(BATCH_ROWS * dim);
        let mut out_groups = out.chunks_exact_mut(BATCH_ROWS);
        for (group, results) in (&mut row_groups).zip(&mut out_groups) {
            let row = |r: usize| &group[r * dim..(r + 1) * dim];
            // Cut to the query's length so the compiler can drop the bounds checks in the loop.
            let blocks = |r: usize| &row(r).as_chunks::<LANES>().0[..query_blocks.len()];
            let row_blocks: [_; BATCH_ROWS] = [blocks(0), blocks(1), blocks(2), blocks(3)];
            let mut sums = [_mm512_setzero_ps(); BATCH_ROWS];
            for (j, query_block) in query_blocks.iter().enumerate() {
                let query_block = load(query_block);
                for r in 0..BATCH_ROWS {
                    sums[r] = accumulate(sums[r], query_block, load(&row_blocks[r][j]));
                }
            }
            for r in 0..BATCH_ROWS {
                let row_tail = load_partial(row(r).as_chunks::<LANES>().1);
                results[r] = finish(_mm512_reduce_add_ps(accumulate(
                    sums[r], query_tail, row_tail,
                )));
            }
        }
        let rest = row_groups.remainder().chunks_exact(dim);
        for (row, result) in rest.zip(out_groups.into_remainder()) {
            *result = finish(sum_terms(query, row, accumulate));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn l2_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
        batch(
            query,
            rows,
            out,
            |s, x, y| squared_difference(s, x, y),
            |sum| sum,
        );
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn neg_dot_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
        batch(query, rows, out, |s, x, y| product(s, x, y), |sum| -sum);
    }
}

/// Prefetches every 64-byte line of `bytes` into all cache levels.
pub(super) fn prefetch(bytes: &[u8]) {
    prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T0 }>(bytes);
}

/// Prefetches every 64-byte line of `bytes` into the second-level cache and beyond.
pub(super) fn prefetch_to_l2(bytes: &[u8]) {
    prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T1 }>(bytes);
}

fn prefetch_lines<const HINT: i32>(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: prefetching is only a hint: it never faults and reads nothing architecturally,
        // and the pointer is inside `bytes` anyway. SSE is part of x86_64's baseline.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line.as_ptr().cast()) };
    }
}
