//! The residual block of ResNet-18/34 (torchvision's `BasicBlock`).

use candle::{DType, ModuleT, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::{batch_norm2d, conv2d_no_bias, BatchNorm, Conv2d};
use crate::{self as kernels, BlockConv};

/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with 3x3 convolutions without bias,
/// the first with `stride`; the shortcut is the identity, or a 1x1 convolution with `stride` and
/// a batch norm (`downsample.0`, `downsample.1`) when the shape changes. Parameter names are
/// torchvision's (`conv1`, `bn1`, `conv2`, `bn2`, `downsample.*`).
///
/// On the CPU the whole block is one op ([`kernels::residual_block`]), whose backward pass adds
/// the two gradients of the block's input as it writes them; elsewhere (or for a dtype or
/// geometry the kernels do not take) each convolution runs with the batch norm after it.
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

impl BasicBlock {
    /// The block as one kernel op ([`kernels::residual_block`]), when lit's kernels handle `x`
    /// and every convolution fuses with its batch norm; `None` otherwise.
    fn fused(&self, x: &Tensor, train: bool) -> candle::Result<Option<Tensor>> {
        let Some((stride, 1)) = self.conv1.batch_norm_fusable(x) else {
            return Ok(None);
        };
        let down_fuses = self
            .downsample
            .as_ref()
            .is_none_or(|(c, _)| c.batch_norm_fusable(x) == Some((stride, 0)));
        if self.conv2.batch_norm_fusable(x) != Some((1, 1)) || !down_fuses {
            return Ok(None);
        }
        let mut parts = vec![(&self.conv1, &self.bn1), (&self.conv2, &self.bn2)];
        parts.extend(self.downsample.as_ref().map(|(c, b)| (c, b)));
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let held = parts
            .iter()
            .map(|(c, b)| Ok((f32(c.weight())?, b.for_kernel(train)?)))
            .collect::<candle::Result<Vec<_>>>()?;
        let mut convs = held.iter().map(|(w, (wb, running, eps))| BlockConv {
            weight: w,
            weight_bias: wb,
            running: running.as_ref(),
            eps: *eps,
        });
        let (c1, c2) = (convs.next(), convs.next());
        let (Some(c1), Some(c2)) = (c1, c2) else {
            unreachable!("two convolutions at least")
        };
        let (y, stats) = kernels::residual_block(&f32(x)?, c1, c2, convs.next(), stride)?;
        for ((_, bn), stats) in parts.iter().zip(stats) {
            if let Some(stats) = stats {
                bn.record_batch(&stats, &y)?;
            }
        }
        Ok(Some(y.to_dtype(x.dtype())?))
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        if let Some(y) = self.fused(x, train)? {
            return Ok(y);
        }
        let out = self.bn1.forward_conv_t(&self.conv1, x, train, true)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward_conv_t(conv, x, train, false)?,
            None => x.clone(),
        };
        self.bn2
            .forward_conv_add_relu_t(&self.conv2, &out, &shortcut, train)
    }
}
