//! pgvector's binary wire format: `binary::decode` never panics, and what it accepts re-encodes to
//! exactly the bytes it consumed.
//!
//! The first input byte picks the typmod, the rest is the message: byte % 4 of 0 or 1 means -1
//! (unconstrained), 2 means the dimension count the message announces (so the typmod check passes),
//! 3 means a small typmod `(byte >> 2) - 1`, mostly a mismatch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgivf_core::binary::{decode, encode};
use pgivf_core::{VectorError, VECTOR_MAX_DIM};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, message)) = data.split_first() else {
        return;
    };
    let announced = message
        .get(..2)
        .map(|b| i32::from(u16::from_be_bytes([b[0], b[1]])));
    let typmod = match mode % 4 {
        0 | 1 => -1,
        2 => announced.unwrap_or(-1),
        _ => i32::from(mode >> 2) - 1,
    };
    match decode(message, typmod) {
        Ok((values, consumed)) => {
            assert!(!values.is_empty() && values.len() <= VECTOR_MAX_DIM);
            assert_eq!(consumed, 4 + 4 * values.len());
            assert!(consumed <= message.len());
            assert!(typmod == -1 || typmod as usize == values.len());
            assert!(values.iter().all(|v| v.is_finite()));
            let mut encoded = Vec::new();
            encode(&values, &mut encoded);
            assert_eq!(encoded, &message[..consumed]);
        }
        Err(error) => {
            if message.len() < 4 {
                assert_eq!(error, VectorError::InsufficientData);
            }
            if typmod == -1 || Some(typmod) == announced {
                assert!(
                    !matches!(error, VectorError::TypmodMismatch { .. }),
                    "typmod {typmod} rejected a message announcing {announced:?} dimensions"
                );
            }
        }
    }
});
