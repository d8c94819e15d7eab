//! Optimizers written here so that their state can be saved and restored, matching PyTorch's
//! `torch.optim` update rules step for step.
//!
//! candle's own optimizers keep their state private (and `candle_nn::AdamW` defaults to a weight
//! decay of 0.01, unlike torch's `Adam`), so lit implements the update rules itself. Scalars such as
//! the learning rate are applied with `affine`, so a step never copies to or from the host.

mod adam;
mod fused;
mod rmsprop;
mod sgd;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle::{backprop::GradStore, DType, Tensor, Var};
use candle_nn::VarMap;

pub use adam::{Adam, AdamConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

pub mod scheduler;

/// Errors are lit-base's: a setting out of range is a `HParam` error named by its config field
/// (which is also its hyperparameter key), a saved state that does not fit is `Invalid`.
pub use lit_base::{Error, Result};

/// An optimizer's saveable state: tensors by name plus JSON for the rest (step counts).
#[derive(Debug, Clone, Default)]
pub struct OptimizerState {
    /// State tensors, named `<buffer>.<parameter>` (for example `exp_avg.model.0.weight`).
    pub tensors: BTreeMap<String, Tensor>,
    /// Everything else, such as per-parameter step counts.
    pub meta: serde_json::Value,
}

/// A dyn-compatible optimizer over named parameters.
pub trait Optimizer: Send {
    /// The optimizer's name as PyTorch spells it (`SGD`, `Adam`, `AdamW`), used in logged keys.
    fn name(&self) -> &str;

    /// Applies one update from the gradients in `grads`; parameters without a gradient are left
    /// alone.
    fn step(&mut self, grads: &GradStore) -> Result<()>;

    /// The optimizer's learning rate: the one copy there is. The trainer sets it from the
    /// schedule; everything that reports it (the trainer state, callbacks) reads a clone of this
    /// handle, so no copy can fall behind.
    fn lr(&self) -> &LearningRate;

    /// The current learning rate.
    fn learning_rate(&self) -> f64 {
        self.lr().get()
    }

    /// Sets the learning rate (schedules call this through the trainer).
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr().set(lr)
    }

    /// The state needed to continue exactly where this optimizer is.
    fn state(&self) -> OptimizerState;

    /// Restores a state produced by [`Optimizer::state`].
    fn load_state(&mut self, state: OptimizerState) -> Result<()>;
}

/// A learning rate shared by the optimizer that owns it and whoever reads it: cloning the handle
/// shares the value, so a schedule's change is seen everywhere at once, without copying.
#[derive(Debug, Clone)]
pub struct LearningRate(Arc<AtomicU64>);

impl LearningRate {
    /// A new rate.
    pub fn new(lr: f64) -> Self {
        Self(Arc::new(AtomicU64::new(lr.to_bits())))
    }

    /// The rate now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Changes the rate for every holder of this handle.
    pub fn set(&self, lr: f64) {
        self.0.store(lr.to_bits(), Ordering::Relaxed)
    }
}

/// Parameters that share a learning-rate scale and weight decay, as a torch param group.
#[derive(Clone)]
pub struct ParamGroup {
    /// The parameters, by name.
    pub params: Vec<(String, Var)>,
    /// This group's learning rate as a multiple of the optimizer's (schedules scale both alike).
    pub lr_scale: f64,
    /// This group's weight decay; `None` takes the optimizer's.
    pub weight_decay: Option<f64>,
}

impl std::fmt::Debug for ParamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamGroup")
            .field(
                "params",
                &self.params.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field("lr_scale", &self.lr_scale)
            .field("weight_decay", &self.weight_decay)
            .finish()
    }
}

impl ParamGroup {
    /// One group of `params` with the optimizer's settings.
    pub fn new(params: Vec<(String, Var)>) -> Self {
        Self {
            params,
            lr_scale: 1.0,
            weight_decay: None,
        }
    }
}

/// A group resolved against the optimizer's defaults.
pub(crate) struct Group {
    pub(crate) params: Vec<(String, Var)>,
    pub(crate) lr_scale: f64,
    pub(crate) weight_decay: f64,
}

pub(crate) fn resolve_groups(groups: Vec<ParamGroup>, weight_decay: f64) -> Result<Vec<Group>> {
    groups
        .into_iter()
        .map(|g| {
            let wd = g.weight_decay.unwrap_or(weight_decay);
            check_range("weight_decay", wd, wd >= 0.0, "weight_decay >= 0")?;
            check_range("lr_scale", g.lr_scale, g.lr_scale >= 0.0, "a scale >= 0")?;
            Ok(Group {
                params: g.params,
                lr_scale: g.lr_scale,
                weight_decay: wd,
            })
        })
        .collect()
}

/// The common recipe of no weight decay on biases and other one-dimensional parameters
/// (normalisation scales): two groups, the second with `weight_decay = 0`.
pub fn no_decay_on_biases(params: Vec<(String, Var)>) -> Vec<ParamGroup> {
    let (no_decay, decay): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(name, v)| name.ends_with(".bias") || v.rank() <= 1);
    vec![
        ParamGroup::new(decay),
        ParamGroup {
            weight_decay: Some(0.0),
            ..ParamGroup::new(no_decay)
        },
    ]
}

/// The parameters of `varmap` sorted by name, so that updates run in a fixed order; buffers
/// (batch norm's running statistics, [`lit_base::is_buffer`]) are not parameters.
pub fn named_params(varmap: &VarMap) -> Vec<(String, Var)> {
    named(varmap, false)
}

/// The buffers of `varmap` (state saved with the weights but not trained, such as batch norm's
/// running statistics), sorted by name.
pub fn named_buffers(varmap: &VarMap) -> Vec<(String, Var)> {
    named(varmap, true)
}

fn named(varmap: &VarMap, buffers: bool) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock poisoned");
    let mut vars: Vec<(String, Var)> = data
        .iter()
        .filter(|(k, _)| lit_base::is_buffer(k) == buffers)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Sets `lr` from a saved state's `lr`; a state that is not a map, or whose `lr` is not a
/// finite number, is an error (a garbled checkpoint must not resume with defaults).
pub(crate) fn restore_lr(lr: &LearningRate, meta: &serde_json::Value) -> Result<()> {
    let bad = |what: &str| Error::Invalid(format!("optimizer state: {what}, got {meta}"));
    let map = meta.as_object().ok_or_else(|| bad("expected a map"))?;
    match map.get("lr") {
        None => Ok(()),
        Some(v) => match v.as_f64().filter(|v| v.is_finite()) {
            Some(v) => {
                lr.set(v);
                Ok(())
            }
            None => Err(bad("expected a finite 'lr'")),
        },
    }
}

/// The type an update computes in and keeps its state in: f32 for half-precision parameters
/// (`bf16-true`, `16-true`), whose type cannot hold second moments (f16 flushes small squared
/// gradients to zero), the parameter's own type otherwise.
pub(crate) fn state_dtype(var: &Var) -> DType {
    match var.dtype() {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// `t` in the type updates of `var` compute in.
pub(crate) fn widen(t: Tensor, var: &Var) -> Result<Tensor> {
    Ok(t.to_dtype(state_dtype(var))?)
}

/// Writes an update computed in the state type back into `var`, rounded to its type.
pub(crate) fn set_param(var: &Var, value: &Tensor) -> Result<()> {
    Ok(var.set(&value.to_dtype(var.dtype())?)?)
}

pub(crate) fn check_range(key: &str, value: f64, ok: bool, expected: &str) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(Error::HParam {
            key: key.to_string(),
            message: format!("expected {expected}, got {value}"),
        })
    }
}
