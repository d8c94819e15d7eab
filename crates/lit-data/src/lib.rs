//! Datasets, data loaders and data modules for lit.
//!
//! - [`Dataset`]: `len` and `get`, plus a batched [`Dataset::get_batch`] that tensor-backed
//!   datasets answer with one gather from a pre-normalised tensor.
//! - [`DataLoader`]: batching, seeded per-epoch shuffling, `drop_last`, and worker threads that
//!   prepare the next batches while the model computes.
//! - [`DataModule`]: Lightning's data interface (prepare, setup, teardown, named loaders), and
//!   [`DInterface`], the generic data module that builds its datasets from registered names and the
//!   run's hyperparameters.
//! - [`idx`]: the IDX format of MNIST and Fashion-MNIST, raw or gzipped, checked on read.
//! - [`Generator`], [`HParams`], [`Registry`], [`Batch`] and [`Stage`] come from `lit-base` and are
//!   re-exported here.
//!
//! ```
//! # fn main() -> lit_data::Result<()> {
//! use std::sync::Arc;
//! use candle::{Device, Tensor};
//! use lit_data::{DataLoader, DataLoaderConfig, TensorDataset};
//!
//! let x = Tensor::arange(0f32, 10., &Device::Cpu)?.reshape((10, 1))?;
//! let y = Tensor::arange(0u32, 10, &Device::Cpu)?;
//! let ds = Arc::new(TensorDataset::new(x, y)?);
//! let loader = DataLoader::new(ds, DataLoaderConfig { batch_size: 4, ..Default::default() })?;
//! assert_eq!(loader.len(), 3); // 4 + 4 + 2
//! let sizes: Vec<usize> = loader.iter(0).map(|b| b.map(|b| b.len())).collect::<Result<_, _>>()?;
//! assert_eq!(sizes, [4, 4, 2]);
//! # Ok(())
//! # }
//! ```

pub mod augment;
pub mod config;
mod datamodule;
mod dataset;
mod dinterface;
pub mod idx;
pub mod image_folder;
mod loader;
pub mod mnist;
mod resized_crop;
pub mod table;

pub use augment::{AugmentConfig, Augmented, Transform};
pub use config::{AugmentHParams, DataHParams, DEFAULT_NUM_WORKERS};
pub use datamodule::{DataModule, Loaders, NamedLoader};
pub use dataset::{DataInfo, Dataset, InputMap, Sample, StoredImages, Task, TensorDataset};
pub use dinterface::{
    DInterface, DataContext, DatasetBuilder, DatasetRegistry, Split, DATA_DIR_ENV,
};
/// The one error type of lit (defined in lit-base), and its result.
pub use lit_base::{Error, Result};
pub use loader::{BatchIter, DataLoader, DataLoaderConfig, Shard};

// The shared vocabulary, re-exported so that data code needs one import path.
pub use lit_base::{
    defaults_of, Batch, Generator, HParams, Registry, Stage, UnknownChoice, DEFAULT_SEED,
};
