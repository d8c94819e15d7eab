//! 2-d convolution with bias: im2col + gemm forward, and weight, bias and input gradients.

use candle::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> candle::Result<Self> {
        let (&[n, c, h, wd], &[o, c2, kh, kw]) = (x, w) else {
            candle::bail!("conv2d kernel: expected 4-d input and weight, got {x:?} and {w:?}")
        };
        if c != c2 {
            candle::bail!("conv2d kernel: input has {c} channels, weight expects {c2}")
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw || stride == 0 {
            candle::bail!(
                "conv2d kernel: kernel {kh}x{kw} does not fit input {h}x{wd} with padding {pad}"
            )
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride,
            pad,
            oh,
            ow,
        })
    }
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    fn chw(&self) -> usize {
        self.c * self.h * self.w
    }

    /// For each (channel, ky, kx, oy) with an in-bounds input row, calls `f(col_start, x_start,
    /// ox_lo, ox_hi)`: output columns `ox_lo..ox_hi` of that column row read input
    /// `x_start + ox * stride` (no per-element bounds test in the inner loops).
    #[inline]
    fn rows(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (ohw, s, p) = (self.ohw(), self.stride, self.pad);
        for c in 0..self.c {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = ((c * self.kh + ky) * self.kw + kx) * ohw;
                    // ox in [lo, hi) keeps ix = ox * s + kx - p inside [0, w).
                    let lo = p.saturating_sub(kx).div_ceil(s);
                    let hi = if self.w + p > kx {
                        ((self.w + p - kx - 1) / s + 1).min(self.ow)
                    } else {
                        0
                    };
                    if lo >= hi {
                        continue;
                    }
                    for oy in 0..self.oh {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let x_start = c * self.h * self.w + iy as usize * self.w + kx;
                        f(row + oy * self.ow, x_start, lo, hi);
                    }
                }
            }
        }
    }

    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        cols.fill(0.0);
        let (s, p) = (self.stride, self.pad);
        self.rows(|col, xs, lo, hi| {
            // Input index of output column ox: xs + ox * s - p.
            let dst = &mut cols[col + lo..col + hi];
            if s == 1 {
                let start = xs + lo - p;
                dst.copy_from_slice(&x[start..start + (hi - lo)]);
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = x[xs + (lo + j) * s - p];
                }
            }
        });
    }

    fn col2im(&self, cols: &[f32], dx: &mut [f32]) {
        let (s, p) = (self.stride, self.pad);
        self.rows(|col, xs, lo, hi| {
            let src = &cols[col + lo..col + hi];
            if s == 1 {
                let start = xs + lo - p;
                dx[start..start + (hi - lo)]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, v)| *d += v);
            } else {
                for (j, v) in src.iter().enumerate() {
                    dx[xs + (lo + j) * s - p] += v;
                }
            }
        });
    }
}

/// `dst (m x n) (+)= a (m x k) * b (k x n)`, with each operand given by its row and column strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
) {
    debug_assert!(dst.len() >= m * n);
    // SAFETY: the strides describe matrices inside the slices, whose sizes the callers derive from
    // the same geometry; `dst` does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.0.as_ptr(),
            a.2,
            a.1,
            b.0.as_ptr(),
            b.2,
            b.1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

struct Conv2dOp {
    stride: usize,
    pad: usize,
    relu: bool,
}

/// The f32 data of a contiguous CPU tensor's storage, without copying.
fn cpu_f32<'a>(s: &'a candle::Storage, l: &Layout, what: &str) -> candle::Result<&'a [f32]> {
    match s {
        candle::Storage::Cpu(c) => slice(c, l, what),
        _ => candle::bail!("conv2d kernel: {what} must be on the CPU"),
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle::Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle::Error::Msg(format!("conv2d kernel: {what} must be contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle::bail!("conv2d kernel: {what} must be f32"),
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
            slice(s1, l1, "input")?,
            slice(s2, l2, "weight")?,
            slice(s3, l3, "bias")?,
        );
        let (ckk, ohw) = (g.ckk(), g.ohw());
        let mut y = vec![0f32; g.n * g.o * ohw];
        let per_thread = g.n.div_ceil(rayon::current_num_threads()).max(1);
        y.par_chunks_mut(g.o * ohw)
            .with_min_len(per_thread)
            .enumerate()
            .for_each_init(
                || vec![0f32; ckk * ohw],
                |cols, (i, yn)| {
                    g.im2col(&x[i * g.chw()..(i + 1) * g.chw()], cols);
                    for (o, row) in yn.chunks_mut(ohw).enumerate() {
                        row.fill(b[o]);
                    }
                    matmul(
                        g.o,
                        ohw,
                        ckk,
                        yn,
                        true,
                        (w, ckk as isize, 1),
                        (cols, ohw as isize, 1),
                    );
                    if self.relu {
                        yn.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                },
            );
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let (ckk, ohw, chw) = (g.ckk(), g.ohw(), g.chw());
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        let (xg, wg) = (x.storage_and_layout(), w.storage_and_layout());
        let (xs, ws) = (
            cpu_f32(&xg.0, xg.1, "input")?,
            cpu_f32(&wg.0, wg.1, "weight")?,
        );
        let grad = grad.contiguous()?;
        let gg = grad.storage_and_layout();
        let gy_in = cpu_f32(&gg.0, gg.1, "gradient")?;
        // ReLU passes the gradient where its output is positive; mask in parallel chunks.
        let masked;
        let gy: &[f32] = if self.relu {
            let rg = res.storage_and_layout();
            let y = cpu_f32(&rg.0, rg.1, "output")?;
            let mut m = vec![0f32; gy_in.len()];
            m.par_chunks_mut(1 << 15)
                .zip(gy_in.par_chunks(1 << 15).zip(y.par_chunks(1 << 15)))
                .for_each(|(m, (g, y))| {
                    for ((m, g), y) in m.iter_mut().zip(g).zip(y) {
                        *m = if *y > 0.0 { *g } else { 0.0 };
                    }
                });
            masked = m;
            &masked
        } else {
            gy_in
        };
        // One split of the batch per thread: each split allocates its buffers once.
        let per_thread = g.n.div_ceil(rayon::current_num_threads()).max(1);
        // Weight and bias gradients: sum over images of gy_n @ cols_n^T and of gy_n's rows.
        let (gw, gb) = (0..g.n)
            .into_par_iter()
            .with_min_len(per_thread)
            .fold(
                || {
                    (
                        vec![0f32; g.o * ckk],
                        vec![0f32; g.o],
                        vec![0f32; ckk * ohw],
                    )
                },
                |(mut gw, mut gb, mut cols), i| {
                    g.im2col(&xs[i * chw..(i + 1) * chw], &mut cols);
                    let gyn = &gy[i * g.o * ohw..(i + 1) * g.o * ohw];
                    matmul(
                        g.o,
                        ckk,
                        ohw,
                        &mut gw,
                        true,
                        (gyn, ohw as isize, 1),
                        (&cols, 1, ohw as isize),
                    );
                    for (o, row) in gyn.chunks(ohw).enumerate() {
                        gb[o] += row.iter().sum::<f32>();
                    }
                    (gw, gb, cols)
                },
            )
            .map(|(gw, gb, _)| (gw, gb))
            .reduce(
                || (vec![0f32; g.o * ckk], vec![0f32; g.o]),
                |(mut a, mut b), (c, d)| {
                    a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
                    b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
                    (a, b)
                },
            );
        // The input gradient, only when something upstream needs it (not for the input images).
        let gx = if x.track_op() {
            let mut dx = vec![0f32; g.n * chw];
            dx.par_chunks_mut(chw)
                .with_min_len(per_thread)
                .enumerate()
                .for_each_init(
                    || vec![0f32; ckk * ohw],
                    |dcols, (i, dxn)| {
                        let gyn = &gy[i * g.o * ohw..(i + 1) * g.o * ohw];
                        matmul(
                            ckk,
                            ohw,
                            g.o,
                            dcols,
                            false,
                            (ws, 1, ckk as isize),
                            (gyn, ohw as isize, 1),
                        );
                        g.col2im(dcols, dxn);
                    },
                );
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let gw = Tensor::from_vec(gw, w.shape(), w.device())?;
        let gb = Tensor::from_vec(gb, g.o, w.device())?;
        Ok((gx, Some(gw), Some(gb)))
    }
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
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        Conv2dOp {
            stride,
            pad: padding,
            relu,
        },
    )
}
