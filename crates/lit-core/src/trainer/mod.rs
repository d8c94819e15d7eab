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

mod checkpointing;
mod evaluation;
mod fit;
mod guards;
mod optimization;
mod predict;
mod setup;

use lit_model::LoggedResults;
use std::collections::BTreeMap;

use candle::Device;
use lit_model::{HParams, StepContext};

use crate::{
    rundir, Callback, CsvLogger, Error, Logger, Precision, Result, SingleDevice, Strategy,
    TrainerConfig, TrainerState,
};

/// Runs a module on a data module, as Lightning's `Trainer`.
pub struct Trainer {
    config: TrainerConfig,
    strategy: Box<dyn Strategy>,
    precision: Box<dyn Precision>,
    callbacks: Vec<Box<dyn Callback>>,
    loggers: Vec<Box<dyn Logger>>,
    loggers_started: bool,
    state: TrainerState,
    ckpt_path: Option<std::path::PathBuf>,
    /// Checkpoints this trainer wrote, the only ones it may delete.
    written: std::collections::HashSet<std::path::PathBuf>,
    /// Where the loop stood when the last checkpoint was written, so a signal's stop knows
    /// whether `last` still has to be written.
    written_at: Option<(usize, usize)>,
    /// The signal handlers, armed while `fit` runs.
    signals: Option<crate::SignalGuard>,
    /// Examples per training batch of each process in the current fit.
    train_batch_size: usize,
    /// The checkpoint this fit resumed from and its global step.
    resumed_from: Option<(std::path::PathBuf, u64)>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A trainer with `config` on the device its accelerator names, logging `metrics.csv` unless
    /// `config.logger` is off.
    pub fn new(config: TrainerConfig) -> Result<Self> {
        let config = config.resolved()?;
        let precision = crate::precision_from_name(&config.precision)?;
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
            precision,
            callbacks: Vec::new(),
            loggers,
            loggers_started: false,
            state,
            ckpt_path: None,
            written: Default::default(),
            written_at: None,
            signals: None,
            train_batch_size: 0,
            resumed_from: None,
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

    /// Sets the hyperparameters saved with the run (merged with the module's own).
    pub fn with_hparams(mut self, hparams: HParams) -> Self {
        self.state.hparams = hparams;
        self
    }

    /// Computes with `precision` instead of full f32 (`FullPrecision`).
    pub fn with_precision(mut self, precision: impl Precision + 'static) -> Self {
        self.precision = Box::new(precision);
        self
    }

    /// Spreads training with `strategy` instead of one device (`SingleDevice`).
    pub fn with_strategy(mut self, strategy: impl Strategy + 'static) -> Self {
        self.state.is_global_zero = strategy.is_global_zero();
        self.strategy = Box::new(strategy);
        self
    }

    /// The strategy the trainer runs with.
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    /// The device the trainer computes on: where a module builds its parameters.
    pub fn device(&self) -> &Device {
        self.strategy.device()
    }

    /// The type a module builds its float parameters in under the trainer's precision (f32, or
    /// the low type of a `-true` precision), as Lightning's trainer converts a module.
    pub fn param_dtype(&self) -> candle::DType {
        self.precision.param_dtype()
    }

    /// Takes a signal received since the fit began as a stop (once).
    fn check_signal(&mut self) {
        if self.state.signal.is_some() {
            return;
        }
        if let Some(sig) = self.signals.as_ref().and_then(crate::SignalGuard::received) {
            self.take_signal(sig);
        }
    }

    fn take_signal(&mut self, sig: i32) {
        let name = crate::signals::name(sig);
        tracing::info!(target: crate::REPORT_TARGET,
            "stopping for {name} after batch {} of epoch {}",
            self.state.batch_idx + 1,
            self.state.epoch + 1);
        self.state.signal = Some(sig);
        self.state.stop(format!("{name} received"));
    }

    /// In a data-parallel run, a stop any process asks for (its timer ran out, a signal reached
    /// it) is taken by all, at the same batch: one small all-reduce per batch.
    fn agree_on_stop(&mut self) -> Result<()> {
        let signal = self.state.signal.unwrap_or(0);
        let mut vote = [
            f64::from(u8::from(self.state.should_stop)),
            f64::from(u8::from(signal > 0)),
            f64::from(signal),
        ];
        self.strategy.all_reduce_sum(&mut vote)?;
        if vote[1] > 0.0 && self.state.signal.is_none() {
            // The signal the others received when they agree; SIGTERM when they do not.
            let mean = vote[2] / vote[1];
            let sig = if mean.fract() == 0.0 {
                mean as i32
            } else {
                crate::signals::SIGTERM
            };
            self.take_signal(sig);
        } else if vote[0] > 0.0 && !self.state.should_stop {
            self.state
                .stop("another process of the data-parallel run stopped");
        }
        Ok(())
    }

    /// Refuses a run whose process count differs from what `devices` and `num_nodes` ask for.
    fn check_world(&self) -> Result<()> {
        let want = self.config.devices * self.config.num_nodes;
        let have = self.strategy.world_size();
        if want != have {
            return Err(Error::Config(format!(
                "devices = {} x num_nodes = {} asks for {want} processes, but this run has {have}: \
                 a data-parallel run starts one process per device (mpirun -n {want}, which the \
                 mnist app does itself when built with the `mpi` feature)",
                self.config.devices, self.config.num_nodes
            )));
        }
        Ok(())
    }

    /// A batch from a loader as a step receives it: on the strategy's device, in the precision's
    /// compute type. Every loop takes its batches through here.
    fn prepare_batch(&self, batch: lit_model::Batch) -> Result<lit_model::Batch> {
        self.precision.convert_batch(batch, self.strategy.device())
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
        // Every process passes here alike (the run directory is known to all of them once made),
        // so the all-gather below is called by all or by none.
        if self.state.log_dir.is_some() || !self.config.logger {
            return Ok(());
        }
        let dir = if self.strategy.is_global_zero() {
            let dir =
                rundir::create_version_dir(&self.config.default_root_dir, &self.config.run_name)?;
            rundir::write_hparams(&dir, &self.state.hparams)?;
            for l in self.loggers.iter_mut() {
                l.start(&dir, &self.state.hparams)?;
            }
            tracing::info!(dir = %dir.display(), "run directory");
            self.loggers_started = true;
            Some(dir)
        } else {
            None
        };
        // In a data-parallel run the other processes learn rank 0's directory (callbacks name
        // their checkpoints after it); only rank 0 writes there.
        let mine = dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let zero =
            String::from_utf8_lossy(&self.strategy.broadcast(mine.into_bytes())?).into_owned();
        // Rank 0 keeps its own path as it is; the others take its text.
        let dir = match dir {
            Some(own) => Some(own),
            None => Some(zero)
                .filter(|d| !d.is_empty())
                .map(std::path::PathBuf::from),
        };
        self.state.log_dir = dir;
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
        let status = match &result {
            Ok(_) => "success",
            Err(Error::Interrupted { .. }) => "interrupted",
            Err(_) => "failed",
        };
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
}
