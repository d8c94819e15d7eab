//! Optimizers chosen by name from the hyperparameters: the [`OPTIMIZERS`] table and
//! [`from_hparams`]. The optimizers themselves live in `lit-optim` and take typed configs; this
//! module only reads the hyperparameter map into those configs.

use std::sync::LazyLock;

use candle_nn::VarMap;
use lit_base::{HParams, Registry};
use serde::{Deserialize, Serialize};

pub use lit_optim::{
    named_buffers, named_params, no_decay_on_biases, Adam, AdamConfig, LearningRate, Optimizer,
    OptimizerState, ParamGroup, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};

use crate::Result;

type Builder = fn(&OptimizerHParams, Vec<ParamGroup>) -> Result<Box<dyn Optimizer>>;

/// Every optimizer `from_hparams` builds, by name: the only list of their names.
pub static OPTIMIZERS: LazyLock<Registry<Builder>> = LazyLock::new(|| {
    Registry::<Builder>::new("optimizer")
        .with("sgd", build_sgd)
        .with("adam", build_adam)
        .with("adamw", build_adamw)
        .with("rmsprop", build_rmsprop)
});

/// The optimizers' hyperparameters, read from the run's map by name: one default per key
/// (torch's), and the list of keys the run reads is this struct's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerHParams {
    /// One of [`OPTIMIZERS`].
    pub optimizer: String,
    /// The learning rate: the run's only default of it.
    pub lr: f64,
    /// L2 penalty (decoupled for adamw); unset: 0, or 0.01 for adamw as in torch.
    pub weight_decay: Option<f64>,
    /// Momentum of sgd and rmsprop.
    pub momentum: f64,
    /// sgd's dampening.
    pub dampening: f64,
    /// sgd's Nesterov momentum.
    pub nesterov: bool,
    /// Adam's first moment decay.
    pub beta1: f64,
    /// Adam's second moment decay.
    pub beta2: f64,
    /// Added to the denominators of adam and rmsprop.
    pub eps: f64,
    /// Adam's AMSGrad variant.
    pub amsgrad: bool,
    /// rmsprop's smoothing constant.
    pub alpha: f64,
    /// rmsprop normalised by the variance.
    pub centered: bool,
    /// No weight decay on biases and other one-dimensional parameters.
    pub no_decay_bias: bool,
}

impl Default for OptimizerHParams {
    fn default() -> Self {
        let rms = RmsPropConfig::default();
        Self {
            optimizer: "adam".into(),
            lr: 1e-3,
            weight_decay: None,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            amsgrad: false,
            alpha: rms.alpha,
            centered: false,
            no_decay_bias: false,
        }
    }
}

fn build_sgd(c: &OptimizerHParams, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(Sgd::with_groups(
        params,
        SgdConfig {
            lr: c.lr,
            momentum: c.momentum,
            dampening: c.dampening,
            weight_decay: c.weight_decay.unwrap_or(0.0),
            nesterov: c.nesterov,
        },
    )?))
}

fn adam_config(c: &OptimizerHParams, decoupled: bool) -> AdamConfig {
    AdamConfig {
        lr: c.lr,
        beta1: c.beta1,
        beta2: c.beta2,
        eps: c.eps,
        weight_decay: c.weight_decay.unwrap_or(if decoupled { 0.01 } else { 0.0 }),
        amsgrad: c.amsgrad,
        decoupled_weight_decay: decoupled,
    }
}

fn build_adam(c: &OptimizerHParams, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(Adam::with_groups(params, adam_config(c, false))?))
}

fn build_adamw(c: &OptimizerHParams, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(Adam::with_groups(params, adam_config(c, true))?))
}

fn build_rmsprop(c: &OptimizerHParams, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(RmsProp::with_groups(
        params,
        RmsPropConfig {
            lr: c.lr,
            alpha: c.alpha,
            eps: c.eps,
            weight_decay: c.weight_decay.unwrap_or(0.0),
            momentum: c.momentum,
            centered: c.centered,
        },
    )?))
}

/// Every hyperparameter key `from_hparams` reads, with its default.
pub fn defaults() -> HParams {
    HParams::from_serialize(&OptimizerHParams::default()).expect("plain data serialises")
}

/// Builds the optimizer named by the `optimizer` hyperparameter (default `adam`) over `varmap`,
/// from the keys of [`OptimizerHParams`].
pub fn from_hparams(hp: &HParams, varmap: &VarMap) -> Result<Box<dyn Optimizer>> {
    let c: OptimizerHParams = hp.to_config()?;
    let build = OPTIMIZERS.get(&c.optimizer)?;
    let params = named_params(varmap);
    let params = if c.no_decay_bias {
        no_decay_on_biases(params)
    } else {
        vec![ParamGroup::new(params)]
    };
    build(&c, params)
}
