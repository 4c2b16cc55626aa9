//! `ivfflat_stats(index regclass)`: the core's measure of how an index's lists hold up
//! (`pgivf_core::index::stats`), as a row. EXECUTE is revoked from PUBLIC; the caller also needs
//! SELECT on the table (the rows' counts and distances are the table's data).

use super::cache;
use super::verify::{close_ivfflat, open_ivfflat, Privilege};
use crate::error::OrCorrupt;
use pgivf_core::index::stats;
use pgrx::{pg_sys, IntoDatum};

fn quote_identifier(name: &str) -> String {
    let c_name = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a NUL-terminated string; the result is a NUL-terminated palloc'd or static string.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::quote_identifier(c_name.as_ptr()))
            .to_string_lossy()
            .into_owned()
    }
}

pg_function!(ivfflat_stats, pg_finfo_ivfflat_stats, |fcinfo| {
    // SAFETY: a regclass argument, non-NULL (STRICT).
    let oid = pg_sys::Oid::from(unsafe { crate::fmgr::arg_datum(fcinfo, 0) }.value() as u32);
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let (heap, index, name) = open_ivfflat(oid, lock, Privilege::Select, "ivfflat_stats");
    let cached = cache::get(index);
    let stats = stats::collect(&cached.store(index), &cached.index).or_corrupt(index);
    // SAFETY: an open index.
    let pages =
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    close_ivfflat(heap, index, lock);
    let meta = stats.meta;
    let (min, median, max) = stats.list_sizes();
    let reasons = stats.reasons_to_rebuild();
    let recommendation = if reasons.is_empty() {
        "none: the lists still fit the data".into()
    } else {
        format!(
            "REINDEX INDEX CONCURRENTLY {}: {}",
            quote_identifier(&name),
            reasons.join("; ")
        )
    };
    let values: Vec<Option<pg_sys::Datum>> = vec![
        (meta.lists as i32).into_datum(),
        (meta.dimensions as i32).into_datum(),
        meta.metric.name().into_datum(),
        i64::from(pages).into_datum(),
        (stats.rows as i64).into_datum(),
        (stats.dead_entries as i64).into_datum(),
        (stats.empty_lists() as i32).into_datum(),
        (min as i64).into_datum(),
        median.into_datum(),
        (max as i64).into_datum(),
        (meta.rows_at_build as i64).into_datum(),
        (stats.from_inserts.rows as i64).into_datum(),
        stats.from_build.mean().and_then(|m| m.into_datum()),
        stats.from_inserts.mean().and_then(|m| m.into_datum()),
        stats.drift().and_then(|d| d.into_datum()),
        recommendation.into_datum(),
    ];
    // SAFETY: the function is declared with OUT parameters matching `values`, one by one.
    unsafe { crate::fmgr::return_record(fcinfo, &values) }
});
