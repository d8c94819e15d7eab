//! The error type of lit-model.

/// Errors raised by modules, optimizers, schedulers, losses and the model registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A metric rejected its input.
    #[error(transparent)]
    Metric(#[from] lit_metrics::Error),
    /// A name (model, optimizer, scheduler, loss, metric) that is not registered.
    #[error(transparent)]
    UnknownName(#[from] lit_base::UnknownChoice),
    /// A hyperparameter with a bad value.
    #[error("hyperparameter '{key}': {message}")]
    HParam {
        /// The key.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// Any other invalid use.
    #[error("{0}")]
    Invalid(String),
}

/// The result type of lit-model.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// Errors from the crates below keep their kind: a bad hyperparameter is `HParam` whichever crate
// read it, so callers match one error type.
impl From<lit_base::Error> for Error {
    fn from(e: lit_base::Error) -> Self {
        match e {
            lit_base::Error::Candle(e) => Error::Candle(e),
            lit_base::Error::Unknown(e) => Error::UnknownName(e),
            lit_base::Error::HParam { key, message } => Error::HParam { key, message },
            other => Error::Invalid(other.to_string()),
        }
    }
}
