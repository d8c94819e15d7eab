//! The [`Metric`] trait.

use std::any::Any;

use candle::{DType, Device, Tensor};

use crate::{Error, Result};

/// A metric in the torchmetrics style: `update` with each batch, `compute` over everything seen
/// since the last `reset`.
///
/// Implementations keep their state as tensors on the device of the inputs, so `update` never
/// synchronises with the host. States of two instances merge ([`Metric::merge`]), which is how
/// data-parallel workers combine theirs before `compute`.
pub trait Metric: Send + Any {
    /// The short name used in logged keys, such as `acc` for `val_acc`.
    fn name(&self) -> &str;

    /// Accumulates the state of one batch.
    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()>;

    /// Computes the value from the whole accumulated state.
    fn compute(&self) -> Result<Tensor>;

    /// Clears the accumulated state.
    fn reset(&mut self);

    /// A copy of this metric, state included.
    fn boxed_clone(&self) -> Box<dyn Metric>;

    /// Adds the state of `other` (a metric of the same type and settings) to this one.
    fn merge(&mut self, other: &dyn Metric) -> Result<()>;

    /// The accumulated state as tensors (`None` for a part with no data yet), in a fixed order:
    /// what data-parallel workers exchange to merge their metrics ([`crate::sync`]).
    fn state(&self) -> Vec<Option<Tensor>>;

    /// Replaces the state with one from [`Metric::state`] of a metric of the same type and
    /// settings.
    fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()>;

    /// The value on this batch alone, while also accumulating it, as torchmetrics' `forward`.
    fn forward(&mut self, preds: &Tensor, target: &Tensor) -> Result<Tensor> {
        let mut batch = self.boxed_clone();
        batch.reset();
        batch.update(preds, target)?;
        self.update(preds, target)?;
        batch.compute()
    }
}

/// Downcasts `other` to the type of `this` for `merge`, or fails naming both.
pub(crate) fn same<'a, T: Metric>(this: &T, other: &'a dyn Metric) -> Result<&'a T> {
    (other as &dyn Any)
        .downcast_ref::<T>()
        .ok_or_else(|| Error::InvalidInput {
            metric: "merge",
            message: format!("cannot merge '{}' into '{}'", other.name(), this.name()),
        })
}

/// Adds `value` into an optional running sum.
pub(crate) fn add_into(slot: &mut Option<Tensor>, value: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(acc) => (acc + value)?,
        None => value,
    });
    Ok(())
}

/// Merges an optional sum from another instance.
pub(crate) fn merge_sum(slot: &mut Option<Tensor>, other: &Option<Tensor>) -> Result<()> {
    if let Some(o) = other {
        add_into(slot, o.clone())?;
    }
    Ok(())
}

/// The accumulation type on `device`: f64 where the device has it (not Metal).
pub(crate) fn acc_dtype(device: &Device) -> DType {
    if device.is_metal() {
        DType::F32
    } else {
        DType::F64
    }
}

/// The `n` parts a `set_state` expects, or an error naming the metric.
pub(crate) fn parts<const N: usize>(
    metric: &str,
    state: Vec<Option<Tensor>>,
) -> Result<[Option<Tensor>; N]> {
    let got = state.len();
    state.try_into().map_err(|_| Error::InvalidInput {
        metric: "set_state",
        message: format!("{metric}: expected {N} state tensors, got {got}"),
    })
}
