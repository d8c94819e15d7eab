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
                .map(|g| g.sqr()?.sum_all()?.to_dtype(candle::DType::F32))
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
