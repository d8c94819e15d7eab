//! Learning-rate schedules: step, multi-step, cosine and exponential decay, each with an optional
//! linear warmup, matching `torch.optim.lr_scheduler`.
//!
//! A schedule is a function of how many times it has been stepped, so its state is one counter.
//! With warmup the schedule runs as torch's `SequentialLR([LinearLR, schedule], [warmup_steps])`:
//! the decay starts from the base rate once the warmup is over.

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

/// The step counter `t` of a counted schedule's saved state.
fn step_count(state: &serde_json::Value, who: &str) -> Result<u64> {
    state
        .get("t")
        .and_then(|t| t.as_u64())
        .ok_or_else(|| Error::Invalid(format!("{who} state without a step count: {state}")))
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
        self.t = step_count(state, "scheduler")?;
        Ok(())
    }
}

/// The one-cycle policy, as `torch.optim.lr_scheduler.OneCycleLR` with cosine annealing: from
/// `max_lr / div_factor` up to `max_lr` over the first `pct_start` of `total_steps`, then down to
/// `max_lr / div_factor / final_div_factor`.
#[derive(Debug, Clone)]
pub struct OneCycle {
    /// The peak learning rate.
    pub max_lr: f64,
    /// Steps in the whole cycle.
    pub total_steps: u64,
    /// The fraction of the cycle spent increasing.
    pub pct_start: f64,
    /// `max_lr / initial_lr`.
    pub div_factor: f64,
    /// `initial_lr / min_lr`.
    pub final_div_factor: f64,
    t: u64,
}

impl OneCycle {
    /// torch's defaults: `pct_start` 0.3, `div_factor` 25, `final_div_factor` 1e4.
    pub fn new(max_lr: f64, total_steps: u64) -> Self {
        Self {
            max_lr,
            total_steps: total_steps.max(2),
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            t: 0,
        }
    }

    /// The learning rate after `t` steps (held at the end once the cycle is over).
    pub fn lr_at(&self, t: u64) -> f64 {
        let anneal = |start: f64, end: f64, pct: f64| {
            end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
        };
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let end1 = self.pct_start * self.total_steps as f64 - 1.0;
        let end2 = self.total_steps as f64 - 1.0;
        let t = (t as f64).min(end2);
        if t <= end1 {
            anneal(initial, self.max_lr, t / end1)
        } else {
            anneal(self.max_lr, min, (t - end1) / (end2 - end1))
        }
    }
}

impl LrScheduler for OneCycle {
    fn name(&self) -> &str {
        "one_cycle"
    }
    fn lr(&self) -> f64 {
        self.lr_at(self.t)
    }
    fn step(&mut self, _metric: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "t": self.t })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.t = step_count(state, "one_cycle")?;
        Ok(())
    }
}

/// Whether a lower or a higher monitored value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
}

impl Mode {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Mode::Min => a < b,
            Mode::Max => a > b,
        }
    }
}

/// Cuts the learning rate when a monitored value stops improving, as `ReduceLROnPlateau` with
/// `threshold_mode='rel'`.
#[derive(Debug, Clone)]
pub struct ReduceOnPlateau {
    lr: f64,
    /// Lower or higher is better.
    pub mode: Mode,
    /// Multiplies the rate on each cut.
    pub factor: f64,
    /// Steps without improvement tolerated before a cut.
    pub patience: u64,
    /// Relative improvement that counts.
    pub threshold: f64,
    /// Steps after a cut during which no new cut happens.
    pub cooldown: u64,
    /// The floor.
    pub min_lr: f64,
    best: f64,
    num_bad: u64,
    cooldown_counter: u64,
}

impl ReduceOnPlateau {
    /// torch's defaults but for `lr`: factor 0.1, patience 10, threshold 1e-4, no cooldown, no floor.
    pub fn new(lr: f64, mode: Mode) -> Self {
        let best = if mode == Mode::Min {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
        Self {
            lr,
            mode,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            best,
            num_bad: 0,
            cooldown_counter: 0,
        }
    }

    fn is_better(&self, v: f64) -> bool {
        match self.mode {
            Mode::Min => v < self.best * (1.0 - self.threshold),
            Mode::Max => v > self.best * (1.0 + self.threshold),
        }
    }
}

impl LrScheduler for ReduceOnPlateau {
    fn name(&self) -> &str {
        "plateau"
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn step(&mut self, metric: Option<f64>) -> f64 {
        let Some(v) = metric else { return self.lr };
        if self.is_better(v) {
            self.best = v;
            self.num_bad = 0;
        } else {
            self.num_bad += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad = 0;
        }
        if self.num_bad > self.patience {
            let new = (self.lr * self.factor).max(self.min_lr);
            if self.lr - new > 1e-8 {
                self.lr = new;
            }
            self.cooldown_counter = self.cooldown;
            self.num_bad = 0;
        }
        self.lr
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "lr": self.lr, "best": self.best, "num_bad": self.num_bad, "cooldown_counter": self.cooldown_counter })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let f = |k: &str| {
            state
                .get(k)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| Error::Invalid(format!("plateau state without '{k}': {state}")))
        };
        self.lr = f("lr")?;
        // JSON has no infinity: a best that was never set is stored as null.
        self.best = state
            .get("best")
            .and_then(|v| v.as_f64())
            .unwrap_or(self.best);
        self.num_bad = f("num_bad")? as u64;
        self.cooldown_counter = f("cooldown_counter")? as u64;
        Ok(())
    }
}
