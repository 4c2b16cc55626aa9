//! Quantized lists: compact codes of each row's residual from its list centroid, scanned instead
//! of the full vectors, with distance estimates whose standard error is known so that a scan can
//! re-rank exactly the candidates that may still belong to the result.

pub mod kernels;
pub mod queue;
pub mod rabitq;
pub mod rotation;
pub mod sq8;

use crate::page::Metric;
pub use rabitq::{Rabitq, RabitqQuery};
pub use sq8::{Sq8, Sq8Query};

/// What an index's lists hold, from the `quantizer` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum QuantizerKind {
    /// Full float32 vectors (pgvector's ivfflat).
    None = 0,
    Sq8 = 1,
    Rabitq = 2,
}

impl QuantizerKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(QuantizerKind::None),
            1 => Some(QuantizerKind::Sq8),
            2 => Some(QuantizerKind::Rabitq),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QuantizerKind::None => "none",
            QuantizerKind::Sq8 => "sq8",
            QuantizerKind::Rabitq => "rabitq",
        }
    }

    /// Bytes of one row's code (0 without a quantizer).
    pub fn code_bytes(self, dim: usize) -> usize {
        match self {
            QuantizerKind::None => 0,
            QuantizerKind::Sq8 => sq8::code_bytes(dim),
            QuantizerKind::Rabitq => rabitq::code_bytes(dim),
        }
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

/// An index's quantizer, ready to encode rows and prepare queries.
#[derive(Debug, Clone)]
pub enum Quantizer {
    Sq8(Sq8),
    Rabitq(Rabitq),
}

/// A query prepared for one list's codes.
#[derive(Debug, Clone)]
pub enum PreparedQuery {
    Sq8(Sq8Query),
    Rabitq(RabitqQuery),
}

impl Quantizer {
    pub fn kind(&self) -> QuantizerKind {
        match self {
            Quantizer::Sq8(_) => QuantizerKind::Sq8,
            Quantizer::Rabitq(_) => QuantizerKind::Rabitq,
        }
    }

    pub fn code_bytes(&self) -> usize {
        match self {
            Quantizer::Sq8(q) => q.code_bytes(),
            Quantizer::Rabitq(q) => q.code_bytes(),
        }
    }

    pub fn encode(&self, row: &[f32], centroid: &[f32], scratch: &mut Vec<f32>, out: &mut [u8]) {
        match self {
            Quantizer::Sq8(q) => q.encode(row, centroid, out),
            Quantizer::Rabitq(q) => q.encode(row, centroid, scratch, out),
        }
    }

    /// Floats of [`list_context`](Self::list_context) per list.
    pub fn list_context_len(&self) -> usize {
        match self {
            Quantizer::Sq8(_) => 0,
            Quantizer::Rabitq(q) => q.padded(),
        }
    }

    /// What encoding any row of the list of `centroid` needs of the centroid besides itself
    /// (RaBitQ: its rotation), for a build to compute once per list.
    pub fn list_context(&self, centroid: &[f32]) -> Vec<f32> {
        match self {
            Quantizer::Sq8(_) => Vec::new(),
            Quantizer::Rabitq(q) => q.rotate_centroid(centroid),
        }
    }

    /// [`encode`](Self::encode) with the list's [`list_context`](Self::list_context) given: the
    /// same code.
    pub fn encode_in_list(
        &self,
        row: &[f32],
        centroid: &[f32],
        context: &[f32],
        scratch: &mut Vec<f32>,
        out: &mut [u8],
    ) {
        match self {
            Quantizer::Sq8(q) => q.encode(row, centroid, out),
            Quantizer::Rabitq(q) => q.encode_with(row, centroid, context, scratch, out),
        }
    }

    pub fn new_query(&self) -> PreparedQuery {
        match self {
            Quantizer::Sq8(_) => PreparedQuery::Sq8(Sq8Query::default()),
            Quantizer::Rabitq(_) => PreparedQuery::Rabitq(RabitqQuery::default()),
        }
    }

    /// Prepares `query` (as stored) against the list of `centroid`, reusing `into`'s allocations.
    pub fn prepare(&self, query: &[f32], centroid: &[f32], into: &mut PreparedQuery) {
        match (self, into) {
            (Quantizer::Sq8(q), PreparedQuery::Sq8(p)) => q.prepare(query, centroid, p),
            (Quantizer::Rabitq(q), PreparedQuery::Rabitq(p)) => q.prepare(query, centroid, p),
            (_, into) => {
                *into = self.new_query();
                self.prepare(query, centroid, into)
            }
        }
    }
}

impl Quantizer {
    /// The per-query part of preparing `query` (RaBitQ rotates and quantizes it once per scan).
    pub fn prepare_query(&self, query: &[f32], into: &mut PreparedQuery) {
        if let (Quantizer::Rabitq(q), PreparedQuery::Rabitq(p)) = (self, &mut *into) {
            q.prepare_query(query, p);
        }
    }

    /// The per-list part, after [`prepare_query`](Self::prepare_query) with the same query.
    pub fn prepare_list(&self, query: &[f32], centroid: &[f32], into: &mut PreparedQuery) {
        match (self, &mut *into) {
            (Quantizer::Rabitq(q), PreparedQuery::Rabitq(p)) => q.prepare_list(query, centroid, p),
            _ => self.prepare(query, centroid, into),
        }
    }
}

impl PreparedQuery {
    pub fn estimate(&self, code: &[u8]) -> Estimate {
        match self {
            PreparedQuery::Sq8(q) => q.estimate(code),
            PreparedQuery::Rabitq(q) => q.estimate(code),
        }
    }
}

/// The metric a quantizer estimates for (re-exported for the glue).
pub type QuantMetric = Metric;
