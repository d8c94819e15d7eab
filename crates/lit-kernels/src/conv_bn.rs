//! A convolution followed by a batch norm (and a ReLU) as one op, the shape of a ResNet's stem,
//! the first half of its blocks and their downsampling shortcuts.
//!
//! The convolution's output lives only inside the op (the backward pass needs it), so autograd
//! never sees it: candle stores, zeroes and sums no gradient for it, and the batch norm's input
//! gradient goes straight into the convolution's backward pass.

use std::sync::{Arc, Mutex};

use candle::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::conv::{BackIn, Conv2dOp};
use super::norm::{stats_of, BatchNormOp, ChannelStats};
use super::{cpu_f32, slice};

/// The gradients of a fused op's input, convolution weight, batch norm weight and bias (`2 x O`)
/// and residual.
type Grads = (Option<Tensor>, Tensor, Vec<f32>, Option<Tensor>);

/// Where a fused op leaves the batch's statistics, for the running-statistics update.
pub(crate) type BatchStats = Arc<Mutex<Option<ChannelStats>>>;

pub(crate) struct ConvBnOp {
    conv: Conv2dOp,
    /// The running statistics in evaluation; `None` in training (the batch's are used).
    running: Option<ChannelStats>,
    eps: f64,
    relu: bool,
    /// The batch norm the forward pass applied and the convolution's output, for the backward
    /// pass.
    saved: Mutex<Option<(BatchNormOp, Vec<f32>)>>,
    /// The batch's statistics, for the caller's running-statistics update.
    batch_stats: BatchStats,
}

pub(crate) fn poisoned<T>(_: T) -> candle::Error {
    candle::Error::Msg("conv2d_batch_norm kernel: poisoned lock".into())
}

impl ConvBnOp {
    /// The op, and where it leaves the batch's statistics in training.
    pub(crate) fn new(
        (stride, padding): (usize, usize),
        running: Option<&ChannelStats>,
        eps: f64,
        relu: bool,
    ) -> (Self, BatchStats) {
        let batch_stats = Arc::new(Mutex::new(None));
        let op = ConvBnOp {
            conv: Conv2dOp::new(stride, padding, false, 0),
            running: running.cloned(),
            eps,
            relu,
            saved: Mutex::new(None),
            batch_stats: Arc::clone(&batch_stats),
        };
        (op, batch_stats)
    }

    /// `act(bn(conv(x)) [+ r])`, keeping what the backward pass needs.
    pub(crate) fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        wb: &[f32],
        r: Option<&[f32]>,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let o = w.1.dims()[0];
        let zero_bias = CpuStorage::F32(vec![0f32; o]);
        let (z, shape) =
            self.conv
                .cpu_fwd(x.0, x.1, w.0, w.1, &zero_bias, &Layout::contiguous(o))?;
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
        let y = bn.apply(&z, wb, r, (o, l))?;
        *self.saved.lock().map_err(poisoned)? = Some((bn, z));
        Ok((CpuStorage::F32(y), shape))
    }

    /// The gradients of `x` (when tracked), the convolution's weight, the batch norm's weight
    /// and bias (`2 x O`) and the residual (when `want_residual`).
    fn backward(
        &self,
        (x, w, wbs): (&Tensor, &Tensor, &[f32]),
        res: &Tensor,
        grad: &Tensor,
        want_residual: bool,
    ) -> candle::Result<Grads> {
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xg, wg, gg, rg) = (
            x.storage_and_layout(),
            w.storage_and_layout(),
            grad.storage_and_layout(),
            res.storage_and_layout(),
        );
        let what = "conv2d_batch_norm";
        let inp = BnBackIn {
            x: (cpu_f32(&xg.0, xg.1, what, "input")?, x.dims()),
            w: (cpu_f32(&wg.0, wg.1, what, "weight")?, w.dims()),
            wbs,
            ys: (cpu_f32(&rg.0, rg.1, what, "output")?, res.dims()),
            gy: cpu_f32(&gg.0, gg.1, what, "gradient")?,
        };
        let (gx, gw, gwb, gr) = self.grads(inp, x.track_op(), want_residual, None)?;
        let gx = gx
            .map(|gx| Tensor::from_vec(gx, x.shape(), x.device()))
            .transpose()?;
        let gr = gr
            .map(|gr| Tensor::from_vec(gr, res.shape(), res.device()))
            .transpose()?;
        let gw = Tensor::from_vec(gw, w.shape(), w.device())?;
        Ok((gx, gw, gwb, gr))
    }

    /// The output of the last forward pass without a residual, computed again from the
    /// convolution's output it kept, with the batch norm's weight and bias `wb`.
    pub(crate) fn output_again(&self, wb: &[f32], dims: &[usize]) -> candle::Result<Vec<f32>> {
        let saved = self.saved.lock().map_err(poisoned)?;
        let (Some((bn, z)), &[_, c, h, w]) = (saved.as_ref(), dims) else {
            candle::bail!("conv2d_batch_norm kernel: no forward pass to compute again")
        };
        bn.apply(z, wb, None, (c, h * w))
    }

    /// Drops what the forward pass kept, once the backward pass no longer needs it.
    pub(crate) fn release(&self) -> candle::Result<()> {
        *self.saved.lock().map_err(poisoned)? = None;
        Ok(())
    }

    /// The gradients of `x` (when `wants_dx`, plus `addend` when given), the convolution's
    /// weight, the batch norm's weight and bias (`2 x O`) and the residual (when
    /// `want_residual`), as flat vectors.
    pub(crate) fn grads(
        &self,
        inp: BnBackIn,
        wants_dx: bool,
        want_residual: bool,
        addend: Option<&[f32]>,
    ) -> candle::Result<SliceGrads> {
        let saved = self.saved.lock().map_err(poisoned)?;
        let Some((bn, z)) = saved.as_ref() else {
            candle::bail!("conv2d_batch_norm kernel: backward without a forward pass")
        };
        let &[n, o, oh, ow] = inp.ys.1 else {
            candle::bail!("conv2d_batch_norm kernel: the output is not (N, C, H, W)")
        };
        let (gz, gwb, gr) = bn.grads(
            z,
            &inp.wbs[..o],
            inp.gy,
            inp.ys.0,
            (n, o, oh * ow),
            true,
            want_residual,
        );
        let gz = gz.unwrap_or_default();
        // The convolution's backward pass with the batch norm's input gradient (no ReLU or
        // pooling in the convolution itself, so its output is not read).
        let back = BackIn {
            x: inp.x,
            w: inp.w,
            gy: &gz,
            ys: &gz,
        };
        let (gx, gw, _) = self.conv.backward(back, wants_dx, addend)?;
        Ok((gx, gw, gwb, gr))
    }
}

/// What a fused op's backward pass reads: the input and the convolution's weight (data and
/// dims), the batch norm's weight and bias, the op's output (data and dims) and its gradient.
pub(crate) struct BnBackIn<'a> {
    pub(crate) x: (&'a [f32], &'a [usize]),
    pub(crate) w: (&'a [f32], &'a [usize]),
    pub(crate) wbs: &'a [f32],
    pub(crate) ys: (&'a [f32], &'a [usize]),
    pub(crate) gy: &'a [f32],
}

/// [`Grads`] as flat vectors.
pub(crate) type SliceGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>, Option<Vec<f32>>);

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
        let wb = slice(s3, l3, "conv2d_batch_norm", "weight and bias")?;
        self.forward((s1, l1), (s2, l2), wb, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        wb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let wb = wb.contiguous()?;
        let wbs = wb.flatten_all()?.to_vec1::<f32>()?;
        let (gx, gw, gwb, _) = self.backward((x, w, &wbs), res, grad, false)?;
        let o = w.dim(0)?;
        Ok((
            gx,
            Some(gw),
            Some(Tensor::from_vec(gwb, (2, o), wb.device())?),
        ))
    }
}

/// [`ConvBnOp`] with a residual added before the activation. candle's custom ops take three
/// tensors, so the convolution's weight and the batch norm's weight and bias travel as one flat
/// tensor (`packed`), split here.
struct ConvBnAddOp {
    inner: ConvBnOp,
    weight_shape: Shape,
}

impl CustomOp3 for ConvBnAddOp {
    fn name(&self) -> &'static str {
        "lit-conv2d-batch-norm-add"
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
        let packed = slice(s2, l2, "conv2d_batch_norm", "weights")?;
        let nw = self.weight_shape.elem_count();
        let w = CpuStorage::F32(packed[..nw].to_vec());
        let r = slice(s3, l3, "conv2d_batch_norm", "residual")?;
        let layout = Layout::contiguous(self.weight_shape.clone());
        self.inner
            .forward((s1, l1), (&w, &layout), &packed[nw..], Some(r))
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        r: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let nw = self.weight_shape.elem_count();
        let w = packed.narrow(0, 0, nw)?.reshape(&self.weight_shape)?;
        let wbs = packed
            .narrow(0, nw, packed.dim(0)? - nw)?
            .to_vec1::<f32>()?;
        let (gx, gw, gwb, gr) = self
            .inner
            .backward((x, &w, &wbs), res, grad, r.track_op())?;
        let n = gwb.len();
        let gwb = Tensor::from_vec(gwb, n, packed.device())?;
        let gpacked = Tensor::cat(&[gw.flatten_all()?, gwb], 0)?;
        Ok((gx, Some(gpacked), gr))
    }
}

/// `act(batch_norm(conv2d(x, weight)) [+ residual])` for contiguous f32 CPU tensors, as one op:
/// a convolution without bias (square stride and padding), then a batch norm with `weight_bias`
/// (`(2, O)`: weight, then bias), then the residual's addition, then a ReLU when `relu`. With
/// `running` statistics (evaluation) it normalises with them; without (training) with the
/// batch's, which it returns for the running-statistics update. Gradients for `x` and `residual`
/// (when tracked), `weight` and `weight_bias`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_batch_norm(
    x: &Tensor,
    weight: &Tensor,
    weight_bias: &Tensor,
    residual: Option<&Tensor>,
    (stride, padding): (usize, usize),
    running: Option<&ChannelStats>,
    eps: f64,
    relu: bool,
) -> candle::Result<(Tensor, Option<ChannelStats>)> {
    let (op, batch_stats) = ConvBnOp::new((stride, padding), running, eps, relu);
    let x = x.contiguous()?;
    let y = match residual {
        None => x.apply_op3(&weight.contiguous()?, &weight_bias.contiguous()?, op)?,
        Some(r) => {
            let packed = Tensor::cat(&[weight.flatten_all()?, weight_bias.flatten_all()?], 0)?;
            let op = ConvBnAddOp {
                inner: op,
                weight_shape: weight.shape().clone(),
            };
            x.apply_op3(&packed, &r.contiguous()?, op)?
        }
    };
    let stats = batch_stats.lock().map_err(poisoned)?.take();
    Ok((y, stats))
}
