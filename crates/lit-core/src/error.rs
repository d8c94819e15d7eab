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
    #[error("the training loss is {value} at epoch {epoch}, global step {step}; {advice}")]
    NonFiniteLoss {
        /// The likely cause and what to do.
        advice: String,
        /// The value.
        value: f64,
        /// The epoch.
        epoch: usize,
        /// The global step.
        step: u64,
    },
    /// A parameter or buffer became NaN or infinite.
    #[error("parameter {name} holds NaN or infinite values at epoch {epoch}, global step {step}{hint}; lower the learning rate or check the data")]
    NonFiniteWeights {
        /// The tensor's name.
        name: String,
        /// The epoch.
        epoch: usize,
        /// The global step.
        step: u64,
        /// A likely cause found in the run's settings ("; ..."), or empty.
        hint: String,
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
    /// A signal stopped the fit; `last` was written (when the run writes checkpoints) and the
    /// loggers flushed. A program exits with [`Error::exit_code`] so a scheduler sees it.
    #[error("interrupted by {}{}", crate::signals::name(*signal), checkpoint.as_ref().map(|p| format!("; resume from {}", p.display())).unwrap_or_default())]
    Interrupted {
        /// The signal's number.
        signal: i32,
        /// The checkpoint to resume from, when one was written.
        checkpoint: Option<PathBuf>,
    },
}

impl Error {
    /// The exit status a program should end with: 128 + the signal's number for an
    /// interrupted fit (as a shell reports a process a signal ended), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted { signal, .. } => u8::try_from(128 + signal).unwrap_or(1),
            _ => 1,
        }
    }

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
