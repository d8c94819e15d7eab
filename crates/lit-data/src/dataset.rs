//! The [`Dataset`] trait, samples and batches, and the in-memory [`TensorDataset`].

use candle::{DType, Tensor};

use crate::{Batch, Error, Result};

/// One example: an input tensor and its target.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The model's input, without a batch dimension.
    pub input: Tensor,
    /// The target, without a batch dimension (a class index is a scalar tensor).
    pub target: Tensor,
}

/// A map-style dataset: a length and random access by index, as PyTorch's `Dataset`.
///
/// Implement `len` and `get`; override [`Dataset::get_batch`] when a whole batch can be gathered
/// at once (as [`TensorDataset`] does), which is what makes loading cheap.
pub trait Dataset: Send + Sync {
    /// The number of examples.
    fn len(&self) -> usize;

    /// Whether the dataset has no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The example at `index`.
    fn get(&self, index: usize) -> Result<Sample>;

    /// The examples at `indices` as epoch `epoch` presents them; the loader calls this. A dataset
    /// that transforms its examples at random (augmentation, [`crate::Augmented`]) seeds the
    /// transforms from the epoch and each example's index, so an epoch's data does not depend on
    /// the worker count or on resuming; the default is [`Dataset::get_batch`].
    fn get_batch_at(&self, indices: &[usize], epoch: u64) -> Result<Batch> {
        let _ = epoch;
        self.get_batch(indices)
    }

    /// The examples at `indices`, stacked into a batch.
    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let samples = indices
            .iter()
            .map(|&i| self.get(i))
            .collect::<Result<Vec<_>>>()?;
        let inputs: Vec<&Tensor> = samples.iter().map(|s| &s.input).collect();
        let targets: Vec<&Tensor> = samples.iter().map(|s| &s.target).collect();
        Ok(Batch {
            input: Tensor::stack(&inputs, 0)?,
            target: Tensor::stack(&targets, 0)?,
        })
    }
}

/// A dataset held as two tensors whose first dimension indexes the examples.
///
/// Batches are one `index_select` on each tensor. The inputs may be kept in their stored type
/// (`u8` pixels) with an [`InputMap`] that turns each batch into normalised floats as it is
/// gathered (in the loader's worker threads), so no full float copy of the data set exists.
#[derive(Debug, Clone)]
pub struct TensorDataset {
    inputs: Tensor,
    targets: Tensor,
    map: Option<InputMap>,
}

/// What a [`TensorDataset`] does to each gathered input batch: `x.to_dtype(dtype) * scale +
/// offset`, such as `u8` pixels to `(x / 255 - mean) / std` in `f32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputMap {
    /// The type of the batches handed out.
    pub dtype: DType,
    /// The factor.
    pub scale: f64,
    /// The offset added after scaling.
    pub offset: f64,
}

impl InputMap {
    /// Applies the map to a gathered batch (or sample).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_dtype(self.dtype)?.affine(self.scale, self.offset)?)
    }
}

impl TensorDataset {
    /// A dataset of `inputs[i]`, `targets[i]` pairs.
    pub fn new(inputs: Tensor, targets: Tensor) -> Result<Self> {
        let (n, m) = (inputs.dim(0)?, targets.dim(0)?);
        if n != m {
            return Err(Error::Invalid(format!(
                "TensorDataset: {n} inputs but {m} targets; the first dimensions must match"
            )));
        }
        Ok(Self {
            inputs,
            targets,
            map: None,
        })
    }

    /// The same data handing out `map(inputs)`: the inputs stay stored as they are.
    pub fn with_input_map(mut self, map: InputMap) -> Self {
        self.map = Some(map);
        self
    }

    /// The map applied to each input batch, if any.
    pub fn input_map(&self) -> Option<InputMap> {
        self.map
    }

    /// The same map and targets over other stored inputs (for example shifted images).
    pub fn with_inputs(&self, inputs: Tensor) -> Result<Self> {
        Ok(Self {
            map: self.map,
            ..Self::new(inputs, self.targets.clone())?
        })
    }

    fn mapped(&self, x: Tensor) -> Result<Tensor> {
        match &self.map {
            Some(m) => m.apply(&x),
            None => Ok(x),
        }
    }

    /// The examples `start..start + len`, sharing storage with `self`.
    pub fn narrow(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            map: self.map,
            ..Self::new(
                self.inputs.narrow(0, start, len)?,
                self.targets.narrow(0, start, len)?,
            )?
        })
    }

    /// All inputs, `(N, ...)`.
    pub fn inputs(&self) -> &Tensor {
        &self.inputs
    }

    /// All targets, `(N, ...)`.
    pub fn targets(&self) -> &Tensor {
        &self.targets
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.inputs.dims().first().copied().unwrap_or(0)
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.len() {
            return Err(Error::Invalid(format!(
                "index {index} out of range for a dataset of {} examples",
                self.len()
            )));
        }
        Ok(Sample {
            input: self.mapped(self.inputs.get(index)?)?,
            target: self.targets.get(index)?,
        })
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let n = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Invalid(format!(
                "index {bad} out of range for a dataset of {n} examples"
            )));
        }
        // A contiguous ascending run is a view; anything else is one gather.
        let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
        if contiguous && !indices.is_empty() {
            let (start, len) = (indices[0], indices.len());
            return Ok(Batch {
                input: self.mapped(self.inputs.narrow(0, start, len)?.contiguous()?)?,
                target: self.targets.narrow(0, start, len)?.contiguous()?,
            });
        }
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, indices.len(), self.inputs.device())?;
        Ok(Batch {
            input: self.mapped(self.inputs.index_select(&idx, 0)?)?,
            target: self.targets.index_select(&idx, 0)?,
        })
    }
}
