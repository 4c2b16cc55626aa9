//! `avg(vector)` support: the transition state is pgvector's `float8[] {n, sum_1, ..., sum_d}` (an
//! empty state is `{0}`), so that partial aggregates and direct calls behave the same as pgvector's.

use super::vector;
use crate::error::{raise_with, OrRaise};
use crate::fmgr::{arg_datum, return_null};
use pgivf_core::{binary, check_element, VectorError};
use pgrx::{pg_sys, PgSqlErrorCode};

/// The state array's values, after pgvector's checks.
///
/// # Safety
/// `datum` must be a non-NULL array datum.
unsafe fn state_values<'a>(datum: pg_sys::Datum, caller: &str) -> &'a [f64] {
    // SAFETY: guaranteed by the caller; the header fields are read only after the array is detoasted,
    // and the data is read only for a 1-D float8 array without NULLs of the stated length.
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        // ArrayType is followed by int dims[ndim], int lbound[ndim], then (no NULL bitmap) the data
        // at MAXALIGN of that header.
        let header = std::mem::size_of::<pg_sys::ArrayType>();
        let dims = array.cast::<u8>().add(header).cast::<i32>();
        let valid = (*array).ndim == 1
            && *dims >= 1
            && (*array).dataoffset == 0
            && (*array).elemtype == pg_sys::FLOAT8OID;
        if !valid {
            raise_with(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("{caller}: expected state array"),
                None,
            );
        }
        let data_offset = (header + 2 * 4 * (*array).ndim as usize).next_multiple_of(8);
        let data = array.cast::<u8>().add(data_offset).cast::<f64>();
        std::slice::from_raw_parts(data, *dims as usize)
    }
}

fn state_array(values: &[f64]) -> pg_sys::Datum {
    super::float_array(values.iter().map(|x| x.to_bits()), pg_sys::FLOAT8OID)
}

fn checked_sum(x: f64, y: f64) -> f64 {
    let sum = x + y;
    if sum.is_infinite() {
        Err(VectorError::Overflow).or_raise()
    }
    sum
}

pg_function!(vector_accum, pg_finfo_vector_accum, |fcinfo| {
    // SAFETY: (float8[], vector)
    let (state, value) = unsafe {
        (
            state_values(arg_datum(fcinfo, 0), "vector_accum"),
            vector::detoast(arg_datum(fcinfo, 1)),
        )
    };
    let dims = state.len() - 1;
    let mut next = Vec::with_capacity(value.len() + 1);
    next.push(state[0] + 1.0);
    if dims == 0 {
        next.extend(value.iter().map(|x| *x as f64));
    } else {
        binary::check_typmod(dims as i32, value.len()).or_raise();
        next.extend(
            state[1..]
                .iter()
                .zip(value)
                .map(|(s, x)| checked_sum(*s, *x as f64)),
        );
    }
    state_array(&next)
});

pg_function!(vector_combine, pg_finfo_vector_combine, |fcinfo| {
    // SAFETY: (float8[], float8[])
    let (a, b) = unsafe {
        (
            state_values(arg_datum(fcinfo, 0), "vector_combine"),
            state_values(arg_datum(fcinfo, 1), "vector_combine"),
        )
    };
    // As pgvector does: a state that counted no rows gives way to the other whatever its length,
    // and the state kept must have at least one dimension (so two empty states are an error).
    let next: Vec<f64> = if a[0] == 0.0 || b[0] == 0.0 {
        let kept = if a[0] == 0.0 { b } else { a };
        binary::check_dimensions(kept.len() - 1).or_raise();
        kept.to_vec()
    } else {
        binary::check_dimensions(a.len() - 1).or_raise();
        binary::check_typmod((a.len() - 1) as i32, b.len() - 1).or_raise();
        std::iter::once(a[0] + b[0])
            .chain(a[1..].iter().zip(&b[1..]).map(|(x, y)| checked_sum(*x, *y)))
            .collect()
    };
    state_array(&next)
});

pg_function!(vector_avg, pg_finfo_vector_avg, |fcinfo| {
    // SAFETY: (float8[])
    let state = unsafe { state_values(arg_datum(fcinfo, 0), "vector_avg") };
    let n = state[0];
    // SQL defines the average of no rows as NULL.
    if n == 0.0 {
        // SAFETY: our own fcinfo.
        return unsafe { return_null(fcinfo) };
    }
    binary::check_dimensions(state.len() - 1).or_raise();
    let (datum, out) = vector::allocate(state.len() - 1);
    for (o, sum) in out.iter_mut().zip(&state[1..]) {
        *o = (*sum / n) as f32;
        check_element(*o).or_raise();
    }
    datum
});
