//! Multiclass classification metrics built on per-class true/false positive counts.

use candle::{DType, Device, Tensor, D};

use crate::base::{add_into, merge_sum, same};
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
/// `MulticlassStatScores`. Predictions are either scores of shape `(N, C)` or class indices of
/// shape `(N,)`; targets are class indices of shape `(N,)`. With `top_k > 1` a sample counts as a
/// positive for each of its `k` best-scored classes.
#[derive(Debug, Clone)]
pub struct StatScores {
    num_classes: usize,
    top_k: usize,
    tp: Option<Tensor>,
    fp: Option<Tensor>,
    fn_: Option<Tensor>,
}

/// `num / den`, with 0 where `den` is 0 (torchmetrics' `_safe_divide`).
fn safe_divide(num: &Tensor, den: &Tensor) -> Result<Tensor> {
    let zero = den.eq(0.0)?.to_dtype(den.dtype())?;
    Ok(num.div(&(den + zero)?)?)
}

/// One-hot rows `(N, C)` in f32 of the class indices `idx` `(N,)`.
pub(crate) fn one_hot(idx: &Tensor, num_classes: usize) -> Result<Tensor> {
    let classes = Tensor::arange(0u32, num_classes as u32, idx.device())?.unsqueeze(0)?;
    Ok(idx
        .to_dtype(DType::U32)?
        .unsqueeze(1)?
        .broadcast_eq(&classes)?
        .to_dtype(DType::F32)?)
}

/// Checks `preds` `(N, C)` scores or `(N,)` indices against `target` `(N,)`; returns N.
pub(crate) fn check_inputs(
    metric: &'static str,
    preds: &Tensor,
    target: &Tensor,
    num_classes: usize,
) -> Result<usize> {
    let invalid = |message: String| Error::InvalidInput { metric, message };
    let n = target.dims1().map_err(|_| {
        invalid(format!(
            "target must be class indices of shape (N,), got {:?}",
            target.shape()
        ))
    })?;
    match preds.dims() {
        [pn, c] if *c != num_classes => {
            let _ = pn;
            Err(invalid(format!(
                "preds have {c} columns, expected num_classes = {num_classes}"
            )))
        }
        [pn, _] if *pn != n => Err(invalid(format!("preds have {pn} rows but target has {n}"))),
        [_, _] => Ok(n),
        [pn] if *pn == n => Ok(n),
        _ => Err(invalid(format!(
            "preds must be (N, C) scores or (N,) class indices with N = {n}, got {:?}",
            preds.shape()
        ))),
    }
}

impl StatScores {
    /// Empty counts for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            top_k: 1,
            tp: None,
            fp: None,
            fn_: None,
        }
    }

    /// Counts the `k` best-scored classes of each sample as predicted.
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = k.max(1);
        self
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Accumulates one batch.
    pub fn update(&mut self, metric: &'static str, preds: &Tensor, target: &Tensor) -> Result<()> {
        check_inputs(metric, preds, target, self.num_classes)?;
        let p = if preds.rank() == 2 {
            if self.top_k == 1 {
                one_hot(&preds.argmax(D::Minus1)?, self.num_classes)?
            } else {
                let order = preds.arg_sort_last_dim(false)?;
                let k = self.top_k.min(self.num_classes);
                let mut acc = one_hot(&order.narrow(1, 0, 1)?.squeeze(1)?, self.num_classes)?;
                for j in 1..k {
                    acc = (acc + one_hot(&order.narrow(1, j, 1)?.squeeze(1)?, self.num_classes)?)?;
                }
                acc
            }
        } else {
            one_hot(preds, self.num_classes)?
        };
        let t = one_hot(target, self.num_classes)?;
        let tp = (&p * &t)?.sum(0)?;
        let fp = (p.sum(0)? - &tp)?;
        let fn_ = (t.sum(0)? - &tp)?;
        add_into(&mut self.tp, tp)?;
        add_into(&mut self.fp, fp)?;
        add_into(&mut self.fn_, fn_)?;
        Ok(())
    }

    /// The counts `tp`, `fp`, `fn`, as they are (`None` before any update).
    pub fn state(&self) -> Vec<Option<Tensor>> {
        vec![self.tp.clone(), self.fp.clone(), self.fn_.clone()]
    }

    /// Replaces the counts with a [`StatScores::state`].
    pub fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
        [self.tp, self.fp, self.fn_] = crate::base::parts::<3>("StatScores", state)?;
        Ok(())
    }

    /// Adds another instance's counts.
    pub fn merge(&mut self, other: &StatScores) -> Result<()> {
        merge_sum(&mut self.tp, &other.tp)?;
        merge_sum(&mut self.fp, &other.fp)?;
        merge_sum(&mut self.fn_, &other.fn_)
    }

    /// The counts `(tp, fp, fn)`, each `(C,)`.
    pub fn counts(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let get = |t: &Option<Tensor>| -> Result<Tensor> {
            Ok(match t {
                Some(t) => t.clone(),
                None => Tensor::zeros(self.num_classes, DType::F32, &Device::Cpu)?,
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

    /// Recall `tp / (tp + fn)`, reduced with `average` (micro recall is accuracy).
    pub fn recall(&self, average: Average) -> Result<Tensor> {
        let (tp, _, fn_) = self.counts()?;
        self.reduce(average, &tp, &(&tp + fn_)?)
    }

    /// Precision `tp / (tp + fp)`, reduced with `average`.
    pub fn precision(&self, average: Average) -> Result<Tensor> {
        let (tp, fp, _) = self.counts()?;
        self.reduce(average, &tp, &(&tp + fp)?)
    }

    /// F1 `2 tp / (2 tp + fp + fn)`, reduced with `average`.
    pub fn f1(&self, average: Average) -> Result<Tensor> {
        let (tp, fp, fn_) = self.counts()?;
        let tp2 = tp.affine(2.0, 0.0)?;
        self.reduce(average, &tp2, &(&tp2 + fp)?.add(&fn_)?)
    }

    /// Clears all counts.
    pub fn reset(&mut self) {
        self.tp = None;
        self.fp = None;
        self.fn_ = None;
    }
}

macro_rules! stat_metric {
    ($(#[$doc:meta])* $name:ident, $key:literal, $compute:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            stats: StatScores,
            average: Average,
        }

        impl $name {
            /// The metric over `num_classes` classes, reduced with `average`.
            pub fn new(num_classes: usize, average: Average) -> Self {
                Self { stats: StatScores::new(num_classes), average }
            }

            /// Counts a sample as predicted for each of its `k` best-scored classes.
            pub fn with_top_k(mut self, k: usize) -> Self {
                self.stats = self.stats.with_top_k(k);
                self
            }
        }

        impl Metric for $name {
            fn name(&self) -> &str {
                $key
            }
            fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
                self.stats.update(stringify!($name), preds, target)
            }
            fn compute(&self) -> Result<Tensor> {
                self.stats.$compute(self.average)
            }
            fn reset(&mut self) {
                self.stats.reset()
            }
            fn boxed_clone(&self) -> Box<dyn Metric> {
                Box::new(self.clone())
            }
            fn merge(&mut self, other: &dyn Metric) -> Result<()> {
                let o = same(self, other)?;
                self.stats.merge(&o.stats)
            }
            fn state(&self) -> Vec<Option<Tensor>> {
                self.stats.state()
            }
            fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
                self.stats.set_state(state)
            }
        }
    };
}

stat_metric!(
    /// Multiclass accuracy, as torchmetrics' `MulticlassAccuracy`: micro is the fraction of
    /// correct predictions (within the top k), macro the mean per-class recall.
    MulticlassAccuracy, "acc", recall
);
stat_metric!(
    /// Multiclass recall, as torchmetrics' `MulticlassRecall`.
    MulticlassRecall, "recall", recall
);
stat_metric!(
    /// Multiclass precision, as torchmetrics' `MulticlassPrecision`.
    MulticlassPrecision, "precision", precision
);
stat_metric!(
    /// Multiclass F1 score, as torchmetrics' `MulticlassF1Score`.
    MulticlassF1Score, "f1", f1
);

/// The confusion matrix `(C, C)`: rows are targets, columns predictions, as torchmetrics'
/// `MulticlassConfusionMatrix`.
#[derive(Debug, Clone)]
pub struct MulticlassConfusionMatrix {
    num_classes: usize,
    counts: Option<Tensor>,
}

impl MulticlassConfusionMatrix {
    /// An empty matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: None,
        }
    }
}

impl Metric for MulticlassConfusionMatrix {
    fn name(&self) -> &str {
        "confusion_matrix"
    }
    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
        check_inputs("MulticlassConfusionMatrix", preds, target, self.num_classes)?;
        let idx = if preds.rank() == 2 {
            preds.argmax(D::Minus1)?
        } else {
            preds.clone()
        };
        let p = one_hot(&idx, self.num_classes)?;
        let t = one_hot(target, self.num_classes)?;
        add_into(&mut self.counts, t.t()?.matmul(&p)?)
    }
    fn compute(&self) -> Result<Tensor> {
        match &self.counts {
            Some(c) => Ok(c.clone()),
            None => Ok(Tensor::zeros(
                (self.num_classes, self.num_classes),
                DType::F32,
                &Device::Cpu,
            )?),
        }
    }
    fn reset(&mut self) {
        self.counts = None;
    }
    fn boxed_clone(&self) -> Box<dyn Metric> {
        Box::new(self.clone())
    }
    fn merge(&mut self, other: &dyn Metric) -> Result<()> {
        let o = same(self, other)?;
        merge_sum(&mut self.counts, &o.counts)
    }
    fn state(&self) -> Vec<Option<Tensor>> {
        vec![self.counts.clone()]
    }
    fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
        [self.counts] = crate::base::parts::<1>("MulticlassConfusionMatrix", state)?;
        Ok(())
    }
}
