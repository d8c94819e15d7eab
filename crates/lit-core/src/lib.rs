//! The lit Trainer: the fit, validate, test and predict loops.
//!
//! [`Trainer`] runs a [`LitModule`](lit_model::LitModule) on a
//! [`DataModule`](lit_data::DataModule), calling [`Callback`] hooks and [`Logger`]s in a fixed,
//! documented order (see [`trainer`]). Runs write to `<root>/<name>/version_N/`: `hparams.yaml`
//! and `metrics.csv` from the built-in [`CsvLogger`].

mod accelerator;
mod callback;
pub mod checkpoint;
mod config;
mod grads;
mod logger;
pub mod precision;
pub mod rundir;
pub mod signals;
mod state;
mod strategy;
pub mod threads;
pub mod trainer;

pub use accelerator::Accelerator;
pub use callback::Callback;
pub use config::{GradientClip, Limit, TrainerConfig};
pub use grads::clip_gradients;
/// The one error type of lit (defined in lit-base), and its result.
pub use lit_base::{Error, Result};
pub use lit_data;
pub use lit_model;
pub use logger::{CsvLogger, Logger};
pub use precision::{
    precision_from_name, FullPrecision, MixedPrecision, Precision, TruePrecision, PRECISIONS,
};
pub use signals::SignalGuard;
pub use state::TrainerState;
pub use strategy::{DataParallel, SingleDevice, Strategy};
pub use trainer::Trainer;

/// The `tracing` target of what callbacks report to the user (early stopping, the best
/// checkpoint, the model summary, the time limit), as INFO events: a program shows them by
/// letting this target through its subscriber, as the `mnist` app prints them on stdout.
pub const REPORT_TARGET: &str = "lit::report";
