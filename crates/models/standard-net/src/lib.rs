//! The blank to copy when adding a model: a plain network and its `Config`, nothing else.
//!
//! `cargo xtask new-model NAME` copies this crate to `crates/models/NAME`, renames it and registers
//! it, so `cargo xtask train -- --model-name NAME` runs at once. Then:
//!
//! 1. Put the network's hyperparameters in [`Config`] with their defaults. They are filled from the
//!    run's hyperparameters by field name (`--set hid=256` on the command line or `hid: 256` in a
//!    config file); unknown keys are ignored, missing ones take the default.
//! 2. Create the layers in [`Net::new`](lit_model::Net::new) through the `VarBuilder`; the names
//!    given with `vb.pp(..)` become the parameter names in checkpoints (use PyTorch's names if the
//!    weights should load there).
//! 3. Write the forward pass in [`ModuleT::forward_t`]; `train` is true during training steps.
//!
//! Losses, optimizers, schedules, metrics and logging come from the generic module
//! (`lit_model::MInterface`), chosen by hyperparameters.

use candle::{ModuleT, Tensor};
use candle_nn::{Module, VarBuilder};
use lit_model::nn::{linear, Linear};
use serde::{Deserialize, Serialize};

/// The network's hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Input features (a flattened 28x28 image).
    pub in_features: usize,
    /// Hidden units.
    pub hid: usize,
    /// Output classes.
    pub num_classes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_features: 28 * 28,
            hid: 64,
            num_classes: 10,
        }
    }
}

/// A two-layer perceptron.
#[derive(Debug, Clone)]
pub struct StandardNet {
    fc1: Linear,
    fc2: Linear,
}

impl lit_model::Net for StandardNet {
    type Config = Config;

    fn new(config: &Config, vb: VarBuilder) -> candle::Result<Self> {
        Ok(Self {
            fc1: linear(config.in_features, config.hid, vb.pp("fc1"))?,
            fc2: linear(config.hid, config.num_classes, vb.pp("fc2"))?,
        })
    }
}

impl ModuleT for StandardNet {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> candle::Result<Tensor> {
        let xs = xs.flatten_from(1)?;
        self.fc2.forward(&self.fc1.forward(&xs)?.relu()?)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device};
    use lit_model::Net;

    use super::*;

    #[test]
    fn config_sets_the_widths() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = Config {
            hid: 7,
            ..Default::default()
        };
        let net = StandardNet::new(&cfg, vb).unwrap();
        let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 10]);
        assert_eq!(vm.data().lock().unwrap()["fc1.weight"].dims(), [7, 784]);
    }
}
