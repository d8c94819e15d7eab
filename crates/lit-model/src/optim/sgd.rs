//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as
//! `torch.optim.SGD`.

use std::collections::BTreeMap;

use candle::{backprop::GradStore, Tensor, Var};

use super::{check_range, resolve_groups, Group, Optimizer, OptimizerState, ParamGroup};
use crate::{Error, Result};

/// `torch.optim.SGD`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// SGD over named parameters; its momentum buffers are saveable state.
pub struct Sgd {
    groups: Vec<Group>,
    config: SgdConfig,
    momentum_buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// SGD over `params`; fails on out-of-range arguments.
    pub fn new(params: Vec<(String, Var)>, config: SgdConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// SGD over parameter groups with their own learning-rate scale and weight decay.
    pub fn with_groups(groups: Vec<ParamGroup>, config: SgdConfig) -> Result<Self> {
        check_range("lr", config.lr, config.lr >= 0.0, "a learning rate >= 0")?;
        check_range(
            "momentum",
            config.momentum,
            config.momentum >= 0.0,
            "momentum >= 0",
        )?;
        check_range(
            "weight_decay",
            config.weight_decay,
            config.weight_decay >= 0.0,
            "weight_decay >= 0",
        )?;
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::HParam {
                key: "nesterov".into(),
                message: "Nesterov momentum needs momentum > 0 and dampening = 0".into(),
            });
        }
        Ok(Self {
            groups: resolve_groups(groups, config.weight_decay)?,
            config,
            momentum_buffers: BTreeMap::new(),
        })
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &str {
        "SGD"
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (name, var, lr, weight_decay) in self.groups.iter().flat_map(|g| {
            g.params
                .iter()
                .map(move |(n, v)| (n, v, c.lr * g.lr_scale, g.weight_decay))
        }) {
            let Some(grad) = grads.get(var) else { continue };
            // A variable's gradient still points into the forward graph; detach everything the
            // update touches so that stored state never keeps a step's activations alive.
            let (grad, p) = (grad.detach(), var.as_tensor().detach());
            let mut g = if weight_decay != 0.0 {
                (grad + p.affine(weight_decay, 0.0)?)?
            } else {
                grad
            };
            if c.momentum != 0.0 {
                let buf = match self.momentum_buffers.get(name) {
                    None => g.copy()?,
                    Some(b) => (b.affine(c.momentum, 0.0)? + g.affine(1.0 - c.dampening, 0.0)?)?,
                };
                g = if c.nesterov {
                    (g + buf.affine(c.momentum, 0.0)?)?
                } else {
                    buf.clone()
                };
                self.momentum_buffers.insert(name.clone(), buf);
            }
            var.set(&(p - g.affine(lr, 0.0)?)?)?;
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
        OptimizerState {
            tensors: self
                .momentum_buffers
                .iter()
                .map(|(k, v)| (format!("momentum_buffer.{k}"), v.clone()))
                .collect(),
            meta: serde_json::json!({ "lr": self.config.lr }),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        self.momentum_buffers = state
            .tensors
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("momentum_buffer.")
                    .map(|p| (p.to_string(), v))
            })
            .collect();
        super::restore_lr(&mut self.config.lr, &state.meta);
        Ok(())
    }
}
