//! Synthetic data and reference implementations shared by the k-means tests.
#![allow(dead_code)]

use pgivf_core::kmeans::{self, KMeansError, KMeansMetric, KMeansStage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

pub fn no_progress() -> impl FnMut(KMeansStage) -> Result<(), KMeansError> {
    |_| Ok(())
}

pub fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u: f64 = 1.0 - rng.gen::<f64>();
    let v: f64 = rng.gen();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

pub fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// `per_blob` gaussian samples of standard deviation `spread` around each of `blobs` centres
/// drawn uniformly from [-10, 10]^dim, interleaved so that no blob is contiguous.
pub struct Blobs {
    pub samples: Vec<f32>,
    pub centres: Vec<f32>,
}

pub fn blobs(blobs: usize, per_blob: usize, dim: usize, spread: f32, seed: u64) -> Blobs {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..blobs * dim)
        .map(|_| rng.gen_range(-10.0..10.0))
        .collect();
    let mut samples = Vec::with_capacity(blobs * per_blob * dim);
    for _ in 0..per_blob {
        for centre in centres.chunks_exact(dim) {
            samples.extend(centre.iter().map(|&c| c + spread * gaussian(&mut rng)));
        }
    }
    Blobs { samples, centres }
}

pub fn normalize_rows(values: &mut [f32], dim: usize) {
    for row in values.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
}

/// Sum of squared distances from each sample to its nearest centroid, in f64.
pub fn inertia(samples: &[f32], centroids: &[f32], dim: usize) -> f64 {
    samples
        .chunks_exact(dim)
        .map(|row| {
            let j = kmeans::nearest(row, centroids, dim, KMeansMetric::L2) as usize;
            squared_distance(row, &centroids[j * dim..][..dim])
        })
        .sum()
}

pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

/// Textbook Lloyd from the given centroids: exact assignments, f64 means, empty clusters keep
/// their centroid. Stops when no assignment changes.
pub fn plain_lloyd(samples: &[f32], init: &[f32], dim: usize, max_iterations: usize) -> Vec<f32> {
    let k = init.len() / dim;
    let mut centroids = init.to_vec();
    let mut previous: Vec<u32> = Vec::new();
    for _ in 0..max_iterations {
        let labels: Vec<u32> = samples
            .chunks_exact(dim)
            .map(|row| kmeans::nearest(row, &centroids, dim, KMeansMetric::L2))
            .collect();
        if labels == previous {
            break;
        }
        let mut sums = vec![0.0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (row, &j) in samples.chunks_exact(dim).zip(&labels) {
            let j = j as usize;
            counts[j] += 1;
            for (s, &v) in sums[j * dim..][..dim].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let means = centroids.chunks_exact_mut(dim).zip(sums.chunks_exact(dim));
        for ((centroid, sum), &count) in means.zip(&counts) {
            if count > 0 {
                for (c, &s) in centroid.iter_mut().zip(sum) {
                    *c = (s / count as f64) as f32;
                }
            }
        }
        previous = labels;
    }
    centroids
}
