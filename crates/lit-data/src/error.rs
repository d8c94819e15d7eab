//! The error type of lit-data.

use std::path::PathBuf;

/// Errors raised while reading, building or loading data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file exists but its content is not what was expected.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A required data file is missing.
    #[error("missing data file {}: {hint}", path.display())]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// A name (such as a dataset's) that is not registered.
    #[error(transparent)]
    Unknown(#[from] crate::UnknownChoice),
    /// A hyperparameter with a bad value.
    #[error("hyperparameter '{key}': {message}")]
    HParam {
        /// The key.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// Any other invalid argument.
    #[error("{0}")]
    Invalid(String),
}

/// The result type of lit-data.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<lit_base::Error> for Error {
    fn from(e: lit_base::Error) -> Self {
        match e {
            lit_base::Error::Candle(e) => Error::Candle(e),
            lit_base::Error::Unknown(e) => Error::Unknown(e),
            lit_base::Error::HParam { key, message } => Error::HParam { key, message },
            lit_base::Error::Invalid(m) => Error::Invalid(m),
            other => Error::Invalid(other.to_string()),
        }
    }
}
