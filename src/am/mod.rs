//! The `ivfflat` index access method, split the way PostgreSQL's contrib/bloom and pgvector split
//! theirs: handler and options here, then one file per callback family.

pub mod build;
pub mod cache;
pub mod cost;
pub mod filters;
pub mod guc;
pub mod insert;
pub mod radius;
pub mod scan;
pub mod stats;
pub mod storage;
pub mod vacuum;
pub mod validate;
pub mod verify;

use pgivf_core::page::Metric;
use pgivf_core::quant::{QuantizerKind, Rerank};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI32, Ordering};

/// pgvector's default, used when `lists` is not given and the table is empty (nothing to size by).
pub const DEFAULT_LISTS: usize = 100;
/// The reloption's value when `lists` was not given: the build then sizes the index by the table.
const LISTS_NOT_GIVEN: i32 = 0;
pub const MAX_LISTS: i32 = pgivf_core::page::MAX_LISTS as i32;
/// An entry must fit a page with room to spare for pgvector-compatible behaviour; pgvector's limit.
pub const MAX_DIMENSIONS: usize = 2000;

/// Support function numbers, pgvector's: 1 distance, 2 norm (normalise query and rows: cosine),
/// 3 k-means distance, 4 k-means norm (spherical k-means: inner product and cosine).
pub const PROC_NORM: u16 = 2;
pub const PROC_KMEANS_NORM: u16 = 4;

/// Build progress sub-phases shown in pg_stat_progress_create_index (1 is PostgreSQL's "initializing").
pub const PHASE_KMEANS: i64 = 2;
pub const PHASE_ASSIGN: i64 = 3;
pub const PHASE_LOAD: i64 = 4;

static RELOPT_KIND: AtomicI32 = AtomicI32::new(0);

/// `WITH (lists = n, quantizer = '...', rerank = '...', spill = '...')`, as laid out by
/// build_reloptions.
#[repr(C)]
pub struct Options {
    vl_len_: i32,
    lists: i32,
    quantizer: i32,
    rerank: i32,
    spill: i32,
}

/// The `spill` option: whether a quantized index files each row under a second list too
/// (`kmeans::Spiller`). `auto` spills where the extra codes cost little: quantized lists that
/// re-rank from the index (about 5% more index for RaBitQ); with `rerank = 'heap'` the codes are
/// most of the index, so it would nearly double.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spill {
    Auto = 0,
    On = 1,
    Off = 2,
}

pub fn init() {
    guc::init();
    radius::init();
    // SAFETY: called once from _PG_init; the strings are static.
    unsafe {
        let kind = pg_sys::add_reloption_kind();
        RELOPT_KIND.store(kind as i32, Ordering::Relaxed);
        pg_sys::add_int_reloption(
            kind,
            c"lists".as_ptr(),
            c"Number of inverted lists".as_ptr(),
            LISTS_NOT_GIVEN,
            1,
            MAX_LISTS,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        // The member tables must outlive the backend: PostgreSQL keeps pointers to them.
        let quantizers = Box::leak(Box::new([
            enum_member(c"none", QuantizerKind::None as i32),
            enum_member(c"sq8", QuantizerKind::Sq8 as i32),
            enum_member(c"rabitq", QuantizerKind::Rabitq as i32),
            enum_end(),
        ]));
        pg_sys::add_enum_reloption(
            kind,
            c"quantizer".as_ptr(),
            c"What the lists hold: full vectors (none) or sq8 or rabitq codes".as_ptr(),
            quantizers.as_mut_ptr(),
            QuantizerKind::None as i32,
            c"Valid values are \"none\", \"sq8\" and \"rabitq\".".as_ptr(),
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        let reranks = Box::leak(Box::new([
            enum_member(c"index", Rerank::Index as i32),
            enum_member(c"heap", Rerank::Heap as i32),
            enum_end(),
        ]));
        pg_sys::add_enum_reloption(
            kind,
            c"rerank".as_ptr(),
            c"Where a quantized index reads the full vectors it re-ranks with".as_ptr(),
            reranks.as_mut_ptr(),
            Rerank::Index as i32,
            c"Valid values are \"index\" and \"heap\".".as_ptr(),
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        let spills = Box::leak(Box::new([
            enum_member(c"auto", Spill::Auto as i32),
            enum_member(c"on", Spill::On as i32),
            enum_member(c"off", Spill::Off as i32),
            enum_end(),
        ]));
        pg_sys::add_enum_reloption(
            kind,
            c"spill".as_ptr(),
            c"Whether a quantized index files each row under a second list too".as_ptr(),
            spills.as_mut_ptr(),
            Spill::Auto as i32,
            c"Valid values are \"auto\", \"on\" and \"off\".".as_ptr(),
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
    }
}

fn enum_member(name: &'static std::ffi::CStr, value: i32) -> pg_sys::relopt_enum_elt_def {
    pg_sys::relopt_enum_elt_def {
        string_val: name.as_ptr(),
        symbol_val: value,
    }
}

fn enum_end() -> pg_sys::relopt_enum_elt_def {
    pg_sys::relopt_enum_elt_def {
        string_val: std::ptr::null(),
        symbol_val: 0,
    }
}

/// The index's parsed `WITH (...)` options; None when none were given.
fn options(index: pg_sys::Relation) -> Option<&'static Options> {
    // SAFETY: rd_options is NULL or what amoptions returned for this index, which lives as long
    // as the relcache entry the caller holds open.
    unsafe { (*index).rd_options.cast::<Options>().as_ref() }
}

/// The `spill` option of an index (auto when not given).
pub fn spill_option(index: pg_sys::Relation) -> Spill {
    match options(index).map_or(Spill::Auto as i32, |o| o.spill) {
        1 => Spill::On,
        2 => Spill::Off,
        _ => Spill::Auto,
    }
}

/// The `quantizer` and `rerank` options of an index (none and index when not given).
pub fn quantizer_options(index: pg_sys::Relation) -> (QuantizerKind, Rerank) {
    let (quantizer, rerank) = options(index).map_or((0, 0), |o| (o.quantizer, o.rerank));
    (
        QuantizerKind::from_u32(quantizer as u32).unwrap_or(QuantizerKind::None),
        if rerank == Rerank::Heap as i32 {
            Rerank::Heap
        } else {
            Rerank::Index
        },
    )
}

/// The `lists` option of an index, `None` when it was not given.
pub fn lists_option(index: pg_sys::Relation) -> Option<usize> {
    let lists = options(index).map_or(LISTS_NOT_GIVEN, |o| o.lists);
    (lists != LISTS_NOT_GIVEN).then_some(lists as usize)
}

/// Lists for a table of `rows` rows when `lists` is not given: rows / 1000 up to a million rows,
/// sqrt(rows) beyond (the usual IVF advice, pgvector's README's), at least 1. A table of fewer rows
/// than pgvector's default of 100 lists is too small to size an index by (it will be rebuilt once
/// loaded), so it keeps that default and pgvector's "little data" notice, as pgvector's own tests
/// expect.
pub fn lists_for_rows(rows: f64) -> usize {
    if rows < DEFAULT_LISTS as f64 {
        DEFAULT_LISTS
    } else if rows <= 1_000_000.0 {
        ((rows / 1000.0) as usize).max(1)
    } else {
        (rows.sqrt() as usize).min(MAX_LISTS as usize)
    }
}

/// The key column (0-based) holding the vector: the one whose operator class has a distance support
/// function. Every other key column is a filter column (filters.rs). It is usually the first, but
/// need not be: PostgreSQL 15's planner only makes `col = ANY(...)` an index condition on the first
/// column while keeping the ORDER BY, so `(category, embedding)` is how to get that for `category`.
pub fn vector_column(index: pg_sys::Relation) -> usize {
    // SAFETY: an open index relation.
    let keys = unsafe { (*(*index).rd_index).indnkeyatts } as usize;
    let vectors: Vec<usize> = (0..keys)
        // SAFETY: attribute numbers of the index's key columns.
        .filter(
            |&i| unsafe { pg_sys::index_getprocid(index, (i + 1) as i16, 1) } != pg_sys::InvalidOid,
        )
        .collect();
    match vectors.as_slice() {
        [column] => *column,
        // undefined_object, the code pgvector gives for a column without an ivfflat operator class
        // (there, `(id)` has none; here integers have filter operator classes).
        [] => crate::error::raise_with(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "an ivfflat index needs a vector column".into(),
            Some("Index a vector column with one of the vector operator classes, e.g. USING ivfflat (embedding vector_l2_ops, category)."),
        ),
        _ => crate::error::raise_with(
            pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "an ivfflat index can have only one vector column".into(),
            None,
        ),
    }
}

/// The table column (1-based attribute number) the index's vector key is, or None for an
/// expression.
pub fn heap_vector_attribute(index: pg_sys::Relation, vector_column: usize) -> Option<i16> {
    // SAFETY: an open index relation; indkey has indnatts entries.
    let attno = unsafe {
        let index_form = &*(*index).rd_index;
        *index_form
            .indkey
            .values
            .as_slice(vector_column + 1)
            .get(vector_column)?
    };
    (attno > 0).then_some(attno)
}

/// The metric implied by the operator class of the index's vector column (pgvector's
/// support-function convention), so any opclass shaped like pgvector's works.
pub fn metric_of(index: pg_sys::Relation) -> Metric {
    let attno = (vector_column(index) + 1) as i16;
    // SAFETY: `index` is an open ivfflat index.
    unsafe {
        if pg_sys::index_getprocid(index, attno, PROC_NORM) != pg_sys::InvalidOid {
            Metric::Cosine
        } else if pg_sys::index_getprocid(index, attno, PROC_KMEANS_NORM) != pg_sys::InvalidOid {
            Metric::InnerProduct
        } else {
            Metric::L2
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn amoptions(
    reloptions: pg_sys::Datum,
    validate: bool,
) -> *mut pg_sys::bytea {
    let table = [
        pg_sys::relopt_parse_elt {
            optname: c"lists".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: std::mem::offset_of!(Options, lists) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"quantizer".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            offset: std::mem::offset_of!(Options, quantizer) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"rerank".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            offset: std::mem::offset_of!(Options, rerank) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"spill".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            offset: std::mem::offset_of!(Options, spill) as i32,
        },
    ];
    // SAFETY: the table describes `Options` exactly.
    unsafe {
        pg_sys::build_reloptions(
            reloptions,
            validate,
            RELOPT_KIND.load(Ordering::Relaxed) as pg_sys::relopt_kind::Type,
            std::mem::size_of::<Options>(),
            table.as_ptr(),
            table.len() as i32,
        )
        .cast()
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let name: &'static std::ffi::CStr = match phase {
        1 => c"initializing",
        PHASE_KMEANS => c"performing k-means",
        PHASE_ASSIGN => c"assigning tuples",
        PHASE_LOAD => c"loading tuples",
        _ => return std::ptr::null_mut(),
    };
    name.as_ptr().cast_mut()
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
        r.amsupport = 5;
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
        r.amoptions = Some(amoptions);
        r.ambuildphasename = Some(ambuildphasename);
        r.amvalidate = Some(validate::amvalidate);
        r.ambeginscan = Some(scan::ambeginscan);
        r.amrescan = Some(scan::amrescan);
        r.amgettuple = Some(scan::amgettuple);
        r.amendscan = Some(scan::amendscan);
        pg_sys::Datum::from(am)
    }
});
