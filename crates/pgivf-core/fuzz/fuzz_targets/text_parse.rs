//! pgvector's text format: `parse_vector` never panics, never yields NaN or infinity, and whatever it
//! accepts prints (`format_vector`) as text that parses back to the very same bits. The input's bytes
//! are also read as little-endian `f32`s, so the formatter sees every bit pattern, not only the
//! values that short decimal literals produce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgivf_core::text::{format_vector, parse_vector};
use pgivf_core::VECTOR_MAX_DIM;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(values) = parse_vector(text) {
            assert!(!values.is_empty() && values.len() <= VECTOR_MAX_DIM);
            assert!(
                values.iter().all(|v| v.is_finite()),
                "the parser let a non-finite value through: {values:?}"
            );
            round_trip(&values);
        }
    }

    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
        .filter(|v| v.is_finite())
        .collect();
    if !values.is_empty() {
        round_trip(&values);
    }
});

/// format -> parse gives back the same bits, and formatting again gives the same text.
fn round_trip(values: &[f32]) {
    let mut text = String::new();
    format_vector(values, &mut text);
    let back = parse_vector(&text)
        .unwrap_or_else(|e| panic!("format_vector output {text:?} does not parse: {e}"));
    assert_eq!(back.len(), values.len(), "{text:?}");
    for (a, b) in values.iter().zip(&back) {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{a:e} printed in {text:?} read back as {b:e}"
        );
    }
    let mut again = String::new();
    format_vector(&back, &mut again);
    assert_eq!(text, again);
}
