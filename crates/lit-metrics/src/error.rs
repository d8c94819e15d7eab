//! The error type of lit-metrics.

/// Errors raised by metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// Inputs to `update` do not have the shapes or values the metric expects.
    #[error("{metric}: {message}")]
    InvalidInput {
        /// The metric that rejected the input.
        metric: &'static str,
        /// What was expected and what was found.
        message: String,
    },
}

/// The result type of lit-metrics.
pub type Result<T, E = Error> = std::result::Result<T, E>;
