//! An amcheck-style check of an index's structure and content.
//!
//! Checked: the meta page (magic, format version, consistent fields), every centroid finite, every
//! directory entry pointing inside the index, every list's chain acyclic and made of entry pages
//! whose stream of entries is whole (each page's first-entry offset matches the stream), the
//! directory's tail being the chain's last page, every entry's vector finite (and unit length for
//! cosine), every quantized entry's vector being its own and giving back its code, every row inside
//! its list's bounds, every list's filter summary covering its entries, no heap TID indexed twice
//! among live entries. The caller can then check that every table row that needs an entry has one
//! ([`Report::live`]).
//!
//! The walk runs beside inserts (not beside VACUUM, which the caller's lock keeps out): what an
//! insert legitimately does meanwhile (extend a list, add pages, widen a list's bounds, add a
//! summary bit) is read again before it is called damage.

use std::collections::HashMap;

use crate::filter::Summary;
use crate::metric::Metric;
use crate::page::{self, FormatError, Meta, PageKind, StreamReader, Tid, INVALID_BLOCK};
use crate::store::{LockedPage, PageStore};

use super::chain::read_located_vector;
use super::layout::{read_directory, read_meta, read_summary};
use super::loaded::LoadedIndex;

/// What the check found wrong, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Corruption(pub String);

impl From<FormatError> for Corruption {
    fn from(error: FormatError) -> Self {
        Corruption(error.to_string())
    }
}

fn corrupt<T>(what: String) -> Result<T, Corruption> {
    Err(Corruption(what))
}

/// What a healthy index holds.
#[derive(Debug, Default)]
pub struct Report {
    pub pages: u32,
    /// Live rows' heap TIDs (packed), each once.
    pub live: HashMap<u64, u32>,
    /// Filter hashes of the live rows, by heap TID (only with filter columns).
    pub live_filters: HashMap<u64, Vec<u64>>,
    pub dead: u64,
}

impl Report {
    pub fn summary(&self, meta: &Meta) -> String {
        format!(
            "ivfflat index OK: {} lists, {} dimensions, {:?}, {} pages, {} live entries, {} dead entries",
            meta.lists,
            meta.dimensions,
            meta.metric,
            self.pages,
            self.live.len(),
            self.dead
        )
    }
}

fn tid_text(tid: Tid) -> String {
    format!("({},{})", tid.block, tid.offset)
}

/// Checks what must hold before the index can be loaded at all: a meta page that reads, and the
/// structure pages it describes.
pub fn check_meta<S: PageStore>(store: &S) -> Result<Meta, Corruption> {
    let pages = store.blocks();
    if pages == 0 {
        return corrupt("the index has no meta page".into());
    }
    let meta = read_meta(store)?;
    let first_entry_page = meta.structure_end();
    if first_entry_page > pages {
        return corrupt(format!(
            "meta page describes {first_entry_page} structure pages, the index has {pages}"
        ));
    }
    Ok(meta)
}

/// Checks the index's structure and every entry (after [`check_meta`]).
pub fn verify<S: PageStore>(store: &S, index: &LoadedIndex) -> Result<Report, Corruption> {
    let meta = check_meta(store)?;
    let mut pages = store.blocks();
    let first_entry_page = meta.structure_end();
    if let Some(position) = index.centroids.iter().position(|x| !x.is_finite()) {
        return corrupt(format!(
            "centroid {} is not finite",
            position / meta.dimensions as usize
        ));
    }
    let mut report = Report::default();
    // A spilling index's second entries, which each row has at most one of.
    let mut spilled: HashMap<u64, u32> = HashMap::new();
    let mut owner: HashMap<u32, u32> = HashMap::new();
    let mut reader = StreamReader::new();
    let dim = meta.dimensions as usize;
    let format = meta.entry_format();
    for list in 0..meta.lists {
        store.check_interrupts();
        let entry = read_directory(store, &meta, list)?;
        // Inserts add pages meanwhile: a block past the count read first is looked up again.
        let mut in_range = |block: u32| {
            if block >= pages {
                pages = store.blocks();
            }
            block == INVALID_BLOCK || (first_entry_page..pages).contains(&block)
        };
        if !in_range(entry.head) || !in_range(entry.tail) || !in_range(entry.free_hint) {
            return corrupt(format!(
                "list {list}'s directory entry points outside the entry pages: {entry:?}"
            ));
        }
        if (entry.head == INVALID_BLOCK) != (entry.tail == INVALID_BLOCK) {
            return corrupt(format!(
                "list {list} has a head without a tail or the reverse: {entry:?}"
            ));
        }
        reader.reset();
        let centroid = index.centroid(list);
        let entry_radius = entry.radius;
        let mut block = entry.head;
        let mut last = INVALID_BLOCK;
        let mut problem: Option<Result<(), Corruption>> = None;
        let mut bad_vector = None;
        let mut bad_tid = None;
        let mut holds = Summary::default();
        let mut outside = None;
        let (mut located, mut code, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        while block != INVALID_BLOCK {
            store.check_interrupts();
            if let Some(other) = owner.insert(block, list) {
                return corrupt(format!("page {block} is reached from list {other} and again from list {list} (a cycle or a shared page)"));
            }
            let locked = store.read(block)?;
            let bytes = locked.bytes();
            let special =
                page::read_special(&bytes).map_err(|e| Corruption(format!("page {block}: {e}")))?;
            if special.kind != PageKind::Entries {
                return corrupt(format!(
                    "page {block} in list {list} is a {:?} page",
                    special.kind
                ));
            }
            let fed = reader.feed(&bytes, format, |entry| {
                if problem.is_some() {
                    return;
                }
                let tid = entry.tid;
                if entry.flags.is_dead() {
                    report.dead += 1;
                    return;
                }
                // A quantized entry's vector: from its location, checked to be this row's and
                // to give back the very code stored; with rerank = 'heap' it is in the table.
                let vector: Option<&[f32]> = match (index.quantizer.as_deref(), entry.location) {
                    (None, _) => Some(entry.vector),
                    (Some(_), None) => None,
                    (Some(quantizer), Some(location)) => {
                        match read_located_vector(store, location, dim, &mut located) {
                            Err(e) => {
                                problem = Some(corrupt(format!("the vector of an entry in list {list} (heap row {}, at block {} offset {}): {e}", tid_text(tid), location.block, location.offset)));
                                return;
                            }
                            Ok((owner, vector_dead)) if owner != tid || vector_dead => {
                                problem = Some(corrupt(format!("the entry of heap row {} in list {list} locates the vector of {}{}", tid_text(tid), tid_text(owner), if vector_dead { ", a dead entry" } else { "" })));
                                return;
                            }
                            Ok(_) => {}
                        }
                        code.resize(quantizer.code_bytes(), 0);
                        quantizer.encode(&located, centroid, &mut scratch, &mut code);
                        if code[..] != entry.code[..] {
                            problem = Some(corrupt(format!("the code of heap row {} in list {list} does not match its vector", tid_text(tid))));
                            return;
                        }
                        Some(&located)
                    }
                };
                if let (true, None, Some(vector)) = (meta.radii, outside, vector) {
                    let distance = meta.metric.member_distance(vector, centroid);
                    let norm = crate::distance::norm_squared_f64(vector).sqrt() as f32;
                    if distance > slack(entry_radius) || norm > slack(meta.max_norm) {
                        outside = Some((tid, distance, norm));
                    }
                }
                if meta.filter_columns > 0 {
                    for hash in entry.filters.iter() {
                        holds.insert(hash);
                    }
                    report.live_filters.insert(tid.to_u64(), entry.filters.to_vec());
                }
                if !tid.is_valid_heap_tid() && bad_tid.is_none() {
                    bad_tid = Some(tid);
                }
                // With rerank = 'heap' the vector is the table's, checked by the table's type.
                if let Some(vector) = vector {
                    let finite = vector.iter().all(|x| x.is_finite());
                    let unit = meta.metric != Metric::Cosine
                        || (crate::distance::norm_squared_f64(vector) - 1.0).abs() < 1e-3;
                    if (!finite || !unit) && bad_vector.is_none() {
                        bad_vector = Some((tid, finite));
                    }
                }
                if entry.flags.is_spilled() {
                    if !meta.spill {
                        problem = Some(corrupt(format!("heap row {} has a spilled entry in list {list} of an index that does not spill", tid_text(tid))));
                        return;
                    }
                    *spilled.entry(tid.to_u64()).or_insert(0) += 1;
                } else {
                    *report.live.entry(tid.to_u64()).or_insert(0) += 1;
                }
            });
            fed.map_err(|e| Corruption(format!("page {block} in list {list}: {e}")))?;
            if let Some(problem) = problem.take() {
                problem?;
            }
            last = block;
            block = special.next;
        }
        if reader.has_partial_entry() {
            return corrupt(format!("list {list} ends in the middle of an entry"));
        }
        // An insert widens the bounds before adding its entry; a widening that happened after
        // this walk read them is seen here.
        if let Some((tid, distance, norm)) = outside {
            let radius = read_directory(store, &meta, list)?.radius;
            let max_norm = read_meta(store)?.max_norm;
            if distance > slack(radius) || norm > slack(max_norm) {
                return corrupt(format!(
                    "heap row {} in list {list} lies outside the list's bounds (distance {distance} from the centroid, radius {}; norm {norm}, largest norm {})",
                    tid_text(tid), entry.radius, meta.max_norm
                ));
            }
        }
        if meta.filter_columns > 0 && !read_summary(store, &meta, list)?.covers(&holds) {
            return corrupt(format!(
                "list {list}'s filter summary misses values its entries hold"
            ));
        }
        if last != entry.tail && !grew_after(store, &meta, list, last)? {
            return corrupt(format!(
                "list {list}'s last page is {last}, its directory says {}",
                entry.tail
            ));
        }
        if let Some(tid) = bad_tid {
            return corrupt(format!(
                "list {list} has an entry with an invalid heap TID {}",
                tid_text(tid)
            ));
        }
        if let Some((tid, finite)) = bad_vector {
            let what = if finite {
                "not of unit length"
            } else {
                "not finite"
            };
            return corrupt(format!(
                "the vector of heap row {} in list {list} is {what}",
                tid_text(tid)
            ));
        }
    }
    if let Some((tid, count)) = spilled.iter().find(|(_, count)| **count > 1) {
        return corrupt(format!(
            "heap row {} has {count} spilled entries",
            tid_text(Tid::from_u64(*tid))
        ));
    }
    if let Some((tid, count)) = report.live.iter().find(|(_, count)| **count > 1) {
        return corrupt(format!(
            "heap row {} is indexed {count} times",
            tid_text(Tid::from_u64(*tid))
        ));
    }
    report.pages = pages;
    Ok(report)
}

/// Stored bounds carry a little slack (see `bounds`).
fn slack(bound: f32) -> f32 {
    bound * (1.0 + 1e-4) + 1e-6
}

/// Whether list `list`, whose walk ended at page `last`, has a directory tail that an insert put
/// after `last` since (the walk read the directory first, and the chain may have grown).
fn grew_after<S: PageStore>(
    store: &S,
    meta: &Meta,
    list: u32,
    last: u32,
) -> Result<bool, FormatError> {
    let tail = read_directory(store, meta, list)?.tail;
    if tail == last {
        return Ok(true);
    }
    if last == INVALID_BLOCK {
        // The list was empty when walked; a first page since is its whole chain.
        return Ok(tail != INVALID_BLOCK);
    }
    let mut block = last;
    for _ in 0..store.blocks() {
        block = page::read_special(&store.read(block)?.bytes())?.next;
        if block == INVALID_BLOCK {
            return Ok(false);
        }
        if block == tail {
            return Ok(true);
        }
    }
    Ok(false)
}
