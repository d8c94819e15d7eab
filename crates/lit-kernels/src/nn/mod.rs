//! Layers initialised as PyTorch initialises them.
//!
//! candle-nn's `linear` and `conv2d` draw weights from a Kaiming normal with the ReLU gain, which
//! differs from PyTorch's default (`kaiming_uniform_(a = sqrt(5))`, that is `U(-1/sqrt(fan_in),
//! 1/sqrt(fan_in))` for weights and biases alike). These constructors use PyTorch's rule, so a
//! network ported from PyTorch starts from the same distribution and trains the same way. The
//! layers, lit's [`Linear`] and [`Conv2d`], run the fast CPU kernels of [the kernels](crate) where
//! they apply and candle's own ops elsewhere, with the parameters of `nn.Linear` and `nn.Conv2d`.
//!
//! Each layer also has fused forms (`forward_relu`, and for convolutions
//! `forward_relu_pool`) that compute what `relu` and `max_pool2d` after the layer would, as one op:
//! the same numbers, fewer tensors for autograd to keep.

use candle::{DType, Module, Tensor};
use candle_nn::{Conv2dConfig, Init, VarBuilder};

use crate as kernels;

mod dropout;
mod norm;
mod residual;

pub use dropout::{dropout, Dropout};
pub use norm::{batch_norm, batch_norm1d, batch_norm2d, BatchNorm, BatchNormConfig};
pub use residual::{basic_block, BasicBlock};

/// A 2-d convolution with the parameters of `nn.Conv2d` (`weight` `(out, in / groups, k, k)`,
/// `bias` `(out,)`). On the CPU without groups or dilation it runs lit's im2col + gemm kernel;
/// elsewhere candle's `conv2d`. Both give the same numbers within f32 rounding.
///
/// The layer computes in its input's type, as autocast does: a bf16 or f16 input with f32
/// parameters (mixed precision) gives an output of the input's type, with the parameters cast
/// for the product and their gradients in f32. On the CPU the product itself runs in f32 (lit's
/// kernel, on the input's values) and its result is rounded to the input's type.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
    fallback: candle_nn::Conv2d,
}

/// Whether lit's CPU kernels take `x`, in f32 or (converted to f32) a half type.
fn on_cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::BF16 | DType::F16)
}

/// Runs `f` on f32 versions of `x`, `weight` and `bias`, and returns its result in `x`'s type:
/// the kernels are f32-only, and the casts are identities (no copy, no allocation) for f32
/// tensors, so the f32 path costs nothing more than calling the kernel.
fn in_f32(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    f: impl FnOnce(&Tensor, &Tensor, &Tensor) -> candle::Result<Tensor>,
) -> candle::Result<Tensor> {
    let f32 = |t: &Tensor| t.to_dtype(DType::F32);
    f(&f32(x)?, &f32(weight)?, &f32(bias)?)?.to_dtype(x.dtype())
}

impl Conv2d {
    /// A convolution over existing parameters.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Self {
        let fallback = candle_nn::Conv2d::new(weight.clone(), bias.clone(), cfg);
        Self {
            weight,
            bias,
            cfg,
            fallback,
        }
    }

    /// The weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Conv2d {
    /// Whether lit's kernel handles `x` with this configuration.
    fn fast(&self, x: &Tensor) -> bool {
        on_cpu_kernels(x)
            && x.rank() == 4
            && self.cfg.groups == 1
            && self.cfg.dilation == 1
            && self.cfg.cudnn_fwd_algo.is_none()
    }

    /// Stride and padding, when lit's kernels can fuse this convolution with the batch norm
    /// after it: a convolution without bias whose input they handle.
    fn batch_norm_fusable(&self, x: &Tensor) -> Option<(usize, usize)> {
        (self.fast(x) && self.bias.is_none()).then_some((self.cfg.stride, self.cfg.padding))
    }

    /// The bias lit's kernel adds when it handles `x`: the layer's, or zeros for a layer
    /// without one (`bias=False`, as before a batch norm); `None` when candle's op runs.
    fn kernel_bias(&self, x: &Tensor) -> candle::Result<Option<Tensor>> {
        if !self.fast(x) {
            return Ok(None);
        }
        match &self.bias {
            Some(b) => Ok(Some(b.clone())),
            None => Ok(Some(Tensor::zeros(
                self.weight.dim(0)?,
                DType::F32,
                x.device(),
            )?)),
        }
    }

    fn run(&self, x: &Tensor, relu: bool) -> candle::Result<Tensor> {
        match self.kernel_bias(x)? {
            Some(b) => in_f32(x, &self.weight, &b, |x, w, b| {
                kernels::conv2d(x, w, b, self.cfg.stride, self.cfg.padding, relu)
            }),
            None => {
                let y = self.candle_conv(x)?;
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }

    /// candle's convolution, with the parameters cast to the input's type.
    fn candle_conv(&self, x: &Tensor) -> candle::Result<Tensor> {
        if x.dtype() == self.weight.dtype() {
            return self.fallback.forward(x);
        }
        let cast = |t: &Tensor| t.to_dtype(x.dtype());
        let bias = self.bias.as_ref().map(cast).transpose()?;
        candle_nn::Conv2d::new(cast(&self.weight)?, bias, self.cfg).forward(x)
    }

    /// `relu(conv(x))` in one pass on the CPU (the same as `forward` followed by `relu`).
    pub fn forward_relu(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.run(x, true)
    }

    /// `max_pool2d(relu(conv(x)), k)` (window and stride `k`, as `nn.MaxPool2d(k)`) in one op on
    /// the CPU: the full-resolution activation lives only in per-thread scratch memory.
    pub fn forward_relu_pool(&self, x: &Tensor, k: usize) -> candle::Result<Tensor> {
        match self.kernel_bias(x)? {
            Some(b) => in_f32(x, &self.weight, &b, |x, w, b| {
                kernels::conv2d_pool(x, w, b, self.cfg.stride, self.cfg.padding, true, k)
            }),
            None => max_pool2d(&self.run(x, true)?, k),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.run(x, false)
    }
}

/// Max-pooling with a `k` x `k` window and stride `k`, as `nn.MaxPool2d(k)`, whose gradient goes
/// to each window's maximum as in PyTorch: lit's kernel on the CPU in f32, and elsewhere (GPUs,
/// other dtypes) two max-reductions over a `(N, C, H/k, k, W/k, k)` view.
///
/// candle 0.11's own `max_pool2d` is not used: its backward multiplies each gradient by the
/// window's mean of the max mask, so a window with one maximum passes on `1/k²` of its gradient.
pub fn max_pool2d(x: &Tensor, k: usize) -> candle::Result<Tensor> {
    if on_cpu_kernels(x) && x.rank() == 4 {
        // The maximum of rounded values is one of them: the f32 pass loses nothing.
        return kernels::max_pool2d(&x.to_dtype(DType::F32)?, k)?.to_dtype(x.dtype());
    }
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || h < k || w < k {
        candle::bail!("max_pool2d: a {k}x{k} window does not fit a {h}x{w} input")
    }
    let (oh, ow) = (h / k, w / k);
    // Rows and columns past the last whole window are dropped, as PyTorch does.
    let x = if oh * k != h || ow * k != w {
        x.narrow(2, 0, oh * k)?.narrow(3, 0, ow * k)?.contiguous()?
    } else {
        x.contiguous()?
    };
    // The reductions' backward sends the gradient to every tied maximum, where PyTorch picks the
    // first; ties of a float window are rare outside a ReLU's zeros, whose gradient the ReLU
    // stops anyway.
    x.reshape((n, c, oh, k, ow, k))?.max(5)?.max(3)
}

fn torch_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A fully connected layer with the parameters of `nn.Linear` (`weight` `(out, in)`, `bias`
/// `(out,)`): lit's fused kernel on the CPU with a bias, candle-nn's `Linear` elsewhere. Like
/// [`Conv2d`], it computes in its input's type.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    fallback: candle_nn::Linear,
}

impl Linear {
    /// A layer over existing parameters.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let fallback = candle_nn::Linear::new(weight.clone(), bias.clone());
        Self {
            weight,
            bias,
            fallback,
        }
    }

    /// The weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    fn run(&self, x: &Tensor, relu: bool) -> candle::Result<Tensor> {
        match &self.bias {
            Some(b) if on_cpu_kernels(x) && x.rank() >= 2 => {
                in_f32(x, &self.weight, b, |x, w, b| kernels::linear(x, w, b, relu))
            }
            _ => {
                let y = if x.dtype() == self.weight.dtype() {
                    self.fallback.forward(x)?
                } else {
                    let cast = |t: &Tensor| t.to_dtype(x.dtype());
                    let bias = self.bias.as_ref().map(cast).transpose()?;
                    candle_nn::Linear::new(cast(&self.weight)?, bias).forward(x)?
                };
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }

    /// `relu(linear(x))` in one op on the CPU (the same as `forward` followed by `relu`).
    pub fn forward_relu(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.run(x, true)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.run(x, false)
    }
}

/// `nn.Linear(in_dim, out_dim)` with PyTorch's default initialisation.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle::Result<Linear> {
    let init = torch_uniform(in_dim);
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let b = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(w, Some(b)))
}

/// `nn.Conv2d(in_channels, out_channels, kernel_size)` with PyTorch's default initialisation.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> candle::Result<Conv2d> {
    let fan_in = in_channels / cfg.groups.max(1) * kernel_size * kernel_size;
    let init = torch_uniform(fan_in);
    let w = vb.get_with_hints(
        (
            out_channels,
            in_channels / cfg.groups.max(1),
            kernel_size,
            kernel_size,
        ),
        "weight",
        init,
    )?;
    let b = vb.get_with_hints(out_channels, "bias", init)?;
    Ok(Conv2d::new(w, Some(b), cfg))
}

/// `nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)`, as before a batch norm, with
/// PyTorch's default initialisation.
pub fn conv2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> candle::Result<Conv2d> {
    let groups = cfg.groups.max(1);
    let init = torch_uniform(in_channels / groups * kernel_size * kernel_size);
    let shape = (out_channels, in_channels / groups, kernel_size, kernel_size);
    let w = vb.get_with_hints(shape, "weight", init)?;
    Ok(Conv2d::new(w, None, cfg))
}

/// Adaptive average pooling to `(oh, ow)`, as `nn.AdaptiveAvgPool2d`: output cell `(i, j)`
/// averages input rows `floor(i * H / oh) .. ceil((i + 1) * H / oh)` and the same for columns.
/// `(1, 1)` (global average pooling, before a classifier) is one mean over the spatial elements.
pub fn adaptive_avg_pool2d(x: &Tensor, (oh, ow): (usize, usize)) -> candle::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if oh == 0 || ow == 0 {
        candle::bail!("adaptive_avg_pool2d: output size ({oh}, {ow}) must be positive")
    }
    if (oh, ow) == (1, 1) {
        return x.flatten_from(2)?.mean_keepdim(2)?.reshape((n, c, 1, 1));
    }
    let bins = |out: usize, size: usize| -> Vec<(usize, usize)> {
        (0..out)
            .map(|i| (i * size / out, ((i + 1) * size).div_ceil(out)))
            .collect()
    };
    let (rows, cols) = (bins(oh, h), bins(ow, w));
    let mut out_rows = Vec::with_capacity(oh);
    for &(r0, r1) in &rows {
        let band = x.narrow(2, r0, r1 - r0)?.mean_keepdim(2)?;
        let mut cells = Vec::with_capacity(ow);
        for &(c0, c1) in &cols {
            cells.push(band.narrow(3, c0, c1 - c0)?.mean_keepdim(3)?);
        }
        out_rows.push(Tensor::cat(&cells, 3)?);
    }
    Tensor::cat(&out_rows, 2)
}
