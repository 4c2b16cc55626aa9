//! Kernels of the quantized scan, with runtime CPU dispatch like `distance`: a bit-plane popcount for
//! RaBitQ codes against a 4-bit query, and a byte-by-float dot product for SQ8 codes. Each has a
//! plain scalar reference that the SIMD versions are tested against.

#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Query bit planes: plane `j` holds bit `j` of every coordinate's 4-bit value.
pub const QUERY_BITS: usize = 4;

pub type BitSums = fn(&[u8], &[u64]) -> (u32, u32);
pub type WeightedSum = fn(&[f32], &[u8]) -> f32;

/// (number of set bits of `code`, Σ_j 2^j · popcount(code & plane j)) for a code of `w` 64-bit
/// little-endian words and `QUERY_BITS × w` plane words: the second is Σ_i b_i · u_i for the code's
/// bits b and the query's 4-bit values u.
pub fn bit_sums(code: &[u8], planes: &[u64]) -> (u32, u32) {
    assert_eq!(
        code.len() * QUERY_BITS,
        planes.len() * 8,
        "one plane word per code word"
    );
    bit_sums_kernel()(code, planes)
}

/// The fastest bit-sum kernel for this CPU, for callers that run it per row: `code` must be whole
/// 64-bit words and `planes` `QUERY_BITS` times as many words.
pub fn bit_sums_kernel() -> BitSums {
    match level() {
        // SAFETY: level() reports a level only after detecting its features.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => |code, planes| unsafe { bit_sums_avx512(code, planes) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Popcnt => |code, planes| unsafe { bit_sums_popcnt(code, planes) },
        _ => bit_sums_scalar,
    }
}

/// Which bit-sum kernels this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Popcnt,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

pub(crate) fn level() -> Level {
    static CHOSEN: OnceLock<Level> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                return Level::Popcnt;
            }
        }
        Level::Scalar
    })
}

/// Σ_j 2^j · popcount(code & plane j), lane by lane, for eight code words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
pub(crate) fn weighted_planes_512(
    code: std::arch::x86_64::__m512i,
    planes: [std::arch::x86_64::__m512i; QUERY_BITS],
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let [p0, p1, p2, p3] = planes;
    let b0 = _mm512_popcnt_epi64(_mm512_and_si512(code, p0));
    let b1 = _mm512_popcnt_epi64(_mm512_and_si512(code, p1));
    let b2 = _mm512_popcnt_epi64(_mm512_and_si512(code, p2));
    let b3 = _mm512_popcnt_epi64(_mm512_and_si512(code, p3));
    _mm512_add_epi64(
        _mm512_add_epi64(b0, _mm512_slli_epi64::<1>(b1)),
        _mm512_add_epi64(_mm512_slli_epi64::<2>(b2), _mm512_slli_epi64::<3>(b3)),
    )
}

/// Eight code words at a time: AND with each plane and count in 512-bit registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
pub(crate) fn bit_sums_avx512(code: &[u8], planes: &[u64]) -> (u32, u32) {
    use std::arch::x86_64::*;
    let words = code.len() / 8;
    assert!(planes.len() >= QUERY_BITS * words);
    let mut count = _mm512_setzero_si512();
    let mut weighted = _mm512_setzero_si512();
    let mut w = 0;
    while w < words {
        let n = (words - w).min(8);
        let mask: __mmask8 = if n == 8 { 0xFF } else { (1u8 << n) - 1 };
        // SAFETY: the masked loads read only words w .. w + n, inside `code` and inside each plane
        // (j * words + w + n <= QUERY_BITS * words <= planes.len()); masked-off lanes are not read.
        let (c, p0, p1, p2, p3) = unsafe {
            let plane = |j: usize| planes.as_ptr().add(j * words + w).cast::<i64>();
            (
                _mm512_maskz_loadu_epi64(mask, code.as_ptr().add(w * 8).cast()),
                _mm512_maskz_loadu_epi64(mask, plane(0)),
                _mm512_maskz_loadu_epi64(mask, plane(1)),
                _mm512_maskz_loadu_epi64(mask, plane(2)),
                _mm512_maskz_loadu_epi64(mask, plane(3)),
            )
        };
        count = _mm512_add_epi64(count, _mm512_popcnt_epi64(c));
        let sum = weighted_planes_512(c, [p0, p1, p2, p3]);
        weighted = _mm512_add_epi64(weighted, sum);
        w += 8;
    }
    // One horizontal sum for both: the weighted sum stays below 2^32 (15 × 16000 bits), so the
    // count can ride in the upper half of each lane.
    let both = _mm512_reduce_add_epi64(_mm512_add_epi64(weighted, _mm512_slli_epi64::<32>(count)));
    ((both >> 32) as u32, both as u32)
}

#[inline(always)]
fn bit_sums_body(code: &[u8], planes: &[u64]) -> (u32, u32) {
    let words = code.len() / 8;
    let mut count = 0u32;
    let mut sums = [0u32; QUERY_BITS];
    for (w, chunk) in code.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        count += word.count_ones();
        for (j, sum) in sums.iter_mut().enumerate() {
            *sum += (word & planes[j * words + w]).count_ones();
        }
    }
    let weighted = sums
        .iter()
        .enumerate()
        .map(|(j, sum)| sum << j)
        .sum::<u32>();
    (count, weighted)
}

#[inline]
pub fn bit_sums_scalar(code: &[u8], planes: &[u64]) -> (u32, u32) {
    bit_sums_body(code, planes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
#[inline]
pub(crate) fn bit_sums_popcnt(code: &[u8], planes: &[u64]) -> (u32, u32) {
    bit_sums_body(code, planes)
}

/// Σ weights[i] · codes[i].
pub fn weighted_sum(weights: &[f32], codes: &[u8]) -> f32 {
    static CHOSEN: OnceLock<WeightedSum> = OnceLock::new();
    assert_eq!(weights.len(), codes.len(), "one weight per code byte");
    (CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: only chosen after detecting the features weighted_sum_avx2 is compiled for.
            return |weights, codes| unsafe { weighted_sum_avx2(weights, codes) };
        }
        weighted_sum_scalar
    }))(weights, codes)
}

/// A [`weighted_sum`] kernel for callers that run it in a loop, chosen once: 16 lanes where the CPU
/// has AVX-512 (ranking every list's byte-coded centroid is most of a scan's ranking), SQ8's own
/// kernel otherwise. SQ8 estimates keep `weighted_sum`, whose summation order their bounds were
/// measured with. Both slices must have the same length.
pub fn wide_weighted_sum_kernel() -> WeightedSum {
    static CHOSEN: OnceLock<WeightedSum> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: only chosen after detecting the feature weighted_sum_avx512 is compiled for.
            return |weights, codes| unsafe { weighted_sum_avx512(weights, codes) };
        }
        weighted_sum
    })
}

pub fn weighted_sum_scalar(weights: &[f32], codes: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut chunks = weights.chunks_exact(8).zip(codes.chunks_exact(8));
    for (w, c) in &mut chunks {
        for lane in 0..8 {
            sums[lane] += w[lane] * c[lane] as f32;
        }
    }
    let tail = weights.len() - weights.len() % 8;
    let mut total: f32 = sums.iter().sum();
    for (w, c) in weights[tail..].iter().zip(&codes[tail..]) {
        total += w * *c as f32;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn weighted_sum_avx2(weights: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = weights.len().min(codes.len());
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let at = i + 8 * k;
            // SAFETY: at + 8 <= n: reads 8 bytes of `codes` and 8 floats of `weights`, unaligned loads.
            let (bytes, w) = unsafe {
                (
                    _mm_loadl_epi64(codes.as_ptr().add(at).cast()),
                    _mm256_loadu_ps(weights.as_ptr().add(at)),
                )
            };
            let values = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
            *a = _mm256_fmadd_ps(w, values, *a);
        }
        i += 16;
    }
    let sum = _mm256_add_ps(acc[0], acc[1]);
    let quad = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    let mut total = _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
    while i < n {
        total += weights[i] * codes[i] as f32;
        i += 1;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn weighted_sum_avx512(weights: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = weights.len().min(codes.len());
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let at = i + 16 * k;
            // SAFETY: at + 16 <= n: 16 bytes of `codes` and 16 floats of `weights`, unaligned loads.
            let (bytes, w) = unsafe {
                (
                    _mm_loadu_si128(codes.as_ptr().add(at).cast()),
                    _mm512_loadu_ps(weights.as_ptr().add(at)),
                )
            };
            *a = _mm512_fmadd_ps(w, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), *a);
        }
        i += 32;
    }
    let mut total = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
    while i < n {
        total += weights[i] * f32::from(codes[i]);
        i += 1;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn bit_sums_match_a_bit_by_bit_count() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        for words in [1, 2, 6, 8, 9, 16, 32] {
            let code: Vec<u8> = (0..8 * words).map(|_| rng.gen()).collect();
            let values: Vec<u32> = (0..64 * words).map(|_| rng.gen_range(0..16)).collect();
            let mut planes = vec![0u64; QUERY_BITS * words];
            for (i, v) in values.iter().enumerate() {
                for j in 0..QUERY_BITS {
                    if v >> j & 1 == 1 {
                        planes[j * words + i / 64] |= 1 << (i % 64);
                    }
                }
            }
            let bit = |i: usize| (code[i / 8] >> (i % 8)) & 1 == 1;
            let count = (0..64 * words).filter(|&i| bit(i)).count() as u32;
            let weighted: u32 = (0..64 * words).filter(|&i| bit(i)).map(|i| values[i]).sum();
            assert_eq!(bit_sums(&code, &planes), (count, weighted));
            assert_eq!(bit_sums_scalar(&code, &planes), (count, weighted));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: feature detected.
                assert_eq!(
                    unsafe { bit_sums_popcnt(&code, &planes) },
                    (count, weighted)
                );
            }
        }
    }

    #[test]
    fn weighted_sum_matches_the_reference() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        for n in [0, 1, 7, 8, 15, 16, 17, 384, 1000, 2000] {
            let weights: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let codes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let exact: f64 = weights
                .iter()
                .zip(&codes)
                .map(|(&w, &c)| w as f64 * c as f64)
                .sum();
            let tolerance = 1e-4 * (n as f64 * 255.0).max(1.0);
            assert!(
                (weighted_sum(&weights, &codes) as f64 - exact).abs() < tolerance,
                "n {n}"
            );
            assert!((weighted_sum_scalar(&weights, &codes) as f64 - exact).abs() < tolerance);
        }
    }
}
