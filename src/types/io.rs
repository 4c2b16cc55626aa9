//! Text and binary input/output and the typmod input function.

use super::vector;
use crate::error::{raise, raise_with, OrRaise};
use crate::fmgr::{arg_datum, arg_i32};
use pgivf_core::{binary, text};
use pgrx::{pg_sys, PgSqlErrorCode};
use std::ffi::CStr;

pg_function!(vector_in, pg_finfo_vector_in, |fcinfo| {
    // SAFETY: argument 0 of vector_in is a cstring.
    let literal =
        unsafe { CStr::from_ptr(arg_datum(fcinfo, 0).cast_mut_ptr::<std::ffi::c_char>()) };
    // SAFETY: argument 2 is the typmod.
    let typmod = unsafe { arg_i32(fcinfo, 2) };
    let literal = literal.to_string_lossy();
    let values = text::parse_vector(&literal).unwrap_or_else(|e| raise(e, Some(&literal)));
    binary::check_typmod(typmod, values.len()).or_raise();
    vector::from_slice(&values)
});

pg_function!(vector_out, pg_finfo_vector_out, |fcinfo| {
    // SAFETY: argument 0 is a vector.
    let values = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    let mut out = String::with_capacity(2 + values.len() * 12);
    text::format_vector(values, &mut out);
    palloc_cstring(&out)
});

pg_function!(vector_typmod_in, pg_finfo_vector_typmod_in, |fcinfo| {
    let mut count = 0;
    // SAFETY: argument 0 is a cstring[]; ArrayGetIntegerTypmods validates it and returns `count` ints.
    let typmods = unsafe {
        let array = pg_sys::pg_detoast_datum(arg_datum(fcinfo, 0).cast_mut_ptr()).cast();
        let ptr = pg_sys::ArrayGetIntegerTypmods(array, &mut count);
        std::slice::from_raw_parts(ptr, count as usize)
    };
    let invalid = |message: String| -> ! {
        raise_with(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message,
            None,
        )
    };
    if typmods.len() != 1 {
        invalid("invalid type modifier".into());
    }
    let dim = typmods[0];
    if dim < 1 {
        invalid("dimensions for type vector must be at least 1".into());
    }
    if dim as usize > pgivf_core::VECTOR_MAX_DIM {
        invalid(format!(
            "dimensions for type vector cannot exceed {}",
            pgivf_core::VECTOR_MAX_DIM
        ));
    }
    pg_sys::Datum::from(dim)
});

pg_function!(vector_recv, pg_finfo_vector_recv, |fcinfo| {
    // SAFETY: argument 0 of a receive function is the StringInfo holding the message.
    let buf = unsafe { &mut *arg_datum(fcinfo, 0).cast_mut_ptr::<pg_sys::StringInfoData>() };
    // SAFETY: argument 2 is the typmod.
    let typmod = unsafe { arg_i32(fcinfo, 2) };
    let remaining = (buf.len - buf.cursor).max(0) as usize;
    // SAFETY: data[cursor..len] is the unread part of the message.
    let bytes = unsafe {
        std::slice::from_raw_parts(buf.data.add(buf.cursor as usize).cast::<u8>(), remaining)
    };
    let (values, consumed) = binary::decode(bytes, typmod).or_raise();
    buf.cursor += consumed as i32;
    vector::from_slice(&values)
});

pg_function!(vector_send, pg_finfo_vector_send, |fcinfo| {
    // SAFETY: argument 0 is a vector.
    let values = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    let mut out = Vec::with_capacity(4 + 4 * values.len());
    binary::encode(values, &mut out);
    bytea(&out)
});

/// A NUL-terminated copy of `s` in the current memory context.
pub fn palloc_cstring(s: &str) -> pg_sys::Datum {
    // SAFETY: palloc returns len + 1 writable bytes or raises an ERROR.
    unsafe {
        let ptr = pg_sys::palloc(s.len() + 1).cast::<u8>();
        std::ptr::copy_nonoverlapping(s.as_ptr(), ptr, s.len());
        ptr.add(s.len()).write(0);
        pg_sys::Datum::from(ptr)
    }
}

/// A `bytea` datum holding `bytes`.
pub fn bytea(bytes: &[u8]) -> pg_sys::Datum {
    let size = pg_sys::VARHDRSZ + bytes.len();
    // SAFETY: palloc returns `size` writable bytes or raises an ERROR.
    unsafe {
        let ptr = pg_sys::palloc(size).cast::<u8>();
        pgrx::set_varsize_4b(ptr.cast(), size as i32);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(pg_sys::VARHDRSZ), bytes.len());
        pg_sys::Datum::from(ptr)
    }
}
