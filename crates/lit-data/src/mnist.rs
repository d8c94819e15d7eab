//! MNIST and Fashion-MNIST: finding the files, reading them, and building normalised datasets.
//!
//! Both data sets ship as four IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), raw or with a `.gz` suffix. They are looked
//! for, in order, in each data root given to [`locate`]: `<root>/<flavor dir>/` and `<root>/` itself.
//! With the `hub` feature a missing set is downloaded through candle-datasets.

use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};

use crate::{idx, Error, Result, TensorDataset};

/// Which of the two data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// LeCun's handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
}

impl Flavor {
    /// The folder name under a data root: `mnist` or `fashion-mnist`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Flavor::Mnist => "mnist",
            Flavor::FashionMnist => "fashion-mnist",
        }
    }

    /// Folders outside the project where a system package installs the set.
    pub fn system_dirs(self) -> &'static [&'static str] {
        match self {
            Flavor::Mnist => &[],
            Flavor::FashionMnist => &["/usr/share/datasets/fashion-mnist"],
        }
    }
}

/// One split: images `(n, rows, cols)` as bytes and their labels.
#[derive(Debug, Clone)]
pub struct RawSplit {
    /// Pixel values 0..=255, row-major `(n, rows, cols)`.
    pub images: Vec<u8>,
    /// Class labels.
    pub labels: Vec<u8>,
    /// Number of examples.
    pub n: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// The images file it was read from, for messages.
    pub source: PathBuf,
}

fn split_prefix(train: bool) -> &'static str {
    if train {
        "train"
    } else {
        "t10k"
    }
}

/// The folders searched for `flavor` under each root, in order.
pub fn candidate_dirs(flavor: Flavor, roots: &[PathBuf]) -> Vec<PathBuf> {
    candidate_dirs_in(flavor, roots, true)
}

fn candidate_dirs_in(flavor: Flavor, roots: &[PathBuf], system: bool) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in roots {
        dirs.push(root.join(flavor.dir_name()));
        dirs.push(root.clone());
    }
    if system {
        dirs.extend(flavor.system_dirs().iter().map(PathBuf::from));
    }
    dirs
}

/// Finds `name` (or `name.gz`) in the first folder of `dirs` that has it.
fn find(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        [d.join(name), d.join(format!("{name}.gz"))]
            .into_iter()
            .find(|p| p.is_file())
    })
}

/// The folder holding the four files of `flavor`, if any root has them all.
pub fn locate(flavor: Flavor, roots: &[PathBuf]) -> Option<PathBuf> {
    locate_in(&candidate_dirs(flavor, roots))
}

fn locate_in(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .find(|d| {
            [
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            ]
            .iter()
            .all(|f| find(std::slice::from_ref(d), f).is_some())
        })
        .cloned()
}

/// Reads the images and labels of one split from `dir`, checking that their counts agree.
pub fn read_split(dir: &Path, train: bool) -> Result<RawSplit> {
    let dirs = [dir.to_path_buf()];
    let prefix = split_prefix(train);
    let path_of = |kind: &str| {
        let name = format!("{prefix}-{kind}");
        find(&dirs, &name).ok_or_else(|| Error::Missing {
            path: dir.join(&name),
            hint: "neither it nor a .gz of it exists".into(),
        })
    };
    let (img_path, lbl_path) = (path_of("images-idx3-ubyte")?, path_of("labels-idx1-ubyte")?);
    let images = idx::read(&img_path, 3)?;
    let labels = idx::read(&lbl_path, 1)?;
    if images.dims[0] != labels.dims[0] {
        return Err(Error::Format {
            path: lbl_path,
            message: format!(
                "{} labels for {} images in {}; the counts must match",
                labels.dims[0],
                images.dims[0],
                img_path.display()
            ),
        });
    }
    if images.dims[1..] != [28, 28] {
        return Err(Error::Format {
            path: img_path,
            message: format!(
                "images of {} x {} pixels; MNIST-format images are 28 x 28",
                images.dims[1], images.dims[2]
            ),
        });
    }
    if let Some((i, l)) = labels.data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Error::Format {
            path: lbl_path,
            message: format!("label {l} at index {i}; expected a class from 0 to 9"),
        });
    }
    Ok(RawSplit {
        n: images.dims[0],
        rows: images.dims[1],
        cols: images.dims[2],
        images: images.data,
        labels: labels.data,
        source: img_path,
    })
}

/// Loads one split of `flavor` from the first root that has it, else from the hub when the `hub`
/// feature is on, else fails naming the files looked for and how to get them.
pub fn load_split(flavor: Flavor, roots: &[PathBuf], train: bool) -> Result<RawSplit> {
    load_split_with(flavor, roots, true, train)
}

/// [`load_split`] from the data context's roots; with an explicit `data_dir` only there (no
/// system folder, no download).
pub fn load(flavor: Flavor, ctx: &crate::DataContext, train: bool) -> Result<RawSplit> {
    load_split_with(flavor, &ctx.roots, !ctx.explicit, train)
}

fn load_split_with(
    flavor: Flavor,
    roots: &[PathBuf],
    fallback: bool,
    train: bool,
) -> Result<RawSplit> {
    if !fallback {
        let dirs = candidate_dirs_in(flavor, roots, false);
        if let Some(dir) = locate_in(&dirs) {
            return read_split(&dir, train);
        }
        let first = dirs.first().cloned().unwrap_or_default();
        let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(Error::Missing {
            path: first.join(format!("{}-images-idx3-ubyte", split_prefix(train))),
            hint: format!(
                "--data-dir was given, so only [{}] were searched; it needs the four IDX files \
                 (raw or .gz) in {}/ or in the folder itself",
                looked.join(", "),
                flavor.dir_name()
            ),
        });
    }
    if let Some(dir) = locate(flavor, roots) {
        tracing::debug!(dir = %dir.display(), ?flavor, train, "reading IDX files");
        return read_split(&dir, train);
    }
    #[cfg(feature = "hub")]
    {
        return hub_split(flavor, train);
    }
    #[allow(unreachable_code)]
    {
        let first = candidate_dirs(flavor, roots)
            .into_iter()
            .next()
            .unwrap_or_else(|| PathBuf::from("data").join(flavor.dir_name()));
        let looked: Vec<String> = candidate_dirs(flavor, roots)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        Err(Error::Missing {
            path: first.join(format!("{}-images-idx3-ubyte", split_prefix(train))),
            hint: format!(
                "looked in [{}]; set LIT_DATA_DIR (or --data-dir) to a folder holding {}/, run \
                 `cargo xtask data --from DIR` to copy the IDX files into data/{}, {}or build with \
                 `--features hub` to download them",
                looked.join(", "),
                flavor.dir_name(),
                flavor.dir_name(),
                if flavor == Flavor::FashionMnist {
                    "run `apt-get install dataset-fashion-mnist`, "
                } else {
                    ""
                }
            ),
        })
    }
}

#[cfg(feature = "hub")]
fn hub_split(flavor: Flavor, train: bool) -> Result<RawSplit> {
    use candle_datasets::vision;
    tracing::info!(
        ?flavor,
        "no local copy: downloading through candle-datasets"
    );
    let ds = match flavor {
        Flavor::Mnist => vision::mnist::load(),
        Flavor::FashionMnist => vision::fashion_mnist::load(),
    }?;
    let (images, labels) = if train {
        (ds.train_images, ds.train_labels)
    } else {
        (ds.test_images, ds.test_labels)
    };
    let n = images.dim(0)?;
    let images = (images.flatten_all()? * 255.0)?
        .round()?
        .to_dtype(DType::U8)?
        .to_vec1::<u8>()?;
    let labels = labels.to_dtype(DType::U8)?.to_vec1::<u8>()?;
    Ok(RawSplit {
        images,
        labels,
        n,
        rows: 28,
        cols: 28,
        source: PathBuf::from(format!("{} from the hub", flavor.dir_name())),
    })
}

/// A dataset of images `(n, 1, rows, cols)` kept as their `u8` pixels on `device` and handed out
/// normalised as `(x / 255 - mean) / std` in `f32`, batch by batch, with `u32` labels.
pub fn to_dataset(split: &RawSplit, mean: f64, std: f64, device: &Device) -> Result<TensorDataset> {
    let images = Tensor::from_slice(
        &split.images,
        (split.n, 1, split.rows, split.cols),
        &Device::Cpu,
    )?
    .to_device(device)?;
    let labels = Tensor::from_slice(&split.labels, split.n, &Device::Cpu)?
        .to_dtype(DType::U32)?
        .to_device(device)?;
    Ok(
        TensorDataset::new(images, labels)?.with_input_map(crate::InputMap::uniform(
            DType::F32,
            1.0 / (255.0 * std),
            -mean / std,
        )),
    )
}

/// Shifts images `(n, c, h, w)` by `dx` pixels right and `dy` pixels down (negative: left, up),
/// filling the uncovered border with `fill`.
pub fn shift_images(images: &Tensor, dx: i64, dy: i64, fill: f64) -> Result<Tensor> {
    let shift_dim = |t: Tensor, dim: usize, by: i64| -> Result<Tensor> {
        let size = t.dim(dim)?;
        let k = (by.unsigned_abs() as usize).min(size);
        if k == 0 {
            return Ok(t);
        }
        let mut pad_shape = t.dims().to_vec();
        pad_shape[dim] = k;
        let pad = Tensor::full(fill as f32, pad_shape, t.device())?.to_dtype(t.dtype())?;
        Ok(if by > 0 {
            Tensor::cat(&[&pad, &t.narrow(dim, 0, size - k)?], dim)?
        } else {
            Tensor::cat(&[&t.narrow(dim, k, size - k)?, &pad], dim)?
        })
    };
    let t = shift_dim(images.clone(), 3, dx)?;
    shift_dim(t, 2, dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_pixels_and_fills() {
        let x = Tensor::arange(1f32, 10., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let s = shift_images(&x, 1, 1, 0.0).unwrap();
        assert_eq!(
            s.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 0., 0., 0., 1., 2., 0., 4., 5.]
        );
        let s = shift_images(&x, -1, 0, -1.0).unwrap();
        assert_eq!(
            s.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [2., 3., -1., 5., 6., -1., 8., 9., -1.]
        );
    }

    #[test]
    fn missing_files_say_where_and_how() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_split(Flavor::Mnist, &[dir.path().to_path_buf()], true);
        if cfg!(feature = "hub") {
            return;
        }
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
        assert!(msg.contains("LIT_DATA_DIR"), "{msg}");
    }

    #[test]
    fn label_count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, rank: u8, dims: &[u32]| {
            let mut v = vec![0, 0, 8, rank];
            for d in dims {
                v.extend_from_slice(&d.to_be_bytes());
            }
            v.resize(v.len() + dims.iter().product::<u32>() as usize, 0);
            std::fs::write(dir.path().join(name), v).unwrap();
        };
        write("t10k-images-idx3-ubyte", 3, &[3, 2, 2]);
        write("t10k-labels-idx1-ubyte", 1, &[2]);
        let msg = read_split(dir.path(), false).unwrap_err().to_string();
        assert!(msg.contains("2 labels for 3 images"), "{msg}");
        assert!(
            msg.contains("t10k-labels-idx1-ubyte") && msg.contains("t10k-images"),
            "{msg}"
        );
    }
}
