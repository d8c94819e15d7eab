//! lit: Lightning for Rust, on Candle, behind one dependency.
//!
//! The layered crates are re-exported under their roles (`lit::base`, `lit::data`,
//! `lit::kernels`, `lit::optim`, `lit::model`, `lit::metrics`, `lit::core`, `lit::callbacks`), with candle and candle-nn (`lit::candle`,
//! `lit::candle_nn`), so a project depends on `lit` alone and its versions always agree. Most
//! programs need only the prelude:
//!
//! ```no_run
//! use lit::prelude::*;
//!
//! # fn main() -> lit::Result<()> {
//! let x = Tensor::zeros((8, 2), DType::F32, &Device::Cpu)?;
//! let y = Tensor::zeros(8, DType::U32, &Device::Cpu)?;
//! let data = Arc::new(TensorDataset::new(x, y)?);
//! let train = DataLoader::new(data, DataLoaderConfig { batch_size: 4, ..Default::default() })?;
//! # let _ = train;
//! # Ok(())
//! # }
//! ```
//!
//! See `examples/blobs` in the repository for a model, its data and a fit in one file.

pub use candle;
pub use candle_nn;
pub use lit_base as base;
/// The one error of lit: every lit crate reports through it (a user's `LitModule`, data and
/// `main` all return `lit::Result`), and candle's errors convert into it with `?`.
pub use lit_base::{Error, Result};
pub use lit_callbacks as callbacks;
pub use lit_core as core;
pub use lit_data as data;
pub use lit_kernels as kernels;
pub use lit_metrics as metrics;
pub use lit_model as model;
pub use lit_optim as optim;

/// What a model, a dataset and a fit need: `use lit::prelude::*;`.
pub mod prelude {
    pub use std::sync::Arc;

    pub use candle::{DType, Device, Module, ModuleT, Tensor, D};
    pub use candle_nn::{VarBuilder, VarMap};

    pub use lit_callbacks::{
        EarlyStopping, LearningRateMonitor, ModelCheckpoint, ModelSummary, ProgressBar, Timer,
    };
    pub use lit_core::{threads, Callback, Limit, Trainer, TrainerConfig, TrainerState};
    pub use lit_data::{
        Batch, DataContext, DataInfo, DataLoader, DataLoaderConfig, DataModule, Dataset, Generator,
        HParams, Loaders, NamedLoader, Sample, Split, Stage, TensorDataset,
    };
    pub use lit_metrics::{Average, Metric, MulticlassAccuracy};
    pub use lit_model::init::SeededVarMap;
    pub use lit_model::optim::{named_params, Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
    pub use lit_model::scheduler::Mode;
    pub use lit_model::{
        loss, nn, LitModule, LogOptions, MInterface, ModelRegistry, Net, Optimization, StepContext,
    };
}
