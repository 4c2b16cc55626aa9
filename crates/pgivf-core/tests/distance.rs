//! Every kernel at every level this CPU supports, against the scalar kernels and against sums
//! computed in f64.

use pgivf_core::distance::{self, kernels_for, Kernels, Level};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const LENGTHS: &[usize] = &[127, 128, 129, 255, 384, 768, 1536, 2000, 16000];

fn test_lengths() -> impl Iterator<Item = usize> {
    (0..=70).chain(LENGTHS.iter().copied())
}

fn available_levels() -> Vec<(Level, &'static Kernels)> {
    Level::ALL
        .into_iter()
        .filter_map(|level| kernels_for(level).map(|kernels| (level, kernels)))
        .collect()
}

fn scalar() -> &'static Kernels {
    kernels_for(Level::Scalar).expect("scalar kernels are always available")
}

fn random_vector(rng: &mut SmallRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
}

/// f32 sums of n terms may differ from each other by a few ulps of the sum of |terms| per term.
fn assert_close(actual: f32, expected: f32, magnitude: f32, context: &str) {
    let tolerance = 1e-5 * magnitude + f32::MIN_POSITIVE;
    assert!(
        (actual - expected).abs() <= tolerance,
        "{context}: {actual} vs {expected} (tolerance {tolerance})"
    );
}

fn abs_sum(a: &[f32], b: &[f32], term: impl Fn(f64, f64) -> f64) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| term(f64::from(x), f64::from(y)).abs())
        .sum::<f64>() as f32
}

#[test]
fn scalar_matches_f64_sums() {
    let mut rng = SmallRng::seed_from_u64(1);
    for len in test_lengths() {
        let a = random_vector(&mut rng, len);
        let b = random_vector(&mut rng, len);
        let exact = |term: &dyn Fn(f64, f64) -> f64| {
            a.iter()
                .zip(&b)
                .map(|(&x, &y)| term(f64::from(x), f64::from(y)))
                .sum::<f64>() as f32
        };
        let context = format!("len {len}");
        let l2 = |x: f64, y: f64| (x - y) * (x - y);
        let dot = |x: f64, y: f64| x * y;
        let l1 = |x: f64, y: f64| (x - y).abs();
        let kernels = scalar();
        assert_close(
            kernels.l2_squared(&a, &b),
            exact(&l2),
            abs_sum(&a, &b, l2),
            &context,
        );
        assert_close(
            kernels.dot(&a, &b),
            exact(&dot),
            abs_sum(&a, &b, dot),
            &context,
        );
        assert_close(
            kernels.l1(&a, &b),
            exact(&l1),
            abs_sum(&a, &b, l1),
            &context,
        );
        let norm: f64 = a.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((kernels.norm_squared_f64(&a) - norm).abs() <= 1e-12 * norm);
    }
}

#[test]
fn every_level_matches_scalar() {
    let levels = available_levels();
    let mut rng = SmallRng::seed_from_u64(2);
    for len in test_lengths() {
        // One extra element so the inputs can start unaligned.
        let a_buffer = random_vector(&mut rng, len + 1);
        let b_buffer = random_vector(&mut rng, len + 1);
        for offset in [0, 1] {
            let a = &a_buffer[offset..offset + len];
            let b = &b_buffer[offset..offset + len];
            let l2_magnitude = abs_sum(a, b, |x, y| (x - y) * (x - y));
            let dot_magnitude = abs_sum(a, b, |x, y| x * y);
            let l1_magnitude = abs_sum(a, b, |x, y| (x - y).abs());
            let aa_magnitude = abs_sum(a, a, |x, y| x * y);
            let bb_magnitude = abs_sum(b, b, |x, y| x * y);
            let expected_parts = scalar().cosine_parts(a, b);
            for &(level, kernels) in &levels {
                let context = format!("{level:?} len {len} offset {offset}");
                assert_close(
                    kernels.l2_squared(a, b),
                    scalar().l2_squared(a, b),
                    l2_magnitude,
                    &context,
                );
                assert_close(
                    kernels.dot(a, b),
                    scalar().dot(a, b),
                    dot_magnitude,
                    &context,
                );
                assert_close(kernels.l1(a, b), scalar().l1(a, b), l1_magnitude, &context);
                let parts = kernels.cosine_parts(a, b);
                assert_close(parts.0, expected_parts.0, dot_magnitude, &context);
                assert_close(parts.1, expected_parts.1, aa_magnitude, &context);
                assert_close(parts.2, expected_parts.2, bb_magnitude, &context);
                let norm = kernels.norm_squared_f64(a);
                let expected_norm = scalar().norm_squared_f64(a);
                assert!(
                    (norm - expected_norm).abs() <= 1e-12 * expected_norm,
                    "{context}: {norm} vs {expected_norm}"
                );
            }
        }
    }
}

#[test]
fn empty_inputs_give_zero() {
    for (level, kernels) in available_levels() {
        assert_eq!(kernels.l2_squared(&[], &[]), 0.0, "{level:?}");
        assert_eq!(kernels.dot(&[], &[]), 0.0, "{level:?}");
        assert_eq!(kernels.l1(&[], &[]), 0.0, "{level:?}");
        assert_eq!(kernels.cosine_parts(&[], &[]), (0.0, 0.0, 0.0), "{level:?}");
        assert_eq!(kernels.norm_squared_f64(&[]), 0.0, "{level:?}");
    }
}

#[test]
fn known_values() {
    let a = [1.0, 2.0, 3.0];
    let b = [4.0, -5.0, 6.0];
    for (level, kernels) in available_levels() {
        assert_eq!(kernels.l2_squared(&a, &b), 9.0 + 49.0 + 9.0, "{level:?}");
        assert_eq!(kernels.dot(&a, &b), 4.0 - 10.0 + 18.0, "{level:?}");
        assert_eq!(kernels.l1(&a, &b), 3.0 + 7.0 + 3.0, "{level:?}");
        assert_eq!(
            kernels.cosine_parts(&a, &b),
            (12.0, 14.0, 77.0),
            "{level:?}"
        );
        assert_eq!(kernels.norm_squared_f64(&a), 14.0, "{level:?}");
    }
}

fn check_batches(rng: &mut SmallRng, dim: usize, row_counts: impl Iterator<Item = usize>) {
    for rows_count in row_counts {
        let query = random_vector(rng, dim);
        let rows = random_vector(rng, dim * rows_count);
        for (level, kernels) in available_levels() {
            let mut l2 = vec![f32::NAN; rows_count];
            let mut neg_dot = vec![f32::NAN; rows_count];
            kernels.l2_squared_batch(&query, &rows, &mut l2);
            kernels.neg_dot_batch(&query, &rows, &mut neg_dot);
            for i in 0..rows_count {
                let row = &rows[i * dim..(i + 1) * dim];
                let context = format!("{level:?} dim {dim} rows {rows_count} row {i}");
                assert_close(
                    l2[i],
                    kernels.l2_squared(&query, row),
                    abs_sum(&query, row, |x, y| (x - y) * (x - y)),
                    &context,
                );
                assert_close(
                    neg_dot[i],
                    -kernels.dot(&query, row),
                    abs_sum(&query, row, |x, y| x * y),
                    &context,
                );
            }
        }
    }
}

#[test]
fn batch_matches_single() {
    let mut rng = SmallRng::seed_from_u64(3);
    for dim in [1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 384] {
        check_batches(&mut rng, dim, 0..=13);
    }
    check_batches(&mut rng, 0, 0..=5);
    check_batches(&mut rng, 16000, [1, 4, 5].into_iter());
    for dim in test_lengths() {
        check_batches(&mut rng, dim, [9].into_iter());
    }
}

#[test]
#[should_panic(expected = "rows must hold")]
fn batch_rejects_misshaped_rows() {
    let mut out = [0.0; 2];
    distance::l2_squared_batch(&[1.0, 2.0], &[1.0, 2.0, 3.0], &mut out);
}

#[test]
fn dispatch_picks_an_available_level() {
    let name = distance::implementation_name();
    assert!(
        available_levels()
            .iter()
            .any(|(_, kernels)| kernels.name() == name),
        "{name}"
    );
    // The best level available is the one chosen.
    let best = [Level::Avx512f, Level::Avx2Fma, Level::Neon, Level::Scalar]
        .into_iter()
        .find_map(kernels_for)
        .unwrap();
    assert_eq!(name, best.name());

    let a = [1.0, 2.0, 3.0];
    let b = [4.0, -5.0, 6.0];
    assert_eq!(distance::l2_squared(&a, &b), 67.0);
    assert_eq!(distance::dot(&a, &b), 12.0);
    assert_eq!(distance::l1(&a, &b), 13.0);
    assert_eq!(distance::cosine_parts(&a, &b), (12.0, 14.0, 77.0));
    assert_eq!(distance::norm_squared_f64(&a), 14.0);
    let mut out = [0.0; 2];
    distance::neg_dot_batch(&a, &[a, b].concat(), &mut out);
    assert_eq!(out, [-14.0, -12.0]);
    distance::l2_squared_batch(&a, &[a, b].concat(), &mut out);
    assert_eq!(out, [0.0, 67.0]);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_levels_follow_cpu_features() {
    assert_eq!(
        kernels_for(Level::Avx2Fma).is_some(),
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    );
    assert_eq!(
        kernels_for(Level::Avx512f).is_some(),
        is_x86_feature_detected!("avx512f")
    );
    assert!(kernels_for(Level::Neon).is_none());
}
