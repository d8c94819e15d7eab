//! A convolution followed by a batch norm (and a ReLU) as one op, the shape of a ResNet's stem,
//! the first half of its blocks and their downsampling shortcuts.
//!
//! The convolution's output lives only inside the op (the backward pass needs it), so autograd
//! never sees it: candle stores, zeroes and sums no gradient for it, and the batch norm's input
//! gradient goes straight into the convolution's backward pass.

use std::sync::{Arc, Mutex};

use candle::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::conv::Conv2dOp;
use super::norm::{stats_of, BatchNormOp, ChannelStats};
use super::{cpu_f32, slice};

struct ConvBnOp {
    conv: Conv2dOp,
    /// The running statistics in evaluation; `None` in training (the batch's are used).
    running: Option<ChannelStats>,
    eps: f64,
    relu: bool,
    /// The batch norm the forward pass applied and the convolution's output, for the backward
    /// pass.
    saved: Mutex<Option<(BatchNormOp, Vec<f32>)>>,
    /// The batch's statistics, for the caller's running-statistics update.
    batch_stats: Arc<Mutex<Option<ChannelStats>>>,
}

fn poisoned<T>(_: T) -> candle::Error {
    candle::Error::Msg("conv2d_batch_norm kernel: poisoned lock".into())
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "lit-conv2d-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let o = l2.dims()[0];
        let zero_bias = CpuStorage::F32(vec![0f32; o]);
        let (z, shape) = self
            .conv
            .cpu_fwd(s1, l1, s2, l2, &zero_bias, &Layout::contiguous(o))?;
        let CpuStorage::F32(z) = z else {
            candle::bail!("conv2d_batch_norm kernel: the convolution gave no f32 output")
        };
        let (n, l) = (shape.dims()[0], shape.dims()[2] * shape.dims()[3]);
        let stats = match &self.running {
            Some(s) => s.clone(),
            None => {
                let s = stats_of(&z, (n, o, l));
                *self.batch_stats.lock().map_err(poisoned)? = Some(s.clone());
                s
            }
        };
        let bn = BatchNormOp::new(&stats, self.eps, self.running.is_none(), self.relu);
        let wb = slice(s3, l3, "conv2d_batch_norm", "weight and bias")?;
        let y = bn.apply(&z, wb, None, (o, l))?;
        *self.saved.lock().map_err(poisoned)? = Some((bn, z));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        wb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().map_err(poisoned)?;
        let Some((bn, z)) = saved.as_ref() else {
            candle::bail!("conv2d_batch_norm kernel: backward without a forward pass")
        };
        let (n, o, oh, ow) = res.dims4()?;
        let (wb, grad) = (wb.contiguous()?, grad.contiguous()?);
        let (wg, gg, rg) = (
            wb.storage_and_layout(),
            grad.storage_and_layout(),
            res.storage_and_layout(),
        );
        let (wbs, gy, ys) = (
            cpu_f32(&wg.0, wg.1, "conv2d_batch_norm", "weight and bias")?,
            cpu_f32(&gg.0, gg.1, "conv2d_batch_norm", "gradient")?,
            cpu_f32(&rg.0, rg.1, "conv2d_batch_norm", "output")?,
        );
        let (gz, gwb, _) = bn.grads(z, &wbs[..o], gy, ys, (n, o, oh * ow), true, false);
        let gz = gz.unwrap_or_default();
        drop((wg, gg, rg));
        let gz = Tensor::from_vec(gz, res.shape(), res.device())?;
        let zero_bias = Tensor::zeros(o, candle::DType::F32, res.device())?;
        // The convolution's backward pass with the batch norm's input gradient (no ReLU or
        // pooling in the convolution itself, so its output is not read).
        let (gx, gw, _) = self.conv.bwd(x, w, &zero_bias, res, &gz)?;
        let gwb = Tensor::from_vec(gwb, (2, o), wb.device())?;
        Ok((gx, gw, Some(gwb)))
    }
}

/// `act(batch_norm(conv2d(x, weight)))` for contiguous f32 CPU tensors, as one op: a
/// convolution without bias (square stride and padding), then a batch norm with `weight_bias`
/// (`(2, O)`: weight, then bias), then a ReLU when `relu`. With `running` statistics
/// (evaluation) it normalises with them; without (training) with the batch's, which it returns
/// for the running-statistics update. Gradients for `x` (when tracked), `weight` and
/// `weight_bias`.
pub fn conv2d_batch_norm(
    x: &Tensor,
    weight: &Tensor,
    weight_bias: &Tensor,
    (stride, padding): (usize, usize),
    running: Option<&ChannelStats>,
    eps: f64,
    relu: bool,
) -> candle::Result<(Tensor, Option<ChannelStats>)> {
    let batch_stats = Arc::new(Mutex::new(None));
    let op = ConvBnOp {
        conv: Conv2dOp::new(stride, padding, false, 0),
        running: running.cloned(),
        eps,
        relu,
        saved: Mutex::new(None),
        batch_stats: Arc::clone(&batch_stats),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &weight_bias.contiguous()?, op)?;
    let stats = batch_stats.lock().map_err(poisoned)?.take();
    Ok((y, stats))
}
