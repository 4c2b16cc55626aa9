//! Version-1 fmgr functions without pgrx's type mapping.
//!
//! pgrx's `#[pg_extern]` cannot express pgvector's varlena layout, typmod arguments or `internal`
//! arguments the way the SQL needs them, so each SQL-callable function takes the raw
//! `FunctionCallInfo`. `#[pg_guard]` still turns Rust panics (and PostgreSQL errors raised in
//! callees) into a proper `ERROR`, never an abort.

use pgrx::pg_sys;

/// Defines an exported V1 function `$name` (and its `pg_finfo_$name` record) whose body sees
/// `$fcinfo: FunctionCallInfo` and returns a `Datum`.
macro_rules! pg_function {
    ($name:ident, $finfo:ident, |$fcinfo:ident| $body:block) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1_API: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1_API
        }

        #[::pgrx::pg_guard]
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            // A closure keeps the caller's `$fcinfo` name apart from the identifiers #[pg_guard]
            // generates, which macro hygiene would otherwise not let the body see.
            #[allow(unused_braces)]
            let body =
                |$fcinfo: ::pgrx::pg_sys::FunctionCallInfo| -> ::pgrx::pg_sys::Datum { $body };
            body(fcinfo)
        }
    };
}

/// The raw datum of argument `n`. Callers only use it for arguments of STRICT functions, which are
/// never NULL.
///
/// # Safety
/// `fcinfo` must be the call's own `FunctionCallInfo` with at least `n + 1` arguments.
pub unsafe fn arg_datum(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> pg_sys::Datum {
    // SAFETY: guaranteed by the caller.
    unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n) }
}

/// # Safety
/// As [`arg_datum`]; the argument must be an `int4`.
pub unsafe fn arg_i32(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> i32 {
    // SAFETY: guaranteed by the caller.
    unsafe { arg_datum(fcinfo, n) }.value() as i32
}

/// Marks the result NULL and returns the placeholder datum that goes with it.
///
/// # Safety
/// `fcinfo` must be the call's own `FunctionCallInfo`.
pub unsafe fn return_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: guaranteed by the caller.
    unsafe { pgrx::fcinfo::pg_return_null(fcinfo) }
}

/// Builds the composite result of a function declared with OUT parameters from one datum per
/// parameter (`None` for NULL).
///
/// # Safety
/// `fcinfo` must be the call's own `FunctionCallInfo`, and the function's result type must have
/// exactly `values.len()` columns whose types match the datums.
pub unsafe fn return_record(
    fcinfo: pg_sys::FunctionCallInfo,
    values: &[Option<pg_sys::Datum>],
) -> pg_sys::Datum {
    let mut descriptor: pg_sys::TupleDesc = std::ptr::null_mut();
    // SAFETY: guaranteed by the caller.
    unsafe {
        if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut descriptor)
            != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
            || (*descriptor).natts as usize != values.len()
        {
            crate::error::raise_with(
                pgrx::PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                "function returning a record called in a context that cannot accept it".into(),
                None,
            );
        }
        let descriptor = pg_sys::BlessTupleDesc(descriptor);
        let mut datums: Vec<pg_sys::Datum> = values
            .iter()
            .map(|v| v.unwrap_or(pg_sys::Datum::from(0usize)))
            .collect();
        let mut nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
        let tuple = pg_sys::heap_form_tuple(descriptor, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
    }
}
