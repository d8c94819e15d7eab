//! [`LearningRateMonitor`]: log the learning rate.

use lit_core::{Callback, Result, TrainerState};

/// Logs the optimizer's learning rate as `lr-<Optimizer>` (for example `lr-Adam`), as Lightning's
/// `LearningRateMonitor`: the rate each epoch runs at, at the epoch's start, or with `every_step`
/// the rate each optimizer step uses, at the start of its first batch.
#[derive(Debug, Clone)]
pub struct LearningRateMonitor {
    /// Log every optimizer step (`true`) or every epoch.
    pub every_step: bool,
    last_step: Option<u64>,
}

impl LearningRateMonitor {
    /// Logs every optimizer step when `every_step`, else every epoch.
    pub fn new(every_step: bool) -> Self {
        Self {
            every_step,
            last_step: None,
        }
    }

    fn log(&mut self, s: &mut TrainerState) {
        if let Some((key, lr)) = s
            .learning_rate()
            .map(|(name, lr)| (format!("lr-{name}"), lr))
        {
            s.log(key, lr);
        }
    }
}

impl Callback for LearningRateMonitor {
    fn name(&self) -> &str {
        "lr_monitor"
    }

    fn on_train_epoch_start(&mut self, s: &mut TrainerState) -> Result<()> {
        if !self.every_step {
            self.log(s);
        }
        Ok(())
    }

    fn on_train_batch_start(
        &mut self,
        s: &mut TrainerState,
        _batch: &lit_core::lit_data::Batch,
        _batch_idx: usize,
    ) -> Result<()> {
        if self.every_step && self.last_step != Some(s.global_step()) {
            self.last_step = Some(s.global_step());
            self.log(s);
        }
        Ok(())
    }
}
