//! A fast random orthogonal rotation: RaBitQ needs every coordinate of a rotated residual to carry
//! about the same share of its length, which a dense random orthogonal matrix gives at O(D²) a
//! vector (and O(D³) to generate, far too slow for 2,000 dimensions in every backend). Four rounds
//! of random sign flips followed by a normalised Walsh-Hadamard transform mix as well in practice,
//! cost O(D log D), and need only a seed on disk.
//!
//! Vectors are zero-padded to a power of two of at least 64 dimensions (whole 64-bit words of code).
//! The signs come from splitmix64, written out here, so that an index built by one version of pgivf
//! reads the same on every later one (a library generator may change its stream between releases).

/// Rounds of sign flip + Hadamard transform.
const ROUNDS: usize = 4;

#[derive(Debug, Clone)]
pub struct Rotation {
    padded: usize,
    /// `ROUNDS × padded` factors of ±1/sqrt(padded): the sign flip and the transform's scaling.
    signs: Vec<f32>,
}

/// Dimensions a vector of `dim` dimensions is padded to.
pub fn padded_dimensions(dim: usize) -> usize {
    dim.next_power_of_two().max(64)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rotation {
    pub fn new(dim: usize, seed: u64) -> Self {
        let padded = padded_dimensions(dim);
        let scale = 1.0 / (padded as f32).sqrt();
        let mut state = seed;
        let mut signs = Vec::with_capacity(ROUNDS * padded);
        while signs.len() < ROUNDS * padded {
            let bits = splitmix64(&mut state);
            for bit in 0..64 {
                if signs.len() == ROUNDS * padded {
                    break;
                }
                signs.push(if bits >> bit & 1 == 1 { scale } else { -scale });
            }
        }
        Rotation { padded, signs }
    }

    pub fn padded(&self) -> usize {
        self.padded
    }

    /// `out` (padded length) = the rotation of `x` zero-padded.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        assert!(x.len() <= self.padded && out.len() == self.padded);
        out[..x.len()].copy_from_slice(x);
        out[x.len()..].fill(0.0);
        flip_and_transform(out, &self.signs);
    }
}

/// Each round of `signs` (a multiple of `values.len()` factors): multiply, then transform.
///
/// Every output is the same products, sums and differences, in the same order, whatever the
/// instruction set, so codes written on one CPU read the same on another.
fn flip_and_transform(values: &mut [f32], signs: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected.
            return unsafe { flip_and_transform_avx512(values, signs) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was just detected.
            return unsafe { flip_and_transform_avx2(values, signs) };
        }
    }
    flip_and_transform_portable(values, signs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn flip_and_transform_avx512(values: &mut [f32], signs: &[f32]) {
    flip_and_transform_portable(values, signs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn flip_and_transform_avx2(values: &mut [f32], signs: &[f32]) {
    flip_and_transform_portable(values, signs)
}

#[inline(always)]
fn flip_and_transform_portable(values: &mut [f32], signs: &[f32]) {
    for round in signs.chunks_exact(values.len()) {
        for (value, sign) in values.iter_mut().zip(round) {
            *value *= sign;
        }
        hadamard_portable(values);
    }
}

/// The butterflies of half-width 1, 2 and 4 within each run of 8 values, then the wider ones across
/// runs (whole vectors of lanes at a time).
#[inline(always)]
fn hadamard_portable(values: &mut [f32]) {
    debug_assert!(values.len().is_power_of_two() && values.len() >= 8);
    for run in values.chunks_exact_mut(8) {
        let v: [f32; 8] = run.try_into().expect("runs of 8");
        let a = [
            v[0] + v[1],
            v[0] - v[1],
            v[2] + v[3],
            v[2] - v[3],
            v[4] + v[5],
            v[4] - v[5],
            v[6] + v[7],
            v[6] - v[7],
        ];
        let b = [
            a[0] + a[2],
            a[1] + a[3],
            a[0] - a[2],
            a[1] - a[3],
            a[4] + a[6],
            a[5] + a[7],
            a[4] - a[6],
            a[5] - a[7],
        ];
        run.copy_from_slice(&[
            b[0] + b[4],
            b[1] + b[5],
            b[2] + b[6],
            b[3] + b[7],
            b[0] - b[4],
            b[1] - b[5],
            b[2] - b[6],
            b[3] - b[7],
        ]);
    }
    butterfly_stages(values, 8);
}

/// The butterfly stages of half-width `first`, 2 `first`, ... up to half the length.
#[inline(always)]
fn butterfly_stages(values: &mut [f32], first: usize) {
    let mut half = first;
    while half < values.len() {
        for block in values.chunks_exact_mut(2 * half) {
            let (left, right) = block.split_at_mut(half);
            for (x, y) in left.iter_mut().zip(right.iter_mut()) {
                let (a, b) = (*x, *y);
                *x = a + b;
                *y = a - b;
            }
        }
        half *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    #[test]
    fn is_orthogonal_for_every_size() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for dim in [1, 3, 63, 64, 65, 384, 768, 1536, 2000] {
            let rotation = Rotation::new(dim, 42);
            let p = rotation.padded();
            assert!(p >= dim && p.is_power_of_two() && p >= 64);
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (mut ra, mut rb) = (vec![0.0; p], vec![0.0; p]);
            rotation.apply(&a, &mut ra);
            rotation.apply(&b, &mut rb);
            let tolerance = 1e-4 * (dot(&a, &a) * dot(&b, &b)).sqrt().max(1.0);
            assert!((dot(&ra, &ra) - dot(&a, &a)).abs() < tolerance, "dim {dim}");
            assert!((dot(&ra, &rb) - dot(&a, &b)).abs() < tolerance, "dim {dim}");
        }
    }

    #[test]
    fn spreads_a_basis_vector_over_all_coordinates() {
        let rotation = Rotation::new(384, 1);
        let mut e = vec![0.0; 384];
        e[5] = 1.0;
        let mut out = vec![0.0; 512];
        rotation.apply(&e, &mut out);
        let largest = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // A perfectly spread unit vector has coordinates of 1/sqrt(512) = 0.044.
        assert!(largest < 0.25, "largest coordinate {largest}");
    }

    /// The textbook transform, one butterfly stage after another (no fused first three).
    fn hadamard_reference(values: &mut [f32]) {
        butterfly_stages(values, 1);
    }

    #[test]
    fn rounds_equal_the_textbook_transform_to_the_bit() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        for n in [8, 16, 64, 512, 2048] {
            let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let signs: Vec<f32> = (0..2 * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (mut fast, mut portable, mut reference) = (x.clone(), x.clone(), x);
            flip_and_transform(&mut fast, &signs);
            flip_and_transform_portable(&mut portable, &signs);
            for round in signs.chunks_exact(n) {
                reference.iter_mut().zip(round).for_each(|(v, s)| *v *= s);
                hadamard_reference(&mut reference);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&reference), "n = {n}");
            assert_eq!(bits(&portable), bits(&reference), "n = {n}");
        }
    }

    #[test]
    fn same_seed_same_rotation() {
        let x: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let (mut a, mut b, mut c) = (vec![0.0; 128], vec![0.0; 128], vec![0.0; 128]);
        Rotation::new(100, 9).apply(&x, &mut a);
        Rotation::new(100, 9).apply(&x, &mut b);
        Rotation::new(100, 10).apply(&x, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
