//! pgvector's binary wire format (`vector_send`/`vector_recv`), used by `COPY ... (FORMAT binary)` and by
//! drivers that request binary results: network byte order `int16 dim, int16 unused (0), float4[dim]`.

use crate::{check_element, VectorError, VECTOR_MAX_DIM};

/// Appends the binary form of `values` to `out`.
pub fn encode(values: &[f32], out: &mut Vec<u8>) {
    out.reserve(4 + 4 * values.len());
    out.extend_from_slice(&(values.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for value in values {
        out.extend_from_slice(&value.to_bits().to_be_bytes());
    }
}

/// Decodes one vector from the start of `bytes`, returning it and the number of bytes consumed.
///
/// Checks happen in pgvector's order (dimensions, typmod, `unused`, then each element as it is read),
/// so that a client sees the same error for the same bad message. `typmod` is -1 when unconstrained.
pub fn decode(bytes: &[u8], typmod: i32) -> Result<(Vec<f32>, usize), VectorError> {
    let dim = read_u16(bytes, 0)? as usize;
    let unused = read_u16(bytes, 2)?;
    check_dimensions(dim)?;
    check_typmod(typmod, dim)?;
    if unused != 0 {
        return Err(VectorError::UnusedNotZero(unused));
    }
    let mut values = Vec::with_capacity(dim);
    for i in 0..dim {
        let offset = 4 + 4 * i;
        let chunk = bytes
            .get(offset..offset + 4)
            .ok_or(VectorError::InsufficientData)?;
        let value = f32::from_bits(u32::from_be_bytes(chunk.try_into().expect("4 bytes")));
        check_element(value)?;
        values.push(value);
    }
    Ok((values, 4 + 4 * dim))
}

fn read_u16(bytes: &[u8], offset: usize) -> Result<u16, VectorError> {
    bytes
        .get(offset..offset + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(VectorError::InsufficientData)
}

/// pgvector's `CheckDim`.
pub fn check_dimensions(dim: usize) -> Result<(), VectorError> {
    if dim < 1 {
        return Err(VectorError::NoDimensions);
    }
    if dim > VECTOR_MAX_DIM {
        return Err(VectorError::TooManyDimensions {
            max: VECTOR_MAX_DIM,
        });
    }
    Ok(())
}

/// pgvector's `CheckExpectedDim`: a typmod of -1 accepts any number of dimensions.
pub fn check_typmod(typmod: i32, dim: usize) -> Result<(), VectorError> {
    if typmod != -1 && typmod as i64 != dim as i64 {
        return Err(VectorError::TypmodMismatch {
            expected: typmod,
            actual: dim,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matches_pgvector_bytes() {
        let mut out = Vec::new();
        encode(&[1.0, 2.0], &mut out);
        assert_eq!(
            out,
            [0x00, 0x02, 0x00, 0x00, 0x3f, 0x80, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00]
        );
        assert_eq!(decode(&out, -1).unwrap(), (vec![1.0, 2.0], 12));
        assert_eq!(decode(&out, 2).unwrap().0, vec![1.0, 2.0]);
    }

    #[test]
    fn errors_come_in_pgvector_order() {
        assert_eq!(decode(&[0], -1), Err(VectorError::InsufficientData));
        assert_eq!(decode(&[0, 0, 0, 0], -1), Err(VectorError::NoDimensions));
        assert_eq!(
            decode(&[0x3e, 0x81, 0, 0], -1),
            Err(VectorError::TooManyDimensions { max: 16000 })
        );
        assert_eq!(
            decode(&[0, 2, 0, 1], 3),
            Err(VectorError::TypmodMismatch {
                expected: 3,
                actual: 2
            })
        );
        assert_eq!(
            decode(&[0, 2, 0, 1], -1),
            Err(VectorError::UnusedNotZero(1))
        );
        assert_eq!(
            decode(&[0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0x40], -1),
            Err(VectorError::InsufficientData)
        );
        let nan = f32::NAN.to_bits().to_be_bytes();
        assert_eq!(
            decode(&[0, 1, 0, 0, nan[0], nan[1], nan[2], nan[3]], -1),
            Err(VectorError::NaN)
        );
        let inf = f32::NEG_INFINITY.to_bits().to_be_bytes();
        assert_eq!(
            decode(&[0, 1, 0, 0, inf[0], inf[1], inf[2], inf[3]], -1),
            Err(VectorError::Infinite)
        );
    }

    #[test]
    fn never_panics_on_short_or_random_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if len >= 2 && rng.gen_bool(0.5) {
                bytes[0] = 0;
                bytes[1] = rng.gen_range(0..16);
            }
            let _ = decode(&bytes, if rng.gen_bool(0.5) { -1 } else { 3 });
        }
    }
}
