//! Per-backend cache of an index's meta page and centroids.
//!
//! Every insert and every scan needs all centroids; reading and decoding the centroid pages each time
//! is what makes pgvector's inserts and short scans slow. Centroids never change after a build, so
//! each backend keeps one copy per index, keyed by the index's physical file and checked against the
//! random build id on the meta page (which REINDEX, TRUNCATE and VACUUM FULL all change).

use super::filters::FilterColumns;
use super::storage::{Locked, Mode, OrCorrupt};
use pgivf_core::kmeans::BetweenRows;
use pgivf_core::page::{self, DirectoryEntry, Meta};
use pgivf_core::quant::{Quantizer, QuantizerKind, Rabitq, Sq8};
use pgivf_core::ranking::CentroidRanker;
use pgrx::pg_sys;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub struct IndexCache {
    pub meta: Meta,
    /// lists × dimensions, row-major.
    pub centroids: Vec<f32>,
    /// The centroids a byte a dimension, to rank the lists a scan probes.
    pub ranker: CentroidRanker,
    /// The shared buffer each block was last found in, so that scans can pin it again with
    /// ReadRecentBuffer instead of a buffer-table lookup (a hash probe that misses the CPU cache and
    /// was a quarter of a scan's time).
    pub recent_buffers: RefCell<Vec<pg_sys::Buffer>>,
    /// The index's vector column and filter columns: fixed for an index's life, and looked up in the
    /// catalogs, which every insert and scan would otherwise do again.
    pub vector_column: usize,
    pub filters: FilterColumns,
    /// With quantized lists: the quantizer their codes were made with.
    pub quantizer: Option<Quantizer>,
    /// The table column of the vector (None for an expression), for re-ranking from the heap.
    pub heap_attribute: Option<i16>,
    /// The centroids' squared norms, for inserts' choice of lists (made at the first insert).
    centroid_norms: OnceCell<Vec<f32>>,
    /// Per list, what encoding a row for it needs of its centroid (RaBitQ: the rotated centroid),
    /// made at a list's first insert in this backend: otherwise each of a row's codes costs a second
    /// rotation. At most the centroids' size again.
    list_contexts: RefCell<Vec<Option<Box<[f32]>>>>,
    /// In an index that spills, what inserts' second lists need of each list's centroid.
    pub between_rows: RefCell<BetweenRows>,
}

impl IndexCache {
    /// The centroids' squared norms (see `kmeans::centroid_norms`).
    pub fn centroid_norms(&self) -> &[f32] {
        self.centroid_norms.get_or_init(|| {
            pgivf_core::kmeans::centroid_norms(&self.centroids, self.meta.dimensions as usize)
        })
    }

    /// Encodes `row` for list `list` with `quantizer` (the index's), as `Quantizer::encode` would.
    pub fn encode(
        &self,
        quantizer: &Quantizer,
        list: u32,
        row: &[f32],
        scratch: &mut Vec<f32>,
        out: &mut [u8],
    ) {
        let dim = self.meta.dimensions as usize;
        let list = list as usize;
        let centroid = &self.centroids[list * dim..(list + 1) * dim];
        if quantizer.list_context_len() == 0 {
            quantizer.encode(row, centroid, scratch, out);
            return;
        }
        let mut contexts = self.list_contexts.borrow_mut();
        if contexts.len() != self.meta.lists as usize {
            contexts.resize(self.meta.lists as usize, None);
        }
        let context = contexts[list]
            .get_or_insert_with(|| quantizer.list_context(centroid).into_boxed_slice());
        quantizer.encode_in_list(row, centroid, context, scratch, out);
    }
}

type Key = (u32, u32, u32);

thread_local! {
    static CACHE: RefCell<HashMap<Key, Rc<IndexCache>>> = RefCell::new(HashMap::new());
}

/// Reads the meta page (always: it is what tells a stale cache entry) and returns the cached centroids,
/// loading them when the index is new to this backend or was rebuilt.
pub fn get(index: pg_sys::Relation) -> Rc<IndexCache> {
    let meta = read_meta(index);
    // SAFETY: `index` is open.
    let node = unsafe { (*index).rd_node };
    let key = (node.spcNode.into(), node.dbNode.into(), node.relNode.into());
    if let Some(cached) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        if cached.meta == meta {
            return cached;
        }
    }
    let mut centroids = Vec::with_capacity(meta.lists as usize * meta.dimensions as usize);
    for block in meta.centroid_start..meta.centroid_start + meta.centroid_pages {
        let buffer = Locked::read(index, block, Mode::Share);
        page::read_centroids(buffer.page(), &mut centroids).or_corrupt(index);
    }
    if centroids.len() != meta.lists as usize * meta.dimensions as usize {
        super::storage::corrupted(
            index,
            page::FormatError::Corrupted("wrong number of centroids"),
        );
    }
    // The operator class chose the metric at the build: a meta page that says otherwise would have
    // every scan order rows by another distance, with no other sign of the damage.
    if meta.metric != super::metric_of(index) {
        super::storage::corrupted(
            index,
            page::FormatError::Corrupted("the meta page's metric is not the operator class's"),
        );
    }
    let vector_column = super::vector_column(index);
    let ranker = CentroidRanker::new(&centroids, meta.dimensions as usize);
    let loaded = Rc::new(IndexCache {
        meta,
        centroids,
        ranker,
        recent_buffers: RefCell::new(Vec::new()),
        vector_column,
        filters: FilterColumns::of(index),
        quantizer: read_quantizer(index, &meta),
        heap_attribute: super::heap_vector_attribute(index, vector_column),
        centroid_norms: OnceCell::new(),
        list_contexts: RefCell::new(Vec::new()),
        between_rows: RefCell::new(BetweenRows::new()),
    });
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        // Bounded: a backend touching very many ivfflat indexes just reloads.
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(key, loaded.clone());
    });
    loaded
}

fn read_quantizer(index: pg_sys::Relation, meta: &Meta) -> Option<Quantizer> {
    let dim = meta.dimensions as usize;
    match meta.quantizer {
        QuantizerKind::None => None,
        QuantizerKind::Rabitq => Some(Quantizer::Rabitq(Rabitq::new(
            dim,
            meta.metric,
            meta.quantizer_seed,
        ))),
        QuantizerKind::Sq8 => {
            let mut grid = Vec::with_capacity(2 * dim);
            for block in meta.quantizer_start..meta.quantizer_start + meta.quantizer_pages {
                let buffer = Locked::read(index, block, Mode::Share);
                page::read_quantizer_page(buffer.page(), &mut grid).or_corrupt(index);
            }
            if grid.len() != 2 * dim || grid.iter().any(|x| !x.is_finite()) {
                super::storage::corrupted(
                    index,
                    page::FormatError::Corrupted("the quantizer's grid is damaged"),
                );
            }
            let step = grid.split_off(dim);
            Some(Quantizer::Sq8(Sq8::from_parts(meta.metric, grid, step)))
        }
    }
}

pub fn read_meta(index: pg_sys::Relation) -> Meta {
    let buffer = Locked::read(index, 0, Mode::Share);
    Meta::read(buffer.page()).or_corrupt(index)
}

/// Every list's radius, one directory page read at a time.
pub fn read_radii(index: pg_sys::Relation, meta: &Meta) -> Vec<f32> {
    let mut radii = Vec::with_capacity(meta.lists as usize);
    // Only the lists' slots: a quantized index's vector chains come after them.
    let list_pages = (meta.lists as usize).div_ceil(page::DIRECTORY_ENTRIES_PER_PAGE) as u32;
    for page_number in 0..list_pages {
        let buffer = Locked::read(index, meta.directory_start + page_number, Mode::Share);
        let first = page_number as usize * page::DIRECTORY_ENTRIES_PER_PAGE;
        let count = page::DIRECTORY_ENTRIES_PER_PAGE.min(meta.lists as usize - first);
        for slot in 0..count {
            radii.push(
                page::read_directory_entry(buffer.page(), slot)
                    .or_corrupt(index)
                    .radius,
            );
        }
    }
    radii
}

/// [`read_directory`] through the backend's buffer hints for the index (scans read the same
/// directory page for every list they probe).
pub fn read_directory_hinted(
    index: pg_sys::Relation,
    cache: &IndexCache,
    list: u32,
) -> DirectoryEntry {
    let (block, slot) = cache.meta.directory_slot(list);
    let buffer = Locked::read_recent(index, block, &mut cache.recent_buffers.borrow_mut());
    page::read_directory_entry(buffer.page(), slot).or_corrupt(index)
}

/// List `list`'s directory entry (head, tail and free-slot hint), read under a share lock.
pub fn read_directory(index: pg_sys::Relation, meta: &Meta, list: u32) -> DirectoryEntry {
    let (block, slot) = meta.directory_slot(list);
    let buffer = Locked::read(index, block, Mode::Share);
    page::read_directory_entry(buffer.page(), slot).or_corrupt(index)
}
