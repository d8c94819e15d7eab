//! What guards a fit against losing work or saving garbage: the partial epoch's values and
//! `last` when a signal or limit stops it, and the checks that refuse non-finite losses and
//! weights.

use candle::{DType, Tensor};
use lit_model::LoggedResults;
use lit_model::StepContext;

use super::fit::FitRun;
use super::Trainer;
use crate::{Error, Result};

impl Trainer {
    /// [`Trainer::service`] with the fit's optimizer and schedule, and (`with_ctx`) the
    /// epoch's logged sums for a mid-epoch checkpoint.
    pub(super) fn service_run(&mut self, run: &mut FitRun, with_ctx: bool) -> Result<()> {
        let ctx = with_ctx.then_some(&mut run.ctx);
        self.service(run.opt.optimizer.as_ref(), run.opt.scheduler.as_ref(), ctx)
    }

    /// The training values of an epoch stopped before its last batch (`max_steps`, `max_time`,
    /// a signal), as Lightning logs them: the means over the batches run so far. The epoch stays
    /// open (no validation, no history entry); a resumed run logs its whole means again.
    pub(super) fn log_partial_epoch(&mut self, ctx: &mut StepContext) -> Result<()> {
        let values = ctx.epoch_values()?;
        self.state.host_syncs = ctx.host_syncs();
        self.log(&values)
    }

    /// After a signal, `last` exists to resume from: written here when no callback wrote a
    /// checkpoint at this point of the run (a run without `ModelCheckpoint`, or with
    /// `save_last` off). In a data-parallel run rank 0's view decides for all.
    pub(super) fn checkpoint_on_signal(&mut self, run: &mut FitRun) -> Result<()> {
        if self.state.signal.is_none() {
            return Ok(());
        }
        let Some(dir) = self.state.log_dir.clone() else {
            return Ok(());
        };
        let missing = self.written_at != Some(self.state.resume_point);
        if !self.rank0_writes(missing)? {
            return Ok(());
        }
        self.state
            .request_checkpoint(crate::checkpoint::CheckpointRequest {
                path: dir.join("checkpoints").join("last.safetensors"),
                weights_only: false,
                monitor: None,
                higher_is_better: false,
                remove: Vec::new(),
            });
        self.service_run(run, true)?;
        self.flush()
    }

    /// Fails on a NaN or infinite parameter or buffer, naming it, the epoch and the step (the
    /// loss can stay finite for a while on weights that are not, and a checkpoint must never hold
    /// them). Checked with the loss at logged steps and before every checkpoint is written.
    pub(super) fn check_weights(&self) -> Result<()> {
        let Some(varmap) = &self.state.varmap else {
            return Ok(());
        };
        let data = varmap.data().lock().expect("varmap lock poisoned");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        // x - x is 0 for finite x and NaN for NaN and infinities: one scalar a tensor, one copy.
        let sums = names
            .iter()
            .filter(|n| data[**n].dtype().is_float())
            .map(|n| {
                let t = data[*n].as_tensor();
                Ok((*n, t.broadcast_sub(t)?.sum_all()?.to_dtype(DType::F32)?))
            })
            .collect::<Result<Vec<_>>>()?;
        if sums.is_empty() {
            return Ok(());
        }
        let scalars: Vec<Tensor> = sums.iter().map(|(_, s)| s.clone()).collect();
        let values = Tensor::stack(&scalars, 0)?.to_vec1::<f32>()?;
        let Some(i) = values.iter().position(|v| !v.is_finite()) else {
            return Ok(());
        };
        let hint = match self.precision.name() {
            "16-true" => "; 16-true keeps the weights in float16, which holds nothing above \
                          65504 and loses small updates (Adam's eps 1e-8 is 0 in it): use \
                          bf16-true or 16-mixed"
                .to_string(),
            _ => String::new(),
        };
        Err(Error::NonFiniteWeights {
            name: sums[i].0.clone(),
            epoch: self.state.epoch,
            step: self.state.global_step,
            hint,
        })
    }

    /// Fails on a NaN or infinite training loss, naming the epoch and step.
    pub(super) fn check_finite(&self, loss: f64) -> Result<()> {
        if loss.is_finite() {
            Ok(())
        } else {
            // Right after resuming, the checkpoint's weights are the cause, not the settings.
            let advice = match &self.resumed_from {
                Some((path, step))
                    if self.state.global_step <= step + self.config.log_every_n_steps =>
                {
                    format!(
                        "the run resumed from {} at step {step}, whose weights give this loss from \
                         the first steps: the checkpoint had diverged (resume from an earlier one)",
                        path.display()
                    )
                }
                _ => "lower the learning rate or check the data".into(),
            };
            Err(Error::NonFiniteLoss {
                advice,
                value: loss,
                epoch: self.state.epoch,
                step: self.state.global_step,
            })
        }
    }
}
