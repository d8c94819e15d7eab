//! [`TrainerConfig`]: the trainer's settings, Lightning's `Trainer(...)` arguments.

use std::path::PathBuf;

use crate::{Accelerator, Error, Result};

/// How many batches of a loader to run: all, a count, or a fraction of the loader.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Limit {
    /// Every batch.
    #[default]
    All,
    /// At most this many batches.
    Batches(usize),
    /// This fraction of the batches (at least one when the fraction is positive).
    Fraction(f64),
}

impl Limit {
    /// The number of batches out of `available`.
    pub fn of(self, available: usize) -> usize {
        match self {
            Limit::All => available,
            Limit::Batches(n) => n.min(available),
            Limit::Fraction(f) if f <= 0.0 => 0,
            Limit::Fraction(f) => ((available as f64 * f) as usize)
                .clamp(1, available.max(1))
                .min(available),
        }
    }
}

impl std::str::FromStr for Limit {
    type Err = Error;
    /// `1.0` or any value with a `.` is a fraction; an integer is a count.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "expected a batch count such as 200 or a fraction such as 0.25, got '{s}'"
            ))
        };
        if s.contains('.') {
            let f: f64 = s.parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::Config(format!(
                    "a fraction of batches must be in [0, 1], got {f}"
                )));
            }
            Ok(if f == 1.0 {
                Limit::All
            } else {
                Limit::Fraction(f)
            })
        } else {
            Ok(Limit::Batches(s.parse().map_err(|_| bad())?))
        }
    }
}

/// How gradients are clipped before the optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum GradientClip {
    /// No clipping.
    #[default]
    None,
    /// Scale all gradients together so their global L2 norm is at most this
    /// (`torch.nn.utils.clip_grad_norm_`).
    Norm(f64),
    /// Clamp every gradient element into `[-v, v]` (`clip_grad_value_`).
    Value(f64),
}

/// The trainer's settings, with Lightning's names and defaults.
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    /// Stop after this many epochs.
    pub max_epochs: usize,
    /// Stop after this many optimizer steps, if set.
    pub max_steps: Option<u64>,
    /// Train at least this many epochs, even when a callback asks to stop earlier.
    pub min_epochs: usize,
    /// Train and validate on this many (or this fraction of) batches, the same unshuffled
    /// training batches every epoch, to check that the model can overfit them.
    pub overfit_batches: Option<Limit>,
    /// Resuming from `ckpt_path` takes its weights only: a new run from epoch 0, with a fresh
    /// optimizer and schedule (for a checkpoint of another optimizer, or without its state).
    pub ckpt_weights_only: bool,
    /// Training batches per epoch.
    pub limit_train_batches: Limit,
    /// Validation batches per loader.
    pub limit_val_batches: Limit,
    /// Test batches per loader.
    pub limit_test_batches: Limit,
    /// Prediction batches per loader.
    pub limit_predict_batches: Limit,
    /// Validate every this many epochs.
    pub check_val_every_n_epoch: usize,
    /// Also validate within an epoch, every this many training batches (or fraction of an epoch).
    pub val_check_interval: Option<Limit>,
    /// Validation batches run per loader before training, to catch bugs early (0 disables).
    pub num_sanity_val_steps: usize,
    /// Run `n` batches of every stage once, with no logging to disk and no sanity check (0: off).
    pub fast_dev_run: usize,
    /// Copy step values to the host and log them every this many optimizer steps.
    pub log_every_n_steps: u64,
    /// Where run directories go: `<default_root_dir>/<run name>/version_N`.
    pub default_root_dir: PathBuf,
    /// The run name (the template uses the model name).
    pub run_name: String,
    /// Write a run directory with `hparams.yaml` and `metrics.csv`.
    pub logger: bool,
    /// The kind of device.
    pub accelerator: Accelerator,
    /// Devices per machine: processes of a data-parallel run on each (Lightning's `devices`).
    pub devices: usize,
    /// Machines of a data-parallel run (Lightning's `num_nodes`).
    pub num_nodes: usize,
    /// The seed of the training steps' random streams (dropout masks, with the epoch, batch and
    /// process). Initial weights come from the module's own seed and the data order from the
    /// loaders' (the `mnist` app sets all three from `--seed`).
    pub seed: u64,
    /// Sum gradients over this many batches before each optimizer step (the loss is divided by
    /// it); the last batch of an epoch always steps.
    pub accumulate_grad_batches: usize,
    /// Gradient clipping before each optimizer step.
    pub gradient_clip: GradientClip,
    /// The floating-point precision by Lightning's name (`32-true`, `bf16-mixed`, `16-mixed`,
    /// `bf16-true`, `16-true`; see [`crate::precision`]).
    pub precision: String,
    /// Turn SIGINT, SIGTERM and SIGUSR1 during `fit` into a clean stop at the end of the current
    /// batch, with `last` written and the loggers flushed (see [`crate::signals`]); `fit` then
    /// returns [`Error::Interrupted`](crate::Error::Interrupted). Off: signals keep their default
    /// action.
    pub handle_signals: bool,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            max_epochs: 1000,
            max_steps: None,
            min_epochs: 0,
            overfit_batches: None,
            ckpt_weights_only: false,
            limit_train_batches: Limit::All,
            limit_val_batches: Limit::All,
            limit_test_batches: Limit::All,
            limit_predict_batches: Limit::All,
            check_val_every_n_epoch: 1,
            val_check_interval: None,
            num_sanity_val_steps: 2,
            fast_dev_run: 0,
            log_every_n_steps: 50,
            default_root_dir: PathBuf::from("logs"),
            run_name: "default".into(),
            logger: true,
            accelerator: Accelerator::Auto,
            devices: 1,
            num_nodes: 1,
            seed: lit_base::DEFAULT_SEED,
            accumulate_grad_batches: 1,
            gradient_clip: GradientClip::None,
            precision: "32-true".into(),
            handle_signals: true,
        }
    }
}

impl TrainerConfig {
    /// Checks the settings and applies `fast_dev_run`.
    pub fn resolved(&self) -> Result<Self> {
        let mut c = self.clone();
        if c.devices == 0 || c.num_nodes == 0 {
            return Err(Error::Config(format!(
                "devices = {}, num_nodes = {}: both must be at least 1",
                c.devices, c.num_nodes
            )));
        }
        if c.check_val_every_n_epoch == 0 {
            return Err(Error::Config(
                "check_val_every_n_epoch must be at least 1".into(),
            ));
        }
        if c.val_check_interval.is_some_and(|l| l.of(1_000_000) == 0) {
            return Err(Error::Config(
                "val_check_interval must be a positive batch count or a fraction in (0, 1], got 0"
                    .into(),
            ));
        }
        if c.min_epochs > c.max_epochs {
            return Err(Error::Config(format!(
                "min_epochs = {} is more than max_epochs = {}",
                c.min_epochs, c.max_epochs
            )));
        }
        if let Some(limit) = c.overfit_batches {
            if limit.of(1_000_000) == 0 {
                return Err(Error::Config(
                    "overfit_batches must be a positive batch count or fraction".into(),
                ));
            }
            c.limit_train_batches = limit;
            c.limit_val_batches = limit;
        }
        c.log_every_n_steps = c.log_every_n_steps.max(1);
        if c.accumulate_grad_batches == 0 {
            return Err(Error::Config(
                "accumulate_grad_batches must be at least 1".into(),
            ));
        }
        match c.gradient_clip {
            GradientClip::Norm(v) | GradientClip::Value(v) if !(v > 0.0 && v.is_finite()) => {
                return Err(Error::Config(format!(
                    "gradient clipping needs a positive finite value, got {v}"
                )));
            }
            _ => {}
        }
        if c.fast_dev_run > 0 {
            let n = Limit::Batches(c.fast_dev_run);
            c.max_epochs = 1;
            c.max_steps = Some(c.fast_dev_run as u64);
            c.limit_train_batches = n;
            c.limit_val_batches = n;
            c.limit_test_batches = n;
            c.limit_predict_batches = n;
            c.num_sanity_val_steps = 0;
            c.val_check_interval = None;
            c.check_val_every_n_epoch = 1;
            c.logger = false;
            c.log_every_n_steps = 1;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(Limit::All.of(10), 10);
        assert_eq!(Limit::Batches(3).of(10), 3);
        assert_eq!(Limit::Batches(30).of(10), 10);
        assert_eq!(Limit::Fraction(0.25).of(10), 2);
        assert_eq!(Limit::Fraction(0.01).of(10), 1);
        assert_eq!("200".parse::<Limit>().unwrap(), Limit::Batches(200));
        assert_eq!("0.5".parse::<Limit>().unwrap(), Limit::Fraction(0.5));
        assert!("1.5".parse::<Limit>().is_err());
    }
}
