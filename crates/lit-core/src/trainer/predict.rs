//! The predict loop.

use candle::Tensor;
use lit_data::{DataModule, Stage};
use lit_model::{LitModule, RunningStage};

use super::Trainer;
use crate::Result;

impl Trainer {
    /// Runs `predict_step` over the prediction sets; returns each set's outputs concatenated.
    pub fn predict<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<Vec<(String, Tensor)>> {
        let result = (|| {
            self.setup_stage(module, dm, Stage::Predict)?;
            self.start_run(module.hparams())?;
            self.state.stage = Some(RunningStage::Predict);
            self.callbacks(|c, s| c.on_predict_start(s))?;
            let mut out = Vec::new();
            for (idx, named) in dm.predict_dataloaders()?.iter().enumerate() {
                let n = self.config.limit_predict_batches.of(named.loader.len());
                self.state.num_batches = n;
                self.state.dataloader_name = Some(named.name.clone());
                let mut parts = Vec::with_capacity(n);
                for (batch_idx, batch) in named.loader.iter(0).take(n).enumerate() {
                    let batch = self.prepare_batch(batch?)?;
                    self.state.batch_idx = batch_idx;
                    self.state.batch_size = batch.len();
                    parts.push(module.predict_step(&batch, batch_idx)?.detach());
                    self.callbacks(|c, s| c.on_predict_batch_end(s, idx, batch_idx))?;
                }
                if !parts.is_empty() {
                    out.push((named.name.clone(), Tensor::cat(&parts, 0)?));
                }
            }
            self.callbacks(|c, s| c.on_predict_end(s))?;
            dm.teardown(Stage::Predict)?;
            Ok(out)
        })();
        self.finish(result)
    }
}
