//! `amoptions`: `WITH (lists = n, quantizer = '...', rerank = '...', spill = '...')`.
//!
//! The `quantizer` option's values come from the core's table of quantizers, so a new quantizer
//! needs nothing here.

use pgivf_core::index::build::Spill;
use pgivf_core::quant::{QuantizerKind, Rerank};
use pgrx::pg_sys;
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering};

/// pgvector's default, used when `lists` is not given and the table is empty (nothing to size by).
pub const DEFAULT_LISTS: usize = 100;
/// The reloption's value when `lists` was not given: the build then sizes the index by the table.
const LISTS_NOT_GIVEN: i32 = 0;
pub const MAX_LISTS: i32 = pgivf_core::page::MAX_LISTS as i32;

static RELOPT_KIND: AtomicI32 = AtomicI32::new(0);

/// The options as build_reloptions lays them out.
#[repr(C)]
struct Options {
    vl_len_: i32,
    lists: i32,
    quantizer: i32,
    rerank: i32,
    spill: i32,
}

/// Defines the options (once, from _PG_init).
pub fn init() {
    let lock = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
    let quantizers: Vec<(CString, i32)> = QuantizerKind::all()
        .map(|kind| {
            (
                CString::new(kind.name()).expect("a name"),
                kind.code() as i32,
            )
        })
        .collect();
    let names: Vec<String> = QuantizerKind::all()
        .map(|kind| format!("\"{}\"", kind.name()))
        .collect();
    let quantizer_values = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("Valid values are {} and {last}.", rest.join(", "))
        }
        _ => format!("Valid values are {}.", names.join("")),
    };
    // SAFETY: called once from _PG_init; every string and member table is leaked, as PostgreSQL
    // keeps pointers to them for the backend's life.
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
            lock,
        );
        pg_sys::add_enum_reloption(
            kind,
            c"quantizer".as_ptr(),
            c"What the lists hold: full vectors (none) or the codes of a quantizer".as_ptr(),
            enum_members(quantizers),
            QuantizerKind::NONE.code() as i32,
            leak(quantizer_values),
            lock,
        );
        pg_sys::add_enum_reloption(
            kind,
            c"rerank".as_ptr(),
            c"Where a quantized index reads the full vectors it re-ranks with".as_ptr(),
            enum_members(vec![
                (c"index".into(), Rerank::Index as i32),
                (c"heap".into(), Rerank::Heap as i32),
            ]),
            Rerank::Index as i32,
            c"Valid values are \"index\" and \"heap\".".as_ptr(),
            lock,
        );
        pg_sys::add_enum_reloption(
            kind,
            c"spill".as_ptr(),
            c"Whether a quantized index files each row under a second list too".as_ptr(),
            enum_members(vec![
                (c"auto".into(), Spill::Auto as i32),
                (c"on".into(), Spill::On as i32),
                (c"off".into(), Spill::Off as i32),
            ]),
            Spill::Auto as i32,
            c"Valid values are \"auto\", \"on\" and \"off\".".as_ptr(),
            lock,
        );
    }
}

fn leak(text: String) -> *const std::ffi::c_char {
    CString::new(text).expect("no NUL").into_raw()
}

/// A NULL-terminated table of enum members, leaked.
fn enum_members(members: Vec<(CString, i32)>) -> *mut pg_sys::relopt_enum_elt_def {
    let mut table: Vec<pg_sys::relopt_enum_elt_def> = members
        .into_iter()
        .map(|(name, value)| pg_sys::relopt_enum_elt_def {
            string_val: name.into_raw(),
            symbol_val: value,
        })
        .collect();
    table.push(pg_sys::relopt_enum_elt_def {
        string_val: std::ptr::null(),
        symbol_val: 0,
    });
    table.leak().as_mut_ptr()
}

/// The index's parsed options; None when none were given.
fn options(index: pg_sys::Relation) -> Option<&'static Options> {
    // SAFETY: rd_options is NULL or what amoptions returned for this index, which lives as long
    // as the relcache entry the caller holds open.
    unsafe { (*index).rd_options.cast::<Options>().as_ref() }
}

/// The `spill` option (auto when not given).
pub fn spill(index: pg_sys::Relation) -> Spill {
    match options(index).map_or(Spill::Auto as i32, |o| o.spill) {
        1 => Spill::On,
        2 => Spill::Off,
        _ => Spill::Auto,
    }
}

/// The `quantizer` and `rerank` options (none and index when not given).
pub fn quantizer(index: pg_sys::Relation) -> (QuantizerKind, Rerank) {
    let (quantizer, rerank) = options(index).map_or((0, 0), |o| (o.quantizer, o.rerank));
    (
        QuantizerKind::from_code(quantizer as u32).unwrap_or(QuantizerKind::NONE),
        if rerank == Rerank::Heap as i32 {
            Rerank::Heap
        } else {
            Rerank::Index
        },
    )
}

/// The `lists` option, None when it was not given.
pub fn lists(index: pg_sys::Relation) -> Option<usize> {
    let lists = options(index).map_or(LISTS_NOT_GIVEN, |o| o.lists);
    (lists != LISTS_NOT_GIVEN).then_some(lists as usize)
}

/// Lists for a table of `rows` rows when `lists` is not given: rows / 1000 up to a million rows,
/// sqrt(rows) beyond (the usual IVF advice, pgvector's README's), at least 1. A table of fewer
/// rows than pgvector's default of 100 lists is too small to size an index by (it will be rebuilt
/// once loaded), so it keeps that default and pgvector's "little data" notice, as pgvector's own
/// tests expect.
pub fn lists_for_rows(rows: f64) -> usize {
    if rows < DEFAULT_LISTS as f64 {
        DEFAULT_LISTS
    } else if rows <= 1_000_000.0 {
        ((rows / 1000.0) as usize).max(1)
    } else {
        (rows.sqrt() as usize).min(MAX_LISTS as usize)
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amoptions(
    reloptions: pg_sys::Datum,
    validate: bool,
) -> *mut pg_sys::bytea {
    let field = crate::compat::relopt_field;
    let table = [
        field(
            c"lists",
            pg_sys::relopt_type::RELOPT_TYPE_INT,
            std::mem::offset_of!(Options, lists),
        ),
        field(
            c"quantizer",
            pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            std::mem::offset_of!(Options, quantizer),
        ),
        field(
            c"rerank",
            pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            std::mem::offset_of!(Options, rerank),
        ),
        field(
            c"spill",
            pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            std::mem::offset_of!(Options, spill),
        ),
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
