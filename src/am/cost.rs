//! `amcostestimate`: pgvector's model, so the planner makes the same choices it makes for pgvector
//! (and its plan tests pass): never use the index without ORDER BY; otherwise the generic estimate with
//! part of the page cost made sequential, and a startup cost proportional to the share of lists probed,
//! so that probes = lists prefers a sequential scan.
//!
//! When the scan goes on past its first `probes` lists (index conditions on filter columns, or an
//! iterative scan with other WHERE conditions), the share of lists is the one needed to find the
//! query's LIMIT of matching rows: with a selective condition that is most of the index, and the
//! planner then prefers an exact plan (a btree on the filtered column, or a sequential scan) where
//! it is cheaper.

use super::filters::FilterColumns;
use super::guc::{IterativeScan, ITERATIVE_SCAN, PROBES};
use super::radius::list_items;
use super::storage::PgStore;
use crate::error::OrCorrupt;
use pgivf_core::filter::FilterQuery;
use pgivf_core::index::layout;
use pgrx::pg_sys;

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C-unwind" fn amcostestimate(
    root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    loop_count: f64,
    startup_cost: *mut pg_sys::Cost,
    total_cost: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    // SAFETY: the planner's own pointers.
    unsafe {
        if (*path).indexorderbys.is_null() {
            *startup_cost = f64::INFINITY;
            *total_cost = f64::INFINITY;
            *selectivity = 0.0;
            *correlation = 0.0;
            *pages = 0.0;
            // PostgreSQL 18 ranks paths by how many disabled nodes they hold before their cost:
            // a sequential scan disabled by enable_seqscan = off would lose to an infinite cost.
            // More than one, as pgvector gives, so that a plan with the index never wins.
            #[cfg(feature = "pg18")]
            {
                (*path).path.disabled_nodes = 2;
            }
            return;
        }
        let index_info = (*path).indexinfo;
        let has_index_conditions = !(*path).indexclauses.is_null();
        let mut costs: pg_sys::GenericCosts = std::mem::zeroed();
        if has_index_conditions {
            // The scan reads whole lists whatever its conditions; the share it reads is set below.
            costs.numIndexTuples = (*index_info).tuples.max(1.0);
        }
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);

        let index = pg_sys::index_open((*index_info).indexoid, pg_sys::NoLock as i32);
        let lists = layout::read_meta(&PgStore::new(index))
            .or_corrupt(index)
            .lists as f64;
        let probes = (PROBES.get() as f64).min(lists);
        let mut ratio = probes / lists;
        let continues = has_index_conditions || ITERATIVE_SCAN.get() != IterativeScan::Off;
        let limit = (*root).limit_tuples;
        if continues && limit > 0.0 {
            // Selectivity of every condition on the table, split into the index conditions' (which
            // genericcostestimate computed) and the rest.
            let all = pg_sys::clauselist_selectivity(
                root,
                (*(*index_info).rel).baserestrictinfo,
                0,
                pg_sys::JoinType::JOIN_INNER,
                std::ptr::null_mut(),
            );
            let matching_share = all.clamp(1e-9, 1.0);
            let rows_per_list = ((*index_info).tuples / lists).max(1.0);
            // Enough lists for the LIMIT's matching rows, and, with index conditions, for a
            // batch's worth of matching candidates (scan.rs): `probes` lists' rows.
            let mut lists_needed = (limit / (rows_per_list * matching_share)).ceil();
            if has_index_conditions {
                // Rows matching the conditions sit in `matching` lists (all of them when the
                // conditions are independent of the vectors, a few when they follow the clusters):
                // a batch's worth of matching candidates takes `probes` lists' rows from them.
                let index_share = costs.indexSelectivity.clamp(1e-9, 1.0);
                let matching = lists_matching(index, path).unwrap_or(lists).max(1.0);
                let batch = (probes * matching / (lists * index_share))
                    .ceil()
                    .min(matching);
                lists_needed = lists_needed.max(batch);
            }
            ratio = (lists_needed.max(probes) / lists).min(1.0);
        }
        pg_sys::index_close(index, pg_sys::NoLock as i32);

        let mut seq_page_cost = 0.0;
        pg_sys::get_tablespace_page_costs(
            (*index_info).reltablespace,
            std::ptr::null_mut(),
            &mut seq_page_cost,
        );
        // Lists are read sequentially, so half of the page cost is taken as sequential.
        let sequential_ratio = 0.5;
        costs.indexTotalCost -=
            sequential_ratio * costs.numIndexPages * (costs.spc_random_page_cost - seq_page_cost);
        costs.indexStartupCost = costs.indexTotalCost * ratio;
        // The heap's pages do not count TOASTed vectors, which a sequential scan also reads: do not
        // let the index look more expensive than that scan for the pages it does not really add.
        let startup_pages = costs.numIndexPages * ratio;
        let heap_pages = (*(*index_info).rel).pages as f64;
        if startup_pages > heap_pages && ratio < 0.5 {
            costs.indexStartupCost -= (1.0 - sequential_ratio)
                * startup_pages
                * (costs.spc_random_page_cost - seq_page_cost);
            costs.indexStartupCost -= (startup_pages - heap_pages) * seq_page_cost;
        }
        *startup_cost = costs.indexStartupCost;
        *total_cost = costs.indexTotalCost;
        *selectivity = costs.indexSelectivity;
        *correlation = costs.indexCorrelation;
        *pages = costs.numIndexPages;
    }
}

/// A constant, looking through binary-compatible casts; None for anything else (a parameter).
///
/// # Safety
/// `node` must be a valid expression node.
unsafe fn constant(mut node: *mut pg_sys::Node) -> Option<*mut pg_sys::Const> {
    // SAFETY: guaranteed by the caller; nodes are identified by their tag before the cast.
    unsafe {
        while (*node).type_ == pg_sys::NodeTag::T_RelabelType {
            node = (*node.cast::<pg_sys::RelabelType>()).arg.cast();
        }
        ((*node).type_ == pg_sys::NodeTag::T_Const).then_some(node.cast())
    }
}

/// How many lists may hold rows matching the path's index conditions, by the lists' filter
/// summaries; None when a condition is not against constants (a generic plan's parameters).
///
/// # Safety
/// `index` must be the open index of `path`.
unsafe fn lists_matching(index: pg_sys::Relation, path: *mut pg_sys::IndexPath) -> Option<f64> {
    let store = PgStore::new(index);
    let meta = layout::read_meta(&store).or_corrupt(index);
    if meta.filter_columns == 0 {
        return None;
    }
    let filters = FilterColumns::of(index);
    let mut query = FilterQuery::new();
    // SAFETY: the planner's lists of IndexClause and RestrictInfo nodes with their expressions.
    unsafe {
        for clause in list_items::<pg_sys::IndexClause>((*path).indexclauses) {
            let column = filters.position_of((*clause).indexcol as usize)?;
            for qual in list_items::<pg_sys::RestrictInfo>((*clause).indexquals) {
                let expr = (*qual).clause.cast::<pg_sys::Node>();
                let hashes = match (*expr).type_ {
                    pg_sys::NodeTag::T_OpExpr => {
                        let args =
                            list_items::<pg_sys::Node>((*expr.cast::<pg_sys::OpExpr>()).args);
                        let value = constant(*args.get(1)?)?;
                        if (*value).constisnull {
                            Vec::new()
                        } else {
                            vec![filters.hash(column, (*value).constvalue, false)]
                        }
                    }
                    pg_sys::NodeTag::T_ScalarArrayOpExpr => {
                        let args = list_items::<pg_sys::Node>(
                            (*expr.cast::<pg_sys::ScalarArrayOpExpr>()).args,
                        );
                        let value = constant(*args.get(1)?)?;
                        if (*value).constisnull {
                            Vec::new()
                        } else {
                            filters.array_hashes(column, (*value).constvalue)
                        }
                    }
                    _ => return None,
                };
                query.require(column, hashes);
            }
        }
    }
    Some(layout::count_matching_lists(&store, &meta, &query).or_corrupt(index) as f64)
}
