//! The evaluation loop (validation, test and the sanity check share it), and `validate` and
//! `test`.

use lit_model::LoggedResults;
use std::collections::BTreeMap;

use lit_data::{DataModule, NamedLoader, Stage};
use lit_model::{LitModule, RunningStage};

use super::Trainer;
use crate::{Error, Limit, Result};

impl Trainer {
    /// Runs the validation or test loop over `loaders`; returns the values logged.
    pub(super) fn evaluate<M: LitModule>(
        &mut self,
        module: &mut M,
        loaders: &[NamedLoader],
        stage: RunningStage,
        limit: Limit,
    ) -> Result<BTreeMap<String, f64>> {
        let test = stage == RunningStage::Test;
        self.state.stage = Some(stage);
        let mut ctx = self
            .strategy
            .step_context(stage, loaders.iter().map(|l| l.name.clone()).collect());
        if test {
            self.callbacks(|c, s| c.on_test_start(s))?;
            self.callbacks(|c, s| c.on_test_epoch_start(s))?;
            module.on_test_epoch_start(&mut ctx)?;
        } else {
            self.callbacks(|c, s| c.on_validation_start(s))?;
            self.callbacks(|c, s| c.on_validation_epoch_start(s))?;
            module.on_validation_epoch_start(&mut ctx)?;
        }
        for (idx, named) in loaders.iter().enumerate() {
            let n = limit.of(named.loader.len());
            self.state.dataloader_name = Some(named.name.clone());
            self.state.num_batches = n;
            for (batch_idx, batch) in named.loader.iter(0).take(n).enumerate() {
                let batch = self.prepare_batch(batch?)?;
                self.state.batch_idx = batch_idx;
                self.state.batch_size = batch.len();
                ctx.begin_batch(idx, batch.len());
                if test {
                    module.test_step(&batch, batch_idx, &mut ctx)?;
                    self.callbacks(|c, s| c.on_test_batch_end(s, idx, batch_idx))?;
                } else {
                    module.validation_step(&batch, batch_idx, &mut ctx)?;
                    self.callbacks(|c, s| c.on_validation_batch_end(s, idx, batch_idx))?;
                }
            }
        }
        self.state.dataloader_name = None;
        if test {
            module.on_test_epoch_end(&mut ctx)?;
        } else {
            module.on_validation_epoch_end(&mut ctx)?;
        }
        let values = ctx.epoch_values()?;
        self.state.host_syncs += ctx.host_syncs();
        if stage != RunningStage::SanityCheck {
            self.note_prog_bar(&ctx, values.keys().cloned());
            self.state.callback_metrics.extend(values.clone());
        }
        if test {
            self.callbacks_ordered(|c, s| c.on_test_epoch_end(s))?;
            self.callbacks_ordered(|c, s| c.on_test_end(s))?;
        } else {
            self.callbacks_ordered(|c, s| c.on_validation_epoch_end(s))?;
            self.callbacks_ordered(|c, s| c.on_validation_end(s))?;
        }
        Ok(values)
    }

    /// Runs one validation epoch; returns the logged values.
    pub fn validate<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<BTreeMap<String, f64>> {
        let result = self.evaluation_stage(module, dm, Stage::Validate);
        self.finish(result)
    }

    /// Runs the test sets once; returns the logged values (`test_acc/<set>`, ...).
    pub fn test<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<BTreeMap<String, f64>> {
        let result = self.evaluation_stage(module, dm, Stage::Test);
        self.finish(result)
    }

    /// The set-up every stage outside fit shares: data and module set-up for `stage`, then the
    /// weights of `ckpt_path` when one was given.
    pub(super) fn setup_stage<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
        stage: Stage,
    ) -> Result<()> {
        self.check_world()?;
        dm.prepare_data()?;
        dm.setup(stage)?;
        module.setup(stage)?;
        if let Some(path) = self.ckpt_path.clone() {
            self.load_weights(&path, module)?;
        }
        Ok(())
    }

    /// `validate` or `test`: set up, run the evaluation loop over the stage's loaders, log.
    fn evaluation_stage<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
        stage: Stage,
    ) -> Result<BTreeMap<String, f64>> {
        self.setup_stage(module, dm, stage)?;
        let (loaders, running, limit) = if stage == Stage::Test {
            let tests = dm.test_dataloaders()?;
            if tests.is_empty() {
                return Err(Error::Config(
                    "test: the data module has no test sets".into(),
                ));
            }
            (
                self.strategy.process_eval_loaders(tests)?,
                RunningStage::Test,
                self.config.limit_test_batches,
            )
        } else {
            let vals = self.strategy.process_eval_loaders(dm.val_dataloaders()?)?;
            (vals, RunningStage::Validate, self.config.limit_val_batches)
        };
        self.start_run(module.hparams())?;
        let values = self.evaluate(module, &loaders, running, limit)?;
        self.log(&values)?;
        self.flush()?;
        dm.teardown(stage)?;
        Ok(values)
    }
}
