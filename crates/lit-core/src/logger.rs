//! The [`Logger`] trait and the built-in [`CsvLogger`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lit_data::HParams;

use crate::{rundir, Error, Result};

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
/// `epoch` and `step` columns and a column per key, added as keys appear (fields quoted where
/// they need it, as Python's `csv` module does).
///
/// Each flush appends the rows logged since the last one; only a key the file's header lacks
/// makes it rewrite the file (atomically), with the new column, as Lightning's `CSVLogger` does.
#[derive(Debug, Default)]
pub struct CsvLogger {
    path: Option<PathBuf>,
    columns: BTreeSet<String>,
    rows: Vec<(usize, u64, BTreeMap<String, f64>)>,
    /// How many of `rows` the file holds.
    written: usize,
    /// The columns of the file's header (empty before the first write).
    header: Vec<String>,
}

impl CsvLogger {
    /// A logger that writes `metrics.csv` in the run directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// `rows` as CSV in the columns of `columns`, with the header row when `header`.
    fn render(
        columns: &[String],
        rows: &[(usize, u64, BTreeMap<String, f64>)],
        header: bool,
    ) -> std::result::Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        if header {
            w.write_record(
                ["epoch", "step"]
                    .into_iter()
                    .chain(columns.iter().map(String::as_str)),
            )?;
        }
        for (epoch, step, values) in rows {
            let cells = columns
                .iter()
                .map(|c| values.get(c).map(f64::to_string).unwrap_or_default());
            w.write_record(
                [epoch.to_string(), step.to_string()]
                    .into_iter()
                    .chain(cells),
            )?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }

    fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
        f.write_all(bytes)?;
        f.sync_data()
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
        Ok(())
    }

    /// Appends the new rows, or rewrites the file (atomically) when a new key adds a column.
    fn flush(&mut self) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if self.written == self.rows.len() {
            return Ok(());
        }
        let columns: Vec<String> = self.columns.iter().cloned().collect();
        let csv_error = |e: csv::Error| Error::Format {
            path: path.clone(),
            message: format!("writing CSV: {e}"),
        };
        if columns == self.header && path.is_file() {
            let bytes =
                Self::render(&columns, &self.rows[self.written..], false).map_err(csv_error)?;
            Self::append(&path, &bytes).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        } else {
            let bytes = Self::render(&columns, &self.rows, true).map_err(csv_error)?;
            rundir::write_atomic(&path, &bytes)?;
            self.header = columns;
        }
        self.written = self.rows.len();
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
