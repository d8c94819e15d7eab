//! Regression metrics: MSE, RMSE, MAE, R², Pearson correlation, from running sums on the device.

use candle::{DType, Device, Tensor};

use crate::base::{acc_dtype, add_into, merge_sum, same};
use crate::{Error, Metric, Result};

/// Which regression metric a [`Regression`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegressionKind {
    /// Mean squared error, as `MeanSquaredError()`.
    Mse,
    /// Root mean squared error, as `MeanSquaredError(squared=False)`.
    Rmse,
    /// Mean absolute error, as `MeanAbsoluteError()`.
    Mae,
    /// Coefficient of determination, as `R2Score()`.
    R2,
    /// Pearson correlation, as `PearsonCorrCoef()`.
    Pearson,
}

/// A regression metric over `(pred, target)` pairs of equal shape.
///
/// The state is one tensor of running sums (Σp, Σt, Σp², Σt², Σpt, Σ(p−t)², Σ|p−t|) in f64 where
/// the device supports it, plus the count; `compute` combines them.
#[derive(Debug, Clone)]
pub struct Regression {
    kind: RegressionKind,
    sums: Option<Tensor>,
    n: f64,
}

impl Regression {
    /// A metric of `kind` with no data yet.
    pub fn new(kind: RegressionKind) -> Self {
        Self {
            kind,
            sums: None,
            n: 0.0,
        }
    }
}

impl Metric for Regression {
    fn name(&self) -> &str {
        match self.kind {
            RegressionKind::Mse => "mse",
            RegressionKind::Rmse => "rmse",
            RegressionKind::Mae => "mae",
            RegressionKind::R2 => "r2",
            RegressionKind::Pearson => "pearson",
        }
    }

    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
        if preds.shape() != target.shape() {
            return Err(Error::InvalidInput {
                metric: "regression",
                message: format!(
                    "preds {:?} and target {:?} must have the same shape",
                    preds.shape(),
                    target.shape()
                ),
            });
        }
        let dt = acc_dtype(preds.device());
        let p = preds.detach().to_dtype(dt)?.flatten_all()?;
        let t = target.detach().to_dtype(dt)?.flatten_all()?;
        let d = (&p - &t)?;
        let sums = Tensor::stack(
            &[
                p.sum_all()?,
                t.sum_all()?,
                p.sqr()?.sum_all()?,
                t.sqr()?.sum_all()?,
                (&p * &t)?.sum_all()?,
                d.sqr()?.sum_all()?,
                d.abs()?.sum_all()?,
            ],
            0,
        )?;
        add_into(&mut self.sums, sums)?;
        self.n += p.elem_count() as f64;
        Ok(())
    }

    fn compute(&self) -> Result<Tensor> {
        let Some(sums) = &self.sums else {
            return Ok(Tensor::new(f32::NAN, &Device::Cpu)?);
        };
        let s = sums.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let (sp, st, spp, stt, spt, sse, sae, n) =
            (s[0], s[1], s[2], s[3], s[4], s[5], s[6], self.n);
        let v = match self.kind {
            RegressionKind::Mse => sse / n,
            RegressionKind::Rmse => (sse / n).sqrt(),
            RegressionKind::Mae => sae / n,
            RegressionKind::R2 => 1.0 - sse / (stt - st * st / n),
            RegressionKind::Pearson => {
                let cov = spt - sp * st / n;
                cov / ((spp - sp * sp / n) * (stt - st * st / n)).sqrt()
            }
        };
        Ok(Tensor::new(v as f32, &Device::Cpu)?)
    }

    fn reset(&mut self) {
        self.sums = None;
        self.n = 0.0;
    }

    fn boxed_clone(&self) -> Box<dyn Metric> {
        Box::new(self.clone())
    }

    fn merge(&mut self, other: &dyn Metric) -> Result<()> {
        let o = same(self, other)?;
        merge_sum(&mut self.sums, &o.sums)?;
        self.n += o.n;
        Ok(())
    }

    fn state(&self) -> Vec<Option<Tensor>> {
        let n = Tensor::new(&[self.n], &candle::Device::Cpu).ok();
        vec![self.sums.clone(), n]
    }

    fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
        let [sums, n] = crate::base::parts::<2>("Regression", state)?;
        self.sums = sums;
        self.n = match n {
            Some(n) => n
                .flatten_all()?
                .to_dtype(candle::DType::F64)?
                .to_vec1::<f64>()?
                .iter()
                .sum(),
            None => 0.0,
        };
        Ok(())
    }
}
