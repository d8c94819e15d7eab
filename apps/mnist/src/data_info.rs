//! What the data tells the model, as Lightning users pass `datamodule.num_classes` to the model:
//! the input's shape, the classes and the normalisation a dataset computed go into the run's
//! hyperparameters (so `hparams.yaml` and the checkpoints record them), each only where the
//! chosen network's `Config` or the module reads the key and nothing the user gave or the
//! checkpoint holds already decides it.

use lit_data::{DataInfo, HParams};

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
    if let Some((mean, std)) = &info.normalization {
        out.push(("normalize_mean", mean.clone().into()));
        out.push(("normalize_std", std.clone().into()));
    }
    out
}

/// The keys the data may decide.
const KEYS: [&str; 8] = [
    "in_channels",
    "input_height",
    "input_width",
    "in_features",
    "num_classes",
    "classes",
    "normalize_mean",
    "normalize_std",
];

/// Whether `after` (the hyperparameters with the data's keys) gives one of them another value
/// than `module` (a module's complete hyperparameters, built before the data was read).
pub(crate) fn changes(module: &HParams, after: &HParams) -> bool {
    KEYS.iter()
        .any(|k| after.raw(k).is_some() && module.raw(k) != after.raw(k))
}

/// Sets `info`'s keys in `hparams` where `reads` says a part of the run reads the key and
/// `fixed` does not hold it (the keys the user gave, and those a checkpoint restored).
pub(crate) fn apply(
    hparams: &mut HParams,
    info: &DataInfo,
    reads: impl Fn(&str) -> bool,
    fixed: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    for (key, value) in values(info) {
        if reads(key) && !fixed(key) {
            hparams.set(key, value)?;
        }
    }
    Ok(())
}

/// Records what `datamodule`'s data says in `hparams` (see [`apply`]) for a run of the network
/// `model_name`; with `from_checkpoint`, the network's keys and the classes stay the
/// checkpoint's. Returns what the data said.
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
    apply(
        hparams,
        &info,
        |k| known.iter().any(|n| n == k),
        |k| {
            explicit.iter().any(|(e, _)| e == k)
                || (from_checkpoint
                    && (network.iter().any(|n| n == k) || k == "num_classes" || k == "classes"))
        },
    )?;
    Ok(Some(info))
}
