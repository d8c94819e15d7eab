//! [`StepContext`]: how steps log values, Lightning's `self.log`.
//!
//! Logged tensors stay on the device. Epoch values are batch-size-weighted sums kept as device
//! tensors; step values are held until the trainer asks for them, which it does only every
//! `log_every_n_steps`. Nothing here copies to the host until the trainer's side of the context,
//! [`LoggedResults`], converts them (`take_step_values`, `epoch_values`), and each conversion is
//! counted in [`LoggedResults::host_syncs`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use candle::{DType, Tensor};
use lit_base::Collective;

mod epoch_values;
mod results;

pub use results::LoggedResults;

use crate::{Error, Result};

/// The loop a step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunningStage {
    /// Training steps.
    Train,
    /// The short validation run before training starts.
    SanityCheck,
    /// Validation steps.
    Validate,
    /// Test steps.
    Test,
    /// Prediction steps.
    Predict,
}

/// Where a logged value goes, Lightning's `on_step`, `on_epoch` and `prog_bar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Log this step's value (every `log_every_n_steps`).
    pub on_step: bool,
    /// Log the batch-size-weighted mean over the epoch.
    pub on_epoch: bool,
    /// Show the value in the progress display.
    pub prog_bar: bool,
}

impl Default for LogOptions {
    /// A value over the epoch (the batch-size-weighted mean), not shown in the progress display:
    /// Lightning's default outside `training_step` (see [`LogOptions::for_stage`]).
    fn default() -> Self {
        Self {
            on_step: false,
            on_epoch: true,
            prog_bar: false,
        }
    }
}

impl LogOptions {
    /// Lightning's defaults for a stage: per step in training, per epoch elsewhere.
    pub fn for_stage(stage: RunningStage) -> Self {
        match stage {
            RunningStage::Train => Self {
                on_step: true,
                on_epoch: false,
                prog_bar: false,
            },
            _ => Self {
                on_step: false,
                on_epoch: true,
                prog_bar: false,
            },
        }
    }

    /// This step's value only (Lightning's default in `training_step`).
    pub fn step() -> Self {
        Self::for_stage(RunningStage::Train)
    }

    /// The mean over the epoch only (the default, and Lightning's outside `training_step`).
    pub fn epoch() -> Self {
        Self::default()
    }

    /// The same options with the value shown in the progress display.
    pub fn prog_bar(mut self) -> Self {
        self.prog_bar = true;
        self
    }
}

struct EpochSum {
    sum: Tensor,
    weight: f64,
}

/// What a step uses to log, and what the trainer reads back.
pub struct StepContext {
    stage: RunningStage,
    dataloader_idx: usize,
    dataloader_names: Vec<String>,
    batch_size: usize,
    step_values: BTreeMap<String, Tensor>,
    epoch_sums: BTreeMap<String, EpochSum>,
    epoch_host: BTreeMap<String, f64>,
    prog_bar: BTreeSet<String>,
    host_syncs: usize,
    collective: Option<Arc<dyn Collective>>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("stage", &self.stage)
            .field("dataloader_idx", &self.dataloader_idx)
            .field("keys", &self.epoch_sums.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StepContext {
    /// A context for `stage` whose loaders are named `dataloader_names` (empty in training).
    pub fn new(stage: RunningStage, dataloader_names: Vec<String>) -> Self {
        Self {
            stage,
            dataloader_idx: 0,
            dataloader_names,
            batch_size: 0,
            step_values: BTreeMap::new(),
            epoch_sums: BTreeMap::new(),
            epoch_host: BTreeMap::new(),
            prog_bar: BTreeSet::new(),
            host_syncs: 0,
            collective: None,
        }
    }

    /// The processes of a data-parallel run, if this is one: modules merge their metric states
    /// through it (`lit_metrics::sync`) before computing them.
    pub fn collective(&self) -> Option<&Arc<dyn Collective>> {
        self.collective.as_ref()
    }

    /// The stage this context logs for.
    pub fn stage(&self) -> RunningStage {
        self.stage
    }

    /// The index of the loader the current batch comes from.
    pub fn dataloader_idx(&self) -> usize {
        self.dataloader_idx
    }

    /// The number of loaders in this stage.
    pub fn num_dataloaders(&self) -> usize {
        self.dataloader_names.len()
    }

    /// The key under which `name` is logged for loader `idx`: `name/<loader name>` when the stage
    /// has several loaders, plain `name` otherwise.
    pub fn key_for(&self, name: &str, idx: usize) -> String {
        if self.dataloader_names.len() > 1 {
            format!("{name}/{}", self.dataloader_names[idx])
        } else {
            name.to_string()
        }
    }

    /// Logs a scalar tensor for the current batch with `opts`, weighted by the batch size.
    pub fn log(&mut self, name: &str, value: &Tensor, opts: LogOptions) -> Result<()> {
        self.log_weighted(
            name,
            value,
            opts,
            self.batch_size.max(1) as f64,
            self.dataloader_idx,
        )
    }

    /// Logs a scalar tensor with an explicit weight for the epoch mean and loader index.
    pub fn log_weighted(
        &mut self,
        name: &str,
        value: &Tensor,
        opts: LogOptions,
        weight: f64,
        idx: usize,
    ) -> Result<()> {
        if value.elem_count() != 1 {
            return Err(Error::Invalid(format!(
                "log('{name}'): expected a scalar tensor, got shape {:?}",
                value.shape()
            )));
        }
        let value = value
            .detach()
            .flatten_all()?
            .squeeze(0)?
            .to_dtype(DType::F32)?;
        let key = self.key_for(name, idx);
        let (step_key, epoch_key) = match (opts.on_step, opts.on_epoch) {
            (true, true) => (format!("{key}_step"), format!("{key}_epoch")),
            _ => (key.clone(), key),
        };
        if opts.on_step {
            if opts.prog_bar {
                self.prog_bar.insert(step_key.clone());
            }
            self.step_values.insert(step_key, value.clone());
        }
        if opts.on_epoch {
            if opts.prog_bar {
                self.prog_bar.insert(epoch_key.clone());
            }
            let weighted = value.affine(weight, 0.0)?;
            match self.epoch_sums.get_mut(&epoch_key) {
                Some(acc) => {
                    acc.sum = (&acc.sum + weighted)?;
                    acc.weight += weight;
                }
                None => {
                    self.epoch_sums.insert(
                        epoch_key,
                        EpochSum {
                            sum: weighted,
                            weight,
                        },
                    );
                }
            }
        }
        Ok(())
    }
}
