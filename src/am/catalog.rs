//! What the catalogs say about an ivfflat index: which key column is the vector, which table
//! column that is, and the metric its operator class names.

use crate::error::raise_with;
use pgivf_core::metric::Metric;
use pgrx::{pg_sys, PgSqlErrorCode};

/// Support function 1 of a vector operator class: the distance. Its presence marks a key column
/// as the vector; every other key column is a filter column (filters.rs).
pub const PROC_DISTANCE: u16 = 1;
/// Support function 6 of a vector operator class: `ivfflat_metric_*(internal)`, which names the
/// metric (pgvector's numbers go up to 5).
pub const PROC_METRIC: u16 = 6;

/// The key column (0-based) holding the vector: the one whose operator class has a distance
/// support function. It is usually the first, but need not be: PostgreSQL 15's planner only makes
/// `col = ANY(...)` an index condition on the first column while keeping the ORDER BY, so
/// `(category, embedding)` is how to get that for `category`.
pub fn vector_column(index: pg_sys::Relation) -> usize {
    // SAFETY: an open index relation.
    let keys = unsafe { (*(*index).rd_index).indnkeyatts } as usize;
    let vectors: Vec<usize> = (0..keys)
        .filter(|&i| {
            // SAFETY: attribute numbers of the index's key columns.
            let proc = unsafe { pg_sys::index_getprocid(index, (i + 1) as i16, PROC_DISTANCE) };
            proc != pg_sys::InvalidOid
        })
        .collect();
    match vectors.as_slice() {
        [column] => *column,
        // undefined_object, the code pgvector gives for a column without an ivfflat operator class
        // (there, `(id)` has none; here integers have filter operator classes).
        [] => raise_with(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "an ivfflat index needs a vector column".into(),
            Some("Index a vector column with one of the vector operator classes, e.g. USING ivfflat (embedding vector_l2_ops, category)."),
        ),
        _ => raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
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

/// The vector column's type modifier: its dimensions, or -1 without any.
pub fn vector_typmod(index: pg_sys::Relation, vector_column: usize) -> i32 {
    // SAFETY: the vector column is one of the index's attributes.
    unsafe { crate::compat::attribute(index, vector_column).atttypmod }
}

/// Return type and argument types of a function, from its pg_proc row.
pub fn signature(function: pg_sys::Oid) -> Option<(pg_sys::Oid, Vec<pg_sys::Oid>)> {
    // SAFETY: syscache lookup by oid; the tuple is released before returning.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(function),
        );
        if tuple.is_null() {
            return None;
        }
        let form = &*pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_proc>();
        let args = form
            .proargtypes
            .values
            .as_slice(form.pronargs as usize)
            .to_vec();
        let result = (form.prorettype, args);
        pg_sys::ReleaseSysCache(tuple);
        Some(result)
    }
}

/// Copies of the rows of a syscache list looked up by one key (an operator family).
fn family_rows<T: Copy>(cache: pg_sys::SysCacheIdentifier::Type, family: pg_sys::Oid) -> Vec<T> {
    // SAFETY: a catcache list lookup by oid; its members' tuples have form type `T` for the cache
    // asked, and are copied before the list is released.
    unsafe {
        let list = pg_sys::SearchSysCacheList(
            cache as i32,
            1,
            pg_sys::Datum::from(family),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        let rows = (*list)
            .members
            .as_slice((*list).n_members as usize)
            .iter()
            .map(|member| *pg_sys::GETSTRUCT(&mut (**member).tuple).cast::<T>())
            .collect();
        pg_sys::ReleaseCatCacheList(list);
        rows
    }
}

/// The operators of an operator family (its pg_amop rows).
pub fn family_operators(family: pg_sys::Oid) -> Vec<pg_sys::FormData_pg_amop> {
    family_rows(pg_sys::SysCacheIdentifier::AMOPSTRATEGY, family)
}

/// The support functions of an operator family (its pg_amproc rows).
pub fn family_procs(family: pg_sys::Oid) -> Vec<pg_sys::FormData_pg_amproc> {
    family_rows(pg_sys::SysCacheIdentifier::AMPROCNUM, family)
}

/// pg_language's `c` (ClanguageId, fixed in the catalog's initial contents).
const C_LANGUAGE: pg_sys::Oid = pg_sys::Oid::from_u32(13);

/// The C symbol of a function written in C (`AS 'MODULE_PATHNAME', 'symbol'`), None for any other.
pub fn c_symbol(function: pg_sys::Oid) -> Option<String> {
    // SAFETY: syscache lookup by oid; the attribute is copied out before the tuple is released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(function),
        );
        if tuple.is_null() {
            return None;
        }
        let form = &*pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_proc>();
        let symbol = (form.prolang == C_LANGUAGE).then(|| {
            let mut isnull = false;
            let datum = pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::PROCOID as i32,
                tuple,
                pg_sys::Anum_pg_proc_prosrc as i16,
                &mut isnull,
            );
            (!isnull).then(|| {
                let text = pg_sys::text_to_cstring(datum.cast_mut_ptr());
                let symbol = std::ffi::CStr::from_ptr(text)
                    .to_string_lossy()
                    .into_owned();
                pg_sys::pfree(text.cast());
                symbol
            })
        });
        pg_sys::ReleaseSysCache(tuple);
        symbol.flatten()
    }
}

/// The metric the index's vector operator class names: its support function 6. Operator classes
/// created before 0.3.0 (until `ALTER EXTENSION pgivf UPDATE` adds it) name it by their ORDER BY
/// operator's function, one of pgivf's own distances. None for any other operator class.
pub fn opclass_metric(index: pg_sys::Relation, vector_column: usize) -> Option<Metric> {
    let attno = (vector_column + 1) as i16;
    // SAFETY: `index` is an open ivfflat index and `attno` one of its key columns; rd_opfamily and
    // rd_opcintype have an entry per key column.
    unsafe {
        let function = pg_sys::index_getprocid(index, attno, PROC_METRIC);
        if function != pg_sys::InvalidOid {
            return c_symbol(function).and_then(|symbol| Metric::from_support_symbol(&symbol));
        }
        let family = *(*index).rd_opfamily.add(vector_column);
        let input_type = *(*index).rd_opcintype.add(vector_column);
        let operator = pg_sys::get_opfamily_member(family, input_type, input_type, 1);
        if operator == pg_sys::InvalidOid {
            return None;
        }
        c_symbol(pg_sys::get_opcode(operator)).and_then(|symbol| match symbol.as_str() {
            "l2_distance" => Some(Metric::L2),
            "vector_negative_inner_product" => Some(Metric::InnerProduct),
            "cosine_distance" => Some(Metric::Cosine),
            _ => None,
        })
    }
}

/// The metric to build an index with: its operator class's, which must name one.
pub fn build_metric(index: pg_sys::Relation, vector_column: usize) -> Metric {
    opclass_metric(index, vector_column).unwrap_or_else(|| {
        raise_with(
            PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
            "the operator class of an ivfflat index's vector column does not name a metric".into(),
            Some("Vector operator classes have support function 6, ivfflat_metric_l2, ivfflat_metric_ip or ivfflat_metric_cosine; ALTER EXTENSION pgivf UPDATE adds it to pgivf's own."),
        )
    })
}

// Support function 6 of each vector operator class: never called, only named (see
// `opclass_metric`); `internal` arguments keep them out of SQL's reach.
pg_function!(ivfflat_metric_l2, pg_finfo_ivfflat_metric_l2, |_fcinfo| {
    pg_sys::Datum::from(0)
});
pg_function!(ivfflat_metric_ip, pg_finfo_ivfflat_metric_ip, |_fcinfo| {
    pg_sys::Datum::from(0)
});
pg_function!(
    ivfflat_metric_cosine,
    pg_finfo_ivfflat_metric_cosine,
    |_fcinfo| { pg_sys::Datum::from(0) }
);
