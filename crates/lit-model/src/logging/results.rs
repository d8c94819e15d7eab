//! [`LoggedResults`]: how the trainer drives a [`StepContext`] and reads back what a step logged
//! (Lightning's internal result collection). Modules do not call these; they are a trait of their
//! own, outside the prelude, so a module's `ctx.` lists only what a step uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle::{DType, Device, Tensor};
use lit_base::Collective;

use super::{EpochSum, StepContext};
use crate::sums::{merge_sums, sums_json, to_host, RANKS_KEY};
use crate::{Error, Result};

/// The trainer's side of a [`StepContext`]: the batch about to be stepped, the values logged on
/// it, the epoch's means and their state in a checkpoint.
pub trait LoggedResults {
    /// The same context in a data-parallel run: epoch means and metrics are merged over every
    /// process of `collective` before they are logged.
    fn with_collective(self, collective: Option<Arc<dyn Collective>>) -> Self
    where
        Self: Sized;

    /// Sets the loader and the size of the batch about to be stepped (the trainer calls this).
    fn begin_batch(&mut self, dataloader_idx: usize, batch_size: usize);

    /// Every key logged so far in this epoch (step and epoch keys, read without a host copy),
    /// with the base names of `_step`/`_epoch` pairs.
    fn logged_keys(&self) -> Vec<String>;

    /// Whether `key` is shown in the progress display.
    fn is_prog_bar(&self, key: &str) -> bool;

    /// The values logged on this step, still on the device, without copying; cleared.
    fn drain_step_tensors(&mut self) -> BTreeMap<String, Tensor>;

    /// The values logged on this step, copied to the host (one sync); cleared.
    fn take_step_values(&mut self) -> Result<BTreeMap<String, f64>>;

    /// The values logged on this step and `extra` (the loss), copied to the host together in one
    /// sync; the step values are cleared.
    fn take_step_values_with(&mut self, extra: &Tensor) -> Result<(BTreeMap<String, f64>, f64)>;

    /// The epoch means of everything logged since the last reset, copied to the host (one sync).
    /// In a data-parallel run the sums and weights of every process are added first, so a mean
    /// covers the whole epoch's data.
    fn epoch_values(&mut self) -> Result<BTreeMap<String, f64>>;

    /// The epoch's logged sums and weights so far, on the host (one copy), for a mid-epoch
    /// checkpoint: `{"key": [sum, weight], ...}`; in a data-parallel run added over every
    /// process (all of them call this together), with each process's own sums under
    /// `__ranks__`, so a resume on as many processes continues each one's sums exactly.
    fn epoch_state(&mut self) -> Result<serde_json::Value>;

    /// Restores the sums of process `rank` of `world` saved by [`StepContext::epoch_state`] on
    /// `device`, so the epoch's means cover the batches before a resume too: its own sums when
    /// the checkpoint holds one set per process of a run as large, else the added sums on rank 0
    /// alone (so the merged means count them once).
    fn load_epoch_state_of(
        &mut self,
        state: &serde_json::Value,
        rank: usize,
        world: usize,
        device: &Device,
    ) -> Result<()>;

    /// Restores sums saved by [`StepContext::epoch_state`] on `device` (the added sums of every
    /// process), so the epoch's means cover the batches before a resume too.
    fn load_epoch_state(&mut self, state: &serde_json::Value, device: &Device) -> Result<()>;

    /// Clears the epoch accumulators and the step values.
    fn reset_epoch(&mut self);

    /// How many times this context has copied logged values to the host.
    fn host_syncs(&self) -> usize;
}

impl LoggedResults for StepContext {
    fn with_collective(mut self, collective: Option<Arc<dyn Collective>>) -> Self
    where
        Self: Sized,
    {
        self.collective = collective.filter(|c| c.world_size() > 1);
        self
    }

    fn begin_batch(&mut self, dataloader_idx: usize, batch_size: usize) {
        self.dataloader_idx = dataloader_idx;
        self.batch_size = batch_size;
    }

    fn logged_keys(&self) -> Vec<String> {
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

    fn is_prog_bar(&self, key: &str) -> bool {
        self.prog_bar.contains(key)
    }

    fn drain_step_tensors(&mut self) -> BTreeMap<String, Tensor> {
        std::mem::take(&mut self.step_values)
    }

    fn take_step_values(&mut self) -> Result<BTreeMap<String, f64>> {
        let tensors = self.drain_step_tensors();
        to_host(&tensors, &mut self.host_syncs)
    }

    fn take_step_values_with(&mut self, extra: &Tensor) -> Result<(BTreeMap<String, f64>, f64)> {
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

    fn epoch_values(&mut self) -> Result<BTreeMap<String, f64>> {
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

    fn epoch_state(&mut self) -> Result<serde_json::Value> {
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

    fn load_epoch_state_of(
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

    fn load_epoch_state(&mut self, state: &serde_json::Value, device: &Device) -> Result<()> {
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

    fn reset_epoch(&mut self) {
        self.epoch_sums.clear();
        self.epoch_host.clear();
        self.step_values.clear();
    }

    fn host_syncs(&self) -> usize {
        self.host_syncs
    }
}

impl StepContext {
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
}
