//! AArch64 NEON kernels (4 lanes). NEON is part of the build's target features whenever this module
//! is compiled, so the dispatch table needs no runtime detection.

#![allow(unsafe_code)]

use super::Kernels;

macro_rules! entry_point {
    ($kernel:path, $($argument:ident),+) => {
        |$($argument),+| {
            // SAFETY: this module is compiled only with the `neon` target feature enabled for the
            // whole build, so every CPU running it has NEON.
            unsafe { $kernel($($argument),+) }
        }
    };
}

pub(super) static NEON_KERNELS: Kernels = simd_kernels!("neon", neon);

mod neon {
    use std::arch::aarch64::*;

    const LANES: usize = 4;

    /// Independent accumulators: an FMA has a latency of about 4 cycles and two or more issue per cycle.
    const UNROLL: usize = 4;

    /// Rows per pass of the batch kernels: every query block loaded is used for this many rows.
    const BATCH_ROWS: usize = 4;

    #[inline]
    #[target_feature(enable = "neon")]
    fn load(values: &[f32; LANES]) -> float32x4_t {
        // SAFETY: reads exactly the floats of `values`; `vld1q_f32` has no alignment requirement.
        unsafe { vld1q_f32(values.as_ptr()) }
    }

    /// Sums `term` over the element pairs of `a` and `b`; `accumulate(sum, x, y)` adds the terms of four
    /// pairs to `sum`.
    #[inline]
    #[target_feature(enable = "neon")]
    fn sum_terms(
        a: &[f32],
        b: &[f32],
        accumulate: impl Fn(float32x4_t, float32x4_t, float32x4_t) -> float32x4_t,
        term: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let (a_blocks, a_tail) = a.as_chunks::<LANES>();
        let (b_blocks, b_tail) = b.as_chunks::<LANES>();
        let a_groups = a_blocks.chunks_exact(UNROLL);
        let b_groups = b_blocks.chunks_exact(UNROLL);
        let (a_rest, b_rest) = (a_groups.remainder(), b_groups.remainder());
        let mut sums = [vdupq_n_f32(0.0); UNROLL];
        for (x, y) in a_groups.zip(b_groups) {
            for k in 0..UNROLL {
                sums[k] = accumulate(sums[k], load(&x[k]), load(&y[k]));
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            sums[0] = accumulate(sums[0], load(x), load(y));
        }
        let total = vaddq_f32(vaddq_f32(sums[0], sums[1]), vaddq_f32(sums[2], sums[3]));
        a_tail
            .iter()
            .zip(b_tail)
            .fold(vaddvq_f32(total), |sum, (&x, &y)| sum + term(x, y))
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn squared_difference(sum: float32x4_t, x: float32x4_t, y: float32x4_t) -> float32x4_t {
        let difference = vsubq_f32(x, y);
        vfmaq_f32(sum, difference, difference)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn product(sum: float32x4_t, x: float32x4_t, y: float32x4_t) -> float32x4_t {
        vfmaq_f32(sum, x, y)
    }

    #[target_feature(enable = "neon")]
    pub(super) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(
            a,
            b,
            |s, x, y| squared_difference(s, x, y),
            |x, y| (x - y) * (x - y),
        )
    }

    #[target_feature(enable = "neon")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(a, b, |s, x, y| product(s, x, y), |x, y| x * y)
    }

    #[target_feature(enable = "neon")]
    pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
        sum_terms(
            a,
            b,
            |sum, x, y| vaddq_f32(sum, vabdq_f32(x, y)),
            |x, y| (x - y).abs(),
        )
    }

    #[target_feature(enable = "neon")]
    pub(super) fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        // Three running sums per block already give some parallelism; two blocks per pass give six.
        const PAIR: usize = 2;
        let (a_blocks, a_tail) = a.as_chunks::<LANES>();
        let (b_blocks, b_tail) = b.as_chunks::<LANES>();
        let a_groups = a_blocks.chunks_exact(PAIR);
        let b_groups = b_blocks.chunks_exact(PAIR);
        let (a_rest, b_rest) = (a_groups.remainder(), b_groups.remainder());
        let mut ab = [vdupq_n_f32(0.0); PAIR];
        let mut aa = [vdupq_n_f32(0.0); PAIR];
        let mut bb = [vdupq_n_f32(0.0); PAIR];
        let mut accumulate = |k: usize, x: float32x4_t, y: float32x4_t| {
            ab[k] = vfmaq_f32(ab[k], x, y);
            aa[k] = vfmaq_f32(aa[k], x, x);
            bb[k] = vfmaq_f32(bb[k], y, y);
        };
        for (x, y) in a_groups.zip(b_groups) {
            for k in 0..PAIR {
                accumulate(k, load(&x[k]), load(&y[k]));
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            accumulate(0, load(x), load(y));
        }
        let mut sums = (
            vaddvq_f32(vaddq_f32(ab[0], ab[1])),
            vaddvq_f32(vaddq_f32(aa[0], aa[1])),
            vaddvq_f32(vaddq_f32(bb[0], bb[1])),
        );
        for (&x, &y) in a_tail.iter().zip(b_tail) {
            sums.0 += x * y;
            sums.1 += x * x;
            sums.2 += y * y;
        }
        sums
    }

    #[target_feature(enable = "neon")]
    pub(super) fn norm_squared_f64(a: &[f32]) -> f64 {
        let (blocks, tail) = a.as_chunks::<LANES>();
        let mut sums = [vdupq_n_f64(0.0); 2];
        for x in blocks {
            let x = load(x);
            let low = vcvt_f64_f32(vget_low_f32(x));
            let high = vcvt_high_f64_f32(x);
            sums[0] = vfmaq_f64(sums[0], low, low);
            sums[1] = vfmaq_f64(sums[1], high, high);
        }
        tail.iter()
            .fold(vaddvq_f64(vaddq_f64(sums[0], sums[1])), |sum, &x| {
                sum + f64::from(x) * f64::from(x)
            })
    }

    /// `out[i] = finish(sum of term over query and row i)`, four rows per pass.
    #[inline]
    #[target_feature(enable = "neon")]
    fn batch(
        query: &[f32],
        rows: &[f32],
        out: &mut [f32],
        accumulate: impl Fn(float32x4_t, float32x4_t, float32x4_t) -> float32x4_t + Copy,
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
            let mut sums = [vdupq_n_f32(0.0); BATCH_ROWS];
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
                    .fold(vaddvq_f32(sums[r]), |sum, (&x, &y)| sum + term(x, y));
                results[r] = finish(sum);
            }
        }
        let rest = row_groups.remainder().chunks_exact(dim);
        for (row, result) in rest.zip(out_groups.into_remainder()) {
            *result = finish(sum_terms(query, row, accumulate, term));
        }
    }

    #[target_feature(enable = "neon")]
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

    #[target_feature(enable = "neon")]
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
