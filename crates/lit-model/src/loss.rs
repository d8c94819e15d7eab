//! Losses, as `torch.nn.functional`, mean-reduced.

use candle::{DType, Tensor, D};
use lit_data::HParams;

use crate::{Error, Result};

/// Cross-entropy of `logits` `(N, C)` against class indices `(N,)`, as `F.cross_entropy`.
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(
        logits,
        &target.to_dtype(DType::U32)?,
    )?)
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
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Cross-entropy against class indices.
    CrossEntropy,
    /// MSE; integer class targets are one-hot encoded to the scores' width first.
    Mse,
}

/// The loss names `Loss::from_name` accepts.
pub const LOSSES: [&str; 2] = ["cross_entropy", "mse"];

impl Loss {
    /// The loss called `name`. `triplet_margin` takes three embeddings rather than scores and
    /// targets, so it is called directly from a custom module's step, not chosen here.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_lowercase().as_str() {
            "cross_entropy" | "ce" => Ok(Loss::CrossEntropy),
            "mse" => Ok(Loss::Mse),
            "triplet_margin" => Err(Error::HParam {
                key: "loss".into(),
                message: "triplet_margin takes (anchor, positive, negative) embeddings; call \
                          lit_model::loss::triplet_margin from your own module's training_step"
                    .into(),
            }),
            other => Err(Error::UnknownName {
                kind: "loss",
                name: other.into(),
                known: LOSSES.to_vec(),
            }),
        }
    }

    /// The loss named by the `loss` hyperparameter (default `cross_entropy`).
    pub fn from_hparams(hp: &HParams) -> Result<Self> {
        Self::from_name(&hp.get_or::<String>("loss", "cross_entropy".into())?)
    }

    /// The mean loss of `scores` against `target`.
    pub fn compute(&self, scores: &Tensor, target: &Tensor) -> Result<Tensor> {
        match self {
            Loss::CrossEntropy => cross_entropy(scores, target),
            Loss::Mse if target.dtype().is_int() && target.rank() + 1 == scores.rank() => {
                let c = scores.dim(D::Minus1)? as u32;
                let classes = Tensor::arange(0u32, c, scores.device())?;
                let one_hot = target
                    .to_dtype(DType::U32)?
                    .unsqueeze(D::Minus1)?
                    .broadcast_eq(&classes.unsqueeze(0)?)?
                    .to_dtype(scores.dtype())?;
                mse(scores, &one_hot)
            }
            Loss::Mse => mse(scores, target),
        }
    }
}
