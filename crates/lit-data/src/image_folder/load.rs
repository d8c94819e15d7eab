//! Decoding a folder's images on every core, the split of `train/`, the normalisation and the
//! dataset itself.

use std::path::PathBuf;

use candle::{DType, Device, Tensor};

use super::{decode, Decoded, ImageFolderHParams};
use crate::{DataInfo, Error, Generator, InputMap, Result, TensorDataset};

/// Decodes `files` (with their `labels`) to one shape: `like`'s channels and size (the training
/// images', for validation and test folders), else from the keys and the first image.
pub(super) fn decode_all(
    files: Vec<PathBuf>,
    labels: Vec<u32>,
    h: &ImageFolderHParams,
    like: Option<(usize, usize, usize)>,
) -> Result<Decoded> {
    let first = files
        .first()
        .ok_or_else(|| Error::Invalid("image_folder: no images".into()))?;
    let channels = match like {
        Some((c, _, _)) => c,
        None => channels(h, &files)?,
    };
    let size = h.image_size;
    let images = decode_parallel(&files, channels, size)?;
    let (hh, ww) = match like {
        Some((_, lh, lw)) => (lh, lw),
        None => (images[0].1, images[0].2),
    };
    let mut pixels = Vec::with_capacity(files.len() * channels * hh * ww);
    for ((p, ih, iw), path) in images.into_iter().zip(&files) {
        if (ih, iw) != (hh, ww) {
            let others = match like {
                Some(_) => "the training images are".to_string(),
                None => format!("the first image ({}) is", first.display()),
            };
            return Err(Error::Format {
                path: path.clone(),
                message: format!(
                    "is {iw} x {ih} pixels but {others} {ww} x {hh}; set image_size to bring \
                     every image to one size"
                ),
            });
        }
        pixels.extend_from_slice(&p);
    }
    Ok(Decoded {
        pixels,
        labels,
        shape: (channels, hh, ww),
        files,
    })
}

type Pixels = (Vec<u8>, usize, usize);

/// The channels `h` asks for: 1 or 3, or unset: 1 when every file is gray, else 3.
pub(super) fn channels(h: &ImageFolderHParams, files: &[PathBuf]) -> Result<usize> {
    match h.channels {
        Some(c @ (1 | 3)) => Ok(c),
        Some(c) => Err(Error::HParam {
            key: "channels".into(),
            message: format!("expected 1 (gray) or 3 (RGB), got {c}"),
        }),
        None if all_gray(files)? => Ok(1),
        None => Ok(3),
    }
}

/// Whether every file holds gray levels only, from the files' headers (nothing decoded).
fn all_gray(files: &[PathBuf]) -> Result<bool> {
    Ok(par_map(files, |f| decode::header_is_gray(f))?
        .into_iter()
        .all(|g| g))
}

/// Every file decoded, in order.
fn decode_parallel(files: &[PathBuf], channels: usize, size: Option<usize>) -> Result<Vec<Pixels>> {
    par_map(files, |f| {
        Ok(decode::pixels(decode::open(f)?, channels, size))
    })
}

/// `f` of every file, in order, on as many threads as the machine has cores.
pub(super) fn par_map<T: Send>(
    files: &[PathBuf],
    f: impl Fn(&PathBuf) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| Error::Invalid("reading images panicked".into()))??,
            );
        }
        Ok(out)
    })
}

/// `train/`'s examples split into training and validation positions by a seeded permutation
/// (both sorted), the validation share `val_split`.
pub(super) fn split_indices(
    n: usize,
    h: &ImageFolderHParams,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(h.val_split.is_finite() && (0.0..1.0).contains(&h.val_split)) {
        return Err(Error::HParam {
            key: "val_split".into(),
            message: format!("expected a fraction in [0, 1), got {}", h.val_split),
        });
    }
    let n_val = (n as f64 * h.val_split).round() as usize;
    let perm = Generator::stream(seed, "val_split", 0).permutation(n);
    let mut val = perm[..n_val].to_vec();
    let mut train = perm[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// The mean and standard deviation per channel that batches are normalised with: the keys', or
/// `stats` of the training examples (pixels scaled to [0, 1], population deviation), computed
/// only when a key does not give them.
pub(super) fn normalisation(
    h: &ImageFolderHParams,
    c: usize,
    stats: impl FnOnce() -> Result<(Vec<f64>, Vec<f64>)>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let check = |key: &str, v: &[f64], positive: bool| {
        crate::config::per_channel(key, v, (c, "channel"), positive)
    };
    let mean = h
        .normalize_mean
        .as_deref()
        .map(|m| check("normalize_mean", m, false));
    let std = h
        .normalize_std
        .as_deref()
        .map(|s| check("normalize_std", s, true));
    let (mean, std) = match (mean.transpose()?, std.transpose()?) {
        (Some(m), Some(s)) => (m, s),
        (m, s) => {
            // The statistics only when a key leaves one of them to the data.
            let (own_mean, own_std) = stats()?;
            (m.unwrap_or(own_mean), s.unwrap_or(own_std))
        }
    };
    Ok((mean, std))
}

/// Per-channel mean and population standard deviation of `indices`' pixels, scaled to [0, 1].
pub(super) fn stats(data: &Decoded, indices: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (c, h, w) = data.shape;
    let plane = h * w;
    let mut sum = vec![0u64; c];
    let mut sq = vec![0u64; c];
    for &i in indices {
        let img = &data.pixels[i * c * plane..(i + 1) * c * plane];
        for ch in 0..c {
            for &p in &img[ch * plane..(ch + 1) * plane] {
                sum[ch] += u64::from(p);
                sq[ch] += u64::from(p) * u64::from(p);
            }
        }
    }
    let n = (indices.len() * plane).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|&s| s as f64 / n / 255.0).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(&q, m)| {
            ((q as f64 / n / (255.0 * 255.0)) - m * m)
                .max(0.0)
                .sqrt()
                .max(1e-6)
        })
        .collect();
    (mean, std)
}

/// The examples at `indices` as `u8` images normalised batch by batch.
pub(super) fn to_dataset(
    data: &Decoded,
    indices: &[usize],
    classes: &[String],
    mean: &[f64],
    std: &[f64],
) -> Result<TensorDataset> {
    let (c, h, w) = data.shape;
    let per = c * h * w;
    let mut pixels = Vec::with_capacity(indices.len() * per);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        pixels.extend_from_slice(&data.pixels[i * per..(i + 1) * per]);
        labels.push(data.labels[i]);
    }
    let n = indices.len();
    let images = Tensor::from_vec(pixels, (n, c, h, w), &Device::Cpu)?;
    let labels = Tensor::from_vec(labels, n, &Device::Cpu)?;
    Ok(TensorDataset::new(images, labels)?
        .with_input_map(InputMap::normalize(DType::F32, 255.0, mean, std))
        .with_info(DataInfo {
            input_shape: Vec::new(),
            classes: classes.to_vec(),
            normalization: Some((mean.to_vec(), std.to_vec())),
            files: indices.iter().map(|&i| data.files[i].clone()).collect(),
            task: crate::Task::Classification,
        }))
}
