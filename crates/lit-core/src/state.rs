//! [`TrainerState`]: what callbacks and loggers see of a run.
//!
//! Callbacks read the run through getters and act on it through a few methods: stop it
//! ([`TrainerState::stop`]), log a value ([`TrainerState::log`]), ask for a checkpoint
//! ([`TrainerState::request_checkpoint`]), report the best checkpoint and adopt checkpoint files.
//! The counters, parameters and limits are the trainer's alone, so no callback can move
//! `global_step` or swap the parameters under the loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use lit_data::HParams;
use lit_model::RunningStage;

/// The trainer's progress and the latest logged values, passed to every callback hook.
#[derive(Clone)]
pub struct TrainerState {
    /// The current epoch, from 0.
    pub(crate) epoch: usize,
    /// Optimizer steps taken so far.
    pub(crate) global_step: u64,
    /// The index of the current batch within its epoch or loader.
    pub(crate) batch_idx: usize,
    /// The loop being run.
    pub(crate) stage: Option<RunningStage>,
    /// The latest value of every logged key (step and epoch values), as Lightning's
    /// `callback_metrics`; monitors read from here.
    pub(crate) callback_metrics: BTreeMap<String, f64>,
    /// Keys shown in the progress display.
    pub(crate) progress_bar_keys: Vec<String>,
    /// Set by a callback to stop training: at the end of the current batch when set in a batch
    /// hook, after the current epoch when set at its end (never before `min_epochs`).
    pub(crate) should_stop: bool,
    /// Whether the epoch now ending ran its validation loop (false on epochs that
    /// `check_val_every_n_epoch` skips); monitors of validation keys skip those epochs.
    pub(crate) validation_ran: bool,
    /// Whether the epoch now ending was stopped before its last batch (`max_time`,
    /// `max_steps`): it is not over, so monitors skip it and checkpoints resume inside it.
    pub(crate) epoch_interrupted: bool,
    /// Why training stopped, when a callback stopped it.
    pub(crate) stop_reason: Option<String>,
    /// The signal that stopped the fit (any process's, in a data-parallel run).
    pub(crate) signal: Option<i32>,
    /// The run directory, when the run writes one.
    pub(crate) log_dir: Option<PathBuf>,
    /// The run's hyperparameters.
    pub(crate) hparams: HParams,
    /// The module's parameters.
    pub(crate) varmap: Option<VarMap>,
    /// The optimizer's name and its learning rate (a shared handle, read, never copied).
    pub(crate) learning_rate: Option<(String, lit_optim::LearningRate)>,
    /// Batches in the current loop's loader (after limits).
    pub(crate) num_batches: usize,
    /// Examples in the current batch.
    pub(crate) batch_size: usize,
    /// The current loader's name in validation and test.
    pub(crate) dataloader_name: Option<String>,
    /// Names of the validation loaders.
    pub(crate) val_dataloader_names: Vec<String>,
    /// The last training loss copied to the host (every `log_every_n_steps`).
    pub(crate) last_train_loss: Option<f64>,
    /// Device-to-host copies of logged values so far in this run.
    pub(crate) host_syncs: usize,
    /// The maximum number of epochs.
    pub(crate) max_epochs: usize,
    /// Whether this is a `fast_dev_run`.
    pub(crate) fast_dev_run: bool,
    /// The values of every completed epoch, in order (for curves and summaries).
    pub(crate) history: Vec<BTreeMap<String, f64>>,
    /// Keys the sanity check's validation logged (values discarded), so monitors can check their
    /// key before the first epoch ends.
    pub(crate) sanity_keys: Vec<String>,
    /// Keys the first training batch of the fit logged (empty before it), so monitors of
    /// training keys can check their key then rather than after a whole epoch.
    pub(crate) train_keys: Vec<String>,
    /// Where training continues if a checkpoint is written now: (epoch, batch within it).
    pub(crate) resume_point: (usize, usize),
    /// Checkpoints callbacks asked for; the trainer writes them after the hook returns.
    pub(crate) checkpoint_requests: Vec<crate::checkpoint::CheckpointRequest>,
    /// Values callbacks logged (learning rates); the trainer sends them to the loggers.
    pub(crate) pending_logs: BTreeMap<String, f64>,
    /// The best checkpoint so far and its monitored value (set by ModelCheckpoint).
    pub(crate) best_model: Option<(PathBuf, f64)>,
    /// The last checkpoint written.
    pub(crate) last_checkpoint: Option<PathBuf>,
    /// Whether this process writes files (always, except in the processes of a data-parallel run
    /// other than rank 0).
    pub(crate) is_global_zero: bool,
    /// Files adopted through [`TrainerState::adopt_checkpoints`], taken by the trainer.
    pub(crate) adopted: Vec<PathBuf>,
}

impl std::fmt::Debug for TrainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerState")
            .field("epoch", &self.epoch)
            .field("global_step", &self.global_step)
            .field("stage", &self.stage)
            .field("callback_metrics", &self.callback_metrics)
            .finish_non_exhaustive()
    }
}

impl TrainerState {
    pub(crate) fn new(hparams: HParams, max_epochs: usize) -> Self {
        Self {
            epoch: 0,
            global_step: 0,
            batch_idx: 0,
            stage: None,
            callback_metrics: BTreeMap::new(),
            progress_bar_keys: Vec::new(),
            should_stop: false,
            validation_ran: false,
            epoch_interrupted: false,
            stop_reason: None,
            signal: None,
            train_keys: Vec::new(),
            log_dir: None,
            hparams,
            varmap: None,
            learning_rate: None,
            num_batches: 0,
            batch_size: 0,
            dataloader_name: None,
            val_dataloader_names: Vec::new(),
            last_train_loss: None,
            host_syncs: 0,
            max_epochs,
            fast_dev_run: false,
            history: Vec::new(),
            sanity_keys: Vec::new(),
            resume_point: (0, 0),
            checkpoint_requests: Vec::new(),
            pending_logs: BTreeMap::new(),
            best_model: None,
            last_checkpoint: None,
            is_global_zero: true,
            adopted: Vec::new(),
        }
    }

    // Reading: every field has a getter; only the trainer (this crate) writes them.

    /// The current epoch, from 0.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Optimizer steps taken so far.
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The index of the current batch within its epoch or loader.
    pub fn batch_idx(&self) -> usize {
        self.batch_idx
    }

    /// The loop being run.
    pub fn stage(&self) -> Option<RunningStage> {
        self.stage
    }

    /// The latest value of every logged key (step and epoch values), as Lightning's
    /// `callback_metrics`; monitors read from here.
    pub fn callback_metrics(&self) -> &BTreeMap<String, f64> {
        &self.callback_metrics
    }

    /// The latest value of one logged key (`callback_metrics[name]`), if it was logged.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.callback_metrics.get(name).copied()
    }

    /// Keys shown in the progress display.
    pub fn progress_bar_keys(&self) -> &[String] {
        &self.progress_bar_keys
    }

    /// Set by a callback to stop training: at the end of the current batch when set in a batch
    /// hook, after the current epoch when set at its end (never before `min_epochs`).
    pub fn should_stop(&self) -> bool {
        self.should_stop
    }

    /// Whether the epoch now ending ran its validation loop (false on epochs that
    /// `check_val_every_n_epoch` skips); monitors of validation keys skip those epochs.
    pub fn validation_ran(&self) -> bool {
        self.validation_ran
    }

    /// Whether the epoch now ending was stopped before its last batch (`max_time`,
    /// `max_steps`): it is not over, so monitors skip it and checkpoints resume inside it.
    pub fn epoch_interrupted(&self) -> bool {
        self.epoch_interrupted
    }

    /// Why training stopped, when a callback stopped it.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// Keys the fit's first training batch logged (empty before it has run).
    pub fn train_keys(&self) -> &[String] {
        &self.train_keys
    }

    /// The signal that is stopping the fit (SIGINT, SIGTERM, SIGUSR1), if one is: a stop that
    /// neither `min_epochs` nor a callback holds back.
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    /// The run directory, when the run writes one.
    pub fn log_dir(&self) -> Option<&Path> {
        self.log_dir.as_deref()
    }

    /// The run's hyperparameters.
    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    /// The module's parameters.
    pub fn varmap(&self) -> Option<&VarMap> {
        self.varmap.as_ref()
    }

    /// Batches in the current loop's loader (after limits).
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }

    /// Examples in the current batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The current loader's name in validation and test.
    pub fn dataloader_name(&self) -> Option<&str> {
        self.dataloader_name.as_deref()
    }

    /// Names of the validation loaders.
    pub fn val_dataloader_names(&self) -> &[String] {
        &self.val_dataloader_names
    }

    /// The last training loss copied to the host (every `log_every_n_steps`).
    pub fn last_train_loss(&self) -> Option<f64> {
        self.last_train_loss
    }

    /// Device-to-host copies of logged values so far in this run.
    pub fn host_syncs(&self) -> usize {
        self.host_syncs
    }

    /// The maximum number of epochs.
    pub fn max_epochs(&self) -> usize {
        self.max_epochs
    }

    /// Whether this is a `fast_dev_run`.
    pub fn fast_dev_run(&self) -> bool {
        self.fast_dev_run
    }

    /// The values of every completed epoch, in order (for curves and summaries).
    pub fn history(&self) -> &[BTreeMap<String, f64>] {
        &self.history
    }

    /// Keys the sanity check's validation logged (values discarded), so monitors can check their
    /// key before the first epoch ends.
    pub fn sanity_keys(&self) -> &[String] {
        &self.sanity_keys
    }

    /// Where training continues if a checkpoint is written now: (epoch, batch within it).
    pub fn resume_point(&self) -> (usize, usize) {
        self.resume_point
    }

    /// The best checkpoint so far and its monitored value (set by ModelCheckpoint).
    pub fn best_model(&self) -> Option<(&Path, f64)> {
        self.best_model.as_ref().map(|(p, v)| (p.as_path(), *v))
    }

    /// The last checkpoint written.
    pub fn last_checkpoint(&self) -> Option<&Path> {
        self.last_checkpoint.as_deref()
    }

    /// The optimizer's name and its learning rate now, once a fit has built the optimizer.
    pub fn learning_rate(&self) -> Option<(&str, f64)> {
        self.learning_rate
            .as_ref()
            .map(|(name, lr)| (name.as_str(), lr.get()))
    }

    /// Whether this process writes files: a callback that writes its own (plots) writes only
    /// where this holds, as the trainer does for logs and checkpoints.
    pub fn is_global_zero(&self) -> bool {
        self.is_global_zero
    }

    // Acting: the narrow set of things a callback may do to a run.

    /// Stops training, saying why: at the end of the current batch when called in a batch hook,
    /// after the current epoch when called at its end (never before `min_epochs`).
    pub fn stop(&mut self, reason: impl Into<String>) {
        self.should_stop = true;
        self.stop_reason = Some(reason.into());
    }

    /// Records the best checkpoint so far and its monitored value (ModelCheckpoint reports it).
    pub fn set_best_model(&mut self, path: impl Into<PathBuf>, score: f64) {
        self.best_model = Some((path.into(), score));
    }

    /// The values of the last completed epoch (training and validation), empty before the first.
    pub fn epoch_metrics(&self) -> &BTreeMap<String, f64> {
        static EMPTY: BTreeMap<String, f64> = BTreeMap::new();
        self.history.last().unwrap_or(&EMPTY)
    }

    /// Logs a value from a callback (sent to the loggers with the current step).
    pub fn log(&mut self, key: impl Into<String>, value: f64) {
        let key = key.into();
        self.callback_metrics.insert(key.clone(), value);
        self.pending_logs.insert(key, value);
    }

    /// Asks the trainer to write a checkpoint after the current hook.
    pub fn request_checkpoint(&mut self, request: crate::checkpoint::CheckpointRequest) {
        self.checkpoint_requests.push(request);
    }

    /// Whether a monitor of `key` has a fresh value at the end of this epoch: validation ran (or
    /// the fit has no validation sets, where a missing key is the monitor's error to report), or
    /// the epoch itself logged `key` (a training key such as `train_loss_epoch`).
    pub fn monitor_is_fresh(&self, key: &str) -> bool {
        !self.epoch_interrupted
            && (self.validation_ran
                || self.val_dataloader_names.is_empty()
                || self.epoch_metrics().contains_key(key)
                || self.epoch_metrics().contains_key(&format!("{key}_epoch")))
    }

    /// Declares checkpoint files that a callback manages although this fit did not write them (a
    /// top-k list restored in the same folder), so the trainer may delete them when displaced.
    /// Files of another run are never adopted.
    pub fn adopt_checkpoints(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        self.adopted.extend(paths);
    }

    /// The monitored value under `key`, or the keys that exist.
    pub fn monitored(&self, key: &str) -> std::result::Result<f64, Vec<String>> {
        // A value logged both per step and per epoch is monitored by its plain name as the
        // epoch's value, as Lightning's `callback_metrics` holds it.
        self.callback_metrics
            .get(key)
            .or_else(|| self.callback_metrics.get(&format!("{key}_epoch")))
            .copied()
            .ok_or_else(|| self.callback_metrics.keys().cloned().collect())
    }
}
