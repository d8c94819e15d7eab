//! The data side's hyperparameters as typed configs: what [`DInterface`](crate::DInterface)
//! reads ([`DataHParams`]) and the training augmentation's keys ([`AugmentHParams`]). Their
//! fields are the keys, their `Default`s the one default of each key; a dataset's own keys are
//! declared the same way with [`DatasetRegistry::declare_config`](crate::DatasetRegistry::declare_config).

use lit_base::hparams::{names, optional_names};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{AugmentConfig, Result, Transform, DEFAULT_SEED};

/// Loader threads when the hyperparameters give no `num_workers` (the app's default too).
pub const DEFAULT_NUM_WORKERS: usize = 1;

/// The keys [`DInterface`](crate::DInterface) and [`DataContext`](crate::DataContext) read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataHParams {
    /// The training set's registered name.
    pub train_dataset: Option<String>,
    /// Validation sets, a list or a comma-separated string of registered names.
    #[serde(deserialize_with = "names")]
    pub val_datasets: Vec<String>,
    /// Test sets, as `val_datasets`.
    #[serde(deserialize_with = "names")]
    pub test_datasets: Vec<String>,
    /// Sets `predict` runs on; unset: the test sets.
    #[serde(deserialize_with = "optional_names")]
    pub predict_datasets: Option<Vec<String>>,
    /// Examples per batch.
    pub batch_size: usize,
    /// Loader threads (0: batches gathered on the training thread).
    pub num_workers: usize,
    /// The seed of the data order (and of the augmentation).
    pub seed: u64,
    /// The folder holding the datasets' files (see [`DataContext`](crate::DataContext)).
    pub data_dir: Option<String>,
}

impl Default for DataHParams {
    fn default() -> Self {
        Self {
            train_dataset: None,
            val_datasets: Vec::new(),
            test_datasets: Vec::new(),
            predict_datasets: None,
            batch_size: 64,
            num_workers: DEFAULT_NUM_WORKERS,
            seed: DEFAULT_SEED,
            data_dir: None,
        }
    }
}

/// The training augmentation's keys (see [`crate::augment`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentHParams {
    /// Comma-separated transforms (`crop`, `flip`, `affine`, `resized_crop`, `none`), or
    /// `auto`: the dataset's own choice.
    pub augment: String,
    /// The probability that each transform applies to an example.
    pub aug_prob: f64,
    /// No augmentation, whatever `augment` says.
    pub no_augment: bool,
    /// `crop`'s padding in pixels.
    pub aug_padding: usize,
    /// `affine`'s largest rotation in degrees.
    pub aug_degrees: f64,
    /// `affine`'s largest translation, as a fraction of the image.
    pub aug_translate: f64,
    /// `resized_crop`'s smallest fraction of the image's area.
    pub aug_scale: f64,
}

impl Default for AugmentHParams {
    fn default() -> Self {
        Self {
            augment: "auto".into(),
            aug_prob: 0.5,
            no_augment: false,
            aug_padding: 2,
            aug_degrees: 10.0,
            aug_translate: 0.1,
            aug_scale: 0.08,
        }
    }
}

impl AugmentHParams {
    /// The augmentation these keys ask for, `auto` read as `auto_list`, seeded by `seed`;
    /// `None` for none.
    pub fn to_augment(&self, auto_list: &str, seed: u64) -> Result<Option<AugmentConfig>> {
        if self.no_augment {
            return Ok(None);
        }
        let list = match self.augment.trim() {
            "auto" => auto_list,
            other => other,
        };
        let transforms = Transform::parse_list(list, self)?;
        if transforms.is_empty() {
            return Ok(None);
        }
        Ok(Some(AugmentConfig {
            transforms,
            prob: self.aug_prob,
            seed,
        }))
    }
}

/// Reads an optional list of numbers given as one number, a list, or comma-separated text
/// (`0.485,0.456,0.406`), as the per-channel `normalize_mean` and `normalize_std` are given.
pub fn numbers<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<f64>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Numbers {
        One(f64),
        List(Vec<f64>),
        Text(String),
    }
    Ok(Some(match Numbers::deserialize(d)? {
        Numbers::One(x) => vec![x],
        Numbers::List(v) => v,
        Numbers::Text(s) => s
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "expected a number or comma-separated numbers, got '{s}' ({e})"
                ))
            })?,
    }))
}

/// `v` given for `n` channels or features (`what`, such as "channel") as one value or one
/// each, checked finite (and above 0 with `positive`), as one value per channel.
pub(crate) fn per_channel(
    key: &str,
    v: &[f64],
    (n, what): (usize, &str),
    positive: bool,
) -> Result<Vec<f64>> {
    let bad = |message: String| crate::Error::HParam {
        key: key.into(),
        message,
    };
    if v.len() != 1 && v.len() != n {
        return Err(bad(format!(
            "expected one value or {n} (one per {what}), got {}",
            v.len()
        )));
    }
    if let Some(x) = v
        .iter()
        .find(|x| !x.is_finite() || (positive && **x <= 0.0))
    {
        let above = if positive { " > 0" } else { "" };
        return Err(bad(format!("expected finite values{above}, got {x}")));
    }
    Ok(if v.len() == 1 {
        vec![v[0]; n]
    } else {
        v.to_vec()
    })
}

/// Refuses the `classes` a run recorded (`given`) when `source` now holds others (`found`), so
/// that a checkpoint's class indices keep their meaning.
pub(crate) fn same_classes(
    given: Option<&[String]>,
    found: &[String],
    source: &std::path::Path,
) -> Result<()> {
    match given {
        Some(given) if given != found => Err(crate::Error::HParam {
            key: "classes".into(),
            message: format!(
                "the run was trained on the classes {} but {} holds {}",
                given.join(", "),
                source.display(),
                found.join(", ")
            ),
        }),
        _ => Ok(()),
    }
}
