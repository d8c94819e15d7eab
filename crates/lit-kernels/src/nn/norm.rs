//! Batch normalisation with the parameters, buffers and semantics of `nn.BatchNorm1d` and
//! `nn.BatchNorm2d`.

use candle::{DType, Device, Module, ModuleT, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::{on_cpu_kernels, Conv2d};
use crate as kernels;

/// `eps` and `momentum` of a batch norm, PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before its square root.
    pub eps: f64,
    /// The weight of each batch in the running statistics; `None` for a cumulative average over
    /// all batches seen (`momentum=None` in PyTorch).
    pub momentum: Option<f64>,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: Some(0.1),
        }
    }
}

/// Batch normalisation over dimension 1 of `(N, C)`, `(N, C, L)` or `(N, C, H, W)` inputs, as
/// PyTorch's: parameters `weight` and `bias`, buffers `running_mean`, `running_var` and
/// `num_batches_tracked` (int64), all saved with the weights. In training (`train` true) it
/// normalises with the batch's statistics and updates the running ones (the variance unbiased,
/// as PyTorch); in evaluation it normalises with the running statistics.
///
/// On the CPU it runs lit's kernel, which can also add a residual and apply a ReLU in the same op
/// ([`BatchNorm::forward_relu_t`], [`BatchNorm::forward_add_relu_t`]); elsewhere candle's ops.
/// Like the other layers it outputs its input's type; statistics are computed in f32 (in f64
/// for f64 inputs).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    cfg: BatchNormConfig,
}

/// `nn.BatchNorm2d(num_features)` (or `1d`: the layer is the same) with PyTorch's
/// initialisation: weight 1, bias 0, running mean 0, running variance 1.
pub fn batch_norm(
    num_features: usize,
    cfg: BatchNormConfig,
    vb: VarBuilder,
) -> candle::Result<BatchNorm> {
    let c = num_features;
    if c == 0 {
        candle::bail!("batch_norm: num_features must be at least 1")
    }
    let weight = vb.get_with_hints(c, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(c, "bias", Init::Const(0.0))?;
    let buffer = |t: Tensor| Var::from_tensor(&t);
    let running_mean = buffer(vb.get_with_hints(c, "running_mean", Init::Const(0.0))?)?;
    let running_var = buffer(vb.get_with_hints(c, "running_var", Init::Const(1.0))?)?;
    let num_batches_tracked = buffer(vb.get_with_hints_dtype(
        (),
        "num_batches_tracked",
        Init::Const(0.0),
        DType::I64,
    )?)?;
    Ok(BatchNorm {
        weight,
        bias,
        running_mean,
        running_var,
        num_batches_tracked,
        cfg,
    })
}

/// `nn.BatchNorm1d(num_features)`, for `(N, C)` and `(N, C, L)` inputs.
pub fn batch_norm1d(num_features: usize, vb: VarBuilder) -> candle::Result<BatchNorm> {
    batch_norm(num_features, BatchNormConfig::default(), vb)
}

/// `nn.BatchNorm2d(num_features)`, for `(N, C, H, W)` inputs.
pub fn batch_norm2d(num_features: usize, vb: VarBuilder) -> candle::Result<BatchNorm> {
    batch_norm(num_features, BatchNormConfig::default(), vb)
}

impl BatchNorm {
    /// The scale.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The running mean of each channel.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running (unbiased) variance of each channel.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// The training batches seen.
    pub fn num_batches_tracked(&self) -> &Tensor {
        self.num_batches_tracked.as_tensor()
    }

    /// `batch_norm(conv(x))`, followed by a ReLU when `relu`: one op on the CPU for a
    /// convolution without bias (as in a ResNet), so the convolution's output never becomes a
    /// tensor autograd keeps; otherwise the layers one after the other.
    pub fn forward_conv_t(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        train: bool,
        relu: bool,
    ) -> candle::Result<Tensor> {
        self.run_conv(conv, x, None, train, relu)
    }

    /// `relu(batch_norm(conv(x)) + residual)`, the end of a residual block: one op on the CPU for
    /// a convolution without bias; otherwise the layers one after the other.
    pub fn forward_conv_add_relu_t(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        residual: &Tensor,
        train: bool,
    ) -> candle::Result<Tensor> {
        self.run_conv(conv, x, Some(residual), train, true)
    }

    fn run_conv(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        residual: Option<&Tensor>,
        train: bool,
        relu: bool,
    ) -> candle::Result<Tensor> {
        let c = self.weight.dim(0)?;
        let fused = conv
            .batch_norm_fusable(x)
            .filter(|_| conv.weight().dim(0).is_ok_and(|o| o == c))
            .filter(|_| residual.is_none_or(on_cpu_kernels));
        let Some(geometry) = fused else {
            return self.run(&conv.forward(x)?, residual, train, relu);
        };
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let running = if train {
            None
        } else {
            Some(self.running_on_host()?)
        };
        let wb = self.weight_bias_f32()?;
        // The kernel refuses a residual whose size differs from the convolution's output.
        let r32 = residual.map(f32).transpose()?;
        let (y, stats) = kernels::conv2d_batch_norm(
            &f32(x)?,
            &f32(conv.weight())?,
            &wb,
            r32.as_ref(),
            geometry,
            running.as_ref(),
            self.cfg.eps,
            relu,
        )?;
        if let Some(stats) = stats {
            self.record_batch(&stats, &y)?;
        }
        y.to_dtype(x.dtype())
    }

    /// The running-statistics update from a fused kernel's batch statistics, `y` its output.
    pub(super) fn record_batch(
        &self,
        stats: &kernels::ChannelStats,
        y: &Tensor,
    ) -> candle::Result<()> {
        let count = y.elem_count() / self.weight.dim(0)?;
        if count <= 1 {
            candle::bail!(
                "batch_norm: expected more than 1 value per channel when training, got input \
                 of shape {:?}",
                y.dims()
            )
        }
        self.update_running_from_host(stats, count)
    }

    /// What a fused kernel needs of this batch norm: its weight and bias as `(2, C)` f32, the
    /// running statistics on the host (in evaluation), and `eps`.
    pub(super) fn for_kernel(
        &self,
        train: bool,
    ) -> candle::Result<(Tensor, Option<kernels::ChannelStats>, f64)> {
        let running = (!train).then(|| self.running_on_host()).transpose()?;
        Ok((self.weight_bias_f32()?, running, self.cfg.eps))
    }

    /// The running statistics, on the host in f32.
    fn running_on_host(&self) -> candle::Result<kernels::ChannelStats> {
        let host = |v: &Var| v.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>();
        Ok(kernels::ChannelStats {
            mean: host(&self.running_mean)?,
            var: host(&self.running_var)?,
        })
    }

    /// Weight and bias stacked as the kernels take them, `(2, C)` in f32.
    fn weight_bias_f32(&self) -> candle::Result<Tensor> {
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        Tensor::stack(&[f32(&self.weight)?, f32(&self.bias)?], 0)
    }

    /// [`Self::update_running`] from a kernel's batch statistics.
    fn update_running_from_host(
        &self,
        stats: &kernels::ChannelStats,
        count: usize,
    ) -> candle::Result<()> {
        let on_cpu = |v: &[f32]| Tensor::new(v, &Device::Cpu);
        self.update_running(&on_cpu(&stats.mean)?, &on_cpu(&stats.var)?, count)
    }

    /// `relu(batch_norm(x))`, one op on the CPU.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        self.run(x, None, train, true)
    }

    /// `relu(batch_norm(x) + residual)`, the end of a residual block, one op on the CPU.
    pub fn forward_add_relu_t(
        &self,
        x: &Tensor,
        residual: &Tensor,
        train: bool,
    ) -> candle::Result<Tensor> {
        self.run(x, Some(residual), train, true)
    }

    fn run(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        train: bool,
        relu: bool,
    ) -> candle::Result<Tensor> {
        let c = self.weight.dim(0)?;
        if x.rank() < 2 || x.dim(1)? != c {
            candle::bail!(
                "batch_norm: expected an input of shape (N, {c}, ...), got {:?}",
                x.dims()
            )
        }
        if let Some(r) = residual.filter(|r| r.dims() != x.dims()) {
            candle::bail!(
                "batch_norm: the residual's shape {:?} differs from the input's {:?}",
                r.dims(),
                x.dims()
            )
        }
        let count = x.elem_count() / c;
        if train && count <= 1 {
            candle::bail!(
                "batch_norm: expected more than 1 value per channel when training, got input \
                 of shape {:?}",
                x.dims()
            )
        }
        if on_cpu_kernels(x) && residual.is_none_or(on_cpu_kernels) {
            self.run_kernel(x, residual, train, relu, count)
        } else {
            self.run_candle(x, residual, train, relu, count)
        }
    }

    fn run_kernel(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        train: bool,
        relu: bool,
        count: usize,
    ) -> candle::Result<Tensor> {
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let x32 = f32(x)?;
        let stats = if train {
            kernels::channel_stats(&x32)?
        } else {
            self.running_on_host()?
        };
        let wb = self.weight_bias_f32()?;
        let r32 = residual.map(f32).transpose()?;
        let y = kernels::batch_norm(&x32, &wb, r32.as_ref(), &stats, self.cfg.eps, train, relu)?;
        // The running statistics change only once the batch went through.
        if train {
            self.update_running_from_host(&stats, count)?;
        }
        y.to_dtype(x.dtype())
    }

    /// candle's ops (GPUs, f64): the statistics stay on the device, so training asks nothing of
    /// the host.
    fn run_candle(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        train: bool,
        relu: bool,
        count: usize,
    ) -> candle::Result<Tensor> {
        let c = self.weight.dim(0)?;
        let compute = if x.dtype() == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let x3 = x.to_dtype(compute)?.reshape((x.dim(0)?, c, ()))?;
        let per_channel = |t: Tensor| t.reshape((1, c, 1));
        let (mean, var) = if train {
            let mean = (x3.sum_keepdim(2)?.sum_keepdim(0)? / count as f64)?;
            let centred = x3.broadcast_sub(&mean)?;
            let var = (centred.sqr()?.sum_keepdim(2)?.sum_keepdim(0)? / count as f64)?;
            self.update_running(
                &mean.detach().flatten_all()?,
                &var.detach().flatten_all()?,
                count,
            )?;
            (mean, var)
        } else {
            let buffer = |v: &Var| v.as_tensor().detach().to_dtype(compute);
            (
                per_channel(buffer(&self.running_mean)?)?,
                per_channel(buffer(&self.running_var)?)?,
            )
        };
        let invstd = (var + self.cfg.eps)?.sqrt()?.recip()?;
        let w = per_channel(self.weight.to_dtype(compute)?)?;
        let b = per_channel(self.bias.to_dtype(compute)?)?;
        let y = x3
            .broadcast_sub(&mean)?
            .broadcast_mul(&invstd.broadcast_mul(&w)?)?
            .broadcast_add(&b)?
            .reshape(x.shape())?;
        let y = match residual {
            Some(r) => (y + r.to_dtype(compute)?)?,
            None => y,
        };
        let y = if relu { y.relu()? } else { y };
        y.to_dtype(x.dtype())
    }

    /// PyTorch's running-statistics update from a batch's mean and biased variance (`(C,)`, any
    /// float type, on any device): `running = (1 - m) * running + m * batch`, with the variance
    /// made unbiased and `m = 1 / num_batches_tracked` when `momentum` is `None`.
    fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> candle::Result<()> {
        let tracked = self.num_batches_tracked.as_tensor();
        let tracked = (tracked + tracked.ones_like()?)?;
        self.num_batches_tracked.set(&tracked)?;
        let m = match self.cfg.momentum {
            Some(m) => m,
            None => 1.0 / tracked.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        };
        let unbiased = count as f64 / (count as f64 - 1.0);
        let blend = |buffer: &Var, batch: Tensor| -> candle::Result<()> {
            let dtype = buffer.dtype();
            // f64 buffers blend in f64, the others (f32, and the half types of true precision)
            // in f32.
            let compute = if dtype == DType::F64 {
                DType::F64
            } else {
                DType::F32
            };
            let old = buffer.as_tensor().to_dtype(compute)?;
            let batch = batch.to_dtype(compute)?.to_device(old.device())?;
            let new = ((old * (1.0 - m))? + (batch * m)?)?;
            buffer.set(&new.to_dtype(dtype)?)
        };
        blend(&self.running_mean, mean.clone())?;
        blend(&self.running_var, (var * unbiased)?)
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        self.run(x, None, train, false)
    }
}
