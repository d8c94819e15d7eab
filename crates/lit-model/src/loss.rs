//! Losses, as `torch.nn.functional`, mean-reduced.

use candle::{DType, Tensor, D};
use std::sync::LazyLock;

use lit_base::{HParams, Registry};

use crate::{Error, Result};

/// Cross-entropy of `logits` `(N, C)` against class indices `(N,)`, as `F.cross_entropy`: one
/// fused op for f32 logits on the CPU ([`crate::kernels::cross_entropy`]), candle-nn's otherwise.
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 && logits.rank() == 2 {
        let target = match target.dtype() {
            DType::U8 | DType::U32 | DType::I64 => target.clone(),
            _ => target.to_dtype(DType::U32)?,
        };
        return Ok(crate::kernels::cross_entropy(logits, &target)?);
    }
    Ok(candle_nn::loss::cross_entropy(
        logits,
        &target.to_dtype(DType::U32)?,
    )?)
}

/// Cross-entropy with label smoothing `eps`, as `F.cross_entropy(logits, target, label_smoothing=eps)`:
/// `(1 - eps) * nll + eps * mean_c(-log_softmax)`.
pub fn cross_entropy_smoothed(logits: &Tensor, target: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        return cross_entropy(logits, target);
    }
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = nll(&logp, target)?;
    let c = logits.dim(D::Minus1)? as f64;
    let smooth = logp.sum(D::Minus1)?.mean_all()?.affine(-1.0 / c, 0.0)?;
    Ok((nll.affine(1.0 - eps, 0.0)? + smooth.affine(eps, 0.0)?)?)
}

/// Negative log-likelihood of log-probabilities `(N, C)` against class indices, as `F.nll_loss`.
pub fn nll(log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::nll(
        log_probs,
        &target.to_dtype(DType::U32)?,
    )?)
}

/// Mean absolute error, as `F.l1_loss`.
pub fn l1(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((pred - target)?.abs()?.mean_all()?)
}

/// Smooth L1 (Huber-like) loss with `beta`, as `F.smooth_l1_loss`: `0.5 d² / beta` where
/// `|d| < beta`, `|d| - 0.5 beta` elsewhere.
pub fn smooth_l1(pred: &Tensor, target: &Tensor, beta: f64) -> Result<Tensor> {
    let d = (pred - target)?.abs()?;
    let small = d.lt(beta)?;
    let quadratic = d.sqr()?.affine(0.5 / beta, 0.0)?;
    let linear = d.affine(1.0, -0.5 * beta)?;
    Ok(small.where_cond(&quadratic, &linear)?.mean_all()?)
}

/// Binary cross-entropy on logits, as `F.binary_cross_entropy_with_logits`, in the stable form
/// `max(x, 0) - x t + log(1 + exp(-|x|))`.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let t = target.to_dtype(logits.dtype())?;
    let loss = ((logits.relu()? - (logits * &t)?)?
        + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    Ok(loss.mean_all()?)
}

/// Mean squared error, as `F.mse_loss`.
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::mse(pred, target)?)
}

/// Triplet margin loss with the L2 distance, as `F.triplet_margin_loss(a, p, n, margin)`:
/// `mean(max(d(a, p) - d(a, n) + margin, 0))` with `d(x, y) = ||x - y + 1e-6||`.
pub fn triplet_margin(
    anchor: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
    margin: f64,
) -> Result<Tensor> {
    let dist = |x: &Tensor, y: &Tensor| -> Result<Tensor> {
        Ok((x - y)?.affine(1.0, 1e-6)?.sqr()?.sum(D::Minus1)?.sqrt()?)
    };
    let d = (dist(anchor, positive)? - dist(anchor, negative)?)?.affine(1.0, margin)?;
    Ok(d.relu()?.mean_all()?)
}

/// A loss chosen by name for a module that maps inputs to scores.
///
/// For the regression and binary losses, integer class targets are one-hot encoded to the
/// scores' width first, so every loss works with a classifier's `(N, C)` scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Cross-entropy against class indices, with label smoothing.
    CrossEntropy {
        /// Label smoothing in `[0, 1)`.
        label_smoothing: f64,
    },
    /// NLL of `log_softmax(scores)` (the same value as cross-entropy, computed in two steps).
    Nll,
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    L1,
    /// Smooth L1 with `beta`.
    SmoothL1 {
        /// Where the loss turns from quadratic to linear.
        beta: f64,
    },
    /// Binary cross-entropy on logits.
    BceWithLogits,
}

/// Every loss `Loss::from_name` builds, by name: the only list of their names.
pub static LOSSES: LazyLock<Registry<Loss>> = LazyLock::new(|| {
    Registry::new("loss")
        .with(
            "cross_entropy",
            Loss::CrossEntropy {
                label_smoothing: 0.0,
            },
        )
        .with("nll", Loss::Nll)
        .with("mse", Loss::Mse)
        .with("l1", Loss::L1)
        .with("smooth_l1", Loss::SmoothL1 { beta: 1.0 })
        .with("bce_with_logits", Loss::BceWithLogits)
});

/// Every hyperparameter key `Loss::from_hparams` reads, with its default.
pub fn defaults() -> HParams {
    HParams::from_serialize(&LossHParams::default()).expect("plain data serialises")
}

/// The loss's hyperparameters, read from the run's map by name, one default per key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LossHParams {
    /// One of [`LOSSES`].
    pub loss: String,
    /// cross_entropy's label smoothing, in [0, 1).
    pub label_smoothing: f64,
    /// smooth_l1's beta.
    pub smooth_l1_beta: f64,
}

impl Default for LossHParams {
    fn default() -> Self {
        Self {
            loss: "cross_entropy".into(),
            label_smoothing: 0.0,
            smooth_l1_beta: 1.0,
        }
    }
}

impl Loss {
    /// The loss called `name`. `triplet_margin` takes three embeddings rather than scores and
    /// targets, so it is called directly from a custom module's step, not chosen here.
    pub fn from_name(name: &str) -> Result<Self> {
        if name.eq_ignore_ascii_case("triplet_margin") {
            return Err(Error::HParam {
                key: "loss".into(),
                message: "triplet_margin takes (anchor, positive, negative) embeddings; call \
                          lit_model::loss::triplet_margin from your own module's training_step"
                    .into(),
            });
        }
        Ok(*LOSSES.get(name)?)
    }

    /// The loss named by the `loss` hyperparameter (default `cross_entropy`), with
    /// `label_smoothing` (0) and `smooth_l1_beta` (1).
    pub fn from_hparams(hp: &HParams) -> Result<Self> {
        let c: LossHParams = hp.to_config()?;
        Ok(match Self::from_name(&c.loss)? {
            Loss::CrossEntropy { .. } => {
                let ls = c.label_smoothing;
                if !(0.0..1.0).contains(&ls) {
                    return Err(Error::HParam {
                        key: "label_smoothing".into(),
                        message: format!("expected a value in [0, 1), got {ls}"),
                    });
                }
                Loss::CrossEntropy {
                    label_smoothing: ls,
                }
            }
            Loss::SmoothL1 { .. } => Loss::SmoothL1 {
                beta: c.smooth_l1_beta,
            },
            other => other,
        })
    }

    fn dense_target(scores: &Tensor, target: &Tensor) -> Result<Tensor> {
        if target.dtype().is_int() && target.rank() + 1 == scores.rank() {
            let c = scores.dim(D::Minus1)? as u32;
            let classes = Tensor::arange(0u32, c, scores.device())?;
            Ok(target
                .to_dtype(DType::U32)?
                .unsqueeze(D::Minus1)?
                .broadcast_eq(&classes.unsqueeze(0)?)?
                .to_dtype(scores.dtype())?)
        } else {
            Ok(target.to_dtype(scores.dtype())?)
        }
    }

    /// The mean loss of `scores` against `target`.
    pub fn compute(&self, scores: &Tensor, target: &Tensor) -> Result<Tensor> {
        match *self {
            Loss::CrossEntropy { label_smoothing } => {
                cross_entropy_smoothed(scores, target, label_smoothing)
            }
            Loss::Nll => nll(&candle_nn::ops::log_softmax(scores, D::Minus1)?, target),
            Loss::Mse => mse(scores, &Self::dense_target(scores, target)?),
            Loss::L1 => l1(scores, &Self::dense_target(scores, target)?),
            Loss::SmoothL1 { beta } => {
                smooth_l1(scores, &Self::dense_target(scores, target)?, beta)
            }
            Loss::BceWithLogits => bce_with_logits(scores, &Self::dense_target(scores, target)?),
        }
    }
}
