//! The [`Metric`] trait.

use candle::Tensor;

use crate::Result;

/// A metric in the torchmetrics style: `update` with each batch, `compute` over everything seen
/// since the last `reset`.
///
/// Implementations keep their state as tensors on the device of the inputs, so `update` never
/// synchronises with the host.
pub trait Metric: Send {
    /// The short name used in logged keys, such as `acc` for `val_acc`.
    fn name(&self) -> &str;

    /// Accumulates the state of one batch.
    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()>;

    /// Computes the value from the whole accumulated state.
    fn compute(&self) -> Result<Tensor>;

    /// Clears the accumulated state.
    fn reset(&mut self);
}
