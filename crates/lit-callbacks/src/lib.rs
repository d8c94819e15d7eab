//! Callbacks and loggers for the lit [`Trainer`](lit_core::Trainer).
//!
//! - [`ProgressBar`]: one live line per stage with the loss, samples/s and the ETA; plain
//!   periodic lines when stdout is not a terminal, so CI logs stay readable.
//! - [`EarlyStopping`]: stop when a monitored value stops improving (or is not finite).
//! - [`ModelCheckpoint`]: keep the top-k checkpoints by a monitored value, and the last.
//! - [`ModelSummary`]: the table of layers and parameter counts at fit start.
//! - [`LearningRateMonitor`]: log `lr-<Optimizer>` every step or epoch.
//! - [`Timer`]: stop after a wall-clock budget.
//! - [`Curves`]: `curves.png` of the loss and validation metrics at the end of fit.
//! - [`TensorBoardLogger`]: `events.out.tfevents.*` files that TensorBoard reads.

mod curves;
mod early_stopping;
mod lr_monitor;
mod model_checkpoint;
mod model_summary;
mod progress;
mod tensorboard;
mod timer;

pub use curves::Curves;
pub use early_stopping::EarlyStopping;
pub use lr_monitor::LearningRateMonitor;
pub use model_checkpoint::{check_filename, render_filename, ModelCheckpoint};
pub use model_summary::ModelSummary;
pub use progress::ProgressBar;
pub use tensorboard::TensorBoardLogger;
pub use timer::Timer;
