//! Errors raised by the core. The extension maps each variant to a PostgreSQL SQLSTATE in exactly
//! one place (`src/error.rs` of the extension crate); the messages here are pgvector's, word for word,
//! because clients and tests match on them.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VectorError {
    /// Text input that does not start with `[` (after whitespace).
    #[error("invalid input syntax for type vector")]
    MissingOpenBracket,
    /// Any other malformed text input: empty element, junk inside the brackets, missing `]`.
    #[error("invalid input syntax for type vector")]
    InvalidSyntax,
    /// Something other than whitespace after the closing `]`.
    #[error("invalid input syntax for type vector")]
    JunkAfterClose,
    #[error("vector must have at least 1 dimension")]
    NoDimensions,
    #[error("vector cannot have more than {max} dimensions")]
    TooManyDimensions { max: usize },
    /// A number that overflows `float4`; `token` is the text as written.
    #[error("\"{token}\" is out of range for type vector")]
    OutOfRange { token: String },
    #[error("NaN not allowed in vector")]
    NaN,
    #[error("infinite value not allowed in vector")]
    Infinite,
    #[error("different vector dimensions {0} and {1}")]
    DimensionMismatch(usize, usize),
    #[error("expected {expected} dimensions, not {actual}")]
    TypmodMismatch { expected: i32, actual: usize },
    #[error("value out of range: overflow")]
    Overflow,
    #[error("value out of range: underflow")]
    Underflow,
    /// Binary input shorter than its header says (PostgreSQL's own message for short messages).
    #[error("insufficient data left in message")]
    InsufficientData,
    #[error("expected unused to be 0, not {0}")]
    UnusedNotZero(u16),
}
