//! pgvector's text format: `vector_in` and `vector_out`, reproduced byte for byte.
//!
//! Input follows pgvector's C parser, including the quirks of glibc's `strtof` that decide which
//! characters belong to a number (and therefore which error a malformed literal raises). Output is
//! PostgreSQL's own Ryu port (`src/common/f2s.c`), which is deliberately *not* strictly shortest: it
//! never prints a value lying exactly on the rounding boundary between two floats, so Rust's `{:e}`
//! (strictly shortest) differs from it for some values.

use crate::{check_element, VectorError, VECTOR_MAX_DIM};

/// Parses pgvector's text form, e.g. `[1,2.5,-3e-2]`, checking in the same order as `vector_in`.
pub fn parse_vector(input: &str) -> Result<Vec<f32>, VectorError> {
    let bytes = input.as_bytes();
    let mut pos = skip_whitespace(bytes, 0);
    if bytes.get(pos) != Some(&b'[') {
        return Err(VectorError::MissingOpenBracket);
    }
    pos = skip_whitespace(bytes, pos + 1);
    if bytes.get(pos) == Some(&b']') {
        return Err(VectorError::NoDimensions);
    }

    let mut values = Vec::new();
    loop {
        if values.len() == VECTOR_MAX_DIM {
            return Err(VectorError::TooManyDimensions {
                max: VECTOR_MAX_DIM,
            });
        }
        pos = skip_whitespace(bytes, pos);
        let value = match strtof(&bytes[pos..]) {
            Number::Value { value, len } => {
                pos += len;
                value
            }
            Number::Overflow { len } => {
                return Err(VectorError::OutOfRange {
                    token: input[pos..pos + len].to_owned(),
                })
            }
            Number::Invalid => return Err(VectorError::InvalidSyntax),
        };
        check_element(value)?;
        values.push(value);

        pos = skip_whitespace(bytes, pos);
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => {
                pos += 1;
                break;
            }
            _ => return Err(VectorError::InvalidSyntax),
        }
    }

    if skip_whitespace(bytes, pos) != bytes.len() {
        return Err(VectorError::JunkAfterClose);
    }
    Ok(values)
}

/// pgvector's `vector_isspace`, i.e. C `isspace` in the C locale.
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|&byte| is_whitespace(byte)) {
        pos += 1;
    }
    pos
}

/// What glibc's `strtof` makes of the start of a string, as far as `vector_in` can tell apart.
enum Number {
    /// `len` bytes were consumed. Infinity and NaN are values here; the caller rejects them.
    Value { value: f32, len: usize },
    /// A finite literal too large for `float4` (`ERANGE` with an infinite result).
    Overflow { len: usize },
    /// Nothing was consumed.
    Invalid,
}

impl Number {
    /// The same number preceded by `prefix_len` more bytes, negated if `negative`.
    fn after_prefix(self, prefix_len: usize, negative: bool) -> Number {
        match self {
            Number::Value { value, len } => Number::Value {
                value: if negative { -value } else { value },
                len: prefix_len + len,
            },
            Number::Overflow { len } => Number::Overflow {
                len: prefix_len + len,
            },
            Number::Invalid => Number::Invalid,
        }
    }
}

/// glibc `strtof` in the C locale, without leading whitespace (the caller skips it already).
fn strtof(bytes: &[u8]) -> Number {
    let sign_len = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let negative = bytes.first() == Some(&b'-');
    let unsigned = &bytes[sign_len..];

    let magnitude = if starts_with_ignore_ascii_case(unsigned, b"infinity") {
        Number::Value {
            value: f32::INFINITY,
            len: 8,
        }
    } else if starts_with_ignore_ascii_case(unsigned, b"inf") {
        Number::Value {
            value: f32::INFINITY,
            len: 3,
        }
    } else if starts_with_ignore_ascii_case(unsigned, b"nan") {
        Number::Value {
            value: f32::NAN,
            len: 3 + nan_payload_len(&unsigned[3..]),
        }
    } else {
        let hexadecimal = match unsigned {
            [b'0', b'x' | b'X', rest @ ..] => parse_hexadecimal(rest).after_prefix(2, false),
            _ => Number::Invalid,
        };
        match hexadecimal {
            // `0x` without hex digits is the number `0` followed by junk `x`, which is what the
            // decimal lexer yields.
            Number::Invalid => parse_decimal(unsigned),
            number => number,
        }
    };
    magnitude.after_prefix(sign_len, negative)
}

/// `(n-char-sequence)` after `nan`, consumed only when the closing parenthesis is there.
fn nan_payload_len(bytes: &[u8]) -> usize {
    if bytes.first() != Some(&b'(') {
        return 0;
    }
    let chars = bytes[1..]
        .iter()
        .take_while(|&&byte| byte.is_ascii_alphanumeric() || byte == b'_')
        .count();
    if bytes.get(1 + chars) == Some(&b')') {
        chars + 2
    } else {
        0
    }
}

fn starts_with_ignore_ascii_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// An unsigned decimal literal `digits[.digits][e[+-]digits]` at the start of `bytes`, correctly
/// rounded; invalid without a digit before the exponent.
fn parse_decimal(bytes: &[u8]) -> Number {
    let integer_digits = count_digits(bytes, 0);
    let mut len = integer_digits;
    let mut fraction_digits = 0;
    if bytes.get(len) == Some(&b'.') {
        fraction_digits = count_digits(bytes, len + 1);
        len += 1 + fraction_digits;
    }
    if integer_digits + fraction_digits == 0 {
        return Number::Invalid;
    }
    if matches!(bytes.get(len), Some(b'e' | b'E')) {
        if let Some((exponent_len, _)) = parse_exponent(&bytes[len + 1..]) {
            len += 1 + exponent_len;
        }
    }
    // Rust's parser rounds correctly, like glibc, and accepts exactly this grammar.
    let value: f32 = std::str::from_utf8(&bytes[..len])
        .expect("the token is ASCII")
        .parse()
        .expect("the token is a Rust float literal");
    if value.is_finite() {
        Number::Value { value, len }
    } else {
        Number::Overflow { len }
    }
}

fn count_digits(bytes: &[u8], start: usize) -> usize {
    bytes.get(start..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_digit()).count()
    })
}

/// `[+-]digits` at the start of `bytes`: its length and value, saturated far beyond any exponent
/// that could still produce a finite non-zero `f32`. `None` without digits, in which case `strtof`
/// leaves the exponent marker unconsumed.
fn parse_exponent(bytes: &[u8]) -> Option<(usize, i64)> {
    let sign_len = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = count_digits(bytes, sign_len);
    if digits == 0 {
        return None;
    }
    let magnitude = bytes[sign_len..sign_len + digits]
        .iter()
        .fold(0i64, |acc, &digit| {
            (acc * 10 + i64::from(digit - b'0')).min(1 << 40)
        });
    let value = if bytes[0] == b'-' {
        -magnitude
    } else {
        magnitude
    };
    Some((sign_len + digits, value))
}

/// The part of a hexadecimal literal after `0x`: `hexdigits[.hexdigits][p[+-]digits]`, correctly
/// rounded to nearest-even; invalid without any hex digit.
fn parse_hexadecimal(bytes: &[u8]) -> Number {
    // The first 16 significant hex digits fill 64 bits, far more than the 24 an f32 keeps plus the
    // rounding bit; any later digit can only matter as a sticky "above the halfway point" bit.
    let mut mantissa = 0u64;
    let mut significant_digits = 0;
    let mut sticky = false;
    let mut exponent = 0i64;
    let mut any_digit = false;
    let mut in_fraction = false;
    let mut len = 0;
    loop {
        match bytes.get(len) {
            Some(&byte) if byte.is_ascii_hexdigit() => {
                any_digit = true;
                let digit = u64::from(hex_value(byte));
                if mantissa == 0 && digit == 0 {
                    if in_fraction {
                        exponent -= 4;
                    }
                } else if significant_digits < 16 {
                    mantissa = mantissa << 4 | digit;
                    significant_digits += 1;
                    if in_fraction {
                        exponent -= 4;
                    }
                } else {
                    sticky |= digit != 0;
                    if !in_fraction {
                        exponent += 4;
                    }
                }
            }
            Some(b'.') if !in_fraction => in_fraction = true,
            _ => break,
        }
        len += 1;
    }
    if !any_digit {
        return Number::Invalid;
    }
    if matches!(bytes.get(len), Some(b'p' | b'P')) {
        if let Some((exponent_len, binary_exponent)) = parse_exponent(&bytes[len + 1..]) {
            len += 1 + exponent_len;
            exponent += binary_exponent;
        }
    }
    match round_binary_to_f32(mantissa, sticky, exponent) {
        Some(value) => Number::Value { value, len },
        None => Number::Overflow { len },
    }
}

fn hex_value(byte: u8) -> u8 {
    match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        _ => byte - b'A' + 10,
    }
}

/// `mantissa * 2^exponent` (plus a little more if `sticky`) rounded to the nearest `f32`, ties to
/// even, with gradual underflow. `None` if it rounds beyond `f32::MAX`.
fn round_binary_to_f32(mantissa: u64, sticky: bool, exponent: i64) -> Option<f32> {
    if mantissa == 0 {
        return Some(0.0);
    }
    let bit_length = i64::from(64 - mantissa.leading_zeros());
    let top_exponent = exponent + bit_length - 1;
    if top_exponent > 127 {
        return None;
    }
    // Below half the smallest subnormal: rounds to zero.
    if top_exponent < -150 {
        return Some(0.0);
    }
    // Value of the last bit the result can hold: 24 significant bits, but never below the
    // subnormal quantum 2^-149.
    let mut lsb_exponent = (top_exponent - 23).max(-149);
    let shift = lsb_exponent - exponent;
    let mut significand = if shift <= 0 {
        // Exact: the mantissa has at most 24 bits here, and no sticky digits (16 digits are > 24 bits).
        mantissa << -shift
    } else {
        // shift <= 64 (the value is at least 2^-150 with at most 64 bits), within u128.
        let wide = u128::from(mantissa);
        let kept = wide >> shift;
        let dropped = wide & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let round_up = dropped > half || (dropped == half && (sticky || kept & 1 == 1));
        // kept < 2^24, so this fits.
        (kept + u128::from(round_up)) as u64
    };
    if significand == 1 << 24 {
        significand >>= 1;
        lsb_exponent += 1;
    }
    if significand < 1 << 23 {
        // Subnormal (lsb_exponent is -149): the significand is the bit pattern.
        return Some(f32::from_bits(significand as u32));
    }
    let biased_exponent = lsb_exponent + 23 + 127;
    if biased_exponent >= 255 {
        return None;
    }
    Some(f32::from_bits(
        (biased_exponent as u32) << 23 | (significand as u32 & 0x7F_FFFF),
    ))
}

/// Appends pgvector's text form of `values`: `[` elements joined by `,` `]`.
pub fn format_vector(values: &[f32], out: &mut String) {
    // Formatting bytes and checking them for UTF-8 once is far cheaper than once per element.
    let mut bytes = Vec::with_capacity(2 + values.len() * 12);
    bytes.push(b'[');
    for (i, &value) in values.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        let mut element = [b'0'; FLOAT_SHORTEST_DECIMAL_LEN];
        let len = write_f32(value, &mut element);
        bytes.extend_from_slice(&element[..len]);
    }
    bytes.push(b']');
    out.push_str(std::str::from_utf8(&bytes).expect("float output is ASCII"));
}

/// Appends `value` exactly as PostgreSQL's `float4out` prints it with `extra_float_digits = 1`
/// (the default): the shortest digits that read back to the same `float4`.
pub fn format_f32(value: f32, out: &mut String) {
    let mut buffer = [b'0'; FLOAT_SHORTEST_DECIMAL_LEN];
    let len = write_f32(value, &mut buffer);
    out.push_str(std::str::from_utf8(&buffer[..len]).expect("float output is ASCII"));
}

/// Longest output: `-0.000` plus 9 digits, or `-` `d.dddddddd` `e-45`.
const FLOAT_SHORTEST_DECIMAL_LEN: usize = 15;

/// Writes `value` at the start of `buffer` and returns its length. `f2s.c`'s `to_chars`: lays out
/// `digits * 10^exponent` in fixed notation when the decimal exponent of the first digit is in
/// `-4..6` (like printf's `%g`), else in exponential notation.
///
/// `buffer` must be filled with `'0'` where this function writes no digit: zero padding is not
/// written again.
fn write_f32(value: f32, buffer: &mut [u8; FLOAT_SHORTEST_DECIMAL_LEN]) -> usize {
    let special: &[u8] = if value.is_nan() {
        b"NaN"
    } else if value.is_infinite() {
        if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        }
    } else if value == 0.0 {
        if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        }
    } else {
        b""
    };
    if !special.is_empty() {
        buffer[..special.len()].copy_from_slice(special);
        return special.len();
    }

    let bits = value.to_bits();
    let negative = bits >> 31 != 0;
    let ieee_mantissa = bits & ((1 << FLOAT_MANTISSA_BITS) - 1);
    let ieee_exponent = (bits >> FLOAT_MANTISSA_BITS) & 0xFF;
    let decimal = small_integer(ieee_mantissa, ieee_exponent)
        .unwrap_or_else(|| shortest_decimal(ieee_mantissa, ieee_exponent));

    if negative {
        buffer[0] = b'-';
    }
    let mut len = usize::from(negative);
    let mut digits = decimal.digits;
    let mut digit_count = decimal_length(digits);
    let scientific_exponent = decimal.exponent + digit_count as i32 - 1;

    if (-4..6).contains(&scientific_exponent) {
        if decimal.exponent >= 0 {
            // Followed by `decimal.exponent` zeros, already in the buffer.
            write_digits(&mut buffer[len..len + digit_count], digits);
            return len + digit_count + decimal.exponent as usize;
        }
        if scientific_exponent >= 0 {
            let integer_digits = scientific_exponent as usize + 1;
            let fraction_digits = digit_count - integer_digits;
            let point = len + integer_digits;
            let divisor = POWERS_OF_10[fraction_digits];
            write_digits(&mut buffer[len..point], digits / divisor);
            buffer[point] = b'.';
            write_digits(
                &mut buffer[point + 1..point + 1 + fraction_digits],
                digits % divisor,
            );
            return point + 1 + fraction_digits;
        }
        // "0.", then -scientific_exponent - 1 zeros (already in the buffer), then the digits.
        buffer[len + 1] = b'.';
        len += 1 + (-scientific_exponent) as usize;
        write_digits(&mut buffer[len..len + digit_count], digits);
        return len + digit_count;
    }

    // The small-integer path keeps trailing zeros that scientific notation must not show.
    if decimal.exponent == 0 {
        while digits.is_multiple_of(10) {
            digits /= 10;
            digit_count -= 1;
        }
    }
    let fraction_digits = digit_count - 1;
    let divisor = POWERS_OF_10[fraction_digits];
    write_digits(&mut buffer[len..len + 1], digits / divisor);
    len += 1;
    if fraction_digits > 0 {
        buffer[len] = b'.';
        write_digits(
            &mut buffer[len + 1..len + 1 + fraction_digits],
            digits % divisor,
        );
        len += 1 + fraction_digits;
    }
    buffer[len] = b'e';
    buffer[len + 1] = if scientific_exponent < 0 { b'-' } else { b'+' };
    // |exponent| <= 45 for f32, always two digits.
    write_digits(
        &mut buffer[len + 2..len + 4],
        scientific_exponent.unsigned_abs(),
    );
    len + 4
}

/// 10^i for every digit count a shortest `f32` can have.
const POWERS_OF_10: [u32; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Writes the `destination.len()` lowest decimal digits of `value`, zero-padded.
fn write_digits(destination: &mut [u8], mut value: u32) {
    let mut chunks = destination.rchunks_mut(2);
    for chunk in &mut chunks {
        let pair = 2 * (value % 100) as usize;
        value /= 100;
        match chunk {
            [tens, ones] => {
                *tens = DIGIT_PAIRS[pair];
                *ones = DIGIT_PAIRS[pair + 1];
            }
            [ones] => *ones = DIGIT_PAIRS[pair + 1],
            _ => unreachable!("rchunks_mut(2) yields one or two bytes"),
        }
    }
}

/// "00" "01" ... "99", to produce two digits per division.
const DIGIT_PAIRS: [u8; 200] = {
    let mut table = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        table[2 * i] = b'0' + (i / 10) as u8;
        table[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    table
};

fn decimal_length(value: u32) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// `digits * 10^exponent`.
struct Decimal {
    digits: u32,
    exponent: i32,
}

const FLOAT_MANTISSA_BITS: u32 = 23;
const FLOAT_BIAS: i32 = 127;
const FLOAT_POW5_INV_BITCOUNT: i32 = 59;
const FLOAT_POW5_BITCOUNT: i32 = 61;

/// `FLOAT_POW5_INV_SPLIT[q]`: 2^(bitlength(5^q) - 1 + 59) / 5^q, plus one, as upstream generates it.
const FLOAT_POW5_INV_SPLIT: [u64; 31] = {
    let mut table = [0u64; 31];
    let mut q = 0;
    while q < 31 {
        let pow5 = 5u128.pow(q as u32);
        let shift = 128 - pow5.leading_zeros() - 1 + FLOAT_POW5_INV_BITCOUNT as u32;
        // 2^128 does not fit; for an odd divisor > 1, floor((2^128 - 1) / d) == floor(2^128 / d).
        let numerator_quotient = if shift == 128 {
            u128::MAX / pow5
        } else {
            (1u128 << shift) / pow5
        };
        table[q] = (numerator_quotient + 1) as u64;
        q += 1;
    }
    table
};

/// `FLOAT_POW5_SPLIT[i]`: the top 61 bits of 5^i.
const FLOAT_POW5_SPLIT: [u64; 47] = {
    let mut table = [0u64; 47];
    let mut i = 0;
    while i < 47 {
        let pow5 = 5u128.pow(i as u32);
        let bit_length = 128 - pow5.leading_zeros() as i32;
        table[i] = if bit_length >= FLOAT_POW5_BITCOUNT {
            (pow5 >> (bit_length - FLOAT_POW5_BITCOUNT)) as u64
        } else {
            (pow5 << (FLOAT_POW5_BITCOUNT - bit_length)) as u64
        };
        i += 1;
    }
    table
};

/// `f2d_small_int`: integers in `[1, 2^24)` are printed exactly, without the general algorithm.
fn small_integer(ieee_mantissa: u32, ieee_exponent: u32) -> Option<Decimal> {
    let e2 = ieee_exponent as i32 - FLOAT_BIAS - FLOAT_MANTISSA_BITS as i32;
    if !(-(FLOAT_MANTISSA_BITS as i32)..=0).contains(&e2) {
        return None;
    }
    let fraction_mask = (1u32 << -e2) - 1;
    if ieee_mantissa & fraction_mask != 0 {
        return None;
    }
    Some(Decimal {
        digits: ((1 << FLOAT_MANTISSA_BITS) | ieee_mantissa) >> -e2,
        exponent: 0,
    })
}

/// `f2d` from PostgreSQL's `f2s.c` (Ryu with `STRICTLY_SHORTEST` off, so the interval bounds are
/// never accepted).
fn shortest_decimal(ieee_mantissa: u32, ieee_exponent: u32) -> Decimal {
    // Two extra bits so that the interval bounds are integers.
    let (e2, m2) = if ieee_exponent == 0 {
        (
            1 - FLOAT_BIAS - FLOAT_MANTISSA_BITS as i32 - 2,
            ieee_mantissa,
        )
    } else {
        (
            ieee_exponent as i32 - FLOAT_BIAS - FLOAT_MANTISSA_BITS as i32 - 2,
            (1 << FLOAT_MANTISSA_BITS) | ieee_mantissa,
        )
    };

    // The interval of decimals that round to this float: (mm, mp) around mv, in units of 2^e2.
    let mv = 4 * m2;
    let mp = 4 * m2 + 2;
    // The gap below a power of two is half as wide.
    let mm_shift = u32::from(ieee_mantissa != 0 || ieee_exponent <= 1);
    let mm = 4 * m2 - 1 - mm_shift;

    let mut vr;
    let mut vp;
    let vm;
    let e10;
    let mut vr_is_trailing_zeros = false;
    let mut last_removed_digit = 0;
    if e2 >= 0 {
        let q = log10_pow2(e2);
        e10 = q as i32;
        let k = FLOAT_POW5_INV_BITCOUNT + pow5_bits(q as i32) - 1;
        let i = -e2 + q as i32 + k;
        vr = mul_shift(mv, FLOAT_POW5_INV_SPLIT[q as usize], i);
        vp = mul_shift(mp, FLOAT_POW5_INV_SPLIT[q as usize], i);
        vm = mul_shift(mm, FLOAT_POW5_INV_SPLIT[q as usize], i);
        if q != 0 && (vp - 1) / 10 <= vm / 10 {
            // One removed digit is needed even if the loop below removes none; computing it from
            // q - 1 keeps all arithmetic in 32 bits.
            let l = FLOAT_POW5_INV_BITCOUNT + pow5_bits(q as i32 - 1) - 1;
            last_removed_digit = mul_shift(
                mv,
                FLOAT_POW5_INV_SPLIT[q as usize - 1],
                -e2 + q as i32 - 1 + l,
            ) % 10;
        }
        if q <= 9 {
            // Only one of mp, mv and mm can be a multiple of 5, if any.
            if mv % 5 == 0 {
                vr_is_trailing_zeros = is_multiple_of_power_of_5(mv, q);
            } else {
                vp -= u32::from(is_multiple_of_power_of_5(mp, q));
            }
        }
    } else {
        let q = log10_pow5(-e2);
        e10 = q as i32 + e2;
        let i = -e2 - q as i32;
        let k = pow5_bits(i) - FLOAT_POW5_BITCOUNT;
        let j = q as i32 - k;
        vr = mul_shift(mv, FLOAT_POW5_SPLIT[i as usize], j);
        vp = mul_shift(mp, FLOAT_POW5_SPLIT[i as usize], j);
        vm = mul_shift(mm, FLOAT_POW5_SPLIT[i as usize], j);
        if q != 0 && (vp - 1) / 10 <= vm / 10 {
            let j = q as i32 - 1 - (pow5_bits(i + 1) - FLOAT_POW5_BITCOUNT);
            last_removed_digit = mul_shift(mv, FLOAT_POW5_SPLIT[i as usize + 1], j) % 10;
        }
        if q <= 1 {
            // mv = 4 * m2 has at least two trailing zero bits; mp = mv + 2 has one, which makes
            // it an excluded bound.
            vr_is_trailing_zeros = true;
            vp -= 1;
        } else if q < 31 {
            vr_is_trailing_zeros = mv.trailing_zeros() >= q - 1;
        }
    }

    let mut vm = vm;
    let mut removed = 0;
    while vp / 10 > vm / 10 {
        vr_is_trailing_zeros &= last_removed_digit == 0;
        last_removed_digit = vr % 10;
        vr /= 10;
        vp /= 10;
        vm /= 10;
        removed += 1;
    }
    if vr_is_trailing_zeros && last_removed_digit == 5 && vr % 2 == 0 {
        // The exact value ends in ...50000: round half to even.
        last_removed_digit = 4;
    }
    // vr + 1 if vr is outside the (open) interval or the removed digits round up.
    let digits = vr + u32::from(vr == vm || last_removed_digit >= 5);
    Decimal {
        digits,
        exponent: e10 + removed,
    }
}

/// ceil(log2(5^e)) for 0 < e <= 3528 (1 for e = 0).
fn pow5_bits(e: i32) -> i32 {
    ((e as u32 * 1_217_359) >> 19) as i32 + 1
}

/// floor(log10(2^e)) for 0 <= e <= 1650.
fn log10_pow2(e: i32) -> u32 {
    (e as u32 * 78_913) >> 18
}

/// floor(log10(5^e)) for 0 <= e <= 2620.
fn log10_pow5(e: i32) -> u32 {
    (e as u32 * 732_923) >> 20
}

fn is_multiple_of_power_of_5(mut value: u32, power: u32) -> bool {
    let mut count = 0;
    while value.is_multiple_of(5) {
        value /= 5;
        count += 1;
    }
    count >= power
}

/// (m * factor) >> shift for shift > 32, where the result fits in 32 bits. Two 64-bit products are
/// cheaper than a 128-bit product shifted by a variable amount.
fn mul_shift(m: u32, factor: u64, shift: i32) -> u32 {
    let low = u64::from(m) * (factor & 0xFFFF_FFFF);
    let high = u64::from(m) * (factor >> 32);
    (((low >> 32) + high) >> (shift - 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spot checks against the literal tables in PostgreSQL's `f2s.c`.
    #[test]
    fn ryu_tables_match_postgres() {
        assert_eq!(FLOAT_POW5_INV_SPLIT[0], 576460752303423489);
        assert_eq!(FLOAT_POW5_INV_SPLIT[1], 461168601842738791);
        assert_eq!(FLOAT_POW5_INV_SPLIT[17], 415383748682786211);
        assert_eq!(FLOAT_POW5_INV_SPLIT[30], 365375409332725730);
        assert_eq!(FLOAT_POW5_SPLIT[0], 1152921504606846976);
        assert_eq!(FLOAT_POW5_SPLIT[27], 1862645149230957031);
        assert_eq!(FLOAT_POW5_SPLIT[46], 2019483917365790221);
    }

    /// How much glibc's `strtof` consumes, including the cases `vector_in` cannot observe because
    /// it rejects the value first.
    #[test]
    fn strtof_consumes_like_glibc() {
        let cases: &[(&str, usize)] = &[
            ("nan(abc_1)x", 10),
            ("-NaN()", 6),
            ("nan(", 3),
            ("nan(a b)", 3),
            ("-infinityx", 9),
            ("infinit", 3),
            ("INF", 3),
            ("0x", 1),
            ("-0x", 2),
            ("0x.p1", 1),
            ("0x.8p", 4),
            ("0x1P-2z", 6),
            ("1e", 1),
            ("1e+", 1),
            ("1.e5", 4),
            (".e1", 0),
            ("+.5e-1x", 6),
            ("-", 0),
            ("x", 0),
            ("", 0),
        ];
        for &(text, expected) in cases {
            let consumed = match strtof(text.as_bytes()) {
                Number::Value { len, .. } | Number::Overflow { len } => len,
                Number::Invalid => 0,
            };
            assert_eq!(consumed, expected, "{text:?}");
        }
    }
}
