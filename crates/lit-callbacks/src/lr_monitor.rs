//! [`LearningRateMonitor`]: log the learning rate.

use lit_core::{Callback, Result, TrainerState};

/// Logs the optimizer's learning rate as `lr-<Optimizer>` (for example `lr-Adam`), every optimizer
/// step or every epoch, as Lightning's `LearningRateMonitor`.
#[derive(Debug, Clone)]
pub struct LearningRateMonitor {
    /// Log after every optimizer step (`true`) or at every epoch end.
    pub every_step: bool,
    last_step: u64,
}

impl LearningRateMonitor {
    /// Logs every optimizer step when `every_step`, else every epoch.
    pub fn new(every_step: bool) -> Self {
        Self {
            every_step,
            last_step: 0,
        }
    }

    fn log(&mut self, s: &mut TrainerState) {
        if let Some((name, lr)) = s.learning_rate.clone() {
            s.log(format!("lr-{name}"), lr);
        }
    }
}

impl Callback for LearningRateMonitor {
    fn name(&self) -> &str {
        "lr_monitor"
    }

    fn on_train_start(&mut self, s: &mut TrainerState) -> Result<()> {
        self.log(s);
        Ok(())
    }

    fn on_train_batch_end(&mut self, s: &mut TrainerState, _batch_idx: usize) -> Result<()> {
        if self.every_step && s.global_step != self.last_step {
            self.last_step = s.global_step;
            self.log(s);
        }
        Ok(())
    }

    fn on_train_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        if !self.every_step {
            self.log(s);
        }
        Ok(())
    }
}
