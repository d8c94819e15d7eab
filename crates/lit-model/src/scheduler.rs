//! Schedules chosen by name from the hyperparameters: the [`SCHEDULERS`] table and
//! [`from_hparams`]. The schedules themselves live in `lit-optim` (`lit_optim::scheduler`) and
//! take typed configs; this module reads the hyperparameter map into them.

use std::sync::LazyLock;

use lit_base::{HParams, Registry};

use crate::{Error, Result};
pub use lit_optim::scheduler::*;

type Builder = fn(&HParams, f64) -> Result<Option<SchedulerConfig>>;

/// Every schedule `from_hparams` builds, by name: the only list of their names.
pub static SCHEDULERS: LazyLock<Registry<Builder>> = LazyLock::new(|| {
    Registry::<Builder>::new("lr scheduler")
        .with("none", |hp, lr| scheduled(hp, lr, None))
        .with("step", |hp, lr| {
            let step_size = decay_steps(hp, "step")?;
            scheduled(
                hp,
                lr,
                Some(Decay::Step {
                    step_size,
                    gamma: gamma(hp)?,
                }),
            )
        })
        .with("multi_step", |hp, lr| {
            let decay = Decay::MultiStep {
                milestones: milestones(hp)?,
                gamma: gamma(hp)?,
            };
            scheduled(hp, lr, Some(decay))
        })
        .with("cosine", |hp, lr| {
            let decay = Decay::Cosine {
                t_max: decay_steps(hp, "cosine")?,
                eta_min: hp.get_or("lr_decay_min_lr", 1e-5)?,
            };
            scheduled(hp, lr, Some(decay))
        })
        .with("exponential", |hp, lr| {
            scheduled(hp, lr, Some(Decay::Exponential { gamma: gamma(hp)? }))
        })
        .with("one_cycle", one_cycle)
        .with("plateau", plateau)
});

/// `lr_decay_steps` of `schedule`: at least 1, as PyTorch's StepLR, CosineAnnealingLR and
/// OneCycleLR require.
fn decay_steps(hp: &HParams, schedule: &str) -> Result<u64> {
    match hp.get_or::<u64>("lr_decay_steps", 20)? {
        0 => Err(Error::HParam {
            key: "lr_decay_steps".into(),
            message: format!("the {schedule} schedule needs at least 1 step, got 0"),
        }),
        n => Ok(n),
    }
}

/// The decay factor of step, multi_step and exponential: `lr_decay_rate`, default 0.5.
fn gamma(hp: &HParams) -> Result<f64> {
    hp.get_or("lr_decay_rate", 0.5).map_err(Into::into)
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

fn scheduling(hp: &HParams) -> Result<(Interval, usize)> {
    Ok((
        hp.get_or("lr_interval", Interval::Epoch)?,
        hp.get_or::<usize>("lr_frequency", 1)?.max(1),
    ))
}

/// A decay (or none) after the optional linear warmup.
fn scheduled(hp: &HParams, lr: f64, decay: Option<Decay>) -> Result<Option<SchedulerConfig>> {
    let warmup_steps = hp.get_or::<u64>("warmup_steps", 0)?;
    let decay = match decay {
        None if warmup_steps == 0 => return Ok(None),
        None => Decay::Constant,
        Some(d) => d,
    };
    let start_factor: f64 = hp.get_or("warmup_start_factor", 0.01)?;
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
    let (interval, frequency) = scheduling(hp)?;
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(Scheduled::new(lr, decay, Some(warmup))),
        interval,
        frequency,
        monitor: None,
    }))
}

fn one_cycle(hp: &HParams, lr: f64) -> Result<Option<SchedulerConfig>> {
    let total = decay_steps(hp, "one_cycle")?;
    let (interval, frequency) = scheduling(hp)?;
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(OneCycle::new(lr, total)),
        interval,
        frequency,
        monitor: None,
    }))
}

fn plateau(hp: &HParams, lr: f64) -> Result<Option<SchedulerConfig>> {
    let vals = hp.get_list("val_datasets")?;
    let default_key = if vals.len() > 1 {
        format!("val_loss/{}", vals[0])
    } else {
        "val_loss".into()
    };
    let mut p = ReduceOnPlateau::new(lr, hp.get_or("plateau_mode", Mode::Min)?);
    // torch's ReduceLROnPlateau factor is 0.1, unlike the other schedules' 0.5.
    p.factor = hp.get_or("lr_decay_rate", 0.1)?;
    p.patience = hp.get_or("plateau_patience", 10)?;
    p.threshold = hp.get_or("plateau_threshold", 1e-4)?;
    p.cooldown = hp.get_or("plateau_cooldown", 0)?;
    p.min_lr = hp.get_or("lr_decay_min_lr", 0.0)?;
    let monitor = hp.get_or("plateau_monitor", default_key)?;
    let (_, frequency) = scheduling(hp)?;
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(p),
        interval: Interval::Epoch,
        frequency,
        monitor: Some(monitor),
    }))
}

/// Every hyperparameter key `from_hparams` reads.
pub const KEYS: &[&str] = &[
    "lr_scheduler",
    "lr",
    "lr_interval",
    "lr_frequency",
    "lr_decay_steps",
    "lr_decay_rate",
    "lr_decay_min_lr",
    "milestones",
    "warmup_steps",
    "warmup_start_factor",
    "val_datasets",
    "plateau_mode",
    "plateau_patience",
    "plateau_threshold",
    "plateau_cooldown",
    "plateau_monitor",
];

/// Builds the schedule named by `lr_scheduler` (default `none`) for a base rate of `lr`.
///
/// Keys, as in the template: `lr_decay_steps` (20; step size for `step`, `T_max` for `cosine`),
/// `lr_decay_rate` (`gamma`: 0.5, or torch's 0.1 for `plateau`), `lr_decay_min_lr` (1e-5;
/// `eta_min` for cosine), `milestones` (for `multi_step`), `warmup_steps` (0) and
/// `warmup_start_factor` (0.01), and `lr_interval` (`epoch` or `step`, default `epoch`) with
/// `lr_frequency` (1). `none` with warmup is warmup alone. `one_cycle` peaks at `lr` over
/// `lr_decay_steps` scheduler steps. `plateau` cuts by `lr_decay_rate` after `plateau_patience`
/// (10) epochs without a relative improvement of `plateau_threshold` (1e-4) in `plateau_monitor`
/// (default `val_loss`, or `val_loss/<first set>` with several validation sets), `plateau_mode`
/// (`min`), `plateau_cooldown` (0), floor `lr_decay_min_lr`.
pub fn from_hparams(hp: &HParams) -> Result<Option<SchedulerConfig>> {
    let name = hp.get_or::<String>("lr_scheduler", "none".into())?;
    let build = SCHEDULERS.get(&name)?;
    build(hp, hp.get_or("lr", 1e-3)?)
}
