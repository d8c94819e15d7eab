//! Range checks of the merged options that clap cannot express (a config file's values too).

use anyhow::bail;

use crate::cli::RunArgs;

/// The largest batch: beyond it one batch of 28 x 28 floats alone would take over 50 GB.
const MAX_BATCH_SIZE: usize = 1 << 24;

/// The most loader threads: each holds batches in flight, and more than this cannot run at once
/// on any machine lit targets.
const MAX_WORKERS: usize = 256;

impl RunArgs {
    /// Range checks clap cannot express, on the merged values (a config file's too).
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let floats = [
            ("lr", Some(self.lr)),
            ("momentum", Some(self.momentum)),
            ("weight_decay", self.weight_decay),
            ("lr_decay_rate", self.lr_decay_rate),
            ("lr_decay_min_lr", Some(self.lr_decay_min_lr)),
            ("label_smoothing", Some(self.label_smoothing)),
            ("gradient_clip_val", self.gradient_clip_val),
            ("min_delta", Some(self.min_delta)),
            ("stopping_threshold", self.stopping_threshold),
            ("divergence_threshold", self.divergence_threshold),
        ];
        for (key, value) in floats {
            if let Some(v) = value.filter(|v| !v.is_finite()) {
                bail!("hyperparameter '{key}': expected a finite number, got {v}");
            }
        }
        let non_negative = [
            ("lr", Some(self.lr)),
            ("momentum", Some(self.momentum)),
            ("weight_decay", self.weight_decay),
            ("lr_decay_min_lr", Some(self.lr_decay_min_lr)),
            ("min_delta", Some(self.min_delta)),
        ];
        for (key, value) in non_negative {
            if let Some(v) = value.filter(|v| *v < 0.0) {
                bail!("hyperparameter '{key}': expected a value >= 0, got {v}");
            }
        }
        if !(0.0..=1.0).contains(&self.aug_prob) {
            bail!(
                "hyperparameter 'aug_prob': expected a probability in [0, 1], got {}",
                self.aug_prob
            );
        }
        if let Some(v) = self.lr_decay_rate.filter(|v| *v <= 0.0) {
            bail!("hyperparameter 'lr_decay_rate': expected a factor > 0, got {v}");
        }
        if let Some(v) = self.gradient_clip_val.filter(|v| *v <= 0.0) {
            bail!("hyperparameter 'gradient_clip_val': expected a value > 0, got {v}");
        }
        if self.save_top_k < -1 {
            bail!(
                "hyperparameter 'save_top_k': expected -1 (keep all), 0 (none) or a positive count, got {}",
                self.save_top_k
            );
        }
        // One output is a regression's; classes need two.
        let classifying = self
            .metric
            .split(',')
            .map(str::trim)
            .find(|m| !lit_model::REGRESSION_METRIC_NAMES.contains(m));
        match (self.num_classes, classifying) {
            (0, _) => bail!("hyperparameter 'num_classes': expected at least 1, got 0"),
            (1, Some(m)) => bail!(
                "hyperparameter 'num_classes': the metric {m} counts classes, which needs at \
                 least 2, got 1 (one output is a regression's)"
            ),
            _ => {}
        }
        if self.batch_size == 0 {
            bail!("hyperparameter 'batch_size': expected at least 1, got 0");
        }
        if self.batch_size > MAX_BATCH_SIZE {
            bail!(
                "hyperparameter 'batch_size': expected at most {MAX_BATCH_SIZE}, got {}",
                self.batch_size
            );
        }
        if self.num_workers > MAX_WORKERS {
            bail!(
                "hyperparameter 'num_workers': expected at most {MAX_WORKERS} loader threads \
                 (this machine has {} cores), got {}",
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                self.num_workers
            );
        }
        Ok(())
    }
}
