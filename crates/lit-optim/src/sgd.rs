//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as
//! `torch.optim.SGD`.

use std::collections::BTreeMap;

use candle::{backprop::GradStore, Shape, Tensor, Var};

use super::fused::{self, on_host};
use super::{
    check_range, resolve_groups, Group, LearningRate, Optimizer, OptimizerState, ParamGroup,
};
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
    lr: LearningRate,
    momentum_buffers: BTreeMap<String, Buffer>,
}

/// A momentum buffer: a host vector updated in place for f32 CPU parameters, a tensor elsewhere.
enum Buffer {
    Host(Vec<f32>, Shape),
    Tensor(Tensor),
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
            lr: LearningRate::new(config.lr),
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
        let c = SgdConfig {
            lr: self.lr.get(),
            ..self.config
        };
        for (name, var, lr, weight_decay) in self.groups.iter().flat_map(|g| {
            g.params
                .iter()
                .map(move |(n, v)| (n, v, c.lr * g.lr_scale, g.weight_decay))
        }) {
            let Some(grad) = grads.get(var) else { continue };
            if on_host(var) {
                let buffer = self.momentum_buffers.get_mut(name);
                let first = buffer.is_none();
                let mut fresh = Vec::new();
                let state = match (c.momentum != 0.0, buffer) {
                    (false, _) => vec![],
                    (true, Some(Buffer::Host(b, _))) => vec![&mut b[..]],
                    (true, Some(Buffer::Tensor(_))) => {
                        return Err(Error::Invalid(format!(
                            "SGD: the momentum buffer of {name} is a tensor, the parameter is on the host"
                        )))
                    }
                    (true, None) => {
                        fresh = vec![0f32; var.elem_count()];
                        vec![&mut fresh[..]]
                    }
                };
                fused::apply(
                    name,
                    var,
                    grad,
                    state,
                    host_update(c, lr, weight_decay, first),
                )?;
                if c.momentum != 0.0 && first {
                    self.momentum_buffers
                        .insert(name.clone(), Buffer::Host(fresh, var.shape().clone()));
                }
                continue;
            }
            // A variable's gradient still points into the forward graph; detach everything the
            // update touches so that stored state never keeps a step's activations alive.
            let (grad, p) = (
                super::widen(grad.detach(), var)?,
                super::widen(var.as_tensor().detach(), var)?,
            );
            let mut g = if weight_decay != 0.0 {
                (grad + p.affine(weight_decay, 0.0)?)?
            } else {
                grad
            };
            if c.momentum != 0.0 {
                let buf = match self.momentum_buffers.get(name) {
                    None => g.copy()?,
                    Some(Buffer::Tensor(b)) => {
                        (b.affine(c.momentum, 0.0)? + g.affine(1.0 - c.dampening, 0.0)?)?
                    }
                    Some(Buffer::Host(..)) => {
                        return Err(Error::Invalid(format!(
                        "SGD: the momentum buffer of {name} is on the host, the parameter is not"
                    )))
                    }
                };
                g = if c.nesterov {
                    (g + buf.affine(c.momentum, 0.0)?)?
                } else {
                    buf.clone()
                };
                self.momentum_buffers
                    .insert(name.clone(), Buffer::Tensor(buf));
            }
            super::set_param(var, &(p - g.affine(lr, 0.0)?)?)?;
        }
        Ok(())
    }

    fn lr(&self) -> &LearningRate {
        &self.lr
    }

    fn state(&self) -> OptimizerState {
        OptimizerState {
            tensors: self
                .momentum_buffers
                .iter()
                .map(|(k, v)| {
                    let t = match v {
                        Buffer::Tensor(t) => t.clone(),
                        Buffer::Host(b, shape) => fused::to_tensor(b, shape),
                    };
                    (format!("momentum_buffer.{k}"), t)
                })
                .collect(),
            meta: serde_json::json!({ "lr": self.lr.get() }),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let mut buffers = BTreeMap::new();
        for (name, var) in self.groups.iter().flat_map(|g| g.params.iter()) {
            let Some(t) = state.tensors.get(&format!("momentum_buffer.{name}")) else {
                continue;
            };
            let buffer = if on_host(var) {
                Buffer::Host(
                    fused::from_tensor("momentum buffer", name, t, var)?,
                    var.shape().clone(),
                )
            } else {
                fused::check_shape("momentum buffer", name, t, var)?;
                Buffer::Tensor(
                    t.to_device(var.device())?
                        .to_dtype(super::state_dtype(var))?,
                )
            };
            buffers.insert(name.clone(), buffer);
        }
        self.momentum_buffers = buffers;
        super::restore_lr(&self.lr, &state.meta)?;
        Ok(())
    }
}

/// SGD's update of a chunk of parameter `p` and gradient `g`, with the momentum buffer as the
/// only state when there is momentum; `first` starts the buffer at the gradient, as torch does.
fn host_update(c: SgdConfig, lr: f64, weight_decay: f64, first: bool) -> impl fused::Update {
    let (lr, wd) = (lr as f32, weight_decay as f32);
    let (momentum, damp) = (c.momentum as f32, (1.0 - c.dampening) as f32);
    let nesterov = c.nesterov;
    move |p: &mut [f32], g: &[f32], state: &mut [&mut [f32]]| match state {
        [] => {
            for (p, g) in p.iter_mut().zip(g) {
                *p -= lr * (g + wd * *p);
            }
        }
        [buf] => {
            for ((p, g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let g = g + wd * *p;
                *b = if first { g } else { momentum * *b + damp * g };
                let d = if nesterov { g + momentum * *b } else { *b };
                *p -= lr * d;
            }
        }
        _ => unreachable!("SGD's state is at most a momentum buffer"),
    }
}
