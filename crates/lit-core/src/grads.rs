//! Gradient clipping on a candle `GradStore`, without copying to the host.

use candle::{backprop::GradStore, Var};

use crate::{GradientClip, Result};

/// Clips the gradients of `vars` in `grads` as `clip` says.
///
/// `Norm(max)` computes the global L2 norm over all gradients and scales them all by
/// `min(1, max / (norm + 1e-6))`, as `torch.nn.utils.clip_grad_norm_`; the scale stays a device
/// tensor, so clipping never synchronises with the host.
pub fn clip_gradients(grads: &mut GradStore, vars: &[Var], clip: GradientClip) -> Result<()> {
    match clip {
        GradientClip::None => Ok(()),
        GradientClip::Value(v) => {
            for var in vars {
                if let Some(g) = grads.get(var) {
                    let clipped = g.clamp(-v, v)?;
                    grads.insert(var, clipped);
                }
            }
            Ok(())
        }
        GradientClip::Norm(max) => {
            let squares = vars
                .iter()
                .filter_map(|v| grads.get(v))
                // In f32 whatever the gradient's type, as torch accumulates norms: an f16 square
                // above 65504 would make the norm infinite and zero every gradient.
                .map(|g| g.to_dtype(candle::DType::F32)?.sqr()?.sum_all())
                .collect::<candle::Result<Vec<_>>>()?;
            if squares.is_empty() {
                return Ok(());
            }
            let norm = candle::Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?;
            let coef = norm
                .affine(1.0, 1e-6)?
                .recip()?
                .affine(max, 0.0)?
                .minimum(1.0)?;
            for var in vars {
                if let Some(g) = grads.get(var) {
                    let scaled = g.broadcast_mul(&coef.to_dtype(g.dtype())?)?;
                    grads.insert(var, scaled);
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device, Tensor, Var};

    #[test]
    fn norm_clipping_of_half_gradients_accumulates_in_f32() {
        // 300^2 overflows f16 (max 65504): a norm taken in f16 would be infinite and the clip
        // would zero the gradient.
        let p = Var::zeros(2, DType::F16, &Device::Cpu).unwrap();
        let w = Tensor::new(&[300f32, 400.], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let mut grads = (p.as_tensor() * w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        clip_gradients(
            &mut grads,
            std::slice::from_ref(&p),
            GradientClip::Norm(5.0),
        )
        .unwrap();
        let g = grads.get(p.as_tensor()).unwrap();
        let g = g.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        // The norm is 500: scaled by 5 / 500.
        assert!(
            (g[0] - 3.0).abs() < 0.01 && (g[1] - 4.0).abs() < 0.01,
            "{g:?}"
        );
    }
}
