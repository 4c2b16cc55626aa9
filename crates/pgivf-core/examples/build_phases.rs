//! Where a build's time goes, without PostgreSQL: k-means++ seeding, Lloyd iterations and the
//! assignment of every row, on one thread (as a serial `CREATE INDEX`) or more, and the recall of
//! the resulting lists at a few probes (an exact scan of the probed lists), so that a change to
//! k-means shows both its time and what it does to the index.
//!
//! ```sh
//! gunzip -c ../shared/data/debian-minilm-384.base.fvecs.gz >/tmp/base.fvecs   # and query, gt.ivecs
//! cargo run --release -p pgivf-core --example build_phases -- /tmp/base.fvecs /tmp/query.fvecs /tmp/gt.ivecs 250 1
//! ```
//! Arguments: base, queries, ground truth (ivecs, cosine), lists, threads, [max iterations],
//! [samples].

use std::time::Instant;

use pgivf_core::kmeans::{self, KMeansError, KMeansMetric, KMeansParams, KMeansStage};
use rand::seq::index::sample;
use rand::SeedableRng;

fn read_vecs(path: &str) -> (Vec<Vec<u8>>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let record = 4 + dim * 4;
    (
        bytes
            .chunks_exact(record)
            .map(|r| r[4..].to_vec())
            .collect(),
        dim,
    )
}

fn floats(path: &str) -> (Vec<f32>, usize) {
    let (rows, dim) = read_vecs(path);
    let mut out = Vec::with_capacity(rows.len() * dim);
    for row in rows {
        let mut v: Vec<f32> = row
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        // Cosine: rows as the index stores them (a zero row stays zero).
        pgivf_core::metric::normalize(&mut v);
        out.extend_from_slice(&v);
    }
    (out, dim)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, dim) = floats(&args[1]);
    let (queries, _) = floats(&args[2]);
    let (truth, _) = read_vecs(&args[3]);
    let lists: usize = args[4].parse().unwrap();
    let threads: usize = args[5].parse().unwrap();
    let max_iterations: usize = args
        .get(6)
        .map_or(kmeans::DEFAULT_MAX_ITERATIONS, |s| s.parse().unwrap());
    let n = base.len() / dim;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();

    let target = args
        .get(7)
        .map_or((lists * 50).max(10_000), |s| s.parse().unwrap())
        .min(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut picked = sample(&mut rng, n, target).into_vec();
    picked.sort_unstable();
    let samples: Vec<f32> = picked
        .iter()
        .flat_map(|&i| base[i * dim..(i + 1) * dim].iter().copied())
        .collect();

    let started = Instant::now();
    let mut seeded = None;
    let mut iterations = 0;
    let mut progress = |stage: KMeansStage| -> Result<(), KMeansError> {
        match stage {
            KMeansStage::Preparing if seeded.is_none() => seeded = Some(started.elapsed()),
            KMeansStage::Updating { iteration } => iterations = iteration,
            _ => {}
        }
        Ok(())
    };
    let params = KMeansParams {
        max_iterations,
        seed: 1,
        ..KMeansParams::new(lists, KMeansMetric::Spherical)
    };
    let centroids = kmeans::train(&samples, dim, &params, &pool, &mut progress).unwrap();
    let trained = started.elapsed();
    let labels = kmeans::assign(&base, dim, &centroids, KMeansMetric::Spherical, &pool);
    let assigned = started.elapsed() - trained;
    let seeded = seeded.unwrap_or_default();
    println!(
        "{n} rows x {dim}, {lists} lists, {threads} threads, {target} samples: seeding {:.3} s, \
         {iterations} Lloyd iterations {:.3} s, assigning {:.3} s",
        seeded.as_secs_f64(),
        (trained - seeded).as_secs_f64(),
        assigned.as_secs_f64()
    );

    let mut members = vec![Vec::new(); lists];
    for (row, &list) in labels.iter().enumerate() {
        members[list as usize].push(row);
    }
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let query_count = queries.len() / dim;
    for probes in [4, 8, 16, 32, 48] {
        let mut hits = 0;
        for q in 0..query_count {
            let query = &queries[q * dim..(q + 1) * dim];
            let mut order: Vec<(f32, usize)> = (0..lists)
                .map(|j| (-dot(query, &centroids[j * dim..(j + 1) * dim]), j))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut found: Vec<(f32, usize)> = order[..probes.min(lists)]
                .iter()
                .flat_map(|&(_, j)| members[j].iter())
                .map(|&row| (-dot(query, &base[row * dim..(row + 1) * dim]), row))
                .collect();
            found.sort_by(|a, b| a.0.total_cmp(&b.0));
            let expected: Vec<usize> = truth[q][..40]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                .collect();
            hits += found
                .iter()
                .take(10)
                .filter(|(_, row)| expected.contains(row))
                .count();
        }
        println!(
            "probes {probes:3}: recall@10 {:.4}",
            hits as f64 / (10 * query_count) as f64
        );
    }
}
