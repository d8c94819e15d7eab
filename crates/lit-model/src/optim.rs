//! Optimizers chosen by name from the hyperparameters: the [`OPTIMIZERS`] table and
//! [`from_hparams`]. The optimizers themselves live in `lit-optim` and take typed configs; this
//! module only reads the hyperparameter map into those configs.

use std::sync::LazyLock;

use candle_nn::VarMap;
use lit_base::{HParams, Registry};

pub use lit_optim::{
    named_buffers, named_params, no_decay_on_biases, Adam, AdamConfig, LearningRate, Optimizer,
    OptimizerState, ParamGroup, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};

use crate::Result;

type Builder = fn(&HParams, f64, Vec<ParamGroup>) -> Result<Box<dyn Optimizer>>;

/// Every optimizer `from_hparams` builds, by name: the only list of their names.
pub static OPTIMIZERS: LazyLock<Registry<Builder>> = LazyLock::new(|| {
    Registry::<Builder>::new("optimizer")
        .with("sgd", build_sgd)
        .with("adam", build_adam)
        .with("adamw", build_adamw)
        .with("rmsprop", build_rmsprop)
});

fn build_sgd(hp: &HParams, lr: f64, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(Sgd::with_groups(
        params,
        SgdConfig {
            lr,
            momentum: hp.get_or("momentum", 0.0)?,
            dampening: hp.get_or("dampening", 0.0)?,
            weight_decay: hp.get_or("weight_decay", 0.0)?,
            nesterov: hp.get_or("nesterov", false)?,
        },
    )?))
}

fn adam_config(hp: &HParams, lr: f64, decoupled: bool) -> Result<AdamConfig> {
    Ok(AdamConfig {
        lr,
        beta1: hp.get_or("beta1", 0.9)?,
        beta2: hp.get_or("beta2", 0.999)?,
        eps: hp.get_or("eps", 1e-8)?,
        weight_decay: hp.get_or("weight_decay", if decoupled { 0.01 } else { 0.0 })?,
        amsgrad: hp.get_or("amsgrad", false)?,
        decoupled_weight_decay: decoupled,
    })
}

fn build_adam(hp: &HParams, lr: f64, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(Adam::with_groups(
        params,
        adam_config(hp, lr, false)?,
    )?))
}

fn build_adamw(hp: &HParams, lr: f64, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(Adam::with_groups(
        params,
        adam_config(hp, lr, true)?,
    )?))
}

fn build_rmsprop(hp: &HParams, lr: f64, params: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    let d = RmsPropConfig::default();
    Ok(Box::new(RmsProp::with_groups(
        params,
        RmsPropConfig {
            lr,
            alpha: hp.get_or("alpha", d.alpha)?,
            eps: hp.get_or("eps", d.eps)?,
            weight_decay: hp.get_or("weight_decay", d.weight_decay)?,
            momentum: hp.get_or("momentum", d.momentum)?,
            centered: hp.get_or("centered", d.centered)?,
        },
    )?))
}

/// Every hyperparameter key `from_hparams` reads.
pub const KEYS: &[&str] = &[
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "dampening",
    "nesterov",
    "beta1",
    "beta2",
    "eps",
    "amsgrad",
    "alpha",
    "centered",
    "no_decay_bias",
];

/// Builds the optimizer named by the `optimizer` hyperparameter (default `adam`) over `varmap`.
///
/// Keys: `lr` (1e-3), `weight_decay` (0, or 0.01 for `adamw` as in torch), `momentum` (0),
/// `dampening` (0), `nesterov` (false), `beta1` (0.9), `beta2` (0.999), `eps` (1e-8), `amsgrad`,
/// and for `rmsprop` `alpha` (0.99) and `centered` (false).
pub fn from_hparams(hp: &HParams, varmap: &VarMap) -> Result<Box<dyn Optimizer>> {
    let name = hp.get_or::<String>("optimizer", "adam".into())?;
    let build = OPTIMIZERS.get(&name)?;
    let lr = hp.get_or("lr", 1e-3)?;
    let params = named_params(varmap);
    let params = if hp.get_or("no_decay_bias", false)? {
        no_decay_on_biases(params)
    } else {
        vec![ParamGroup::new(params)]
    };
    build(hp, lr, params)
}
