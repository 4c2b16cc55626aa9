//! Timings, not correctness: `cargo test --release --test kmeans_bench -- --ignored --nocapture`.

mod kmeans_common;

use std::time::Instant;

use kmeans_common::*;
use pgivf_core::kmeans::{assign, train, KMeansMetric, KMeansParams, KMeansStage};

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
    train(&samples, dim, &params, &pool, &mut no_progress()).unwrap();
    let seeding = start.elapsed();

    params.max_iterations = 500;
    let mut iterations = 0;
    let mut checkpoints = 0;
    let mut longest_gap = std::time::Duration::ZERO;
    let mut last = Instant::now();
    let start = Instant::now();
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

    let start = Instant::now();
    assign(&samples, dim, &centroids, metric, &pool);
    let assigning = start.elapsed();
    println!(
        "{n}×{dim}×{k} {metric:?}: seeding {seeding:.2?}, train {total:.2?} ({iterations} \
         iterations, {checkpoints} checkpoints, longest gap {longest_gap:.2?}), assign all {assigning:.2?}"
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
        println!("assign {threads} threads: {elapsed:.2?}, {:.2e} multiply-adds/s", rate);
    }
}
