//! Adam (L2 weight decay, AMSGrad) and AdamW (decoupled weight decay), as `torch.optim.Adam` and
//! `torch.optim.AdamW`.

use std::collections::BTreeMap;

use candle::{backprop::GradStore, Shape, Tensor, Var};

use super::fused::{self, on_host};
use super::{
    check_range, resolve_groups, Group, LearningRate, Optimizer, OptimizerState, ParamGroup,
};
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

/// One parameter's moments and step count.
#[derive(Clone)]
struct Moments {
    step: u64,
    buffers: Buffers,
}

#[derive(Clone)]
enum Buffers {
    /// For f32 parameters on the CPU: host vectors that the fused update writes in place.
    Host {
        shape: Shape,
        exp_avg: Vec<f32>,
        exp_avg_sq: Vec<f32>,
        max_exp_avg_sq: Option<Vec<f32>>,
    },
    /// Elsewhere: tensors on the parameter's device, updated with tensor arithmetic.
    Tensors {
        exp_avg: Tensor,
        exp_avg_sq: Tensor,
        max_exp_avg_sq: Option<Tensor>,
    },
}

/// The scalars of one update, in the order PyTorch applies them.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    lr: f64,
    weight_decay: f64,
    decoupled: bool,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `lr / (1 - beta1^t)`.
    step_size: f64,
    /// `1 / sqrt(1 - beta2^t)`.
    inv_bc2_sqrt: f64,
}

/// Adam or AdamW over named parameters; moments and step counts are saveable state.
pub struct Adam {
    groups: Vec<Group>,
    config: AdamConfig,
    lr: LearningRate,
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
            lr: LearningRate::new(config.lr),
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
        let c = AdamConfig {
            lr: self.lr.get(),
            ..self.config
        };
        for (name, var, lr, wd) in self.groups.iter().flat_map(|g| {
            g.params
                .iter()
                .map(move |(n, v)| (n, v, c.lr * g.lr_scale, g.weight_decay))
        }) {
            let Some(grad) = grads.get(var) else { continue };
            // No key is cloned on the steps after the first.
            if !self.moments.contains_key(name) {
                let buffers = Buffers::zeros(var, c.amsgrad)?;
                self.moments
                    .insert(name.clone(), Moments { step: 0, buffers });
            }
            let Some(m) = self.moments.get_mut(name) else {
                continue;
            };
            // The step count advances only once the update has been applied.
            let step = m.step + 1;
            let k = Coefficients {
                lr,
                weight_decay: wd,
                decoupled: c.decoupled_weight_decay,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                step_size: lr / (1.0 - c.beta1.powi(step as i32)),
                inv_bc2_sqrt: 1.0 / (1.0 - c.beta2.powi(step as i32)).sqrt(),
            };
            match &mut m.buffers {
                Buffers::Host {
                    exp_avg,
                    exp_avg_sq,
                    max_exp_avg_sq,
                    ..
                } => {
                    let mut state = vec![&mut exp_avg[..], &mut exp_avg_sq[..]];
                    state.extend(max_exp_avg_sq.as_deref_mut());
                    fused::apply(name, var, grad, state, host_update(k))?;
                }
                Buffers::Tensors {
                    exp_avg,
                    exp_avg_sq,
                    max_exp_avg_sq,
                } => tensor_step(var, grad, k, exp_avg, exp_avg_sq, max_exp_avg_sq)?,
            }
            m.step = step;
        }
        Ok(())
    }

    fn lr(&self) -> &LearningRate {
        &self.lr
    }

    fn state(&self) -> OptimizerState {
        let mut tensors = BTreeMap::new();
        let mut steps = serde_json::Map::new();
        for (name, m) in &self.moments {
            let (exp_avg, exp_avg_sq, max) = m.buffers.tensors();
            tensors.insert(format!("exp_avg.{name}"), exp_avg);
            tensors.insert(format!("exp_avg_sq.{name}"), exp_avg_sq);
            if let Some(max) = max {
                tensors.insert(format!("max_exp_avg_sq.{name}"), max);
            }
            steps.insert(name.clone(), m.step.into());
        }
        OptimizerState {
            tensors,
            meta: serde_json::json!({ "lr": self.lr.get(), "step": steps }),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let mut moments = BTreeMap::new();
        for (name, var) in self.groups.iter().flat_map(|g| g.params.iter()) {
            let get = |buf: &str| state.tensors.get(&format!("{buf}.{name}")).cloned();
            let (Some(exp_avg), Some(exp_avg_sq)) = (get("exp_avg"), get("exp_avg_sq")) else {
                // A parameter that has taken steps has moments: without them the resumed run
                // would silently start them from zero.
                if state.meta.get("step").and_then(|s| s.get(name)).is_some() {
                    return Err(crate::Error::Invalid(format!(
                        "optimizer state: {name} has a step count but its moments (exp_avg.{name}, \
                         exp_avg_sq.{name}) are missing"
                    )));
                }
                continue;
            };
            for (what, t) in [("exp_avg_sq", &exp_avg_sq), ("exp_avg", &exp_avg)] {
                let v = t.to_dtype(candle::DType::F32)?.flatten_all()?;
                let (lo, hi) = (v.min(0)?.to_scalar::<f32>()?, v.max(0)?.to_scalar::<f32>()?);
                let bad = !lo.is_finite() || !hi.is_finite() || (what == "exp_avg_sq" && lo < 0.0);
                if v.elem_count() > 0 && bad {
                    return Err(crate::Error::Invalid(format!(
                        "optimizer state: {what}.{name} holds values in [{lo}, {hi}]; expected \
                         finite values{}",
                        if what == "exp_avg_sq" {
                            " >= 0 (a mean of squares)"
                        } else {
                            ""
                        }
                    )));
                }
            }
            let step = state
                .meta
                .get("step")
                .and_then(|s| s.get(name))
                .and_then(|s| s.as_u64())
                .ok_or_else(|| {
                    crate::Error::Invalid(format!(
                        "optimizer state: moments of {name} without a step count"
                    ))
                })?;
            let buffers = Buffers::Tensors {
                exp_avg,
                exp_avg_sq,
                max_exp_avg_sq: get("max_exp_avg_sq"),
            }
            .placed_for(name, var)?;
            moments.insert(name.clone(), Moments { step, buffers });
        }
        self.moments = moments;
        super::restore_lr(&self.lr, &state.meta)?;
        Ok(())
    }
}

impl Buffers {
    /// Zero moments for `var`, held where its update runs.
    fn zeros(var: &Var, amsgrad: bool) -> Result<Self> {
        Ok(if on_host(var) {
            let n = var.elem_count();
            Buffers::Host {
                shape: var.shape().clone(),
                exp_avg: vec![0.0; n],
                exp_avg_sq: vec![0.0; n],
                max_exp_avg_sq: amsgrad.then(|| vec![0.0; n]),
            }
        } else {
            let z = || super::widen(var.as_tensor().zeros_like()?, var);
            Buffers::Tensors {
                exp_avg: z()?,
                exp_avg_sq: z()?,
                max_exp_avg_sq: amsgrad.then(z).transpose()?,
            }
        })
    }

    /// The moments as tensors (copies of host vectors), for saving.
    fn tensors(&self) -> (Tensor, Tensor, Option<Tensor>) {
        match self {
            Buffers::Tensors {
                exp_avg,
                exp_avg_sq,
                max_exp_avg_sq,
            } => (exp_avg.clone(), exp_avg_sq.clone(), max_exp_avg_sq.clone()),
            Buffers::Host {
                shape,
                exp_avg,
                exp_avg_sq,
                max_exp_avg_sq,
            } => {
                let t = |v: &Vec<f32>| fused::to_tensor(v, shape);
                (t(exp_avg), t(exp_avg_sq), max_exp_avg_sq.as_ref().map(t))
            }
        }
    }

    /// Loaded tensors moved where `var`'s update runs, checked against its shape.
    fn placed_for(self, name: &str, var: &Var) -> Result<Self> {
        let Buffers::Tensors {
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
        } = self
        else {
            return Ok(self);
        };
        for t in [Some(&exp_avg), Some(&exp_avg_sq), max_exp_avg_sq.as_ref()]
            .into_iter()
            .flatten()
        {
            fused::check_shape("moment", name, t, var)?;
        }
        if !on_host(var) {
            let to = |t: Tensor| t.to_device(var.device())?.to_dtype(super::state_dtype(var));
            return Ok(Buffers::Tensors {
                exp_avg: to(exp_avg)?,
                exp_avg_sq: to(exp_avg_sq)?,
                max_exp_avg_sq: max_exp_avg_sq.map(to).transpose()?,
            });
        }
        let host = |t: Tensor| fused::from_tensor("moment", name, &t, var);
        Ok(Buffers::Host {
            shape: var.shape().clone(),
            exp_avg: host(exp_avg)?,
            exp_avg_sq: host(exp_avg_sq)?,
            max_exp_avg_sq: max_exp_avg_sq.map(host).transpose()?,
        })
    }
}

/// Adam's update of a chunk of parameter `p`, gradient `g` and state `[m, v]` or, with AMSGrad,
/// `[m, v, max_v]`, in f32.
fn host_update(k: Coefficients) -> impl fused::Update {
    // Branch-free over elements: L2 decay adds `wd * p` to the gradient (0 when decoupled),
    // decoupled decay scales the parameter first (by 1 otherwise).
    let (l2, shrink) = if k.decoupled {
        (0.0, (1.0 - k.lr * k.weight_decay) as f32)
    } else {
        (k.weight_decay as f32, 1.0)
    };
    let (b1, b2) = (k.beta1 as f32, k.beta2 as f32);
    let (c1, c2) = ((1.0 - k.beta1) as f32, (1.0 - k.beta2) as f32);
    let (step_size, inv_bc2, eps) = (k.step_size as f32, k.inv_bc2_sqrt as f32, k.eps as f32);
    move |p: &mut [f32], g: &[f32], state: &mut [&mut [f32]]| match state {
        [m, v] => {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g + l2 * *p;
                *m = *m * b1 + g * c1;
                *v = *v * b2 + g * g * c2;
                *p = *p * shrink - step_size * *m / (v.sqrt() * inv_bc2 + eps);
            }
        }
        [m, v, vmax] => {
            let moments = p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
            for ((((p, g), m), v), vm) in moments.zip(vmax.iter_mut()) {
                let g = g + l2 * *p;
                *m = *m * b1 + g * c1;
                *v = *v * b2 + g * g * c2;
                *vm = vm.max(*v);
                *p = *p * shrink - step_size * *m / (vm.sqrt() * inv_bc2 + eps);
            }
        }
        _ => unreachable!("Adam's state is two or three buffers"),
    }
}

/// Adam's update with tensor arithmetic, for parameters off the CPU or not in f32.
fn tensor_step(
    var: &Var,
    grad: &Tensor,
    k: Coefficients,
    exp_avg: &mut Tensor,
    exp_avg_sq: &mut Tensor,
    max_exp_avg_sq: &mut Option<Tensor>,
) -> Result<()> {
    // A variable's gradient still points into the forward graph; detach everything the update
    // touches so that stored moments never keep a step's activations alive.
    let (grad, mut p) = (
        super::widen(grad.detach(), var)?,
        super::widen(var.as_tensor().detach(), var)?,
    );
    let g = if k.weight_decay != 0.0 && !k.decoupled {
        (grad + p.affine(k.weight_decay, 0.0)?)?
    } else {
        grad
    };
    if k.weight_decay != 0.0 && k.decoupled {
        p = p.affine(1.0 - k.lr * k.weight_decay, 0.0)?;
    }
    *exp_avg = (exp_avg.affine(k.beta1, 0.0)? + g.affine(1.0 - k.beta1, 0.0)?)?;
    *exp_avg_sq = (exp_avg_sq.affine(k.beta2, 0.0)? + g.sqr()?.affine(1.0 - k.beta2, 0.0)?)?;
    if let Some(max) = max_exp_avg_sq {
        *max = max.maximum(&*exp_avg_sq)?;
    }
    let second = max_exp_avg_sq.as_ref().unwrap_or(exp_avg_sq);
    let denom = second.sqrt()?.affine(k.inv_bc2_sqrt, k.eps)?;
    let update = (exp_avg.affine(k.step_size, 0.0)? / denom)?;
    super::set_param(var, &(p - update)?)
}
