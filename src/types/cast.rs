//! Casts between `vector` and arrays, and the typmod length-coercion cast `vector(vector, int, bool)`.

use super::vector;
use crate::error::{raise_with, OrRaise};
use crate::fmgr::{arg_datum, arg_i32};
use pgivf_core::{binary, check_element};
use pgrx::{pg_sys, PgSqlErrorCode};

pg_function!(vector, pg_finfo_vector, |fcinfo| {
    // SAFETY: (vector, int4 typmod, bool)
    let (datum, typmod) = unsafe { (arg_datum(fcinfo, 0), arg_i32(fcinfo, 1)) };
    // SAFETY: argument 0 is a vector.
    let values = unsafe { vector::detoast(datum) };
    binary::check_typmod(typmod, values.len()).or_raise();
    datum
});

/// The elements of a one-dimensional array without NULLs, as datums.
///
/// # Safety
/// `datum` must be a non-NULL array datum.
pub unsafe fn array_elements<'a>(datum: pg_sys::Datum) -> (pg_sys::Oid, &'a [pg_sys::Datum]) {
    // SAFETY: guaranteed by the caller; deconstruct_array is given the element type's own storage
    // properties and returns `count` datums allocated in the current memory context.
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        if (*array).ndim > 1 {
            raise_with(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                "array must be 1-D".into(),
                None,
            );
        }
        if pg_sys::array_contains_nulls(array) {
            raise_with(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "array must not contain nulls".into(),
                None,
            );
        }
        let element_type = (*array).elemtype;
        let (mut typlen, mut typbyval, mut typalign) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(element_type, &mut typlen, &mut typbyval, &mut typalign);
        let mut elements = std::ptr::null_mut();
        let mut count = 0;
        pg_sys::deconstruct_array(
            array,
            element_type,
            typlen.into(),
            typbyval,
            typalign,
            &mut elements,
            std::ptr::null_mut(),
            &mut count,
        );
        let slice = if count == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(elements, count as usize)
        };
        (element_type, slice)
    }
}

pg_function!(array_to_vector, pg_finfo_array_to_vector, |fcinfo| {
    // SAFETY: (anyarray of int4/float4/float8/numeric, int4 typmod, bool)
    let ((element_type, elements), typmod) =
        unsafe { (array_elements(arg_datum(fcinfo, 0)), arg_i32(fcinfo, 1)) };
    binary::check_dimensions(elements.len()).or_raise();
    binary::check_typmod(typmod, elements.len()).or_raise();
    let (result, out) = vector::allocate(elements.len());
    let convert: fn(pg_sys::Datum) -> f32 = match element_type {
        pg_sys::INT4OID => |d| d.value() as i32 as f32,
        pg_sys::FLOAT4OID => |d| f32::from_bits(d.value() as u32),
        pg_sys::FLOAT8OID => |d| f64::from_bits(d.value() as u64) as f32,
        pg_sys::NUMERICOID => |d| {
            // SAFETY: numeric_float4 takes one numeric datum and raises its own errors.
            let float4 = unsafe {
                pgrx::fcinfo::direct_function_call_as_datum(pg_sys::numeric_float4, &[Some(d)])
            };
            f32::from_bits(float4.expect("numeric_float4 is strict").value() as u32)
        },
        _ => raise_with(
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            "unsupported array type".into(),
            None,
        ),
    };
    for (o, d) in out.iter_mut().zip(elements) {
        *o = convert(*d);
    }
    for x in out.iter() {
        check_element(*x).or_raise();
    }
    result
});

pg_function!(vector_to_float4, pg_finfo_vector_to_float4, |fcinfo| {
    // SAFETY: (vector, int4, bool)
    let values = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    super::float_array(values.iter().map(|x| x.to_bits() as u64), pg_sys::FLOAT4OID)
});
