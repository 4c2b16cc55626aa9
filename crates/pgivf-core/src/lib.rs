//! The PostgreSQL-free core of pgivf.
//!
//! Everything that is hard to get right and easy to test without a server lives here. The index's
//! operations are in [`index`] (build, insert, search, bulk delete, verify, statistics), written
//! against the page store of [`store`]; what they are made of:
//!
//! - [`page`]: the on-page format; [`metric`]: the distances and what each needs; [`quant`]: the
//!   quantizers (one table of them); [`filter`]: filter columns' hashes and list summaries;
//!   [`bounds`]: how near a list's rows can be;
//! - [`kmeans`], [`sample`], [`ranking`], [`topk`]: the algorithms; [`distance`]: the SIMD kernels
//!   with runtime CPU dispatch;
//! - [`text`], [`binary`]: the `vector` type's pgvector-compatible formats.
//!
//! The extension crate (`pgivf`) only turns PostgreSQL's datums, buffers, catalogs and errors into
//! these types and back.

pub mod distance;
pub mod error;
pub mod filter;
pub mod index;
pub mod kmeans;
pub mod metric;
pub mod page;
pub mod quant;
pub mod ranking;
pub mod sample;
pub mod store;
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
