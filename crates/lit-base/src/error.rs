//! The one error type of lit.
//!
//! Every lit crate reports through this type (each re-exports it as its own `Error` and
//! `Result`), so a program on lit names one error: `lit::Error`. A bad hyperparameter is
//! `HParam` whichever crate read it, a missing file `Missing`, a failed tensor operation
//! `Candle`; `?` converts candle's errors and unknown names into it.

use std::path::PathBuf;

/// Errors raised by lit: reading hyperparameters and data, metrics, modules and the trainer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A name (model, dataset, optimizer, loss, metric, ...) that is not registered.
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
    /// Any other invalid argument or use.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
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
    /// A metric's `update` got inputs of shapes or values it does not take.
    #[error("{metric}: {message}")]
    InvalidInput {
        /// The metric that rejected the input.
        metric: &'static str,
        /// What was expected and what was found.
        message: String,
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
    #[error("interrupted by {}{}", signal_name(*signal), checkpoint.as_ref().map(|p| format!("; resume from {}", p.display())).unwrap_or_default())]
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

/// SIGUSR1's number: 10 on Linux, 30 on the BSDs and macOS.
const SIGUSR1: i32 = if cfg!(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)) {
    30
} else {
    10
};

/// The name a shell gives the signals a fit handles (SIGINT, SIGTERM, SIGUSR1); "signal N" for
/// others.
pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n if n == SIGUSR1 => "SIGUSR1".into(),
        n => format!("signal {n}"),
    }
}

/// The result type of lit.
pub type Result<T, E = Error> = std::result::Result<T, E>;
