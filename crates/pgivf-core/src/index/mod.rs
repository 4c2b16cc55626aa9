//! The index's operations, written against a [`PageStore`](crate::store::PageStore): the
//! extension runs them over PostgreSQL's buffers, the tests over pages in memory.
//!
//! - [`build`]: what the index will be, its lists (k-means over a sample, the quantizer), and
//!   every table row filed under its list;
//! - [`insert`]: a row added after the build;
//! - [`search`]: which lists a query probes, and rows out in exact distance order;
//! - [`vacuum`]: the entries of dead rows marked dead, for inserts to reuse;
//! - [`verify`] and [`stats`]: the index checked, and measured for drift.
//!
//! [`layout`] holds the fixed pages (meta, centroids, directory, summaries, quantizer), [`chain`]
//! the chains of entry pages every operation walks or extends, and [`loaded`] what a backend keeps
//! of an index between operations.

pub mod build;
pub mod chain;
pub mod insert;
pub mod layout;
pub mod loaded;
pub mod search;
pub mod stats;
pub mod vacuum;
pub mod verify;

#[cfg(test)]
mod tests;

pub use loaded::LoadedIndex;
