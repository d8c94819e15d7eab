//! [`Trainer`]: the fit, validate, test and predict loops.
//!
//! # Hook order
//!
//! `fit` calls, in this order (callbacks in the order they were added; "monitoring" callbacks, such
//! as early stopping and checkpoints, after the others):
//!
//! ```text
//! datamodule.prepare_data, datamodule.setup(Fit), module.setup(Fit), module.configure_optimizers
//! on_fit_start
//! on_sanity_check_start                      (when num_sanity_val_steps > 0 and there are val sets)
//!   <validation loop, values discarded>
//! on_sanity_check_end
//! on_train_start
//! for each epoch:
//!   on_train_epoch_start, module.on_train_epoch_start
//!   for each batch:
//!     on_train_batch_start
//!     module.training_step, backward
//!     [every accumulate_grad_batches batches and at the epoch's last batch:
//!      gradient clipping, optimizer step, global_step += 1, step-interval scheduler]
//!     [every log_every_n_steps: logged step values copied to the host and sent to the loggers]
//!     on_train_batch_end
//!     [validation loop, when val_check_interval says so]
//!   [validation loop, every check_val_every_n_epoch epochs]
//!   module.on_train_epoch_end
//!   <epoch values copied to the host and sent to the loggers>
//!   epoch-interval scheduler (so checkpoints written next hold its stepped state)
//!   on_train_epoch_end
//!   <checkpoints asked for by callbacks written; loggers flushed>
//! on_train_end
//! on_fit_end
//! datamodule.teardown(Fit)
//!
//! validation loop:
//!   on_validation_start, on_validation_epoch_start, module.on_validation_epoch_start
//!   for each val set, each batch: module.validation_step, on_validation_batch_end
//!   module.on_validation_epoch_end
//!   <values copied to the host into callback_metrics>
//!   on_validation_epoch_end, on_validation_end
//! ```
//!
//! Unlike Lightning, the module's epoch-end hooks run *before* the callbacks' ones, so every callback
//! sees the complete values of the epoch (Lightning runs monitoring callbacks after the module for
//! the same reason, and the rest before it).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle::{Device, Tensor};

use lit_data::{DataLoader, DataLoaderConfig, DataModule, NamedLoader, Stage};
use lit_model::optim::Optimizer;
use lit_model::scheduler::{Interval, SchedulerConfig};
use lit_model::{HParams, LitModule, Optimization, RunningStage, StepContext};

use crate::checkpoint::{self, CheckpointMeta};
use crate::{
    rundir, Callback, CsvLogger, Error, Limit, Logger, Result, SingleDevice, Strategy,
    TrainerConfig, TrainerState,
};

/// Runs a module on a data module, as Lightning's `Trainer`.
pub struct Trainer {
    config: TrainerConfig,
    strategy: Box<dyn Strategy>,
    callbacks: Vec<Box<dyn Callback>>,
    loggers: Vec<Box<dyn Logger>>,
    loggers_started: bool,
    state: TrainerState,
    ckpt_path: Option<std::path::PathBuf>,
    /// Checkpoints this trainer wrote, the only ones it may delete.
    written: std::collections::HashSet<std::path::PathBuf>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where a resumed fit continues, and the epoch's logged sums up to there.
#[derive(Debug, Default)]
struct Resume {
    epoch: usize,
    batch: usize,
    epoch_logs: Option<serde_json::Value>,
}

fn train_loss_key(values: &BTreeMap<String, f64>) -> Option<(String, f64)> {
    values
        .iter()
        .find(|(k, _)| k.starts_with("train_loss"))
        .map(|(k, v)| (k.clone(), *v))
}

impl Trainer {
    /// A trainer with `config` on the device its accelerator names, logging `metrics.csv` unless
    /// `config.logger` is off.
    pub fn new(config: TrainerConfig) -> Result<Self> {
        let config = config.resolved()?;
        let device = config.accelerator.device(0)?;
        tracing::info!(device = ?device, "trainer device");
        let mut state = TrainerState::new(HParams::new(), config.max_epochs);
        state.fast_dev_run = config.fast_dev_run > 0;
        let loggers: Vec<Box<dyn Logger>> = if config.logger {
            vec![Box::new(CsvLogger::new())]
        } else {
            Vec::new()
        };
        Ok(Self {
            config,
            strategy: Box::new(SingleDevice::new(device)),
            callbacks: Vec::new(),
            loggers,
            loggers_started: false,
            state,
            ckpt_path: None,
            written: Default::default(),
        })
    }

    /// Adds a callback.
    pub fn with_callback(mut self, callback: impl Callback + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Adds a boxed callback.
    pub fn add_callback(&mut self, callback: Box<dyn Callback>) {
        self.callbacks.push(callback);
    }

    /// Adds a logger (used only when `config.logger` is on).
    pub fn with_logger(mut self, logger: impl Logger + 'static) -> Self {
        if self.config.logger {
            self.loggers.push(Box::new(logger));
        }
        self
    }

    /// Starts from a checkpoint: `fit` resumes it (weights, optimizer, schedule, callbacks, loop
    /// position), `validate`, `test` and `predict` load its weights. `fit` uses it once.
    pub fn with_ckpt_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ckpt_path = Some(path.into());
        self
    }

    /// Loads the weights of `path` into `module`, checking the model name and every tensor.
    fn load_weights<M: LitModule>(
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
    fn restore<M: LitModule>(
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
        let device = self.device().clone();
        let tensors = ck
            .optimizer
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&device)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let refuse = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "{message}; pass --ckpt-weights-only to start a new run from its weights"
            ),
        };
        if let Some(theirs) = ck.meta.optimizer_name.as_deref() {
            if theirs != optimizer.name() {
                return Err(refuse(format!(
                    "holds the state of optimizer {theirs}, this run uses {}",
                    optimizer.name()
                )));
            }
        }
        let saved_keys: Vec<String> = tensors.keys().cloned().collect();
        let meta = ck.meta.optimizer.clone().ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "holds no optimizer state, so {} cannot resume from it; pass \
                 --ckpt-weights-only to start a new run from its weights",
                optimizer.name()
            ),
        })?;
        optimizer
            .load_state(lit_model::optim::OptimizerState { tensors, meta })
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
        if let (Some(sc), Some(state)) = (scheduler, &ck.meta.scheduler) {
            sc.scheduler.load_state(state)?;
        }
        for cb in self.callbacks.iter_mut() {
            if let Some(state) = ck.meta.callbacks.get(&cb.state_key()) {
                cb.load_state_dict(state)?;
            }
        }
        self.state.global_step = ck.meta.global_step;
        self.state.learning_rate = Some((optimizer.name().to_string(), optimizer.learning_rate()));
        tracing::info!(
            epoch = ck.meta.resume_epoch,
            batch = ck.meta.resume_batch,
            step = ck.meta.global_step,
            "resuming"
        );
        Ok(Resume {
            epoch: ck.meta.resume_epoch,
            batch: ck.meta.resume_batch,
            epoch_logs: ck.meta.epoch_logs,
        })
    }

    /// Sets the hyperparameters saved with the run (merged with the module's own).
    pub fn with_hparams(mut self, hparams: HParams) -> Self {
        self.state.hparams = hparams;
        self
    }

    /// The device the trainer computes on.
    pub fn device(&self) -> &Device {
        self.strategy.device()
    }

    /// The trainer's resolved settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The run's progress and logged values.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The run directory, once a stage has created it.
    pub fn log_dir(&self) -> Option<&std::path::Path> {
        self.state.log_dir.as_deref()
    }

    fn each(
        &mut self,
        monitoring: Option<bool>,
        mut f: impl FnMut(&mut dyn Callback, &mut TrainerState) -> Result<()>,
    ) -> Result<()> {
        for cb in self.callbacks.iter_mut() {
            if monitoring.is_none_or(|m| cb.is_monitoring() == m) {
                f(cb.as_mut(), &mut self.state)?;
            }
        }
        Ok(())
    }

    fn callbacks(
        &mut self,
        f: impl FnMut(&mut dyn Callback, &mut TrainerState) -> Result<()>,
    ) -> Result<()> {
        self.each(None, f)
    }

    /// Ordinary callbacks first, monitoring ones last.
    fn callbacks_ordered(
        &mut self,
        mut f: impl FnMut(&mut dyn Callback, &mut TrainerState) -> Result<()>,
    ) -> Result<()> {
        self.each(Some(false), &mut f)?;
        self.each(Some(true), &mut f)
    }

    fn merge_hparams(&mut self, module_hparams: HParams) {
        self.state.hparams.merge_missing(&module_hparams);
    }

    fn start_run(&mut self, module_hparams: HParams) -> Result<()> {
        self.merge_hparams(module_hparams);
        if self.loggers_started || !self.config.logger || !self.strategy.is_global_zero() {
            return Ok(());
        }
        let dir = rundir::create_version_dir(&self.config.default_root_dir, &self.config.run_name)?;
        rundir::write_hparams(&dir, &self.state.hparams)?;
        for l in self.loggers.iter_mut() {
            l.start(&dir, &self.state.hparams)?;
        }
        tracing::info!(dir = %dir.display(), "run directory");
        self.state.log_dir = Some(dir);
        self.loggers_started = true;
        Ok(())
    }

    fn log(&mut self, values: &BTreeMap<String, f64>) -> Result<()> {
        if !self.loggers_started {
            return Ok(());
        }
        for l in self.loggers.iter_mut() {
            l.log_metrics(values, self.state.epoch, self.state.global_step)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for l in self.loggers.iter_mut() {
            l.flush()?;
        }
        Ok(())
    }

    fn finish<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            for cb in self.callbacks.iter_mut() {
                cb.on_exception(&mut self.state, e);
            }
        }
        let status = if result.is_ok() { "success" } else { "failed" };
        for l in self.loggers.iter_mut() {
            if let Err(e) = l.finalize(status) {
                tracing::warn!(logger = l.name(), "finalize: {e}");
            }
        }
        result
    }

    fn note_prog_bar(&mut self, ctx: &StepContext, keys: impl Iterator<Item = String>) {
        for k in keys {
            if ctx.is_prog_bar(&k) && !self.state.progress_bar_keys.contains(&k) {
                self.state.progress_bar_keys.push(k);
            }
        }
    }

    /// Sends values callbacks logged to the loggers and writes the checkpoints they asked for.
    fn service(
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
        if requests.is_empty() || !self.strategy.is_global_zero() {
            return Ok(());
        }
        let Some(varmap) = self.state.varmap.clone() else {
            return Ok(());
        };
        let callbacks: BTreeMap<String, serde_json::Value> = self
            .callbacks
            .iter()
            .filter_map(|c| c.state_dict().map(|s| (c.state_key(), s)))
            .collect();
        // Mid-epoch, the epoch's logged sums so far, so a resumed epoch logs the same means.
        let epoch_logs = match ctx {
            Some(ctx) if self.state.resume_point.1 > 0 => Some(ctx.epoch_state()?),
            _ => None,
        };
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
            self.state.last_checkpoint = Some(req.path);
        }
        Ok(())
    }

    /// Trains `module` on `datamodule`'s training set, validating on its validation sets.
    pub fn fit<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        datamodule: &mut D,
    ) -> Result<()> {
        let result = self.fit_inner(module, datamodule);
        self.finish(result)
    }

    fn fit_inner<M: LitModule, D: DataModule>(&mut self, module: &mut M, dm: &mut D) -> Result<()> {
        dm.prepare_data()?;
        dm.setup(Stage::Fit)?;
        module.setup(Stage::Fit)?;
        let mut train = dm.train_dataloader()?;
        if self.config.overfit_batches.is_some() {
            // Lightning turns shuffling off to overfit the same batches every epoch.
            let config = DataLoaderConfig {
                shuffle: false,
                ..train.config().clone()
            };
            train = DataLoader::new(Arc::clone(train.dataset()), config)?;
        }
        // limit_val_batches = 0 turns validation off, as if there were no validation sets (so
        // monitors of validation keys fail loudly rather than never acting).
        let vals = match self.config.limit_val_batches {
            Limit::Batches(0) => Vec::new(),
            _ => dm.val_dataloaders()?,
        };
        self.state.val_dataloader_names = vals.iter().map(|v| v.name.clone()).collect();
        self.state.varmap = Some(module.varmap().clone());
        self.merge_hparams(module.hparams());
        let Optimization {
            mut optimizer,
            mut scheduler,
        } = module.configure_optimizers()?;
        self.state.learning_rate = Some((optimizer.name().to_string(), optimizer.learning_rate()));
        // Restored before the run directory exists: a checkpoint that cannot be resumed leaves
        // no empty run behind.
        let resume = match self.ckpt_path.take() {
            Some(path) => self.restore(&path, module, optimizer.as_mut(), scheduler.as_mut())?,
            None => Resume::default(),
        };
        self.start_run(module.hparams())?;
        self.callbacks(|c, s| c.on_fit_start(s))?;

        if self.config.num_sanity_val_steps > 0 && !vals.is_empty() {
            self.state.stage = Some(RunningStage::SanityCheck);
            self.callbacks(|c, s| c.on_sanity_check_start(s))?;
            let limit = Limit::Batches(self.config.num_sanity_val_steps);
            let values = self.evaluate(module, &vals, RunningStage::SanityCheck, limit)?;
            self.state.sanity_keys = values.into_keys().collect();
            self.callbacks(|c, s| c.on_sanity_check_end(s))?;
        }

        let device = self.device().clone();
        let n_train = self.config.limit_train_batches.of(train.len());
        let val_every = self
            .config
            .val_check_interval
            .map(|l| l.of(n_train))
            .filter(|&k| k > 0);
        let log_every = self.config.log_every_n_steps;
        let accumulate = self.config.accumulate_grad_batches.max(1);
        let vars = module.varmap().all_vars();
        let mut accumulated: Option<candle::backprop::GradStore> = None;
        let mut ctx = StepContext::new(RunningStage::Train, Vec::new());
        self.callbacks(|c, s| c.on_train_start(s))?;
        let mut done = self.config.max_steps == Some(0);
        for epoch in resume.epoch..self.config.max_epochs {
            if done {
                break;
            }
            self.state.epoch = epoch;
            self.state.stage = Some(RunningStage::Train);
            self.state.num_batches = n_train;
            self.state.validation_ran = false;
            ctx.reset_epoch();
            let skip = if epoch == resume.epoch {
                resume.batch.min(n_train)
            } else {
                0
            };
            if skip > 0 {
                if let Some(logs) = &resume.epoch_logs {
                    ctx.load_epoch_state(logs, &device)?;
                }
            }
            self.state.resume_point = (epoch, skip);
            self.state.epoch_interrupted = false;
            self.callbacks(|c, s| c.on_train_epoch_start(s))?;
            module.on_train_epoch_start(&mut ctx)?;
            let validate_epoch = (epoch + 1).is_multiple_of(self.config.check_val_every_n_epoch);
            let batches = train.iter_from(epoch as u64, skip).take(n_train - skip);
            for (batch_idx, batch) in (skip..).zip(batches) {
                let batch = batch?.to_device(&device)?;
                self.state.batch_idx = batch_idx;
                self.state.batch_size = batch.len();
                self.callbacks(|c, s| c.on_train_batch_start(s, &batch, batch_idx))?;
                ctx.begin_batch(0, batch.len());
                let loss = module.training_step(&batch, batch_idx, &mut ctx)?;
                let grads = if accumulate > 1 {
                    loss.affine(1.0 / accumulate as f64, 0.0)?.backward()?
                } else {
                    loss.backward()?
                };
                match accumulated.as_mut() {
                    Some(acc) => acc.extend(grads)?,
                    None => accumulated = Some(grads),
                }
                let boundary =
                    (batch_idx + 1).is_multiple_of(accumulate) || batch_idx + 1 == n_train;
                if let Some(mut grads) = accumulated.take_if(|_| boundary) {
                    self.strategy.reduce_gradients(&mut grads)?;
                    crate::clip_gradients(&mut grads, &vars, self.config.gradient_clip)?;
                    optimizer.step(&grads)?;
                    drop(grads);
                    self.state.global_step += 1;
                    if let Some(sc) = scheduler.as_mut().filter(|s| s.interval == Interval::Step) {
                        if self
                            .state
                            .global_step
                            .is_multiple_of(sc.frequency.max(1) as u64)
                        {
                            optimizer.set_learning_rate(sc.scheduler.step(None));
                        }
                    }
                    if let Some(lr) = self.state.learning_rate.as_mut() {
                        lr.1 = optimizer.learning_rate();
                    }
                    if self.state.global_step.is_multiple_of(log_every) {
                        let (values, loss_value) = ctx.take_step_values_with(&loss)?;
                        self.check_finite(loss_value)?;
                        self.state.last_train_loss = Some(loss_value);
                        self.note_prog_bar(&ctx, values.keys().cloned());
                        self.state.callback_metrics.extend(values.clone());
                        self.log(&values)?;
                    } else {
                        ctx.drain_step_tensors();
                    }
                    if self
                        .config
                        .max_steps
                        .is_some_and(|m| self.state.global_step >= m)
                    {
                        // Set before the batch-end hooks, so a checkpoint callback sees the stop.
                        done = true;
                        self.state.should_stop = true;
                        self.state.stop_reason =
                            Some(format!("max_steps={} reached", self.state.global_step));
                    }
                }
                self.state.host_syncs = ctx.host_syncs();
                self.state.resume_point = (epoch, batch_idx + 1);
                self.callbacks_ordered(|c, s| c.on_train_batch_end(s, batch_idx))?;
                self.service(optimizer.as_ref(), scheduler.as_ref(), Some(&mut ctx))?;
                if validate_epoch && !vals.is_empty() {
                    if let Some(k) = val_every {
                        if (batch_idx + 1).is_multiple_of(k) && batch_idx + 1 < n_train {
                            let values = self.evaluate(
                                module,
                                &vals,
                                RunningStage::Validate,
                                self.config.limit_val_batches,
                            )?;
                            self.log(&values)?;
                            self.state.stage = Some(RunningStage::Train);
                            self.state.num_batches = n_train;
                        }
                    }
                }
                // A stop asked for within the epoch (max_time) ends it at this batch once no
                // accumulated gradients wait for their step, and once min_epochs epochs are done.
                let stop_here = self.state.should_stop
                    && accumulated.is_none()
                    && epoch >= self.config.min_epochs;
                if done || stop_here {
                    break;
                }
            }
            // Stopped before the epoch's last batch: the epoch is not over. Its validation, epoch
            // values and epoch-interval schedule wait for the resumed run to finish it; the
            // epoch-end hooks still run (flagged `epoch_interrupted`, so monitors skip it) so that
            // `last` is written, resuming at the next batch with the epoch's sums so far.
            let interrupted = self.state.resume_point.1 < n_train;
            self.state.epoch_interrupted = interrupted;
            if !interrupted {
                self.end_epoch(module, &vals, &mut ctx, validate_epoch)?;
                self.step_epoch_schedule(epoch, optimizer.as_mut(), scheduler.as_mut())?;
                self.state.resume_point = (epoch + 1, 0);
            }
            self.callbacks_ordered(|c, s| c.on_train_epoch_end(s))?;
            self.service(optimizer.as_ref(), scheduler.as_ref(), Some(&mut ctx))?;
            self.flush()?;

            if done {
                break;
            }
            if self.state.should_stop {
                if epoch + 1 >= self.config.min_epochs {
                    tracing::info!(
                        reason = self
                            .state
                            .stop_reason
                            .as_deref()
                            .unwrap_or("a callback asked"),
                        "stopping"
                    );
                    break;
                }
                tracing::info!(
                    min_epochs = self.config.min_epochs,
                    "a stop was asked for before min_epochs; training goes on"
                );
                self.state.should_stop = false;
                self.state.stop_reason = None;
            }
        }
        self.callbacks(|c, s| c.on_train_end(s))?;
        self.callbacks_ordered(|c, s| c.on_fit_end(s))?;
        self.service(optimizer.as_ref(), scheduler.as_ref(), None)?;
        self.flush()?;
        dm.teardown(Stage::Fit)?;
        Ok(())
    }

    /// The end of a complete training epoch: validation (when due), the epoch's values computed,
    /// checked for NaN and logged.
    fn end_epoch<M: LitModule>(
        &mut self,
        module: &mut M,
        vals: &[NamedLoader],
        ctx: &mut StepContext,
        validate_epoch: bool,
    ) -> Result<()> {
        let mut epoch_values = BTreeMap::new();
        if validate_epoch && !vals.is_empty() {
            epoch_values = self.evaluate(
                module,
                vals,
                RunningStage::Validate,
                self.config.limit_val_batches,
            )?;
            self.state.stage = Some(RunningStage::Train);
            self.state.validation_ran = true;
        }
        module.on_train_epoch_end(ctx)?;
        let train_values = ctx.epoch_values()?;
        self.state.host_syncs = ctx.host_syncs();
        if let Some((_, v)) = train_loss_key(&train_values) {
            self.check_finite(v)?;
        }
        self.note_prog_bar(ctx, train_values.keys().cloned());
        self.state.callback_metrics.extend(train_values.clone());
        epoch_values.extend(train_values);
        self.state.history.push(epoch_values.clone());
        self.log(&epoch_values)
    }

    /// Steps an epoch-interval schedule after `epoch`, on a fresh monitored value when it has a
    /// monitor (an epoch without validation is no plateau check).
    fn step_epoch_schedule(
        &mut self,
        epoch: usize,
        optimizer: &mut dyn Optimizer,
        scheduler: Option<&mut SchedulerConfig>,
    ) -> Result<()> {
        let Some(sc) = scheduler.filter(|s| s.interval == Interval::Epoch) else {
            return Ok(());
        };
        if !(epoch + 1).is_multiple_of(sc.frequency.max(1)) {
            return Ok(());
        }
        let metric = match &sc.monitor {
            Some(key) if !self.state.monitor_is_fresh(key) => return Ok(()),
            Some(key) => {
                Some(
                    self.state
                        .monitored(key)
                        .map_err(|available| Error::MissingMonitor {
                            who: format!("lr scheduler {}", sc.scheduler.name()),
                            key: key.clone(),
                            available,
                        })?,
                )
            }
            None => None,
        };
        optimizer.set_learning_rate(sc.scheduler.step(metric));
        if let Some(lr) = self.state.learning_rate.as_mut() {
            lr.1 = optimizer.learning_rate();
        }
        Ok(())
    }

    fn check_finite(&self, loss: f64) -> Result<()> {
        if loss.is_finite() {
            Ok(())
        } else {
            Err(Error::NonFiniteLoss {
                value: loss,
                epoch: self.state.epoch,
                step: self.state.global_step,
            })
        }
    }

    /// Runs the validation or test loop over `loaders`; returns the values logged.
    fn evaluate<M: LitModule>(
        &mut self,
        module: &mut M,
        loaders: &[NamedLoader],
        stage: RunningStage,
        limit: Limit,
    ) -> Result<BTreeMap<String, f64>> {
        let device = self.device().clone();
        let test = stage == RunningStage::Test;
        self.state.stage = Some(stage);
        let mut ctx = StepContext::new(stage, loaders.iter().map(|l| l.name.clone()).collect());
        if test {
            self.callbacks(|c, s| c.on_test_start(s))?;
            self.callbacks(|c, s| c.on_test_epoch_start(s))?;
            module.on_test_epoch_start(&mut ctx)?;
        } else {
            self.callbacks(|c, s| c.on_validation_start(s))?;
            self.callbacks(|c, s| c.on_validation_epoch_start(s))?;
            module.on_validation_epoch_start(&mut ctx)?;
        }
        for (idx, named) in loaders.iter().enumerate() {
            let n = limit.of(named.loader.len());
            self.state.dataloader_name = Some(named.name.clone());
            self.state.num_batches = n;
            for (batch_idx, batch) in named.loader.iter(0).take(n).enumerate() {
                let batch = batch?.to_device(&device)?;
                self.state.batch_idx = batch_idx;
                self.state.batch_size = batch.len();
                ctx.begin_batch(idx, batch.len());
                if test {
                    module.test_step(&batch, batch_idx, &mut ctx)?;
                    self.callbacks(|c, s| c.on_test_batch_end(s, idx, batch_idx))?;
                } else {
                    module.validation_step(&batch, batch_idx, &mut ctx)?;
                    self.callbacks(|c, s| c.on_validation_batch_end(s, idx, batch_idx))?;
                }
            }
        }
        self.state.dataloader_name = None;
        if test {
            module.on_test_epoch_end(&mut ctx)?;
        } else {
            module.on_validation_epoch_end(&mut ctx)?;
        }
        let values = ctx.epoch_values()?;
        self.state.host_syncs += ctx.host_syncs();
        if stage != RunningStage::SanityCheck {
            self.note_prog_bar(&ctx, values.keys().cloned());
            self.state.callback_metrics.extend(values.clone());
        }
        if test {
            self.callbacks_ordered(|c, s| c.on_test_epoch_end(s))?;
            self.callbacks_ordered(|c, s| c.on_test_end(s))?;
        } else {
            self.callbacks_ordered(|c, s| c.on_validation_epoch_end(s))?;
            self.callbacks_ordered(|c, s| c.on_validation_end(s))?;
        }
        Ok(values)
    }

    /// Runs one validation epoch; returns the logged values.
    pub fn validate<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<BTreeMap<String, f64>> {
        let result = (|| {
            dm.prepare_data()?;
            dm.setup(Stage::Validate)?;
            module.setup(Stage::Validate)?;
            if let Some(path) = self.ckpt_path.clone() {
                self.load_weights(&path, module)?;
            }
            let vals = dm.val_dataloaders()?;
            self.start_run(module.hparams())?;
            let values = self.evaluate(
                module,
                &vals,
                RunningStage::Validate,
                self.config.limit_val_batches,
            )?;
            self.log(&values)?;
            self.flush()?;
            dm.teardown(Stage::Validate)?;
            Ok(values)
        })();
        self.finish(result)
    }

    /// Runs the test sets once; returns the logged values (`test_acc/<set>`, ...).
    pub fn test<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<BTreeMap<String, f64>> {
        let result = (|| {
            dm.prepare_data()?;
            dm.setup(Stage::Test)?;
            module.setup(Stage::Test)?;
            if let Some(path) = self.ckpt_path.clone() {
                self.load_weights(&path, module)?;
            }
            let tests = dm.test_dataloaders()?;
            if tests.is_empty() {
                return Err(Error::Config(
                    "test: the data module has no test sets".into(),
                ));
            }
            self.start_run(module.hparams())?;
            let values = self.evaluate(
                module,
                &tests,
                RunningStage::Test,
                self.config.limit_test_batches,
            )?;
            self.log(&values)?;
            self.flush()?;
            dm.teardown(Stage::Test)?;
            Ok(values)
        })();
        self.finish(result)
    }

    /// Runs `predict_step` over the prediction sets; returns each set's outputs concatenated.
    pub fn predict<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<Vec<(String, Tensor)>> {
        let result = (|| {
            dm.prepare_data()?;
            dm.setup(Stage::Predict)?;
            module.setup(Stage::Predict)?;
            if let Some(path) = self.ckpt_path.clone() {
                self.load_weights(&path, module)?;
            }
            self.start_run(module.hparams())?;
            let device = self.device().clone();
            self.state.stage = Some(RunningStage::Predict);
            self.callbacks(|c, s| c.on_predict_start(s))?;
            let mut out = Vec::new();
            for (idx, named) in dm.predict_dataloaders()?.iter().enumerate() {
                let n = self.config.limit_predict_batches.of(named.loader.len());
                self.state.num_batches = n;
                self.state.dataloader_name = Some(named.name.clone());
                let mut parts = Vec::with_capacity(n);
                for (batch_idx, batch) in named.loader.iter(0).take(n).enumerate() {
                    let batch = batch?.to_device(&device)?;
                    self.state.batch_idx = batch_idx;
                    self.state.batch_size = batch.len();
                    parts.push(module.predict_step(&batch, batch_idx)?.detach());
                    self.callbacks(|c, s| c.on_predict_batch_end(s, idx, batch_idx))?;
                }
                if !parts.is_empty() {
                    out.push((named.name.clone(), Tensor::cat(&parts, 0)?));
                }
            }
            self.callbacks(|c, s| c.on_predict_end(s))?;
            dm.teardown(Stage::Predict)?;
            Ok(out)
        })();
        self.finish(result)
    }
}
