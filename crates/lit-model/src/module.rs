//! [`LitModule`]: the module interface, Lightning's `LightningModule`.

use candle::Tensor;
use candle_nn::VarMap;
use lit_base::{Batch, HParams, Stage};

use crate::optim::Optimizer;
use crate::scheduler::SchedulerConfig;
use crate::{Result, StepContext};

/// What `configure_optimizers` returns: an optimizer and, optionally, a learning-rate schedule.
pub struct Optimization {
    /// The optimizer over the module's parameters.
    pub optimizer: Box<dyn Optimizer>,
    /// The schedule and when it steps.
    pub scheduler: Option<SchedulerConfig>,
}

impl std::fmt::Debug for Optimization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimization")
            .field("optimizer", &self.optimizer.name())
            .field(
                "scheduler",
                &self.scheduler.as_ref().map(|s| s.scheduler.name()),
            )
            .finish()
    }
}

/// An optimizer without a schedule: `Ok(Adam::new(named_params(&self.varmap), config)?.into())`
/// in `configure_optimizers`.
impl<O: Optimizer + 'static> From<O> for Optimization {
    fn from(optimizer: O) -> Self {
        Self {
            optimizer: Box::new(optimizer),
            scheduler: None,
        }
    }
}

/// A model together with how it trains, validates, tests and predicts.
///
/// The trainer calls these hooks; only `varmap`, `forward`, `training_step` and
/// `configure_optimizers` are required. Steps log through the [`StepContext`]. Hook names are
/// Lightning's, and the trainer calls them in the order documented on `lit_core::Trainer`.
pub trait LitModule {
    /// The module's trainable parameters.
    fn varmap(&self) -> &VarMap;

    /// The forward pass; `train` selects training behaviour (dropout, batch statistics).
    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor>;

    /// The hyperparameters the module was built from (saved with the run).
    fn hparams(&self) -> HParams {
        HParams::new()
    }

    /// Called at the start of `fit`, `validate`, `test` or `predict`.
    fn setup(&mut self, _stage: Stage) -> Result<()> {
        Ok(())
    }

    /// Chooses the loss function (the template's `configure_loss`); called from `setup` by
    /// modules that pick their loss from hyperparameters.
    fn configure_loss(&mut self) -> Result<()> {
        Ok(())
    }

    /// One training step: returns the loss to minimise.
    fn training_step(
        &mut self,
        batch: &Batch,
        batch_idx: usize,
        ctx: &mut StepContext,
    ) -> Result<Tensor>;

    /// Called when a training epoch starts.
    fn on_train_epoch_start(&mut self, _ctx: &mut StepContext) -> Result<()> {
        Ok(())
    }

    /// Called when a training epoch ends, after its validation.
    fn on_train_epoch_end(&mut self, _ctx: &mut StepContext) -> Result<()> {
        Ok(())
    }

    /// One validation step on a batch of loader `ctx.dataloader_idx()`.
    fn validation_step(
        &mut self,
        _batch: &Batch,
        _batch_idx: usize,
        _ctx: &mut StepContext,
    ) -> Result<()> {
        Ok(())
    }

    /// Called before the first validation batch of every loader.
    fn on_validation_epoch_start(&mut self, _ctx: &mut StepContext) -> Result<()> {
        Ok(())
    }

    /// Called after the last batch of the last validation loader.
    fn on_validation_epoch_end(&mut self, _ctx: &mut StepContext) -> Result<()> {
        Ok(())
    }

    /// One test step on a batch of loader `ctx.dataloader_idx()`.
    fn test_step(
        &mut self,
        _batch: &Batch,
        _batch_idx: usize,
        _ctx: &mut StepContext,
    ) -> Result<()> {
        Ok(())
    }

    /// Called before the first test batch.
    fn on_test_epoch_start(&mut self, _ctx: &mut StepContext) -> Result<()> {
        Ok(())
    }

    /// Called after the last batch of the last test loader.
    fn on_test_epoch_end(&mut self, _ctx: &mut StepContext) -> Result<()> {
        Ok(())
    }

    /// Predictions for a batch; the forward pass in evaluation mode unless overridden.
    fn predict_step(&mut self, batch: &Batch, _batch_idx: usize) -> Result<Tensor> {
        self.forward(&batch.input, false)
    }

    /// The optimizer and optional schedule.
    fn configure_optimizers(&mut self) -> Result<Optimization>;
}
