//! The residual block of ResNet-18/34 (torchvision's `BasicBlock`).

use candle::{ModuleT, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::{batch_norm2d, conv2d_no_bias, BatchNorm, Conv2d};

/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with 3x3 convolutions without bias,
/// the first with `stride`; the shortcut is the identity, or a 1x1 convolution with `stride` and
/// a batch norm (`downsample.0`, `downsample.1`) when the shape changes. Parameter names are
/// torchvision's (`conv1`, `bn1`, `conv2`, `bn2`, `downsample.*`).
///
/// On the CPU each convolution runs with the batch norm after it, and what follows that, as one
/// op: `conv1`, `bn1` and the ReLU; the shortcut's convolution and batch norm; `conv2`, `bn2`,
/// the addition of the shortcut and the final ReLU.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<(Conv2d, BatchNorm)>,
}

/// A [`BasicBlock`] from `in_channels` to `out_channels`, its first convolution with `stride`.
pub fn basic_block(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    vb: VarBuilder,
) -> candle::Result<BasicBlock> {
    let conv3 = |stride| Conv2dConfig {
        padding: 1,
        stride,
        ..Default::default()
    };
    let downsample = if stride != 1 || in_channels != out_channels {
        let cfg = Conv2dConfig {
            stride,
            ..Default::default()
        };
        Some((
            conv2d_no_bias(in_channels, out_channels, 1, cfg, vb.pp("downsample.0"))?,
            batch_norm2d(out_channels, vb.pp("downsample.1"))?,
        ))
    } else {
        None
    };
    Ok(BasicBlock {
        conv1: conv2d_no_bias(in_channels, out_channels, 3, conv3(stride), vb.pp("conv1"))?,
        bn1: batch_norm2d(out_channels, vb.pp("bn1"))?,
        conv2: conv2d_no_bias(out_channels, out_channels, 3, conv3(1), vb.pp("conv2"))?,
        bn2: batch_norm2d(out_channels, vb.pp("bn2"))?,
        downsample,
    })
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        let out = self.bn1.forward_conv_t(&self.conv1, x, train, true)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward_conv_t(conv, x, train, false)?,
            None => x.clone(),
        };
        self.bn2
            .forward_conv_add_relu_t(&self.conv2, &out, &shortcut, train)
    }
}
