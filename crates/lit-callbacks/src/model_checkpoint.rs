//! [`ModelCheckpoint`]: keep the best checkpoints by a monitored value, and the last one.
// The best checkpoint is reported to the user at the end of fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lit_core::checkpoint::CheckpointRequest;
use lit_core::lit_model::scheduler::Mode;
use lit_core::{Callback, Error, Result, TrainerState};

use crate::early_stopping::check_sanity_keys;

/// Saves checkpoints during fit, as Lightning's `ModelCheckpoint`.
///
/// Files are safetensors written atomically in `dirpath` (default `<run dir>/checkpoints`) and
/// named by `filename`, a template such as `best_{epoch}_{val_acc/mnist_val:.4f}` that renders as
/// `best_epoch=3_val_acc_mnist_val=0.9868.safetensors`: each `{key}` becomes `key=value`, and a `/`
/// in a key becomes `_`, so metric names never create folders. With a `monitor`, the `save_top_k`
/// best files are kept (older ones are deleted when displaced; -1 keeps all, 0 none); without one,
/// the latest. `save_last` also keeps `last.safetensors`. Checks run every `every_n_epochs` epochs
/// and, if set, every `every_n_train_steps` optimizer steps.
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    /// Where files go; `None` is `<run dir>/checkpoints`.
    pub dirpath: Option<PathBuf>,
    /// The file name template, without extension.
    pub filename: Option<String>,
    /// The logged key that ranks checkpoints.
    pub monitor: Option<String>,
    /// Whether lower or higher is better.
    pub mode: Mode,
    /// How many of the best to keep: -1 all, 0 none.
    pub save_top_k: i64,
    /// Also keep `last.safetensors`.
    pub save_last: bool,
    /// Check every this many epochs (0: never at epoch ends).
    pub every_n_epochs: usize,
    /// Check every this many optimizer steps (0: never within epochs).
    pub every_n_train_steps: u64,
    /// Save weights only (no optimizer or loop state: not resumable).
    pub save_weights_only: bool,
    /// Fail when the monitored key was never logged.
    pub strict: bool,
    kept: Vec<(f64, PathBuf)>,
    latest: Option<PathBuf>,
    last_step_checked: u64,
    /// The folder of a restored state, checked against this run's at fit start.
    restored_dir: Option<PathBuf>,
    train_key_checked: bool,
}

impl Default for ModelCheckpoint {
    fn default() -> Self {
        Self {
            dirpath: None,
            filename: None,
            monitor: None,
            mode: Mode::Min,
            save_top_k: 1,
            save_last: false,
            every_n_epochs: 1,
            every_n_train_steps: 0,
            save_weights_only: false,
            strict: true,
            kept: Vec::new(),
            latest: None,
            last_step_checked: 0,
            restored_dir: None,
            train_key_checked: false,
        }
    }
}

/// Checks that a filename template names a file in the checkpoint folder: no folder parts, no
/// `.` or `..`, not empty.
pub fn check_filename(template: &str) -> Result<()> {
    // The text outside `{key}` fields: keys may hold `/`, which rendering replaces.
    let mut literal = String::new();
    let mut depth = 0usize;
    for c in template.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => literal.push(c),
            _ => {}
        }
    }
    let plain = !template.trim().is_empty()
        && !literal.contains(['/', '\\', '\0'])
        && template != "."
        && template != "..";
    if plain {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "checkpoint filename '{template}': expected a file name such as \
             best-{{epoch}}-{{val_acc:.4f}}, without folders (checkpoints go in the run's \
             checkpoints/ folder)"
        )))
    }
}

/// The `{key}` names of a filename template (without format specs).
fn template_keys(template: &str) -> Vec<String> {
    template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}'))
        .map(|(inner, _)| inner.split_once(':').map_or(inner, |(k, _)| k).to_string())
        .filter(|k| k != "epoch" && k != "step")
        .collect()
}

/// Renders a filename template with `values` (plus `epoch` and `step`).
pub fn render_filename(
    template: &str,
    values: &BTreeMap<String, f64>,
    epoch: usize,
    step: u64,
) -> Result<String> {
    check_filename(template)?;
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or_else(|| {
            Error::Config(format!("filename template '{template}': unclosed '{{'"))
        })? + open;
        let inner = &rest[open + 1..close];
        let (key, spec) = inner.split_once(':').unwrap_or((inner, ""));
        let value = match key {
            "epoch" => epoch as f64,
            "step" => step as f64,
            // A value logged per step and per epoch is named by its plain key too (its epoch
            // value), as monitors read it.
            k => *values
                .get(k)
                .or_else(|| values.get(&format!("{k}_epoch")))
                .ok_or_else(|| Error::MissingMonitor {
                    who: format!("ModelCheckpoint filename '{template}'"),
                    key: k.to_string(),
                    available: values.keys().cloned().collect(),
                })?,
        };
        // Python's format specs as Lightning takes them: `.4f` (decimals), `02d` / `03` (an
        // integer zero-padded to a width).
        let decimals = spec
            .strip_prefix('.')
            .map(|d| d.trim_end_matches('f'))
            .and_then(|d| d.parse::<usize>().ok());
        let width = spec
            .strip_prefix('0')
            .map(|w| w.trim_end_matches('d'))
            .and_then(|w| w.parse::<usize>().ok());
        let shown = match (key, decimals, width) {
            (_, _, Some(w)) => format!("{:0w$}", value.round() as i64),
            ("epoch" | "step", _, _) => format!("{}", value as u64),
            (_, Some(d), _) => format!("{value:.d$}"),
            (_, None, None) => format!("{value}"),
        };
        out.push_str(&format!("{}={shown}", key.replace(['/', '\\'], "_")));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ModelCheckpoint {
    /// Keeps the `save_top_k` best by `monitor` in `mode`.
    pub fn monitored(monitor: impl Into<String>, mode: Mode) -> Self {
        Self {
            monitor: Some(monitor.into()),
            mode,
            ..Default::default()
        }
    }

    /// The best checkpoint kept and its value.
    pub fn best(&self) -> Option<(&Path, f64)> {
        self.kept.first().map(|(s, p)| (p.as_path(), *s))
    }

    fn better(&self, a: f64, b: f64) -> bool {
        self.mode.better(a, b)
    }

    fn dir(&self, s: &TrainerState) -> Option<PathBuf> {
        self.dirpath
            .clone()
            .or_else(|| s.log_dir().as_ref().map(|d| d.join("checkpoints")))
    }

    fn request(
        &self,
        s: &mut TrainerState,
        path: PathBuf,
        monitor: Option<(String, f64)>,
        remove: Vec<PathBuf>,
    ) {
        s.request_checkpoint(CheckpointRequest {
            path,
            weights_only: self.save_weights_only,
            monitor,
            higher_is_better: self.mode == Mode::Max,
            remove,
        });
    }

    fn save(&mut self, s: &mut TrainerState, at_epoch_end: bool) -> Result<()> {
        let Some(dir) = self.dir(s) else {
            return Ok(());
        };
        let score = match &self.monitor {
            None => None,
            // An epoch without validation (check_val_every_n_epoch) has no fresh value to rank.
            Some(key) if at_epoch_end && !s.monitor_is_fresh(key) => None,
            Some(key) => match s.monitored(key) {
                Ok(v) => Some(v),
                Err(available) if self.strict && at_epoch_end => {
                    return Err(Error::MissingMonitor {
                        who: "ModelCheckpoint".into(),
                        key: key.clone(),
                        available,
                    })
                }
                Err(_) => None,
            },
        };
        if self.save_top_k != 0 && (self.monitor.is_none() || score.is_some()) {
            let default = match &self.monitor {
                Some(m) => format!("{{epoch}}-{{step}}-{{{m}:.4f}}"),
                None => "{epoch}-{step}".to_string(),
            };
            let template = self.filename.clone().unwrap_or(default);
            let epoch = if at_epoch_end {
                s.epoch()
            } else {
                s.resume_point().0
            };
            let name = render_filename(&template, s.callback_metrics(), epoch, s.global_step())?;
            let mut path = dir.join(format!("{name}.safetensors"));
            let mut v = 1;
            while self.kept.iter().any(|(_, p)| p == &path) || self.latest.as_ref() == Some(&path) {
                path = dir.join(format!("{name}-v{v}.safetensors"));
                v += 1;
            }
            match (score, &self.monitor) {
                (Some(score), Some(key)) => {
                    let k = self.save_top_k;
                    let worst_is_beaten =
                        self.kept.last().is_none_or(|(w, _)| self.better(score, *w));
                    if k < 0 || (self.kept.len() as i64) < k || worst_is_beaten {
                        self.kept.push((score, path.clone()));
                        let mode = self.mode;
                        self.kept.sort_by(|a, b| match mode {
                            Mode::Min => a.0.total_cmp(&b.0),
                            Mode::Max => b.0.total_cmp(&a.0),
                        });
                        let mut remove = Vec::new();
                        while k >= 0 && self.kept.len() as i64 > k {
                            if let Some((_, p)) = self.kept.pop() {
                                remove.push(p);
                            }
                        }
                        self.request(s, path, Some((key.clone(), score)), remove);
                    }
                }
                _ => {
                    // No monitor: keep the latest `save_top_k` (1 by default), or all with -1.
                    let remove = if self.save_top_k > 0 {
                        self.latest.take().into_iter().collect()
                    } else {
                        Vec::new()
                    };
                    self.latest = Some(path.clone());
                    self.request(s, path, None, remove);
                }
            }
            if let Some((p, v)) = self.best() {
                s.set_best_model(p, v);
            }
        }
        if self.save_last {
            self.request(
                s,
                dir.join("last.safetensors"),
                self.monitor.clone().zip(score),
                Vec::new(),
            );
        }
        Ok(())
    }
}

impl Callback for ModelCheckpoint {
    fn name(&self) -> &str {
        "model_checkpoint"
    }

    fn state_key(&self) -> String {
        format!(
            "ModelCheckpoint{{monitor={:?},mode={:?}}}",
            self.monitor, self.mode
        )
    }

    fn is_monitoring(&self) -> bool {
        true
    }

    fn on_fit_start(&mut self, s: &mut TrainerState) -> Result<()> {
        if let Some(filename) = &self.filename {
            check_filename(filename)?;
        }
        // As Lightning: a state restored from another folder (a resumed run writes a new version
        // directory) is not this run's to rank or delete; its files stay where they are.
        if let Some(old) = self.restored_dir.take() {
            if self.dir(s).is_some_and(|d| d != old) {
                tracing::info!(from = %old.display(), "resumed in a new folder: the earlier run's checkpoints are kept and not ranked");
                self.kept.clear();
                self.latest = None;
            } else {
                // The same folder (a fixed dirpath): the restored top-k is this callback's to
                // prune, as in Lightning.
                let files = self
                    .kept
                    .iter()
                    .map(|(_, p)| p.clone())
                    .chain(self.latest.clone());
                s.adopt_checkpoints(files.collect::<Vec<_>>());
            }
        }
        Ok(())
    }

    fn on_sanity_check_end(&mut self, s: &mut TrainerState) -> Result<()> {
        if let Some(key) = self.monitor.as_ref().filter(|_| self.strict) {
            check_sanity_keys("ModelCheckpoint", key, s)?;
        }
        // The filename's own keys too, so a typo fails now rather than at the first save.
        if let Some(template) = &self.filename {
            for key in template_keys(template) {
                let who = format!("ModelCheckpoint filename '{template}'");
                check_sanity_keys(&who, &key, s)?;
            }
        }
        Ok(())
    }

    fn on_train_batch_end(&mut self, s: &mut TrainerState, _batch_idx: usize) -> Result<()> {
        if !self.train_key_checked {
            self.train_key_checked = true;
            if let Some(key) = self.monitor.as_ref().filter(|_| self.strict) {
                check_sanity_keys("ModelCheckpoint", key, s)?;
            }
        }
        let n = self.every_n_train_steps;
        // Only on the batch that took the step (with accumulation, several batches share one),
        // and not on an epoch's last batch, which the epoch-end check covers.
        let new_step = s.global_step() != self.last_step_checked;
        if n > 0
            && s.global_step().is_multiple_of(n)
            && new_step
            && s.resume_point().1 < s.num_batches()
        {
            self.last_step_checked = s.global_step();
            self.save(s, false)?;
        }
        Ok(())
    }

    fn on_train_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        if self.every_n_epochs > 0 && (s.epoch() + 1).is_multiple_of(self.every_n_epochs) {
            self.save(s, true)?;
        }
        Ok(())
    }

    fn on_fit_end(&mut self, s: &mut TrainerState) -> Result<()> {
        if let (Some((path, score)), Some(key)) = (self.best(), &self.monitor) {
            s.set_best_model(path, score);
            tracing::info!(target: lit_core::REPORT_TARGET, "best model: {} ({key} = {score:.4})", path.display());
        } else if let Some(p) = &self.latest {
            tracing::info!(target: lit_core::REPORT_TARGET, "last checkpoint: {}", p.display());
        }
        Ok(())
    }

    fn state_dict(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "kept": self.kept.iter().map(|(s, p)| (s, p.display().to_string())).collect::<Vec<_>>(),
            "latest": self.latest.as_ref().map(|p| p.display().to_string()),
            "dirpath": self.kept.iter().map(|(_, p)| p).chain(&self.latest).next()
                .and_then(|p| p.parent()).map(|d| d.display().to_string()),
        }))
    }

    fn load_state_dict(&mut self, state: &serde_json::Value) -> Result<()> {
        if let Some(kept) = state.get("kept").and_then(|k| k.as_array()) {
            self.kept = kept
                .iter()
                .filter_map(|e| Some((e.get(0)?.as_f64()?, PathBuf::from(e.get(1)?.as_str()?))))
                .collect();
        }
        self.latest = state
            .get("latest")
            .and_then(|l| l.as_str())
            .map(PathBuf::from);
        // Older checkpoints have no dirpath: their folder is that of the files they list.
        self.restored_dir = state
            .get("dirpath")
            .and_then(|d| d.as_str())
            .map(PathBuf::from)
            .or_else(|| {
                let first = self.kept.first().map(|(_, p)| p).or(self.latest.as_ref());
                first.and_then(|p| p.parent()).map(Path::to_path_buf)
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_in_metric_names_never_make_folders() {
        let values = BTreeMap::from([("val_acc/mnist_val".to_string(), 0.98679)]);
        let name =
            render_filename("best_{epoch}_{val_acc/mnist_val:.4f}", &values, 3, 100).unwrap();
        assert_eq!(name, "best_epoch=3_val_acc_mnist_val=0.9868");
        let err = render_filename("{val_acc/typo}", &values, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("val_acc/typo") && err.contains("val_acc/mnist_val"),
            "{err}"
        );
    }
}
