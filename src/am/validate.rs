//! `amvalidate`: checks an operator class the way contrib/bloom's blvalidate does, for `CREATE
//! OPERATOR CLASS ... USING ivfflat` written by users or other extensions. Problems are reported as
//! INFO messages and make the opclass invalid.
//!
//! Rules for a vector operator class (pgvector's opclass shape): operator strategy 1, for ORDER BY,
//! returning float8, both sides the opclass's input type, and optionally pgivf's strategy 2 radius
//! operator (input type, sphere) -> boolean for searches; support functions 1 (distance,
//! required) and 3 (k-means distance) take two inputs and return float8; 2 (norm) and 4 (k-means
//! norm) take one and return float8; 5 is a type-support function; 6 (required) names the metric,
//! one of pgivf's `ivfflat_metric_*(internal)`; no other numbers.
//!
//! Rules for a filter operator class (an opclass with a search operator, for the key columns after
//! the vector): strategy 3 only, a search operator returning boolean with both sides the input type,
//! which must be one the filter columns can hash (filters.rs); no support functions.

use super::catalog::{family_operators, family_procs, signature};
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};
use std::ffi::CStr;

fn info(message: String) {
    pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
        message,
        "amvalidate",
    )
    .report(PgLogLevel::INFO);
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amvalidate(opclass: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups by oid; every cache entry taken is released before returning.
    unsafe {
        let class_tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::CLAOID as i32,
            pg_sys::Datum::from(opclass),
        );
        if class_tuple.is_null() {
            pgrx::error!(
                "cache lookup failed for operator class {}",
                u32::from(opclass)
            );
        }
        let class = &*pg_sys::GETSTRUCT(class_tuple).cast::<pg_sys::FormData_pg_opclass>();
        let family = class.opcfamily;
        let input_type = class.opcintype;
        let name = CStr::from_ptr(class.opcname.data.as_ptr())
            .to_string_lossy()
            .into_owned();
        pg_sys::ReleaseSysCache(class_tuple);

        let mut valid = true;
        let mut has_order_operator = false;
        let mut has_distance = false;
        let mut has_metric = false;

        if is_filter_class(family, input_type) {
            return validate_filter_class(family, input_type, &name);
        }

        let operators = family_operators(family);
        for op in &operators {
            if op.amoplefttype == input_type
                && op.amoprighttype != input_type
                && op.amopstrategy == super::radius::WITHIN_STRATEGY as i16
            {
                // The radius operator (radius.rs): a search operator (vector, sphere) -> boolean,
                // the sphere a composite of the input type and float8.
                let function = pg_sys::get_opcode(op.amopopr);
                let ok = op.amoppurpose as u8 == pg_sys::AMOP_SEARCH
                    && pg_sys::get_typtype(op.amoprighttype)
                        == pg_sys::TYPTYPE_COMPOSITE as std::ffi::c_char
                    && matches!(signature(function), Some((result, args))
                        if result == pg_sys::BOOLOID && args == [input_type, op.amoprighttype]);
                if !ok {
                    info(format!("ivfflat operator class \"{name}\" contains radius operator {} with wrong signature", u32::from(op.amopopr)));
                    valid = false;
                }
                continue;
            }
            if op.amoplefttype != input_type || op.amoprighttype != input_type {
                continue; // cross-type members belong to another opclass of the family
            }
            if op.amopstrategy != 1 {
                info(format!("ivfflat operator class \"{name}\" contains operator {} with invalid strategy number {}", u32::from(op.amopopr), op.amopstrategy));
                valid = false;
                continue;
            }
            if op.amoppurpose as u8 != pg_sys::AMOP_ORDER {
                info(format!("ivfflat operator class \"{name}\" contains operator {} that is not for ORDER BY", u32::from(op.amopopr)));
                valid = false;
                continue;
            }
            let function = pg_sys::get_opcode(op.amopopr);
            match signature(function) {
                Some((result, args))
                    if result == pg_sys::FLOAT8OID && args == [input_type, input_type] =>
                {
                    has_order_operator = true
                }
                _ => {
                    info(format!("ivfflat operator class \"{name}\" contains operator {} with wrong signature", u32::from(op.amopopr)));
                    valid = false;
                }
            }
        }

        let procs = family_procs(family);
        for proc in &procs {
            if proc.amproclefttype != input_type || proc.amprocrighttype != input_type {
                continue;
            }
            let (result, args) = signature(proc.amproc).unwrap_or((pg_sys::InvalidOid, Vec::new()));
            let ok = match proc.amprocnum {
                1 | 3 => result == pg_sys::FLOAT8OID && args == [input_type, input_type],
                2 | 4 => result == pg_sys::FLOAT8OID && args == [input_type],
                5 => args.len() == 1,
                // The metric: a C function of ours named for it (catalog.rs).
                6 => {
                    args == [pg_sys::INTERNALOID]
                        && super::catalog::c_symbol(proc.amproc)
                            .and_then(|s| pgivf_core::metric::Metric::from_support_symbol(&s))
                            .is_some()
                }
                _ => {
                    info(format!("ivfflat operator class \"{name}\" contains function {} with invalid support number {}", u32::from(proc.amproc), proc.amprocnum));
                    valid = false;
                    continue;
                }
            };
            if !ok {
                info(format!("ivfflat operator class \"{name}\" contains function {} with wrong signature for support number {}", u32::from(proc.amproc), proc.amprocnum));
                valid = false;
            }
            has_distance |= proc.amprocnum == 1 && ok;
            has_metric |= proc.amprocnum == 6 && ok;
        }

        if !has_order_operator {
            info(format!("ivfflat operator class \"{name}\" is missing its ORDER BY distance operator (strategy 1)"));
            valid = false;
        }
        if !has_distance {
            info(format!(
                "ivfflat operator class \"{name}\" is missing support function 1 (distance)"
            ));
            valid = false;
        }
        if !has_metric {
            info(format!(
                "ivfflat operator class \"{name}\" is missing support function 6 (its metric)"
            ));
            valid = false;
        }
        valid
    }
}

/// Whether the opclass is a filter opclass: it has equality search operators and no distance
/// support function.
fn is_filter_class(family: pg_sys::Oid, input_type: pg_sys::Oid) -> bool {
    let has_distance = family_procs(family)
        .iter()
        .any(|p| p.amproclefttype == input_type && p.amprocnum == 1);
    !has_distance
        && family_operators(family)
            .iter()
            .any(|op| op.amoplefttype == input_type && op.amoppurpose as u8 == pg_sys::AMOP_SEARCH)
}

/// # Safety
/// Catalog access on the backend thread.
unsafe fn validate_filter_class(family: pg_sys::Oid, input_type: pg_sys::Oid, name: &str) -> bool {
    let mut valid = true;
    let supported = [
        pg_sys::INT2OID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
        pg_sys::BOOLOID,
        pg_sys::TEXTOID,
        pg_sys::VARCHAROID,
        pg_sys::UUIDOID,
    ];
    // SAFETY: a type oid from the catalog.
    if !supported.contains(&unsafe { pg_sys::getBaseType(input_type) }) {
        info(format!(
            "ivfflat operator class \"{name}\" is for a type filter columns cannot hold"
        ));
        valid = false;
    }
    // SAFETY: catalog lookups by oid on the backend thread.
    unsafe {
        let operators = family_operators(family);
        let mut has_equality = false;
        for op in &operators {
            if op.amoplefttype != input_type {
                continue;
            }
            let function = pg_sys::get_opcode(op.amopopr);
            let shape_ok = op.amopstrategy == super::filters::EQUALITY_STRATEGY as i16
                && op.amoppurpose as u8 == pg_sys::AMOP_SEARCH
                && matches!(signature(function),
                    Some((result, args)) if result == pg_sys::BOOLOID && args.len() == 2);
            if !shape_ok {
                info(format!("ivfflat operator class \"{name}\" contains operator {} that is not an equality search operator with strategy {}", u32::from(op.amopopr), super::filters::EQUALITY_STRATEGY));
                valid = false;
                continue;
            }
            // The index compares hashes of the values' bytes: only an equality that holds exactly
            // for equal bytes may be an index condition.
            if !super::filters::is_hashable_equality(function) {
                let operator = std::ffi::CStr::from_ptr(pg_sys::format_operator(op.amopopr));
                info(format!("ivfflat operator class \"{name}\" contains operator {} whose equality is not the one filter columns hash by", operator.to_string_lossy()));
                valid = false;
                continue;
            }
            has_equality |= op.amoprighttype == input_type;
        }
        if !has_equality {
            info(format!(
                "ivfflat operator class \"{name}\" is missing its equality operator"
            ));
            valid = false;
        }
        let procs = family_procs(family);
        for proc in &procs {
            if proc.amproclefttype == input_type {
                info(format!("ivfflat operator class \"{name}\" is a filter operator class and cannot have support function {}", proc.amprocnum));
                valid = false;
            }
        }
    }
    valid
}
