//! Vectors whose coordinates are near f32's limits (pgvector accepts anything finite: FLT_MAX,
//! denormals, -0): distances between them overflow f32 to infinity, and inner products of opposite
//! infinities are NaN. Training, assignment and nearest-centroid search must still give every row a
//! valid list, as pgvector's do, never panic.
use pgivf_core::kmeans::{self, KMeansMetric, KMeansParams, KMeansStage};

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

fn no_progress() -> impl FnMut(KMeansStage) -> Result<(), kmeans::KMeansError> {
    |_| Ok(())
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    v.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
}

const MAX: f32 = f32::MAX;

fn rows() -> Vec<Vec<f32>> {
    vec![
        vec![1.0, 2.0, 3.0],
        vec![1e-38, -0.0, MAX],
        vec![4.0, 5.0, 6.0],
        vec![-MAX, MAX, -MAX],
        vec![MAX, MAX, MAX],
        vec![1e-45, 0.0, -1e-45],
        vec![-7.0, 0.5, 2.0],
    ]
}

#[test]
fn training_and_assignment_survive_overflowing_distances() {
    let pool = pool();
    for metric in [KMeansMetric::L2, KMeansMetric::Spherical] {
        let samples: Vec<f32> = rows()
            .iter()
            .flat_map(|r| match metric {
                KMeansMetric::L2 => r.clone(),
                KMeansMetric::Spherical => normalized(r),
            })
            .collect();
        for k in [1, 2, 3, 7, 10] {
            let centroids = kmeans::train(
                &samples,
                3,
                &KMeansParams::new(k, metric),
                &pool,
                &mut no_progress(),
            )
            .unwrap_or_else(|e| panic!("{metric:?}, k = {k}: {e}"));
            assert_eq!(centroids.len(), k * 3);
            assert!(
                centroids.iter().all(|c| c.is_finite()),
                "{metric:?} k = {k}"
            );
            // Rows are assigned raw (inner product keeps them unnormalised).
            let raw: Vec<f32> = rows().concat();
            let labels = kmeans::assign(&raw, 3, &centroids, metric, &pool);
            assert_eq!(labels.len(), rows().len());
            for (row, &label) in rows().iter().zip(&labels) {
                assert!((label as usize) < k, "{metric:?} k = {k}: label {label}");
                assert_eq!(
                    label,
                    kmeans::nearest(row, &centroids, 3, metric),
                    "{row:?}"
                );
            }
        }
    }
}

#[test]
fn nearest_prefers_a_finite_distance_and_never_returns_out_of_range() {
    // Row at FLT_MAX: every f32 distance is infinite, yet the nearest centroid is well defined.
    let centroids = [0.0, 0.0, 0.0, MAX, MAX, MAX, -MAX, -MAX, -MAX];
    assert_eq!(
        kmeans::nearest(&[MAX, MAX, MAX], &centroids, 3, KMeansMetric::L2),
        1
    );
    assert_eq!(
        kmeans::nearest(&[-MAX, -MAX, -MAX], &centroids, 3, KMeansMetric::L2),
        2
    );
    assert_eq!(
        kmeans::nearest(&[1.0, 1.0, 1.0], &centroids, 3, KMeansMetric::L2),
        0
    );
    let unit = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    assert_eq!(
        kmeans::nearest(&[MAX, -MAX, 0.0], &unit, 3, KMeansMetric::Spherical),
        0
    );
    assert_eq!(
        kmeans::nearest(&[-MAX, MAX, 0.0], &unit, 3, KMeansMetric::Spherical),
        1
    );
}
