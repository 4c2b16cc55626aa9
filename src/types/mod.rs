//! The `vector` type: layout, I/O, operators, casts and aggregates.

pub mod aggregate;
pub mod cast;
pub mod io;
pub mod ops;
pub mod vector;

use pgrx::pg_sys;

/// A one-dimensional array of by-value floats (`float4[]` or `float8[]`) from their bit patterns.
pub fn float_array(bits: impl Iterator<Item = u64>, element_type: pg_sys::Oid) -> pg_sys::Datum {
    let datums: Vec<pg_sys::Datum> = bits.map(pg_sys::Datum::from).collect();
    let (len, align) = if element_type == pg_sys::FLOAT8OID {
        (8, pg_sys::TYPALIGN_DOUBLE)
    } else {
        (4, pg_sys::TYPALIGN_INT)
    };
    // SAFETY: float4 and float8 are by value here (64-bit Datums) with the length and alignment
    // given; construct_array copies the datums into a new array in the current memory context.
    unsafe {
        pg_sys::Datum::from(pg_sys::construct_array(
            datums.as_ptr().cast_mut(),
            datums.len() as i32,
            element_type,
            len,
            true,
            align as std::ffi::c_char,
        ))
    }
}
