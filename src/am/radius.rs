//! Distance-threshold queries: `WHERE embedding <=> $1 < 0.3 ORDER BY embedding <=> $1 LIMIT k`.
//!
//! PostgreSQL never hands such a condition to an index: its top operator is float8's `<`, not an
//! operator of the index's operator class. Left to the executor, it only filters the rows the scan
//! returns, and when fewer than k rows lie inside the radius the executor keeps asking for more
//! until the scan has read every list it may. So a planner hook spots, on each ivfflat index path
//! ordered by `col <op> q`, a condition `col <op> q < r` (or `<=`, or `r > col <op> q`) with the same
//! distance expression, and adds an index condition `col <<op>> sphere(q, r)` (the operator classes'
//! strategy 2: within distance r of q, by the operator's distance). The original condition stays as
//! the executor's filter, and the scan has the executor recheck the sphere condition on the rows it
//! returns, so results are exactly what the query asks under every plan; the index condition lets
//! the scan skip every list that cannot hold a row inside the radius (`bounds`) and stop once none is
//! left.

use crate::error::OrRaise;
use crate::types::ops::cosine_distance_of;
use crate::types::vector;
use pgivf_core::distance;
use pgivf_core::VectorError;
use pgrx::pg_sys;

/// Strategy number of the "within distance" operators in the vector operator classes.
pub const WITHIN_STRATEGY: u16 = 2;

const FLOAT8_LT: u32 = 672;
const FLOAT8_LE: u32 = 673;
const FLOAT8_GT: u32 = 674;
const FLOAT8_GE: u32 = 675;

static mut PREVIOUS_HOOK: pg_sys::set_rel_pathlist_hook_type = None;

pub fn init() {
    // SAFETY: _PG_init runs once per backend, before any planning, on the backend's thread.
    unsafe {
        PREVIOUS_HOOK = pg_sys::set_rel_pathlist_hook;
        pg_sys::set_rel_pathlist_hook = Some(add_radius_conditions);
    }
}

/// The elements of a PostgreSQL pointer list.
///
/// # Safety
/// `list` must be NIL or a valid pointer list.
pub unsafe fn list_items<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        (0..(*list).length as usize)
            .map(|i| (*(*list).elements.add(i)).ptr_value.cast::<T>())
            .collect()
    }
}

/// The elements of a PostgreSQL integer list.
///
/// # Safety
/// `list` must be NIL or a valid integer list.
unsafe fn int_items(list: *mut pg_sys::List) -> Vec<i32> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        (0..(*list).length as usize)
            .map(|i| (*(*list).elements.add(i)).int_value)
            .collect()
    }
}

/// `radius` when `clause` is `distance < radius`, `distance <= radius`, `radius > distance` or
/// `radius >= distance`, with `radius` free of the table's columns and of volatile functions.
///
/// # Safety
/// `clause` and `distance` must be valid expression nodes.
unsafe fn radius_of(
    clause: *mut pg_sys::Node,
    distance: *mut pg_sys::Node,
) -> Option<*mut pg_sys::Node> {
    // SAFETY: guaranteed by the caller; the node is identified by its tag before the cast.
    unsafe {
        if (*clause).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let op = &*clause.cast::<pg_sys::OpExpr>();
        let args = list_items::<pg_sys::Node>(op.args);
        let [left, right] = args.as_slice() else {
            return None;
        };
        let radius = match u32::from(op.opno) {
            FLOAT8_LT | FLOAT8_LE if pg_sys::equal(left.cast(), distance.cast()) => *right,
            FLOAT8_GT | FLOAT8_GE if pg_sys::equal(right.cast(), distance.cast()) => *left,
            _ => return None,
        };
        (!pg_sys::contain_var_clause(radius) && !pg_sys::contain_volatile_functions(radius))
            .then_some(radius)
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn add_radius_conditions(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rti: pg_sys::Index,
    rte: *mut pg_sys::RangeTblEntry,
) {
    // SAFETY: the planner's own structures, on the backend's thread, in its memory context.
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(root, rel, rti, rte);
        }
        let restrictions = list_items::<pg_sys::RestrictInfo>((*rel).baserestrictinfo);
        if restrictions.is_empty() {
            return;
        }
        let ivfflat = pg_sys::get_am_oid(c"ivfflat".as_ptr(), true);
        if ivfflat == pg_sys::InvalidOid {
            return;
        }
        for path in list_items::<pg_sys::Path>((*rel).pathlist) {
            if (*path).type_ != pg_sys::NodeTag::T_IndexPath {
                continue;
            }
            let index_path = path.cast::<pg_sys::IndexPath>();
            let info = (*index_path).indexinfo;
            if (*info).relam != ivfflat {
                continue;
            }
            let (orderbys, columns) = (
                list_items::<pg_sys::Node>((*index_path).indexorderbys),
                int_items((*index_path).indexorderbycols),
            );
            let ([distance], [column]) = (orderbys.as_slice(), columns.as_slice()) else {
                continue;
            };
            if (**distance).type_ != pg_sys::NodeTag::T_OpExpr {
                continue;
            }
            let vector = list_items::<pg_sys::Expr>((*distance.cast::<pg_sys::OpExpr>()).args)[0];
            let family = *(*info).opfamily.add(*column as usize);
            let input_type = *(*info).opcintype.add(*column as usize);
            let Some((within, sphere_type)) = within_operator(family, input_type) else {
                continue;
            };
            let query = list_items::<pg_sys::Expr>((*distance.cast::<pg_sys::OpExpr>()).args)[1];
            let Some((restriction, radius)) = restrictions
                .iter()
                .find_map(|&r| radius_of((*r).clause.cast(), *distance).map(|radius| (r, radius)))
            else {
                continue;
            };
            let sphere =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::RowExpr>()).cast::<pg_sys::RowExpr>();
            (*sphere).xpr.type_ = pg_sys::NodeTag::T_RowExpr;
            (*sphere).args = pg_sys::lappend(
                pg_sys::lappend(std::ptr::null_mut(), query.cast()),
                radius.cast(),
            );
            (*sphere).row_typeid = sphere_type;
            (*sphere).row_format = pg_sys::CoercionForm::COERCE_EXPLICIT_CAST;
            (*sphere).colnames = std::ptr::null_mut();
            (*sphere).location = -1;
            let condition = pg_sys::make_opclause(
                within,
                pg_sys::BOOLOID,
                false,
                vector,
                sphere.cast(),
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
            );
            let rinfo =
                crate::compat::restrict_info(root, condition, (*restriction).security_level);
            let clause = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexClause>())
                .cast::<pg_sys::IndexClause>();
            (*clause).type_ = pg_sys::NodeTag::T_IndexClause;
            (*clause).rinfo = rinfo;
            (*clause).indexquals = pg_sys::lappend(std::ptr::null_mut(), rinfo.cast());
            (*clause).lossy = false;
            (*clause).indexcol = *column as pg_sys::AttrNumber;
            // Index clauses are kept in index column order.
            let mut clauses = list_items::<pg_sys::IndexClause>((*index_path).indexclauses);
            let at = clauses
                .iter()
                .position(|&c| (*c).indexcol > *column as pg_sys::AttrNumber)
                .unwrap_or(clauses.len());
            clauses.insert(at, clause);
            let mut list: *mut pg_sys::List = std::ptr::null_mut();
            for c in clauses {
                list = pg_sys::lappend(list, c.cast());
            }
            (*index_path).indexclauses = list;
        }
    }
}

/// The family's radius operator for `input_type` (strategy 2) and the sphere type it takes. A 0.2.0
/// install not yet updated has one taking a bare radius, which is left alone.
fn within_operator(
    family: pg_sys::Oid,
    input_type: pg_sys::Oid,
) -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    super::catalog::family_operators(family)
        .into_iter()
        .find(|op| op.amopstrategy == WITHIN_STRATEGY as i16 && op.amoplefttype == input_type)
        // SAFETY: a type oid from the catalog.
        .filter(|op| unsafe { pg_sys::get_typtype(op.amoprighttype) } == pg_sys::TYPTYPE_COMPOSITE as std::ffi::c_char)
        .map(|op| (op.amopopr, op.amoprighttype))
}

/// The center and radius of a `sphere` (None when either is NULL).
///
/// # Safety
/// `datum` must be a non-NULL `sphere` datum.
pub unsafe fn sphere_of<'a>(datum: pg_sys::Datum) -> Option<(&'a [f32], f64)> {
    // SAFETY: a composite datum (detoasted to a HeapTupleHeader) of the sphere type, whose
    // attributes are a vector and a float8.
    unsafe {
        let tuple =
            pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::HeapTupleHeaderData>();
        let mut isnull = false;
        let center = pg_sys::GetAttributeByNum(tuple, 1, &mut isnull);
        if isnull {
            return None;
        }
        let radius = pg_sys::GetAttributeByNum(tuple, 2, &mut isnull);
        if isnull {
            return None;
        }
        Some((
            vector::detoast(center),
            f64::from_bits(radius.value() as u64),
        ))
    }
}

/// `vector <<op>> sphere`: whether the vector's distance to the sphere's center, as `distance`
/// computes it (the operator's own), is at most the radius; NULL when the sphere has a NULL part.
///
/// # Safety
/// `fcinfo` must be a call with a vector and a sphere, both non-NULL.
unsafe fn within(
    fcinfo: pg_sys::FunctionCallInfo,
    distance: fn(&[f32], &[f32]) -> f64,
) -> pg_sys::Datum {
    // SAFETY: guaranteed by the caller.
    let (row, sphere) = unsafe {
        (
            vector::detoast(crate::fmgr::arg_datum(fcinfo, 0)),
            sphere_of(crate::fmgr::arg_datum(fcinfo, 1)),
        )
    };
    let Some((center, radius)) = sphere else {
        // SAFETY: the call's own fcinfo.
        return unsafe { crate::fmgr::return_null(fcinfo) };
    };
    if row.len() != center.len() {
        Err(VectorError::DimensionMismatch(row.len(), center.len())).or_raise()
    }
    pg_sys::Datum::from(float8_le(distance(row, center), radius))
}

/// float8's `<=`: NaN is above every number and equal to itself (so every distance is within a NaN
/// radius, as `distance < 'NaN'` holds for every row).
fn float8_le(a: f64, b: f64) -> bool {
    b.is_nan() || (!a.is_nan() && a <= b)
}

pg_function!(vector_within_l2, pg_finfo_vector_within_l2, |fcinfo| {
    // SAFETY: (vector, sphere), STRICT.
    unsafe { within(fcinfo, |a, b| f64::from(distance::l2_squared(a, b)).sqrt()) }
});

pg_function!(vector_within_ip, pg_finfo_vector_within_ip, |fcinfo| {
    // SAFETY: (vector, sphere), STRICT.
    unsafe { within(fcinfo, |a, b| -f64::from(distance::dot(a, b))) }
});

pg_function!(
    vector_within_cosine,
    pg_finfo_vector_within_cosine,
    |fcinfo| {
        // SAFETY: (vector, sphere), STRICT.
        unsafe { within(fcinfo, cosine_distance_of) }
    }
);

// 0.2.0's radius operators' function, (vector, float8) -> true: kept so that a 0.2.0 install works
// until ALTER EXTENSION pgivf UPDATE, and so that the 0.1.0 -> 0.2.0 script it runs on the way to
// 0.3.0 finds its symbol; 0.3.0 drops it.
pg_function!(
    vector_within_index,
    pg_finfo_vector_within_index,
    |_fcinfo| { pg_sys::Datum::from(true) }
);
