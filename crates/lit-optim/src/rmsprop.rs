//! RMSprop with momentum, centring and weight decay, as `torch.optim.RMSprop`.

use std::collections::BTreeMap;

use candle::{backprop::GradStore, Tensor, Var};

use super::{
    check_range, resolve_groups, Group, LearningRate, Optimizer, OptimizerState, ParamGroup,
};
use crate::Result;

/// `torch.optim.RMSprop`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// Normalise by the variance estimate instead of the second moment.
    pub centered: bool,
}

impl Default for RmsPropConfig {
    /// torch's defaults: lr 1e-2, alpha 0.99, eps 1e-8.
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

/// RMSprop over named parameters; its averages and momentum buffers are saveable state.
pub struct RmsProp {
    groups: Vec<Group>,
    config: RmsPropConfig,
    lr: LearningRate,
    state: BTreeMap<String, Tensor>,
}

impl RmsProp {
    /// RMSprop over `params`.
    pub fn new(params: Vec<(String, Var)>, config: RmsPropConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// RMSprop over parameter groups.
    pub fn with_groups(groups: Vec<ParamGroup>, config: RmsPropConfig) -> Result<Self> {
        check_range("lr", config.lr, config.lr >= 0.0, "a learning rate >= 0")?;
        check_range("alpha", config.alpha, config.alpha >= 0.0, "alpha >= 0")?;
        check_range(
            "momentum",
            config.momentum,
            config.momentum >= 0.0,
            "momentum >= 0",
        )?;
        Ok(Self {
            groups: resolve_groups(groups, config.weight_decay)?,
            lr: LearningRate::new(config.lr),
            config,
            state: BTreeMap::new(),
        })
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &str {
        "RMSprop"
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = RmsPropConfig {
            lr: self.lr.get(),
            ..self.config
        };
        for g in &self.groups {
            let lr = c.lr * g.lr_scale;
            for (name, var) in &g.params {
                let Some(grad) = grads.get(var) else { continue };
                let (grad, p) = (
                    super::widen(grad.detach(), var)?,
                    super::widen(var.as_tensor().detach(), var)?,
                );
                let grad = if g.weight_decay != 0.0 {
                    (grad + p.affine(g.weight_decay, 0.0)?)?
                } else {
                    grad
                };
                let key = |buf: &str| format!("{buf}.{name}");
                let prev = |buf: &str| -> Result<Tensor> {
                    Ok(match self.state.get(&key(buf)) {
                        Some(t) => t.clone(),
                        None => grad.zeros_like()?,
                    })
                };
                let (sa_prev, ga_prev, mb_prev) = (
                    prev("square_avg")?,
                    prev("grad_avg")?,
                    prev("momentum_buffer")?,
                );
                let square_avg =
                    (sa_prev.affine(c.alpha, 0.0)? + grad.sqr()?.affine(1.0 - c.alpha, 0.0)?)?;
                let avg = if c.centered {
                    let grad_avg =
                        (ga_prev.affine(c.alpha, 0.0)? + grad.affine(1.0 - c.alpha, 0.0)?)?;
                    let avg = (&square_avg - grad_avg.sqr()?)?
                        .sqrt()?
                        .affine(1.0, c.eps)?;
                    self.state.insert(key("grad_avg"), grad_avg);
                    avg
                } else {
                    square_avg.sqrt()?.affine(1.0, c.eps)?
                };
                let update = if c.momentum > 0.0 {
                    let buf = (mb_prev.affine(c.momentum, 0.0)? + (&grad / &avg)?)?;
                    self.state.insert(key("momentum_buffer"), buf.clone());
                    buf
                } else {
                    (&grad / &avg)?
                };
                self.state.insert(key("square_avg"), square_avg);
                super::set_param(var, &(p - update.affine(lr, 0.0)?)?)?;
            }
        }
        Ok(())
    }

    fn lr(&self) -> &LearningRate {
        &self.lr
    }

    fn state(&self) -> OptimizerState {
        OptimizerState {
            tensors: self.state.clone(),
            meta: serde_json::json!({ "lr": self.lr.get() }),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        self.state = state.tensors;
        super::restore_lr(&self.lr, &state.meta)?;
        Ok(())
    }
}
