//! Adam (L2 weight decay, AMSGrad) and AdamW (decoupled weight decay), as `torch.optim.Adam` and
//! `torch.optim.AdamW`.

use std::collections::BTreeMap;

use candle::{backprop::GradStore, Tensor, Var};

use super::{check_range, resolve_groups, Group, Optimizer, OptimizerState, ParamGroup};
use crate::Result;

/// The arguments of `torch.optim.Adam` / `AdamW`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Weight decay: an L2 term in the gradient for Adam, a decoupled shrink for AdamW.
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// AdamW's decoupled weight decay instead of Adam's L2 penalty.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    /// torch's `Adam` defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            decoupled_weight_decay: false,
        }
    }
}

#[derive(Clone)]
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

/// Adam or AdamW over named parameters; moments and step counts are saveable state.
pub struct Adam {
    groups: Vec<Group>,
    config: AdamConfig,
    moments: BTreeMap<String, Moments>,
}

impl Adam {
    /// Adam over `params`; fails on out-of-range arguments.
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// Adam over parameter groups with their own learning-rate scale and weight decay.
    pub fn with_groups(groups: Vec<ParamGroup>, config: AdamConfig) -> Result<Self> {
        check_range("lr", config.lr, config.lr >= 0.0, "a learning rate >= 0")?;
        check_range(
            "beta1",
            config.beta1,
            (0.0..1.0).contains(&config.beta1),
            "a value in [0, 1)",
        )?;
        check_range(
            "beta2",
            config.beta2,
            (0.0..1.0).contains(&config.beta2),
            "a value in [0, 1)",
        )?;
        check_range("eps", config.eps, config.eps >= 0.0, "eps >= 0")?;
        check_range(
            "weight_decay",
            config.weight_decay,
            config.weight_decay >= 0.0,
            "weight_decay >= 0",
        )?;
        Ok(Self {
            groups: resolve_groups(groups, config.weight_decay)?,
            config,
            moments: BTreeMap::new(),
        })
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &str {
        if self.config.decoupled_weight_decay {
            "AdamW"
        } else {
            "Adam"
        }
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (name, var, lr, wd) in self.groups.iter().flat_map(|g| {
            g.params
                .iter()
                .map(move |(n, v)| (n, v, c.lr * g.lr_scale, g.weight_decay))
        }) {
            let Some(grad) = grads.get(var) else { continue };
            // A variable's gradient still points into the forward graph; detach everything the
            // update touches so that stored moments never keep a step's activations alive.
            let (grad, mut p) = (grad.detach(), var.as_tensor().detach());
            let g = if wd != 0.0 && !c.decoupled_weight_decay {
                (grad + p.affine(wd, 0.0)?)?
            } else {
                grad
            };
            if wd != 0.0 && c.decoupled_weight_decay {
                p = p.affine(1.0 - lr * wd, 0.0)?;
            }
            let m = match self.moments.get(name) {
                Some(m) => m.clone(),
                None => Moments {
                    step: 0,
                    exp_avg: g.zeros_like()?,
                    exp_avg_sq: g.zeros_like()?,
                    max_exp_avg_sq: c.amsgrad.then(|| g.zeros_like()).transpose()?,
                },
            };
            let step = m.step + 1;
            let exp_avg = (m.exp_avg.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
            let exp_avg_sq =
                (m.exp_avg_sq.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            let max_exp_avg_sq = match m.max_exp_avg_sq {
                Some(prev) => Some(prev.maximum(&exp_avg_sq)?),
                None => None,
            };
            let bc1 = 1.0 - c.beta1.powi(step as i32);
            let bc2 = 1.0 - c.beta2.powi(step as i32);
            let second = max_exp_avg_sq.as_ref().unwrap_or(&exp_avg_sq);
            let denom = second.sqrt()?.affine(1.0 / bc2.sqrt(), c.eps)?;
            let update = (exp_avg.affine(lr / bc1, 0.0)? / denom)?;
            var.set(&(p - update)?)?;
            self.moments.insert(
                name.clone(),
                Moments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                    max_exp_avg_sq,
                },
            );
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn state(&self) -> OptimizerState {
        let mut tensors = BTreeMap::new();
        let mut steps = serde_json::Map::new();
        for (name, m) in &self.moments {
            tensors.insert(format!("exp_avg.{name}"), m.exp_avg.clone());
            tensors.insert(format!("exp_avg_sq.{name}"), m.exp_avg_sq.clone());
            if let Some(max) = &m.max_exp_avg_sq {
                tensors.insert(format!("max_exp_avg_sq.{name}"), max.clone());
            }
            steps.insert(name.clone(), m.step.into());
        }
        OptimizerState {
            tensors,
            meta: serde_json::json!({ "lr": self.config.lr, "step": steps }),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let mut moments = BTreeMap::new();
        for (name, _) in self.groups.iter().flat_map(|g| g.params.iter()) {
            let get = |buf: &str| state.tensors.get(&format!("{buf}.{name}")).cloned();
            let (Some(exp_avg), Some(exp_avg_sq)) = (get("exp_avg"), get("exp_avg_sq")) else {
                continue;
            };
            let step = state
                .meta
                .get("step")
                .and_then(|s| s.get(name))
                .and_then(|s| s.as_u64())
                .unwrap_or(0);
            moments.insert(
                name.clone(),
                Moments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                    max_exp_avg_sq: get("max_exp_avg_sq"),
                },
            );
        }
        self.moments = moments;
        super::restore_lr(&mut self.config.lr, &state.meta);
        Ok(())
    }
}
