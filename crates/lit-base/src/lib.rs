//! The vocabulary that every lit crate shares, and nothing else.
//!
//! - [`HParams`]: the run's hyperparameters, one ordered map, as Lightning's `self.hparams`.
//! - [`Registry`]: things chosen by name, the only list of their names (lookups, errors, `--help`).
//! - [`Generator`]: the seeded random generator that lit owns (candle cannot seed its CPU one).
//! - [`Batch`] and [`Stage`]: what a loader yields and what the trainer is running.
//! - [`Collective`]: what data-parallel processes do together (all-reduce, all-gather).
//!
//! Model code builds on this crate without depending on data loading (`lit-data`), and data code
//! without depending on models.

mod batch;
mod collective;
mod error;
pub mod hparams;
mod registry;
mod rng;

pub use batch::{Batch, Stage};
pub use collective::Collective;
pub use error::{signal_name, Error, Result};
pub use hparams::{defaults_of, HParams};
pub use registry::{Registry, UnknownChoice};
pub use rng::{set_step, Generator};

/// The names PyTorch gives a module's buffers: state that is saved with the weights but not
/// trained (batch norm's running statistics). Such tensors live in the model's `VarMap` with the
/// parameters, so checkpoints save and restore them, and every part of lit that trains, counts or
/// averages *parameters* (optimizers, the model summary, data-parallel gradient averaging) leaves
/// out the names this accepts.
pub fn is_buffer(name: &str) -> bool {
    const BUFFERS: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];
    let last = name.rsplit('.').next().unwrap_or(name);
    BUFFERS.contains(&last)
}

/// The run's seed when the hyperparameters give none: initial weights, data order and random
/// layers all start from it (the `mnist` app's `--seed` default too).
pub const DEFAULT_SEED: u64 = 1234;
