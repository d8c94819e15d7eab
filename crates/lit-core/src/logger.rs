//! The [`Logger`] trait and the built-in [`CsvLogger`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lit_data::HParams;

use crate::{rundir, Result};

/// Receives logged values and writes them somewhere lasting.
pub trait Logger {
    /// A name for messages.
    fn name(&self) -> &str;
    /// The run starts in `log_dir` with `hparams`.
    fn start(&mut self, log_dir: &Path, hparams: &HParams) -> Result<()>;
    /// Values logged at `step` (optimizer steps) during `epoch`.
    fn log_metrics(
        &mut self,
        metrics: &BTreeMap<String, f64>,
        epoch: usize,
        step: u64,
    ) -> Result<()>;
    /// Writes out anything buffered (called at each epoch end).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// The run ended (`success`, `failed` or `interrupted`); flush and close.
    fn finalize(&mut self, status: &str) -> Result<()> {
        let _ = status;
        self.flush()
    }
}

/// Writes `metrics.csv`: one row per logging call (each logging step, each epoch end), with
/// `epoch` and `step` columns and a column per key, added as keys appear.
#[derive(Debug, Default)]
pub struct CsvLogger {
    path: Option<PathBuf>,
    columns: BTreeSet<String>,
    rows: Vec<(usize, u64, BTreeMap<String, f64>)>,
    dirty: bool,
}

impl CsvLogger {
    /// A logger that writes `metrics.csv` in the run directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn render(&self) -> String {
        let mut out = String::from("epoch,step");
        for c in &self.columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        for (epoch, step, values) in &self.rows {
            out.push_str(&format!("{epoch},{step}"));
            for c in &self.columns {
                out.push(',');
                if let Some(v) = values.get(c) {
                    out.push_str(&v.to_string());
                }
            }
            out.push('\n');
        }
        out
    }
}

impl Logger for CsvLogger {
    fn name(&self) -> &str {
        "csv"
    }

    fn start(&mut self, log_dir: &Path, _hparams: &HParams) -> Result<()> {
        self.path = Some(log_dir.join("metrics.csv"));
        Ok(())
    }

    fn log_metrics(
        &mut self,
        metrics: &BTreeMap<String, f64>,
        epoch: usize,
        step: u64,
    ) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        self.columns.extend(metrics.keys().cloned());
        self.rows.push((epoch, step, metrics.clone()));
        self.dirty = true;
        Ok(())
    }

    /// Rewrites the whole file (atomically), since a new key adds a column to every row.
    fn flush(&mut self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        rundir::write_atomic(path, self.render().as_bytes())?;
        self.dirty = false;
        Ok(())
    }
}

impl Drop for CsvLogger {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("metrics.csv: {e}");
        }
    }
}
