//! The table's targets (classes or values), its seeded split into rows, the standardisation
//! fitted on the training rows, and the datasets themselves.

use candle::{DType, Device, Tensor};

use super::read::Parsed;
use super::{CsvHParams, Kind};
use crate::{DataInfo, Error, Generator, InputMap, Result, TensorDataset};

/// The rows of the training file each split takes, each in file order.
pub(super) struct Rows {
    pub(super) train: Vec<usize>,
    pub(super) val: Vec<usize>,
    pub(super) test: Vec<usize>,
}

/// Cuts `n` rows into test (when `cut_test`), validation (when `cut_val`) and training rows by
/// one seeded permutation.
pub(super) fn rows(
    n: usize,
    h: &CsvHParams,
    cut_val: bool,
    cut_test: bool,
    seed: u64,
) -> Result<Rows> {
    let fraction = |key: &str, v: f64| -> Result<f64> {
        if v.is_finite() && (0.0..1.0).contains(&v) {
            Ok(v)
        } else {
            Err(Error::HParam {
                key: key.into(),
                message: format!("expected a fraction in [0, 1), got {v}"),
            })
        }
    };
    let val = if cut_val {
        fraction("val_split", h.val_split)?
    } else {
        0.0
    };
    let test = if cut_test {
        fraction("test_split", h.test_split)?
    } else {
        0.0
    };
    if val + test >= 1.0 {
        return Err(Error::HParam {
            key: "val_split".into(),
            message: format!(
                "val_split {val} and test_split {test} leave no rows to train on; their sum must \
                 be below 1"
            ),
        });
    }
    let n_test = (n as f64 * test).round() as usize;
    let n_val = (n as f64 * val).round() as usize;
    let perm = Generator::stream(seed, "csv_split", 0).permutation(n);
    let sorted = |s: &[usize]| {
        let mut v = s.to_vec();
        v.sort_unstable();
        v
    };
    Ok(Rows {
        test: sorted(&perm[..n_test]),
        val: sorted(&perm[n_test..(n_test + n_val).min(n)]),
        train: sorted(&perm[(n_test + n_val).min(n)..]),
    })
}

/// The features' standardisation: per-feature mean and standard deviation, or none.
pub(super) struct Scaling(Option<(Vec<f64>, Vec<f64>)>);

impl Scaling {
    /// The keys' statistics, else those of `train`'s `rows` when `standardize` is on.
    pub(super) fn fit(h: &CsvHParams, file: &Parsed, rows: &[usize]) -> Result<Self> {
        let f = file.feature_names.len();
        let given = |key: &str, v: &Option<Vec<f64>>, positive: bool| {
            v.as_deref()
                .map(|v| crate::config::per_channel(key, v, (f, "feature column"), positive))
                .transpose()
        };
        let mean = given("normalize_mean", &h.normalize_mean, false)?;
        let std = given("normalize_std", &h.normalize_std, true)?;
        if mean.is_none() && std.is_none() && !h.standardize {
            return Ok(Self(None));
        }
        let (m, s) = moments(rows.len(), f, |r, c| {
            f64::from(file.features[rows[r] * f + c])
        });
        Ok(Self(Some((mean.unwrap_or(m), std.unwrap_or(s)))))
    }
}

/// The mean and population standard deviation (1 where it is 0) of `n` rows of `f` columns.
fn moments(n: usize, f: usize, x: impl Fn(usize, usize) -> f64) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; f];
    let mut var = vec![0.0; f];
    for c in 0..f {
        mean[c] = (0..n).map(|r| x(r, c)).sum::<f64>() / n.max(1) as f64;
        var[c] = (0..n).map(|r| (x(r, c) - mean[c]).powi(2)).sum::<f64>() / n.max(1) as f64;
    }
    let std = var
        .iter()
        .map(|v| if *v > 0.0 { v.sqrt() } else { 1.0 })
        .collect();
    (mean, std)
}

/// The training file's targets, as classes or values.
pub(super) struct Targets {
    kind: Kind,
    classes: Vec<String>,
}

impl Targets {
    /// The target of `train`: its classes in sorted order (checked against `given`), or values.
    pub(super) fn of(
        train: &Parsed,
        kind: Kind,
        given: Option<&[String]>,
        auto: bool,
    ) -> Result<Self> {
        if kind == Kind::Regression {
            return Ok(Self {
                kind,
                classes: Vec::new(),
            });
        }
        let classes = sorted_labels(&train.targets);
        if auto {
            looks_like_values(train, &classes)?;
        }
        if classes.len() < 2 {
            return Err(Error::Format {
                path: train.path.clone(),
                message: format!(
                    "the target column holds one class ('{}') in all {} rows; classification \
                     needs at least two (or set task=regression for a numeric target)",
                    classes.first().map_or("", String::as_str),
                    train.len()
                ),
            });
        }
        crate::config::same_classes(given, &classes, &train.path)?;
        Ok(Self { kind, classes })
    }

    /// The mean and population standard deviation (1 when 0) of a regression's targets in the
    /// training `rows` of `file` (every value checked); `(0, 1)` for classes.
    pub(super) fn stats(&self, file: &Parsed, rows: &[usize]) -> Result<(f64, f64)> {
        if self.kind == Kind::Classification {
            return Ok((0.0, 1.0));
        }
        let values = rows
            .iter()
            .map(|&i| value_of(file, i).map(f64::from))
            .collect::<Result<Vec<f64>>>()?;
        let (m, s) = moments(values.len(), 1, |r, _| values[r]);
        Ok((m[0], s[0]))
    }

    /// The rows `indices` of `file` as a dataset: features `(N, F)` in f32 (standardised batch
    /// by batch), targets class indices `(N)` or values `(N, 1)`.
    pub(super) fn dataset(
        &self,
        file: &Parsed,
        indices: &[usize],
        scaling: &Scaling,
        stats: (f64, f64),
    ) -> Result<TensorDataset> {
        let f = file.feature_names.len();
        let n = indices.len();
        let mut x = Vec::with_capacity(n * f);
        for &i in indices {
            x.extend_from_slice(&file.features[i * f..(i + 1) * f]);
        }
        let inputs = Tensor::from_vec(x, (n, f), &Device::Cpu)?;
        let targets = match self.kind {
            Kind::Classification => {
                let labels = indices
                    .iter()
                    .map(|&i| self.class_of(file, i))
                    .collect::<Result<Vec<u32>>>()?;
                Tensor::from_vec(labels, n, &Device::Cpu)?
            }
            Kind::Regression => {
                let values = indices
                    .iter()
                    .map(|&i| value_of(file, i))
                    .collect::<Result<Vec<f32>>>()?;
                Tensor::from_vec(values, (n, 1), &Device::Cpu)?
            }
        };
        let mut data = TensorDataset::new(inputs, targets)?.with_info(DataInfo {
            classes: self.classes.clone(),
            normalization: scaling.0.clone(),
            task: self.kind.task(stats),
            ..DataInfo::default()
        });
        if let Some((mean, std)) = &scaling.0 {
            data = data.with_input_map(InputMap::normalize(DType::F32, 1.0, mean, std));
        }
        Ok(data)
    }

    fn class_of(&self, file: &Parsed, i: usize) -> Result<u32> {
        let label = &file.targets[i];
        self.classes
            .iter()
            .position(|c| c == label || same_integer(c, label))
            .map(|c| c as u32)
            .ok_or_else(|| Error::Format {
                path: file.path.clone(),
                message: format!(
                    "line {}: the target '{label}' is not one of the training classes ({})",
                    file.lines[i],
                    self.classes.join(", ")
                ),
            })
    }
}

fn value_of(file: &Parsed, i: usize) -> Result<f32> {
    let v = &file.targets[i];
    v.parse::<f32>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| Error::Format {
            path: file.path.clone(),
            message: format!(
                "line {}: the target '{v}' is not a number; a regression target must be numeric \
                 (or set task=classification)",
                file.lines[i]
            ),
        })
}

/// The most distinct numbers a target left to `task: auto` may hold as classes.
const MAX_AUTO_CLASSES: usize = 50;

/// Refuses to take a numeric target with fractions or many distinct values as classes without
/// being told: it is more likely a value to regress on.
fn looks_like_values(train: &Parsed, classes: &[String]) -> Result<()> {
    let numbers = classes.iter().all(|c| c.parse::<f64>().is_ok());
    let fractions = classes.iter().any(|c| c.parse::<i64>().is_err());
    if numbers && (fractions || classes.len() > MAX_AUTO_CLASSES) {
        return Err(Error::Format {
            path: train.path.clone(),
            message: format!(
                "the target column holds {} distinct numbers{}; set task=regression to predict \
                 the value, or task=classification to take each as a class",
                classes.len(),
                if fractions {
                    ", some with fractions"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(())
}

/// The distinct labels in sorted order: numerically when every label is an integer (so `10`
/// follows `9`), else as text.
fn sorted_labels(labels: &[String]) -> Vec<String> {
    let mut distinct: Vec<String> = labels.to_vec();
    distinct.sort();
    distinct.dedup();
    let ints: Option<Vec<i64>> = distinct.iter().map(|l| l.parse().ok()).collect();
    match ints {
        Some(mut ints) => {
            ints.sort_unstable();
            ints.dedup();
            ints.iter().map(i64::to_string).collect()
        }
        None => distinct,
    }
}

/// Whether two labels are the same integer written differently (`07` and `7`).
fn same_integer(a: &str, b: &str) -> bool {
    matches!((a.parse::<i64>(), b.parse::<i64>()), (Ok(x), Ok(y)) if x == y)
}
