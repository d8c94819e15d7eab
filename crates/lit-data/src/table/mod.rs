//! `csv`: a table with a header row, one example per row, as burn's `InMemDataset::from_csv`.
//!
//! The training file is `csv_path`; validation reads `val_csv_path` and test `test_csv_path`,
//! or, without them, seeded `val_split` and `test_split` fractions of the training file's rows
//! (the rows left train; the same rows whichever splits a run asks for). `target_column` is
//! predicted from `feature_columns` (default: every other column), which must be numbers.
//!
//! `task` says what the target is: `classification` (labels as text or integers, mapped to
//! class indices in sorted order, numerically when every label is an integer; the classes are
//! the training file's and are recorded), `regression` (a number), or `auto` (the default:
//! regression when the run's `loss` is a regression loss, `mse`, `l1` or `smooth_l1`, else
//! classification, except that a numeric target with fractions or more than 50 distinct values
//! is an error asking which is meant). Features are standardised (`standardize`, default true) with the mean and
//! population standard deviation of the training rows only, as scikit-learn's `StandardScaler`
//! (a constant column is divided by 1), reported so that the run records them as
//! `normalize_mean` and `normalize_std`; given, those keys are used instead.

mod read;
mod split;

use std::path::PathBuf;
use std::sync::Arc;

use lit_base::hparams::optional_names;
use serde::{Deserialize, Serialize};

use crate::{DataContext, DataHParams, Error, Result, Split, Task, TensorDataset};

/// The keys `csv` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvHParams {
    /// The training table.
    pub csv_path: Option<String>,
    /// The validation table; unset: a `val_split` fraction of `csv_path`'s rows.
    pub val_csv_path: Option<String>,
    /// The test table; unset: a `test_split` fraction of `csv_path`'s rows.
    pub test_csv_path: Option<String>,
    /// The column to predict.
    pub target_column: Option<String>,
    /// The columns to predict from, a list or comma-separated; unset: every other column.
    #[serde(deserialize_with = "optional_names")]
    pub feature_columns: Option<Vec<String>>,
    /// `classification`, `regression`, or `auto` (regression when `loss` is a regression loss).
    pub task: String,
    /// The fraction of the training rows that validates when there is no validation file.
    pub val_split: f64,
    /// The fraction of the training rows that tests when there is no test file.
    pub test_split: f64,
    /// Standardise the features with the training rows' mean and standard deviation.
    pub standardize: bool,
    /// The class names in index order, as a run recorded them; when given, the training file's
    /// labels must be these.
    #[serde(deserialize_with = "optional_names")]
    pub classes: Option<Vec<String>>,
    /// The features' means (one value, or one per feature); unset: the training rows'.
    #[serde(deserialize_with = "crate::config::numbers")]
    pub normalize_mean: Option<Vec<f64>>,
    /// The features' standard deviations, as `normalize_mean`.
    #[serde(deserialize_with = "crate::config::numbers")]
    pub normalize_std: Option<Vec<f64>>,
}

impl Default for CsvHParams {
    fn default() -> Self {
        Self {
            csv_path: None,
            val_csv_path: None,
            test_csv_path: None,
            target_column: None,
            feature_columns: None,
            task: "auto".into(),
            val_split: 0.1,
            test_split: 0.2,
            standardize: true,
            classes: None,
            normalize_mean: None,
            normalize_std: None,
        }
    }
}

/// The losses that make `task: auto` a regression.
pub const REGRESSION_LOSSES: [&str; 3] = ["mse", "l1", "smooth_l1"];

/// The run's loss, which decides `task: auto`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LossKey {
    loss: Option<String>,
}

/// The three splits of a table, built once per run.
struct Prepared {
    train: Arc<TensorDataset>,
    val: Option<Arc<TensorDataset>>,
    test: Option<Arc<TensorDataset>>,
}

/// Builds the `csv` dataset for the context's split.
pub fn build(ctx: &DataContext) -> Result<Arc<TensorDataset>> {
    let h: CsvHParams = ctx.hparams.to_config()?;
    let seed = ctx.hparams.to_config::<DataHParams>()?.seed;
    let loss = ctx.hparams.to_config::<LossKey>()?.loss;
    let key = format!("csv:{h:?}:{seed}:{loss:?}");
    let prepared = ctx.cached(&key, || prepare(&h, seed, loss.as_deref()))?;
    let (data, key, why) = match ctx.split {
        Split::Train => (Some(&prepared.train), "", ""),
        Split::Val => (
            prepared.val.as_ref(),
            "val_split",
            "set val_csv_path, or a larger val_split",
        ),
        Split::Test | Split::Predict => (
            prepared.test.as_ref(),
            "test_split",
            "set test_csv_path, or a larger test_split",
        ),
    };
    data.map(Arc::clone).ok_or_else(|| Error::HParam {
        key: key.into(),
        message: format!(
            "the {:?} split of csv has no rows ({key} {} of the training file's rows rounds to \
             none); {why}",
            ctx.split,
            if ctx.split == Split::Val {
                h.val_split
            } else {
                h.test_split
            }
        ),
    })
}

fn path_of(value: &Option<String>, key: &str) -> Result<Option<PathBuf>> {
    match value {
        Some(p) if p.trim().is_empty() => Err(Error::HParam {
            key: key.into(),
            message: "expected the path of a CSV file, got an empty value".into(),
        }),
        other => Ok(other.as_ref().map(PathBuf::from)),
    }
}

fn prepare(h: &CsvHParams, seed: u64, loss: Option<&str>) -> Result<Prepared> {
    let train_path = path_of(&h.csv_path, "csv_path")?.ok_or_else(|| Error::HParam {
        key: "csv_path".into(),
        message: "csv needs csv_path: a CSV file with a header row and one example per row".into(),
    })?;
    let target = match &h.target_column {
        Some(t) => t.clone(),
        None => {
            return Err(Error::HParam {
                key: "target_column".into(),
                message: format!(
                    "csv needs target_column, the column to predict; {} has the columns {}",
                    train_path.display(),
                    read::header(&train_path)?.join(", ")
                ),
            })
        }
    };
    let task = task(h, loss)?;
    let columns = read::Columns {
        target: &target,
        features: h.feature_columns.as_deref(),
        numeric_target: task == Kind::Regression,
    };
    let train = read::read(&train_path, &columns)?;
    // The other files are read for the training file's features, wherever their columns are.
    let same = read::Columns {
        target: &target,
        features: Some(&train.feature_names),
        numeric_target: task == Kind::Regression,
    };
    let other = |value: &Option<String>, key: &str| -> Result<Option<read::Parsed>> {
        path_of(value, key)?
            .map(|p| read::read(&p, &same))
            .transpose()
    };
    let val_file = other(&h.val_csv_path, "val_csv_path")?;
    let test_file = other(&h.test_csv_path, "test_csv_path")?;
    let targets = split::Targets::of(&train, task, h.classes.as_deref(), auto(h))?;
    let rows = split::rows(
        train.len(),
        h,
        val_file.is_none(),
        test_file.is_none(),
        seed,
    )?;
    let scaling = split::Scaling::fit(h, &train, &rows.train)?;
    let target_stats = targets.stats(&train, &rows.train)?;
    let make = |file: &read::Parsed, indices: &[usize]| -> Result<Option<Arc<TensorDataset>>> {
        if indices.is_empty() {
            return Ok(None);
        }
        let data = targets.dataset(file, indices, &scaling, target_stats)?;
        Ok(Some(Arc::new(data)))
    };
    let every = |f: &read::Parsed| (0..f.len()).collect::<Vec<_>>();
    Ok(Prepared {
        train: make(&train, &rows.train)?.ok_or_else(|| {
            Error::Invalid(format!(
                "csv: val_split and test_split leave none of the {} rows of {} to train on",
                train.len(),
                train.path.display()
            ))
        })?,
        val: match &val_file {
            Some(f) => make(f, &every(f))?,
            None => make(&train, &rows.val)?,
        },
        test: match &test_file {
            Some(f) => make(f, &every(f))?,
            None => make(&train, &rows.test)?,
        },
    })
}

/// Whether the target is classes or values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Classification,
    Regression,
}

/// Whether `task` is left to `auto`.
fn auto(h: &CsvHParams) -> bool {
    h.task.trim() == "auto"
}

fn task(h: &CsvHParams, loss: Option<&str>) -> Result<Kind> {
    match h.task.trim() {
        "classification" => Ok(Kind::Classification),
        "regression" => Ok(Kind::Regression),
        "auto" if loss.is_some_and(|l| REGRESSION_LOSSES.contains(&l.trim())) => {
            Ok(Kind::Regression)
        }
        "auto" => Ok(Kind::Classification),
        other => Err(Error::HParam {
            key: "task".into(),
            message: format!("expected classification, regression or auto, got '{other}'"),
        }),
    }
}

impl Kind {
    fn task(self, stats: (f64, f64)) -> Task {
        match self {
            Kind::Classification => Task::Classification,
            Kind::Regression => Task::Regression {
                mean: stats.0,
                std: stats.1,
            },
        }
    }
}
