//! `ivfflat_verify(index regclass, heapallindexed boolean DEFAULT false)`: the core's check of an
//! index's structure (`pgivf_core::index::verify`), and with `heapallindexed` a scan of the table
//! that every row needing an entry has exactly one. Returns a one-line report, or raises
//! `index_corrupted` on the first problem found.
//!
//! Who may run it and what it locks, as amcheck does: EXECUTE is revoked from PUBLIC, and the
//! caller must own the table, checked before any lock is taken (a lock on someone else's table,
//! held for as long as the caller likes, would block its writers). The check runs beside inserts
//! and queries; VACUUM (which marks entries dead and lets their slots be reused) is kept out by a
//! ShareUpdateExclusiveLock on the table. With `heapallindexed` a ShareLock keeps every writer
//! out while the table is read.

use super::cache;
use super::catalog;
use super::filters::FilterColumns;
use super::heap::{tid_of, RowReader};
use super::storage::PgStore;
use crate::error::{raise_corruption, raise_format, raise_with};
use pgivf_core::index::layout::read_meta;
use pgivf_core::index::verify::{self, Corruption};
use pgivf_core::page::FormatError;
use pgivf_core::page::Tid;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::collections::HashSet;

/// What a caller must hold on the index's table to run a function on the index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Owner,
    Select,
}

/// Opens an ivfflat index and its table (table first, as PostgreSQL does): the caller's privilege
/// on the table is checked before either is locked, then the table is locked with `table_lock`
/// and the index with AccessShareLock. Raises wrong_object_type for anything but an ivfflat index,
/// insufficient_privilege without the privilege. Returns them and the index's name.
pub(super) fn open_ivfflat(
    index_oid: pg_sys::Oid,
    table_lock: pg_sys::LOCKMODE,
    privilege: Privilege,
    function: &str,
) -> (pg_sys::Relation, pg_sys::Relation, String) {
    let wrong = |message: String| -> ! {
        raise_with(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message, None)
    };
    let index_lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: catalog lookups and relation opens by oid on the backend thread; the caller closes
    // both relations (or the transaction's end releases them on error).
    unsafe {
        let heap_oid = pg_sys::IndexGetRelation(index_oid, true);
        if heap_oid == pg_sys::InvalidOid {
            wrong(format!("{function} needs an index"));
        }
        let user = pg_sys::GetUserId();
        let allowed = match privilege {
            Privilege::Owner => crate::compat::owns_table(heap_oid, user),
            Privilege::Select => {
                pg_sys::pg_class_aclcheck(heap_oid, user, pg_sys::ACL_SELECT as pg_sys::AclMode)
                    == pg_sys::AclResult::ACLCHECK_OK
            }
        };
        if !allowed {
            let table = pg_sys::get_rel_name(heap_oid);
            let result = match privilege {
                Privilege::Owner => pg_sys::AclResult::ACLCHECK_NOT_OWNER,
                Privilege::Select => pg_sys::AclResult::ACLCHECK_NO_PRIV,
            };
            pg_sys::aclcheck_error(result, pg_sys::ObjectType::OBJECT_TABLE, table);
        }
        let heap = pg_sys::table_open(heap_oid, table_lock);
        let index = pg_sys::index_open(index_oid, index_lock);
        // The index could have been dropped and its oid reused between the check and the locks.
        if pg_sys::IndexGetRelation(index_oid, true) != heap_oid {
            raise_with(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("could not open the table of index {}", u32::from(index_oid)),
                None,
            );
        }
        let am = std::ffi::CStr::from_ptr(pg_sys::get_am_name((*(*index).rd_rel).relam));
        let name = crate::error::relation_name(index);
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

/// Closes what [`open_ivfflat`] opened.
pub(super) fn close_ivfflat(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    table_lock: pg_sys::LOCKMODE,
) {
    // SAFETY: opened by open_ivfflat with these locks.
    unsafe {
        pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::table_close(heap, table_lock);
    }
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

fn tid_text(tid: u64) -> String {
    let tid = Tid::from_u64(tid);
    format!("({},{})", tid.block, tid.offset)
}

/// Every table row that needs an entry has one live entry, with its filter values.
fn check_heap(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    metric: pgivf_core::metric::Metric,
    report: &verify::Report,
) -> Result<usize, Corruption> {
    let mut state = HeapCheck {
        expected: Vec::new(),
        expected_filters: Vec::new(),
        reader: RowReader::new(
            metric,
            catalog::vector_column(index),
            FilterColumns::of(index),
        ),
    };
    // SAFETY: the table is ShareLocked; the callback matches IndexBuildCallback and `state`
    // outlives the scan.
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
            if report
                .live_filters
                .get(tid)
                .is_some_and(|stored| stored.as_slice() != expected)
            {
                return Err(Corruption(format!(
                    "the filter values of heap row {} differ from its index entry's",
                    tid_text(*tid)
                )));
            }
        }
        if !report.live.contains_key(tid) {
            return Err(Corruption(format!(
                "heap row {} is missing from the index",
                tid_text(*tid)
            )));
        }
        seen.insert(*tid);
    }
    Ok(seen.len())
}

/// Verifies the index and returns the report.
fn verify(index_oid: pg_sys::Oid, heapallindexed: bool) -> String {
    // SAFETY: reads the backend's recovery state.
    let standby = unsafe { pg_sys::RecoveryInProgress() };
    // A standby allows no lock above RowExclusiveLock, and nothing but replay writes there.
    let table_lock = if heapallindexed {
        pg_sys::ShareLock
    } else if standby {
        pg_sys::AccessShareLock
    } else {
        pg_sys::ShareUpdateExclusiveLock
    } as pg_sys::LOCKMODE;
    let (heap, index, name) =
        open_ivfflat(index_oid, table_lock, Privilege::Owner, "ivfflat_verify");
    // An index of a later format is not damage: it is refused as every other operation refuses it.
    if let Err(error @ FormatError::UnsupportedVersion(_)) = read_meta(&PgStore::new(index)) {
        raise_format(&name, error);
    }
    // A damaged meta page is reported as the check's finding, before loading the index reads it.
    verify::check_meta(&PgStore::new(index)).unwrap_or_else(|e| raise_corruption(&name, e));
    let cached = cache::get(index);
    let meta = cached.index.meta();
    let report = verify::verify(&cached.store(index), &cached.index)
        .unwrap_or_else(|e| raise_corruption(&name, e));
    let summary = report.summary(&meta);
    let summary = if heapallindexed {
        let rows = check_heap(heap, index, meta.metric, &report)
            .unwrap_or_else(|e| raise_corruption(&name, e));
        format!("{summary}; all {rows} heap rows that need an entry have exactly one")
    } else {
        summary
    };
    close_ivfflat(heap, index, table_lock);
    summary
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
