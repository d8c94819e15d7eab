//! Aggregating metrics: weighted mean, sum, max and min of every value fed to them.

use candle::{DType, Device, Tensor};

use crate::base::{acc_dtype, add_into, merge_sum, same};
use crate::{Metric, Result};

/// The weighted mean of every value fed to it, as torchmetrics' `MeanMetric`.
///
/// `update(value, weight)` takes a tensor of values and a tensor of weights of the same shape (or a
/// scalar weight that is broadcast); the sums stay on the device.
#[derive(Debug, Default, Clone)]
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

impl Metric for MeanMetric {
    fn name(&self) -> &str {
        "mean"
    }

    fn update(&mut self, value: &Tensor, weight: &Tensor) -> Result<()> {
        let dt = acc_dtype(value.device());
        let value = value.detach().to_dtype(dt)?;
        let weight = weight.detach().to_dtype(dt)?.broadcast_as(value.shape())?;
        add_into(&mut self.sum, (&value * &weight)?.sum_all()?)?;
        add_into(&mut self.weight, weight.sum_all()?)?;
        Ok(())
    }

    fn compute(&self) -> Result<Tensor> {
        match (&self.sum, &self.weight) {
            (Some(sum), Some(weight)) => Ok((sum / weight)?.to_dtype(DType::F32)?),
            _ => Ok(Tensor::new(f32::NAN, &Device::Cpu)?),
        }
    }

    fn reset(&mut self) {
        self.sum = None;
        self.weight = None;
    }

    fn boxed_clone(&self) -> Box<dyn Metric> {
        Box::new(self.clone())
    }

    fn merge(&mut self, other: &dyn Metric) -> Result<()> {
        let o = same(self, other)?;
        merge_sum(&mut self.sum, &o.sum)?;
        merge_sum(&mut self.weight, &o.weight)
    }

    fn state(&self) -> Vec<Option<Tensor>> {
        vec![self.sum.clone(), self.weight.clone()]
    }

    fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
        [self.sum, self.weight] = crate::base::parts::<2>("MeanMetric", state)?;
        Ok(())
    }
}

/// How [`Reduce`] combines values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The sum, as torchmetrics' `SumMetric`.
    Sum,
    /// The maximum, as `MaxMetric`.
    Max,
    /// The minimum, as `MinMetric`.
    Min,
}

/// The sum, maximum or minimum of every value fed to it (`update(values, _)` ignores its second
/// argument).
#[derive(Debug, Clone)]
pub struct Reduce {
    reduction: Reduction,
    state: Option<Tensor>,
}

impl Reduce {
    /// A reduction with no values yet.
    pub fn new(reduction: Reduction) -> Self {
        Self {
            reduction,
            state: None,
        }
    }

    fn combine(&mut self, v: Tensor) -> Result<()> {
        self.state = Some(match (self.state.take(), self.reduction) {
            (None, _) => v,
            (Some(s), Reduction::Sum) => (s + v)?,
            (Some(s), Reduction::Max) => s.maximum(&v)?,
            (Some(s), Reduction::Min) => s.minimum(&v)?,
        });
        Ok(())
    }
}

impl Metric for Reduce {
    fn name(&self) -> &str {
        match self.reduction {
            Reduction::Sum => "sum",
            Reduction::Max => "max",
            Reduction::Min => "min",
        }
    }

    fn update(&mut self, values: &Tensor, _unused: &Tensor) -> Result<()> {
        let v = values
            .detach()
            .to_dtype(acc_dtype(values.device()))?
            .flatten_all()?;
        let v = match self.reduction {
            Reduction::Sum => v.sum_all()?,
            Reduction::Max => v.max(0)?,
            Reduction::Min => v.min(0)?,
        };
        self.combine(v)
    }

    fn compute(&self) -> Result<Tensor> {
        match &self.state {
            Some(s) => Ok(s.to_dtype(DType::F32)?),
            None if self.reduction == Reduction::Sum => Ok(Tensor::new(0f32, &Device::Cpu)?),
            None => Ok(Tensor::new(f32::NAN, &Device::Cpu)?),
        }
    }

    fn reset(&mut self) {
        self.state = None;
    }

    fn boxed_clone(&self) -> Box<dyn Metric> {
        Box::new(self.clone())
    }

    fn merge(&mut self, other: &dyn Metric) -> Result<()> {
        let o = same(self, other)?;
        if o.reduction != self.reduction {
            return Err(crate::Error::InvalidInput {
                metric: "merge",
                message: "different reductions".into(),
            });
        }
        if let Some(s) = &o.state {
            self.combine(s.clone())?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<Option<Tensor>> {
        vec![self.state.clone()]
    }

    fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
        [self.state] = crate::base::parts::<1>("Reduce", state)?;
        Ok(())
    }
}
