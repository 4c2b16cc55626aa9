//! Timings, not correctness: `cargo test --release --test kmeans_bench -- --ignored --nocapture`.

mod kmeans_common;

use std::time::Instant;

use kmeans_common::*;
use pgivf_core::kmeans::{assign, train, KMeansMetric, KMeansParams, KMeansStage};

/// CPU time of the whole process so far (all threads), from /proc: wall-clock time is
/// meaningless on a shared machine.
fn cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    std::time::Duration::from_millis(ticks * 10)
}

/// Embedding-like data: many overlapping gaussian blobs, so k-means has real work to do.
fn embedding_like(n: usize, dim: usize) -> Vec<f32> {
    let blob_count = 1000;
    let data = blobs(blob_count, n.div_ceil(blob_count), dim, 4.0, 99);
    data.samples[..n * dim].to_vec()
}

fn bench(n: usize, dim: usize, k: usize, metric: KMeansMetric) {
    let mut samples = embedding_like(n, dim);
    if metric == KMeansMetric::Spherical {
        normalize_rows(&mut samples, dim);
    }
    let pool = pool(2);
    let mut params = KMeansParams::new(k, metric);

    params.max_iterations = 0;
    let start = Instant::now();
    let cpu_start = cpu_time();
    train(&samples, dim, &params, &pool, &mut no_progress()).unwrap();
    let seeding = start.elapsed();
    let seeding_cpu = cpu_time() - cpu_start;

    params.max_iterations = 500;
    let mut iterations = 0;
    let mut checkpoints = 0;
    let mut longest_gap = std::time::Duration::ZERO;
    let mut last = Instant::now();
    let start = Instant::now();
    let cpu_start = cpu_time();
    let centroids = train(&samples, dim, &params, &pool, &mut |stage| {
        checkpoints += 1;
        longest_gap = longest_gap.max(last.elapsed());
        last = Instant::now();
        if let KMeansStage::Assigning { iteration, .. } = stage {
            iterations = iterations.max(iteration);
        }
        Ok(())
    })
    .unwrap();
    let total = start.elapsed();
    let total_cpu = cpu_time() - cpu_start;

    let start = Instant::now();
    assign(&samples, dim, &centroids, metric, &pool);
    let assigning = start.elapsed();
    println!(
        "{n}×{dim}×{k} {metric:?}: seeding {seeding:.2?} (cpu {seeding_cpu:.2?}), train \
         {total:.2?} (cpu {total_cpu:.2?}, {iterations} iterations, {checkpoints} checkpoints, \
         longest gap {longest_gap:.2?}), assign all {assigning:.2?}"
    );
}

#[test]
#[ignore]
fn bench_12500_x_384_x_250() {
    bench(12_500, 384, 250, KMeansMetric::L2);
    bench(12_500, 384, 250, KMeansMetric::Spherical);
}

#[test]
#[ignore]
fn bench_200000_x_128_x_4000() {
    bench(200_000, 128, 4000, KMeansMetric::L2);
}

#[test]
#[ignore]
fn bench_50000_x_1536_x_1000() {
    bench(50_000, 1536, 1000, KMeansMetric::Spherical);
}

#[test]
#[ignore]
fn bench_assign_kernel() {
    let (n, dim, k) = (12_500, 384, 256);
    let samples = uniform(n * dim, 1);
    let centroids = uniform(k * dim, 2);
    for threads in [1, 2] {
        let pool = pool(threads);
        let start = Instant::now();
        assign(&samples, dim, &centroids, KMeansMetric::L2, &pool);
        let elapsed = start.elapsed();
        let rate = (n * dim * k) as f64 / elapsed.as_secs_f64();
        println!(
            "assign {threads} threads: {elapsed:.2?}, {:.2e} multiply-adds/s",
            rate
        );
    }
}

#[test]
#[ignore]
fn seeding_quality() {
    for (n, dim, k, spread) in [
        (12_500, 384, 250, 4.0),
        (20_000, 32, 400, 1.0),
        (10_000, 64, 100, 2.0),
        (20_000, 16, 1000, 0.5),
    ] {
        let data = blobs(k, n / k, dim, spread, 5);
        let pool = pool(2);
        for seed in 0..3 {
            let mut params = KMeansParams::new(k, KMeansMetric::L2);
            params.seed = seed;
            params.max_iterations = 0;
            let init = train(&data.samples, dim, &params, &pool, &mut no_progress()).unwrap();
            params.max_iterations = 500;
            let done = train(&data.samples, dim, &params, &pool, &mut no_progress()).unwrap();
            println!(
                "{n}×{dim}×{k} seed {seed}: seeded inertia {:.4e}, trained {:.4e}",
                inertia(&data.samples, &init, dim),
                inertia(&data.samples, &done, dim)
            );
        }
    }
}
