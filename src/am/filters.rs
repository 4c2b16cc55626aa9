//! Filter columns: `CREATE INDEX ... USING ivfflat (embedding vector_cosine_ops, category, tenant_id)`.
//!
//! Every key column after the vector is a filter column. Entries carry a hash of each filter value
//! (pgivf_core::filter explains why hashes), and each list a summary of the hashes it holds. A query's
//! `category = 'x'`, `category = ANY(...)` and `category IN (...)` reach the scan as index conditions
//! (EXPLAIN's `Index Cond`); the scan skips lists whose summary rules them out and entries whose hashes
//! do not match, before computing any distance, and the executor rechecks the condition on the rows
//! returned (hashes can collide).

use crate::error::raise_with;
use pgivf_core::filter::{self, FilterQuery};
use pgrx::{pg_sys, PgSqlErrorCode};

/// The operator strategy of `=` in the filter operator classes (btree's number for equality).
pub const EQUALITY_STRATEGY: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterType {
    Int2,
    Int4,
    Int8,
    Bool,
    /// text and varchar (a varlena of bytes), under a deterministic collation.
    Text,
    Uuid,
}

/// How to hash the values of an index's filter columns.
#[derive(Debug, Clone)]
pub struct FilterColumns {
    types: Vec<FilterType>,
    /// Each filter column's position among the index's key columns (0-based).
    columns: Vec<usize>,
}

impl FilterColumns {
    /// The filter columns of `index` (its key columns but the vector), checked to be hashable.
    pub fn of(index: pg_sys::Relation) -> Self {
        let vector_column = super::catalog::vector_column(index);
        // SAFETY: an open index relation; its tuple descriptor has one attribute per column and
        // rd_indcollation one collation per key column.
        let (key_columns, attrs, collations) = unsafe {
            let keys = (*(*index).rd_index).indnkeyatts as usize;
            let attrs: Vec<pg_sys::FormData_pg_attribute> = (0..keys)
                .map(|i| *crate::compat::attribute(index, i))
                .collect();
            let collations = std::slice::from_raw_parts((*index).rd_indcollation, keys).to_vec();
            (keys, attrs, collations)
        };
        let columns: Vec<usize> = (0..key_columns).filter(|&i| i != vector_column).collect();
        let types = columns
            .iter()
            .map(|&i| {
                // SAFETY: a type oid from the catalog.
                let base = unsafe { pg_sys::getBaseType(attrs[i].atttypid) };
                let kind = match base {
                    pg_sys::INT2OID => FilterType::Int2,
                    pg_sys::INT4OID => FilterType::Int4,
                    pg_sys::INT8OID => FilterType::Int8,
                    pg_sys::BOOLOID => FilterType::Bool,
                    pg_sys::TEXTOID | pg_sys::VARCHAROID => FilterType::Text,
                    pg_sys::UUIDOID => FilterType::Uuid,
                    _ => raise_with(
                        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                        format!("type {} is not supported for ivfflat filter columns", type_name(base)),
                        Some("Filter columns can be text, varchar, smallint, integer, bigint, boolean or uuid."),
                    ),
                };
                // The operator class's equality must be one whose equal values have equal bytes
                // (integers: equal values), or the index would miss rows it equates.
                // SAFETY: an open index; rd_opfamily and rd_opcintype have one entry per key column.
                let equality = unsafe {
                    let family = *(*index).rd_opfamily.add(i);
                    let input_type = *(*index).rd_opcintype.add(i);
                    let operator = pg_sys::get_opfamily_member(
                        family,
                        input_type,
                        input_type,
                        EQUALITY_STRATEGY as i16,
                    );
                    (operator != pg_sys::InvalidOid).then(|| pg_sys::get_opcode(operator))
                };
                if !equality.is_some_and(is_hashable_equality) {
                    raise_with(
                        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                        "the operator class of an ivfflat filter column must use the type's own equality".into(),
                        Some("Filter columns hash values: an equality under which values with different bytes are equal (a case-insensitive one, say) would miss rows."),
                    );
                }
                // Equal strings must have equal bytes for their hashes to agree.
                // SAFETY: a collation oid from the index.
                if kind == FilterType::Text
                    && collations[i] != pg_sys::InvalidOid
                    && !unsafe { pg_sys::get_collation_isdeterministic(collations[i]) }
                {
                    raise_with(
                        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                        "ivfflat filter columns need a deterministic collation".into(),
                        None,
                    );
                }
                kind
            })
            .collect();
        FilterColumns { types, columns }
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Which filter column index key column `column` (0-based) is, if it is one.
    pub fn position_of(&self, column: usize) -> Option<usize> {
        self.columns.iter().position(|&at| at == column)
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The hash of filter column `column`'s value.
    ///
    /// # Safety
    /// `datum` must be a value of the column's type (ignored when `isnull`).
    pub unsafe fn hash(&self, column: usize, datum: pg_sys::Datum, isnull: bool) -> u64 {
        // SAFETY: guaranteed by the caller.
        unsafe { self.hash_as(column, datum, isnull, self.types[column]) }
    }

    /// The hash of a value of type `kind` compared with filter column `column` (a cross-type
    /// integer comparison's other side): integers hash alike whatever their width.
    ///
    /// # Safety
    /// `datum` must be a value of type `kind` (ignored when `isnull`).
    unsafe fn hash_as(
        &self,
        column: usize,
        datum: pg_sys::Datum,
        isnull: bool,
        kind: FilterType,
    ) -> u64 {
        if isnull {
            return filter::NULL_HASH;
        }
        let raw = datum.value();
        // SAFETY: guaranteed by the caller: pass-by-value integers in the datum, pointers otherwise.
        unsafe {
            match kind {
                FilterType::Int2 => filter::hash_integer(column, i64::from(raw as i16)),
                FilterType::Int4 => filter::hash_integer(column, i64::from(raw as i32)),
                FilterType::Int8 => filter::hash_integer(column, raw as i64),
                FilterType::Bool => filter::hash_integer(column, i64::from(raw & 0xff != 0)),
                FilterType::Uuid => {
                    let bytes = std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), 16);
                    filter::hash_value(column, bytes)
                }
                FilterType::Text => {
                    let text = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                    let bytes = pgrx::varlena::varlena_to_byte_slice(text);
                    let hash = filter::hash_value(column, bytes);
                    if text != datum.cast_mut_ptr() {
                        pg_sys::pfree(text.cast());
                    }
                    hash
                }
            }
        }
    }

    /// The filter type of a value compared with filter column `column`: an integer of another
    /// width for cross-type integer comparisons, else the column's own.
    fn argument_type(&self, column: usize, type_oid: pg_sys::Oid) -> FilterType {
        match (self.types[column], integer_type(type_oid)) {
            (FilterType::Int2 | FilterType::Int4 | FilterType::Int8, Some(integer)) => integer,
            (own, _) => own,
        }
    }

    /// The hashes of a row's filter columns into `out`.
    ///
    /// # Safety
    /// `values` and `isnull` must hold one datum and flag per index key column.
    pub unsafe fn row_hashes(
        &self,
        values: *const pg_sys::Datum,
        isnull: *const bool,
        out: &mut Vec<u64>,
    ) {
        out.clear();
        for (column, &at) in self.columns.iter().enumerate() {
            // SAFETY: guaranteed by the caller.
            out.push(unsafe { self.hash(column, *values.add(at), *isnull.add(at)) });
        }
    }

    /// The scan's index conditions as accepted hashes per filter column.
    ///
    /// # Safety
    /// `keys` must be the scan's keys, on columns of this index.
    pub unsafe fn query(&self, keys: &[pg_sys::ScanKeyData]) -> FilterQuery {
        let mut query = FilterQuery::new();
        for key in keys {
            let position = self
                .columns
                .iter()
                .position(|&at| at as i32 + 1 == i32::from(key.sk_attno));
            let hashable = is_hashable_equality(key.sk_func.fn_oid);
            let Some(column) =
                position.filter(|_| key.sk_strategy == EQUALITY_STRATEGY && hashable)
            else {
                raise_with(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    format!(
                        "unexpected ivfflat index condition on column {} with strategy {} and function {}",
                        key.sk_attno, key.sk_strategy, u32::from(key.sk_func.fn_oid)
                    ),
                    None,
                );
            };
            let flags = key.sk_flags as u32;
            let hashes = if flags & pg_sys::SK_ISNULL != 0 {
                Vec::new() // col = NULL matches nothing
            } else if flags & pg_sys::SK_SEARCHARRAY != 0 {
                // SAFETY: an array of the operator's right-hand type, as the planner built the clause.
                unsafe { self.array_hashes(column, key.sk_argument) }
            } else {
                // The right-hand type of the key's operator: the column's, or an integer of another
                // width (the family's cross-type operators).
                let kind = self.argument_type(column, key.sk_subtype);
                // SAFETY: a value of that type.
                vec![unsafe { self.hash_as(column, key.sk_argument, false, kind) }]
            };
            query.require(column, hashes);
        }
        query
    }

    /// Hashes of the non-NULL elements of `col = ANY(array)`'s array.
    ///
    /// # Safety
    /// `array` must be an array datum whose elements have the column's type.
    pub unsafe fn array_hashes(&self, column: usize, array: pg_sys::Datum) -> Vec<u64> {
        // SAFETY: guaranteed by the caller; deconstruct_array allocates in the current context.
        unsafe {
            let array = pg_sys::pg_detoast_datum(array.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
            let element_type = (*array).elemtype;
            let mut length = 0i16;
            let mut by_value = false;
            let mut align = 0 as std::ffi::c_char;
            pg_sys::get_typlenbyvalalign(element_type, &mut length, &mut by_value, &mut align);
            let mut elements: *mut pg_sys::Datum = std::ptr::null_mut();
            let mut nulls: *mut bool = std::ptr::null_mut();
            let mut count = 0i32;
            pg_sys::deconstruct_array(
                array,
                element_type,
                length.into(),
                by_value,
                align,
                &mut elements,
                &mut nulls,
                &mut count,
            );
            let kind = self.argument_type(column, element_type);
            (0..count as usize)
                .filter(|&i| !*nulls.add(i))
                .map(|i| self.hash_as(column, *elements.add(i), false, kind))
                .collect()
        }
    }
}

/// The filter type of an integer type, None for any other.
fn integer_type(type_oid: pg_sys::Oid) -> Option<FilterType> {
    match type_oid {
        pg_sys::INT2OID => Some(FilterType::Int2),
        pg_sys::INT4OID => Some(FilterType::Int4),
        pg_sys::INT8OID => Some(FilterType::Int8),
        _ => None,
    }
}

/// The equality functions whose notion of equal is the one filter hashes keep: equal values have
/// equal bytes (integers of any width as their value). An operator class whose equality is any
/// other (a case-insensitive one, say) would have the index miss rows it equates.
pub fn is_hashable_equality(function: pg_sys::Oid) -> bool {
    [
        pg_sys::F_INT2EQ,
        pg_sys::F_INT4EQ,
        pg_sys::F_INT8EQ,
        pg_sys::F_INT24EQ,
        pg_sys::F_INT42EQ,
        pg_sys::F_INT28EQ,
        pg_sys::F_INT82EQ,
        pg_sys::F_INT48EQ,
        pg_sys::F_INT84EQ,
        pg_sys::F_BOOLEQ,
        pg_sys::F_TEXTEQ,
        pg_sys::F_UUID_EQ,
    ]
    .contains(&u32::from(function))
}

fn type_name(type_oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd NUL-terminated string for any oid.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::format_type_be(type_oid))
            .to_string_lossy()
            .into_owned()
    }
}
