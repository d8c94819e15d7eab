//! 2-d convolution with bias, optionally followed by a ReLU and a max-pool, as one op: im2col +
//! gemm forward, and weight, bias and input gradients in one pass over the batch.
//!
//! Fusing the activation and the pooling into the convolution keeps the full-resolution
//! activation and its gradient inside per-thread scratch buffers: autograd only sees the pooled
//! output, so the largest tensors of a small CNN are never materialised, summed or freed.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use candle::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

mod direct;
mod geom;
mod path;
mod pool;
mod simd;

use geom::Geom;
use path::{Partial, Path};

use super::wide::sum_lanes;
use super::{as_uninit, beats, cpu_f32, slice, written};

/// Where each pooled output took its value from: the window offset of its maximum, or
/// [`DEAD`] when a ReLU zeroed it (no gradient flows back).
const DEAD: u8 = u8::MAX;

pub(crate) struct Conv2dOp {
    stride: usize,
    pad: usize,
    relu: bool,
    /// Max-pool window (and stride) after the activation; 0 for none.
    pool: usize,
    /// The forward pass's pooling choices, for the backward pass.
    argmax: Mutex<Vec<u8>>,
}

impl Conv2dOp {
    pub(crate) fn new(stride: usize, pad: usize, relu: bool, pool: usize) -> Self {
        Self {
            stride,
            pad,
            relu,
            pool,
            argmax: Mutex::new(Vec::new()),
        }
    }

    /// Output size per image: `(height, width)` after the optional pooling.
    fn out_hw(&self, g: &Geom) -> (usize, usize) {
        match self.pool {
            0 => (g.oh, g.ow),
            k => (g.oh / k, g.ow / k),
        }
    }

    /// Max-pools `full` (`O x OH x OW`) into `out`, after a ReLU when `relu`, recording the
    /// window offset of each maximum in `arg` (the first one, or the last NaN, as PyTorch).
    fn pool_image(&self, g: &Geom, full: &[f32], out: &mut [f32], arg: &mut [u8]) {
        let k = self.pool;
        let (ph, pw) = self.out_hw(g);
        if k == 2 {
            return pool::pool2(full, (g.ow, g.ohw(), ph, pw), self.relu, out, arg);
        }
        for o in 0..g.o {
            let plane = &full[o * g.ohw()..(o + 1) * g.ohw()];
            for py in 0..ph {
                for px in 0..pw {
                    let mut best = 0usize;
                    let mut m = plane[py * k * g.ow + px * k];
                    for ky in 0..k {
                        let row = &plane[(py * k + ky) * g.ow + px * k..][..k];
                        for (kx, &v) in row.iter().enumerate() {
                            if beats(v, m) {
                                m = v;
                                best = ky * k + kx;
                            }
                        }
                    }
                    let i = (o * ph + py) * pw + px;
                    if self.relu && m <= 0.0 {
                        out[i] = 0.0;
                        arg[i] = DEAD;
                    } else {
                        out[i] = m;
                        arg[i] = best as u8;
                    }
                }
            }
        }
    }

    /// The gradient with respect to the convolution's output (`O x OH*OW`) of one image, given
    /// the gradient of the op's output; `scratch` holds it when it has to be built.
    fn output_grad<'a>(
        &self,
        g: &Geom,
        gy: &'a [f32],
        res: &[f32],
        arg: &[u8],
        scratch: &'a mut [f32],
    ) -> &'a [f32] {
        let k = self.pool;
        if k == 2 {
            let (ph, pw) = self.out_hw(g);
            pool::unpool2(gy, arg, (g.ow, g.ohw(), ph, pw), scratch);
            scratch
        } else if let Some(nz) = std::num::NonZeroUsize::new(k) {
            let (ph, pw) = self.out_hw(g);
            scratch.fill(0.0);
            for o in 0..g.o {
                for py in 0..ph {
                    for px in 0..pw {
                        let i = (o * ph + py) * pw + px;
                        let a = arg[i];
                        if a != DEAD {
                            let (ky, kx) = (a as usize / nz, a as usize % nz);
                            scratch[o * g.ohw() + (py * k + ky) * g.ow + px * k + kx] = gy[i];
                        }
                    }
                }
            }
            scratch
        } else if self.relu {
            relu_grad(scratch, gy, res);
            scratch
        } else {
            gy
        }
    }
}

wide! {
/// ReLU passes the gradient `gy` where its output `y` is positive.
fn relu_grad(out: &mut [f32], gy: &[f32], y: &[f32]) {
    let n = out.len().min(gy.len()).min(y.len());
    let (out, gy, y) = (&mut out[..n], &gy[..n], &y[..n]);
    for i in 0..n {
        out[i] = if y[i] > 0.0 { gy[i] } else { 0.0 };
    }
}
}

/// How a batch of `n` images is spread over rayon's threads: the fewest images a parallel task
/// takes (a contiguous share per thread, so the partial sums do not depend on scheduling), and
/// whether each image's matrix products run on the pool instead, when there are fewer images
/// than threads (say, one large image at inference).
fn split(n: usize) -> (usize, bool) {
    let threads = rayon::current_num_threads();
    if n < threads {
        (n.max(1), true)
    } else {
        (n.div_ceil(threads), false)
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "lit-conv2d"
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
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let (x, w, b) = (
            slice(s1, l1, "conv2d", "input")?,
            slice(s2, l2, "conv2d", "weight")?,
            slice(s3, l3, "conv2d", "bias")?,
        );
        let chw = g.chw();
        let (ph, pw) = self.out_hw(&g);
        if ph == 0 || pw == 0 {
            candle::bail!(
                "conv2d kernel: pooling window {} does not fit the {}x{} output",
                self.pool,
                g.oh,
                g.ow
            )
        }
        let per_image = g.o * ph * pw;
        let len = g.n * per_image;
        let (min_len, inner) = split(g.n);
        let path = Path::choose(&g, w, inner, false);
        let scratch = || path.scratch(&g, g.o);
        let y = if self.pool == 0 {
            written(len, |y| {
                y.par_chunks_mut(per_image)
                    .enumerate()
                    .with_min_len(min_len)
                    .for_each_init(scratch, |(a, flat), (i, yn)| {
                        let xn = &x[i * chw..(i + 1) * chw];
                        let yn = path.forward(&g, xn, w, b, (a, flat), yn, inner);
                        if self.relu {
                            yn.iter_mut().for_each(|v| *v = super::relu(*v));
                        }
                    });
            })
        } else {
            let (mut y, mut arg) = (vec![0f32; len], vec![0u8; len]);
            y.par_chunks_mut(per_image)
                .zip(arg.par_chunks_mut(per_image))
                .enumerate()
                .with_min_len(min_len)
                .for_each_init(
                    || (scratch(), vec![0f32; g.o * g.ohw()]),
                    |((a, flat), full), (i, (yn, an))| {
                        let xn = &x[i * chw..(i + 1) * chw];
                        // SAFETY: `forward` writes only floats.
                        let full = unsafe { as_uninit(full) };
                        let full = path.forward(&g, xn, w, b, (a, flat), full, inner);
                        self.pool_image(&g, full, yn, an);
                    },
                );
            *self
                .argmax
                .lock()
                .map_err(|_| candle::Error::Msg("conv2d kernel: poisoned lock".into()))? = arg;
            y
        };
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, ph, pw))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xg, wg, gg, rg) = (
            x.storage_and_layout(),
            w.storage_and_layout(),
            grad.storage_and_layout(),
            res.storage_and_layout(),
        );
        let grads = BackIn {
            x: (cpu_f32(&xg.0, xg.1, "conv2d", "input")?, x.dims()),
            w: (cpu_f32(&wg.0, wg.1, "conv2d", "weight")?, w.dims()),
            gy: cpu_f32(&gg.0, gg.1, "conv2d", "gradient")?,
            ys: cpu_f32(&rg.0, rg.1, "conv2d", "output")?,
        };
        // The input gradient only when something upstream needs it (never for input images).
        let (dx, gw, gb) = self.backward(grads, x.track_op(), None)?;
        let gx = dx
            .map(|dx| Tensor::from_vec(dx, x.shape(), x.device()))
            .transpose()?;
        let gw = Tensor::from_vec(gw, w.shape(), w.device())?;
        let gb = Tensor::from_vec(gb, gw.dim(0)?, w.device())?;
        Ok((gx, Some(gw), Some(gb)))
    }
}

/// The input gradient (when asked for), the weight gradient and the bias gradient.
pub(crate) type ConvGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>);

/// What the backward pass reads: the input and the weight (data and dims), the output's
/// gradient and the output.
pub(crate) struct BackIn<'a> {
    pub(crate) x: (&'a [f32], &'a [usize]),
    pub(crate) w: (&'a [f32], &'a [usize]),
    pub(crate) gy: &'a [f32],
    pub(crate) ys: &'a [f32],
}

impl Conv2dOp {
    /// The input gradient (when `wants_dx`, plus `addend` when given: the gradient the input
    /// receives from elsewhere, added as each element is written), the weight gradient and the
    /// bias gradient.
    pub(crate) fn backward(
        &self,
        inp: BackIn,
        wants_dx: bool,
        addend: Option<&[f32]>,
    ) -> candle::Result<ConvGrads> {
        let g = Geom::new(inp.x.1, inp.w.1, self.stride, self.pad)?;
        let (ckk, ohw, chw) = (g.ckk(), g.ohw(), g.chw());
        let (ph, pw) = self.out_hw(&g);
        let per_out = g.o * ph * pw;
        let (xs, ws, gy, ys) = (inp.x.0, inp.w.0, inp.gy, inp.ys);
        if gy.len() != g.n * per_out || ys.len() != gy.len() {
            candle::bail!("conv2d kernel: gradient or output of the wrong size")
        }
        if addend.is_some_and(|a| a.len() != g.n * chw) {
            candle::bail!("conv2d kernel: an input gradient to add of the wrong size")
        }
        let arg = self
            .argmax
            .lock()
            .map_err(|_| candle::Error::Msg("conv2d kernel: poisoned lock".into()))?;
        if self.pool > 0 && arg.len() != g.n * per_out {
            candle::bail!("conv2d kernel: backward without a matching forward pass")
        }
        let (min_len, inner) = split(g.n);
        let path = Path::choose(&g, ws, inner, true);
        let init = || Partial::new(&g, &path, wants_dx);
        // One pass per image: its output gradient, its share of the weight and bias gradients,
        // and its input gradient (every element), while its data is in cache.
        let image = |mut p: Partial, i: usize, dxn: Option<&mut [MaybeUninit<f32>]>| {
            let out = i * per_out..(i + 1) * per_out;
            let arg_n = if self.pool > 0 {
                &arg[out.clone()]
            } else {
                &[][..]
            };
            let mut gy_n = std::mem::take(&mut p.gy);
            let gyn = self.output_grad(&g, &gy[out.clone()], &ys[out], arg_n, &mut gy_n);
            for (o, row) in gyn.chunks(ohw).enumerate() {
                p.gb[o] += sum_lanes(row);
            }
            let xn = &xs[i * chw..(i + 1) * chw];
            let dxn = dxn.map(|d| (d, addend.map(|a| &a[i * chw..(i + 1) * chw])));
            p.weight_and_input_grads(&g, &path, xn, ws, gyn, dxn, inner);
            p.gy = gy_n;
            p
        };
        let mut partials: Vec<Partial> = Vec::new();
        let dx = wants_dx.then(|| {
            written(g.n * chw, |dx| {
                partials = dx
                    .par_chunks_mut(chw)
                    .enumerate()
                    .with_min_len(min_len)
                    .fold(init, |p, (i, dxn)| image(p, i, Some(dxn)))
                    .collect();
            })
        });
        if !wants_dx {
            partials = (0..g.n)
                .into_par_iter()
                .with_min_len(min_len)
                .fold(init, |p, i| image(p, i, None))
                .collect();
        }
        let (mut gw, mut gb) = (vec![0f32; g.o * ckk], vec![0f32; g.o]);
        for p in partials {
            p.add_weight_grad(&g, &path, &mut gw);
            gb.iter_mut().zip(&p.gb).for_each(|(a, b)| *a += b);
        }
        Ok((dx, gw, gb))
    }
}

fn apply(x: &Tensor, weight: &Tensor, bias: &Tensor, op: Conv2dOp) -> candle::Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// `conv2d(x, weight) + bias` for contiguous f32 CPU tensors, with square stride and padding and
/// no dilation or groups, followed by a ReLU when `relu`; gradients for all three (the input's
/// only when it is tracked).
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    relu: bool,
) -> candle::Result<Tensor> {
    apply(x, weight, bias, Conv2dOp::new(stride, padding, relu, 0))
}

/// `max_pool2d(act(conv2d(x, weight) + bias), pool)` in one op, where `act` is a ReLU when `relu`
/// and the identity otherwise; the pooling window and stride are both `pool` (as
/// `nn.MaxPool2d(pool)`), and a window's gradient goes to its first maximum, as in PyTorch.
pub fn conv2d_pool(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    relu: bool,
    pool: usize,
) -> candle::Result<Tensor> {
    if !(1..16).contains(&pool) {
        candle::bail!("conv2d kernel: pooling window {pool} is not in 1..16")
    }
    apply(x, weight, bias, Conv2dOp::new(stride, padding, relu, pool))
}
