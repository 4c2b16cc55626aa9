//! `ivfflat_verify(index regclass, heapallindexed boolean DEFAULT false)`: an amcheck-style check
//! of an ivfflat index's structure and content. It returns a one-line report and raises an
//! `index_corrupted` error on the first problem found.
//!
//! Checked: the meta page (magic, format version, consistent fields), every centroid finite, every
//! directory entry pointing inside the index, every list's chain acyclic and made of entry pages whose
//! stream of entries is whole (each page's first-entry offset matches the stream), the directory's
//! tail being the chain's last page, every entry's vector finite (and unit length for cosine), no
//! heap TID indexed twice among live entries. With `heapallindexed`, every heap row the index must
//! contain (non-NULL, non-zero for cosine) is present exactly once, found by a scan of the table
//! under a ShareLock, which keeps writers out while it runs.

use super::build::{tid_of, RowReader};
use super::cache;
use super::filters::FilterColumns;
use super::storage::{Locked, Mode};
use crate::error::raise_with;
use pgivf_core::bounds;
use pgivf_core::filter::Summary;
use pgivf_core::page::{self, Meta, Metric, PageKind, StreamReader, INVALID_BLOCK};
use pgrx::{pg_sys, PgSqlErrorCode};
use std::collections::{HashMap, HashSet};

fn corrupt(index_name: &str, what: String) -> ! {
    raise_with(
        PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        format!("index \"{index_name}\" is corrupted: {what}"),
        None,
    )
}

struct HeapCheck {
    /// Rows that need an entry, with their filter hashes (one per filter column, in
    /// `expected_filters`).
    expected: Vec<u64>,
    expected_filters: Vec<u64>,
    reader: RowReader,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn heap_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: the HeapCheck passed to the scan; the callback's own arrays.
    let state = unsafe { &mut *state.cast::<HeapCheck>() };
    if unsafe { state.reader.read(values, isnull) } {
        // SAFETY: `tid` points at the heap tuple's ItemPointer.
        state.expected.push(tid_of(unsafe { &*tid }).to_u64());
        state
            .expected_filters
            .extend_from_slice(&state.reader.hashes);
    }
}

/// Opens an ivfflat index and its table (table first, as PostgreSQL does) with `lock`, raising
/// wrong_object_type for anything else; returns them and the index's name.
pub(super) fn open_ivfflat(
    index_oid: pg_sys::Oid,
    lock: pg_sys::LOCKMODE,
    function: &str,
) -> (pg_sys::Relation, pg_sys::Relation, String) {
    let wrong = |message: String| -> ! {
        raise_with(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message, None)
    };
    // SAFETY: catalog lookups and relation opens by oid on the backend thread; the caller closes both
    // relations (or the transaction's end releases them on error).
    unsafe {
        let heap_oid = pg_sys::IndexGetRelation(index_oid, true);
        if heap_oid == pg_sys::InvalidOid {
            wrong(format!("{function} needs an index"));
        }
        let heap = pg_sys::table_open(heap_oid, lock);
        let index = pg_sys::index_open(index_oid, lock);
        let am = std::ffi::CStr::from_ptr(pg_sys::get_am_name((*(*index).rd_rel).relam));
        let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr())
            .to_string_lossy()
            .into_owned();
        if am.to_bytes() != b"ivfflat" {
            wrong(format!("\"{name}\" is not an ivfflat index"));
        }
        if (*(*index).rd_rel).relkind != pg_sys::RELKIND_INDEX as std::ffi::c_char {
            wrong(format!(
                "\"{name}\" is the index of a partitioned table; call {function} on its partitions' indexes"
            ));
        }
        (heap, index, name)
    }
}

/// Verifies `index` and returns the report.
pub fn verify(index_oid: pg_sys::Oid, heapallindexed: bool) -> String {
    // SAFETY: catalog and relation access by oid on the backend thread; every relation opened here is
    // closed before returning (or released by the transaction on error).
    unsafe {
        let lock = if heapallindexed {
            pg_sys::ShareLock
        } else {
            pg_sys::AccessShareLock
        } as pg_sys::LOCKMODE;
        let (heap, index, name) = open_ivfflat(index_oid, lock, "ivfflat_verify");
        let report = check_index(index, &name);
        let report = if heapallindexed {
            check_heap(heap, index, &name, report)
        } else {
            report.summary()
        };
        pg_sys::index_close(index, lock);
        pg_sys::table_close(heap, lock);
        report
    }
}

struct Report {
    meta: Meta,
    pages: u32,
    live: HashMap<u64, u32>,
    /// Filter hashes of the live entries, by heap TID (only with filter columns).
    live_filters: HashMap<u64, Vec<u64>>,
    dead: u64,
}

impl Report {
    fn summary(&self) -> String {
        format!(
            "ivfflat index OK: {} lists, {} dimensions, {:?}, {} pages, {} live entries, {} dead entries",
            self.meta.lists,
            self.meta.dimensions,
            self.meta.metric,
            self.pages,
            self.live.len(),
            self.dead
        )
    }
}

fn check_index(index: pg_sys::Relation, name: &str) -> Report {
    // SAFETY: an open index.
    let pages =
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    if pages == 0 {
        corrupt(name, "the index has no meta page".into());
    }
    let meta = {
        let buffer = Locked::read(index, 0, Mode::Share);
        Meta::read(buffer.page()).unwrap_or_else(|e| corrupt(name, e.to_string()))
    };
    let first_entry_page = meta.structure_end();
    if first_entry_page > pages {
        corrupt(
            name,
            format!(
                "meta page describes {first_entry_page} structure pages, the index has {pages}"
            ),
        );
    }
    let centroids = cache::get(index);
    if let Some(position) = centroids.centroids.iter().position(|x| !x.is_finite()) {
        corrupt(
            name,
            format!(
                "centroid {} is not finite",
                position / meta.dimensions as usize
            ),
        );
    }
    let format = meta.entry_format();
    let mut live: HashMap<u64, u32> = HashMap::new();
    // A spilling index's second entries, which each row has at most one of.
    let mut spilled: HashMap<u64, u32> = HashMap::new();
    let mut live_filters: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut dead = 0u64;
    let mut owner: HashMap<u32, u32> = HashMap::new();
    let mut reader = StreamReader::new();
    for list in 0..meta.lists {
        pgrx::check_for_interrupts!();
        let (directory_block, slot) = meta.directory_slot(list);
        let entry = {
            let buffer = Locked::read(index, directory_block, Mode::Share);
            page::read_directory_entry(buffer.page(), slot)
                .unwrap_or_else(|e| corrupt(name, e.to_string()))
        };
        let in_range =
            |block: u32| block == INVALID_BLOCK || (first_entry_page..pages).contains(&block);
        if !in_range(entry.head) || !in_range(entry.tail) || !in_range(entry.free_hint) {
            corrupt(
                name,
                format!("list {list}'s directory entry points outside the entry pages: {entry:?}"),
            );
        }
        if (entry.head == INVALID_BLOCK) != (entry.tail == INVALID_BLOCK) {
            corrupt(
                name,
                format!("list {list} has a head without a tail or the reverse: {entry:?}"),
            );
        }
        reader.reset();
        let entry_radius = entry.radius;
        let mut block = entry.head;
        let mut last = INVALID_BLOCK;
        let mut bad_vector = None;
        let mut bad_tid = None;
        let mut holds = Summary::default();
        let mut outside = None;
        let dim = meta.dimensions as usize;
        let centroid = &centroids.centroids[list as usize * dim..(list as usize + 1) * dim];
        let (mut located, mut code, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        while block != INVALID_BLOCK {
            pgrx::check_for_interrupts!();
            if let Some(other) = owner.insert(block, list) {
                corrupt(name, format!("page {block} is reached from list {other} and again from list {list} (a cycle or a shared page)"));
            }
            let buffer = Locked::read(index, block, Mode::Share);
            let special = page::read_special(buffer.page())
                .unwrap_or_else(|e| corrupt(name, format!("page {block}: {e}")));
            if special.kind != PageKind::Entries {
                corrupt(
                    name,
                    format!("page {block} in list {list} is a {:?} page", special.kind),
                );
            }
            reader
                .feed(buffer.page(), format, |entry| {
                    let tid = entry.tid;
                    if entry.flags.is_dead() {
                        dead += 1;
                        return;
                    }
                    // A quantized entry's vector: from its location, checked to be this row's and
                    // to give back the very code stored; with rerank = 'heap' it is in the table.
                    let vector: Option<&[f32]> = match (&centroids.quantizer, entry.location) {
                        (None, _) => Some(entry.vector),
                        (Some(_), None) => None,
                        (Some(quantizer), Some(location)) => {
                            let (owner, vector_dead) = super::storage::read_located_vector(
                                index,
                                location,
                                dim,
                                &mut located,
                            )
                            .unwrap_or_else(|e| {
                                corrupt(name, format!("the vector of an entry in list {list} (heap row ({},{}), at block {} offset {}): {e}", tid.block, tid.offset, location.block, location.offset))
                            });
                            if owner != tid || vector_dead {
                                corrupt(name, format!("the entry of heap row ({},{}) in list {list} locates the vector of ({},{}){}", tid.block, tid.offset, owner.block, owner.offset, if vector_dead { ", a dead entry" } else { "" }));
                            }
                            code.resize(quantizer.code_bytes(), 0);
                            quantizer.encode(&located, centroid, &mut scratch, &mut code);
                            if code[..] != entry.code[..] {
                                corrupt(name, format!("the code of heap row ({},{}) in list {list} does not match its vector", tid.block, tid.offset));
                            }
                            Some(&located)
                        }
                    };
                    if let (true, None, Some(vector)) = (meta.radii, outside, vector) {
                        let distance = bounds::member_distance(meta.metric, vector, centroid);
                        let norm = pgivf_core::distance::norm_squared_f64(vector).sqrt() as f32;
                        let slack = |bound: f32| bound * (1.0 + 1e-4) + 1e-6;
                        if distance > slack(entry_radius) || norm > slack(meta.max_norm) {
                            outside = Some((tid, distance, norm));
                        }
                    }
                    if meta.filter_columns > 0 {
                        for hash in entry.filters.iter() {
                            holds.insert(hash);
                        }
                        live_filters.insert(tid.to_u64(), entry.filters.to_vec());
                    }
                    if !super::scan::valid_heap_tid(tid) && bad_tid.is_none() {
                        bad_tid = Some(tid);
                    }
                    // With rerank = 'heap' the vector is the table's, checked by the table's type.
                    if let Some(vector) = vector {
                        let finite = vector.iter().all(|x| x.is_finite());
                        let unit = meta.metric != Metric::Cosine
                            || (pgivf_core::distance::norm_squared_f64(vector) - 1.0).abs() < 1e-3;
                        if (!finite || !unit) && bad_vector.is_none() {
                            bad_vector = Some((tid, finite));
                        }
                    }
                    if entry.flags.is_spilled() {
                        if !meta.spill {
                            corrupt(name, format!("heap row ({},{}) has a spilled entry in list {list} of an index that does not spill", tid.block, tid.offset));
                        }
                        *spilled.entry(tid.to_u64()).or_insert(0) += 1;
                    } else {
                        *live.entry(tid.to_u64()).or_insert(0) += 1;
                    }
                })
                .unwrap_or_else(|e| corrupt(name, format!("page {block} in list {list}: {e}")));
            last = block;
            block = special.next;
        }
        if reader.has_partial_entry() {
            corrupt(name, format!("list {list} ends in the middle of an entry"));
        }
        // An insert widens the bounds before adding its entry; a widening that happened after this
        // walk read them is seen here.
        let outside = outside.filter(|&(_, distance, norm)| {
            let slack = |bound: f32| bound * (1.0 + 1e-4) + 1e-6;
            let radius = cache::read_directory(index, &meta, list).radius;
            let max_norm = cache::read_meta(index).max_norm;
            distance > slack(radius) || norm > slack(max_norm)
        });
        if let Some((tid, distance, norm)) = outside {
            corrupt(
                name,
                format!(
                    "heap row ({},{}) in list {list} lies outside the list's bounds (distance {distance} from the centroid, radius {entry_radius}; norm {norm}, largest norm {})",
                    tid.block, tid.offset, meta.max_norm
                ),
            );
        }
        if meta.filter_columns > 0 {
            let (summary_block, slot) = meta.summary_slot(list);
            let summary = {
                let buffer = Locked::read(index, summary_block, Mode::Share);
                page::read_summary(buffer.page(), slot)
                    .unwrap_or_else(|e| corrupt(name, format!("page {summary_block}: {e}")))
            };
            if !summary.covers(&holds) {
                corrupt(
                    name,
                    format!("list {list}'s filter summary misses values its entries hold"),
                );
            }
        }
        if last != entry.tail {
            corrupt(
                name,
                format!(
                    "list {list}'s last page is {last}, its directory says {}",
                    entry.tail
                ),
            );
        }
        if let Some(tid) = bad_tid {
            corrupt(
                name,
                format!(
                    "list {list} has an entry with an invalid heap TID ({},{})",
                    tid.block, tid.offset
                ),
            );
        }
        if let Some((tid, finite)) = bad_vector {
            let what = if finite {
                "not of unit length"
            } else {
                "not finite"
            };
            corrupt(
                name,
                format!(
                    "the vector of heap row ({},{}) in list {list} is {what}",
                    tid.block, tid.offset
                ),
            );
        }
    }
    if let Some((tid, count)) = spilled.iter().find(|(_, count)| **count > 1) {
        let tid = page::Tid::from_u64(*tid);
        corrupt(
            name,
            format!(
                "heap row ({},{}) has {count} spilled entries",
                tid.block, tid.offset
            ),
        );
    }
    if let Some((tid, count)) = live.iter().find(|(_, count)| **count > 1) {
        let tid = page::Tid::from_u64(*tid);
        corrupt(
            name,
            format!(
                "heap row ({},{}) is indexed {count} times",
                tid.block, tid.offset
            ),
        );
    }
    Report {
        meta,
        pages,
        live,
        live_filters,
        dead,
    }
}

fn check_heap(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    name: &str,
    report: Report,
) -> String {
    let mut state = HeapCheck {
        expected: Vec::new(),
        expected_filters: Vec::new(),
        reader: RowReader::new(
            report.meta.metric,
            super::vector_column(index),
            FilterColumns::of(index),
        ),
    };
    // SAFETY: the heap is ShareLocked; the callback matches IndexBuildCallback and `state` outlives the scan.
    unsafe {
        let info = pg_sys::BuildIndexInfo(index);
        pg_sys::table_index_build_scan(
            heap,
            index,
            info,
            false,
            false,
            Some(heap_callback),
            (&mut state as *mut HeapCheck).cast(),
            std::ptr::null_mut(),
        );
    }
    let mut seen = HashSet::with_capacity(state.expected.len());
    let filter_count = state.reader.filters.len();
    for (i, tid) in state.expected.iter().enumerate() {
        if filter_count > 0 {
            let expected = &state.expected_filters[i * filter_count..(i + 1) * filter_count];
            if let Some(stored) = report.live_filters.get(tid) {
                if stored.as_slice() != expected {
                    let tid = page::Tid::from_u64(*tid);
                    corrupt(
                        name,
                        format!(
                            "the filter values of heap row ({},{}) differ from its index entry's",
                            tid.block, tid.offset
                        ),
                    );
                }
            }
        }
        if !report.live.contains_key(tid) {
            let tid = page::Tid::from_u64(*tid);
            corrupt(
                name,
                format!(
                    "heap row ({},{}) is missing from the index",
                    tid.block, tid.offset
                ),
            );
        }
        seen.insert(*tid);
    }
    format!(
        "{}; all {} heap rows that need an entry have exactly one",
        report.summary(),
        seen.len()
    )
}

pg_function!(ivfflat_verify, pg_finfo_ivfflat_verify, |fcinfo| {
    // SAFETY: (regclass, boolean), both non-NULL (STRICT).
    let (oid, heapallindexed) = unsafe {
        (
            pg_sys::Oid::from(crate::fmgr::arg_datum(fcinfo, 0).value() as u32),
            crate::fmgr::arg_datum(fcinfo, 1).value() != 0,
        )
    };
    let report = verify(oid, heapallindexed);
    pg_sys::Datum::from(pgrx::rust_str_to_text_p(&report).into_pg())
});
