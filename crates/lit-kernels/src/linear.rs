//! A fully connected layer with bias, optionally followed by a ReLU, as one op.
//!
//! candle-nn's `Linear` is a matrix product with the transposed weight, a broadcast addition and,
//! after it, a separate ReLU: four autograd nodes, each gradient allocated and summed on its own.
//! Here the bias is the product's initial value, the ReLU is applied in place, and the backward
//! pass computes the three gradients with two matrix products and a column sum.

use candle::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::{cpu_f32, gemm, slice};

struct LinearOp {
    relu: bool,
}

/// `(rows, in, out)` of `x (.., in) @ w (out, in)^T`.
fn dims(x: &[usize], w: &[usize], b: &[usize]) -> candle::Result<(usize, usize, usize)> {
    let (Some((&i, lead)), &[o, i2]) = (x.split_last(), w) else {
        candle::bail!(
            "linear kernel: expected an input (.., in) and a 2-d weight, got {x:?} and {w:?}"
        )
    };
    if i != i2 || b != [o] {
        candle::bail!("linear kernel: input {x:?}, weight {w:?} and bias {b:?} do not fit together")
    }
    Ok((lead.iter().product(), i, o))
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "lit-linear"
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
        let (n, i, o) = dims(l1.dims(), l2.dims(), l3.dims())?;
        let (x, w, b) = (
            slice(s1, l1, "linear", "input")?,
            slice(s2, l2, "linear", "weight")?,
            slice(s3, l3, "linear", "bias")?,
        );
        let mut y: Vec<f32> = b.iter().copied().cycle().take(n * o).collect();
        // y (n x o) += x (n x i) @ w^T (i x o)
        gemm(
            n,
            o,
            i,
            &mut y,
            true,
            (x, i as isize, 1),
            (w, 1, i as isize),
            true,
        );
        if self.relu {
            y.iter_mut().for_each(|v| *v = super::relu(*v));
        }
        let mut shape = l1.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = o;
        }
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, i, o) = dims(x.dims(), w.dims(), b.dims())?;
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xg, wg, gg) = (
            x.storage_and_layout(),
            w.storage_and_layout(),
            grad.storage_and_layout(),
        );
        let (xs, ws, gy) = (
            cpu_f32(&xg.0, xg.1, "linear", "input")?,
            cpu_f32(&wg.0, wg.1, "linear", "weight")?,
            cpu_f32(&gg.0, gg.1, "linear", "gradient")?,
        );
        let masked;
        let gy = if self.relu {
            let rg = res.storage_and_layout();
            let y = cpu_f32(&rg.0, rg.1, "linear", "output")?;
            masked = gy
                .iter()
                .zip(y)
                .map(|(g, y)| if *y > 0.0 { *g } else { 0.0 })
                .collect::<Vec<f32>>();
            &masked[..]
        } else {
            gy
        };
        let gx = if x.track_op() {
            // gx (n x i) = gy (n x o) @ w (o x i)
            let mut gx = vec![0f32; n * i];
            gemm(
                n,
                i,
                o,
                &mut gx,
                false,
                (gy, o as isize, 1),
                (ws, i as isize, 1),
                true,
            );
            Some(Tensor::from_vec(gx, x.shape(), x.device())?)
        } else {
            None
        };
        // gw (o x i) = gy^T (o x n) @ x (n x i)
        let mut gw = vec![0f32; o * i];
        gemm(
            o,
            i,
            n,
            &mut gw,
            false,
            (gy, 1, o as isize),
            (xs, i as isize, 1),
            true,
        );
        let mut gb = vec![0f32; o];
        for row in gy.chunks(o) {
            gb.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        Ok((
            gx,
            Some(Tensor::from_vec(gw, w.shape(), w.device())?),
            Some(Tensor::from_vec(gb, o, w.device())?),
        ))
    }
}

/// `x @ weight^T + bias` for contiguous f32 CPU tensors (`x` of shape `(.., in)`, `weight`
/// `(out, in)`, `bias` `(out,)`), followed by a ReLU when `relu`; gradients for all three (the
/// input's only when it is tracked).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> candle::Result<Tensor> {
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LinearOp { relu },
    )
}
