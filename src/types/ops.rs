//! Distance functions, arithmetic, comparison and the small vector functions.
//!
//! Results follow pgvector bit for bit where its definition allows: distances accumulate in `float`
//! and widen to `float8` at the end, `vector_norm` accumulates in `double`, cosine similarity divides
//! by `sqrt(|a|² · |b|²)` and is clamped to [-1, 1].

use super::vector;
use crate::error::OrRaise;
use crate::fmgr::{arg_datum, arg_i32};
use pgivf_core::{binary, distance, VectorError};
use pgrx::pg_sys;

/// The two vector arguments of a binary function, after the dimension check every one of them makes.
///
/// # Safety
/// `fcinfo` must belong to a function whose first two arguments are non-NULL vectors.
unsafe fn two_vectors<'a>(fcinfo: pg_sys::FunctionCallInfo) -> (&'a [f32], &'a [f32]) {
    // SAFETY: guaranteed by the caller.
    let (a, b) = unsafe {
        (
            vector::detoast(arg_datum(fcinfo, 0)),
            vector::detoast(arg_datum(fcinfo, 1)),
        )
    };
    if a.len() != b.len() {
        Err(VectorError::DimensionMismatch(a.len(), b.len())).or_raise()
    }
    (a, b)
}

fn float8(value: f64) -> pg_sys::Datum {
    pg_sys::Datum::from(value.to_bits())
}

/// Cosine distance as pgvector computes it (NaN when either vector is zero).
pub fn cosine_distance_of(a: &[f32], b: &[f32]) -> f64 {
    let (dot, norm_a, norm_b) = distance::cosine_parts(a, b);
    let similarity = (dot as f64) / ((norm_a as f64) * (norm_b as f64)).sqrt();
    1.0 - similarity.clamp(-1.0, 1.0)
}

pg_function!(l2_distance, pg_finfo_l2_distance, |fcinfo| {
    // SAFETY: (vector, vector)
    let (a, b) = unsafe { two_vectors(fcinfo) };
    float8((distance::l2_squared(a, b) as f64).sqrt())
});

pg_function!(
    vector_l2_squared_distance,
    pg_finfo_vector_l2_squared_distance,
    |fcinfo| {
        // SAFETY: (vector, vector)
        let (a, b) = unsafe { two_vectors(fcinfo) };
        float8(distance::l2_squared(a, b) as f64)
    }
);

pg_function!(inner_product, pg_finfo_inner_product, |fcinfo| {
    // SAFETY: (vector, vector)
    let (a, b) = unsafe { two_vectors(fcinfo) };
    float8(distance::dot(a, b) as f64)
});

pg_function!(
    vector_negative_inner_product,
    pg_finfo_vector_negative_inner_product,
    |fcinfo| {
        // SAFETY: (vector, vector)
        let (a, b) = unsafe { two_vectors(fcinfo) };
        float8(-(distance::dot(a, b) as f64))
    }
);

pg_function!(cosine_distance, pg_finfo_cosine_distance, |fcinfo| {
    // SAFETY: (vector, vector)
    let (a, b) = unsafe { two_vectors(fcinfo) };
    float8(cosine_distance_of(a, b))
});

pg_function!(
    vector_spherical_distance,
    pg_finfo_vector_spherical_distance,
    |fcinfo| {
        // SAFETY: (vector, vector)
        let (a, b) = unsafe { two_vectors(fcinfo) };
        // Clamped because rounding can push the inner product of unit vectors just past ±1.
        let dot = (distance::dot(a, b) as f64).clamp(-1.0, 1.0);
        float8(dot.acos() / std::f64::consts::PI)
    }
);

pg_function!(l1_distance, pg_finfo_l1_distance, |fcinfo| {
    // SAFETY: (vector, vector)
    let (a, b) = unsafe { two_vectors(fcinfo) };
    float8(distance::l1(a, b) as f64)
});

pg_function!(vector_dims, pg_finfo_vector_dims, |fcinfo| {
    // SAFETY: (vector)
    let a = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    pg_sys::Datum::from(a.len() as i32)
});

pg_function!(vector_norm, pg_finfo_vector_norm, |fcinfo| {
    // SAFETY: (vector)
    let a = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    float8(distance::norm_squared_f64(a).sqrt())
});

pg_function!(l2_normalize, pg_finfo_l2_normalize, |fcinfo| {
    // SAFETY: (vector)
    let a = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    let (datum, out) = vector::allocate(a.len());
    out.copy_from_slice(a);
    // A zero vector stays zero rather than becoming NaN.
    if pgivf_core::metric::normalize(out) && out.iter().any(|x| x.is_infinite()) {
        Err(VectorError::Overflow).or_raise()
    }
    datum
});

pg_function!(binary_quantize, pg_finfo_binary_quantize, |fcinfo| {
    // SAFETY: (vector)
    let a = unsafe { vector::detoast(arg_datum(fcinfo, 0)) };
    // PostgreSQL's varbit: varlena header, int32 bit length, bits packed most significant first.
    let size = pg_sys::VARHDRSZ + 4 + a.len().div_ceil(8);
    // SAFETY: palloc0 returns `size` zeroed bytes or raises an ERROR; all writes stay inside them.
    unsafe {
        let ptr = pg_sys::palloc0(size).cast::<u8>();
        pgrx::set_varsize_4b(ptr.cast(), size as i32);
        ptr.add(pg_sys::VARHDRSZ)
            .cast::<i32>()
            .write_unaligned(a.len() as i32);
        let bits =
            std::slice::from_raw_parts_mut(ptr.add(pg_sys::VARHDRSZ + 4), a.len().div_ceil(8));
        for (i, x) in a.iter().enumerate() {
            if *x > 0.0 {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
        }
        pg_sys::Datum::from(ptr)
    }
});

pg_function!(subvector, pg_finfo_subvector, |fcinfo| {
    // SAFETY: (vector, int4, int4)
    let (a, start, count) = unsafe {
        (
            vector::detoast(arg_datum(fcinfo, 0)),
            arg_i32(fcinfo, 1),
            arg_i32(fcinfo, 2),
        )
    };
    if count < 1 {
        Err(VectorError::NoDimensions).or_raise()
    }
    let dim = a.len() as i64;
    // Like substring: 1-based, clamped at the start, cut at the end; 64-bit so nothing overflows.
    let end = (start as i64 + count as i64).min(dim + 1);
    let start = (start as i64).max(1);
    if start > dim {
        Err(VectorError::NoDimensions).or_raise()
    }
    let len = (end - start).max(0) as usize;
    binary::check_dimensions(len).or_raise();
    vector::from_slice(&a[start as usize - 1..start as usize - 1 + len])
});

/// Element-wise arithmetic with pgvector's overflow and underflow checks.
fn elementwise(
    fcinfo: pg_sys::FunctionCallInfo,
    op: fn(f32, f32) -> f32,
    check_underflow: bool,
) -> pg_sys::Datum {
    // SAFETY: only registered for (vector, vector).
    let (a, b) = unsafe { two_vectors(fcinfo) };
    let (datum, out) = vector::allocate(a.len());
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = op(*x, *y);
    }
    for ((o, x), y) in out.iter().zip(a).zip(b) {
        if o.is_infinite() {
            Err(VectorError::Overflow).or_raise()
        }
        if check_underflow && *o == 0.0 && !(*x == 0.0 || *y == 0.0) {
            Err(VectorError::Underflow).or_raise()
        }
    }
    datum
}

pg_function!(vector_add, pg_finfo_vector_add, |fcinfo| {
    elementwise(fcinfo, |x, y| x + y, false)
});
pg_function!(vector_sub, pg_finfo_vector_sub, |fcinfo| {
    elementwise(fcinfo, |x, y| x - y, false)
});
pg_function!(vector_mul, pg_finfo_vector_mul, |fcinfo| {
    elementwise(fcinfo, |x, y| x * y, true)
});

pg_function!(vector_concat, pg_finfo_vector_concat, |fcinfo| {
    // SAFETY: (vector, vector)
    let (a, b) = unsafe {
        (
            vector::detoast(arg_datum(fcinfo, 0)),
            vector::detoast(arg_datum(fcinfo, 1)),
        )
    };
    binary::check_dimensions(a.len() + b.len()).or_raise();
    let (datum, out) = vector::allocate(a.len() + b.len());
    out[..a.len()].copy_from_slice(a);
    out[a.len()..].copy_from_slice(b);
    datum
});

/// Element by element, then the shorter vector first, like PostgreSQL arrays.
pub fn compare(a: &[f32], b: &[f32]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return std::cmp::Ordering::Less;
        }
        if x > y {
            return std::cmp::Ordering::Greater;
        }
    }
    a.len().cmp(&b.len())
}

/// # Safety
/// `fcinfo` must belong to a (vector, vector) function.
unsafe fn compare_args(fcinfo: pg_sys::FunctionCallInfo) -> std::cmp::Ordering {
    // SAFETY: guaranteed by the caller.
    let (a, b) = unsafe {
        (
            vector::detoast(arg_datum(fcinfo, 0)),
            vector::detoast(arg_datum(fcinfo, 1)),
        )
    };
    compare(a, b)
}

pg_function!(vector_cmp, pg_finfo_vector_cmp, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) } as i32)
});
pg_function!(vector_lt, pg_finfo_vector_lt, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) }.is_lt())
});
pg_function!(vector_le, pg_finfo_vector_le, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) }.is_le())
});
pg_function!(vector_eq, pg_finfo_vector_eq, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) }.is_eq())
});
pg_function!(vector_ne, pg_finfo_vector_ne, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) }.is_ne())
});
pg_function!(vector_ge, pg_finfo_vector_ge, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) }.is_ge())
});
pg_function!(vector_gt, pg_finfo_vector_gt, |fcinfo| {
    // SAFETY: (vector, vector)
    pg_sys::Datum::from(unsafe { compare_args(fcinfo) }.is_gt())
});
