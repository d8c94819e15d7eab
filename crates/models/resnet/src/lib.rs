//! A ResNet for 28x28 images (the CIFAR ResNets of He et al., 2016, on one input channel): batch
//! normalisation, residual blocks and dropout before the classifier.
//!
//! | name | layer |
//! |---|---|
//! | `conv1`, `bn1` | Conv2d(in_channels, width, 3, padding 1, bias=False), BatchNorm2d, ReLU |
//! | `layer1.{i}` | `n` BasicBlocks, width channels, 28x28 |
//! | `layer2.{i}` | `n` BasicBlocks, 2 x width, the first with stride 2 (14x14) |
//! | `layer3.{i}` | `n` BasicBlocks, 4 x width, the first with stride 2 (7x7) |
//! | | AdaptiveAvgPool2d(1), flatten, Dropout(dropout, default 0.1) |
//! | `fc` | Linear(4 x width, num_classes) |
//!
//! `depth = 6n + 2`: 8 (the default, `n = 1`), 14, 20 (ResNet-20), 32, ... Parameter and buffer
//! names are those of the same network written with torchvision's `BasicBlock` (see
//! `scripts/resnet_torch.py`), so a lit checkpoint loads into PyTorch with `strict=True`.

use candle::{ModuleT, Tensor};
use candle_nn::{Conv2dConfig, Module, VarBuilder};
use lit_model::nn::{
    adaptive_avg_pool2d, basic_block, batch_norm2d, conv2d_no_bias, dropout, linear, BasicBlock,
    BatchNorm, Conv2d, Dropout, Linear,
};
use serde::{Deserialize, Serialize};

/// The ResNet's hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Input channels (1 for MNIST and Fashion-MNIST).
    pub in_channels: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Layers with weights: 6n + 2 (8, 14, 20, ...).
    pub depth: usize,
    /// Channels of the first stage; the second has twice, the third four times as many.
    pub width: usize,
    /// Drop probability before the classifier.
    pub dropout: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 10,
            depth: 8,
            width: 16,
            dropout: 0.1,
        }
    }
}

/// The ResNet.
#[derive(Debug, Clone)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
    dropout: Dropout,
    fc: Linear,
}

impl lit_model::Net for ResNet {
    type Config = Config;

    fn new(config: &Config, vb: VarBuilder) -> candle::Result<Self> {
        if config.depth < 8 || !(config.depth - 2).is_multiple_of(6) {
            candle::bail!(
                "resnet: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {}",
                config.depth
            )
        }
        if config.width == 0 {
            candle::bail!("resnet: width must be at least 1")
        }
        let n = (config.depth - 2) / 6;
        let w = config.width;
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let mut blocks = Vec::with_capacity(3 * n);
        let mut channels = w;
        for (stage, out) in [(1, w), (2, 2 * w), (3, 4 * w)] {
            for i in 0..n {
                let stride = if stage > 1 && i == 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{stage}.{i}"));
                blocks.push(basic_block(channels, out, stride, vb)?);
                channels = out;
            }
        }
        Ok(Self {
            conv1: conv2d_no_bias(config.in_channels, w, 3, same, vb.pp("conv1"))?,
            bn1: batch_norm2d(w, vb.pp("bn1"))?,
            blocks,
            dropout: dropout(config.dropout, &vb.pp("dropout"))?,
            fc: linear(4 * w, config.num_classes, vb.pp("fc"))?,
        })
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle::Result<Tensor> {
        let mut xs = self.bn1.forward_conv_t(&self.conv1, xs, train, true)?;
        for block in &self.blocks {
            xs = block.forward_t(&xs, train)?;
        }
        let xs = adaptive_avg_pool2d(&xs, (1, 1))?.flatten_from(1)?;
        self.fc.forward(&self.dropout.forward_t(&xs, train)?)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device};
    use lit_model::Net;

    use super::*;

    #[test]
    fn depth_sets_the_blocks_and_names_follow_torchvision() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = Config {
            depth: 14,
            ..Default::default()
        };
        let net = ResNet::new(&cfg, vb).unwrap();
        let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, true).unwrap().dims(), [2, 10]);
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 10]);
        let data = vm.data().lock().unwrap();
        assert_eq!(net.blocks.len(), 6);
        assert_eq!(data["layer2.0.downsample.0.weight"].dims(), [32, 16, 1, 1]);
        assert_eq!(data["layer3.1.bn2.running_var"].dims(), [64]);
        assert_eq!(data["fc.weight"].dims(), [10, 64]);
        assert!(!data.contains_key("layer1.0.downsample.0.weight"));
        assert!(!data.contains_key("conv1.bias"));
    }

    #[test]
    fn a_depth_that_is_not_6n_plus_2_is_refused() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = Config {
            depth: 10,
            ..Default::default()
        };
        let err = ResNet::new(&cfg, vb).unwrap_err().to_string();
        assert!(err.contains("6n + 2") && err.contains("10"), "{err}");
    }
}
