//! The `ivfflat` index access method, split the way PostgreSQL's contrib/bloom and pgvector split
//! theirs: the handler here, then one file per callback family, and the PostgreSQL services they
//! share. Everything the index does with its pages is in `pgivf_core::index`; these files turn
//! PostgreSQL's arguments into the core's and its results and errors back.
//!
//! Callbacks: `build` (ambuild, ambuildempty), `insert`, `scan` (ambeginscan, amrescan,
//! amgettuple, amendscan), `vacuum` (ambulkdelete, amvacuumcleanup), `cost`, `options`,
//! `validate`, and the SQL functions `verify` and `stats`. Services: `storage` (the page store
//! over buffers and Generic WAL), `heap` (reading the table), `catalog`, `cache`, `filters`
//! (filter columns' values), `radius` (the planner hook), `guc`.

pub mod build;
pub mod cache;
pub mod catalog;
pub mod cost;
pub mod filters;
pub mod guc;
pub mod heap;
pub mod insert;
pub mod options;
pub mod radius;
pub mod scan;
pub mod stats;
pub mod storage;
pub mod vacuum;
pub mod validate;
pub mod verify;

use filters::FilterColumns;
use pgrx::pg_sys;

/// Build progress sub-phases shown in pg_stat_progress_create_index (1 is PostgreSQL's
/// "initializing").
pub const PHASE_KMEANS: i64 = 2;
pub const PHASE_ASSIGN: i64 = 3;
pub const PHASE_LOAD: i64 = 4;
/// A phase run on more than one thread is shown with their number: phase + this × (threads - 1).
const PHASE_THREADS_STEP: i64 = 100;
/// Most threads a phase name mentions (a build never has more than the machine's cores).
const MOST_THREADS_NAMED: i64 = 64;

/// The sub-phase number of `phase` run on `threads` threads.
pub fn phase_on_threads(phase: i64, threads: usize) -> i64 {
    let threads = (threads as i64).clamp(1, MOST_THREADS_NAMED);
    phase + PHASE_THREADS_STEP * (threads - 1)
}

pub fn init() {
    guc::init();
    radius::init();
    options::init();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let threads = phase / PHASE_THREADS_STEP + 1;
    let name: &'static std::ffi::CStr = match phase % PHASE_THREADS_STEP {
        1 if threads == 1 => c"initializing",
        PHASE_KMEANS => c"performing k-means",
        PHASE_ASSIGN => c"assigning tuples",
        PHASE_LOAD => c"loading tuples",
        _ => return std::ptr::null_mut(),
    };
    if threads == 1 {
        return name.as_ptr().cast_mut();
    }
    if threads > MOST_THREADS_NAMED {
        return std::ptr::null_mut();
    }
    // pgvector's names, and with parallel threads how many: "performing k-means on 3 threads".
    let named = format!("{} on {threads} threads", name.to_string_lossy());
    // SAFETY: palloc'd in the caller's memory context, as the progress view reads it.
    unsafe {
        let out = pgrx::pg_sys::palloc(named.len() + 1).cast::<u8>();
        std::ptr::copy_nonoverlapping(named.as_ptr(), out, named.len());
        *out.add(named.len()) = 0;
        out.cast()
    }
}

pg_function!(ivfflathandler, pg_finfo_ivfflathandler, |_fcinfo| {
    // SAFETY: makeNode-style allocation of a zeroed IndexAmRoutine in the current memory context; every
    // field not set below stays zero/NULL, which is "not supported".
    unsafe {
        let am = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexAmRoutine>())
            .cast::<pg_sys::IndexAmRoutine>();
        let r = &mut *am;
        r.type_ = pg_sys::NodeTag::T_IndexAmRoutine;
        r.amstrategies = 0;
        r.amsupport = catalog::PROC_METRIC;
        r.amoptsprocnum = 0;
        r.amcanorder = false;
        // ORDER BY column <op> constant is the only way this index answers queries.
        r.amcanorderbyop = true;
        r.amcanbackward = false;
        r.amcanunique = false;
        // Key columns after the vector are filter columns (see filters.rs).
        r.amcanmulticol = true;
        // Without this the planner wants a WHERE clause on the column and never builds the ORDER BY path.
        r.amoptionalkey = true;
        // `filter_column = ANY(array)` and `IN (...)` become one index condition.
        r.amsearcharray = true;
        r.amsearchnulls = false;
        r.amstorage = false;
        r.amclusterable = false;
        r.ampredlocks = false;
        r.amcanparallel = false;
        r.amcaninclude = false;
        r.amusemaintenanceworkmem = false;
        r.amparallelvacuumoptions = pg_sys::VACUUM_OPTION_PARALLEL_BULKDEL as u8;
        r.amkeytype = pg_sys::InvalidOid;
        r.ambuild = Some(build::ambuild);
        r.ambuildempty = Some(build::ambuildempty);
        r.aminsert = Some(insert::aminsert);
        r.ambulkdelete = Some(vacuum::ambulkdelete);
        r.amvacuumcleanup = Some(vacuum::amvacuumcleanup);
        r.amcostestimate = Some(cost::amcostestimate);
        r.amoptions = Some(options::amoptions);
        r.ambuildphasename = Some(ambuildphasename);
        r.amvalidate = Some(validate::amvalidate);
        r.ambeginscan = Some(scan::ambeginscan);
        r.amrescan = Some(scan::amrescan);
        r.amgettuple = Some(scan::amgettuple);
        r.amendscan = Some(scan::amendscan);
        pg_sys::Datum::from(am)
    }
});
