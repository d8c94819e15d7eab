//! Batch normalisation over the channels of an `(N, C, ...)` tensor, optionally followed by the
//! addition of a residual and a ReLU, as one op: forward and backward are one op each, and
//! autograd keeps only the input and the output (the statistics live in the op).
//!
//! The forward pass takes per-channel statistics (the batch's in training, the running ones in
//! evaluation) and writes `act(x * alpha + beta [+ r])` with `alpha = weight / sqrt(var + eps)`
//! and `beta = bias - mean * alpha`, PyTorch's CPU formula. The backward pass sums the two
//! per-channel reductions it needs in one pass over the channels, then writes the input gradient
//! in one pass over the images.

use std::mem::MaybeUninit;

use candle::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::wide::{square_dev_lanes, sum_lanes};
use super::{cpu_f32, relu, slice, written};

/// The statistics a batch norm normalises with, per channel: mean and biased variance.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStats {
    /// The mean of each channel.
    pub mean: Vec<f32>,
    /// The biased (divided by the count) variance of each channel.
    pub var: Vec<f32>,
}

/// `(N, C, L)`: images, channels and the elements per channel of one image.
fn ncl(dims: &[usize]) -> candle::Result<(usize, usize, usize)> {
    match dims {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        _ => candle::bail!("batch_norm kernel: expected (N, C, ...), got {dims:?}"),
    }
}

/// The mean and biased variance of each channel of `x` (`(N, C, ...)`, contiguous f32 on the
/// CPU), accumulated in f64 in two passes (mean, then squared deviations) for accuracy.
pub fn channel_stats(x: &Tensor) -> candle::Result<ChannelStats> {
    let x = x.contiguous()?;
    let (n, c, l) = ncl(x.dims())?;
    let (s, layout) = x.storage_and_layout();
    let xs = cpu_f32(&s, layout, "batch_norm", "input")?;
    if n * l == 0 {
        candle::bail!(
            "batch_norm kernel: no elements per channel in {:?}",
            x.dims()
        )
    }
    Ok(stats_of(xs, (n, c, l)))
}

/// [`channel_stats`] of `(n, c, l)` values.
pub(crate) fn stats_of(xs: &[f32], (n, c, l): (usize, usize, usize)) -> ChannelStats {
    let count = (n * l) as f64;
    // Each image's share of a channel in f32 lanes (vectorised), the shares added in f64.
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let segments = || (0..n).map(move |i| &xs[(i * c + ch) * l..(i * c + ch + 1) * l]);
            let mean = segments().map(|seg| f64::from(sum_lanes(seg))).sum::<f64>() / count;
            let m = mean as f32;
            let var = segments()
                .map(|seg| f64::from(square_dev_lanes(seg, m)))
                .sum::<f64>()
                / count;
            (m, var as f32)
        })
        .collect();
    let (mean, var) = stats.into_iter().unzip();
    ChannelStats { mean, var }
}

/// The gradient reaching the affine output of one segment, `gy` masked where the ReLU's output
/// `y` is not positive (when `relu`); the sum of it and of it times `x - mean`, in 8 lanes.
fn masked_sums(gy: &[f32], y: &[f32], x: &[f32], mean: f32, relu: bool) -> (f32, f32) {
    let n = gy.len().min(y.len()).min(x.len());
    let (gy, y, x) = (&gy[..n], &y[..n], &x[..n]);
    let split = n / 8 * 8;
    #[cfg(target_arch = "x86_64")]
    let (a, b) = if super::wide::has_avx512() {
        // SAFETY: AVX-512F implies AVX.
        unsafe {
            super::bn_simd::masked_lanes_avx(&gy[..split], &y[..split], &x[..split], mean, relu)
        }
    } else {
        masked_lanes(&gy[..split], &y[..split], &x[..split], mean, relu)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (a, b) = masked_lanes(&gy[..split], &y[..split], &x[..split], mean, relu);
    let (mut sa, mut sb) = (a.iter().sum::<f32>(), b.iter().sum::<f32>());
    for ((&g, &yv), &xv) in gy[split..].iter().zip(&y[split..]).zip(&x[split..]) {
        let g = passed(g, yv, relu);
        sa += g;
        sb += g * (xv - mean);
    }
    (sa, sb)
}

/// The 8 lanes of [`masked_sums`] over whole groups of 8.
pub(crate) fn masked_lanes(
    gy: &[f32],
    y: &[f32],
    x: &[f32],
    mean: f32,
    relu: bool,
) -> ([f32; 8], [f32; 8]) {
    let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
    let chunks = gy
        .chunks_exact(8)
        .zip(y.chunks_exact(8))
        .zip(x.chunks_exact(8));
    for ((g8, y8), x8) in chunks {
        for k in 0..8 {
            let g = passed(g8[k], y8[k], relu);
            a[k] += g;
            b[k] += g * (x8[k] - mean);
        }
    }
    (a, b)
}

pub(crate) struct BatchNormOp {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    /// Whether the statistics are the batch's own (their gradient flows back into the input).
    train: bool,
    relu: bool,
}

impl BatchNormOp {
    pub(crate) fn new(stats: &ChannelStats, eps: f64, train: bool, relu: bool) -> Self {
        let invstd = stats
            .var
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
            .collect();
        Self {
            mean: stats.mean.clone(),
            invstd,
            train,
            relu,
        }
    }

    fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        wb: (&CpuStorage, &Layout),
        residual: Option<(&CpuStorage, &Layout)>,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (_, c, l) = ncl(x.1.dims())?;
        let xs = slice(x.0, x.1, "batch_norm", "input")?;
        let wb = slice(wb.0, wb.1, "batch_norm", "weight and bias")?;
        let r = residual
            .map(|(s, l)| slice(s, l, "batch_norm", "residual"))
            .transpose()?;
        let y = self.apply(xs, wb, r, (c, l))?;
        Ok((CpuStorage::F32(y), Shape::from(x.1.dims())))
    }

    /// `act(xs * alpha + beta [+ r])` over `(N, c, l)` values.
    pub(crate) fn apply(
        &self,
        xs: &[f32],
        wb: &[f32],
        r: Option<&[f32]>,
        (c, l): (usize, usize),
    ) -> candle::Result<Vec<f32>> {
        if wb.len() != 2 * c || self.mean.len() != c {
            candle::bail!(
                "batch_norm kernel: {c} channels, but {} weights",
                wb.len() / 2
            )
        }
        if r.is_some_and(|r| r.len() != xs.len()) {
            candle::bail!("batch_norm kernel: the residual's shape differs from the input's")
        }
        let (w, b) = wb.split_at(c);
        let alpha: Vec<f32> = (0..c).map(|ch| w[ch] * self.invstd[ch]).collect();
        let beta: Vec<f32> = (0..c).map(|ch| b[ch] - self.mean[ch] * alpha[ch]).collect();
        let y = written(xs.len(), |y| {
            y.par_chunks_mut(c * l.max(1))
                .enumerate()
                .for_each(|(i, yn)| {
                    let xn = &xs[i * c * l..(i + 1) * c * l];
                    for ch in 0..c {
                        let (a, bb) = (alpha[ch], beta[ch]);
                        let range = ch * l..(ch + 1) * l;
                        let (ys, xc) = (&mut yn[range.clone()], &xn[range.clone()]);
                        let rc = r.map(|r| &r[i * c * l..][range]);
                        affine(ys, xc, rc, a, bb, self.relu);
                    }
                });
        });
        Ok(y)
    }

    /// The gradients of the input, of weight and bias stacked as `(2, C)`, and of the residual
    /// (the output gradient after the ReLU's mask), given the forward's input and output.
    fn backward(
        &self,
        x: &Tensor,
        wb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
        want_residual: bool,
    ) -> candle::Result<(Option<Tensor>, Tensor, Option<Tensor>)> {
        let (n, c, l) = ncl(x.dims())?;
        let (x, wb, grad) = (x.contiguous()?, wb.contiguous()?, grad.contiguous()?);
        let (xg, wg, gg, rg) = (
            x.storage_and_layout(),
            wb.storage_and_layout(),
            grad.storage_and_layout(),
            res.storage_and_layout(),
        );
        let (xs, w, gy, ys) = (
            cpu_f32(&xg.0, xg.1, "batch_norm", "input")?,
            cpu_f32(&wg.0, wg.1, "batch_norm", "weight")?,
            cpu_f32(&gg.0, gg.1, "batch_norm", "gradient")?,
            cpu_f32(&rg.0, rg.1, "batch_norm", "output")?,
        );
        let (dx, gwb, gr) = self.grads(xs, &w[..c], gy, ys, (n, c, l), x.track_op(), want_residual);
        let gx = dx
            .map(|dx| Tensor::from_vec(dx, x.shape(), x.device()))
            .transpose()?;
        let gr = gr
            .map(|gr| Tensor::from_vec(gr, x.shape(), x.device()))
            .transpose()?;
        let gwb = Tensor::from_vec(gwb, (2, c), wb.device())?;
        Ok((gx, gwb, gr))
    }

    /// The input gradient (when `want_dx`), the weight and bias gradients (`2 x c`) and the
    /// residual gradient (when `want_residual`) over `(n, c, l)` values, given the forward's
    /// input `xs`, weight `w`, output `ys` and the output gradient `gy`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grads(
        &self,
        xs: &[f32],
        w: &[f32],
        gy: &[f32],
        ys: &[f32],
        (n, c, l): (usize, usize, usize),
        want_dx: bool,
        want_residual: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>, Option<Vec<f32>>) {
        let relu = self.relu;
        // Per channel: the sum of the gradient and of the gradient times the centred input.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut sg, mut sgx) = (0f64, 0f64);
                for i in 0..n {
                    let r = (i * c + ch) * l..(i * c + ch + 1) * l;
                    let (a, b) =
                        masked_sums(&gy[r.clone()], &ys[r.clone()], &xs[r], self.mean[ch], relu);
                    sg += f64::from(a);
                    sgx += f64::from(b);
                }
                (sg, sgx)
            })
            .collect();
        let count = (n * l) as f64;
        let mut gwb = vec![0f32; 2 * c];
        for (ch, &(sg, sgx)) in sums.iter().enumerate() {
            gwb[ch] = (sgx * f64::from(self.invstd[ch])) as f32;
            gwb[c + ch] = sg as f32;
        }
        let dx = if want_dx {
            // Training: dx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)); evaluation
            // (fixed statistics): dx = w * invstd * g.
            let coef: Vec<(f32, f32, f32)> = (0..c)
                .map(|ch| {
                    let k = w[ch] * self.invstd[ch];
                    if self.train {
                        let (sg, sgx) = sums[ch];
                        let inv = f64::from(self.invstd[ch]);
                        let mg = (sg / count) as f32;
                        let proj = (sgx / count * inv * inv) as f32;
                        (k, mg, proj)
                    } else {
                        (k, 0.0, 0.0)
                    }
                })
                .collect();
            let dx = written(xs.len(), |dx| {
                dx.par_chunks_mut(c * l.max(1))
                    .enumerate()
                    .for_each(|(i, dxn)| {
                        for (ch, &(k, mg, proj)) in coef.iter().enumerate() {
                            let r = (i * c + ch) * l..(i * c + ch + 1) * l;
                            let m = self.mean[ch];
                            let (gy, ys, xs) = (&gy[r.clone()], &ys[r.clone()], &xs[r]);
                            let out = &mut dxn[ch * l..(ch + 1) * l];
                            input_grad(out, gy, ys, xs, [k, mg, m, proj], relu);
                        }
                    });
            });
            Some(dx)
        } else {
            None
        };
        let gr = want_residual.then(|| {
            let chunk = c * l.max(1);
            // The zip below stops at the shorter side: equal lengths keep every chunk written.
            assert_eq!(
                ys.len(),
                gy.len(),
                "batch_norm: gradient and output differ in size"
            );
            written(gy.len(), |gr| {
                let parts = gr.par_chunks_mut(chunk).zip(gy.par_chunks(chunk));
                parts
                    .zip(ys.par_chunks(chunk))
                    .for_each(|((gr, gy), ys)| relu_mask(gr, gy, ys, relu));
            })
        });
        (dx, gwb, gr)
    }
}

impl CustomOp2 for BatchNormOp {
    fn name(&self) -> &'static str {
        "lit-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        wb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gwb, _) = self.backward(x, wb, res, grad, false)?;
        Ok((gx, Some(gwb)))
    }
}

/// [`BatchNormOp`] with a residual added before the activation.
struct BatchNormAddOp(BatchNormOp);

impl CustomOp3 for BatchNormAddOp {
    fn name(&self) -> &'static str {
        "lit-batch-norm-add"
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
        self.0.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wb: &Tensor,
        r: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gwb, gr) = self.0.backward(x, wb, res, grad, r.track_op())?;
        Ok((gx, Some(gwb), gr))
    }
}

/// `act(batch_norm(x) [+ residual])` for contiguous f32 CPU tensors, normalising each channel of
/// `x` (`(N, C, ...)`) with `stats` and scaling by `weight_bias` (`(2, C)`: weight, then bias).
/// `train` says that `stats` are `x`'s own batch statistics (from [`channel_stats`]), whose
/// dependence on `x` the input gradient then includes; with running statistics (evaluation) the
/// op is a per-channel affine map. `act` is a ReLU when `relu`, else the identity.
pub fn batch_norm(
    x: &Tensor,
    weight_bias: &Tensor,
    residual: Option<&Tensor>,
    stats: &ChannelStats,
    eps: f64,
    train: bool,
    relu: bool,
) -> candle::Result<Tensor> {
    let op = BatchNormOp::new(stats, eps, train, relu);
    let (x, wb) = (x.contiguous()?, weight_bias.contiguous()?);
    match residual {
        Some(r) => x.apply_op3(&wb, &r.contiguous()?, BatchNormAddOp(op)),
        None => x.apply_op2(&wb, op),
    }
}

wide! {
/// `ys = act(xs * a + b [+ r])` for one channel's segment, writing every element of `ys`.
fn affine(ys: &mut [MaybeUninit<f32>], xs: &[f32], r: Option<&[f32]>, a: f32, b: f32, act: bool) {
    let n = ys.len();
    assert!(xs.len() >= n && r.is_none_or(|r| r.len() >= n), "batch_norm: short segment");
    let act = |v: f32| if act { relu(v) } else { v };
    match r {
        Some(r) => {
            for ((y, &x), &r) in ys.iter_mut().zip(xs).zip(r) {
                y.write(act(x * a + b + r));
            }
        }
        None => {
            for (y, &x) in ys.iter_mut().zip(xs) {
                y.write(act(x * a + b));
            }
        }
    }
}
}

wide! {
/// One segment of the input gradient (writing every element of `out`), `k * (g - mg - (x - m) * proj)` with `g` the
/// output gradient masked by the ReLU when `act` (`proj` and `mg` are 0 in evaluation).
fn input_grad(
    out: &mut [MaybeUninit<f32>],
    gy: &[f32],
    ys: &[f32],
    xs: &[f32],
    coef: [f32; 4],
    act: bool,
) {
    let n = out.len();
    assert!(gy.len() >= n && ys.len() >= n && xs.len() >= n, "batch_norm: short segment");
    let [k, mg, m, proj] = coef;
    for (((d, &g), &y), &x) in out.iter_mut().zip(gy).zip(ys).zip(xs) {
        let g = passed(g, y, act);
        d.write(k * (g - mg - (x - m) * proj));
    }
}
}

wide! {
/// `out = gy` where the ReLU's output `ys` is positive (everywhere unless `act`), else 0, for
/// every element of `out`.
fn relu_mask(out: &mut [MaybeUninit<f32>], gy: &[f32], ys: &[f32], act: bool) {
    assert!(gy.len() >= out.len() && ys.len() >= out.len(), "batch_norm: short gradient");
    for ((o, &g), &y) in out.iter_mut().zip(gy).zip(ys) {
        o.write(passed(g, y, act));
    }
}
}

/// The gradient `g` where the ReLU's output `y` is not at or below zero (always unless `act`),
/// else 0: a bit mask rather than a branch, so that the loops vectorise.
#[inline(always)]
pub(crate) fn passed(g: f32, y: f32, act: bool) -> f32 {
    let keep = !(act & (y <= 0.0));
    f32::from_bits(g.to_bits() & u32::from(keep).wrapping_neg())
}
