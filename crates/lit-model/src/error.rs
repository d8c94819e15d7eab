//! The error type of lit-model.

/// Errors raised by modules, optimizers, schedulers, losses and the model registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A data error surfaced through a module.
    #[error(transparent)]
    Data(#[from] lit_data::Error),
    /// A metric rejected its input.
    #[error(transparent)]
    Metric(#[from] lit_metrics::Error),
    /// A name (model, optimizer, scheduler, loss, metric) that is not registered.
    #[error(transparent)]
    UnknownName(#[from] lit_data::UnknownChoice),
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
