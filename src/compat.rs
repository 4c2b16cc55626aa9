//! What differs between the PostgreSQL versions pgivf builds for (15, 17, 18), in one place: each
//! function here is the same operation under each version's names and signatures.

use pgrx::pg_sys;

/// The relation's physical file (tablespace, database, file number): what a backend's cached
/// copy of an index is keyed by, and what tells builds of one index apart.
pub fn relation_file(relation: pg_sys::Relation) -> (u32, u32, u32) {
    // SAFETY: an open relation.
    unsafe {
        #[cfg(feature = "pg15")]
        let file = (*relation).rd_node;
        #[cfg(feature = "pg15")]
        return (file.spcNode.into(), file.dbNode.into(), file.relNode.into());
        #[cfg(not(feature = "pg15"))]
        let file = (*relation).rd_locator;
        #[cfg(not(feature = "pg15"))]
        (file.spcOid.into(), file.dbOid.into(), file.relNumber.into())
    }
}

/// ReadRecentBuffer for block `block` of the relation's main fork.
///
/// # Safety
/// `relation` must be open; `buffer` any buffer number (checked against the block's tag).
pub unsafe fn read_recent_buffer(
    relation: pg_sys::Relation,
    block: u32,
    buffer: pg_sys::Buffer,
) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        #[cfg(feature = "pg15")]
        let file = (*relation).rd_node;
        #[cfg(not(feature = "pg15"))]
        let file = (*relation).rd_locator;
        pg_sys::ReadRecentBuffer(file, pg_sys::ForkNumber::MAIN_FORKNUM, block, buffer)
    }
}

/// Whether `role` owns table `table` (or is a superuser).
pub fn owns_table(table: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup by oid.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::pg_class_ownercheck(table, role);
        #[cfg(not(feature = "pg15"))]
        pg_sys::object_ownercheck(pg_sys::RelationRelationId, table, role)
    }
}

/// A RestrictInfo for a pushed-down condition of one relation, as make_restrictinfo makes it.
///
/// # Safety
/// The planner's own `root` and a valid boolean `clause`.
pub unsafe fn restrict_info(
    root: *mut pg_sys::PlannerInfo,
    clause: *mut pg_sys::Expr,
    security_level: pg_sys::Index,
) -> *mut pg_sys::RestrictInfo {
    let none = std::ptr::null_mut();
    // SAFETY: guaranteed by the caller.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::make_restrictinfo(
            root,
            clause,
            true,
            false,
            false,
            security_level,
            none,
            none,
            none,
        );
        #[cfg(not(feature = "pg15"))]
        pg_sys::make_restrictinfo(
            root,
            clause,
            true,
            false,
            false,
            false,
            security_level,
            none,
            none,
            none,
        )
    }
}

/// PostgreSQL's pgstat_count_index_scan: counts a scan in pg_stat_user_indexes.idx_scan.
pub fn count_index_scan(index: pg_sys::Relation) {
    // SAFETY: an open relation; pgstat_assoc_relation attaches its statistics entry when enabled.
    unsafe {
        let rel = &mut *index;
        if rel.pgstat_info.is_null() {
            if !rel.pgstat_enabled {
                return;
            }
            pg_sys::pgstat_assoc_relation(index);
        }
        if rel.pgstat_info.is_null() {
            return;
        }
        #[cfg(feature = "pg15")]
        {
            (*rel.pgstat_info).t_counts.t_numscans += 1;
        }
        #[cfg(not(feature = "pg15"))]
        {
            (*rel.pgstat_info).counts.numscans += 1;
        }
    }
}

/// Column `column` (0-based) of a relation's tuple descriptor.
///
/// # Safety
/// `relation` must be open and have more than `column` attributes.
pub unsafe fn attribute<'a>(
    relation: pg_sys::Relation,
    column: usize,
) -> &'a pg_sys::FormData_pg_attribute {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let descriptor = (*relation).rd_att;
        #[cfg(not(feature = "pg18"))]
        return &(*descriptor).attrs.as_slice(column + 1)[column];
        #[cfg(feature = "pg18")]
        &*pg_sys::TupleDescAttr(descriptor, column as i32)
    }
}

/// VACUUM's cost-based delay and interrupt check.
pub fn vacuum_delay_point() {
    // SAFETY: called on the backend thread during VACUUM.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::vacuum_delay_point();
        #[cfg(feature = "pg18")]
        pg_sys::vacuum_delay_point(false);
    }
}

/// One entry of a reloption parse table.
pub fn relopt_field(
    name: &'static std::ffi::CStr,
    opttype: pg_sys::relopt_type::Type,
    offset: usize,
) -> pg_sys::relopt_parse_elt {
    pg_sys::relopt_parse_elt {
        optname: name.as_ptr(),
        opttype,
        offset: offset as i32,
        // No option of ours needs to know whether it was given explicitly.
        #[cfg(feature = "pg18")]
        isset_offset: 0,
    }
}
