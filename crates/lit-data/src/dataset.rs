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

/// What a dataset tells the model about its examples, as Lightning users pass
/// `datamodule.num_classes` to a model: the shape of one input and the class names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataInfo {
    /// One example's input shape: `(C, H, W)` for images, `(F)` for feature vectors.
    pub input_shape: Vec<usize>,
    /// The class names in index order (class 0 first); empty when the dataset names none.
    pub classes: Vec<String>,
    /// The per-channel mean and standard deviation the inputs are normalised with, when the
    /// dataset computed them (so that the run records them).
    pub normalization: Option<(Vec<f64>, Vec<f64>)>,
    /// The file each example was read from, in index order; empty when not read from files.
    pub files: Vec<std::path::PathBuf>,
    /// What the targets are: class indices, or values to regress on.
    pub task: Task,
}

/// What a dataset's targets are.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Task {
    /// Class indices (`u32`, one per example): the classes are [`DataInfo::classes`].
    #[default]
    Classification,
    /// Values (`f32`, shape `(1)` per example), with the training split's mean and population
    /// standard deviation, which a model may use to bring its outputs to the targets' scale.
    Regression {
        /// The training targets' mean.
        mean: f64,
        /// The training targets' standard deviation (1 when they are all equal).
        std: f64,
    },
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

    /// The shape of an input and the class names, when the dataset knows them; the data
    /// interface passes them on to the model's config.
    fn info(&self) -> Option<DataInfo> {
        None
    }

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

/// An image dataset whose stored pixels a transform can reach before they are normalised: what
/// [`crate::Augmented`] wraps. [`TensorDataset`] stores them in memory; an image folder too large
/// for memory decodes them from its files batch by batch.
pub trait StoredImages: Dataset {
    /// The stored images at `indices`, `(N, C, H, W)` (such as `u8` pixels), and their targets,
    /// before [`StoredImages::stored_map`].
    fn stored_batch(&self, indices: &[usize]) -> Result<Batch>;

    /// The map that turns stored images into the network's inputs, if any.
    fn stored_map(&self) -> Option<&InputMap>;
}

impl StoredImages for TensorDataset {
    fn stored_batch(&self, indices: &[usize]) -> Result<Batch> {
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, indices.len(), self.inputs.device())?;
        Ok(Batch {
            input: self.inputs.index_select(&idx, 0)?,
            target: self.targets.index_select(&idx, 0)?,
        })
    }

    fn stored_map(&self) -> Option<&InputMap> {
        self.map.as_ref()
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
    /// What [`Dataset::info`] reports besides the input shape.
    meta: DataInfo,
}

/// What a [`TensorDataset`] does to each gathered input batch: `x.to_dtype(dtype) * scale +
/// offset`, such as `u8` pixels to `(x / 255 - mean) / std` in `f32`. `scale` and `offset` hold
/// one value for every element, or one per channel: along the channel dimension of images
/// (`(N, C, H, W)` batches, `(C, H, W)` examples) or the last dimension of feature vectors
/// (`(N, F)`, `(F)`).
#[derive(Debug, Clone, PartialEq)]
pub struct InputMap {
    /// The type of the batches handed out.
    pub dtype: DType,
    /// The factor: one, or one per channel.
    pub scale: Vec<f64>,
    /// The offset added after scaling: one, or one per channel.
    pub offset: Vec<f64>,
}

impl InputMap {
    /// The same `scale` and `offset` for every element.
    pub fn uniform(dtype: DType, scale: f64, offset: f64) -> Self {
        Self {
            dtype,
            scale: vec![scale],
            offset: vec![offset],
        }
    }

    /// Pixels in `[0, max]` to `(x / max - mean[c]) / std[c]`, channel by channel (one mean and
    /// standard deviation for all channels when each list holds one).
    pub fn normalize(dtype: DType, max: f64, mean: &[f64], std: &[f64]) -> Self {
        Self {
            dtype,
            scale: std.iter().map(|s| 1.0 / (max * s)).collect(),
            offset: mean.iter().zip(std).map(|(m, s)| -m / s).collect(),
        }
    }

    /// Applies the map to a gathered batch (or sample).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.dtype)?;
        if let ([scale], [offset]) = (self.scale.as_slice(), self.offset.as_slice()) {
            return Ok(x.affine(*scale, *offset)?);
        }
        let rank = x.rank();
        let dim = if rank >= 3 {
            rank - 3
        } else {
            rank.saturating_sub(1)
        };
        let channels = x.dim(dim)?;
        if self.scale.len() != channels || self.offset.len() != channels {
            return Err(Error::Invalid(format!(
                "input map: {} scales and {} offsets for {channels} channels of an input of shape \
                 {:?}",
                self.scale.len(),
                self.offset.len(),
                x.dims()
            )));
        }
        let mut shape = vec![1; rank];
        shape[dim] = channels;
        let column = |v: &[f64]| -> Result<Tensor> {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Ok(Tensor::from_vec(v, shape.as_slice(), x.device())?.to_dtype(self.dtype)?)
        };
        Ok(x.broadcast_mul(&column(&self.scale)?)?
            .broadcast_add(&column(&self.offset)?)?)
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
            meta: DataInfo::default(),
        })
    }

    /// The same data handing out `map(inputs)`: the inputs stay stored as they are.
    pub fn with_input_map(mut self, map: InputMap) -> Self {
        self.map = Some(map);
        self
    }

    /// The same data described by `meta` (its classes, normalisation and files; the input
    /// shape comes from the tensors).
    pub fn with_info(mut self, meta: DataInfo) -> Self {
        self.meta = meta;
        self
    }

    /// The map applied to each input batch, if any.
    pub fn input_map(&self) -> Option<&InputMap> {
        self.map.as_ref()
    }

    /// The same map and targets over other stored inputs (for example shifted images).
    pub fn with_inputs(&self, inputs: Tensor) -> Result<Self> {
        Ok(Self {
            map: self.map.clone(),
            meta: self.meta.clone(),
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
            map: self.map.clone(),
            meta: DataInfo {
                files: self
                    .meta
                    .files
                    .get(start..start + len)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
                ..self.meta.clone()
            },
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

    fn info(&self) -> Option<DataInfo> {
        Some(DataInfo {
            input_shape: self.inputs.dims().get(1..).unwrap_or_default().to_vec(),
            ..self.meta.clone()
        })
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
