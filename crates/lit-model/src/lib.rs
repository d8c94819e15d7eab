//! The lit module interface and the numerical toolbox around it.
//!
//! - [`LitModule`]: Lightning's `LightningModule` hooks (steps, epoch ends, optimizers), with a
//!   [`StepContext`] through which steps log values that stay on the device.
//! - [`Net`] and [`ModelRegistry`]: plain networks built from a `VarBuilder` and a serde `Config`
//!   filled from the run's hyperparameters by name.
//! - [`MInterface`]: the generic module that wraps any registered network and takes its loss,
//!   metrics, optimizer and learning-rate schedule from the hyperparameters.
//! - [`optim`] and [`scheduler`]: the optimizers and learning-rate schedules of `lit-optim` (typed
//!   configs, saveable state, PyTorch's update rules), chosen by name from the hyperparameters.
//! - [`loss`]: cross-entropy, MSE and triplet-margin losses.
//! - [`init`], [`nn`] and [`kernels`]: seeded initialisation, layers and the fast CPU kernels of
//!   `lit-kernels`, re-exported.

mod logging;
pub mod loss;
mod minterface;
mod module;
pub mod optim;
mod registry;
pub mod scheduler;
mod sums;

pub use lit_base::{is_buffer, set_step, Batch, HParams, Stage};
/// The one error type of lit (defined in lit-base), and its result.
pub use lit_base::{Error, Result};
/// The fast CPU kernels (`lit-kernels`), re-exported.
pub use lit_kernels as kernels;
pub use lit_kernels::{init, nn};
pub use logging::{LogOptions, LoggedResults, RunningStage, StepContext};
pub use minterface::{
    module_defaults, module_keys, MInterface, MInterfaceHParams, DEFAULT_SEED, METRICS,
    REGRESSION_METRICS, REGRESSION_METRIC_NAMES, TOP_K_METRIC,
};
pub use module::{LitModule, Optimization};
pub use registry::{BoxedNet, ModelRegistry, Net};
