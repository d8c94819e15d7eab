//! Aggregating metrics: a weighted mean.

use candle::{DType, Tensor};

use crate::{Metric, Result};

/// The weighted mean of every value fed to it, as torchmetrics' `MeanMetric`.
///
/// `update(value, weight)` takes a tensor of values and a tensor of weights of the same shape (or a
/// scalar weight that is broadcast); the sums stay on the device.
#[derive(Debug, Default)]
pub struct MeanMetric {
    sum: Option<Tensor>,
    weight: Option<Tensor>,
}

impl MeanMetric {
    /// A mean with no values yet.
    pub fn new() -> Self {
        Self::default()
    }
}

fn accumulate(slot: &mut Option<Tensor>, value: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(acc) => (acc + value)?,
        None => value,
    });
    Ok(())
}

impl Metric for MeanMetric {
    fn name(&self) -> &str {
        "mean"
    }

    fn update(&mut self, value: &Tensor, weight: &Tensor) -> Result<()> {
        let value = value.detach().to_dtype(DType::F64)?;
        let weight = weight
            .detach()
            .to_dtype(DType::F64)?
            .broadcast_as(value.shape())?;
        accumulate(&mut self.sum, (&value * &weight)?.sum_all()?)?;
        accumulate(&mut self.weight, weight.sum_all()?)?;
        Ok(())
    }

    fn compute(&self) -> Result<Tensor> {
        match (&self.sum, &self.weight) {
            (Some(sum), Some(weight)) => Ok((sum / weight)?.to_dtype(DType::F32)?),
            _ => Ok(Tensor::new(f32::NAN, &candle::Device::Cpu)?),
        }
    }

    fn reset(&mut self) {
        self.sum = None;
        self.weight = None;
    }
}
