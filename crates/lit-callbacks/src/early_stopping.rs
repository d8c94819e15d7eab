//! [`EarlyStopping`]: stop when a monitored value stops improving.
// Stopping, and with `verbose` each improvement, is announced to the user.

use lit_core::lit_model::scheduler::Mode;
use lit_core::{Callback, Error, Result, TrainerState};

/// Stops training when `monitor` has not improved by `min_delta` for `patience` checks, as
/// Lightning's `EarlyStopping`. Checked after each training epoch (after its validation).
///
/// With `check_finite` a NaN or infinite value stops at once; `stopping_threshold` stops once the
/// value is good enough, `divergence_threshold` once it is hopeless. With `strict` (the default) a
/// monitored key that was never logged is an error listing the keys that were, raised at the end
/// of the sanity check for validation keys, so a typo fails before the first epoch ends.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    /// The logged key to watch.
    pub monitor: String,
    /// Whether lower or higher is better.
    pub mode: Mode,
    /// Checks without improvement before stopping.
    pub patience: usize,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Stop when the value is NaN or infinite.
    pub check_finite: bool,
    /// Stop once the value is better than this.
    pub stopping_threshold: Option<f64>,
    /// Stop once the value is worse than this.
    pub divergence_threshold: Option<f64>,
    /// Fail when the key was never logged.
    pub strict: bool,
    /// Print each improvement and the reason for stopping.
    pub verbose: bool,
    best: Option<f64>,
    wait: usize,
    stopped_epoch: Option<usize>,
    warned_missing: bool,
    train_key_checked: bool,
}

impl EarlyStopping {
    /// Watches `monitor` in `mode` with Lightning's defaults (patience 3, `check_finite`, strict).
    pub fn new(monitor: impl Into<String>, mode: Mode) -> Self {
        Self {
            monitor: monitor.into(),
            mode,
            patience: 3,
            min_delta: 0.0,
            check_finite: true,
            stopping_threshold: None,
            divergence_threshold: None,
            strict: true,
            verbose: false,
            best: None,
            wait: 0,
            stopped_epoch: None,
            warned_missing: false,
            train_key_checked: false,
        }
    }

    /// Sets the patience.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets the minimum improvement.
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta.abs();
        self
    }

    /// The best value seen and the checks since it improved.
    pub fn best_and_wait(&self) -> (Option<f64>, usize) {
        (self.best, self.wait)
    }

    fn better(&self, a: f64, b: f64) -> bool {
        self.mode.better(a, b)
    }

    fn stop(&mut self, s: &mut TrainerState, reason: String) {
        tracing::info!(target: lit_core::REPORT_TARGET, "early stopping: {reason}");
        self.stopped_epoch = Some(s.epoch());
        s.stop(reason);
    }

    fn check(&mut self, s: &mut TrainerState) -> Result<()> {
        // As Lightning: an epoch that ran no validation (check_val_every_n_epoch) is no check.
        if !s.monitor_is_fresh(&self.monitor) {
            return Ok(());
        }
        let current = match s.monitored(&self.monitor) {
            Ok(v) => v,
            Err(available) if self.strict => {
                return Err(Error::MissingMonitor {
                    who: "EarlyStopping".into(),
                    key: self.monitor.clone(),
                    available,
                })
            }
            Err(available) => {
                if !self.warned_missing {
                    self.warned_missing = true;
                    tracing::warn!(
                        monitor = %self.monitor,
                        available = ?available,
                        "EarlyStopping (not strict): the monitored key was never logged; no check"
                    );
                }
                return Ok(());
            }
        };
        let m = &self.monitor;
        let best = self.best.map_or("none".to_string(), |b| format!("{b:.6}"));
        if self.check_finite && !current.is_finite() {
            self.stop(s, format!("monitored metric {m} = {current} is not finite; previous best value was {best}; stopping (check_finite)"));
        } else if self
            .stopping_threshold
            .is_some_and(|t| self.better(current, t))
        {
            let t = self.stopping_threshold.unwrap_or_default();
            self.stop(
                s,
                format!("stopping threshold reached: {m} = {current:.6} is better than {t}"),
            );
        } else if self
            .divergence_threshold
            .is_some_and(|t| self.better(t, current))
        {
            let t = self.divergence_threshold.unwrap_or_default();
            self.stop(
                s,
                format!("divergence threshold reached: {m} = {current:.6} is worse than {t}"),
            );
        } else {
            let delta = match self.mode {
                Mode::Min => -self.min_delta,
                Mode::Max => self.min_delta,
            };
            let improved = self.best.is_none_or(|b| self.better(current - delta, b));
            if improved {
                if self.verbose {
                    tracing::info!(target: lit_core::REPORT_TARGET, "early stopping: {m} improved to {current:.6}");
                }
                self.best = Some(current);
                self.wait = 0;
            } else {
                self.wait += 1;
                if self.wait >= self.patience {
                    self.stop(
                        s,
                        format!(
                            "{m} did not improve in the last {} checks; best value {best}",
                            self.wait
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Fails at the end of the sanity check when a validation key is monitored but was not logged.
pub(crate) fn check_sanity_keys(who: &str, key: &str, s: &TrainerState) -> Result<()> {
    // A training key is known after the fit's first batch: a misspelt one fails there, not
    // after a whole epoch.
    if key.starts_with("train")
        && !s.train_keys().is_empty()
        && !s.train_keys().iter().any(|k| k == key)
    {
        return Err(Error::MissingMonitor {
            who: who.into(),
            key: key.into(),
            available: s
                .train_keys()
                .iter()
                .chain(s.sanity_keys())
                .cloned()
                .collect(),
        });
    }
    if key.starts_with("val")
        && !s.sanity_keys().is_empty()
        && !s.sanity_keys().iter().any(|k| k == key)
    {
        return Err(Error::MissingMonitor {
            who: who.into(),
            key: key.into(),
            available: s.sanity_keys().to_vec(),
        });
    }
    Ok(())
}

impl Callback for EarlyStopping {
    fn name(&self) -> &str {
        "early_stopping"
    }

    fn state_key(&self) -> String {
        format!(
            "EarlyStopping{{monitor={},mode={:?}}}",
            self.monitor, self.mode
        )
    }

    fn is_monitoring(&self) -> bool {
        true
    }

    fn on_sanity_check_end(&mut self, s: &mut TrainerState) -> Result<()> {
        if self.strict {
            check_sanity_keys("EarlyStopping", &self.monitor, s)?;
        }
        Ok(())
    }

    fn on_train_batch_end(&mut self, s: &mut TrainerState, _batch_idx: usize) -> Result<()> {
        if self.strict && !self.train_key_checked {
            self.train_key_checked = true;
            check_sanity_keys("EarlyStopping", &self.monitor, s)?;
        }
        Ok(())
    }

    fn on_train_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        self.check(s)
    }

    fn state_dict(&self) -> Option<serde_json::Value> {
        Some(
            serde_json::json!({ "best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch, "patience": self.patience }),
        )
    }

    fn load_state_dict(&mut self, state: &serde_json::Value) -> Result<()> {
        self.best = state.get("best").and_then(|v| v.as_f64());
        self.wait = state.get("wait").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        self.stopped_epoch = state
            .get("stopped_epoch")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
        Ok(())
    }
}
