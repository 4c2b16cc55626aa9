//! What inserts and scans need of an index besides its lists: the centroids and what is derived
//! from them, loaded once and kept by each backend while the index is the same build.
//!
//! Reading and decoding every centroid for each insert and short scan is what makes pgvector's
//! inserts and short scans slow; centroids never change after a build, so a backend loads them
//! once. The meta page is still read every time (it is what tells a stale copy: REINDEX, TRUNCATE
//! and VACUUM FULL make a new build id), and its one field that changes after a build, the
//! largest row norm, is taken from that read without reloading anything.

use std::cell::{Cell, OnceCell, RefCell};

use crate::kmeans::{self, BetweenRows};
use crate::page::{FormatError, Meta};
use crate::quant::Quantizer;
use crate::ranking::CentroidRanker;
use crate::store::PageStore;

use super::layout;

pub struct LoadedIndex {
    meta: Cell<Meta>,
    /// lists × dimensions, row-major.
    pub centroids: Vec<f32>,
    /// The centroids a byte a dimension, to rank the lists a scan probes.
    pub ranker: CentroidRanker,
    /// With quantized lists: the quantizer their codes were made with.
    pub quantizer: Option<Box<dyn Quantizer>>,
    /// The centroids' squared norms, for inserts' choice of lists (made at the first insert).
    centroid_norms: OnceCell<Vec<f32>>,
    /// Per list, what encoding a row for it needs of its centroid (RaBitQ: the rotated centroid),
    /// made at a list's first insert: otherwise each of a row's codes costs a second rotation. At
    /// most the centroids' size again.
    list_contexts: RefCell<Vec<Option<Box<[f32]>>>>,
    /// In an index that spills, what inserts' second lists need of each list's centroid.
    pub between_rows: RefCell<BetweenRows>,
}

impl LoadedIndex {
    /// Loads an index whose meta page reads `meta`.
    pub fn load<S: PageStore>(store: &S, meta: Meta) -> Result<Self, FormatError> {
        let centroids = layout::read_centroids(store, &meta)?;
        let quantizer = layout::read_quantizer(store, &meta)?;
        let ranker = CentroidRanker::new(&centroids, meta.dimensions as usize);
        Ok(LoadedIndex {
            meta: Cell::new(meta),
            centroids,
            ranker,
            quantizer,
            centroid_norms: OnceCell::new(),
            list_contexts: RefCell::new(Vec::new()),
            between_rows: RefCell::new(BetweenRows::new()),
        })
    }

    /// The meta page as last read.
    pub fn meta(&self) -> Meta {
        self.meta.get()
    }

    /// Whether a meta page just read is still this build's; if so it is taken as the current one.
    pub fn refresh(&self, current: Meta) -> bool {
        let loaded = self.meta.get();
        let same = Meta {
            max_norm: loaded.max_norm,
            ..current
        } == loaded;
        if same {
            self.meta.set(current);
        }
        same
    }

    pub fn dimensions(&self) -> usize {
        self.meta.get().dimensions as usize
    }

    pub fn centroid(&self, list: u32) -> &[f32] {
        let dim = self.dimensions();
        &self.centroids[list as usize * dim..(list as usize + 1) * dim]
    }

    /// The centroids' squared norms (see `kmeans::centroid_norms`).
    pub fn centroid_norms(&self) -> &[f32] {
        self.centroid_norms
            .get_or_init(|| kmeans::centroid_norms(&self.centroids, self.dimensions()))
    }

    /// Encodes `row` for list `list` with `quantizer` (the index's), as `Quantizer::encode` would.
    pub fn encode(
        &self,
        quantizer: &dyn Quantizer,
        list: u32,
        row: &[f32],
        scratch: &mut Vec<f32>,
        out: &mut [u8],
    ) {
        let centroid = self.centroid(list);
        if quantizer.list_context_len() == 0 {
            quantizer.encode_in_list(row, centroid, &[], scratch, out);
            return;
        }
        let mut contexts = self.list_contexts.borrow_mut();
        let lists = self.meta.get().lists as usize;
        if contexts.len() != lists {
            contexts.resize(lists, None);
        }
        let context = contexts[list as usize]
            .get_or_insert_with(|| quantizer.list_context(centroid).into_boxed_slice());
        quantizer.encode_in_list(row, centroid, context, scratch, out);
    }
}
