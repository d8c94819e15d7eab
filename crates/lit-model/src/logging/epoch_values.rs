//! Values a module logs once per epoch: a metric object, merged over the processes of a
//! data-parallel run before it is computed, and plain values, refused there.

use candle::{DType, Device, Tensor};
use lit_metrics::Metric;

use super::StepContext;
use crate::{Error, Result};

impl StepContext {
    /// Logs a value already on the host for the epoch, for loader `idx`. In a data-parallel
    /// run it would be this process's value alone, so it is refused there: log a metric object
    /// with [`StepContext::log_metric`] (merged over the processes before it is computed), or
    /// per-batch values with [`StepContext::log`] (their epoch means are merged).
    pub fn log_epoch_value(
        &mut self,
        name: &str,
        value: f64,
        idx: usize,
        prog_bar: bool,
    ) -> Result<()> {
        self.refuse_unmerged(name)?;
        self.put_epoch_value(name, value, idx, prog_bar);
        Ok(())
    }

    fn put_epoch_value(&mut self, name: &str, value: f64, idx: usize, prog_bar: bool) {
        let key = self.key_for(name, idx);
        if prog_bar {
            self.prog_bar.insert(key.clone());
        }
        self.epoch_host.insert(key, value);
    }

    fn refuse_unmerged(&self, name: &str) -> Result<()> {
        match &self.collective {
            Some(c) => Err(Error::Invalid(format!(
                "log('{name}') at the epoch's end in a data-parallel run of {} processes would \
                 log this process's value alone: log the metric object with \
                 ctx.log_metric(\"{name}\", &mut metric, ..) (its state is merged over every \
                 process before it is computed), or per-batch values with ctx.log (their epoch \
                 means are merged)",
                c.world_size()
            ))),
            None => Ok(()),
        }
    }

    /// Logs `metric`'s value over the epoch for loader `idx` and resets it, as Lightning does
    /// with a logged torchmetrics object: in a data-parallel run its state is first merged
    /// with every process's (torchmetrics' `sync`), so the value covers the whole data set.
    /// Every process must call this for the same metrics in the same order.
    pub fn log_metric(
        &mut self,
        name: &str,
        metric: &mut dyn Metric,
        idx: usize,
        prog_bar: bool,
    ) -> Result<()> {
        if let Some(c) = self.collective.clone() {
            let device = metric
                .state()
                .into_iter()
                .flatten()
                .next()
                .map_or(Device::Cpu, |t| t.device().clone());
            let gather = |bytes: &[u8]| c.all_gather_bytes(bytes);
            lit_metrics::sync(metric, &device, &gather)?;
        }
        let value = metric.compute()?;
        metric.reset();
        let v = scalar(name, &value)?;
        self.host_syncs += 1;
        self.put_epoch_value(name, v, idx, prog_bar);
        Ok(())
    }

    /// Logs a computed scalar tensor for the epoch for loader `idx` (copies it to the host
    /// once); refused in a data-parallel run as [`StepContext::log_epoch_value`] is.
    pub fn log_epoch_tensor(
        &mut self,
        name: &str,
        value: &Tensor,
        idx: usize,
        prog_bar: bool,
    ) -> Result<()> {
        self.refuse_unmerged(name)?;
        let v = scalar(name, value)?;
        self.host_syncs += 1;
        self.put_epoch_value(name, v, idx, prog_bar);
        Ok(())
    }
}

/// The value of a scalar tensor on the host.
fn scalar(name: &str, value: &Tensor) -> Result<f64> {
    let v = value
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(Error::Invalid(format!(
            "log('{name}'): expected a scalar, got {} values",
            v.len()
        ))),
    }
}
