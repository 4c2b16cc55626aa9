//! Criterion benchmarks of the core crate: distance kernels in GB/s and k-means training time.
//!
//!     cargo bench -p pgivf-core                 # everything (about 3 minutes)
//!     cargo bench -p pgivf-core -- batch/384    # a filter, as with any criterion bench
//!     bash benches/run.sh --criterion           # the same, from the repository root
//!
//! Throughput is the bytes of vector data the kernel reads per second:
//! - `pair/*`: `distance::l2_squared(a, b)` / `distance::dot(a, b)`, 2·4·dim bytes a call (both
//!   vectors, hot in L1: this is call overhead plus arithmetic).
//! - `batch/*`: `l2_squared_batch(query, rows, out)` / `neg_dot_batch` over a 1 MiB block of rows
//!   (in L2/L3 cache), counting the rows only (the query is reused from L1): the kernels' peak.
//! - `stream/*`: the batch kernels over 256 MiB of 384-d rows, 8 KiB (one heap page) a call: the
//!   memory-bound case an index scan over lists that are not in cache is in; compare with the
//!   single-core memory read bandwidth `benches/bench.py` reports.
//! - `levels/*`: every instruction-set level this CPU supports (scalar, avx2+fma, avx512f, neon)
//!   for the 384-d batch kernel, to show what the runtime dispatch buys.
//! - `kmeans/*`: one `kmeans::train` run (k-means++ seeding plus Lloyd to convergence, at most 500
//!   iterations) on 12,500 × 384 embedding-like samples with 250 lists, spherical (cosine,
//!   unit-length samples) and L2, on rayon pools of 1 and 2 threads: seconds per build-time
//!   training run (pgvector samples 50 rows per list, so 12,500 samples is what a `lists = 250`
//!   build trains on).

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use pgivf_core::distance::{self, Level};
use pgivf_core::kmeans::{train, KMeansError, KMeansMetric, KMeansParams, KMeansStage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIMS: [usize; 4] = [128, 384, 768, 1536];
const BLOCK_BYTES: usize = 1 << 20;
const STREAM_BYTES: usize = 256 << 20;
const PAGE_BYTES: usize = 8192;

fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect()
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller; rand 0.8 without rand_distr.
    let u1: f32 = rng.gen::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Embedding-like samples, as `benches/bench.py` makes its synthetic sets: 1,000 gaussian blobs
/// (spreads 0.5-1.0) in a 32-d latent space, mapped linearly into `dim` dimensions, plus a little
/// noise; a low intrinsic dimension with overlapping clusters, so k-means has real work to do.
fn embedding_like(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let (blobs, latent) = (1000, 32);
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..blobs * latent).map(|_| gaussian(&mut rng)).collect();
    let spreads: Vec<f32> = (0..blobs).map(|_| 0.5 + 0.5 * rng.gen::<f32>()).collect();
    let scale = 1.0 / (latent as f32).sqrt();
    let mapping: Vec<f32> = (0..latent * dim)
        .map(|_| gaussian(&mut rng) * scale)
        .collect();
    let mut samples = vec![0.0f32; n * dim];
    let mut z = vec![0.0f32; latent];
    for row in samples.chunks_exact_mut(dim) {
        let blob = rng.gen_range(0..blobs);
        for (j, zj) in z.iter_mut().enumerate() {
            *zj = centres[blob * latent + j] + spreads[blob] * gaussian(&mut rng);
        }
        for v in row.iter_mut() {
            *v = 0.05 * gaussian(&mut rng);
        }
        for (j, zj) in z.iter().enumerate() {
            for (v, m) in row.iter_mut().zip(&mapping[j * dim..][..dim]) {
                *v += zj * m;
            }
        }
    }
    samples
}

fn normalize_rows(samples: &mut [f32], dim: usize) {
    for row in samples.chunks_exact_mut(dim) {
        let norm = row
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        row.iter_mut().for_each(|v| *v /= norm);
    }
}

fn pair_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("pair");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for dim in DIMS {
        let a = uniform(dim, 1);
        let b = uniform(dim, 2);
        group.throughput(Throughput::Bytes((2 * 4 * dim) as u64));
        group.bench_with_input(BenchmarkId::new("l2_squared", dim), &dim, |bench, _| {
            bench.iter(|| distance::l2_squared(black_box(&a), black_box(&b)))
        });
        group.bench_with_input(BenchmarkId::new("dot", dim), &dim, |bench, _| {
            bench.iter(|| distance::dot(black_box(&a), black_box(&b)))
        });
    }
    group.finish();
}

fn batch_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for dim in DIMS {
        let n = BLOCK_BYTES / (4 * dim);
        let query = uniform(dim, 3);
        let rows = uniform(n * dim, 4);
        let mut out = vec![0.0f32; n];
        group.throughput(Throughput::Bytes((n * dim * 4) as u64));
        group.bench_with_input(
            BenchmarkId::new("l2_squared_batch", dim),
            &dim,
            |bench, _| {
                bench.iter(|| {
                    distance::l2_squared_batch(black_box(&query), black_box(&rows), &mut out)
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("neg_dot_batch", dim), &dim, |bench, _| {
            bench.iter(|| distance::neg_dot_batch(black_box(&query), black_box(&rows), &mut out))
        });
    }
    group.finish();
}

fn stream_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let dim = 384;
    let per_call = (PAGE_BYTES / (4 * dim)).max(1);
    let n = STREAM_BYTES / (4 * dim) / per_call * per_call;
    let query = uniform(dim, 5);
    let rows = uniform(n * dim, 6);
    let mut out = vec![0.0f32; per_call];
    group.throughput(Throughput::Bytes((n * dim * 4) as u64));
    group.bench_function(BenchmarkId::new("l2_squared_batch", dim), |bench| {
        bench.iter(|| {
            for chunk in rows.chunks_exact(per_call * dim) {
                distance::l2_squared_batch(black_box(&query), chunk, &mut out);
                black_box(&out);
            }
        })
    });
    group.bench_function(BenchmarkId::new("neg_dot_batch", dim), |bench| {
        bench.iter(|| {
            for chunk in rows.chunks_exact(per_call * dim) {
                distance::neg_dot_batch(black_box(&query), chunk, &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();
}

fn levels(c: &mut Criterion) {
    let mut group = c.benchmark_group("levels");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let dim = 384;
    let n = BLOCK_BYTES / (4 * dim);
    let query = uniform(dim, 7);
    let rows = uniform(n * dim, 8);
    let mut out = vec![0.0f32; n];
    group.throughput(Throughput::Bytes((n * dim * 4) as u64));
    for level in Level::ALL {
        let Some(kernels) = distance::kernels_for(level) else {
            continue;
        };
        group.bench_function(
            BenchmarkId::new("l2_squared_batch/384", kernels.name()),
            |bench| {
                bench.iter(|| {
                    kernels.l2_squared_batch(black_box(&query), black_box(&rows), &mut out)
                })
            },
        );
    }
    group.finish();
}

fn kmeans(c: &mut Criterion) {
    let mut group = c.benchmark_group("kmeans");
    group
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(12))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    let (n, dim, k) = (12_500, 384, 250);
    let raw = embedding_like(n, dim, 42);
    let mut unit = raw.clone();
    normalize_rows(&mut unit, dim);
    for metric in [KMeansMetric::Spherical, KMeansMetric::L2] {
        let samples = if metric == KMeansMetric::Spherical {
            &unit
        } else {
            &raw
        };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("rayon pool");
            let params = KMeansParams::new(k, metric);
            let id = BenchmarkId::new(
                format!("train_12500x384_k250_{metric:?}"),
                format!("{threads}_threads"),
            );
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    let mut progress = |_: KMeansStage| -> Result<(), KMeansError> { Ok(()) };
                    train(black_box(samples), dim, &params, &pool, &mut progress).expect("k-means")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    pair_kernels,
    batch_kernels,
    stream_kernels,
    levels,
    kmeans
);
criterion_main!(benches);
