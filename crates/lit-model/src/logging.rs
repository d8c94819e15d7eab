//! [`StepContext`]: how steps log values, Lightning's `self.log`.
//!
//! Logged tensors stay on the device. Epoch values are batch-size-weighted sums kept as device
//! tensors; step values are held until the trainer asks for them, which it does only every
//! `log_every_n_steps`. Nothing here copies to the host until [`StepContext::take_step_values`] or
//! [`StepContext::epoch_values`] converts, and each conversion is counted in
//! [`StepContext::host_syncs`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use candle::{DType, Device, Tensor};
use lit_base::Collective;

mod epoch_values;

use crate::sums::{merge_sums, sums_json, to_host, RANKS_KEY};
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

    /// The same context in a data-parallel run: epoch means and metrics are merged over every
    /// process of `collective` before they are logged.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn with_collective(mut self, collective: Option<Arc<dyn Collective>>) -> Self {
        self.collective = collective.filter(|c| c.world_size() > 1);
        self
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

    /// Sets the loader and the size of the batch about to be stepped (the trainer calls this).
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn begin_batch(&mut self, dataloader_idx: usize, batch_size: usize) {
        self.dataloader_idx = dataloader_idx;
        self.batch_size = batch_size;
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

    /// Every key logged so far in this epoch (step and epoch keys, read without a host copy),
    /// with the base names of `_step`/`_epoch` pairs.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn logged_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .step_values
            .keys()
            .chain(self.epoch_sums.keys())
            .chain(self.epoch_host.keys())
            .cloned()
            .collect();
        let bases: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_suffix("_step").or_else(|| k.strip_suffix("_epoch")))
            .map(str::to_string)
            .collect();
        keys.extend(bases);
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether `key` is shown in the progress display.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn is_prog_bar(&self, key: &str) -> bool {
        self.prog_bar.contains(key)
    }

    /// The values logged on this step, still on the device, without copying; cleared.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn drain_step_tensors(&mut self) -> BTreeMap<String, Tensor> {
        std::mem::take(&mut self.step_values)
    }

    /// The values logged on this step, copied to the host (one sync); cleared.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn take_step_values(&mut self) -> Result<BTreeMap<String, f64>> {
        let tensors = self.drain_step_tensors();
        to_host(&tensors, &mut self.host_syncs)
    }

    /// The values logged on this step and `extra` (the loss), copied to the host together in one
    /// sync; the step values are cleared.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn take_step_values_with(
        &mut self,
        extra: &Tensor,
    ) -> Result<(BTreeMap<String, f64>, f64)> {
        let mut tensors = self.drain_step_tensors();
        // A key no user can log, so it cannot collide.
        tensors.insert(
            "\0extra".into(),
            extra
                .detach()
                .flatten_all()?
                .squeeze(0)?
                .to_dtype(DType::F32)?,
        );
        let mut values = to_host(&tensors, &mut self.host_syncs)?;
        let extra = values.remove("\0extra").unwrap_or(f64::NAN);
        Ok((values, extra))
    }

    /// The epoch means of everything logged since the last reset, copied to the host (one sync).
    /// In a data-parallel run the sums and weights of every process are added first, so a mean
    /// covers the whole epoch's data.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn epoch_values(&mut self) -> Result<BTreeMap<String, f64>> {
        if let Some(c) = self.collective.clone() {
            return self.merged_epoch_values(c.as_ref());
        }
        let means: BTreeMap<String, Tensor> = self
            .epoch_sums
            .iter()
            .map(|(k, s)| Ok((k.clone(), s.sum.affine(1.0 / s.weight, 0.0)?)))
            .collect::<Result<_>>()?;
        let mut out = to_host(&means, &mut self.host_syncs)?;
        out.extend(self.epoch_host.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(out)
    }

    fn merged_epoch_values(&mut self, c: &dyn Collective) -> Result<BTreeMap<String, f64>> {
        let local = self.host_sums()?;
        let mut out: BTreeMap<String, f64> = merge_sums(c, &local)?
            .into_iter()
            .map(|(k, (sum, weight))| (k, sum / weight))
            .collect();
        out.extend(self.epoch_host.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(out)
    }

    /// The epoch's sums and weights by key, copied to the host (one sync).
    fn host_sums(&mut self) -> Result<BTreeMap<String, (f64, f64)>> {
        let sums: BTreeMap<String, Tensor> = self
            .epoch_sums
            .iter()
            .map(|(k, s)| (k.clone(), s.sum.clone()))
            .collect();
        let host = to_host(&sums, &mut self.host_syncs)?;
        Ok(host
            .into_iter()
            .map(|(k, sum)| {
                let weight = self.epoch_sums[&k].weight;
                (k, (sum, weight))
            })
            .collect())
    }

    /// The epoch's logged sums and weights so far, on the host (one copy), for a mid-epoch
    /// checkpoint: `{"key": [sum, weight], ...}`; in a data-parallel run added over every
    /// process (all of them call this together), with each process's own sums under
    /// `__ranks__`, so a resume on as many processes continues each one's sums exactly.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn epoch_state(&mut self) -> Result<serde_json::Value> {
        let local = self.host_sums()?;
        let Some(c) = self.collective.clone() else {
            return Ok(sums_json(&local));
        };
        let mine = serde_json::to_vec(&sums_json(&local))
            .map_err(|e| Error::Invalid(format!("epoch state: {e}")))?;
        let ranks = c
            .all_gather_bytes(&mine)?
            .iter()
            .map(|b| serde_json::from_slice(b))
            .collect::<std::result::Result<Vec<serde_json::Value>, _>>()
            .map_err(|e| Error::Invalid(format!("epoch state of another process: {e}")))?;
        let mut out = sums_json(&merge_sums(c.as_ref(), &local)?);
        if let Some(map) = out.as_object_mut() {
            map.insert(RANKS_KEY.into(), serde_json::Value::Array(ranks));
        }
        Ok(out)
    }

    /// Restores the sums of process `rank` of `world` saved by [`StepContext::epoch_state`] on
    /// `device`, so the epoch's means cover the batches before a resume too: its own sums when
    /// the checkpoint holds one set per process of a run as large, else the added sums on rank 0
    /// alone (so the merged means count them once).
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn load_epoch_state_of(
        &mut self,
        state: &serde_json::Value,
        rank: usize,
        world: usize,
        device: &Device,
    ) -> Result<()> {
        match state.get(RANKS_KEY).and_then(|r| r.as_array()) {
            Some(ranks) if ranks.len() == world => self.load_epoch_state(&ranks[rank], device),
            _ if rank == 0 => self.load_epoch_state(state, device),
            _ => Ok(()),
        }
    }

    /// Restores sums saved by [`StepContext::epoch_state`] on `device` (the added sums of every
    /// process), so the epoch's means cover the batches before a resume too.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn load_epoch_state(&mut self, state: &serde_json::Value, device: &Device) -> Result<()> {
        let bad = || {
            Error::Invalid(format!(
                "epoch state: expected {{key: [sum, weight]}}, got {state}"
            ))
        };
        let map = state.as_object().ok_or_else(bad)?;
        for (key, entry) in map.iter().filter(|(k, _)| *k != RANKS_KEY) {
            let (sum, weight) = match entry.as_array().map(Vec::as_slice) {
                Some([s, w]) => (s.as_f64().ok_or_else(bad)?, w.as_f64().ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            // The sums are f32 on the device: the f64 round trip is exact.
            let sum = Tensor::new(sum as f32, device)?;
            self.epoch_sums
                .insert(key.clone(), EpochSum { sum, weight });
        }
        Ok(())
    }

    /// Clears the epoch accumulators and the step values.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn reset_epoch(&mut self) {
        self.epoch_sums.clear();
        self.epoch_host.clear();
        self.step_values.clear();
    }

    /// How many times this context has copied logged values to the host.
    #[doc(hidden)] // Called by the trainer, not by modules.
    pub fn host_syncs(&self) -> usize {
        self.host_syncs
    }
}
