//! Each backend's copy of the indexes it uses: the core's loaded index (centroids and what is
//! derived from them), and what the catalogs say about the index's columns. Keyed by the index's
//! physical file and checked against the meta page at every use (see `LoadedIndex`).

use super::catalog;
use super::filters::FilterColumns;
use super::storage::PgStore;
use crate::error::OrCorrupt;
use pgivf_core::index::{layout, LoadedIndex};
use pgivf_core::page::FormatError;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub struct IndexCache {
    pub index: LoadedIndex,
    /// Where the index's blocks were last found in shared buffers (see `PgStore::with_hints`).
    recent_buffers: RefCell<Vec<pg_sys::Buffer>>,
    /// The index's vector column and filter columns: fixed for an index's life, and looked up in
    /// the catalogs, which every insert and scan would otherwise do again.
    pub vector_column: usize,
    pub filters: FilterColumns,
    /// The table column of the vector (None for an expression), for re-ranking from the table.
    pub heap_attribute: Option<i16>,
}

impl IndexCache {
    /// The index's pages, read through this backend's buffer hints.
    pub fn store(&self, index: pg_sys::Relation) -> PgStore<'_> {
        PgStore::with_hints(index, &self.recent_buffers)
    }
}

type Key = (u32, u32, u32);

thread_local! {
    static CACHE: RefCell<HashMap<Key, Rc<IndexCache>>> = RefCell::new(HashMap::new());
}

/// Reads the meta page (always: it is what tells a stale cache entry) and returns the cached index,
/// loading it when it is new to this backend or was rebuilt.
pub fn get(index: pg_sys::Relation) -> Rc<IndexCache> {
    let store = PgStore::new(index);
    let meta = layout::read_meta(&store).or_corrupt(index);
    let key = crate::compat::relation_file(index);
    if let Some(cached) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        if cached.index.refresh(meta) {
            return cached;
        }
    }
    let vector_column = catalog::vector_column(index);
    // The operator class chose the metric at the build: a meta page that says otherwise would
    // have every scan order rows by another distance, with no other sign of the damage.
    if catalog::opclass_metric(index, vector_column).is_some_and(|metric| metric != meta.metric) {
        Err::<(), _>(FormatError::Corrupted(
            "the meta page's metric is not the operator class's",
        ))
        .or_corrupt(index);
    }
    pgrx::debug1!(
        "ivfflat: index \"{}\" loaded into this backend's cache ({} lists)",
        crate::error::relation_name(index),
        meta.lists
    );
    let loaded = Rc::new(IndexCache {
        index: LoadedIndex::load(&store, meta).or_corrupt(index),
        recent_buffers: RefCell::new(Vec::new()),
        vector_column,
        filters: FilterColumns::of(index),
        heap_attribute: catalog::heap_vector_attribute(index, vector_column),
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
