//! Quantized lists: compact codes of each row's residual from its list centroid, scanned instead
//! of the full vectors, with distance estimates whose standard error is known so that a scan can
//! re-rank exactly the candidates that may still belong to the result.

pub mod kernels;
pub mod queue;
pub mod rabitq;
pub mod rotation;
pub mod sq8;

use crate::metric::Metric;
pub use rabitq::{Rabitq, RabitqQuery};
pub use sq8::{Sq8, Sq8Query};

/// What an index's lists hold (the `quantizer` option): full vectors, or the codes of one of the
/// [`QUANTIZERS`]. Stored in the meta page as its code (0 for full vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizerKind(Option<&'static Registration>);

impl PartialEq for Registration {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
    }
}
impl Eq for Registration {}

impl QuantizerKind {
    /// Full float32 vectors (pgvector's ivfflat).
    pub const NONE: QuantizerKind = QuantizerKind(None);
    /// What `quantizer = 'none'` is called.
    pub const NONE_NAME: &'static str = "none";

    /// Every value of the option, `none` first.
    pub fn all() -> impl Iterator<Item = QuantizerKind> {
        std::iter::once(QuantizerKind::NONE)
            .chain(QUANTIZERS.iter().map(|&r| QuantizerKind(Some(r))))
    }

    /// The kind of a registered quantizer.
    pub const fn of(registration: &'static Registration) -> Self {
        QuantizerKind(Some(registration))
    }

    pub fn from_code(code: u32) -> Option<Self> {
        QuantizerKind::all().find(|kind| kind.code() == code)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        QuantizerKind::all().find(|kind| kind.name() == name)
    }

    pub fn code(self) -> u32 {
        self.0.map_or(0, |r| r.code)
    }

    pub fn name(self) -> &'static str {
        self.0.map_or(Self::NONE_NAME, |r| r.name)
    }

    pub fn is_none(self) -> bool {
        self.0.is_none()
    }

    pub fn registration(self) -> Option<&'static Registration> {
        self.0
    }

    /// Bytes of one row's code (0 without a quantizer).
    pub fn code_bytes(self, dim: usize) -> usize {
        self.0.map_or(0, |r| (r.code_bytes)(dim))
    }

    /// Floats of the parameters its quantizer pages hold (SQ8's grid; 0 for most).
    pub fn parameter_floats(self, dim: usize) -> usize {
        self.0.map_or(0, |r| (r.parameter_floats)(dim))
    }
}

/// Where a quantized index finds the full vectors it re-ranks with (the `rerank` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Rerank {
    /// In the index, on vector pages of their own.
    Index = 0,
    /// In the table: the index holds codes only.
    Heap = 1,
}

/// A distance estimate: the true distance lies within `slack` plus a few `sigma` of `distance`.
/// `sigma` is a standard error (the error is about normal); `slack` bounds the rest strictly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub distance: f32,
    pub sigma: f32,
    pub slack: f32,
}

impl Estimate {
    /// The distance below which the row is taken not to be, `factor` standard errors down.
    #[inline]
    pub fn lower_bound(&self, factor: f32) -> f32 {
        self.distance - factor * self.sigma - self.slack
    }

    /// `[lower, upper]`: `factor` standard errors (and the slack) either side of the estimate.
    #[inline]
    pub fn bounds(&self, factor: f32) -> [f32; 2] {
        let width = factor * self.sigma + self.slack;
        [self.distance - width, self.distance + width]
    }
}

/// A quantizer the index can be built with: one entry of [`QUANTIZERS`], the single place that
/// ties its name (the `quantizer` option's value), its meta page code and its code size to the code
/// that trains and loads it.
#[derive(Debug)]
pub struct Registration {
    pub name: &'static str,
    /// Never 0 (full vectors) and never reused: it is on disk.
    pub code: u32,
    pub code_bytes: fn(dim: usize) -> usize,
    pub parameter_floats: fn(dim: usize) -> usize,
    pub train: fn(&Training<'_>) -> Box<dyn Quantizer>,
    pub load: fn(&Loading<'_>) -> Result<Box<dyn Quantizer>, crate::page::FormatError>,
}

/// Every quantizer; a new one is a module of its own and one line here.
pub static QUANTIZERS: &[&Registration] = &[&sq8::REGISTRATION, &rabitq::REGISTRATION];

/// What a build gives a quantizer to learn from.
pub struct Training<'a> {
    pub dim: usize,
    pub metric: Metric,
    pub seed: u64,
    /// The k-means sample (as stored: normalised for cosine), `dim` wide.
    pub samples: &'a [f32],
    pub centroids: &'a [f32],
    pub pool: &'a rayon::ThreadPool,
}

/// What an index holds of a quantizer: the meta page's seed and its parameter pages' floats.
pub struct Loading<'a> {
    pub dim: usize,
    pub metric: Metric,
    pub seed: u64,
    pub parameters: &'a [f32],
}

/// An index's quantizer, ready to encode rows and prepare queries.
pub trait Quantizer: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> QuantizerKind;

    fn code_bytes(&self) -> usize;

    /// What the index stores on its quantizer pages, [`QuantizerKind::parameter_floats`] long.
    fn parameters(&self) -> Vec<f32> {
        Vec::new()
    }

    /// Floats of [`list_context`](Self::list_context) per list.
    fn list_context_len(&self) -> usize {
        0
    }

    /// What encoding any row of the list of `centroid` needs of the centroid besides itself
    /// (RaBitQ: its rotation), for a build to compute once per list.
    fn list_context(&self, _centroid: &[f32]) -> Vec<f32> {
        Vec::new()
    }

    /// Encodes `row` (as stored) against its list's `centroid` into `out`, given the list's
    /// [`list_context`](Self::list_context). `scratch` is reused between calls.
    fn encode_in_list(
        &self,
        row: &[f32],
        centroid: &[f32],
        context: &[f32],
        scratch: &mut Vec<f32>,
        out: &mut [u8],
    );

    /// [`encode_in_list`](Self::encode_in_list), computing the list's context itself: the same
    /// code.
    fn encode(&self, row: &[f32], centroid: &[f32], scratch: &mut Vec<f32>, out: &mut [u8]) {
        let context = self.list_context(centroid);
        self.encode_in_list(row, centroid, &context, scratch, out);
    }

    fn new_query(&self) -> Box<dyn PreparedQuery>;

    /// The per-query part of preparing `query` (as stored), once per scan.
    fn prepare_query(&self, _query: &[f32], _into: &mut dyn PreparedQuery) {}

    /// The per-list part, after [`prepare_query`](Self::prepare_query) with the same query.
    fn prepare_list(&self, query: &[f32], centroid: &[f32], into: &mut dyn PreparedQuery);
}

/// A query prepared for one list's codes.
pub trait PreparedQuery: std::any::Any {
    fn estimate(&self, code: &[u8]) -> Estimate;

    /// Queues the live entries of a run of whole entries of `format` (one page's worth) whose
    /// lower bound, `factor` standard errors down, is at most `threshold`. `ahead` is memory the
    /// caller reads next (the list's next page), to prefetch while the entries are computed.
    #[allow(clippy::too_many_arguments)]
    fn queue_entries(
        &self,
        entries: &[u8],
        ahead: &[u8],
        format: crate::page::EntryFormat,
        factor: f32,
        threshold: f32,
        max_offset: u16,
        queue: &mut queue::RerankQueue,
    ) -> queue::Queued {
        crate::distance::prefetch(ahead);
        queue::queue_with(entries, format, threshold, max_offset, queue, |code| {
            self.estimate(code).bounds(factor)
        })
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// The concrete prepared query a quantizer made with [`Quantizer::new_query`].
pub(crate) fn prepared<T: 'static>(into: &mut dyn PreparedQuery) -> &mut T {
    into.as_any_mut()
        .downcast_mut::<T>()
        .expect("a query prepared by the same quantizer")
}
