//! [`Batch`], what a loader yields and a step takes, and [`Stage`], what the trainer runs.

use candle::{Device, Tensor};

use crate::Result;

/// A batch: inputs and targets stacked along a new first dimension.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs, `(N, ...)`.
    pub input: Tensor,
    /// Targets, `(N, ...)`.
    pub target: Tensor,
}

impl Batch {
    /// The number of examples in the batch.
    pub fn len(&self) -> usize {
        self.input.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same batch on `device` (no copy when it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Batch> {
        if self.input.device().same_device(device) && self.target.device().same_device(device) {
            return Ok(self.clone());
        }
        Ok(Batch {
            input: self.input.to_device(device)?,
            target: self.target.to_device(device)?,
        })
    }
}

/// What the trainer is about to run; passed to [`DataModule::setup`] and `teardown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Training with validation.
    Fit,
    /// Validation alone.
    Validate,
    /// Testing.
    Test,
    /// Prediction.
    Predict,
}

impl Stage {
    /// The stage's name: `fit`, `validate`, `test` or `predict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fit => "fit",
            Stage::Validate => "validate",
            Stage::Test => "test",
            Stage::Predict => "predict",
        }
    }
}
