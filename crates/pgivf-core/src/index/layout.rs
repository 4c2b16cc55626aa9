//! The index's fixed pages: the meta page, centroids, the directory of chains, the lists' filter
//! summaries and the quantizer's parameters (see `page` for their bytes). Written once by a
//! build; afterwards only directory entries, summaries and the meta page's largest norm change.

use crate::filter::{FilterQuery, Summary};
use crate::metric::Metric;
use crate::page::{
    self, DirectoryEntry, FormatError, Meta, PageKind, DIRECTORY_ENTRIES_PER_PAGE, INVALID_BLOCK,
    SUMMARIES_PER_PAGE,
};
use crate::quant::{Loading, Quantizer, QuantizerKind, Rerank};
use crate::store::{Image, LockedPage, PageStore};

/// What an index's structure is made of, decided before its pages are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub dimensions: usize,
    pub lists: usize,
    pub metric: Metric,
    pub filter_columns: usize,
    pub quantizer: QuantizerKind,
    pub rerank: Rerank,
    /// Whether rows get a second, spilled entry (see `kmeans::Spiller`).
    pub spill: bool,
    /// Random per build, so that backends tell their cached centroids from a rebuilt index's.
    pub build_id: u64,
    /// The quantizer's seed (RaBitQ's rotation).
    pub quantizer_seed: u64,
}

const EMPTY_CHAIN: DirectoryEntry = DirectoryEntry {
    head: INVALID_BLOCK,
    tail: INVALID_BLOCK,
    free_hint: INVALID_BLOCK,
    radius: 0.0,
};

/// Writes the meta, centroid, directory, summary and quantizer pages (blocks 0, 1, ... of an
/// empty index, in that order) with every chain empty, and returns the meta page's content.
pub fn write_structure<S: PageStore>(
    store: &S,
    shape: &Shape,
    centroids: &[f32],
    quantizer: Option<&dyn Quantizer>,
) -> Result<Meta, FormatError> {
    let dim = shape.dimensions;
    let centroid_pages = page::centroid_pages(shape.lists, dim);
    let parameters = quantizer.map(|q| q.parameters()).unwrap_or_default();
    let quantizer_pages = page::parameter_pages(parameters.len());
    let summary_pages = if shape.filter_columns == 0 {
        0
    } else {
        shape.lists.div_ceil(SUMMARIES_PER_PAGE)
    };
    let mut meta = Meta {
        dimensions: dim as u32,
        lists: shape.lists as u32,
        metric: shape.metric,
        build_id: shape.build_id,
        centroid_start: 1,
        centroid_pages: centroid_pages as u32,
        directory_start: 1 + centroid_pages as u32,
        directory_pages: 0,
        rows_at_build: 0,
        filter_columns: shape.filter_columns as u32,
        summary_start: 0,
        summary_pages: summary_pages as u32,
        radii: true,
        max_norm: 0.0,
        // With fewer than two lists there is nowhere to spill to.
        spill: shape.spill && quantizer.is_some() && shape.lists > 1,
        quantizer: quantizer.map_or(QuantizerKind::NONE, |q| q.kind()),
        rerank: shape.rerank,
        quantizer_start: 0,
        quantizer_pages: quantizer_pages as u32,
        quantizer_seed: shape.quantizer_seed,
    };
    let chains = meta.chains() as usize;
    let directory_pages = chains.div_ceil(DIRECTORY_ENTRIES_PER_PAGE);
    meta.directory_pages = directory_pages as u32;
    let after_directory = 1 + (centroid_pages + directory_pages) as u32;
    if summary_pages > 0 {
        meta.summary_start = after_directory;
    }
    if quantizer_pages > 0 {
        meta.quantizer_start = after_directory + summary_pages as u32;
    }

    let block = new_page(store, PageKind::Meta, |bytes| meta.write(bytes))?;
    assert_eq!(block, 0, "the meta page must be block 0 of a new index");
    for number in 0..centroid_pages {
        new_page(store, PageKind::Centroids, |bytes| {
            page::write_centroids(bytes, centroids, dim, number)
        })?;
    }
    for first in (0..chains).step_by(DIRECTORY_ENTRIES_PER_PAGE) {
        let count = DIRECTORY_ENTRIES_PER_PAGE.min(chains - first);
        new_page(store, PageKind::Directory, |bytes| {
            for slot in 0..count {
                page::write_directory_entry(bytes, slot, EMPTY_CHAIN);
            }
        })?;
    }
    let empty = Summary::default();
    for first in (0..shape.lists)
        .step_by(SUMMARIES_PER_PAGE)
        .take(summary_pages)
    {
        let count = SUMMARIES_PER_PAGE.min(shape.lists - first);
        new_page(store, PageKind::Summaries, |bytes| {
            for slot in 0..count {
                page::write_summary(bytes, slot, &empty);
            }
        })?;
    }
    for number in 0..quantizer_pages {
        new_page(store, PageKind::Quantizer, |bytes| {
            page::write_quantizer_page(bytes, &parameters, number)
        })?;
    }
    Ok(meta)
}

/// Adds a page of `kind` at the end of the index, filled by `fill`; returns its block.
pub(crate) fn new_page<S: PageStore>(
    store: &S,
    kind: PageKind,
    fill: impl FnOnce(&mut [u8]),
) -> Result<u32, FormatError> {
    let page = store.extend()?;
    let image = Image::New {
        kind,
        first_entry: 0,
    };
    store.log([(&page, image)], |[bytes]| {
        fill(bytes);
        Ok(())
    })?;
    Ok(page.block())
}

pub fn read_meta<S: PageStore>(store: &S) -> Result<Meta, FormatError> {
    Meta::read(&store.read(0)?.bytes())
}

/// Records what a finished build found: its row count and the largest norm among them.
pub fn finish_meta<S: PageStore>(store: &S, rows: u64, max_norm: f32) -> Result<(), FormatError> {
    let page = store.lock(0)?;
    let mut meta = Meta::read(&page.bytes())?;
    meta.rows_at_build = rows;
    meta.max_norm = max_norm;
    store.log([(&page, Image::Existing)], |[bytes]| {
        meta.write(bytes);
        Ok(())
    })
}

/// Raises the index's largest norm to `norm` if it is below (inserts call it before adding a
/// row, so that a scan seeing the row sees a norm that covers it).
pub fn widen_max_norm<S: PageStore>(store: &S, norm: f32) -> Result<(), FormatError> {
    let page = store.lock(0)?;
    let mut meta = Meta::read(&page.bytes())?;
    if meta.max_norm >= norm {
        return Ok(());
    }
    meta.max_norm = norm;
    store.log([(&page, Image::Existing)], |[bytes]| {
        meta.write(bytes);
        Ok(())
    })
}

/// Every centroid, lists × dimensions, row-major.
pub fn read_centroids<S: PageStore>(store: &S, meta: &Meta) -> Result<Vec<f32>, FormatError> {
    let mut centroids = Vec::with_capacity(meta.lists as usize * meta.dimensions as usize);
    for block in meta.centroid_start..meta.centroid_start + meta.centroid_pages {
        page::read_centroids(&store.read(block)?.bytes(), &mut centroids)?;
    }
    if centroids.len() != meta.lists as usize * meta.dimensions as usize {
        return Err(FormatError::Corrupted("wrong number of centroids"));
    }
    Ok(centroids)
}

/// The index's quantizer, from the meta page and its parameter pages; None for full vectors.
pub fn read_quantizer<S: PageStore>(
    store: &S,
    meta: &Meta,
) -> Result<Option<Box<dyn Quantizer>>, FormatError> {
    let Some(registration) = meta.quantizer.registration() else {
        return Ok(None);
    };
    let mut parameters = Vec::new();
    for block in meta.quantizer_start..meta.quantizer_start + meta.quantizer_pages {
        page::read_quantizer_page(&store.read(block)?.bytes(), &mut parameters)?;
    }
    let dim = meta.dimensions as usize;
    parameters.truncate(meta.quantizer.parameter_floats(dim));
    let loading = Loading {
        dim,
        metric: meta.metric,
        seed: meta.quantizer_seed,
        parameters: &parameters,
    };
    (registration.load)(&loading).map(Some)
}

/// Chain `chain`'s directory entry (head, tail, free-slot hint, radius), read under a share lock.
pub fn read_directory<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
) -> Result<DirectoryEntry, FormatError> {
    let (block, slot) = meta.directory_slot(chain);
    page::read_directory_entry(&store.read(block)?.bytes(), slot)
}

/// Changes one chain's directory entry under the directory page's exclusive lock, in its own
/// record, when `update` says it changed it.
pub fn update_directory<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
    update: impl FnOnce(&mut DirectoryEntry) -> bool,
) -> Result<(), FormatError> {
    let (block, slot) = meta.directory_slot(chain);
    let page = store.lock(block)?;
    let mut entry = page::read_directory_entry(&page.bytes(), slot)?;
    if !update(&mut entry) {
        return Ok(());
    }
    store.log([(&page, Image::Existing)], |[bytes]| {
        page::write_directory_entry(bytes, slot, entry);
        Ok(())
    })
}

/// Every chain's head, tail and radius at the end of a build (chains after the lists, a quantized
/// index's vector chains, have no radius).
pub fn write_directory<S: PageStore>(
    store: &S,
    meta: &Meta,
    chains: &[(u32, u32)],
    radii: &[f32],
) -> Result<(), FormatError> {
    for (page_number, chunk) in chains.chunks(DIRECTORY_ENTRIES_PER_PAGE).enumerate() {
        let page = store.lock(meta.directory_start + page_number as u32)?;
        store.log([(&page, Image::Existing)], |[bytes]| {
            for (slot, &(head, tail)) in chunk.iter().enumerate() {
                let chain = page_number * DIRECTORY_ENTRIES_PER_PAGE + slot;
                let entry = DirectoryEntry {
                    head,
                    tail,
                    free_hint: INVALID_BLOCK,
                    radius: radii.get(chain).copied().unwrap_or(0.0),
                };
                page::write_directory_entry(bytes, slot, entry);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Every list's radius, one directory page read at a time.
pub fn read_radii<S: PageStore>(store: &S, meta: &Meta) -> Result<Vec<f32>, FormatError> {
    let lists = meta.lists as usize;
    let mut radii = Vec::with_capacity(lists);
    // Only the lists' slots: a quantized index's vector chains come after them.
    for page_number in 0..lists.div_ceil(DIRECTORY_ENTRIES_PER_PAGE) {
        let page = store.read(meta.directory_start + page_number as u32)?;
        let bytes = page.bytes();
        let first = page_number * DIRECTORY_ENTRIES_PER_PAGE;
        for slot in 0..DIRECTORY_ENTRIES_PER_PAGE.min(lists - first) {
            radii.push(page::read_directory_entry(&bytes, slot)?.radius);
        }
    }
    Ok(radii)
}

/// List `list`'s filter summary.
pub fn read_summary<S: PageStore>(
    store: &S,
    meta: &Meta,
    list: u32,
) -> Result<Summary, FormatError> {
    let (block, slot) = meta.summary_slot(list);
    page::read_summary(&store.read(block)?.bytes(), slot)
}

/// Adds `hashes` to list `list`'s summary, logged when a bit changes. Inserts call it before
/// adding their entry: a scan whose snapshot sees the inserting transaction committed then also
/// sees the summary's bits, so it never skips a list holding a row it must return.
pub fn add_to_summary<S: PageStore>(
    store: &S,
    meta: &Meta,
    list: u32,
    hashes: &[u64],
) -> Result<(), FormatError> {
    let summary = read_summary(store, meta, list)?;
    if hashes.iter().all(|&hash| summary.may_contain(hash)) {
        return Ok(());
    }
    let (block, slot) = meta.summary_slot(list);
    let page = store.lock(block)?;
    let mut summary = page::read_summary(&page.bytes(), slot)?;
    let mut changed = false;
    for &hash in hashes {
        changed |= summary.insert(hash);
    }
    if !changed {
        return Ok(());
    }
    store.log([(&page, Image::Existing)], |[bytes]| {
        page::write_summary(bytes, slot, &summary);
        Ok(())
    })
}

/// Writes every list's summary at the end of a build.
pub fn write_summaries<S: PageStore>(
    store: &S,
    meta: &Meta,
    summaries: &[Summary],
) -> Result<(), FormatError> {
    for (page_number, chunk) in summaries.chunks(SUMMARIES_PER_PAGE).enumerate() {
        let page = store.lock(meta.summary_start + page_number as u32)?;
        store.log([(&page, Image::Existing)], |[bytes]| {
            for (slot, summary) in chunk.iter().enumerate() {
                page::write_summary(bytes, slot, summary);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// How many lists' summaries admit `query` (one read of each summary page).
pub fn count_matching_lists<S: PageStore>(
    store: &S,
    meta: &Meta,
    query: &FilterQuery,
) -> Result<usize, FormatError> {
    let mut matching = 0;
    for page_number in 0..meta.summary_pages {
        let page = store.read(meta.summary_start + page_number)?;
        let bytes = page.bytes();
        let first = page_number as usize * SUMMARIES_PER_PAGE;
        for slot in 0..SUMMARIES_PER_PAGE.min((meta.lists as usize).saturating_sub(first)) {
            matching += usize::from(query.list_may_match(&page::read_summary(&bytes, slot)?));
        }
    }
    Ok(matching)
}
