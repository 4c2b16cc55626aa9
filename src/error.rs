//! The one place where core errors become PostgreSQL errors with SQLSTATEs.
//!
//! Messages, details and codes are pgvector's, because clients and migrated test suites match on
//! them. Syntax errors quote the whole input literal, as pgvector's `vector_in` does.

use pgivf_core::kmeans::KMeansError;
use pgivf_core::page::FormatError;
use pgivf_core::VectorError;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises `error` as a PostgreSQL `ERROR`. `literal` is the text being parsed, for syntax errors.
pub fn raise(error: VectorError, literal: Option<&str>) -> ! {
    use PgSqlErrorCode::*;
    let syntax = || {
        format!(
            "invalid input syntax for type vector: \"{}\"",
            literal.unwrap_or_default()
        )
    };
    let (code, message, detail) = match &error {
        VectorError::MissingOpenBracket => (
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            syntax(),
            Some("Vector contents must start with \"[\"."),
        ),
        VectorError::InvalidSyntax => (ERRCODE_INVALID_TEXT_REPRESENTATION, syntax(), None),
        VectorError::JunkAfterClose => (
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            syntax(),
            Some("Junk after closing right brace."),
        ),
        VectorError::TooManyDimensions { .. } => {
            (ERRCODE_PROGRAM_LIMIT_EXCEEDED, error.to_string(), None)
        }
        VectorError::OutOfRange { .. } | VectorError::Overflow | VectorError::Underflow => {
            (ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, error.to_string(), None)
        }
        VectorError::InsufficientData => (ERRCODE_PROTOCOL_VIOLATION, error.to_string(), None),
        VectorError::NoDimensions
        | VectorError::NaN
        | VectorError::Infinite
        | VectorError::DimensionMismatch(..)
        | VectorError::TypmodMismatch { .. }
        | VectorError::UnusedNotZero(_) => (ERRCODE_DATA_EXCEPTION, error.to_string(), None),
    };
    raise_with(code, message, detail)
}

/// Raises an `ERROR` with an explicit SQLSTATE, for errors that do not come from the core.
pub fn raise_with(code: PgSqlErrorCode, message: String, detail: Option<&str>) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message, "pgivf");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a core result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, VectorError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|error| raise(error, None))
    }
}

/// Raises an error about the on-disk format of index `index_name`.
pub fn raise_format(index_name: &str, error: FormatError) -> ! {
    let code = match error {
        FormatError::UnsupportedVersion(_) => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        FormatError::BadMagic(_) | FormatError::Corrupted(_) => {
            PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED
        }
    };
    raise_with(code, format!("index \"{index_name}\": {error}"), None)
}

/// Raises a k-means failure. Interrupts never get here (the progress callback raises the cancel
/// itself); what remains are limits and bugs.
pub fn raise_kmeans(error: KMeansError) -> ! {
    let code = match error {
        KMeansError::TooLarge { .. } => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        KMeansError::Interrupted => PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
        _ => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
    };
    raise_with(code, format!("ivfflat k-means failed: {error}"), None)
}
