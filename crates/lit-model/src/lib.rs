//! The lit module interface and the numerical toolbox around it.
//!
//! - [`LitModule`]: Lightning's `LightningModule` hooks (steps, epoch ends, optimizers), with a
//!   [`StepContext`] through which steps log values that stay on the device.
//! - [`Net`] and [`ModelRegistry`]: plain networks built from a `VarBuilder` and a serde `Config`
//!   filled from the run's hyperparameters by name.
//! - [`MInterface`]: the generic module that wraps any registered network and takes its loss,
//!   metrics, optimizer and learning-rate schedule from the hyperparameters.
//! - [`optim`]: optimizers with state that can be saved (SGD, Adam, AdamW), matching PyTorch.
//! - [`scheduler`]: learning-rate schedules (step, multi-step, cosine, linear warmup).
//! - [`loss`]: cross-entropy, MSE and triplet-margin losses.
//! - [`init`]: seeded parameter initialisation, since candle cannot seed its CPU generator.
//! - [`nn`]: `linear` and `conv2d` initialised as PyTorch initialises them.

mod error;
pub mod init;
pub mod kernels;
mod logging;
pub mod loss;
mod minterface;
mod module;
pub mod nn;
pub mod optim;
mod registry;
pub mod scheduler;

pub use error::{Error, Result};
pub use lit_data::{Batch, HParams, Stage};
pub use logging::{LogOptions, RunningStage, StepContext};
pub use minterface::{module_keys, MInterface, METRICS, TOP_K_METRIC};
pub use module::{LitModule, Optimization};
pub use registry::{BoxedNet, ModelRegistry, Net};
