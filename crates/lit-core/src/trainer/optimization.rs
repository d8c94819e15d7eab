//! The optimization step of the fit loop, in one place: accumulate -> reduce (the strategy) ->
//! unscale (the precision) -> clip -> step -> schedule, as Lightning's `Optimization` loop.

use candle::backprop::GradStore;
use candle::{Tensor, Var};
use lit_model::optim::Optimizer;
use lit_model::scheduler::{Interval, SchedulerConfig};

use crate::{GradientClip, Precision, Result, Strategy};

/// The optimizer, its schedule and the gradients accumulated towards the next step.
pub(super) struct OptimizationStep {
    pub(super) optimizer: Box<dyn Optimizer>,
    pub(super) scheduler: Option<SchedulerConfig>,
    accumulated: Option<GradStore>,
    accumulate: usize,
    vars: Vec<Var>,
    /// Buffers the strategy keeps in step across processes after each update.
    buffers: Vec<Var>,
    clip: GradientClip,
}

impl OptimizationStep {
    /// A step over `vars` that sums gradients over `accumulate` batches and clips with `clip`,
    /// then has the strategy synchronise `buffers`.
    pub(super) fn new(
        optimizer: Box<dyn Optimizer>,
        scheduler: Option<SchedulerConfig>,
        (vars, buffers): (Vec<Var>, Vec<Var>),
        accumulate: usize,
        clip: GradientClip,
    ) -> Self {
        Self {
            optimizer,
            scheduler,
            accumulated: None,
            accumulate: accumulate.max(1),
            vars,
            buffers,
            clip,
        }
    }

    /// Backpropagates `loss` (scaled by `1 / accumulate`) and adds its gradients to those waiting.
    pub(super) fn backward(&mut self, loss: &Tensor, precision: &mut dyn Precision) -> Result<()> {
        let grads = if self.accumulate > 1 {
            precision.backward(&loss.affine(1.0 / self.accumulate as f64, 0.0)?)?
        } else {
            precision.backward(loss)?
        };
        match self.accumulated.as_mut() {
            Some(acc) => acc.extend(grads)?,
            None => self.accumulated = Some(grads),
        }
        Ok(())
    }

    /// Whether batch `batch_idx` of `n_batches` ends an accumulation window.
    pub(super) fn is_boundary(&self, batch_idx: usize, n_batches: usize) -> bool {
        (batch_idx + 1).is_multiple_of(self.accumulate) || batch_idx + 1 == n_batches
    }

    /// Whether gradients wait for their step.
    pub(super) fn is_pending(&self) -> bool {
        self.accumulated.is_some()
    }

    /// The step: the strategy reduces the waiting gradients, the precision unscales them (and
    /// may skip the step), they are clipped, the optimizer steps, `global_step` advances and a
    /// step-interval schedule steps (every `frequency`).
    pub(super) fn step(
        &mut self,
        strategy: &dyn Strategy,
        precision: &mut dyn Precision,
        global_step: &mut u64,
    ) -> Result<()> {
        let Some(mut grads) = self.accumulated.take() else {
            return Ok(());
        };
        strategy.reduce_gradients(&mut grads, &self.vars)?;
        // A step the precision skips (non-finite gradients under loss scaling) still counts, and
        // its schedule still steps, as in Lightning; only the update is left out.
        if precision.unscale_gradients(&mut grads, &self.vars)? {
            crate::clip_gradients(&mut grads, &self.vars, self.clip)?;
            self.optimizer.step(&grads)?;
        }
        drop(grads);
        if !self.buffers.is_empty() {
            strategy.sync_buffers(&self.buffers)?;
        }
        *global_step += 1;
        if let Some(sc) = self
            .scheduler
            .as_mut()
            .filter(|s| s.interval == Interval::Step)
        {
            if global_step.is_multiple_of(sc.frequency.max(1) as u64) {
                self.optimizer.set_learning_rate(sc.scheduler.step(None));
            }
        }
        Ok(())
    }
}
