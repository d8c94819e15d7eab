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

use crate::{DataContext, DataHParams, Error, Result, Split, TensorDataset};

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

/// Builds the `image_folder` dataset for the context's split.
pub fn build(ctx: &DataContext) -> Result<Arc<TensorDataset>> {
    let h: ImageFolderHParams = ctx.hparams.to_config()?;
    let root = root(&h)?;
    let layout = Layout::of(&root)?;
    let classes = classes(&layout.train)?;
    if let Some(given) = h.classes.as_ref().filter(|g| **g != classes) {
        return Err(Error::HParam {
            key: "classes".into(),
            message: format!(
                "the run was trained on the classes {} but {} holds {}",
                given.join(", "),
                layout.train.display(),
                classes.join(", ")
            ),
        });
    }
    let train = decoded(ctx, &h, &layout.train, &classes, None)?;
    let n = train.labels.len();
    let (train_indices, val_indices) = match layout.val {
        Some(_) => ((0..n).collect(), Vec::new()),
        None => {
            let seed = ctx.hparams.to_config::<DataHParams>()?.seed;
            split_indices(n, &h, seed)?
        }
    };
    let (mean, std) = normalisation(&h, &train, &train_indices)?;
    let (data, indices) = match (ctx.split, &layout.val, &layout.test) {
        (Split::Train, _, _) => (Arc::clone(&train), train_indices),
        (Split::Val, None, _) => (Arc::clone(&train), val_indices),
        (Split::Val, Some(dir), _) | (Split::Test | Split::Predict, _, Some(dir)) => {
            all(decoded(ctx, &h, dir, &classes, Some(train.shape))?)
        }
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
    to_dataset(&data, &indices, &classes, &mean, &std).map(Arc::new)
}

fn all(d: Arc<Decoded>) -> (Arc<Decoded>, Vec<usize>) {
    let n = d.labels.len();
    (d, (0..n).collect())
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
struct Layout {
    root: PathBuf,
    train: PathBuf,
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

/// The images of `dir`'s class folders with their labels (a folder not among `classes` is an
/// error naming it), decoded once per run (cached in the context).
fn decoded(
    ctx: &DataContext,
    h: &ImageFolderHParams,
    dir: &Path,
    classes: &[String],
    like: Option<(usize, usize, usize)>,
) -> Result<Arc<Decoded>> {
    let key = format!(
        "image_folder:{}:{:?}:{:?}:{like:?}",
        dir.display(),
        h.channels,
        h.image_size
    );
    ctx.cached(&key, || {
        let mut files = Vec::new();
        let mut labels = Vec::new();
        if like.is_some() {
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
        decode_all(files, labels, h, like)
    })
}

mod load;
use load::{decode_all, normalisation, split_indices, to_dataset};
