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
mod hparams;
mod registry;
mod rng;

pub use batch::{Batch, Stage};
pub use collective::Collective;
pub use error::{Error, Result};
pub use hparams::HParams;
pub use registry::{Registry, UnknownChoice};
pub use rng::Generator;
