//! [`Precision`]: the seam through which the loop computes in a floating-point type other than
//! the parameters' own, as Lightning's precision plugins.
//!
//! The trainer calls a precision in exactly two places: when a batch moves to the device (the
//! loaders' one entry, [`Precision::convert_batch`]) and in the optimization step, around backward
//! ([`Precision::backward`]) and before gradients are clipped and applied
//! ([`Precision::unscale_gradients`]). Parameters, optimizer state and checkpoints stay in the
//! parameters' type whatever the precision.

use candle::backprop::GradStore;
use candle::{Device, Tensor};
use lit_model::Batch;

use crate::Result;

/// How a fit computes: what the batch becomes on the device, how the loss is backpropagated, and
/// whether the gradients of a step may be applied.
pub trait Precision: Send {
    /// The name, as `--precision` spells it (`32-true`).
    fn name(&self) -> &str;

    /// The batch on `device`, its inputs in the compute type.
    fn convert_batch(&self, batch: Batch, device: &Device) -> Result<Batch> {
        Ok(batch.to_device(device)?)
    }

    /// The gradients of `loss` (a precision that scales the loss scales it here).
    fn backward(&mut self, loss: &Tensor) -> Result<GradStore> {
        Ok(loss.backward()?)
    }

    /// Called once per optimizer step with the step's reduced gradients, before clipping: undoes
    /// a loss scale; `false` skips the step (non-finite gradients under loss scaling, as torch's
    /// `GradScaler` does).
    fn unscale_gradients(&mut self, _grads: &mut GradStore) -> Result<bool> {
        Ok(true)
    }
}

/// Everything in the parameters' type (f32): Lightning's `32-true`, the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullPrecision;

impl Precision for FullPrecision {
    fn name(&self) -> &str {
        "32-true"
    }
}
