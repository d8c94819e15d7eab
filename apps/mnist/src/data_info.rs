//! What the data tells the model, as Lightning users pass `datamodule.num_classes` to the model:
//! the input's shape, the classes and the normalisation a dataset computed go into the run's
//! hyperparameters (so `hparams.yaml` and the checkpoints record them), each only where the
//! chosen network's `Config` or the module reads the key and nothing the user gave or the
//! checkpoint holds already decides it.

use lit_data::{DataInfo, HParams, Task};
use lit_model::REGRESSION_METRICS;

/// The keys `info` decides, with their values.
fn values(info: &DataInfo) -> Vec<(&'static str, serde_json::Value)> {
    let mut out = Vec::new();
    match info.input_shape.as_slice() {
        [c, h, w] => {
            out.push(("in_channels", (*c).into()));
            out.push(("input_height", (*h).into()));
            out.push(("input_width", (*w).into()));
            // A network on flattened images (standard_net) reads the product.
            out.push(("in_features", (c * h * w).into()));
        }
        [f] => out.push(("in_features", (*f).into())),
        _ => {}
    }
    if !info.classes.is_empty() {
        out.push(("num_classes", info.classes.len().into()));
        out.push(("classes", info.classes.clone().into()));
    }
    if let Task::Regression { mean, std } = info.task {
        // One output per example, at the targets' scale, with a regression's loss and metrics.
        out.push(("task", "regression".into()));
        out.push(("num_classes", 1.into()));
        out.push(("target_mean", mean.into()));
        out.push(("target_std", std.into()));
        out.push(("loss", "mse".into()));
        out.push(("metric", REGRESSION_METRICS.join(",").into()));
    }
    if let Some((mean, std)) = &info.normalization {
        out.push(("normalize_mean", mean.clone().into()));
        out.push(("normalize_std", std.clone().into()));
    }
    out
}

/// The keys the data may decide.
const KEYS: [&str; 13] = [
    "task",
    "target_mean",
    "target_std",
    "loss",
    "metric",
    "in_channels",
    "input_height",
    "input_width",
    "in_features",
    "num_classes",
    "classes",
    "normalize_mean",
    "normalize_std",
];

/// The data's keys a checkpoint carries beside the network's own (see `restore`).
pub(crate) const RESTORED: [&str; 7] = [
    "task",
    "num_classes",
    "classes",
    "normalize_mean",
    "normalize_std",
    "target_mean",
    "target_std",
];

/// The keys a checkpoint carries that the user may change when testing it: the loss and the
/// metrics the network was trained and judged with, and what decides a table's rows, their
/// split and their features (the seed, the split fractions, the feature columns and their
/// standardisation), so that a test runs on the rows and inputs the training run set aside.
pub(crate) const RESTORED_UNLESS_GIVEN: [&str; 7] = [
    "loss",
    "metric",
    "seed",
    "val_split",
    "test_split",
    "feature_columns",
    "standardize",
];

/// The keys whose value from the user or a checkpoint must agree with the data's: the input
/// shape and the class count (the normalisation given overrides the data's by design).
const MUST_AGREE: [&str; 5] = [
    "in_channels",
    "input_height",
    "input_width",
    "in_features",
    "num_classes",
];

/// Whether `after` (the hyperparameters with the data's keys) gives one of them another value
/// than `module` (a module's complete hyperparameters, built before the data was read).
pub(crate) fn changes(module: &HParams, after: &HParams) -> bool {
    KEYS.iter()
        .any(|k| after.raw(k).is_some() && module.raw(k) != after.raw(k))
}

/// Sets `info`'s keys in `hparams` where `reads` says a part of the run reads the key and
/// `fixed` does not name where its value came from (the user, a checkpoint); a fixed input shape
/// or class count that contradicts the data is an error naming both.
pub(crate) fn apply(
    hparams: &mut HParams,
    info: &DataInfo,
    reads: impl Fn(&str) -> bool,
    fixed: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for (key, value) in values(info) {
        if !reads(key) {
            continue;
        }
        match fixed(key) {
            None => hparams.set(key, value)?,
            Some(source) => {
                let ours = hparams.get::<serde_json::Value>(key)?;
                if MUST_AGREE.contains(&key) && ours.as_ref().is_some_and(|v| *v != value) {
                    anyhow::bail!(
                        "{source} gives {key} = {}, but the data has {key} = {value}; leave it \
                         out to take the data's",
                        ours.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Records what `datamodule`'s data says in `hparams` (see [`apply`]) for a run of the network
/// `model_name`; with `from_checkpoint`, the network's keys, the classes and the statistics the
/// checkpoint holds stay the checkpoint's. Returns what the data said.
pub(crate) fn record(
    hparams: &mut HParams,
    datamodule: &lit_data::DInterface,
    stage: lit_data::Stage,
    explicit: &[(String, String)],
    model_name: &str,
    from_checkpoint: bool,
) -> anyhow::Result<Option<DataInfo>> {
    let Some(info) = datamodule.info(stage)? else {
        return Ok(None);
    };
    let known = crate::keys::known_keys(model_name)?;
    let models = crate::models::registry();
    let network = models.config_keys(model_name);
    let before = hparams.clone();
    apply(
        hparams,
        &info,
        |k| known.iter().any(|n| n == k),
        |k| match explicit.iter().find(|(e, _)| e == k) {
            Some((_, source)) => Some(source.clone()),
            None if from_checkpoint
                && (network.iter().any(|n| n == k)
                    || RESTORED.contains(&k)
                    || RESTORED_UNLESS_GIVEN.contains(&k))
                && before.raw(k).is_some() =>
            {
                Some("the checkpoint".into())
            }
            None => None,
        },
    )?;
    match info.task {
        Task::Regression { .. } => regression_choices(hparams)?,
        Task::Classification => {
            let own: lit_model::MInterfaceHParams = hparams.to_config()?;
            let regression = lit_model::REGRESSION_METRIC_NAMES;
            if let Some(bad) = own.metric.iter().find(|m| regression.contains(&m.as_str())) {
                anyhow::bail!(
                    "metric {bad}: the data's targets are classes, which a regression metric \
                     cannot compare with the network's scores; for a value to predict, set \
                     task=regression (csv)"
                );
            }
        }
    }
    Ok(Some(info))
}

/// Refuses a classification loss or metric the user chose for a regression target.
fn regression_choices(hparams: &HParams) -> anyhow::Result<()> {
    let own: lit_model::MInterfaceHParams = hparams.to_config()?;
    let loss = hparams.get::<String>("loss")?.unwrap_or_default();
    if !lit_data::table::REGRESSION_LOSSES.contains(&loss.as_str()) {
        anyhow::bail!(
            "loss {loss}: the data's target is a value (a regression), which takes the loss \
             {}",
            lit_data::table::REGRESSION_LOSSES.join(", ")
        );
    }
    let regression = lit_model::REGRESSION_METRIC_NAMES;
    if let Some(bad) = own
        .metric
        .iter()
        .find(|m| !regression.contains(&m.as_str()))
    {
        anyhow::bail!(
            "metric {bad}: the data's target is a value (a regression), which takes the metrics \
             {}",
            regression.join(", ")
        );
    }
    Ok(())
}
