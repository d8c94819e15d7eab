//! Cross-entropy of logits against class indices, as one op.
//!
//! candle-nn's `cross_entropy` is a log-softmax (max, subtraction, exponential, sum, logarithm,
//! subtraction), a gather and a mean: a dozen autograd nodes on a tiny tensor, where each node's
//! fixed cost dominates. Here the forward pass is one loop over the rows and the backward pass
//! another, `(softmax - one_hot) / N`.

use candle::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::{cpu_f32, slice};

struct CrossEntropyOp;

/// The class indices of contiguous `u8`, `u32` or `i64` storage.
fn targets(s: &CpuStorage, l: &Layout) -> candle::Result<Vec<i64>> {
    let (start, end) = l.contiguous_offsets().ok_or_else(|| {
        candle::Error::Msg("cross_entropy kernel: target must be contiguous".into())
    })?;
    Ok(match s {
        CpuStorage::U8(v) => v[start..end].iter().map(|&t| i64::from(t)).collect(),
        CpuStorage::U32(v) => v[start..end].iter().map(|&t| i64::from(t)).collect(),
        CpuStorage::I64(v) => v[start..end].to_vec(),
        _ => candle::bail!("cross_entropy kernel: target must be u8, u32 or i64"),
    })
}

/// `(rows, classes)`, checking that `target` has one index per row.
fn dims(logits: &[usize], target: &[usize]) -> candle::Result<(usize, usize)> {
    match (logits, target) {
        (&[n, c], &[nt]) if n == nt && c > 0 => Ok((n, c)),
        _ => candle::bail!(
            "cross_entropy kernel: expected logits (N, C) and target (N,), got {logits:?} and {target:?}"
        ),
    }
}

/// Each row's log-sum-exp, checking every target against the class count.
fn log_sum_exp(x: &[f32], t: &[i64], c: usize) -> candle::Result<Vec<f32>> {
    x.chunks(c)
        .zip(t)
        .map(|(row, &t)| {
            if !(0..c as i64).contains(&t) {
                candle::bail!("cross_entropy: target class {t} is out of range for {c} classes")
            }
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            Ok(m + row.iter().map(|v| (v - m).exp()).sum::<f32>().ln())
        })
        .collect()
}

impl CustomOp2 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "lit-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (n, c) = dims(l1.dims(), l2.dims())?;
        let x = slice(s1, l1, "cross_entropy", "logits")?;
        let t = targets(s2, l2)?;
        let lse = log_sum_exp(x, &t, c)?;
        let total: f64 = x
            .chunks(c)
            .zip(&t)
            .zip(&lse)
            .map(|((row, &t), l)| f64::from(l - row[t as usize]))
            .sum();
        let mean = if n == 0 {
            f32::NAN
        } else {
            (total / n as f64) as f32
        };
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, c) = dims(logits.dims(), target.dims())?;
        let (logits, target) = (logits.contiguous()?, target.contiguous()?);
        let (lg, tg, gg) = (
            logits.storage_and_layout(),
            target.storage_and_layout(),
            grad.storage_and_layout(),
        );
        let x = cpu_f32(&lg.0, lg.1, "cross_entropy", "logits")?;
        let t = match &*tg.0 {
            candle::Storage::Cpu(s) => targets(s, tg.1)?,
            _ => candle::bail!("cross_entropy kernel: target must be on the CPU"),
        };
        let g = cpu_f32(&gg.0, gg.1, "cross_entropy", "gradient")?;
        let scale = g.first().copied().unwrap_or(0.0) / n.max(1) as f32;
        let lse = log_sum_exp(x, &t, c)?;
        let mut dx = vec![0f32; n * c];
        for (((d, row), &t), l) in dx.chunks_mut(c).zip(x.chunks(c)).zip(&t).zip(&lse) {
            for (d, v) in d.iter_mut().zip(row) {
                *d = (v - l).exp() * scale;
            }
            d[t as usize] -= scale;
        }
        Ok((
            Some(Tensor::from_vec(dx, logits.shape(), logits.device())?),
            None,
        ))
    }
}

/// Mean cross-entropy of `logits` `(N, C)` (contiguous f32 on the CPU) against class indices
/// `target` `(N,)` (`u8`, `u32` or `i64`), as `F.cross_entropy`; the gradient is the logits' only.
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> candle::Result<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&target.contiguous()?, CrossEntropyOp)
}
