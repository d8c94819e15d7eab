//! An image folder too large for memory: its files decoded batch by batch, in the loader's
//! worker threads, and its normalisation statistics gathered in one streaming pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle::{DType, Device, Tensor};

use super::load::{self, par_map};
use super::{decode, ImageFolderHParams, Layout, Listing};
use crate::{Batch, DataContext, DataInfo, Dataset, Error, InputMap, Result, Sample, StoredImages};

/// Images kept as file paths and decoded when a batch is gathered.
#[derive(Debug, Clone)]
pub struct LazyImages {
    files: Vec<PathBuf>,
    labels: Vec<u32>,
    /// `(C, H, W)` of every image.
    shape: (usize, usize, usize),
    /// The side images are resized and centre-cropped to, if any.
    size: Option<usize>,
    map: InputMap,
    meta: DataInfo,
}

impl LazyImages {
    /// `files` with `labels`, each decoded to `shape` (with `size`, as the folder's keys say)
    /// and mapped by `map`; `meta` describes them (classes, normalisation).
    pub(super) fn new(
        files: Vec<PathBuf>,
        labels: Vec<u32>,
        (shape, size): ((usize, usize, usize), Option<usize>),
        map: InputMap,
        meta: DataInfo,
    ) -> Self {
        Self {
            meta: DataInfo {
                files: files.clone(),
                ..meta
            },
            files,
            labels,
            shape,
            size,
            map,
        }
    }
}

/// Refuses, before training, a file whose size (from its header) is not the first training
/// image's, as the in-memory folder does when it decodes them.
fn same_size(files: &[PathBuf], (h, w): (usize, usize), first: &Path) -> Result<()> {
    let sizes = par_map(files, |f| {
        image::image_dimensions(f).map_err(|e| Error::Format {
            path: f.clone(),
            message: format!("not a readable PNG, JPEG or BMP image ({e})"),
        })
    })?;
    for (f, (fw, fh)) in files.iter().zip(sizes) {
        if (fh as usize, fw as usize) != (h, w) {
            return Err(Error::Format {
                path: f.clone(),
                message: format!(
                    "is {fw} x {fh} pixels but the first training image ({}) is {w} x {h}; set \
                     image_size to bring every image to one size",
                    first.display()
                ),
            });
        }
    }
    Ok(())
}

/// One file decoded to `shape`'s channels with `size`, refused when its size differs.
pub(super) fn decode_to(
    path: &Path,
    (c, h, w): (usize, usize, usize),
    size: Option<usize>,
) -> Result<Vec<u8>> {
    let (pixels, ih, iw) = decode::pixels(decode::open(path)?, c, size);
    if (ih, iw) != (h, w) {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!(
                "is {iw} x {ih} pixels but the training images are {w} x {h}; set image_size to \
                 bring every image to one size"
            ),
        });
    }
    Ok(pixels)
}

impl StoredImages for LazyImages {
    fn stored_batch(&self, indices: &[usize]) -> Result<Batch> {
        let (c, h, w) = self.shape;
        let mut pixels = Vec::with_capacity(indices.len() * c * h * w);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let file = self.files.get(i).ok_or_else(|| {
                Error::Invalid(format!(
                    "index {i} out of range for a dataset of {} examples",
                    self.files.len()
                ))
            })?;
            pixels.extend(decode_to(file, self.shape, self.size)?);
            labels.push(self.labels[i]);
        }
        let n = indices.len();
        Ok(Batch {
            input: Tensor::from_vec(pixels, (n, c, h, w), &Device::Cpu)?,
            target: Tensor::from_vec(labels, n, &Device::Cpu)?,
        })
    }

    fn stored_map(&self) -> Option<&InputMap> {
        Some(&self.map)
    }
}

impl Dataset for LazyImages {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let b = self.get_batch(&[index])?;
        Ok(Sample {
            input: b.input.squeeze(0)?,
            target: b.target.squeeze(0)?,
        })
    }

    fn info(&self) -> Option<DataInfo> {
        let (c, h, w) = self.shape;
        Some(DataInfo {
            input_shape: vec![c, h, w],
            ..self.meta.clone()
        })
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let b = self.stored_batch(indices)?;
        Ok(Batch {
            input: self.map.apply(&b.input)?,
            target: b.target,
        })
    }
}

/// The per-channel mean and population standard deviation of `files`' pixels scaled to
/// [0, 1], decoding each once on every core and keeping none.
pub(super) fn stats(
    files: &[PathBuf],
    shape: (usize, usize, usize),
    size: Option<usize>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let c = shape.0;
    let plane = shape.1 * shape.2;
    let sums = par_map(files, |f| {
        let p = decode_to(f, shape, size)?;
        let mut s = vec![(0u64, 0u64); c];
        for (ch, sum) in s.iter_mut().enumerate() {
            for &v in &p[ch * plane..(ch + 1) * plane] {
                sum.0 += u64::from(v);
                sum.1 += u64::from(v) * u64::from(v);
            }
        }
        Ok(s)
    })?;
    let n = (files.len() * plane).max(1) as f64;
    let mut mean = vec![0.0; c];
    let mut std = vec![0.0; c];
    for ch in 0..c {
        let (s, q) = sums
            .iter()
            .fold((0u64, 0u64), |a, v| (a.0 + v[ch].0, a.1 + v[ch].1));
        mean[ch] = s as f64 / n / 255.0;
        std[ch] = ((q as f64 / n / (255.0 * 255.0)) - mean[ch] * mean[ch])
            .max(0.0)
            .sqrt()
            .max(1e-6);
    }
    Ok((mean, std))
}

/// The map of stored pixels to `(x / 255 - mean) / std`.
pub(super) fn map(mean: &[f64], std: &[f64]) -> InputMap {
    InputMap::normalize(DType::F32, 255.0, mean, std)
}

/// The context's split of a folder too large for memory (see [`super::build`]): the shape from
/// the keys and the first image, the statistics streamed over the training images.
pub(super) fn build(
    ctx: &DataContext,
    h: &ImageFolderHParams,
    layout: &Layout,
    classes: &[String],
    train: Arc<Listing>,
) -> Result<Arc<dyn StoredImages>> {
    let first = train
        .files
        .first()
        .cloned()
        .ok_or_else(|| Error::Invalid("image_folder: no images".into()))?;
    let channels = load::channels(h, &train.files)?;
    let (_, ih, iw) = decode::pixels(decode::open(&first)?, channels, h.image_size);
    let shape = (channels, ih, iw);
    let (train_indices, val_indices) = super::split(ctx, h, layout, train.files.len())?;
    let key = format!(
        "image_folder-stats:{}:{shape:?}:{:?}:{train_indices:?}",
        layout.train.display(),
        h.image_size
    );
    let (mean, std) = load::normalisation(h, channels, || {
        let files: Vec<PathBuf> = train_indices
            .iter()
            .map(|&i| train.files[i].clone())
            .collect();
        let s = ctx.cached(&key, || stats(&files, shape, h.image_size))?;
        Ok(s.as_ref().clone())
    })?;
    let (list, indices) =
        super::pick(ctx, h, layout, (train, train_indices, val_indices), |dir| {
            let list = super::listing(ctx, dir, classes, true)?;
            let n = list.files.len();
            Ok((list, (0..n).collect()))
        })?;
    let files: Vec<PathBuf> = indices.iter().map(|&i| list.files[i].clone()).collect();
    if h.image_size.is_none() {
        same_size(&files, (ih, iw), &first)?;
    }
    let meta = DataInfo {
        classes: classes.to_vec(),
        normalization: Some((mean.clone(), std.clone())),
        ..DataInfo::default()
    };
    Ok(Arc::new(LazyImages::new(
        files,
        indices.iter().map(|&i| list.labels[i]).collect(),
        (shape, h.image_size),
        map(&mean, &std),
        meta,
    )))
}
