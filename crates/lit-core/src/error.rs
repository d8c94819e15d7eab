//! The error type of lit-core.

use std::path::PathBuf;

/// Errors raised by the trainer, its callbacks and loggers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A data error.
    #[error(transparent)]
    Data(#[from] lit_data::Error),
    /// A module, optimizer or scheduler error.
    #[error(transparent)]
    Model(#[from] lit_model::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The loss became NaN or infinite.
    #[error("the training loss is {value} at epoch {epoch}, global step {step}; lower the learning rate or check the data")]
    NonFiniteLoss {
        /// The value.
        value: f64,
        /// The epoch.
        epoch: usize,
        /// The global step.
        step: u64,
    },
    /// A monitored key that was never logged.
    #[error("{who}: '{key}' was never logged; logged keys: {}", available.join(", "))]
    MissingMonitor {
        /// The callback or scheduler that monitors.
        who: String,
        /// The key.
        key: String,
        /// The keys that exist.
        available: Vec<String>,
    },
    /// A checkpoint file is unreadable or does not match the model.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An invalid trainer setting.
    #[error("{0}")]
    Config(String),
    /// A callback or logger failed.
    #[error("{0}")]
    Callback(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

// The crates below lit-model report through lit-model's error, which keeps their kinds.
impl From<lit_base::Error> for Error {
    fn from(e: lit_base::Error) -> Self {
        Error::Model(e.into())
    }
}

/// The result type of lit-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
