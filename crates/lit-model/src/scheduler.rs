//! Schedules chosen by name from the hyperparameters: the [`SCHEDULERS`] table and
//! [`from_hparams`]. The schedules themselves live in `lit-optim` (`lit_optim::scheduler`) and
//! take typed configs; this module reads the hyperparameter map into them.

use std::sync::LazyLock;

use lit_base::{HParams, Registry};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};
pub use lit_optim::scheduler::*;

type Builder = fn(&SchedulerHParams, &HParams, f64) -> Result<Option<SchedulerConfig>>;

/// Every schedule `from_hparams` builds, by name: the only list of their names.
pub static SCHEDULERS: LazyLock<Registry<Builder>> = LazyLock::new(|| {
    Registry::<Builder>::new("lr scheduler")
        .with("none", |c, _, lr| scheduled(c, lr, None))
        .with("step", |c, _, lr| {
            let step_size = decay_steps(c, "step")?;
            let gamma = c.gamma();
            scheduled(c, lr, Some(Decay::Step { step_size, gamma }))
        })
        .with("multi_step", |c, hp, lr| {
            let decay = Decay::MultiStep {
                milestones: milestones(hp)?,
                gamma: c.gamma(),
            };
            scheduled(c, lr, Some(decay))
        })
        .with("cosine", |c, _, lr| {
            let decay = Decay::Cosine {
                t_max: decay_steps(c, "cosine")?,
                eta_min: c.lr_decay_min_lr.unwrap_or(COSINE_MIN_LR),
            };
            scheduled(c, lr, Some(decay))
        })
        .with("exponential", |c, _, lr| {
            scheduled(c, lr, Some(Decay::Exponential { gamma: c.gamma() }))
        })
        .with("one_cycle", one_cycle)
        .with("plateau", plateau)
});

/// `lr_decay_steps` of `schedule`: at least 1, as PyTorch's StepLR, CosineAnnealingLR and
/// OneCycleLR require.
fn decay_steps(c: &SchedulerHParams, schedule: &str) -> Result<u64> {
    match c.lr_decay_steps {
        0 => Err(Error::HParam {
            key: "lr_decay_steps".into(),
            message: format!("the {schedule} schedule needs at least 1 step, got 0"),
        }),
        n => Ok(n),
    }
}

fn milestones(hp: &HParams) -> Result<Vec<u64>> {
    if let Some(list) = hp.raw("milestones").filter(|v| v.is_array()) {
        return serde_json::from_value(list.clone()).map_err(|_| Error::HParam {
            key: "milestones".into(),
            message: format!("expected non-negative integers, got {list}"),
        });
    }
    hp.get_list("milestones")?
        .iter()
        .map(|m| {
            m.parse().map_err(|_| Error::HParam {
                key: "milestones".into(),
                message: format!("expected non-negative integers, got '{m}'"),
            })
        })
        .collect()
}

fn scheduling(c: &SchedulerHParams) -> (Interval, usize) {
    (c.lr_interval, c.lr_frequency.max(1))
}

/// A decay (or none) after the optional linear warmup.
fn scheduled(
    c: &SchedulerHParams,
    lr: f64,
    decay: Option<Decay>,
) -> Result<Option<SchedulerConfig>> {
    let warmup_steps = c.warmup_steps;
    let decay = match decay {
        None if warmup_steps == 0 => return Ok(None),
        None => Decay::Constant,
        Some(d) => d,
    };
    let start_factor = c.warmup_start_factor;
    // PyTorch's LinearLR refuses start factors outside (0, 1].
    if !(start_factor > 0.0 && start_factor <= 1.0) {
        return Err(Error::HParam {
            key: "warmup_start_factor".into(),
            message: format!(
                "expected a factor in (0, 1] (as PyTorch's LinearLR), got {start_factor}"
            ),
        });
    }
    let warmup = Warmup {
        steps: warmup_steps,
        start_factor,
    };
    let (interval, frequency) = scheduling(c);
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(Scheduled::new(lr, decay, Some(warmup))),
        interval,
        frequency,
        monitor: None,
    }))
}

fn one_cycle(c: &SchedulerHParams, _: &HParams, lr: f64) -> Result<Option<SchedulerConfig>> {
    let total = decay_steps(c, "one_cycle")?;
    let (interval, frequency) = scheduling(c);
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(OneCycle::new(lr, total)),
        interval,
        frequency,
        monitor: None,
    }))
}

fn plateau(c: &SchedulerHParams, hp: &HParams, lr: f64) -> Result<Option<SchedulerConfig>> {
    let vals = hp.get_list("val_datasets")?;
    let default_key = if vals.len() > 1 {
        format!("val_loss/{}", vals[0])
    } else {
        "val_loss".into()
    };
    let mut p = ReduceOnPlateau::new(lr, c.plateau_mode);
    // torch's ReduceLROnPlateau factor is 0.1, unlike the other schedules' 0.5.
    p.factor = c.lr_decay_rate.unwrap_or(0.1);
    p.patience = c.plateau_patience;
    p.threshold = c.plateau_threshold;
    p.cooldown = c.plateau_cooldown;
    p.min_lr = c.lr_decay_min_lr.unwrap_or(0.0);
    let monitor = c.plateau_monitor.clone().unwrap_or(default_key);
    let (_, frequency) = scheduling(c);
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(p),
        interval: Interval::Epoch,
        frequency,
        monitor: Some(monitor),
    }))
}

/// The schedules' hyperparameters, read from the run's map by name, one default per key; the
/// list of keys the run reads is this struct's fields (plus `milestones`, a list or a
/// comma-separated text, and `val_datasets`, which names plateau's default monitor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerHParams {
    /// One of [`SCHEDULERS`].
    pub lr_scheduler: String,
    /// Step the schedule every `epoch` or every optimizer `step`.
    pub lr_interval: Interval,
    /// Step it every this many intervals.
    pub lr_frequency: usize,
    /// Step size of `step`, T_max of `cosine`, total steps of `one_cycle`.
    pub lr_decay_steps: u64,
    /// The decay factor; unset: 0.5, or torch's 0.1 for `plateau`.
    pub lr_decay_rate: Option<f64>,
    /// The floor of `cosine` (`eta_min`) and of `plateau`; unset: 1e-5 for cosine, torch's 0
    /// for plateau.
    pub lr_decay_min_lr: Option<f64>,
    /// Linear warmup length, in scheduler steps.
    pub warmup_steps: u64,
    /// The warmup's first factor of the rate, in (0, 1].
    pub warmup_start_factor: f64,
    /// Whether plateau's monitored value is better lower or higher.
    pub plateau_mode: Mode,
    /// Epochs without improvement before plateau cuts.
    pub plateau_patience: u64,
    /// The relative improvement that counts.
    pub plateau_threshold: f64,
    /// Epochs after a cut without another.
    pub plateau_cooldown: u64,
    /// The key plateau watches (default `val_loss`, or `val_loss/<first set>`).
    pub plateau_monitor: Option<String>,
}

impl Default for SchedulerHParams {
    fn default() -> Self {
        Self {
            lr_scheduler: "none".into(),
            lr_interval: Interval::Epoch,
            lr_frequency: 1,
            lr_decay_steps: 20,
            lr_decay_rate: None,
            lr_decay_min_lr: None,
            warmup_steps: 0,
            warmup_start_factor: 0.01,
            plateau_mode: Mode::Min,
            plateau_patience: 10,
            plateau_threshold: 1e-4,
            plateau_cooldown: 0,
            plateau_monitor: None,
        }
    }
}

/// Cosine's floor when `lr_decay_min_lr` is unset (the `mnist` app's default of it).
pub const COSINE_MIN_LR: f64 = 1e-5;

impl SchedulerHParams {
    /// The decay factor of step, multi_step and exponential.
    fn gamma(&self) -> f64 {
        self.lr_decay_rate.unwrap_or(0.5)
    }
}

/// Every hyperparameter key `from_hparams` reads, with its default.
pub fn defaults() -> HParams {
    let mut d =
        HParams::from_serialize(&SchedulerHParams::default()).expect("plain data serialises");
    d.set("milestones", serde_json::Value::Null).expect("a key");
    d
}

/// Builds the schedule named by `lr_scheduler` (default `none`) for the optimizer's base rate
/// `lr`, from the keys of [`SchedulerHParams`].
///
/// `none` with warmup is warmup alone. `one_cycle` peaks at `lr` over `lr_decay_steps`
/// scheduler steps. `plateau` cuts by `lr_decay_rate` after `plateau_patience` epochs without a
/// relative improvement of `plateau_threshold` in `plateau_monitor`.
pub fn from_hparams(hp: &HParams, lr: f64) -> Result<Option<SchedulerConfig>> {
    let c: SchedulerHParams = hp.to_config()?;
    let build = SCHEDULERS.get(&c.lr_scheduler)?;
    build(&c, hp, lr)
}
