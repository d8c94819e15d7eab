//! Multiclass classification metrics built on per-class true/false positive counts.

use candle::{DType, Device, Tensor, D};

use crate::{Error, Metric, Result};

/// How per-class scores are reduced to one value, as torchmetrics' `average` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    /// Global counts over all samples (for accuracy: correct / total).
    Micro,
    /// The unweighted mean over classes that occur in the targets or predictions.
    Macro,
    /// The mean over classes weighted by their support.
    Weighted,
    /// One value per class.
    None,
}

/// Per-class true positives, false positives and false negatives, accumulated on the device.
///
/// This is the shared state behind accuracy, precision, recall and F1, as torchmetrics'
/// `MulticlassStatScores`. Predictions are either scores of shape `(N, C)` (the arg-max is taken)
/// or class indices of shape `(N,)`; targets are class indices of shape `(N,)`.
#[derive(Debug, Clone)]
pub struct StatScores {
    num_classes: usize,
    tp: Option<Tensor>,
    fp: Option<Tensor>,
    fn_: Option<Tensor>,
}

fn add(slot: &mut Option<Tensor>, value: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(acc) => (acc + value)?,
        None => value,
    });
    Ok(())
}

/// `num / den`, with 0 where `den` is 0 (torchmetrics' `_safe_divide`).
fn safe_divide(num: &Tensor, den: &Tensor) -> Result<Tensor> {
    let zero = den.eq(0.0)?.to_dtype(DType::F32)?;
    Ok(num.div(&(den + zero)?)?)
}

impl StatScores {
    /// Empty counts for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            tp: None,
            fp: None,
            fn_: None,
        }
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Accumulates one batch.
    pub fn update(&mut self, metric: &'static str, preds: &Tensor, target: &Tensor) -> Result<()> {
        let invalid = |message: String| Error::InvalidInput { metric, message };
        let n = target.dims1().map_err(|_| {
            invalid(format!(
                "target must be class indices of shape (N,), got {:?}",
                target.shape()
            ))
        })?;
        let pred_idx = match preds.rank() {
            2 => {
                let (pn, c) = preds.dims2()?;
                if c != self.num_classes {
                    return Err(invalid(format!(
                        "preds have {c} columns, expected num_classes = {}",
                        self.num_classes
                    )));
                }
                if pn != n {
                    return Err(invalid(format!("preds have {pn} rows but target has {n}")));
                }
                preds.argmax(D::Minus1)?
            }
            1 if preds.dim(0)? == n => preds.to_dtype(DType::U32)?,
            _ => {
                return Err(invalid(format!(
                    "preds must be (N, C) scores or (N,) class indices with N = {n}, got {:?}",
                    preds.shape()
                )))
            }
        };
        let dev = preds.device();
        let classes = Tensor::arange(0u32, self.num_classes as u32, dev)?.unsqueeze(0)?;
        let one_hot = |idx: &Tensor| -> Result<Tensor> {
            Ok(idx
                .to_dtype(DType::U32)?
                .unsqueeze(1)?
                .broadcast_eq(&classes)?
                .to_dtype(DType::F32)?)
        };
        let p = one_hot(&pred_idx)?;
        let t = one_hot(target)?;
        let tp = (&p * &t)?.sum(0)?;
        let fp = (p.sum(0)? - &tp)?;
        let fn_ = (t.sum(0)? - &tp)?;
        add(&mut self.tp, tp)?;
        add(&mut self.fp, fp)?;
        add(&mut self.fn_, fn_)?;
        Ok(())
    }

    fn counts(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let zeros = || Tensor::zeros(self.num_classes, DType::F32, &Device::Cpu);
        let get = |t: &Option<Tensor>| -> Result<Tensor> {
            Ok(match t {
                Some(t) => t.clone(),
                None => zeros()?,
            })
        };
        Ok((get(&self.tp)?, get(&self.fp)?, get(&self.fn_)?))
    }

    /// Reduces per-class `num / den` scores with `average`; `micro` divides the summed counts.
    fn reduce(&self, average: Average, num: &Tensor, den: &Tensor) -> Result<Tensor> {
        let (tp, fp, fn_) = self.counts()?;
        match average {
            Average::Micro => safe_divide(&num.sum_all()?, &den.sum_all()?),
            Average::None => safe_divide(num, den),
            Average::Macro | Average::Weighted => {
                let score = safe_divide(num, den)?;
                let weights = if average == Average::Macro {
                    // Classes that appear in neither targets nor predictions do not count.
                    (tp + fp)?.add(&fn_)?.gt(0.0)?.to_dtype(DType::F32)?
                } else {
                    (tp + fn_)?
                };
                safe_divide(&(score * &weights)?.sum_all()?, &weights.sum_all()?)
            }
        }
    }

    /// Recall `tp / (tp + fn)`, reduced with `average`.
    pub fn recall(&self, average: Average) -> Result<Tensor> {
        let (tp, _, fn_) = self.counts()?;
        self.reduce(average, &tp, &(&tp + fn_)?)
    }

    /// Clears all counts.
    pub fn reset(&mut self) {
        self.tp = None;
        self.fp = None;
        self.fn_ = None;
    }
}

/// Multiclass accuracy, as torchmetrics' `MulticlassAccuracy` with `top_k = 1`.
///
/// `Average::Micro` is the fraction of correct predictions; `Average::Macro` the mean per-class
/// recall.
#[derive(Debug, Clone)]
pub struct MulticlassAccuracy {
    stats: StatScores,
    average: Average,
}

impl MulticlassAccuracy {
    /// Accuracy over `num_classes` classes.
    pub fn new(num_classes: usize, average: Average) -> Self {
        Self {
            stats: StatScores::new(num_classes),
            average,
        }
    }
}

impl Metric for MulticlassAccuracy {
    fn name(&self) -> &str {
        "acc"
    }
    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
        self.stats.update("MulticlassAccuracy", preds, target)
    }
    fn compute(&self) -> Result<Tensor> {
        self.stats.recall(self.average)
    }
    fn reset(&mut self) {
        self.stats.reset()
    }
}

/// Multiclass recall, as torchmetrics' `MulticlassRecall`.
#[derive(Debug, Clone)]
pub struct MulticlassRecall {
    stats: StatScores,
    average: Average,
}

impl MulticlassRecall {
    /// Recall over `num_classes` classes.
    pub fn new(num_classes: usize, average: Average) -> Self {
        Self {
            stats: StatScores::new(num_classes),
            average,
        }
    }
}

impl Metric for MulticlassRecall {
    fn name(&self) -> &str {
        "recall"
    }
    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
        self.stats.update("MulticlassRecall", preds, target)
    }
    fn compute(&self) -> Result<Tensor> {
        self.stats.recall(self.average)
    }
    fn reset(&mut self) {
        self.stats.reset()
    }
}
