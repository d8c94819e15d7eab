//! [`Precision`]: the seam through which the loop computes in a floating-point type other than
//! f32, as Lightning's precision plugins, and the precisions Lightning names.
//!
//! The trainer calls a precision in exactly two places: when a batch moves to the device (the
//! loaders' one entry, [`Precision::convert_batch`]) and in the optimization step, around backward
//! ([`Precision::backward`]) and before gradients are clipped and applied
//! ([`Precision::unscale_gradients`]). Layers compute in their input's type (lit-kernels' `nn`),
//! and `MInterface` runs losses and metrics in f32, as autocast does. Checkpoints store f32
//! weights whatever the precision.
//!
//! | name | parameters and optimizer | compute | loss scaling |
//! |---|---|---|---|
//! | `32-true` (`32`) | f32 | f32 | - |
//! | `bf16-mixed` (`bf16`) | f32 | bf16 | - |
//! | `16-mixed` (`16`) | f32 | f16 | dynamic, as torch's `GradScaler` |
//! | `bf16-true` | bf16 | bf16 | - |
//! | `16-true` | f16 | f16 | - |

use std::sync::LazyLock;

use candle::backprop::GradStore;
use candle::{DType, Device, Tensor, Var};
use lit_data::Registry;
use lit_model::Batch;

use crate::{Error, Result};

/// How a fit computes: what the batch becomes on the device, how the loss is backpropagated, and
/// whether the gradients of a step may be applied.
pub trait Precision: Send {
    /// The name, as `--precision` spells it (`32-true`).
    fn name(&self) -> &str;

    /// The batch on `device`, its float inputs in the compute type.
    fn convert_batch(&self, batch: Batch, device: &Device) -> Result<Batch> {
        batch.to_device(device)
    }

    /// The gradients of `loss` (a precision that scales the loss scales it here).
    fn backward(&mut self, loss: &Tensor) -> Result<GradStore> {
        Ok(loss.backward()?)
    }

    /// Called once per optimizer step with the step's reduced gradients of `params`, before
    /// clipping: undoes a loss scale; `false` skips the optimizer's update (non-finite gradients
    /// under loss scaling, as torch's `GradScaler` does).
    fn unscale_gradients(&mut self, _grads: &mut GradStore, _params: &[Var]) -> Result<bool> {
        Ok(true)
    }

    /// The type the module's float parameters must have (f32, or the low type of a `-true`
    /// precision); the trainer checks it when a fit starts.
    fn param_dtype(&self) -> DType {
        DType::F32
    }

    /// Forgets what earlier fits left (a loss scale), when a fit starts without a checkpoint.
    fn reset(&mut self) {}

    /// State to save in checkpoints (a loss scale), if any.
    fn state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Restores a state saved by [`Precision::state`].
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Everything in f32: Lightning's `32-true`, the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullPrecision;

impl Precision for FullPrecision {
    fn name(&self) -> &str {
        "32-true"
    }
}

/// f32 parameters and optimizer state, computation in bf16 or f16 (`bf16-mixed`, `16-mixed`);
/// f16 scales the loss dynamically.
#[derive(Debug, Clone)]
pub struct MixedPrecision {
    dtype: DType,
    scaler: Option<GradScaler>,
}

impl MixedPrecision {
    /// `bf16-mixed`: bf16 has f32's range, so no loss scaling.
    pub fn bf16() -> Self {
        Self {
            dtype: DType::BF16,
            scaler: None,
        }
    }

    /// `16-mixed`, with torch's `GradScaler` defaults.
    pub fn f16() -> Self {
        Self {
            dtype: DType::F16,
            scaler: Some(GradScaler::default()),
        }
    }

    /// The loss scale now (f16), for tests and monitoring.
    pub fn loss_scale(&self) -> Option<f64> {
        self.scaler.as_ref().map(|s| s.scale)
    }
}

impl Precision for MixedPrecision {
    fn name(&self) -> &str {
        match self.dtype {
            DType::BF16 => "bf16-mixed",
            _ => "16-mixed",
        }
    }

    fn convert_batch(&self, batch: Batch, device: &Device) -> Result<Batch> {
        cast_input(batch, device, self.dtype)
    }

    fn backward(&mut self, loss: &Tensor) -> Result<GradStore> {
        match &self.scaler {
            Some(s) => Ok(loss.affine(s.scale, 0.0)?.backward()?),
            None => Ok(loss.backward()?),
        }
    }

    fn unscale_gradients(&mut self, grads: &mut GradStore, params: &[Var]) -> Result<bool> {
        match self.scaler.as_mut() {
            Some(s) => s.unscale(grads, params),
            None => Ok(true),
        }
    }

    fn state(&self) -> Option<serde_json::Value> {
        self.scaler
            .as_ref()
            .map(|s| serde_json::json!({ "scale": s.scale, "growth_tracker": s.growth_tracker }))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        if let Some(s) = self.scaler.as_mut() {
            let bad = || {
                Error::Config(format!(
                    "16-mixed: a loss-scaler state without 'scale' and 'growth_tracker': {state}"
                ))
            };
            s.scale = state["scale"]
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(bad)?;
            s.growth_tracker = state["growth_tracker"].as_u64().ok_or_else(bad)?;
        }
        Ok(())
    }
}

/// Parameters, optimizer state and computation all in bf16 or f16 (`bf16-true`, `16-true`). The
/// module builds its parameters in that type (`lit_model::param_dtype`); checkpoints still store
/// f32.
#[derive(Debug, Clone, Copy)]
pub struct TruePrecision {
    dtype: DType,
}

impl TruePrecision {
    /// `bf16-true`.
    pub fn bf16() -> Self {
        Self { dtype: DType::BF16 }
    }

    /// `16-true`.
    pub fn f16() -> Self {
        Self { dtype: DType::F16 }
    }
}

impl Precision for TruePrecision {
    fn name(&self) -> &str {
        match self.dtype {
            DType::BF16 => "bf16-true",
            _ => "16-true",
        }
    }

    fn convert_batch(&self, batch: Batch, device: &Device) -> Result<Batch> {
        cast_input(batch, device, self.dtype)
    }

    fn param_dtype(&self) -> DType {
        self.dtype
    }
}

/// The batch on `device` with a float input cast to `dtype` (targets keep their type).
fn cast_input(batch: Batch, device: &Device, dtype: DType) -> Result<Batch> {
    let batch = batch.to_device(device)?;
    if !batch.input.dtype().is_float() {
        return Ok(batch);
    }
    Ok(Batch {
        input: batch.input.to_dtype(dtype)?,
        target: batch.target,
    })
}

/// Dynamic loss scaling, as torch's `GradScaler`: the loss is multiplied by `scale` before
/// backward; a step whose unscaled gradients hold inf or NaN is skipped and halves the scale,
/// and `growth_interval` good steps in a row double it.
#[derive(Debug, Clone)]
pub struct GradScaler {
    scale: f64,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: u64,
    growth_tracker: u64,
}

impl Default for GradScaler {
    /// torch's defaults: `init_scale = 2**16`, `growth_factor = 2`, `backoff_factor = 0.5`,
    /// `growth_interval = 2000`.
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            growth_tracker: 0,
        }
    }
}

impl GradScaler {
    /// Divides the gradients of `params` by the scale and updates it; false when a gradient is
    /// not finite (the step is skipped). One copy to the host per step, as torch's `found_inf`.
    fn unscale(&mut self, grads: &mut GradStore, params: &[Var]) -> Result<bool> {
        let inv = 1.0 / self.scale;
        let mut checks = Vec::with_capacity(params.len());
        for p in params {
            let Some(g) = grads.remove(p.as_tensor()) else {
                continue;
            };
            let g = g.affine(inv, 0.0)?;
            // x * 0 is 0 for finite x and NaN for inf or NaN, so the sum is NaN exactly when
            // one element is not finite.
            checks.push(g.affine(0.0, 0.0)?.sum_all()?.to_dtype(DType::F32)?);
            grads.insert(p.as_tensor(), g);
        }
        let finite = checks.is_empty()
            || Tensor::stack(&checks, 0)?
                .sum_all()?
                .to_scalar::<f32>()?
                .is_finite();
        if finite {
            self.growth_tracker += 1;
            if self.growth_tracker == self.growth_interval {
                // torch keeps the scale when growing would overflow it.
                let grown = self.scale * self.growth_factor;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.growth_tracker = 0;
            }
        } else {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
            tracing::debug!(
                scale = self.scale,
                "16-mixed: non-finite gradients, step skipped"
            );
        }
        Ok(finite)
    }
}

type Builder = fn() -> Box<dyn Precision>;

/// Every precision by Lightning's name (with its short aliases): the only list of them.
pub static PRECISIONS: LazyLock<Registry<Builder>> = LazyLock::new(|| {
    Registry::<Builder>::new("precision")
        .with("32-true", || Box::new(FullPrecision))
        .with("32", || Box::new(FullPrecision))
        .with("bf16-mixed", || Box::new(MixedPrecision::bf16()))
        .with("bf16", || Box::new(MixedPrecision::bf16()))
        .with("16-mixed", || Box::new(MixedPrecision::f16()))
        .with("16", || Box::new(MixedPrecision::f16()))
        .with("bf16-true", || Box::new(TruePrecision::bf16()))
        .with("16-true", || Box::new(TruePrecision::f16()))
});

/// The precision Lightning calls `name`.
pub fn precision_from_name(name: &str) -> Result<Box<dyn Precision>> {
    let build = PRECISIONS
        .get(name)
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(values: &[f32]) -> Var {
        Var::from_slice(values, values.len(), &Device::Cpu).unwrap()
    }

    fn grads_of(p: &Var, loss_weights: &[f32], scale: f64) -> GradStore {
        let w = Tensor::from_slice(loss_weights, loss_weights.len(), &Device::Cpu).unwrap();
        let loss = (p.as_tensor() * w).unwrap().sum_all().unwrap();
        loss.affine(scale, 0.0).unwrap().backward().unwrap()
    }

    #[test]
    fn the_scaler_unscales_finite_gradients_and_grows_after_its_interval() {
        let p = param(&[1.0, 2.0]);
        let mut s = GradScaler {
            growth_interval: 2,
            ..GradScaler::default()
        };
        let mut g = grads_of(&p, &[3.0, -4.0], s.scale);
        assert!(s.unscale(&mut g, std::slice::from_ref(&p)).unwrap());
        let got = g.get(p.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, [3.0, -4.0], "the gradient without the scale");
        assert_eq!(s.scale, 65536.0);
        let mut g = grads_of(&p, &[1.0, 1.0], s.scale);
        assert!(s.unscale(&mut g, std::slice::from_ref(&p)).unwrap());
        assert_eq!(
            (s.scale, s.growth_tracker),
            (131072.0, 0),
            "doubled after 2 good steps"
        );
    }

    #[test]
    fn the_scaler_skips_a_step_with_non_finite_gradients_and_halves() {
        let p = param(&[1.0, 2.0]);
        let mut s = GradScaler::default();
        for bad in [f32::INFINITY, f32::NAN] {
            let before = s.scale;
            let mut g = grads_of(&p, &[bad, 1.0], 1.0);
            assert!(
                !s.unscale(&mut g, std::slice::from_ref(&p)).unwrap(),
                "{bad}"
            );
            assert_eq!(s.scale, before * 0.5);
            assert_eq!(s.growth_tracker, 0);
        }
    }

    #[test]
    fn precisions_by_name_and_the_scale_survives_a_checkpoint() {
        for (name, canonical) in [
            ("32", "32-true"),
            ("bf16", "bf16-mixed"),
            ("16", "16-mixed"),
            ("bf16-true", "bf16-true"),
            ("16-true", "16-true"),
        ] {
            assert_eq!(precision_from_name(name).unwrap().name(), canonical);
        }
        let err = precision_from_name("8").err().unwrap().to_string();
        assert!(
            err.contains("unknown precision '8'") && err.contains("bf16-mixed"),
            "{err}"
        );
        let mut a = MixedPrecision::f16();
        if let Some(s) = a.scaler.as_mut() {
            s.scale = 512.0;
            s.growth_tracker = 7;
        }
        let mut b = MixedPrecision::f16();
        b.load_state(&a.state().unwrap()).unwrap();
        assert_eq!(b.loss_scale(), Some(512.0));
        assert_eq!(b.scaler.unwrap().growth_tracker, 7);
        assert!(MixedPrecision::f16()
            .load_state(&serde_json::json!({"scale": -1.0, "growth_tracker": 0}))
            .is_err());
    }

    #[test]
    fn mixed_precision_casts_float_inputs_and_keeps_targets() {
        let batch = Batch {
            input: Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
            target: Tensor::zeros(2, DType::U32, &Device::Cpu).unwrap(),
        };
        let b = MixedPrecision::bf16()
            .convert_batch(batch.clone(), &Device::Cpu)
            .unwrap();
        assert_eq!(
            (b.input.dtype(), b.target.dtype()),
            (DType::BF16, DType::U32)
        );
        let b = FullPrecision.convert_batch(batch, &Device::Cpu).unwrap();
        assert_eq!(b.input.dtype(), DType::F32);
    }
}
