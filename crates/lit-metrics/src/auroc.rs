//! One-vs-rest multiclass AUROC, as torchmetrics' `MulticlassAUROC` with exact thresholds.

use candle::{DType, Device, Tensor};

use crate::base::same;
use crate::classification::check_inputs;
use crate::{Average, Error, Metric, Result};

/// Area under the ROC curve of each class against the rest, averaged.
///
/// Scores may be probabilities or logits: a batch with any value outside [0, 1] is softmaxed
/// first, as torchmetrics does. Exact AUROC needs every score, so the state keeps the scores `(N, C)` and targets `(N,)` on the
/// device and `compute` sorts them on the host (the rank statistic, ties counted half, equals the
/// trapezoidal area under the exact ROC curve). A class with no positive or no negative sample
/// scores 0, as in torchmetrics.
#[derive(Debug, Clone)]
pub struct MulticlassAuroc {
    num_classes: usize,
    average: Average,
    preds: Vec<Tensor>,
    target: Vec<Tensor>,
}

impl MulticlassAuroc {
    /// AUROC over `num_classes` classes; `average` is `Macro`, `Weighted` (by support) or `None`.
    pub fn new(num_classes: usize, average: Average) -> Self {
        Self {
            num_classes,
            average,
            preds: Vec::new(),
            target: Vec::new(),
        }
    }
}

/// Replaces `row` with its softmax.
fn softmax_in_place(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// The binary AUROC of `scores` for the positives in `positive`.
fn binary_auroc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over ties.
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return 0.0;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

impl Metric for MulticlassAuroc {
    fn name(&self) -> &str {
        "auroc"
    }

    fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
        check_inputs("MulticlassAUROC", preds, target, self.num_classes)?;
        if preds.rank() != 2 {
            return Err(Error::InvalidInput {
                metric: "MulticlassAUROC",
                message: format!(
                    "needs scores of shape (N, {}), got {:?}",
                    self.num_classes,
                    preds.shape()
                ),
            });
        }
        self.preds.push(preds.detach());
        self.target.push(target.detach());
        Ok(())
    }

    fn compute(&self) -> Result<Tensor> {
        if self.preds.is_empty() {
            return Ok(Tensor::new(f32::NAN, &Device::Cpu)?);
        }
        // As torchmetrics: a batch of scores that are not all probabilities (in [0, 1]) is
        // taken as logits and turned into probabilities with a softmax over the classes.
        let mut preds = Vec::new();
        for batch in &self.preds {
            let mut rows = batch.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            if rows.iter().flatten().any(|v| !(0.0..=1.0).contains(v)) {
                rows.iter_mut().for_each(|row| softmax_in_place(row));
            }
            preds.extend(rows);
        }
        let target = Tensor::cat(&self.target, 0)?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?;
        let mut per_class = Vec::with_capacity(self.num_classes);
        let mut support = Vec::with_capacity(self.num_classes);
        for c in 0..self.num_classes {
            let scores: Vec<f64> = preds.iter().map(|row| row[c]).collect();
            let positive: Vec<bool> = target.iter().map(|&t| t as usize == c).collect();
            support.push(positive.iter().filter(|&&p| p).count() as f64);
            per_class.push(binary_auroc(&scores, &positive));
        }
        let value = match self.average {
            Average::None => {
                return Ok(Tensor::new(
                    per_class.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                    &Device::Cpu,
                )?)
            }
            Average::Weighted => {
                per_class
                    .iter()
                    .zip(&support)
                    .map(|(v, s)| v * s)
                    .sum::<f64>()
                    / support.iter().sum::<f64>()
            }
            Average::Macro | Average::Micro => {
                per_class.iter().sum::<f64>() / per_class.len() as f64
            }
        };
        Ok(Tensor::new(value as f32, &Device::Cpu)?)
    }

    fn reset(&mut self) {
        self.preds.clear();
        self.target.clear();
    }

    fn boxed_clone(&self) -> Box<dyn Metric> {
        Box::new(self.clone())
    }

    fn merge(&mut self, other: &dyn Metric) -> Result<()> {
        let o = same(self, other)?;
        self.preds.extend(o.preds.iter().cloned());
        self.target.extend(o.target.iter().cloned());
        Ok(())
    }

    fn state(&self) -> Vec<Option<Tensor>> {
        let cat = |parts: &[Tensor]| Tensor::cat(parts, 0).ok();
        vec![cat(&self.preds), cat(&self.target)]
    }

    fn set_state(&mut self, state: Vec<Option<Tensor>>) -> Result<()> {
        let [preds, target] = crate::base::parts::<2>("MulticlassAuroc", state)?;
        self.preds = preds.into_iter().collect();
        self.target = target.into_iter().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::binary_auroc;

    #[test]
    fn perfect_inverse_and_tied_rankings() {
        assert_eq!(
            binary_auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            1.0
        );
        assert_eq!(
            binary_auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            0.0
        );
        assert_eq!(binary_auroc(&[0.5, 0.5], &[false, true]), 0.5);
    }
}
