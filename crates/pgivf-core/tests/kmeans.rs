mod kmeans_common;

use kmeans_common::*;
use pgivf_core::kmeans::{
    self, assign, memory_required, nearest, train, KMeansError, KMeansMetric, KMeansParams,
    KMeansStage,
};

fn params(k: usize, metric: KMeansMetric, seed: u64) -> KMeansParams {
    KMeansParams {
        seed,
        ..KMeansParams::new(k, metric)
    }
}

fn train_l2(samples: &[f32], dim: usize, k: usize, threads: usize) -> Vec<f32> {
    train(
        samples,
        dim,
        &params(k, KMeansMetric::L2, 1),
        &pool(threads),
        &mut no_progress(),
    )
    .expect("training succeeds")
}

#[test]
fn finds_gaussian_blobs() {
    let dim = 32;
    let data = blobs(20, 150, dim, 0.5, 3);
    let centroids = train_l2(&data.samples, dim, 20, 2);
    for centre in data.centres.chunks_exact(dim) {
        let j = nearest(centre, &centroids, dim, KMeansMetric::L2) as usize;
        let distance = squared_distance(centre, &centroids[j * dim..][..dim]).sqrt();
        // Mean of 150 samples with σ = 0.5 per axis lands about 0.5·√32/√150 ≈ 0.23 away.
        assert!(distance < 0.5, "true centre missed by {distance}");
    }
}

#[test]
fn no_worse_than_plain_lloyd_from_the_same_start() {
    for (dim, blob_count, k, seed) in [(16, 12, 12, 5), (8, 10, 25, 6), (24, 30, 30, 7)] {
        let data = blobs(blob_count, 60, dim, 2.0, seed);
        let mut seeding = params(k, KMeansMetric::L2, seed);
        seeding.max_iterations = 0;
        let init = train(&data.samples, dim, &seeding, &pool(2), &mut no_progress()).unwrap();
        let to_convergence = KMeansParams {
            settled_share_inverse: 0,
            ..params(k, KMeansMetric::L2, seed)
        };
        let accelerated = train(
            &data.samples,
            dim,
            &to_convergence,
            &pool(2),
            &mut no_progress(),
        )
        .unwrap();
        let reference = plain_lloyd(&data.samples, &init, dim, 500);
        let ours = inertia(&data.samples, &accelerated, dim);
        let theirs = inertia(&data.samples, &reference, dim);
        assert!(
            ours <= theirs * (1.0 + 1e-5),
            "dim {dim}, k {k}: inertia {ours} vs plain Lloyd {theirs}"
        );
        assert!(ours < inertia(&data.samples, &init, dim));
    }
}

#[test]
fn deterministic_across_thread_counts() {
    let dim = 24;
    let data = blobs(15, 100, dim, 3.0, 11);
    for metric in [KMeansMetric::L2, KMeansMetric::Spherical] {
        let mut samples = data.samples.clone();
        if metric == KMeansMetric::Spherical {
            normalize_rows(&mut samples, dim);
        }
        let run = |threads| {
            train(
                &samples,
                dim,
                &params(40, metric, 9),
                &pool(threads),
                &mut no_progress(),
            )
            .unwrap()
        };
        let single = run(1);
        assert_eq!(single, run(2), "{metric:?}: 1 vs 2 threads");
        assert_eq!(single, run(3), "{metric:?}: 1 vs 3 threads");
        assert_eq!(single, run(1), "{metric:?}: rerun");
    }
}

#[test]
fn deterministic_when_passes_are_split_into_chunks() {
    // k·dim large enough that one assignment pass spans several checkpoint chunks, whose size
    // depends on the thread count.
    let (n, dim, k) = (3000, 1024, 100);
    let data = blobs(30, n / 30, dim, 8.0, 19);
    let mut params = params(k, KMeansMetric::L2, 5);
    params.max_iterations = 6;
    let run = |threads| {
        let mut assigning_checkpoints = 0;
        let centroids = train(&data.samples, dim, &params, &pool(threads), &mut |stage| {
            if matches!(stage, KMeansStage::Assigning { iteration: 1, .. }) {
                assigning_checkpoints += 1;
            }
            Ok(())
        })
        .unwrap();
        (centroids, assigning_checkpoints)
    };
    let (single, single_chunks) = run(1);
    let (double, double_chunks) = run(2);
    assert!(single_chunks > double_chunks && double_chunks > 1);
    assert_eq!(single, double);
}

#[test]
fn different_seeds_give_different_starts() {
    let dim = 8;
    let samples = uniform(500 * dim, 4);
    let mut a = params(10, KMeansMetric::L2, 1);
    a.max_iterations = 0;
    let mut b = a.clone();
    b.seed = 2;
    let pool = pool(2);
    assert_ne!(
        train(&samples, dim, &a, &pool, &mut no_progress()).unwrap(),
        train(&samples, dim, &b, &pool, &mut no_progress()).unwrap()
    );
}

#[test]
fn no_samples_gives_random_centroids() {
    let centroids = train(
        &[],
        3,
        &params(5, KMeansMetric::L2, 1),
        &pool(1),
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(centroids.len(), 15);
    assert!(centroids.iter().all(|v| (0.0..1.0).contains(v)));

    let spherical = train(
        &[],
        3,
        &params(5, KMeansMetric::Spherical, 1),
        &pool(1),
        &mut no_progress(),
    )
    .unwrap();
    assert_unit_rows(&spherical, 3);
}

#[test]
fn fewer_samples_than_clusters() {
    let dim = 2;
    let samples = [0.0, 0.0, 5.0, 5.0, 0.0, 0.0, -3.0, 4.0];
    for k in [3, 4, 10] {
        let centroids = train_l2(&samples, dim, k, 2);
        assert_eq!(centroids.len(), k * dim);
        // Every centroid is one of the samples, and every distinct sample has a centroid.
        for centroid in centroids.chunks_exact(dim) {
            assert!(
                samples.chunks_exact(dim).any(|s| s == centroid),
                "{centroid:?}"
            );
        }
        for sample in samples.chunks_exact(dim) {
            assert!(
                centroids.chunks_exact(dim).any(|c| c == sample),
                "{sample:?}"
            );
        }
    }
}

#[test]
fn identical_samples() {
    let dim = 4;
    let row = [0.5f32, -1.0, 2.0, 0.25];
    let samples: Vec<f32> = row.iter().copied().cycle().take(200 * dim).collect();
    for metric in [KMeansMetric::L2, KMeansMetric::Spherical] {
        let mut samples = samples.clone();
        if metric == KMeansMetric::Spherical {
            normalize_rows(&mut samples, dim);
        }
        let mut progress_calls = 0;
        let centroids = train(&samples, dim, &params(10, metric, 3), &pool(2), &mut |_| {
            progress_calls += 1;
            Ok(())
        })
        .unwrap();
        for centroid in centroids.chunks_exact(dim) {
            assert_eq!(centroid, &samples[..dim]);
        }
        // Converges at once instead of shuffling samples between equal centroids.
        assert!(progress_calls < 40, "{progress_calls} checkpoints");
    }
}

#[test]
fn mostly_duplicates() {
    // 3 distinct points, one of them repeated 500 times, k = 5.
    let dim = 3;
    let mut samples: Vec<f32> = [1.0, 2.0, 3.0].repeat(500);
    samples.extend([4.0, 4.0, 4.0, -1.0, 0.0, 7.0]);
    let centroids = train_l2(&samples, dim, 5, 2);
    assert!(centroids.iter().all(|v| v.is_finite()));
    for sample in samples.chunks_exact(dim) {
        assert!(centroids.chunks_exact(dim).any(|c| c == sample));
    }
}

#[test]
fn one_dimension() {
    let mut samples = Vec::new();
    for i in 0..300 {
        let jitter = (i % 7) as f32 * 0.01;
        samples.push([0.0, 10.0, 20.0][i % 3] + jitter);
    }
    let mut centroids = train_l2(&samples, 1, 3, 2);
    centroids.sort_by(f32::total_cmp);
    for (found, expected) in centroids.iter().zip([0.03, 10.03, 20.03]) {
        assert!((found - expected).abs() < 0.02, "{centroids:?}");
    }
}

#[test]
fn single_cluster_is_the_mean() {
    let dim = 3;
    let samples = uniform(100 * dim, 8);
    let centroid = train_l2(&samples, dim, 1, 2);
    for (d, &value) in centroid.iter().enumerate() {
        let column = samples.iter().skip(d).step_by(dim);
        let mean = column.map(|&v| f64::from(v)).sum::<f64>() / 100.0;
        assert!((f64::from(value) - mean).abs() < 1e-6);
    }
}

fn assert_unit_rows(values: &[f32], dim: usize) {
    for row in values.chunks_exact(dim) {
        let norm = row
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn spherical_gives_unit_centroids_and_finds_directions() {
    let dim = 16;
    let mut data = blobs(8, 100, dim, 0.3, 21);
    normalize_rows(&mut data.samples, dim);
    normalize_rows(&mut data.centres, dim);
    let centroids = train(
        &data.samples,
        dim,
        &params(8, KMeansMetric::Spherical, 2),
        &pool(2),
        &mut no_progress(),
    )
    .unwrap();
    assert_unit_rows(&centroids, dim);
    for centre in data.centres.chunks_exact(dim) {
        let j = nearest(centre, &centroids, dim, KMeansMetric::Spherical) as usize;
        let cosine: f32 = centre
            .iter()
            .zip(&centroids[j * dim..][..dim])
            .map(|(a, b)| a * b)
            .sum();
        assert!(cosine > 0.99, "cosine {cosine}");
    }
}

#[test]
fn spherical_with_opposite_samples() {
    // Antipodal pairs make zero-sum clusters likely; the result must still be unit and finite.
    let dim = 2;
    let samples = [1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0];
    for k in 1..=5 {
        let centroids = train(
            &samples,
            dim,
            &params(k, KMeansMetric::Spherical, 4),
            &pool(1),
            &mut no_progress(),
        )
        .unwrap();
        assert_unit_rows(&centroids, dim);
    }
}

#[test]
fn clusters_are_not_left_empty() {
    let dim = 4;
    let samples = uniform(300 * dim, 12);
    let pool = pool(2);
    for k in [50, 150, 300] {
        let centroids = train(
            &samples,
            dim,
            &params(k, KMeansMetric::L2, 3),
            &pool,
            &mut no_progress(),
        )
        .unwrap();
        let labels = assign(&samples, dim, &centroids, KMeansMetric::L2, &pool);
        let mut counts = vec![0; k];
        labels.iter().for_each(|&j| counts[j as usize] += 1);
        assert!(counts.iter().all(|&c| c > 0), "k {k}: {counts:?}");
    }
}

#[test]
fn zero_iterations_returns_distinct_seeds() {
    let dim = 5;
    let samples = uniform(50 * dim, 13);
    let mut seeding = params(50, KMeansMetric::L2, 1);
    seeding.max_iterations = 0;
    let centroids = train(&samples, dim, &seeding, &pool(2), &mut no_progress()).unwrap();
    // With k = n, D² sampling must pick every sample exactly once.
    let mut picked: Vec<&[f32]> = centroids.chunks_exact(dim).collect();
    let mut all: Vec<&[f32]> = samples.chunks_exact(dim).collect();
    picked.sort_by(|a, b| a.partial_cmp(b).unwrap());
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(picked, all);
}

#[test]
fn invalid_arguments() {
    let pool = pool(1);
    let run = |samples: &[f32], dim, k| {
        train(
            samples,
            dim,
            &params(k, KMeansMetric::L2, 0),
            &pool,
            &mut no_progress(),
        )
    };
    assert_eq!(run(&[1.0, 2.0], 2, 0), Err(KMeansError::NoClusters));
    assert_eq!(run(&[1.0, 2.0], 0, 1), Err(KMeansError::NoDimensions));
    assert_eq!(
        run(&[1.0, 2.0, 3.0], 2, 1),
        Err(KMeansError::RaggedSamples { len: 3, dim: 2 })
    );
}

#[test]
fn progress_error_aborts_promptly() {
    let dim = 8;
    let data = blobs(10, 100, dim, 1.0, 14);
    let pool = pool(2);
    let mut total = 0;
    train(
        &data.samples,
        dim,
        &params(10, KMeansMetric::L2, 1),
        &pool,
        &mut |_| {
            total += 1;
            Ok(())
        },
    )
    .unwrap();
    assert!(total > 12, "only {total} checkpoints");
    for stop_at in [1, 3, total / 2, total] {
        let mut calls = 0;
        let result = train(
            &data.samples,
            dim,
            &params(10, KMeansMetric::L2, 1),
            &pool,
            &mut |_| {
                calls += 1;
                if calls == stop_at {
                    Err(KMeansError::Interrupted)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(result, Err(KMeansError::Interrupted), "stop at {stop_at}");
        assert_eq!(calls, stop_at, "no checkpoint after the error");
    }
}

#[test]
fn progress_runs_on_the_calling_thread_through_every_stage() {
    let dim = 8;
    let data = blobs(10, 100, dim, 1.0, 15);
    let caller = std::thread::current().id();
    let mut stages = Vec::new();
    train(
        &data.samples,
        dim,
        &params(10, KMeansMetric::L2, 1),
        &pool(2),
        &mut |stage| {
            assert_eq!(std::thread::current().id(), caller);
            stages.push(stage);
            Ok(())
        },
    )
    .unwrap();
    assert!(matches!(
        stages[0],
        KMeansStage::Seeding { chosen: 1, k: 10 }
    ));
    assert!(stages.contains(&KMeansStage::Seeding { chosen: 10, k: 10 }));
    assert!(stages.contains(&KMeansStage::Assigning {
        iteration: 1,
        done: 1000,
        total: 1000
    }));
    assert!(stages.contains(&KMeansStage::Updating { iteration: 1 }));
}

#[test]
fn assign_matches_brute_force() {
    let pool = pool(2);
    for (dim, k, n, offset) in [
        (1, 3, 50, 0.0),
        (7, 33, 401, 0.0),
        (64, 100, 300, 0.0),
        (32, 20, 200, 500.0),
    ] {
        let mut rows = uniform(n * dim, 16);
        let mut centroids = uniform(k * dim, 17);
        // Far from the origin, the norm expansion loses most of its precision.
        rows.iter_mut()
            .chain(centroids.iter_mut())
            .for_each(|v| *v += offset);
        // Exact ties: the lowest index must win, as in `nearest`.
        let duplicate = centroids[..dim].to_vec();
        centroids.extend(&duplicate);
        rows.extend(&duplicate);
        for metric in [KMeansMetric::L2, KMeansMetric::Spherical] {
            let (rows, centroids) = if metric == KMeansMetric::Spherical {
                let (mut r, mut c) = (rows.clone(), centroids.clone());
                normalize_rows(&mut r, dim);
                normalize_rows(&mut c, dim);
                (r, c)
            } else {
                (rows.clone(), centroids.clone())
            };
            let labels = assign(&rows, dim, &centroids, metric, &pool);
            let expected: Vec<u32> = rows
                .chunks_exact(dim)
                .map(|row| nearest(row, &centroids, dim, metric))
                .collect();
            assert_eq!(labels, expected, "dim {dim}, k {k}, {metric:?}");
        }
    }
}

#[test]
fn assign_handles_no_rows() {
    assert!(assign(&[], 3, &[0.0; 6], KMeansMetric::L2, &pool(1)).is_empty());
}

#[test]
fn nearest_prefers_lowest_index_on_ties() {
    let centroids = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    assert_eq!(nearest(&[0.5, 0.5], &centroids, 2, KMeansMetric::L2), 0);
    assert_eq!(nearest(&[2.0, 0.1], &centroids, 2, KMeansMetric::L2), 0);
    assert_eq!(nearest(&[0.0, 3.0], &centroids, 2, KMeansMetric::L2), 1);
    assert_eq!(
        nearest(&[0.6, 0.8], &centroids, 2, KMeansMetric::Spherical),
        1
    );
    assert_eq!(
        nearest(&[-1.0, 0.0], &centroids, 2, KMeansMetric::Spherical),
        1
    );
}

#[test]
fn memory_required_is_monotone_and_counts_bounds() {
    let sizes = [0usize, 1, 10, 1000, 100_000, 10_000_000];
    let dims = [1usize, 3, 128, 2000];
    let ks = [1usize, 10, 1000, 32768];
    for &n in &sizes {
        for &dim in &dims {
            for &k in &ks {
                let bytes = memory_required(n, dim, k);
                // Cluster plus upper and lower bounds per sample; the result and f64 sums.
                assert!(bytes >= n * 12 + k * dim * 12);
                assert!(memory_required(n + 1, dim, k) >= bytes);
                assert!(memory_required(n, dim + 1, k) >= bytes);
                assert!(memory_required(n, dim, k + 1) >= bytes);
                if n > 0 {
                    assert!(memory_required(n * 2, dim, k) > bytes);
                }
            }
        }
    }
    // Around the seeding threshold, where a subset replaces the full sample.
    let dim = 100;
    let k = 1000;
    let threshold = (kmeans::SEEDING_WORK_LIMIT / (dim * k) as f64) as usize;
    let mut previous = 0;
    for n in threshold - 3..threshold + 3 {
        let bytes = memory_required(n, dim, k);
        assert!(bytes >= previous);
        previous = bytes;
    }
}

#[test]
fn far_from_the_origin_clusters_as_well() {
    // Norms of 10^4·√32 make ‖x‖² − 2x·c + ‖c‖² useless in f32 unless measured from nearby.
    let dim = 32;
    let data = blobs(20, 100, dim, 1.0, 23);
    let centred = train_l2(&data.samples, dim, 20, 2);
    let base = inertia(&data.samples, &centred, dim);
    for offset in [100.0f32, 1000.0, 10000.0] {
        let shifted: Vec<f32> = data.samples.iter().map(|v| v + offset).collect();
        let centroids = train_l2(&shifted, dim, 20, 2);
        let found = inertia(&shifted, &centroids, dim);
        assert!(found <= base * 1.001, "offset {offset}: {found} vs {base}");
    }
}

/// The default stops once fewer than 1% of the samples move in a pass: fewer passes than running
/// until none moves, and an inertia within a hair of it.
#[test]
fn stops_when_the_clusters_have_settled() {
    let dim = 32;
    let data = blobs(60, 200, dim, 4.0, 21);
    let run = |settled_share_inverse: usize| {
        let mut passes = 0;
        let params = KMeansParams {
            settled_share_inverse,
            ..params(60, KMeansMetric::L2, 3)
        };
        let centroids = train(&data.samples, dim, &params, &pool(2), &mut |stage| {
            if let KMeansStage::Updating { iteration } = stage {
                passes = iteration;
            }
            Ok(())
        })
        .unwrap();
        (passes, inertia(&data.samples, &centroids, dim))
    };
    let (settled_passes, settled_inertia) = run(kmeans::DEFAULT_SETTLED_SHARE_INVERSE);
    let (full_passes, full_inertia) = run(0);
    assert!(
        settled_passes < full_passes,
        "{settled_passes} passes, {full_passes} to convergence"
    );
    assert!(
        settled_inertia <= full_inertia * 1.01,
        "inertia {settled_inertia} against {full_inertia}"
    );
}
