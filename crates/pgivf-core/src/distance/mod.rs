//! Distance kernels. PLACEHOLDER scalar versions: the public API below is fixed (other modules use it);
//! the SIMD implementation with runtime dispatch replaces the bodies.

/// Squared Euclidean distance, accumulated in f32 like pgvector.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Inner product, accumulated in f32 like pgvector.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
