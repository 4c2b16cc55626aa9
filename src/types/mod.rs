//! The `vector` type: layout, I/O, operators, casts and aggregates.

pub mod aggregate;
pub mod cast;
pub mod io;
pub mod ops;
pub mod vector;
