//! `mlp`: a multilayer perceptron for feature vectors (the rows of a table) and flattened images.
//!
//! Its input and output widths come from the data, as Lightning users pass
//! `datamodule.num_features` and `datamodule.num_classes` to a model: the data interface sets
//! `in_features` (a table's feature count, or channels x height x width of an image) and
//! `num_classes` (the classes, or 1 for a regression target) unless the user sets them. The
//! hidden layers are `hidden_dims` wide (`--set hidden_dims=128,64`; empty or `none` for a
//! linear model), each a linear layer, ReLU and dropout with probability `dropout`.

use candle::{ModuleT, Tensor};
use candle_nn::{Module, VarBuilder};
use lit_model::nn::{dropout, linear, Dropout, Linear};
use serde::{Deserialize, Deserializer, Serialize};

/// The network's hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Input features (set from the data).
    pub in_features: usize,
    /// The widths of the hidden layers, in order; empty: a linear model.
    #[serde(deserialize_with = "widths")]
    pub hidden_dims: Vec<usize>,
    /// Outputs: the classes, or 1 for a regression target (set from the data).
    pub num_classes: usize,
    /// The probability that dropout zeroes a hidden unit in training.
    pub dropout: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_features: 28 * 28,
            hidden_dims: vec![64, 64],
            num_classes: 10,
            dropout: 0.0,
        }
    }
}

/// Widths as a list, one number, or comma-separated text (`128,64`; empty or `none`: none).
fn widths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Widths {
        One(usize),
        List(Vec<usize>),
        Text(String),
        Nothing(()),
    }
    match Widths::deserialize(d)? {
        Widths::One(w) => Ok(vec![w]),
        Widths::List(v) => Ok(v),
        Widths::Nothing(()) => Ok(Vec::new()),
        Widths::Text(s) if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("none") => {
            Ok(Vec::new())
        }
        Widths::Text(s) => s
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "expected layer widths such as 128,64 (or none), got '{s}' ({e})"
                ))
            }),
    }
}

/// Linear layers with ReLU and dropout between them.
#[derive(Debug, Clone)]
pub struct Mlp {
    hidden: Vec<(Linear, Dropout)>,
    out: Linear,
}

impl lit_model::Net for Mlp {
    type Config = Config;

    fn new(config: &Config, vb: VarBuilder) -> candle::Result<Self> {
        if let Some(i) = config.hidden_dims.iter().position(|&w| w == 0) {
            candle::bail!("hidden_dims: layer {i} has width 0; every hidden layer needs a unit");
        }
        let mut width = config.in_features;
        let mut hidden = Vec::new();
        for (i, &w) in config.hidden_dims.iter().enumerate() {
            let vb = vb.pp(format!("layers.{i}"));
            hidden.push((linear(width, w, vb.clone())?, dropout(config.dropout, &vb)?));
            width = w;
        }
        Ok(Self {
            hidden,
            out: linear(width, config.num_classes, vb.pp("out"))?,
        })
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle::Result<Tensor> {
        let mut xs = xs.flatten_from(1)?;
        for (layer, drop) in &self.hidden {
            xs = drop.forward_t(&layer.forward_relu(&xs)?, train)?;
        }
        self.out.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device};
    use lit_model::Net;

    use super::*;

    fn config(hidden: &str) -> Config {
        let v = serde_json::json!({ "in_features": 5, "hidden_dims": hidden, "num_classes": 3 });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn widths_come_from_the_config() {
        assert_eq!(config("8,4").hidden_dims, [8, 4]);
        assert_eq!(config("none").hidden_dims, Vec::<usize>::new());
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = Mlp::new(&config("8,4"), vb).unwrap();
        let x = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 3]);
        let data = vm.data().lock().unwrap();
        assert_eq!(data["layers.0.weight"].dims(), [8, 5]);
        assert_eq!(data["out.weight"].dims(), [3, 4]);
    }

    #[test]
    fn no_hidden_layer_is_a_linear_model() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        Mlp::new(&config(""), vb).unwrap();
        assert_eq!(vm.data().lock().unwrap()["out.weight"].dims(), [3, 5]);
        let bad = serde_json::from_value::<Config>(serde_json::json!({ "hidden_dims": "8,x" }));
        assert!(bad.unwrap_err().to_string().contains("8,x"));
    }
}
