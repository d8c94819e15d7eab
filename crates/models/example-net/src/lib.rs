//! The template's ExampleNet: a small CNN, for 28x28 single-channel images by default and for any
//! size and channel count its `Config` names (the data interface passes them on).
//!
//! Layers use PyTorch's default initialisation ([`lit_model::nn`]).
//!
//! Layer for layer as the PyTorch template's `nn.Sequential`, with the same parameter names
//! (`model.0.weight` ... `model.11.bias`), so weights move between lit and PyTorch unchanged:
//!
//! | index | layer |
//! |---|---|
//! | 0 | Conv2d(1, 16, 3, padding 1) |
//! | 1, 2 | ReLU, MaxPool2d(2) |
//! | 3 | Conv2d(16, 32, 3, padding 1) |
//! | 4, 5 | ReLU, MaxPool2d(2) |
//! | 6 | Conv2d(32, 64, 3, padding 1) |
//! | 7, 8 | ReLU, Flatten |
//! | 9 | Linear((H / 4) * (W / 4) * 64, 128) (7 * 7 * 64 for 28 x 28) |
//! | 10 | ReLU |
//! | 11 | Linear(128, num_classes) |

use candle::{ModuleT, Tensor};
use candle_nn::{Conv2dConfig, Module, VarBuilder};
use lit_model::nn::{conv2d, linear, Conv2d, Linear};
use serde::{Deserialize, Serialize};

/// ExampleNet's hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Input height in pixels (at least 4).
    pub input_height: usize,
    /// Input width in pixels (at least 4).
    pub input_width: usize,
    /// Output classes.
    pub num_classes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_channels: 1,
            input_height: 28,
            input_width: 28,
            num_classes: 10,
        }
    }
}

/// The template's ExampleNet.
#[derive(Debug, Clone)]
pub struct ExampleNet {
    conv0: Conv2d,
    conv3: Conv2d,
    conv6: Conv2d,
    fc9: Linear,
    fc11: Linear,
}

impl lit_model::Net for ExampleNet {
    type Config = Config;

    fn new(config: &Config, vb: VarBuilder) -> candle::Result<Self> {
        let (h, w) = (config.input_height / 4, config.input_width / 4);
        if h == 0 || w == 0 {
            candle::bail!(
                "example_net: input of {} x {} pixels; the two poolings need at least 4 x 4",
                config.input_height,
                config.input_width
            );
        }
        let vb = vb.pp("model");
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            conv0: conv2d(config.in_channels, 16, 3, same, vb.pp("0"))?,
            conv3: conv2d(16, 32, 3, same, vb.pp("3"))?,
            conv6: conv2d(32, 64, 3, same, vb.pp("6"))?,
            fc9: linear(h * w * 64, 128, vb.pp("9"))?,
            fc11: linear(128, config.num_classes, vb.pp("11"))?,
        })
    }
}

impl ModuleT for ExampleNet {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> candle::Result<Tensor> {
        // Each layer with the ReLU and pooling after it, as one fused op (lit_model::nn).
        let xs = self.conv0.forward_relu_pool(xs, 2)?;
        let xs = self.conv3.forward_relu_pool(&xs, 2)?;
        let xs = self.conv6.forward_relu(&xs)?.flatten_from(1)?;
        let xs = self.fc9.forward_relu(&xs)?;
        self.fc11.forward(&xs)
    }
}
