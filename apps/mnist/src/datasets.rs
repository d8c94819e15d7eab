//! The datasets this binary can use, by name: the one place a dataset is registered.
//!
//! | name | content |
//! |---|---|
//! | `mnist_train` | the first 55,000 MNIST training images |
//! | `mnist_val` | the last 5,000 MNIST training images |
//! | `mnist_val_shifted` | `mnist_val` with every image moved `shift_pixels` (default 2) pixels right and down, the border filled with background |
//! | `mnist_test` | the 10,000 MNIST test images |
//! | `fashion_mnist_*` | the same four for Fashion-MNIST |
//! | `image_folder` | images in class folders under `data_root` ([`lit_data::image_folder`]): `train/` for training, `val/` (or a `val_split` of `train/`) for validation, `test/` for testing |
//! | `csv` | a table's rows ([`lit_data::table`]): `csv_path` for training, `val_csv_path` / `test_csv_path` (or seeded `val_split` / `test_split` fractions of `csv_path`) for validation and testing; `target_column` predicted from `feature_columns` |
//!
//! The training sets are augmented ([`lit_data::Augmented`]): `augment` lists the transforms
//! (`crop`, `flip`, `affine`, `resized_crop`; `auto`, the default, is `crop,flip` for Fashion-MNIST and none for
//! MNIST, whose digits a mirror would change), each applied to an example with probability
//! `aug_prob`, with sizes `aug_padding` (2 pixels), `aug_degrees` (10), `aug_translate` (0.1 of
//! the image) and `aug_scale` (0.08, the smallest fraction of the area `resized_crop` keeps); `no_augment` turns it off. Validation and test sets are never transformed.
//!
//! Images are held as their `u8` pixels and normalised batch by batch, in the loader's worker
//! threads, as `(x / 255 - mean) / std` with `normalize_mean` and `normalize_std` (defaults: MNIST
//! 0.1307 / 0.3081, Fashion-MNIST 0.2860 / 0.3530). To add a dataset, register a builder that
//! returns any `lit_data::Dataset`.

use std::sync::Arc;

use lit_data::image_folder::{self, ImageFolderHParams};
use lit_data::mnist::{self, Flavor};
use lit_data::table::{self, CsvHParams};
use lit_data::{
    AugmentConfig, AugmentHParams, Augmented, DataContext, DataHParams, Dataset, DatasetRegistry,
    Error, Result, Split, TensorDataset,
};
use serde::{Deserialize, Serialize};

/// Training images kept for training; the rest of the training file is the validation set.
const TRAIN_SPLIT: usize = 55_000;

/// The keys the MNIST-family datasets read besides the augmentation's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct MnistHParams {
    /// The mean subtracted from each `x / 255`; unset: the dataset's own (MNIST 0.1307,
    /// Fashion-MNIST 0.2860).
    normalize_mean: Option<f64>,
    /// The standard deviation divided by; unset: MNIST 0.3081, Fashion-MNIST 0.3530.
    normalize_std: Option<f64>,
    /// How far `*_val_shifted` moves each image, right and down.
    shift_pixels: i64,
}

impl Default for MnistHParams {
    fn default() -> Self {
        Self {
            normalize_mean: None,
            normalize_std: None,
            shift_pixels: 2,
        }
    }
}

fn normalisation(ctx: &DataContext, flavor: Flavor) -> Result<(f64, f64)> {
    let (mean, std) = match flavor {
        Flavor::Mnist => (0.1307, 0.3081),
        Flavor::FashionMnist => (0.2860, 0.3530),
    };
    let h: MnistHParams = ctx.hparams.to_config()?;
    let (mean, std) = (
        h.normalize_mean.unwrap_or(mean),
        h.normalize_std.unwrap_or(std),
    );
    if !mean.is_finite() {
        return Err(Error::Invalid(format!(
            "normalize_mean: expected a finite number, got {mean}"
        )));
    }
    if !(std.is_finite() && std > 0.0) {
        return Err(Error::Invalid(format!(
            "normalize_std: expected a finite standard deviation > 0 (images are divided by it), \
             got {std}"
        )));
    }
    Ok((mean, std))
}

/// A whole normalised file and where it came from.
struct Loaded {
    data: Arc<TensorDataset>,
    source: std::path::PathBuf,
}

/// The whole normalised training or test file of `flavor`, read once per run.
fn full(ctx: &DataContext, flavor: Flavor, train: bool) -> Result<Arc<TensorDataset>> {
    Ok(Arc::clone(&loaded(ctx, flavor, train)?.data))
}

fn loaded(ctx: &DataContext, flavor: Flavor, train: bool) -> Result<Arc<Loaded>> {
    let key = format!(
        "{}/{}",
        flavor.dir_name(),
        if train { "train" } else { "test" }
    );
    ctx.cached(&key, || {
        let raw = mnist::load(flavor, ctx, train)?;
        let (mean, std) = normalisation(ctx, flavor)?;
        Ok(Loaded {
            data: Arc::new(mnist::to_dataset(&raw, mean, std, &candle::Device::Cpu)?),
            source: raw.source,
        })
    })
}

fn val(ctx: &DataContext, flavor: Flavor) -> Result<TensorDataset> {
    let loaded = loaded(ctx, flavor, true)?;
    let n = loaded.data.len();
    if n <= TRAIN_SPLIT {
        return Err(Error::Format {
            path: loaded.source.clone(),
            message: format!(
                "{n} images; the validation sets are the images after the first {TRAIN_SPLIT} \
                 (which train), so the file must hold more than {TRAIN_SPLIT}"
            ),
        });
    }
    loaded.data.narrow(TRAIN_SPLIT, n - TRAIN_SPLIT)
}

/// The training set's augmentation from the hyperparameters; `None` for none. `auto` is
/// `crop,flip` for Fashion-MNIST and none for MNIST, whose digits a mirror would change.
fn augmentation(ctx: &DataContext, flavor: Flavor) -> Result<Option<AugmentConfig>> {
    let h: AugmentHParams = ctx.hparams.to_config()?;
    let auto = match flavor {
        Flavor::FashionMnist => "crop,flip",
        Flavor::Mnist => "none",
    };
    let seed = ctx.hparams.to_config::<DataHParams>()?.seed;
    h.to_augment(auto, seed)
}

fn register_flavor(r: &mut DatasetRegistry, prefix: &str, flavor: Flavor) {
    r.register(&format!("{prefix}_train"), move |ctx| {
        let all = full(ctx, flavor, true)?;
        let train = Arc::new(all.narrow(0, TRAIN_SPLIT.min(all.len()))?);
        Ok(match augmentation(ctx, flavor)? {
            Some(cfg) => Arc::new(Augmented::new(train, cfg)?) as Arc<dyn Dataset>,
            None => train as Arc<dyn Dataset>,
        })
    });
    r.register(&format!("{prefix}_val"), move |ctx| {
        Ok(Arc::new(val(ctx, flavor)?) as Arc<dyn Dataset>)
    });
    r.register(&format!("{prefix}_val_shifted"), move |ctx| {
        let v = val(ctx, flavor)?;
        let k = ctx.hparams.to_config::<MnistHParams>()?.shift_pixels;
        // The stored pixels move; the border is background (0), normalised like every pixel.
        let shifted = mnist::shift_images(v.inputs(), k, k, 0.0)?;
        Ok(Arc::new(v.with_inputs(shifted)?) as Arc<dyn Dataset>)
    });
    r.register(&format!("{prefix}_test"), move |ctx| {
        Ok(Arc::clone(&full(ctx, flavor, false)?) as Arc<dyn Dataset>)
    });
}

/// Every registered dataset.
pub(crate) fn registry() -> DatasetRegistry {
    let mut r = DatasetRegistry::new();
    r.declare_config::<MnistHParams>()
        .declare_config::<AugmentHParams>();
    register_flavor(&mut r, "mnist", Flavor::Mnist);
    register_flavor(&mut r, "fashion_mnist", Flavor::FashionMnist);
    r.declare_config::<CsvHParams>();
    r.register("csv", |ctx| {
        // Image transforms have no meaning for a table's rows.
        let aug: AugmentHParams = ctx.hparams.to_config()?;
        if ctx.split == Split::Train
            && !aug.no_augment
            && !["auto", "none"].contains(&aug.augment.trim())
        {
            return Err(Error::HParam {
                key: "augment".into(),
                message: format!(
                    "'{}' transforms images; the csv dataset's rows take none (leave augment out)",
                    aug.augment
                ),
            });
        }
        Ok(table::build(ctx)? as Arc<dyn Dataset>)
    });
    r.declare_config::<ImageFolderHParams>();
    r.register("image_folder", |ctx| {
        let data = image_folder::build(ctx)?;
        if ctx.split != Split::Train {
            return Ok(data as Arc<dyn Dataset>);
        }
        let seed = ctx.hparams.to_config::<DataHParams>()?.seed;
        Ok(
            match ctx
                .hparams
                .to_config::<AugmentHParams>()?
                .to_augment("none", seed)?
            {
                Some(cfg) => Arc::new(Augmented::new(data, cfg)?) as Arc<dyn Dataset>,
                None => data as Arc<dyn Dataset>,
            },
        )
    });
    r
}
