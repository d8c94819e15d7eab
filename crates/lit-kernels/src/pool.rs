//! Max-pooling with non-overlapping square windows, with a backward that routes each gradient to
//! its window's maximum directly.

use candle::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{beats, cpu_f32};

struct MaxPoolOp {
    k: usize,
}

impl MaxPoolOp {
    /// The plane index of window `(oy, ox)`'s maximum in `xp` (row width `w`), by PyTorch's rule.
    fn argmax(&self, xp: &[f32], w: usize, oy: usize, ox: usize) -> usize {
        let k = self.k;
        let mut best = oy * k * w + ox * k;
        for ky in 0..k {
            for kx in 0..k {
                let i = (oy * k + ky) * w + ox * k + kx;
                if beats(xp[i], xp[best]) {
                    best = i;
                }
            }
        }
        best
    }

    fn dims(&self, d: &[usize]) -> candle::Result<(usize, usize, usize, usize, usize)> {
        let &[n, c, h, w] = d else {
            candle::bail!("max_pool2d kernel: expected a 4-d input, got {d:?}")
        };
        Ok((n * c, h, w, h / self.k, w / self.k))
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "lit-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let (planes, h, w, oh, ow) = self.dims(l.dims())?;
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle::Error::Msg("max_pool2d kernel: input must be contiguous".into())
        })?;
        let CpuStorage::F32(v) = s else {
            candle::bail!("max_pool2d kernel: input must be f32")
        };
        let x = &v[start..end];
        let mut y = vec![0f32; planes * oh * ow];
        y.par_chunks_mut(oh * ow).enumerate().for_each(|(p, yp)| {
            let xp = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    yp[oy * ow + ox] = xp[self.argmax(xp, w, oy, ox)];
                }
            }
        });
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle::Result<Option<Tensor>> {
        let (planes, h, w, oh, ow) = self.dims(arg.dims())?;
        let (arg, grad) = (arg.contiguous()?, grad.contiguous()?);
        let (xg, gg) = (arg.storage_and_layout(), grad.storage_and_layout());
        let (x, gy) = (
            cpu_f32(&xg.0, xg.1, "max_pool2d", "input")?,
            cpu_f32(&gg.0, gg.1, "max_pool2d", "gradient")?,
        );
        let mut dx = vec![0f32; planes * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(p, dxp)| {
            let xp = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    // The window's maximum takes the gradient, found as the forward pass found it.
                    dxp[self.argmax(xp, w, oy, ox)] += gy[p * oh * ow + oy * ow + ox];
                }
            }
        });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `max_pool2d(x, k)` with stride `k` for contiguous f32 CPU tensors `(N, C, H, W)`.
pub fn max_pool2d(x: &Tensor, k: usize) -> candle::Result<Tensor> {
    if k == 0 {
        candle::bail!("max_pool2d kernel: a pooling window of 0")
    }
    x.contiguous()?.apply_op1(MaxPoolOp { k })
}
