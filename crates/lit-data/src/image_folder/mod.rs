//! `image_folder`: images in class folders, as torchvision's `ImageFolder`.
//!
//! Layout: `data_root/train/<class>/<image>`, and optionally `data_root/val/<class>/` and
//! `data_root/test/<class>/`; a `data_root` holding class folders directly is taken as `train/`.
//! Without `val/`, validation takes a seeded `val_split` fraction of `train/` and training the
//! rest. Classes are `train/`'s folder names in sorted order (torchvision's `class_to_idx`), and
//! the images of a class in sorted file-name order. PNG, JPEG and BMP are read, converted to
//! `channels` (1 as PIL's `L`, 3 as `RGB`; unset: 1 when every image is gray, else 3), and
//! brought to `image_size` (the shorter side resized, then the centre cropped; unset: the images'
//! own size, which must then be the same for all). Images are decoded once, on every core, and
//! kept as `u8`; each batch is normalised as it is gathered with `normalize_mean` and
//! `normalize_std` (one value or one per channel; unset: the training split's own per-channel
//! statistics, which every split then uses and the data info reports so that the run records
//! them).

mod decode;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{DataContext, DataHParams, Error, Result, Split, StoredImages};

/// The keys `image_folder` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageFolderHParams {
    /// The folder holding `train/<class>/` (and `val/`, `test/`), or the class folders.
    pub data_root: Option<String>,
    /// 1 (gray, PIL's `L`) or 3 (`RGB`); unset: 1 when every image is gray, else 3.
    pub channels: Option<usize>,
    /// The side of the square images the network gets; unset: the images' own size.
    pub image_size: Option<usize>,
    /// The fraction of `train/` that validates when there is no `val/` folder.
    pub val_split: f64,
    /// The mean subtracted from `x / 255`: one value or one per channel; unset: the training
    /// split's.
    #[serde(deserialize_with = "crate::config::numbers")]
    pub normalize_mean: Option<Vec<f64>>,
    /// The standard deviation divided by, as `normalize_mean`.
    #[serde(deserialize_with = "crate::config::numbers")]
    pub normalize_std: Option<Vec<f64>>,
    /// The class names in index order, as a run recorded them from `train/`; when given, the
    /// folders must hold these classes (so a checkpoint's class indices keep their meaning).
    #[serde(deserialize_with = "lit_base::hparams::optional_names")]
    pub classes: Option<Vec<String>>,
    /// The most memory, in MiB, the training folder's decoded images may take; a folder above
    /// it is decoded batch by batch in the loader's worker threads instead (`--num-workers`).
    pub image_memory_mb: usize,
}

impl Default for ImageFolderHParams {
    fn default() -> Self {
        Self {
            data_root: None,
            channels: None,
            image_size: None,
            val_split: 0.1,
            normalize_mean: None,
            normalize_std: None,
            classes: None,
            image_memory_mb: 4096,
        }
    }
}

/// A folder of class folders, decoded.
struct Decoded {
    pixels: Vec<u8>,
    labels: Vec<u32>,
    shape: (usize, usize, usize),
    files: Vec<PathBuf>,
}

/// Builds the `image_folder` dataset for the context's split: decoded once and kept in memory
/// when the training folder fits `image_memory_mb`, else decoded batch by batch.
pub fn build(ctx: &DataContext) -> Result<Arc<dyn StoredImages>> {
    let h: ImageFolderHParams = ctx.hparams.to_config()?;
    let root = root(&h)?;
    let layout = Layout::of(&root)?;
    let classes = classes(&layout.train)?;
    crate::config::same_classes(h.classes.as_deref(), &classes, &layout.train)?;
    if h.image_size == Some(0) {
        return Err(Error::HParam {
            key: "image_size".into(),
            message: "expected a side of at least 1 pixel, got 0".into(),
        });
    }
    let train = listing(ctx, &layout.train, &classes, false)?;
    if !fits(&h, &train)? {
        return lazy::build(ctx, &h, &layout, &classes, train);
    }
    let train = decoded(ctx, &h, &layout.train, &train, None)?;
    let (train_indices, val_indices) = split(ctx, &h, &layout, train.labels.len())?;
    let (mean, std) = normalisation(&h, train.shape.0, || {
        Ok(load::stats(&train, &train_indices))
    })?;
    let shape = train.shape;
    let (data, indices) = pick(
        ctx,
        &h,
        &layout,
        (train, train_indices, val_indices),
        |dir| {
            let list = listing(ctx, dir, &classes, true)?;
            let data = decoded(ctx, &h, dir, &list, Some(shape))?;
            let n = data.labels.len();
            Ok((data, (0..n).collect()))
        },
    )?;
    Ok(Arc::new(to_dataset(
        &data, &indices, &classes, &mean, &std,
    )?))
}

/// The training and validation positions among `n` training images: all and none with a
/// `val/` folder, else a seeded `val_split`.
pub(super) fn split(
    ctx: &DataContext,
    h: &ImageFolderHParams,
    layout: &Layout,
    n: usize,
) -> Result<(Vec<usize>, Vec<usize>)> {
    match layout.val {
        Some(_) => Ok(((0..n).collect(), Vec::new())),
        None => split_indices(n, h, ctx.hparams.to_config::<DataHParams>()?.seed),
    }
}

/// The data and positions of the context's split: `train`'s (data, training positions,
/// validation positions), or `other` of the `val/` or `test/` folder.
pub(super) fn pick<T: Clone>(
    ctx: &DataContext,
    h: &ImageFolderHParams,
    layout: &Layout,
    (train, train_indices, val_indices): (T, Vec<usize>, Vec<usize>),
    other: impl FnOnce(&Path) -> Result<(T, Vec<usize>)>,
) -> Result<(T, Vec<usize>)> {
    let n = train_indices.len() + val_indices.len();
    let (data, indices) = match (ctx.split, &layout.val, &layout.test) {
        (Split::Train, _, _) => (train, train_indices),
        (Split::Val, None, _) => (train, val_indices),
        (Split::Val, Some(dir), _) | (Split::Test | Split::Predict, _, Some(dir)) => other(dir)?,
        (Split::Test | Split::Predict, _, None) => {
            return Err(Error::Missing {
                path: layout.root.join("test"),
                hint: "image_folder tests on data_root/test/<class>/; add that folder or test on \
                       another dataset"
                    .into(),
            })
        }
    };
    if indices.is_empty() {
        return Err(Error::HParam {
            key: "val_split".into(),
            message: format!(
                "{} of the {n} images of {} is no image for the {:?} split; raise val_split or \
                 add a val/ folder",
                h.val_split,
                layout.train.display(),
                ctx.split
            ),
        });
    }
    Ok((data, indices))
}

/// Whether the training folder's images, decoded, fit `image_memory_mb` (three channels
/// counted unless `channels` says one; the size `image_size` or the first image's).
fn fits(h: &ImageFolderHParams, train: &Listing) -> Result<bool> {
    let c = h.channels.unwrap_or(3) as u64;
    let (ih, iw) = match (h.image_size, train.files.first()) {
        (Some(s), _) => (s as u64, s as u64),
        (None, Some(first)) => {
            let (w, h) = image::image_dimensions(first).map_err(|e| Error::Format {
                path: first.clone(),
                message: format!("not a readable PNG, JPEG or BMP image ({e})"),
            })?;
            (u64::from(h), u64::from(w))
        }
        (None, None) => return Ok(true),
    };
    let bytes = train.files.len() as u64 * c * ih * iw;
    Ok(bytes <= (h.image_memory_mb as u64).saturating_mul(1 << 20))
}

fn root(h: &ImageFolderHParams) -> Result<PathBuf> {
    let root = h.data_root.as_deref().ok_or_else(|| Error::HParam {
        key: "data_root".into(),
        message: "image_folder needs data_root: a folder holding train/<class>/ (and optionally \
                  val/, test/), or the class folders themselves"
            .into(),
    })?;
    let root = PathBuf::from(root);
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => Ok(root),
        Ok(_) => Err(Error::HParam {
            key: "data_root".into(),
            message: format!(
                "{} is a file; expected a folder of class folders",
                root.display()
            ),
        }),
        Err(source) => Err(Error::Io { path: root, source }),
    }
}

/// Where each split's class folders are.
pub(super) struct Layout {
    root: PathBuf,
    pub(super) train: PathBuf,
    val: Option<PathBuf>,
    test: Option<PathBuf>,
}

impl Layout {
    fn of(root: &Path) -> Result<Self> {
        let sub = |name: &str| Some(root.join(name)).filter(|p| p.is_dir());
        let train = sub("train");
        Ok(Self {
            root: root.to_path_buf(),
            val: train.as_ref().and(sub("val")),
            test: train.as_ref().and(sub("test")),
            train: train.unwrap_or_else(|| root.to_path_buf()),
        })
    }
}

/// The class folders of `dir`, sorted.
fn classes(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = read_dir(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            message: "holds no class folders; expected <class>/<image> (for example \
                      cat/1.png, dog/2.png)"
                .into(),
        });
    }
    Ok(names)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        out.push(entry.map_err(io)?.path());
    }
    out.sort();
    Ok(out)
}

/// The image files of a folder of class folders, in order, with their labels.
pub(super) struct Listing {
    pub(super) files: Vec<PathBuf>,
    pub(super) labels: Vec<u32>,
}

/// The images of `dir`'s class folders with their labels (a folder not among `classes` is an
/// error naming it; with `check`, `dir` must hold class folders), listed once per run.
pub(super) fn listing(
    ctx: &DataContext,
    dir: &Path,
    classes: &[String],
    check: bool,
) -> Result<Arc<Listing>> {
    ctx.cached(&format!("image_folder-list:{}", dir.display()), || {
        let mut files = Vec::new();
        let mut labels = Vec::new();
        if check {
            // A val/ or test/ folder: class folders, as train/ (named in the error when not).
            self::classes(dir)?;
        }
        for class_dir in read_dir(dir)?.into_iter().filter(|p| p.is_dir()) {
            let name = class_dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let label = classes
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| Error::Format {
                    path: class_dir.clone(),
                    message: format!(
                        "class '{name}' is not one of the training classes ({})",
                        classes.join(", ")
                    ),
                })?;
            let images: Vec<PathBuf> = read_dir(&class_dir)?
                .into_iter()
                .filter(|p| decode::is_image(p))
                .collect();
            if images.is_empty() {
                return Err(Error::Format {
                    path: class_dir.clone(),
                    message: format!(
                        "class folder holds no images (expected files ending in .{})",
                        decode::EXTENSIONS.join(", .")
                    ),
                });
            }
            labels.extend(std::iter::repeat_n(label as u32, images.len()));
            files.extend(images);
        }
        Ok(Listing { files, labels })
    })
}

/// `list`'s images decoded, once per run (cached in the context): to `like` (the training
/// images' shape) for a `val/` or `test/` folder.
fn decoded(
    ctx: &DataContext,
    h: &ImageFolderHParams,
    dir: &Path,
    list: &Listing,
    like: Option<(usize, usize, usize)>,
) -> Result<Arc<Decoded>> {
    let key = format!(
        "image_folder:{}:{:?}:{:?}:{like:?}",
        dir.display(),
        h.channels,
        h.image_size
    );
    ctx.cached(&key, || {
        decode_all(list.files.clone(), list.labels.clone(), h, like)
    })
}

mod lazy;
mod load;
pub use lazy::LazyImages;
use load::{decode_all, normalisation, split_indices, to_dataset};
