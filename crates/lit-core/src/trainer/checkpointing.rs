//! Checkpoints in the fit loop: restoring a run from one, and writing those callbacks ask for.

use lit_model::LoggedResults;
use std::collections::BTreeMap;

use lit_model::optim::Optimizer;
use lit_model::scheduler::SchedulerConfig;
use lit_model::{LitModule, StepContext};

use super::Trainer;
use crate::checkpoint::{self, CheckpointMeta};
use crate::{Error, Result};

/// Where a resumed fit continues, and the epoch's logged sums up to there.
#[derive(Debug, Default)]
pub(super) struct Resume {
    pub(super) epoch: usize,
    pub(super) batch: usize,
    pub(super) epoch_logs: Option<serde_json::Value>,
}

impl Trainer {
    /// Loads the weights of `path` into `module`, checking the model name and every tensor.
    pub(super) fn load_weights<M: LitModule>(
        &self,
        path: &std::path::Path,
        module: &M,
    ) -> Result<checkpoint::Checkpoint> {
        let ck = checkpoint::load(path)?;
        let ours: Option<String> = self.state.hparams.get("model_name").ok().flatten();
        if let (Some(theirs), Some(ours)) = (&ck.meta.model_name, &ours) {
            if theirs != ours {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    message: format!("was written by model '{theirs}', this run builds '{ours}'"),
                });
            }
        }
        checkpoint::load_weights(path, module.varmap(), &ck.weights)?;
        tracing::info!(path = %path.display(), "weights loaded");
        Ok(ck)
    }

    /// Restores everything `fit` needs from `path`; returns the (epoch, batch) to continue at.
    pub(super) fn restore<M: LitModule>(
        &mut self,
        path: &std::path::Path,
        module: &M,
        optimizer: &mut dyn Optimizer,
        scheduler: Option<&mut SchedulerConfig>,
    ) -> Result<Resume> {
        let ck = self.load_weights(path, module)?;
        if ck.meta.weights_only || self.config.ckpt_weights_only {
            tracing::warn!(path = %path.display(), "weights only: training starts at epoch 0 from these weights");
            return Ok(Resume::default());
        }
        self.restore_optimizer(path, optimizer, ck.optimizer, &ck.meta)?;
        if let Some(state) = &ck.meta.precision {
            self.precision.load_state(state)?;
        }
        if let (Some(sc), Some(state)) = (scheduler, &ck.meta.scheduler) {
            sc.scheduler.load_state(state)?;
        }
        for cb in self.callbacks.iter_mut() {
            if let Some(state) = ck.meta.callbacks.get(&cb.state_key()) {
                cb.load_state_dict(state)?;
            }
        }
        self.check_position(path, &ck.meta)?;
        self.state.global_step = ck.meta.global_step;
        tracing::info!(
            epoch = ck.meta.resume_epoch,
            batch = ck.meta.resume_batch,
            step = ck.meta.global_step,
            "resuming"
        );
        let batch = self.resume_batch(path, &ck.meta)?;
        // The epoch's sums so far: each process's own on as many processes, else the added
        // sums on rank 0 alone (`StepContext::load_epoch_state_of` decides).
        let epoch_logs = ck.meta.epoch_logs;
        Ok(Resume {
            epoch: ck.meta.resume_epoch,
            batch,
            epoch_logs,
        })
    }

    /// Refuses a checkpoint whose place in the run cannot be: counts no run reaches, epoch
    /// sums that do not parse, an epoch past `max_epochs` (one at it has nothing left to train,
    /// which is said, as Lightning's "max_epochs reached").
    fn check_position(&self, path: &std::path::Path, meta: &CheckpointMeta) -> Result<()> {
        let refuse = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        // 2^53 steps at a million a second take 285 years.
        const MOST: u64 = 1 << 53;
        if meta.global_step > MOST || meta.resume_epoch as u64 > MOST {
            return Err(refuse(format!(
                "global_step {} at epoch {} is more than any run takes; the file is damaged",
                meta.global_step, meta.resume_epoch
            )));
        }
        if let Some(logs) = &meta.epoch_logs {
            StepContext::new(lit_model::RunningStage::Train, Vec::new())
                .load_epoch_state(logs, &candle::Device::Cpu)
                .map_err(|e| refuse(format!("its epoch sums (epoch_logs) do not parse: {e}")))?;
        }
        let max = self.config.max_epochs;
        if meta.resume_epoch > max {
            return Err(refuse(format!(
                "continues at epoch {}, beyond max_epochs = {max}: raise --max-epochs to train \
                 on, or test it with `test --ckpt-path`",
                meta.resume_epoch
            )));
        }
        if meta.resume_epoch == max && meta.resume_batch == 0 {
            tracing::info!(target: crate::REPORT_TARGET,
                "max_epochs={max} reached: the checkpoint has trained every epoch, nothing is left \
                 to train (raise --max-epochs to go on)");
        }
        Ok(())
    }

    /// The batch of the checkpoint's epoch to continue at. Each process counts its own batches
    /// of `batch_size` examples, and the shards interleave, so the checkpoint's run trained the
    /// first `resume_batch x batch_size x world_size` examples of the epoch's order; this run
    /// continues at the same example, which needs its own batches x processes to divide that.
    fn resume_batch(&self, path: &std::path::Path, meta: &CheckpointMeta) -> Result<usize> {
        let (saved_world, world) = (meta.world_size.max(1), self.strategy.world_size());
        let batch = meta.resume_batch;
        let saved_size = if meta.batch_size > 0 {
            meta.batch_size
        } else {
            // Older files: the run's own hyperparameter, if it had one.
            meta.hparams
                .get::<usize>("batch_size")
                .ok()
                .flatten()
                .unwrap_or(self.train_batch_size)
        };
        let size = self.train_batch_size.max(1);
        if batch == 0 || (saved_world == world && saved_size == size) {
            return Ok(batch);
        }
        let done = batch
            .checked_mul(saved_size)
            .and_then(|n| n.checked_mul(saved_world))
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "resume_batch {batch} x batch_size {saved_size} x world_size {saved_world} \
                     is more examples than any epoch has; the file is damaged"
                ),
            })?;
        let per_batch = size * world;
        if !done.is_multiple_of(per_batch) {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "stopped inside epoch {} after {done} examples ({batch} batches of \
                     {saved_size} on {saved_world} process(es)); this run's batches of {size} on \
                     {world} process(es) take {per_batch} examples a step, which does not divide \
                     {done}, so it cannot continue at the same example: resume with --batch-size \
                     {saved_size} and {saved_world} process(es), or with a batch size x processes \
                     that divides {done}",
                    meta.resume_epoch
                ),
            });
        }
        let resumed = done / per_batch;
        tracing::info!(
            "the checkpoint trained {done} examples of its epoch in batches of {saved_size} on \
             {saved_world} process(es); this run continues at the same example, batch {resumed} \
             of {size} on {world}"
        );
        Ok(resumed)
    }

    /// Whether rank 0 has checkpoints to write, known to every process of a data-parallel run
    /// (`mine` on one process).
    pub(super) fn rank0_writes(&self, mine: bool) -> Result<bool> {
        self.strategy
            .reduce_any(self.strategy.is_global_zero() && mine)
    }

    /// Loads a checkpoint's optimizer state into `optimizer`, refusing another optimizer's
    /// state, a missing one, or one with tensors this optimizer does not take.
    fn restore_optimizer(
        &self,
        path: &std::path::Path,
        optimizer: &mut dyn Optimizer,
        saved: BTreeMap<String, candle::Tensor>,
        meta: &CheckpointMeta,
    ) -> Result<()> {
        let device = self.device().clone();
        let tensors = saved
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&device)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let refuse = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "{message}; pass --ckpt-weights-only to start a new run from its weights"
            ),
        };
        if let Some(theirs) = meta.optimizer_name.as_deref() {
            if theirs != optimizer.name() {
                return Err(refuse(format!(
                    "holds the state of optimizer {theirs}, this run uses {}",
                    optimizer.name()
                )));
            }
        }
        let saved_keys: Vec<String> = tensors.keys().cloned().collect();
        let state = meta.optimizer.clone().ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "holds no optimizer state, so {} cannot resume from it; pass \
                 --ckpt-weights-only to start a new run from its weights",
                optimizer.name()
            ),
        })?;
        optimizer
            .load_state(lit_model::optim::OptimizerState {
                tensors,
                meta: state,
            })
            .map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "its optimizer state does not fit this run's {}: {e}; pass \
                     --ckpt-weights-only to start a new run from its weights",
                    optimizer.name()
                ),
            })?;
        // Every saved state tensor must have been taken: a lenient loader would otherwise drop
        // another optimizer's state without a word.
        let taken: Vec<String> = optimizer.state().tensors.into_keys().collect();
        if let Some(unused) = saved_keys.iter().find(|k| !taken.contains(k)) {
            return Err(refuse(format!(
                "its optimizer state tensor '{unused}' does not belong to this run's {}",
                optimizer.name()
            )));
        }
        Ok(())
    }

    /// Sends values callbacks logged to the loggers and writes the checkpoints they asked for.
    pub(super) fn service(
        &mut self,
        optimizer: &dyn Optimizer,
        scheduler: Option<&SchedulerConfig>,
        ctx: Option<&mut StepContext>,
    ) -> Result<()> {
        if !self.state.pending_logs.is_empty() {
            let values = std::mem::take(&mut self.state.pending_logs);
            self.log(&values)?;
        }
        self.written.extend(self.state.adopted.drain(..));
        let requests = std::mem::take(&mut self.state.checkpoint_requests);
        // Mid-epoch, the epoch's logged sums so far, so a resumed epoch logs the same means. In a
        // data-parallel run they are merged over every process, all of which reach this point at
        // the same (interrupted) epoch end; they agree first on whether rank 0, the one that
        // writes, has anything to write, as their callbacks may have decided differently.
        let epoch_logs = match ctx {
            Some(ctx)
                if self.state.resume_point.1 > 0 && self.rank0_writes(!requests.is_empty())? =>
            {
                Some(ctx.epoch_state()?)
            }
            _ => None,
        };
        if requests.is_empty() || !self.strategy.is_global_zero() {
            return Ok(());
        }
        let Some(varmap) = self.state.varmap.clone() else {
            return Ok(());
        };
        self.check_weights()?;
        let callbacks: BTreeMap<String, serde_json::Value> = self
            .callbacks
            .iter()
            .filter_map(|c| c.state_dict().map(|s| (c.state_key(), s)))
            .collect();
        for req in requests {
            let meta = CheckpointMeta {
                lit_version: env!("CARGO_PKG_VERSION").to_string(),
                model_name: self.state.hparams.get("model_name").ok().flatten(),
                weights_only: req.weights_only,
                resume_epoch: self.state.resume_point.0,
                resume_batch: self.state.resume_point.1,
                global_step: self.state.global_step,
                optimizer: None,
                optimizer_name: Some(optimizer.name().to_string()),
                scheduler: scheduler.map(|s| s.scheduler.state()),
                callbacks: callbacks.clone(),
                monitor: req.monitor.clone(),
                monitor_higher_is_better: req.higher_is_better,
                hparams: self.state.hparams.clone(),
                epoch_logs: epoch_logs.clone(),
                precision: self.precision.state(),
                world_size: self.strategy.world_size(),
                batch_size: self.train_batch_size,
            };
            checkpoint::save(&req.path, &varmap, Some(&optimizer.state()), &meta)?;
            tracing::debug!(path = %req.path.display(), "checkpoint written");
            self.written.insert(req.path.clone());
            for old in &req.remove {
                // Only files this fit wrote: a resumed run never deletes another run's files.
                if !self.written.contains(old) {
                    tracing::warn!(path = %old.display(), "not deleting a checkpoint this run did not write");
                } else if old != &req.path {
                    self.written.remove(old);
                    match std::fs::remove_file(old) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(old, e)),
                    }
                }
            }
            // Only a full `last` is what a signal's stop needs to resume from.
            if !req.weights_only && req.path.ends_with("last.safetensors") {
                self.written_at = Some(self.state.resume_point);
            }
            self.state.last_checkpoint = Some(req.path);
        }
        Ok(())
    }
}
