//! The error type of lit-optim.

/// Errors raised by optimizers and schedules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A setting out of its range, named by its config field (which is also its hyperparameter
    /// key, so the message reads the same from the command line).
    #[error("hyperparameter '{key}': {message}")]
    HParam {
        /// The config field.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// Any other invalid use, such as a saved state that does not match.
    #[error("{0}")]
    Invalid(String),
}

/// The result type of lit-optim.
pub type Result<T, E = Error> = std::result::Result<T, E>;
