//! [`MetricCollection`]: several metrics updated together, keyed with a prefix.

use std::collections::BTreeMap;

use candle::Tensor;

use crate::{Metric, Result};

/// Metrics that see the same inputs, as torchmetrics' `MetricCollection`; `compute` returns them
/// keyed `<prefix><name>` (for example `val_acc`).
pub struct MetricCollection {
    prefix: String,
    metrics: Vec<Box<dyn Metric>>,
}

impl std::fmt::Debug for MetricCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricCollection")
            .field("prefix", &self.prefix)
            .field(
                "metrics",
                &self
                    .metrics
                    .iter()
                    .map(|m| m.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MetricCollection {
    /// A collection whose keys start with `prefix`.
    pub fn new(prefix: impl Into<String>, metrics: Vec<Box<dyn Metric>>) -> Self {
        Self {
            prefix: prefix.into(),
            metrics,
        }
    }

    /// The same metrics, reset, under another prefix (torchmetrics' `clone(prefix=...)`).
    pub fn clone_with_prefix(&self, prefix: impl Into<String>) -> Self {
        let metrics = self
            .metrics
            .iter()
            .map(|m| {
                let mut m = m.boxed_clone();
                m.reset();
                m
            })
            .collect();
        Self {
            prefix: prefix.into(),
            metrics,
        }
    }

    /// Updates every metric with the batch.
    pub fn update(&mut self, preds: &Tensor, target: &Tensor) -> Result<()> {
        self.metrics
            .iter_mut()
            .try_for_each(|m| m.update(preds, target))
    }

    /// Each metric's value on this batch alone, also accumulating it.
    pub fn forward(&mut self, preds: &Tensor, target: &Tensor) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for m in &mut self.metrics {
            out.insert(
                format!("{}{}", self.prefix, m.name()),
                m.forward(preds, target)?,
            );
        }
        Ok(out)
    }

    /// Every metric's value, keyed `<prefix><name>`.
    pub fn compute(&self) -> Result<BTreeMap<String, Tensor>> {
        self.metrics
            .iter()
            .map(|m| Ok((format!("{}{}", self.prefix, m.name()), m.compute()?)))
            .collect()
    }

    /// Resets every metric.
    pub fn reset(&mut self) {
        self.metrics.iter_mut().for_each(|m| m.reset());
    }

    /// Merges another collection's states, metric by metric.
    pub fn merge(&mut self, other: &MetricCollection) -> Result<()> {
        self.metrics
            .iter_mut()
            .zip(&other.metrics)
            .try_for_each(|(m, o)| m.merge(o.as_ref()))
    }
}
