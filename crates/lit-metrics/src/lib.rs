//! torchmetrics-style metrics for candle.
//!
//! A [`Metric`] accumulates state from batches with [`Metric::update`], produces a value from the
//! whole accumulated state with [`Metric::compute`], and starts over with [`Metric::reset`].
//! State lives on the tensors' device: updating never copies to the host, so a metric can be fed
//! from every training or validation step without slowing the loop. Values computed from whole-epoch
//! state are exact, unlike averages of per-batch values.
//!
//! ```
//! # fn main() -> lit_metrics::Result<()> {
//! use candle::{Device, Tensor};
//! use lit_metrics::{Average, Metric, MulticlassAccuracy};
//!
//! let dev = Device::Cpu;
//! let mut acc = MulticlassAccuracy::new(3, Average::Micro);
//! let probs = Tensor::new(&[[0.9f32, 0.05, 0.05], [0.1, 0.8, 0.1]], &dev)?;
//! acc.update(&probs, &Tensor::new(&[0u32, 2], &dev)?)?;
//! assert_eq!(acc.compute()?.to_scalar::<f32>()?, 0.5);
//! # Ok(())
//! # }
//! ```

mod aggregation;
mod auroc;
mod base;
mod classification;
mod collection;
mod regression;
mod sync;

pub use aggregation::{MeanMetric, Reduce, Reduction};
pub use auroc::MulticlassAuroc;
pub use base::Metric;
pub use classification::{
    Average, MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score, MulticlassPrecision,
    MulticlassRecall, StatScores,
};
pub use collection::MetricCollection;
/// The one error type of lit (defined in lit-base), and its result.
pub use lit_base::{Error, Result};
pub use regression::{Regression, RegressionKind};
pub use sync::{sync, AllGather};
