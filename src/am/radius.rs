//! Distance-threshold queries: `WHERE embedding <=> $1 < 0.3 ORDER BY embedding <=> $1 LIMIT k`.
//!
//! PostgreSQL never hands such a condition to an index: its top operator is float8's `<`, not an
//! operator of the index's operator class. Left to the executor, it only filters the rows the scan
//! returns, and when fewer than k rows lie inside the radius the executor keeps asking for more
//! until the scan has read every list it may. So a planner hook spots, on each ivfflat index path
//! ordered by `col <op> q`, a condition `col <op> q < r` (or `<=`, or `r > col <op> q`) with the same
//! distance expression, and adds an index condition `col <<op>> r` (the operator classes' strategy
//! 2, "within distance r of the ORDER BY value"). The original condition stays as the executor's
//! filter, so results are exactly what the query asks; the index condition lets the scan skip every
//! list that cannot hold a row inside the radius (bounds.rs) and stop once none is left.

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
            let within = pg_sys::get_opfamily_member(
                family,
                input_type,
                pg_sys::FLOAT8OID,
                WITHIN_STRATEGY as i16,
            );
            if within == pg_sys::InvalidOid {
                continue;
            }
            let Some((restriction, radius)) = restrictions
                .iter()
                .find_map(|&r| radius_of((*r).clause.cast(), *distance).map(|radius| (r, radius)))
            else {
                continue;
            };
            let condition = pg_sys::make_opclause(
                within,
                pg_sys::BOOLOID,
                false,
                vector,
                radius.cast(),
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
            );
            let rinfo = pg_sys::make_restrictinfo(
                root,
                condition,
                true,
                false,
                false,
                (*restriction).security_level,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
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

pg_function!(
    vector_within_index,
    pg_finfo_vector_within_index,
    |_fcinfo| {
        // The `<<->>`, `<<#>>` and `<<=>>` operators only carry a radius to an ivfflat scan, which
        // measures it from its ORDER BY value; the query's own distance condition, which the planner
        // keeps, decides which rows qualify. Evaluated elsewhere (an EvalPlanQual recheck), they pass.
        pg_sys::Datum::from(true)
    }
);
