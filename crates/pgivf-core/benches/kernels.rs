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
//! - `rabitq_pages/*`: a quantized probe's inner loop, `PreparedQuery::queue_entries` over 8 KiB
//!   pages of 384-d (and 1536-d) RaBitQ code entries (with vector locations, as `rerank = 'index'` stores them)
//!   into a fresh re-rank queue per 20,000 rows (one query at lists 250, probes 64 on the real
//!   set), each page with the next one to prefetch: `l3` on 20,000 rows that stay in cache, `memory`
//!   on 2,000,000 (190 MiB, 384-d only) in page order, `memory_shuffled` in a shuffled page order
//!   (as a scan meets shared buffers). Throughput is in rows (elements) per second.
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

fn rabitq_pages(c: &mut Criterion) {
    use pgivf_core::page::{EntryFormat, Location, Origin, Tid};
    use pgivf_core::quant::queue::RerankQueue;
    let mut group = c.benchmark_group("rabitq_pages");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    // 384-d (512-bit codes, the query in registers) in cache and from memory; 1536-d (2048-bit
    // codes, four 512-bit chunks) in cache.
    let query_rows: usize = 20_000;
    for (dim, sizes) in [
        (384, vec![("l3", query_rows), ("memory", 2_000_000)]),
        (1536, vec![("l3", query_rows)]),
    ] {
        let quantizer = pgivf_core::quant::Rabitq::new(dim, pgivf_core::metric::Metric::Cosine, 1);
        let format = EntryFormat {
            dim,
            filters: 0,
            code_bytes: quantizer.code_bytes(),
            located: true,
        };
        let per_page = PAGE_BYTES / format.stride();
        let mut rows = embedding_like(4096, dim, 11);
        normalize_rows(&mut rows, dim);
        let centroid = {
            let mut c = vec![0.0f32; dim];
            for row in rows.chunks_exact(dim) {
                c.iter_mut().zip(row).for_each(|(c, x)| *c += x / 4096.0);
            }
            c
        };
        let mut page = vec![0u8; per_page * format.stride()];
        let (mut scratch, mut code) = (Vec::new(), vec![0u8; format.code_bytes]);
        let mut entries = Vec::new();
        for (i, row) in rows.chunks_exact(dim).enumerate() {
            quantizer.encode(row, &centroid, &mut scratch, &mut code);
            let at = (i % per_page) * format.stride();
            let tid = Tid {
                block: i as u32,
                offset: 1,
            };
            let location = Location {
                block: i as u32,
                offset: 1,
            };
            let entry = &mut page[at..at + format.stride()];
            format.encode_code(tid, &[], Some(location), &code, Origin::Build, entry);
            if i % per_page == per_page - 1 {
                entries.extend_from_slice(&page);
            }
        }
        let mut prepared = pgivf_core::quant::RabitqQuery::default();
        quantizer.prepare_list(&rows[..dim], &centroid, &mut prepared);
        for (name, total_rows) in sizes {
            let pages: Vec<u8> = entries
                .chunks_exact(per_page * format.stride())
                .cycle()
                .take(total_rows.div_ceil(per_page))
                .flatten()
                .copied()
                .collect();
            let page_bytes = per_page * format.stride();
            let page_count = pages.len() / page_bytes;
            // In order (the CPU's prefetcher follows the stream), or in a shuffled order as a
            // scan meets buffers of the shared pool, each with the next page as `ahead`.
            let mut shuffled: Vec<usize> = (0..page_count).collect();
            let mut rng = StdRng::seed_from_u64(5);
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.gen_range(0..=i));
            }
            let orders: Vec<(&str, Vec<usize>)> = if name == "memory" {
                vec![
                    ("memory", (0..page_count).collect()),
                    ("memory_shuffled", shuffled),
                ]
            } else {
                vec![(name, (0..page_count).collect())]
            };
            for (label, order) in orders {
                let mut queue = RerankQueue::new();
                group.throughput(Throughput::Elements((pages.len() / format.stride()) as u64));
                group.bench_function(
                    BenchmarkId::new(format!("queue_entries/{dim}"), label),
                    |bench| {
                        let page = |k: usize| &pages[k * page_bytes..(k + 1) * page_bytes];
                        bench.iter(|| {
                            for (n, &k) in order.iter().enumerate() {
                                if n % (query_rows / per_page) == 0 {
                                    queue.clear();
                                }
                                let ahead = order.get(n + 1).map_or(&[][..], |&next| page(next));
                                black_box(prepared.queue_entries(
                                    page(k),
                                    ahead,
                                    format,
                                    3.0,
                                    f32::INFINITY,
                                    291,
                                    &mut queue,
                                ));
                            }
                        })
                    },
                );
            }
        }
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

/// Encoding a row (the build's and an insert's per-row cost besides list assignment), and the
/// rotation it and every query pay.
fn rabitq_encode(c: &mut Criterion) {
    use pgivf_core::quant::rotation::Rotation;
    use pgivf_core::quant::Quantizer;
    let mut group = c.benchmark_group("rabitq_encode");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for dim in [384, 1536] {
        let mut rows = embedding_like(1024, dim, 5);
        normalize_rows(&mut rows, dim);
        let centroids = embedding_like(16, dim, 6);
        let quantizer = pgivf_core::quant::Rabitq::new(dim, pgivf_core::metric::Metric::Cosine, 1);
        let (mut scratch, mut code) = (Vec::new(), vec![0u8; quantizer.code_bytes()]);
        group.throughput(Throughput::Elements(1024));
        group.bench_function(BenchmarkId::new("encode", dim), |bench| {
            bench.iter(|| {
                for (i, row) in rows.chunks_exact(dim).enumerate() {
                    let list = i % 16;
                    let centroid = &centroids[list * dim..(list + 1) * dim];
                    quantizer.encode(black_box(row), centroid, &mut scratch, &mut code);
                }
                black_box(&code);
            })
        });
        let contexts: Vec<Vec<f32>> = centroids
            .chunks_exact(dim)
            .map(|centroid| quantizer.list_context(centroid))
            .collect();
        group.bench_function(BenchmarkId::new("encode_in_list", dim), |bench| {
            bench.iter(|| {
                for (i, row) in rows.chunks_exact(dim).enumerate() {
                    let list = i % 16;
                    let centroid = &centroids[list * dim..(list + 1) * dim];
                    quantizer.encode_in_list(
                        black_box(row),
                        centroid,
                        &contexts[list],
                        &mut scratch,
                        &mut code,
                    );
                }
                black_box(&code);
            })
        });
        let rotation = Rotation::new(dim, 1);
        let mut out = vec![0.0f32; rotation.padded()];
        group.bench_function(BenchmarkId::new("rotation", dim), |bench| {
            bench.iter(|| {
                for row in rows.chunks_exact(dim) {
                    rotation.apply(black_box(row), &mut out);
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    pair_kernels,
    batch_kernels,
    stream_kernels,
    levels,
    rabitq_pages,
    rabitq_encode,
    kmeans
);
criterion_main!(benches);
