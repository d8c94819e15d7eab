//! The [`Callback`] trait: hooks into the training loop, with Lightning's names.

use lit_model::Batch;

use crate::{Error, Result, TrainerState};

/// Code that runs at fixed points of the loop without being part of the model: progress display,
/// early stopping, checkpointing, learning-rate monitoring.
///
/// Every hook has a no-op default. Within one hook point, callbacks run in the order they were
/// added, before the module's hook; callbacks that say [`Callback::is_monitoring`] run after the
/// module at epoch ends, so they see what it logged (see `lit_core::trainer` for the full order).
#[allow(unused_variables)]
pub trait Callback {
    /// A name for messages.
    fn name(&self) -> &str {
        "callback"
    }

    /// The key under which this callback's state is saved in checkpoints (unique per run).
    fn state_key(&self) -> String {
        self.name().to_string()
    }

    /// The state to save in checkpoints, if any.
    fn state_dict(&self) -> Option<serde_json::Value> {
        None
    }

    /// Restores a state saved by [`Callback::state_dict`].
    fn load_state_dict(&mut self, state: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// Whether this callback reads monitored values (early stopping, checkpoints): such callbacks
    /// run last at epoch ends.
    fn is_monitoring(&self) -> bool {
        false
    }

    /// `fit` starts, after setup and `configure_optimizers`.
    fn on_fit_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// `fit` ends.
    fn on_fit_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// The sanity validation starts.
    fn on_sanity_check_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// The sanity validation ends.
    fn on_sanity_check_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// Training starts (after the sanity check).
    fn on_train_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// Training ends.
    fn on_train_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A training epoch starts.
    fn on_train_epoch_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A training epoch ends (after its validation); `s.epoch_metrics` holds its values.
    fn on_train_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A training batch is about to be stepped.
    fn on_train_batch_start(
        &mut self,
        s: &mut TrainerState,
        batch: &Batch,
        batch_idx: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// A training batch was stepped (after the optimizer step).
    fn on_train_batch_end(&mut self, s: &mut TrainerState, batch_idx: usize) -> Result<()> {
        Ok(())
    }
    /// Validation starts (also during the sanity check).
    fn on_validation_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// Validation ends; validation values are in `s.callback_metrics`.
    fn on_validation_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A validation epoch starts.
    fn on_validation_epoch_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A validation epoch ends.
    fn on_validation_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A validation batch was stepped.
    fn on_validation_batch_end(
        &mut self,
        s: &mut TrainerState,
        dataloader_idx: usize,
        batch_idx: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// Testing starts.
    fn on_test_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// Testing ends; test values are in `s.callback_metrics`.
    fn on_test_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A test epoch starts.
    fn on_test_epoch_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A test epoch ends.
    fn on_test_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A test batch was stepped.
    fn on_test_batch_end(
        &mut self,
        s: &mut TrainerState,
        dataloader_idx: usize,
        batch_idx: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// Prediction starts.
    fn on_predict_start(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// Prediction ends.
    fn on_predict_end(&mut self, s: &mut TrainerState) -> Result<()> {
        Ok(())
    }
    /// A prediction batch was run.
    fn on_predict_batch_end(
        &mut self,
        s: &mut TrainerState,
        dataloader_idx: usize,
        batch_idx: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// The run failed with `error`; clean up (the error is returned afterwards).
    fn on_exception(&mut self, s: &mut TrainerState, error: &Error) {}
}
