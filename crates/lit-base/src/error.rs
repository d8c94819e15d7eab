//! The error type of lit-base.

/// Errors raised while reading hyperparameters or choosing by name.
///
/// Each crate above folds these into its own error type variant by variant (a bad hyperparameter
/// stays a `HParam` error whichever crate read it), so callers match one error type per crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A name (model, dataset, optimizer, ...) that is not registered.
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

/// The result type of lit-base.
pub type Result<T, E = Error> = std::result::Result<T, E>;
