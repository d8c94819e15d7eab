//! Learning-rate schedules: step, multi-step, cosine and exponential decay, each with an optional
//! linear warmup, matching `torch.optim.lr_scheduler`.
//!
//! A schedule is a function of how many times it has been stepped, so its state is one counter.
//! With warmup the schedule runs as torch's `SequentialLR([LinearLR, schedule], [warmup_steps])`:
//! the decay starts from the base rate once the warmup is over.

use lit_data::HParams;

use crate::{Error, Result};

/// When the trainer steps a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// After every optimizer step.
    Step,
    /// After every training epoch.
    Epoch,
}

/// A learning-rate schedule the trainer steps.
pub trait LrScheduler: Send {
    /// A short name, such as `cosine`.
    fn name(&self) -> &str;
    /// The learning rate now.
    fn lr(&self) -> f64;
    /// Advances one step and returns the new learning rate; `metric` is the monitored value for
    /// schedules that react to one.
    fn step(&mut self, metric: Option<f64>) -> f64;
    /// The state needed to continue exactly (JSON).
    fn state(&self) -> serde_json::Value;
    /// Restores a state from [`LrScheduler::state`].
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()>;
}

/// A schedule with when to step it, as Lightning's `lr_scheduler_config`.
pub struct SchedulerConfig {
    /// The schedule.
    pub scheduler: Box<dyn LrScheduler>,
    /// Step after every optimizer step or every epoch.
    pub interval: Interval,
    /// Step every `frequency` intervals.
    pub frequency: usize,
    /// The logged key whose value is passed to `step`, for schedules that need one.
    pub monitor: Option<String>,
}

/// The decay after warmup, as a multiple of the base rate at step `t`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decay {
    /// No decay.
    Constant,
    /// `gamma^(t / step_size)`, as `StepLR`.
    Step {
        /// Steps between decays.
        step_size: u64,
        /// Factor per decay.
        gamma: f64,
    },
    /// `gamma^(milestones passed)`, as `MultiStepLR`.
    MultiStep {
        /// Steps at which the rate decays, ascending.
        milestones: Vec<u64>,
        /// Factor per milestone.
        gamma: f64,
    },
    /// Cosine annealing to `eta_min` over `t_max` steps, as `CosineAnnealingLR`.
    Cosine {
        /// Half period in steps.
        t_max: u64,
        /// The floor.
        eta_min: f64,
    },
    /// `gamma^t`, as `ExponentialLR`.
    Exponential {
        /// Factor per step.
        gamma: f64,
    },
}

impl Decay {
    fn lr(&self, base: f64, t: u64) -> f64 {
        match self {
            Decay::Constant => base,
            Decay::Step { step_size, gamma } => base * gamma.powi((t / step_size.max(&1)) as i32),
            Decay::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= t).count() as i32)
            }
            Decay::Cosine { t_max, eta_min } => {
                let t_max = (*t_max).max(1) as f64;
                eta_min
                    + (base - eta_min) * (1.0 + (std::f64::consts::PI * t as f64 / t_max).cos())
                        / 2.0
            }
            Decay::Exponential { gamma } => base * gamma.powi(t as i32),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Decay::Constant => "constant",
            Decay::Step { .. } => "step",
            Decay::MultiStep { .. } => "multi_step",
            Decay::Cosine { .. } => "cosine",
            Decay::Exponential { .. } => "exponential",
        }
    }
}

/// A linear warmup from `start_factor * base` to `base` over `steps` steps, as `LinearLR`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// Warmup length in scheduler steps.
    pub steps: u64,
    /// The multiple of the base rate at step 0.
    pub start_factor: f64,
}

/// A closed-form schedule: optional warmup, then a [`Decay`].
#[derive(Debug, Clone)]
pub struct Scheduled {
    base_lr: f64,
    decay: Decay,
    warmup: Option<Warmup>,
    t: u64,
}

impl Scheduled {
    /// A schedule starting from `base_lr`.
    pub fn new(base_lr: f64, decay: Decay, warmup: Option<Warmup>) -> Self {
        Self {
            base_lr,
            decay,
            warmup: warmup.filter(|w| w.steps > 0),
            t: 0,
        }
    }

    /// The learning rate after `t` steps.
    pub fn lr_at(&self, t: u64) -> f64 {
        match self.warmup {
            Some(w) if t < w.steps => {
                self.base_lr * (w.start_factor + (1.0 - w.start_factor) * t as f64 / w.steps as f64)
            }
            Some(w) => self.decay.lr(self.base_lr, t - w.steps),
            None => self.decay.lr(self.base_lr, t),
        }
    }
}

impl LrScheduler for Scheduled {
    fn name(&self) -> &str {
        self.decay.name()
    }
    fn lr(&self) -> f64 {
        self.lr_at(self.t)
    }
    fn step(&mut self, _metric: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "t": self.t, "base_lr": self.base_lr })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.t = state.get("t").and_then(|t| t.as_u64()).ok_or_else(|| {
            Error::Invalid(format!("scheduler state without a step count: {state}"))
        })?;
        Ok(())
    }
}

/// The schedule names `from_hparams` accepts.
pub const SCHEDULERS: [&str; 5] = ["none", "step", "multi_step", "cosine", "exponential"];

/// Builds the schedule named by `lr_scheduler` (default `none`) for a base rate of `lr`.
///
/// Keys, as in the template: `lr_decay_steps` (20; step size for `step`, `T_max` for `cosine`),
/// `lr_decay_rate` (0.5; `gamma`), `lr_decay_min_lr` (1e-5; `eta_min` for cosine), `milestones`
/// (for `multi_step`), `warmup_steps` (0) and `warmup_start_factor` (0.01), and `lr_interval`
/// (`epoch` or `step`, default `epoch`). `none` with warmup is warmup alone.
pub fn from_hparams(hp: &HParams) -> Result<Option<SchedulerConfig>> {
    let name = hp
        .get_or::<String>("lr_scheduler", "none".into())?
        .to_lowercase();
    let lr = hp.get_or("lr", 1e-3)?;
    let steps = hp.get_or::<u64>("lr_decay_steps", 20)?;
    let gamma = hp.get_or("lr_decay_rate", 0.5)?;
    let warmup_steps = hp.get_or::<u64>("warmup_steps", 0)?;
    let warmup = Warmup {
        steps: warmup_steps,
        start_factor: hp.get_or("warmup_start_factor", 0.01)?,
    };
    let decay = match name.as_str() {
        "none" | "constant" if warmup_steps == 0 => return Ok(None),
        "none" | "constant" => Decay::Constant,
        "step" => Decay::Step {
            step_size: steps.max(1),
            gamma,
        },
        "multi_step" => {
            let milestones: Vec<u64> = hp
                .get_list("milestones")?
                .iter()
                .map(|m| {
                    m.parse().map_err(|_| Error::HParam {
                        key: "milestones".into(),
                        message: format!("expected non-negative integers, got '{m}'"),
                    })
                })
                .collect::<Result<_>>()?;
            let milestones = if milestones.is_empty() {
                hp.get::<Vec<u64>>("milestones")?.unwrap_or_default()
            } else {
                milestones
            };
            Decay::MultiStep { milestones, gamma }
        }
        "cosine" => Decay::Cosine {
            t_max: steps.max(1),
            eta_min: hp.get_or("lr_decay_min_lr", 1e-5)?,
        },
        "exponential" => Decay::Exponential { gamma },
        _ => {
            return Err(Error::UnknownName {
                kind: "lr scheduler",
                name,
                known: SCHEDULERS.to_vec(),
            })
        }
    };
    let interval = hp.get_or("lr_interval", Interval::Epoch)?;
    Ok(Some(SchedulerConfig {
        scheduler: Box::new(Scheduled::new(lr, decay, Some(warmup))),
        interval,
        frequency: 1,
        monitor: None,
    }))
}
