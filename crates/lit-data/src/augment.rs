//! Data augmentation as a dataset transform, seeded per epoch and example.
//!
//! [`Augmented`] wraps an image dataset ([`StoredImages`], such as a [`crate::TensorDataset`]) and, for each example a loader gathers, applies
//! random transforms drawn from the stream `("augment", epoch, index)` of the run's seed. An
//! epoch's data therefore depends only on the seed, the epoch and the example: not on the number
//! of loader workers, on which process of a data-parallel run loads it, or on whether the run was
//! resumed, so a resumed run sees the same images as an uninterrupted one.

use std::hash::Hasher;
use std::sync::Arc;

use candle::{DType, Device, Tensor};
use lit_base::Generator;

use crate::{AugmentHParams, Batch, DataInfo, Dataset, Error, Result, Sample, StoredImages};

/// One random transform of an image (`C x H x W`, background 0 in stored pixel values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Pads each side by `padding` background pixels and crops a random `H x W` window (as
    /// torchvision's `RandomCrop(size, padding)`): a random shift of up to `padding` pixels.
    Crop {
        /// The most pixels the image moves along each axis.
        padding: usize,
    },
    /// Mirrors the image left to right.
    HorizontalFlip,
    /// Rotates by up to `degrees` either way and moves by up to `translate` of the image size
    /// along each axis, about the centre, sampling bilinearly (torchvision's `RandomAffine`).
    Affine {
        /// The largest rotation, in degrees.
        degrees: f64,
        /// The largest move, as a fraction of the width (horizontally) and height.
        translate: f64,
    },
    /// Crops a window of a random fraction of the area, from `U(min_scale, 1)`, and a random
    /// aspect ratio in [3/4, 4/3], and resizes it back to the image's size, bilinearly
    /// (torchvision's `RandomResizedCrop(size, scale=(min_scale, 1))`).
    ResizedCrop {
        /// The smallest fraction of the image's area a window covers.
        min_scale: f64,
    },
}

/// The widest crop padding, in pixels, on each side.
pub const MAX_PADDING: usize = 1024;

/// The transform names [`Transform::parse_list`] accepts.
pub const TRANSFORMS: [&str; 4] = ["crop", "flip", "affine", "resized_crop"];

impl Transform {
    /// The transform a name stands for, with the sizes `h` gives (`aug_padding`, `aug_degrees`
    /// and `aug_translate` finite and not negative, `aug_scale` in (0, 1]).
    pub fn from_name(name: &str, h: &AugmentHParams) -> Result<Self> {
        let (padding, degrees, translate) = (h.aug_padding, h.aug_degrees, h.aug_translate);
        if !(h.aug_scale > 0.0 && h.aug_scale <= 1.0) {
            return Err(Error::Invalid(format!(
                "aug_scale: expected the smallest fraction of the area a crop keeps, in (0, 1], \
                 got {}",
                h.aug_scale
            )));
        }
        for (key, v) in [("aug_degrees", degrees), ("aug_translate", translate)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Invalid(format!(
                    "{key}: expected a finite size >= 0, got {v}"
                )));
            }
        }
        // torchvision's RandomAffine takes translations in [0, 1]; a padding wider than the
        // largest image side this crate reads would only make a canvas of border.
        if translate > 1.0 {
            return Err(Error::Invalid(format!(
                "aug_translate: expected a fraction of the image in [0, 1], got {translate}"
            )));
        }
        if padding > MAX_PADDING {
            return Err(Error::Invalid(format!(
                "aug_padding: expected at most {MAX_PADDING} pixels, got {padding}"
            )));
        }
        match name.trim() {
            "crop" => Ok(Self::Crop { padding }),
            "flip" => Ok(Self::HorizontalFlip),
            "affine" => Ok(Self::Affine { degrees, translate }),
            "resized_crop" => Ok(Self::ResizedCrop {
                min_scale: h.aug_scale,
            }),
            other => Err(Error::Invalid(format!(
                "augment: unknown transform '{other}'; expected a comma-separated list of {}, or \
                 none",
                TRANSFORMS.join(", ")
            ))),
        }
    }

    /// Parses a comma-separated list of [`TRANSFORMS`] (`none` or empty: no transform) with the
    /// sizes `h` gives.
    pub fn parse_list(list: &str, h: &AugmentHParams) -> Result<Vec<Self>> {
        let list = list.trim();
        if list.is_empty() || list == "none" {
            return Ok(Vec::new());
        }
        list.split(',')
            .map(|name| Self::from_name(name, h))
            .collect()
    }

    /// Applies the transform to one image, drawing what it needs from `g`.
    fn apply(&self, img: &mut [f32], (c, h, w): (usize, usize, usize), g: &mut Generator) {
        match *self {
            Self::Crop { padding } => {
                let p = padding as f64;
                // Offsets in -padding..=padding, as a crop of the padded image.
                let dx = g.uniform_one(-p, p + 1.0).floor() as isize;
                let dy = g.uniform_one(-p, p + 1.0).floor() as isize;
                shift(img, (c, h, w), dx, dy);
            }
            Self::HorizontalFlip => img.chunks_exact_mut(w).for_each(|row| row.reverse()),
            Self::Affine { degrees, translate } => {
                let angle = g.uniform_one(-degrees, degrees).to_radians();
                let tx = g.uniform_one(-translate, translate) * w as f64;
                let ty = g.uniform_one(-translate, translate) * h as f64;
                affine(img, (c, h, w), angle, (tx, ty));
            }
            Self::ResizedCrop { min_scale } => {
                let window = crate::resized_crop::window(h, w, min_scale, g);
                crate::resized_crop::crop_resize(img, (c, h, w), window);
            }
        }
    }
}

/// Moves every plane of `img` so that output pixel `(y, x)` is input pixel `(y + dy, x + dx)`,
/// background where that falls outside.
fn shift(img: &mut [f32], (c, h, w): (usize, usize, usize), dx: isize, dy: isize) {
    let src = img.to_vec();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as isize + dy, x as isize + dx);
                let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                img[(ch * h + y) * w + x] = if inside {
                    src[(ch * h + sy as usize) * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Rotates `img` by `angle` (radians, counter-clockwise on screen) about its centre and moves it
/// by `(tx, ty)` pixels, sampling the input bilinearly (background outside).
fn affine(img: &mut [f32], (c, h, w): (usize, usize, usize), angle: f64, (tx, ty): (f64, f64)) {
    let src = img.to_vec();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let at = |ch: usize, y: isize, x: isize| -> f64 {
        if (0..h as isize).contains(&y) && (0..w as isize).contains(&x) {
            f64::from(src[(ch * h + y as usize) * w + x as usize])
        } else {
            0.0
        }
    };
    for y in 0..h {
        for x in 0..w {
            // The inverse map: where output (x, y) comes from in the input.
            let (u, v) = (x as f64 - cx - tx, y as f64 - cy - ty);
            let sx = cos * u - sin * v + cx;
            let sy = sin * u + cos * v + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for ch in 0..c {
                let top = at(ch, y0, x0) * (1.0 - fx) + at(ch, y0, x0 + 1) * fx;
                let bottom = at(ch, y0 + 1, x0) * (1.0 - fx) + at(ch, y0 + 1, x0 + 1) * fx;
                img[(ch * h + y) * w + x] = (top * (1.0 - fy) + bottom * fy) as f32;
            }
        }
    }
}

/// What [`Augmented`] does: which transforms, how often, from which seed.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// The transforms, applied in this order.
    pub transforms: Vec<Transform>,
    /// The probability that each transform applies to an example.
    pub prob: f64,
    /// The run's seed.
    pub seed: u64,
}

/// An image dataset whose examples are transformed at random, per epoch and example, when a
/// loader gathers them ([`Dataset::get_batch_at`]); `get` and `get_batch` hand out the images
/// untransformed.
#[derive(Clone)]
pub struct Augmented {
    inner: Arc<dyn StoredImages>,
    config: AugmentConfig,
}

impl std::fmt::Debug for Augmented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Augmented")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Augmented {
    /// `inner` (images `(N, C, H, W)`, such as a [`crate::TensorDataset`]) with `config`'s transforms.
    pub fn new(inner: Arc<dyn StoredImages>, config: AugmentConfig) -> Result<Self> {
        let shape = inner.info().map(|i| i.input_shape).unwrap_or_default();
        if shape.len() != 3 {
            return Err(Error::Invalid(format!(
                "augment: expected images of shape (N, C, H, W), got examples of shape {shape:?}"
            )));
        }
        if !(0.0..=1.0).contains(&config.prob) {
            return Err(Error::Invalid(format!(
                "aug_prob: expected a probability in [0, 1], got {}",
                config.prob
            )));
        }
        Ok(Self { inner, config })
    }

    /// The transforms and their probability.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// The stream `purpose` of example `index` in `epoch` (and of its `k`-th transform, when
    /// given).
    fn generator(&self, purpose: &str, epoch: u64, index: usize, k: Option<usize>) -> Generator {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write_u64(epoch);
        hasher.write_u64(index as u64);
        if let Some(k) = k {
            hasher.write_u64(k as u64);
        }
        Generator::stream(self.config.seed, purpose, hasher.finish())
    }
}

impl Dataset for Augmented {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.inner.get(index)
    }

    fn info(&self) -> Option<DataInfo> {
        self.inner.info()
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        self.inner.get_batch(indices)
    }

    fn get_batch_at(&self, indices: &[usize], epoch: u64) -> Result<Batch> {
        let Batch {
            input: stored,
            target,
        } = self.inner.stored_batch(indices)?;
        let (b, c, h, w) = stored.dims4()?;
        let images = &stored;
        let mut pixels = images
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let per = c * h * w;
        for (img, &index) in pixels.chunks_exact_mut(per.max(1)).zip(indices) {
            // Whether each transform applies comes from one stream, what it does from a stream
            // of its own, so one transform's draws never shift the numbers of the next.
            let mut applies = self.generator("augment", epoch, index, None);
            for (k, t) in self.config.transforms.iter().enumerate() {
                if applies.chance(self.config.prob) {
                    let mut g = self.generator("augment-transform", epoch, index, Some(k));
                    t.apply(img, (c, h, w), &mut g);
                }
            }
        }
        let input = Tensor::from_vec(pixels, (b, c, h, w), &Device::Cpu)?;
        let input = match self.inner.stored_map() {
            Some(m) => m.apply(&input)?,
            // Interpolated values round to the nearest stored integer.
            None if !stored.dtype().is_float() => input.round()?.to_dtype(stored.dtype())?,
            None => input.to_dtype(stored.dtype())?,
        };
        let input = input.to_device(stored.device())?;
        Ok(Batch { input, target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TensorDataset;

    fn dataset(prob: f64, transforms: Vec<Transform>) -> Augmented {
        let images: Vec<u8> = (0..4 * 5 * 5).map(|i| (i % 251) as u8).collect();
        let inputs = Tensor::from_vec(images, (4, 1, 5, 5), &Device::Cpu).unwrap();
        let targets = Tensor::from_vec(vec![0u32, 1, 2, 3], 4, &Device::Cpu).unwrap();
        let inner = Arc::new(TensorDataset::new(inputs, targets).unwrap());
        Augmented::new(
            inner,
            AugmentConfig {
                transforms,
                prob,
                seed: 3,
            },
        )
        .unwrap()
    }

    fn pixels(b: &Batch) -> Vec<f32> {
        b.input
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn flip_mirrors_and_probability_zero_is_the_identity() {
        let flip = dataset(1.0, vec![Transform::HorizontalFlip]);
        let plain = pixels(&flip.get_batch(&[1]).unwrap());
        let flipped = pixels(&flip.get_batch_at(&[1], 0).unwrap());
        for (p, f) in plain.chunks(5).zip(flipped.chunks(5)) {
            let mut r = p.to_vec();
            r.reverse();
            assert_eq!(r, f);
        }
        let never = dataset(0.0, vec![Transform::HorizontalFlip]);
        assert_eq!(pixels(&never.get_batch_at(&[1], 0).unwrap()), plain);
    }

    #[test]
    fn an_example_depends_on_seed_epoch_and_index_only() {
        let ds = dataset(
            1.0,
            vec![
                Transform::Crop { padding: 2 },
                Transform::Affine {
                    degrees: 10.0,
                    translate: 0.1,
                },
            ],
        );
        let together = pixels(&ds.get_batch_at(&[0, 2, 3], 5).unwrap());
        let alone = pixels(&ds.get_batch_at(&[2], 5).unwrap());
        assert_eq!(
            &together[25..50],
            &alone[..],
            "batch composition does not matter"
        );
        assert_eq!(together, pixels(&ds.get_batch_at(&[0, 2, 3], 5).unwrap()));
        let other_epoch = pixels(&ds.get_batch_at(&[0, 2, 3], 6).unwrap());
        assert_ne!(together, other_epoch);
        assert_eq!(
            ds.get_batch_at(&[0, 2], 5)
                .unwrap()
                .target
                .to_vec1::<u32>()
                .unwrap(),
            [0, 2]
        );
    }

    #[test]
    fn crop_shifts_within_the_padding() {
        let mut img: Vec<f32> = (0..25).map(|v| v as f32).collect();
        shift(&mut img, (1, 5, 5), 1, 0);
        assert_eq!(&img[..5], &[1.0, 2.0, 3.0, 4.0, 0.0]);
        let mut img: Vec<f32> = (0..25).map(|v| v as f32).collect();
        affine(&mut img, (1, 5, 5), 0.0, (0.0, 0.0));
        assert_eq!(img, (0..25).map(|v| v as f32).collect::<Vec<_>>());
    }

    #[test]
    fn unknown_transforms_and_probabilities_are_named() {
        let sizes = AugmentHParams::default();
        let err = Transform::parse_list("crop,rotate", &sizes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'rotate'") && err.contains("crop, flip, affine"),
            "{err}"
        );
        assert!(Transform::parse_list("none", &sizes).unwrap().is_empty());
        let bad = AugmentHParams {
            aug_degrees: -5.0,
            ..sizes.clone()
        };
        let err = Transform::parse_list("affine", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("aug_degrees") && err.contains("-5"), "{err}");
        let bad = AugmentHParams {
            aug_scale: 0.0,
            ..sizes.clone()
        };
        let err = Transform::parse_list("resized_crop", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("aug_scale") && err.contains("(0, 1]"), "{err}");
        assert_eq!(
            Transform::parse_list("resized_crop", &sizes).unwrap(),
            [Transform::ResizedCrop { min_scale: 0.08 }]
        );
        let inner = Arc::clone(&dataset(0.5, vec![]).inner);
        let err = Augmented::new(
            inner,
            AugmentConfig {
                transforms: vec![],
                prob: 1.5,
                seed: 0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("aug_prob") && err.contains("1.5"), "{err}");
    }
}
