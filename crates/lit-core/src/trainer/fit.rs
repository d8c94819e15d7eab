//! The fit loop (epochs) and the training epoch loop (batches), as Lightning's `fit_loop` and
//! `training_epoch_loop`; the optimization step is [`OptimizationStep`].

use lit_model::LoggedResults;
use std::collections::BTreeMap;

use candle::Device;
use lit_data::{Batch, DataLoader, DataModule, NamedLoader, Stage};
use lit_model::{LitModule, Optimization, RunningStage, StepContext};

use super::checkpointing::Resume;
use super::optimization::OptimizationStep;
use super::Trainer;
use crate::{Error, Limit, Result};

/// What the fit loop carries from epoch to epoch.
pub(super) struct FitRun {
    pub(super) train: DataLoader,
    pub(super) vals: Vec<NamedLoader>,
    /// Training batches per epoch, after limits.
    pub(super) n_train: usize,
    /// Validate every this many batches within an epoch (`val_check_interval`).
    pub(super) val_every: Option<usize>,
    pub(super) opt: OptimizationStep,
    pub(super) ctx: StepContext,
    pub(super) resume: Resume,
    pub(super) device: Device,
    /// `max_steps` reached.
    pub(super) done: bool,
}

fn train_loss_key(values: &BTreeMap<String, f64>) -> Option<(String, f64)> {
    values
        .iter()
        .find(|(k, _)| k.starts_with("train_loss"))
        .map(|(k, v)| (k.clone(), *v))
}

impl Trainer {
    /// Trains `module` on `datamodule`'s training set, validating on its validation sets.
    pub fn fit<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        datamodule: &mut D,
    ) -> Result<()> {
        self.signals = self.config.handle_signals.then(crate::SignalGuard::arm);
        self.state.signal = None;
        let result = self.fit_inner(module, datamodule);
        // A signal after the loop's last look still means the job is being stopped.
        self.check_signal();
        let result = result.and_then(|()| match self.state.signal {
            Some(signal) => Err(Error::Interrupted {
                signal,
                checkpoint: self.state.last_checkpoint.clone(),
            }),
            None => Ok(()),
        });
        let result = self.finish(result);
        self.signals = None;
        result
    }

    /// Trains `module` on plain loaders: `train`, validating on `val` (named loaders; may be
    /// empty), without writing a data module.
    pub fn fit_loaders<M: LitModule>(
        &mut self,
        module: &mut M,
        train: DataLoader,
        val: Vec<NamedLoader>,
    ) -> Result<()> {
        let mut loaders = lit_data::Loaders {
            train: Some(train),
            val,
            test: Vec::new(),
        };
        self.fit(module, &mut loaders)
    }

    fn fit_inner<M: LitModule, D: DataModule>(&mut self, module: &mut M, dm: &mut D) -> Result<()> {
        let mut run = self.setup_fit(module, dm)?;
        self.callbacks(|c, s| c.on_train_start(s))?;
        for epoch in run.resume.epoch..self.config.max_epochs {
            if run.done {
                break;
            }
            self.train_epoch(module, &mut run, epoch)?;
            // Epoch-end callbacks may stop on values one process sees differently (step keys);
            // a signal may have come during the epoch's validation.
            self.check_signal();
            self.agree_on_stop()?;
            self.checkpoint_on_signal(&mut run)?;
            if run.done || self.stop_after_epoch(epoch) {
                break;
            }
        }
        self.callbacks(|c, s| c.on_train_end(s))?;
        self.callbacks_ordered(|c, s| c.on_fit_end(s))?;
        self.service_run(&mut run, false)?;
        self.flush()?;
        dm.teardown(Stage::Fit)?;
        Ok(())
    }

    /// Lightning's sanity check: a few validation batches before training, whose keys monitors
    /// may check before the first epoch ends (their values are discarded).
    fn sanity_check<M: LitModule>(&mut self, module: &mut M, vals: &[NamedLoader]) -> Result<()> {
        if self.config.num_sanity_val_steps == 0 || vals.is_empty() {
            return Ok(());
        }
        self.state.stage = Some(RunningStage::SanityCheck);
        self.callbacks(|c, s| c.on_sanity_check_start(s))?;
        let limit = Limit::Batches(self.config.num_sanity_val_steps);
        let values = self.evaluate(module, vals, RunningStage::SanityCheck, limit)?;
        self.state.sanity_keys = values.into_keys().collect();
        self.callbacks(|c, s| c.on_sanity_check_end(s))
    }

    /// Loaders, optimizer, restored state, run directory, `on_fit_start` and the sanity check.
    fn setup_fit<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<FitRun> {
        let (train, vals, n_train) = self.setup_loaders(module, dm)?;
        self.train_batch_size = train.config().batch_size;
        self.state.train_keys.clear();
        self.written_at = None;
        self.state.val_dataloader_names = vals.iter().map(|v| v.name.clone()).collect();
        self.state.varmap = Some(module.varmap().clone());
        self.merge_hparams(module.hparams());
        let Optimization {
            mut optimizer,
            mut scheduler,
        } = module.configure_optimizers()?;
        self.check_world()?;
        self.check_param_dtype(module)?;
        // A fit starts from the precision's initial state (a fresh loss scale) unless the
        // checkpoint restores one. Restored before the run directory exists: a checkpoint that
        // cannot be resumed leaves no empty run behind.
        self.precision.reset();
        self.resumed_from = None;
        let resume = match self.ckpt_path.take() {
            Some(path) => {
                let resume = self.restore(&path, module, optimizer.as_mut(), scheduler.as_mut())?;
                self.resumed_from = Some((path, self.state.global_step));
                resume
            }
            None => Resume::default(),
        };
        if resume.epoch == 0 && resume.batch == 0 {
            // A fresh schedule starts where it says (a warmup's first rate, one-cycle's lowest),
            // not at the optimizer's base rate.
            if let Some(sc) = &scheduler {
                optimizer.set_learning_rate(sc.scheduler.lr());
            }
        }
        // The state reads the optimizer's own rate through a shared handle: no copy to sync.
        self.state.learning_rate = Some((optimizer.name().to_string(), optimizer.lr().clone()));
        self.start_run(module.hparams())?;
        self.callbacks(|c, s| c.on_fit_start(s))?;
        self.sanity_check(module, &vals)?;
        let opt = OptimizationStep::new(
            optimizer,
            scheduler,
            // Sorted by name: a VarMap's order differs between processes, and the gradient
            // all-reduce lays every process's buffer out in this order.
            (
                lit_model::optim::named_params(module.varmap())
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect(),
                lit_model::optim::named_buffers(module.varmap())
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect(),
            ),
            self.config.accumulate_grad_batches,
            self.config.gradient_clip,
        );
        Ok(FitRun {
            train,
            vals,
            n_train,
            val_every: self
                .config
                .val_check_interval
                .map(|l| l.of(n_train))
                .filter(|&k| k > 0),
            opt,
            ctx: self.strategy.step_context(RunningStage::Train, Vec::new()),
            resume,
            device: self.device().clone(),
            done: self.config.max_steps == Some(0),
        })
    }

    /// One training epoch: its batches, then its end (or, when stopped before its last batch,
    /// the hooks that write `last` to resume inside it).
    fn train_epoch<M: LitModule>(
        &mut self,
        module: &mut M,
        run: &mut FitRun,
        epoch: usize,
    ) -> Result<()> {
        self.state.epoch = epoch;
        self.state.stage = Some(RunningStage::Train);
        self.state.num_batches = run.n_train;
        self.state.validation_ran = false;
        run.ctx.reset_epoch();
        let skip = if epoch == run.resume.epoch {
            run.resume.batch.min(run.n_train)
        } else {
            0
        };
        if skip > 0 {
            if let Some(logs) = &run.resume.epoch_logs {
                let (rank, world) = (self.strategy.rank(), self.strategy.world_size());
                run.ctx
                    .load_epoch_state_of(logs, rank, world, &run.device)?;
            }
        }
        self.state.resume_point = (epoch, skip);
        self.state.epoch_interrupted = false;
        self.callbacks(|c, s| c.on_train_epoch_start(s))?;
        self.service_run(run, false)?;
        module.on_train_epoch_start(&mut run.ctx)?;
        let validate_epoch = (epoch + 1).is_multiple_of(self.config.check_val_every_n_epoch);
        let batches = run
            .train
            .iter_from(epoch as u64, skip)
            .take(run.n_train - skip);
        for (batch_idx, batch) in (skip..).zip(batches) {
            let batch = self.prepare_batch(batch?)?;
            self.train_batch(module, run, epoch, batch_idx, &batch)?;
            if validate_epoch {
                self.validate_within_epoch(module, run, batch_idx)?;
            }
            // A stop asked for within the epoch (max_time, a signal) ends it at this batch once
            // no accumulated gradients wait for their step, and once min_epochs epochs are done
            // (a signal does not wait for those).
            self.check_signal();
            self.agree_on_stop()?;
            let stop_here = self.state.should_stop
                && !run.opt.is_pending()
                && (epoch >= self.config.min_epochs || self.state.signal.is_some());
            if run.done || stop_here {
                break;
            }
        }
        // Stopped before the epoch's last batch: the epoch is not over. Its validation, epoch
        // values and epoch-interval schedule wait for the resumed run to finish it; the epoch-end
        // hooks still run (flagged `epoch_interrupted`, so monitors skip it) so that `last` is
        // written, resuming at the next batch with the epoch's sums so far.
        let interrupted = self.state.resume_point.1 < run.n_train;
        self.state.epoch_interrupted = interrupted;
        if interrupted {
            self.log_partial_epoch(&mut run.ctx)?;
        } else {
            self.end_epoch(module, &run.vals, &mut run.ctx, validate_epoch)?;
            self.step_epoch_schedule(epoch, &mut run.opt)?;
            self.state.resume_point = (epoch + 1, 0);
        }
        self.callbacks_ordered(|c, s| c.on_train_epoch_end(s))?;
        self.service_run(run, true)?;
        self.flush()
    }

    /// One training batch: the step hooks, the training step, backward and (at an accumulation
    /// boundary) the optimization step, step logging and `max_steps`.
    fn train_batch<M: LitModule>(
        &mut self,
        module: &mut M,
        run: &mut FitRun,
        epoch: usize,
        batch_idx: usize,
        batch: &Batch,
    ) -> Result<()> {
        self.state.batch_idx = batch_idx;
        self.state.batch_size = batch.len();
        self.callbacks(|c, s| c.on_train_batch_start(s, batch, batch_idx))?;
        self.service_run(run, false)?;
        run.ctx.begin_batch(0, batch.len());
        // Random layers (dropout) draw from the step's stream: seed, epoch, batch and process.
        let step = [epoch as u64, batch_idx as u64, self.strategy.rank() as u64];
        lit_base::set_step(Some((self.config.seed, &step)));
        let loss = module.training_step(batch, batch_idx, &mut run.ctx);
        lit_base::set_step(None);
        let loss = loss?;
        run.opt.backward(&loss, self.precision.as_mut())?;
        if run.opt.is_boundary(batch_idx, run.n_train) {
            run.opt.step(
                self.strategy.as_ref(),
                self.precision.as_mut(),
                &mut self.state.global_step,
            )?;
            if self
                .state
                .global_step
                .is_multiple_of(self.config.log_every_n_steps)
            {
                let (values, loss_value) = run.ctx.take_step_values_with(&loss)?;
                self.check_finite(loss_value)?;
                self.check_weights()?;
                self.state.last_train_loss = Some(loss_value);
                self.note_prog_bar(&run.ctx, values.keys().cloned());
                self.state.callback_metrics.extend(values.clone());
                self.log(&values)?;
            } else {
                run.ctx.drain_step_tensors();
            }
            if self
                .config
                .max_steps
                .is_some_and(|m| self.state.global_step >= m)
            {
                // Set before the batch-end hooks, so a checkpoint callback sees the stop.
                run.done = true;
                self.state.should_stop = true;
                self.state.stop_reason =
                    Some(format!("max_steps={} reached", self.state.global_step));
            }
        }
        self.state.host_syncs = run.ctx.host_syncs();
        self.state.resume_point = (epoch, batch_idx + 1);
        if self.state.train_keys.is_empty() {
            self.state.train_keys = run.ctx.logged_keys();
        }
        self.callbacks_ordered(|c, s| c.on_train_batch_end(s, batch_idx))?;
        self.service_run(run, true)
    }

    /// The validation loop inside an epoch, every `val_check_interval` batches.
    fn validate_within_epoch<M: LitModule>(
        &mut self,
        module: &mut M,
        run: &FitRun,
        batch_idx: usize,
    ) -> Result<()> {
        let Some(k) = run.val_every else {
            return Ok(());
        };
        if run.vals.is_empty() || !(batch_idx + 1).is_multiple_of(k) || batch_idx + 1 >= run.n_train
        {
            return Ok(());
        }
        let values = self.evaluate(
            module,
            &run.vals,
            RunningStage::Validate,
            self.config.limit_val_batches,
        )?;
        self.log(&values)?;
        self.state.stage = Some(RunningStage::Train);
        self.state.num_batches = run.n_train;
        Ok(())
    }

    /// Whether a stop asked for at the end of `epoch` ends training: not before `min_epochs`
    /// epochs are complete (then the request is dropped), as in Lightning.
    fn stop_after_epoch(&mut self, epoch: usize) -> bool {
        if !self.state.should_stop {
            return false;
        }
        if epoch + 1 >= self.config.min_epochs || self.state.signal.is_some() {
            let reason = self
                .state
                .stop_reason
                .as_deref()
                .unwrap_or("a callback asked");
            tracing::info!(reason, "stopping");
            return true;
        }
        tracing::info!(
            min_epochs = self.config.min_epochs,
            "a stop was asked for before min_epochs; training goes on"
        );
        self.state.should_stop = false;
        self.state.stop_reason = None;
        false
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
    fn step_epoch_schedule(&mut self, epoch: usize, opt: &mut OptimizationStep) -> Result<()> {
        let Some(sc) = opt
            .scheduler
            .as_mut()
            .filter(|s| s.interval == lit_model::scheduler::Interval::Epoch)
        else {
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
        let lr = sc.scheduler.step(metric);
        opt.optimizer.set_learning_rate(lr);
        Ok(())
    }
}
