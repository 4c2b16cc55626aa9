//! pgvector's on-disk layout: `{int32 varlena header, int16 dim, int16 unused = 0, float4 x[dim]}`.
//!
//! Values are read in place after detoasting (no copy of the floats) and written into a single
//! `palloc`, so a distance call costs one detoast at most.

use crate::error::raise_with;
use pgrx::{pg_sys, PgSqlErrorCode};

/// Bytes before the first element: varlena header, `dim`, `unused`.
pub const HEADER_SIZE: usize = 8;

/// The elements of the vector stored in `datum`, detoasted if needed. The slice lives as long as the
/// current memory context, which outlives the function call that asked for it.
///
/// # Safety
/// `datum` must be a non-NULL `vector` datum.
pub unsafe fn detoast<'a>(datum: pg_sys::Datum) -> &'a [f32] {
    // SAFETY: the caller passes a varlena datum; pg_detoast_datum returns a 4-byte-header,
    // uncompressed, palloc'd (so MAXALIGNed) copy or the original when it already was one.
    unsafe {
        let varlena = pg_sys::pg_detoast_datum(datum.cast_mut_ptr::<pg_sys::varlena>());
        elements(varlena)
    }
}

/// The elements of an already detoasted vector.
///
/// # Safety
/// `varlena` must point at a detoasted varlena of at least its stated size.
pub unsafe fn elements<'a>(varlena: *const pg_sys::varlena) -> &'a [f32] {
    // SAFETY: the caller guarantees a readable varlena with a 4-byte header.
    unsafe {
        let total = pgrx::varsize_4b(varlena);
        let bytes = varlena.cast::<u8>();
        let dim = bytes.add(4).cast::<i16>().read();
        // A vector that does not fit its own varlena can only come from corruption; reading it would
        // run off the allocation, so refuse it instead.
        if dim < 0 || HEADER_SIZE + 4 * dim as usize > total {
            raise_with(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("invalid vector: {dim} dimensions in {total} bytes"),
                None,
            );
        }
        std::slice::from_raw_parts(bytes.add(HEADER_SIZE).cast::<f32>(), dim as usize)
    }
}

/// Allocates a zeroed vector of `dim` elements in the current memory context and returns its datum
/// with the elements to fill in.
pub fn allocate<'a>(dim: usize) -> (pg_sys::Datum, &'a mut [f32]) {
    let size = HEADER_SIZE + 4 * dim;
    // SAFETY: palloc0 returns `size` zeroed, MAXALIGNed bytes or raises an ERROR; we write the
    // header inside those bytes and hand out the element area exactly once.
    unsafe {
        let bytes = pg_sys::palloc0(size).cast::<u8>();
        pgrx::set_varsize_4b(bytes.cast(), size as i32);
        bytes.add(4).cast::<i16>().write(dim as i16);
        let values = std::slice::from_raw_parts_mut(bytes.add(HEADER_SIZE).cast::<f32>(), dim);
        (pg_sys::Datum::from(bytes), values)
    }
}

/// A new vector datum holding `values`.
pub fn from_slice(values: &[f32]) -> pg_sys::Datum {
    let (datum, out) = allocate(values.len());
    out.copy_from_slice(values);
    datum
}
