//! The PostgreSQL-free core of pgivf.
//!
//! Everything that is hard to get right and easy to test without a server lives here: the
//! pgvector-compatible text format, the SIMD distance kernels with runtime CPU dispatch, k-means,
//! lazy top-k selection and the on-page list format. The extension crate (`pgivf`) only converts
//! PostgreSQL datums and buffers into slices and calls into this crate.

pub mod distance;
pub mod error;
pub mod filter;
pub mod kmeans;
pub mod page;
pub mod quant;
pub mod ranking;
pub mod sample;
pub mod text;
pub mod topk;

pub use error::VectorError;

/// Largest number of dimensions a `vector` value may have (pgvector's `VECTOR_MAX_DIM`).
pub const VECTOR_MAX_DIM: usize = 16000;

pub mod binary;
pub mod bounds;

/// pgvector's `CheckElement`: vectors never hold NaN or infinity.
pub fn check_element(value: f32) -> Result<(), VectorError> {
    if value.is_nan() {
        Err(VectorError::NaN)
    } else if value.is_infinite() {
        Err(VectorError::Infinite)
    } else {
        Ok(())
    }
}
