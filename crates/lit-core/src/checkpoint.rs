//! Checkpoint files: weights, optimizer state and loop state in one safetensors file.
//!
//! A checkpoint is a safetensors file (no code runs on load, unlike pickle). Weights are stored
//! under the module's parameter names, which for models built like the template are PyTorch's
//! (`model.0.weight`), so `torch.nn.Module.load_state_dict` takes them. Optimizer tensors follow
//! under `optimizer.<buffer>.<parameter>`. Everything else (epoch, step, position in the epoch,
//! optimizer and scheduler counters, callback states, hyperparameters) is JSON in the safetensors
//! metadata under the key `lit`. Files are written to a temporary file, fsynced and renamed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use lit_data::HParams;
use lit_model::optim::OptimizerState;
use serde::{Deserialize, Serialize};

use crate::{rundir, Error, Result};

/// The metadata key holding [`CheckpointMeta`].
pub const META_KEY: &str = "lit";
const OPTIM_PREFIX: &str = "optimizer.";

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CheckpointMeta {
    /// The lit version that wrote the file.
    pub lit_version: String,
    /// The model's registered name, when known.
    pub model_name: Option<String>,
    /// Whether only the weights were saved.
    pub weights_only: bool,
    /// The epoch to continue at.
    pub resume_epoch: usize,
    /// The batch within `resume_epoch` to continue at.
    pub resume_batch: usize,
    /// Optimizer steps taken.
    pub global_step: u64,
    /// The optimizer's non-tensor state (step counts, learning rate).
    pub optimizer: Option<serde_json::Value>,
    /// The optimizer's name (`Adam`), checked on resume.
    pub optimizer_name: Option<String>,
    /// The learning-rate schedule's state.
    pub scheduler: Option<serde_json::Value>,
    /// Each callback's state, by callback key.
    pub callbacks: BTreeMap<String, serde_json::Value>,
    /// The monitored key and its value when the file was written, for `best` lookups.
    pub monitor: Option<(String, f64)>,
    /// Whether a higher monitored value is better.
    pub monitor_higher_is_better: bool,
    /// The run's hyperparameters.
    pub hparams: HParams,
    /// Mid-epoch, the epoch's logged sums so far (see `StepContext::epoch_state`).
    pub epoch_logs: Option<serde_json::Value>,
    /// The precision's state (the loss scale of `16-mixed`).
    pub precision: Option<serde_json::Value>,
    /// The processes of the run that wrote it (`resume_batch` counts each one's batches); 0 in
    /// files from before data parallelism, read as 1.
    pub world_size: usize,
    /// Examples per training batch of each process; with `world_size` and `resume_batch` it
    /// says how many examples of the epoch were trained (0 in older files: unknown).
    pub batch_size: usize,
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Weights by parameter name, on the CPU.
    pub weights: HashMap<String, Tensor>,
    /// Optimizer state tensors by name (without the `optimizer.` prefix).
    pub optimizer: BTreeMap<String, Tensor>,
    /// Everything else.
    pub meta: CheckpointMeta,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    varmap: &VarMap,
    optimizer: Option<&OptimizerState>,
    meta: &CheckpointMeta,
) -> Result<()> {
    // Weights are stored in f32 whatever the precision trained them in (bf16 and f16 widen
    // exactly), so every checkpoint loads anywhere.
    let mut tensors: BTreeMap<String, Tensor> = {
        let data = varmap.data().lock().expect("varmap lock poisoned");
        data.iter()
            .map(|(k, v)| {
                let t = v.as_tensor().detach();
                let t = match t.dtype() {
                    DType::BF16 | DType::F16 => t.to_dtype(DType::F32)?,
                    _ => t,
                };
                Ok((k.clone(), t))
            })
            .collect::<Result<_>>()?
    };
    let mut meta = meta.clone();
    if let Some(o) = optimizer.filter(|_| !meta.weights_only) {
        for (k, t) in &o.tensors {
            tensors.insert(format!("{OPTIM_PREFIX}{k}"), t.detach());
        }
        meta.optimizer = Some(o.meta.clone());
    }
    // safetensors wants contiguous CPU data.
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let json = serde_json::to_string(&meta)
        .map_err(|e| bad(path, format!("serialising metadata: {e}")))?;
    let bytes = safetensors::serialize(
        tensors.iter().map(|(k, t)| (k.as_str(), t)),
        Some(HashMap::from([(META_KEY.to_string(), json)])),
    )
    .map_err(|e| bad(path, format!("serialising tensors: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    rundir::write_atomic(path, &bytes)
}

/// Reads a checkpoint, or a plain safetensors file of weights (such as one saved from PyTorch).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(path, &bytes)
}

/// Parses a checkpoint's bytes, read from `path` (named in errors).
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("not a safetensors file ({e:?})")))?;
    let meta = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| bad(path, format!("corrupt lit metadata: {e}")))?,
        None => CheckpointMeta {
            weights_only: true,
            ..Default::default()
        },
    };
    let all = candle::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| bad(path, format!("reading tensors: {e}")))?;
    let mut weights = HashMap::new();
    let mut optimizer = BTreeMap::new();
    for (k, t) in all {
        match k.strip_prefix(OPTIM_PREFIX) {
            Some(rest) => {
                optimizer.insert(rest.to_string(), t);
            }
            None => {
                weights.insert(k, t);
            }
        }
    }
    Ok(Checkpoint {
        weights,
        optimizer,
        meta,
    })
}

/// Copies `weights` into the parameters of `varmap`, checking that they match exactly: every
/// missing, unexpected, wrongly shaped or wrongly typed tensor is named in the error.
pub fn load_weights(path: &Path, varmap: &VarMap, weights: &HashMap<String, Tensor>) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock poisoned");
    let mut problems = Vec::new();
    let mut missing: Vec<&String> = data.keys().filter(|k| !weights.contains_key(*k)).collect();
    missing.sort();
    if !missing.is_empty() {
        problems.push(format!(
            "missing keys: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut unexpected: Vec<&String> = weights.keys().filter(|k| !data.contains_key(*k)).collect();
    unexpected.sort();
    if !unexpected.is_empty() {
        problems.push(format!(
            "unexpected keys: {}",
            unexpected
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut names: Vec<&String> = data.keys().filter(|k| weights.contains_key(*k)).collect();
    names.sort();
    for name in &names {
        let (var, t) = (&data[*name], &weights[*name]);
        if var.dims() != t.dims() {
            problems.push(format!(
                "{name}: shape {:?} in the file, the model has {:?}",
                t.dims(),
                var.dims()
            ));
        } else if var.dtype() != t.dtype() && !widened(t.dtype(), var.dtype()) {
            problems.push(format!(
                "{name}: dtype {:?} in the file, the model has {:?}",
                t.dtype(),
                var.dtype()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(bad(
            path,
            format!("does not match the model: {}", problems.join("; ")),
        ));
    }
    for name in &names {
        let values = weights[*name]
            .to_dtype(candle::DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        if let Some(problem) = impossible(name, &values) {
            return Err(bad(
                path,
                format!("tensor {name} {problem}; refusing to load it"),
            ));
        }
    }
    for name in names {
        let var = &data[name];
        var.set(
            &weights[name]
                .to_device(var.device())?
                .to_dtype(var.dtype())?,
        )?;
    }
    Ok(())
}

/// What is impossible about the values of tensor `name`: NaN or infinities anywhere, a negative
/// batch-norm variance, a running mean or variance whose square overflows f32 (normalising with
/// it gives infinities), or a negative batch count.
fn impossible(name: &str, values: &[f64]) -> Option<String> {
    if !values.iter().all(|v| v.is_finite()) {
        return Some("holds NaN or infinite values".into());
    }
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    // Beyond this a square leaves f32's range.
    const LARGEST: f64 = 1.8e19;
    match leaf {
        "running_var" | "num_batches_tracked" if lo < 0.0 => Some(format!(
            "holds a negative value ({lo}); a variance or a count is never negative"
        )),
        "running_mean" | "running_var" if lo < -LARGEST || hi > LARGEST => Some(format!(
            "holds values in [{lo:e}, {hi:e}]; a batch norm's running statistics this large \
             overflow when an image is normalised"
        )),
        _ => None,
    }
}

/// Whether a tensor of `file` type is the f32 form of a `param` of a half type, as checkpoints
/// store `bf16-true` and `16-true` weights.
fn widened(file: DType, param: DType) -> bool {
    file == DType::F32 && matches!(param, DType::BF16 | DType::F16)
}

/// A checkpoint a callback asks the trainer to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRequest {
    /// Where.
    pub path: PathBuf,
    /// Weights only, or everything needed to resume.
    pub weights_only: bool,
    /// The monitored value to record in the file.
    pub monitor: Option<(String, f64)>,
    /// Whether higher monitored values are better.
    pub higher_is_better: bool,
    /// Files to delete once this one is written (checkpoints it displaced).
    pub remove: Vec<PathBuf>,
}

/// The metadata of a checkpoint file, without reading its tensors.
pub fn read_meta(path: &Path) -> Result<CheckpointMeta> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad(path, "not a safetensors file (shorter than its header)"))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(bad(
            path,
            "not a safetensors file (implausible header length)",
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad(path, "not a safetensors file (truncated header)"))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(path, format!("not a safetensors file ({e})")))?;
    match json
        .get("__metadata__")
        .and_then(|m| m.get(META_KEY))
        .and_then(|m| m.as_str())
    {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| bad(path, format!("corrupt lit metadata: {e}")))
        }
        None => Ok(CheckpointMeta {
            weights_only: true,
            ..Default::default()
        }),
    }
}

/// Whether a run's `checkpoints/` holds any checkpoint file (not just temporary files).
fn has_checkpoints(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
    })
}

/// The runs of `run_name` under `root` that have a `checkpoints/` folder, newest first.
fn runs_with_checkpoints(root: &Path, run_name: &str) -> Vec<PathBuf> {
    let base = root.join(run_name);
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut runs: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("version_")?
                .parse()
                .ok()?;
            e.path().join("checkpoints").is_dir().then(|| (n, e.path()))
        })
        .collect();
    runs.sort();
    runs.into_iter().rev().map(|(_, p)| p).collect()
}

/// The newest run of `run_name` whose `checkpoints/` holds a checkpoint file.
fn newest_with_checkpoints(root: &Path, run_name: &str) -> Option<PathBuf> {
    runs_with_checkpoints(root, run_name)
        .into_iter()
        .find(|r| has_checkpoints(r))
}

/// Resolves `--ckpt-path auto`: the newest run's `last.safetensors` when one exists, `None`
/// (start fresh) otherwise, so a requeued job script resumes without an edit.
pub fn resolve_auto(root: &Path, run_name: &str) -> Option<PathBuf> {
    runs_with_checkpoints(root, run_name)
        .into_iter()
        .map(|r| r.join("checkpoints").join("last.safetensors"))
        .find(|p| p.is_file())
}

/// Resolves `--ckpt-path`: `last` (the latest run's `last.safetensors`), `best` (the latest run's
/// checkpoint with the best monitored value) or a file path.
pub fn resolve(spec: &str, root: &Path, run_name: &str) -> Result<PathBuf> {
    let missing = |what: &str| {
        Error::Config(format!(
            "--ckpt-path {spec}: no {what} under {} (looked in its version_N/checkpoints/)",
            root.join(run_name).display()
        ))
    };
    match spec {
        "last" => {
            // The newest run that wrote a checkpoint: a run killed before its first one (leaving
            // perhaps a stale temporary file) does not hide an older run's; a newer run that
            // kept no `last` (--no-save-last) is an error, not a silent jump to an older run.
            let run = newest_with_checkpoints(root, run_name)
                .ok_or_else(|| missing("run with checkpoints"))?;
            let last = run.join("checkpoints/last.safetensors");
            if last.is_file() {
                Ok(last)
            } else {
                Err(Error::Config(format!(
                    "--ckpt-path last: the newest run with checkpoints, {}, has no \
                     last.safetensors (written with --no-save-last?); name a file instead",
                    run.display()
                )))
            }
        }
        "best" => {
            let run = newest_with_checkpoints(root, run_name)
                .ok_or_else(|| missing("run with checkpoints"))?;
            let dir = run.join("checkpoints");
            let mut best: Option<(f64, bool, PathBuf)> = None;
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_none_or(|x| x != "safetensors")
                    || path.ends_with("last.safetensors")
                {
                    continue;
                }
                let meta = read_meta(&path)?;
                if let Some((_, v)) = meta.monitor {
                    let hi = meta.monitor_higher_is_better;
                    let better = best
                        .as_ref()
                        .is_none_or(|(b, _, _)| if hi { v > *b } else { v < *b });
                    if better {
                        best = Some((v, hi, path));
                    }
                }
            }
            best.map(|(_, _, p)| p)
                .ok_or_else(|| missing("checkpoint with a monitored value"))
        }
        path => {
            let p = PathBuf::from(path);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::Config(format!(
                    "--ckpt-path {path}: no such file (or use last / best)"
                )))
            }
        }
    }
}
