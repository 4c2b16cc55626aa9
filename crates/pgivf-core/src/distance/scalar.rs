//! Portable kernels: the fallback for CPUs without the SIMD extensions we use, and the oracle the SIMD
//! kernels are tested against.
//!
//! Eight independent partial sums break the dependency chain of a sequential sum, so the compiler
//! can vectorise with whatever the baseline target offers (SSE2 on x86-64) without reassociating.

use super::Kernels;

pub(super) static KERNELS: Kernels = Kernels {
    name: "scalar",
    l2_squared,
    dot,
    l1,
    cosine_parts,
    norm_squared_f64,
    l2_squared_batch,
    neg_dot_batch,
};

const LANES: usize = 8;

fn sum_terms(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let (a_blocks, a_tail) = a.as_chunks::<LANES>();
    let (b_blocks, b_tail) = b.as_chunks::<LANES>();
    let mut lanes = [0.0f32; LANES];
    for (x, y) in a_blocks.iter().zip(b_blocks) {
        for lane in 0..LANES {
            lanes[lane] += term(x[lane], y[lane]);
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(&x, &y)| term(x, y)).sum();
    lanes.iter().sum::<f32>() + tail
}

pub(super) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| (x - y) * (x - y))
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| x * y)
}

pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
    sum_terms(a, b, |x, y| (x - y).abs())
}

pub(super) fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let (a_blocks, a_tail) = a.as_chunks::<LANES>();
    let (b_blocks, b_tail) = b.as_chunks::<LANES>();
    let mut ab = [0.0f32; LANES];
    let mut aa = [0.0f32; LANES];
    let mut bb = [0.0f32; LANES];
    for (x, y) in a_blocks.iter().zip(b_blocks) {
        // Separate loops keep each sum's lanes together, which the vectoriser needs.
        for lane in 0..LANES {
            ab[lane] += x[lane] * y[lane];
        }
        for lane in 0..LANES {
            aa[lane] += x[lane] * x[lane];
        }
        for lane in 0..LANES {
            bb[lane] += y[lane] * y[lane];
        }
    }
    let mut sums = (ab.iter().sum(), aa.iter().sum(), bb.iter().sum());
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        sums.0 += x * y;
        sums.1 += x * x;
        sums.2 += y * y;
    }
    sums
}

pub(super) fn norm_squared_f64(a: &[f32]) -> f64 {
    let (blocks, tail) = a.as_chunks::<LANES>();
    let mut lanes = [0.0f64; LANES];
    for x in blocks {
        for lane in 0..LANES {
            lanes[lane] += f64::from(x[lane]) * f64::from(x[lane]);
        }
    }
    let tail: f64 = tail.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    lanes.iter().sum::<f64>() + tail
}

pub(super) fn l2_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (row, distance) in rows.chunks_exact(query.len()).zip(out) {
        *distance = l2_squared(query, row);
    }
}

pub(super) fn neg_dot_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (row, distance) in rows.chunks_exact(query.len()).zip(out) {
        *distance = -dot(query, row);
    }
}
