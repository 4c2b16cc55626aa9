//! The one place where core errors become PostgreSQL errors with SQLSTATEs.
//!
//! Messages, details and codes are pgvector's, because clients and migrated test suites match on
//! them. Syntax errors quote the whole input literal, as pgvector's `vector_in` does.

use pgivf_core::index::build::BuildError;
use pgivf_core::index::search::SearchError;
use pgivf_core::index::verify::Corruption;
use pgivf_core::kmeans::KMeansError;
use pgivf_core::page::FormatError;
use pgivf_core::VectorError;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

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

/// Raises what the verifier found wrong with index `index_name`.
pub fn raise_corruption(index_name: &str, corruption: Corruption) -> ! {
    raise_with(
        PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        format!("index \"{index_name}\" is corrupted: {corruption}"),
        None,
    )
}

/// The name of an open relation.
pub fn relation_name(relation: pg_sys::Relation) -> String {
    // SAFETY: an open relation.
    unsafe {
        std::ffi::CStr::from_ptr((*(*relation).rd_rel).relname.data.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Unwraps a format result or raises a corrupted-index error naming the index.
pub trait OrCorrupt<T> {
    fn or_corrupt(self, index: pg_sys::Relation) -> T;
}

impl<T> OrCorrupt<T> for Result<T, FormatError> {
    fn or_corrupt(self, index: pg_sys::Relation) -> T {
        self.unwrap_or_else(|e| raise_format(&relation_name(index), e))
    }
}

impl<T> OrCorrupt<T> for Result<T, SearchError> {
    fn or_corrupt(self, index: pg_sys::Relation) -> T {
        self.unwrap_or_else(|e| match e {
            SearchError::Format(format) => raise_format(&relation_name(index), format),
            // PostgreSQL's own words for a failed allocation, so that it reads like one.
            SearchError::OutOfMemory { bytes } => raise_with(
                PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
                "out of memory".into(),
                Some(&format!(
                    "Failed to grow the buffers of a scan of ivfflat index \"{}\" beyond {bytes} bytes.",
                    relation_name(index)
                )),
            ),
        })
    }
}

/// `quantizer = 'sq8' or 'rabitq'`: every quantizer there is, for hints.
fn quantizer_choices() -> String {
    pgivf_core::quant::QUANTIZERS
        .iter()
        .map(|r| format!("'{}'", r.name))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Raises why index `index` cannot be built as asked.
pub fn raise_build(index: pg_sys::Relation, error: BuildError) -> ! {
    use PgSqlErrorCode::*;
    let message = error.to_string();
    let (code, detail) = match &error {
        BuildError::NoDimensions | BuildError::OneDimension => {
            (ERRCODE_INVALID_PARAMETER_VALUE, None)
        }
        BuildError::TooManyDimensionsForVectorsInIndex => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Some(format!(
                "Lists that keep only the codes, WITH (quantizer = 'rabitq', rerank = 'heap'), take up to {} dimensions.",
                pgivf_core::VECTOR_MAX_DIM
            )),
        ),
        BuildError::TooManyDimensions
        | BuildError::NotEnoughMemory { .. }
        | BuildError::KMeans(KMeansError::TooLarge { .. }) => {
            (ERRCODE_PROGRAM_LIMIT_EXCEEDED, None)
        }
        BuildError::HeapWithoutQuantizer => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            Some(format!(
                "Give quantizer = {}; an index without one holds the vectors themselves.",
                quantizer_choices()
            )),
        ),
        BuildError::SpillWithoutQuantizer => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            Some(format!(
                "Give quantizer = {}; lists without one would hold every vector twice.",
                quantizer_choices()
            )),
        ),
        BuildError::HeapOfExpression => (
            ERRCODE_FEATURE_NOT_SUPPORTED,
            Some("Use rerank = 'index'.".into()),
        ),
        BuildError::EntryTooLarge { .. } => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Some("Use fewer filter columns.".into()),
        ),
        // Interrupts never get here (the progress callback raises the cancel itself).
        BuildError::KMeans(KMeansError::Interrupted) => (ERRCODE_QUERY_CANCELED, None),
        BuildError::KMeans(_) => (ERRCODE_INTERNAL_ERROR, None),
        BuildError::Format(format) => raise_format(&relation_name(index), format.clone()),
    };
    raise_with(code, message, detail.as_deref())
}
