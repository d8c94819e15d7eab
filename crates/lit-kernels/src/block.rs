//! A whole residual block (torchvision's `BasicBlock`) as one op: `relu(bn2(conv2(relu(bn1(
//! conv1(x))))) + shortcut(x))`, the shortcut the identity or a 1x1 convolution and batch norm.
//!
//! The block's input feeds two ops (the first convolution and the shortcut), so as separate ops
//! autograd would receive two gradients for it and add them in a pass of its own, into a new
//! tensor. Here the backward pass computes the shortcut's gradient first and adds it while it
//! writes the first convolution's input gradient: the same sums, with no extra pass or buffer.
//! The first convolution's output also stays inside the op, so autograd keeps no tensor for it.

use std::sync::Mutex;

use candle::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::conv_bn::{poisoned, BatchStats, BnBackIn, ConvBnOp};
use super::norm::ChannelStats;
use super::{cpu_f32, slice};

/// One convolution of a block and the batch norm after it.
pub struct BlockConv<'a> {
    /// The convolution's weight, `(O, C, K, K)`, without bias.
    pub weight: &'a Tensor,
    /// The batch norm's weight and bias, `(2, O)`.
    pub weight_bias: &'a Tensor,
    /// The running statistics in evaluation; `None` in training.
    pub running: Option<&'a ChannelStats>,
    /// The batch norm's `eps`.
    pub eps: f64,
}

/// One part of the op: its fused op, its weight's shape, and where its weights lie in the
/// packed parameters.
struct Part {
    op: ConvBnOp,
    shape: Shape,
    /// The convolution's weight, then the batch norm's weight and bias.
    at: usize,
    len: (usize, usize),
}

impl Part {
    fn weights<'a>(&self, packed: &'a [f32]) -> (&'a [f32], &'a [f32]) {
        let w = &packed[self.at..self.at + self.len.0];
        (
            w,
            &packed[self.at + self.len.0..self.at + self.len.0 + self.len.1],
        )
    }
}

/// What the forward pass keeps for the backward pass besides its parts' own: the dims of the
/// first convolution's output. That output itself is computed again from the convolution's
/// output (one element-wise pass) rather than kept, and the shortcut's output is not needed
/// (its batch norm has no ReLU), which keeps a block's memory at its three convolution outputs.
type Saved = Vec<usize>;

struct BlockOp {
    conv1: Part,
    conv2: Part,
    down: Option<Part>,
    saved: Mutex<Option<Saved>>,
}

/// `(y, [data, dims])` of a fused op's output.
fn output(out: (CpuStorage, Shape)) -> candle::Result<(Vec<f32>, Vec<usize>)> {
    match out {
        (CpuStorage::F32(v), shape) => Ok((v, shape.dims().to_vec())),
        _ => candle::bail!("basic_block kernel: a convolution gave no f32 output"),
    }
}

type Dims<'a> = (&'a [f32], &'a [usize]);

/// What `part`'s backward pass reads: its input, its weights from `params`, its output and
/// the output's gradient.
fn part_input<'a>(
    part: &'a Part,
    params: &'a [f32],
    x: Dims<'a>,
    ys: Dims<'a>,
    gy: &'a [f32],
) -> BnBackIn<'a> {
    let (w, wbs) = part.weights(params);
    BnBackIn {
        x,
        w: (w, part.shape.dims()),
        wbs,
        ys,
        gy,
    }
}

impl BlockOp {
    fn run(
        part: &Part,
        x: (&CpuStorage, &Layout),
        packed: &[f32],
        r: Option<&[f32]>,
    ) -> candle::Result<(Vec<f32>, Vec<usize>)> {
        let (w, wb) = part.weights(packed);
        let w = CpuStorage::F32(w.to_vec());
        let layout = Layout::contiguous(part.shape.clone());
        output(part.op.forward(x, (&w, &layout), wb, r)?)
    }
}

impl CustomOp2 for BlockOp {
    fn name(&self) -> &'static str {
        "lit-basic-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let packed = slice(s2, l2, "basic_block", "weights")?;
        let (y1, dims1) = Self::run(&self.conv1, (s1, l1), packed, None)?;
        let short = match &self.down {
            Some(part) => Some(Self::run(part, (s1, l1), packed, None)?.0),
            None => None,
        };
        let r = match &short {
            Some(s) => s.as_slice(),
            None => slice(s1, l1, "basic_block", "input")?,
        };
        let y1s = CpuStorage::F32(y1);
        let l = Layout::contiguous(dims1.as_slice());
        let (y, dims) = Self::run(&self.conv2, (&y1s, &l), packed, Some(r))?;
        drop((y1s, short));
        *self.saved.lock().map_err(poisoned)? = Some(dims1);
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(dims1) = self.saved.lock().map_err(poisoned)?.take() else {
            candle::bail!("basic_block kernel: backward without a forward pass")
        };
        let what = "basic_block";
        let (x, grad) = (x.contiguous()?, grad.contiguous()?);
        let params = packed.flatten_all()?.to_vec1::<f32>()?;
        let (xg, gg, rg) = (
            x.storage_and_layout(),
            grad.storage_and_layout(),
            res.storage_and_layout(),
        );
        let xs = (cpu_f32(&xg.0, xg.1, what, "input")?, x.dims());
        let ys = (cpu_f32(&rg.0, rg.1, what, "output")?, res.dims());
        let gy = cpu_f32(&gg.0, gg.1, what, "gradient")?;
        let input = |part, x, ys, gy| part_input(part, &params, x, ys, gy);
        let wants_dx = x.track_op();
        let y1 = self
            .conv1
            .op
            .output_again(self.conv1.weights(&params).1, &dims1)?;
        let (g1, gw2, gwb2, gr) =
            self.conv2
                .op
                .grads(input(&self.conv2, (&y1, &dims1), ys, gy), true, true, None)?;
        let (Some(g1), Some(gr)) = (g1, gr) else {
            unreachable!("both gradients were asked for")
        };
        self.conv2.op.release()?;
        let (addend, down) = match &self.down {
            Some(part) => {
                // Without a ReLU the batch norm does not read its output: `gr` stands in.
                let (gxd, gw, gwb, _) =
                    part.op
                        .grads(input(part, xs, (&gr, ys.1), &gr), wants_dx, false, None)?;
                part.op.release()?;
                (gxd, Some((gw, gwb)))
            }
            None => (Some(gr), None),
        };
        let (gx, gw1, gwb1, _) = self.conv1.op.grads(
            input(&self.conv1, xs, (&y1, &dims1), &g1),
            wants_dx,
            false,
            addend.as_deref(),
        )?;
        self.conv1.op.release()?;
        let mut gp = Vec::with_capacity(params.len());
        gp.extend(gw1.into_iter().chain(gwb1).chain(gw2).chain(gwb2));
        if let Some((gw, gwb)) = down {
            gp.extend(gw.into_iter().chain(gwb));
        }
        let gx = gx
            .map(|gx| Tensor::from_vec(gx, x.shape(), x.device()))
            .transpose()?;
        let gp = Tensor::from_vec(gp, packed.shape(), packed.device())?;
        Ok((gx, Some(gp)))
    }
}

/// torchvision's `BasicBlock` on contiguous f32 CPU tensors as one op: `conv1` (3x3, `stride`,
/// padding 1) with its batch norm and a ReLU, `conv2` (3x3) with its batch norm, the shortcut
/// (the identity, or `down`: a 1x1 convolution with `stride` and its batch norm) added, and a
/// ReLU. Returns the output and, in training, each batch norm's batch statistics (`conv1`'s,
/// `conv2`'s, then `down`'s) for the running-statistics update. Gradients for `x` (when tracked)
/// and every weight; the same values as the three fused ops one after the other.
pub fn residual_block(
    x: &Tensor,
    conv1: BlockConv,
    conv2: BlockConv,
    down: Option<BlockConv>,
    stride: usize,
) -> candle::Result<(Tensor, Vec<Option<ChannelStats>>)> {
    let mut stats: Vec<BatchStats> = Vec::new();
    let mut packs = Vec::new();
    let mut at = 0;
    let mut part = |c: &BlockConv, geometry, relu| -> candle::Result<Part> {
        let (op, s) = ConvBnOp::new(geometry, c.running, c.eps, relu);
        stats.push(s);
        let (w, wb) = (c.weight.flatten_all()?, c.weight_bias.flatten_all()?);
        let len = (w.elem_count(), wb.elem_count());
        let part = Part {
            op,
            shape: c.weight.shape().clone(),
            at,
            len,
        };
        at += len.0 + len.1;
        packs.extend([w, wb]);
        Ok(part)
    };
    let op = BlockOp {
        conv1: part(&conv1, (stride, 1), true)?,
        conv2: part(&conv2, (1, 1), true)?,
        down: down.map(|d| part(&d, (stride, 0), false)).transpose()?,
        saved: Mutex::new(None),
    };
    let packed = Tensor::cat(&packs, 0)?;
    let y = x.contiguous()?.apply_op2(&packed, op)?;
    let stats = stats
        .iter()
        .map(|s| Ok(s.lock().map_err(poisoned)?.take()))
        .collect::<candle::Result<_>>()?;
    Ok((y, stats))
}
