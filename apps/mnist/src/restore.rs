//! Lightning's `load_from_checkpoint` for every run from `--ckpt-path` (fit's resume, validate,
//! test, predict): the network's hyperparameters come from the checkpoint, so a checkpoint of
//! `--set hid=256` loads without repeating the flag; a value the user gave that contradicts it
//! is an error naming both.

use anyhow::bail;

use crate::cli::Resolved;

/// Takes the network's hyperparameters (its name and its `Config`'s keys) from the checkpoint
/// `path` into `resolved`, refusing a value the user gave that differs from the checkpoint's.
pub(crate) fn network_hparams(
    resolved: &mut Resolved,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let meta = lit_core::checkpoint::read_meta(path)?;
    let saved = &meta.hparams;
    let Some(model) = saved
        .get::<String>("model_name")?
        .or_else(|| meta.model_name.clone())
    else {
        return Ok(());
    };
    let registry = crate::models::registry();
    let mut keys = vec!["model_name".to_string()];
    keys.extend(registry.config_keys(&model).iter().cloned());
    // What the training data decided and the network depends on: its classes and the
    // statistics its inputs were normalised with.
    keys.extend(crate::data_info::RESTORED.iter().map(|k| k.to_string()));
    for key in keys {
        let theirs = match saved.get::<serde_json::Value>(&key)? {
            Some(v) if !v.is_null() => v,
            _ if key == "model_name" => serde_json::Value::String(model.clone()),
            _ => continue,
        };
        let ours = resolved.hparams.get::<serde_json::Value>(&key)?;
        if let Some((_, source)) = resolved.explicit.iter().find(|(k, _)| *k == key) {
            if ours.as_ref() != Some(&theirs) {
                bail!(
                    "{source} gives {key} = {}, but the checkpoint {} was trained with {key} = \
                     {theirs}; leave it out to use the checkpoint's",
                    ours.map_or("nothing".into(), |v| v.to_string()),
                    path.display()
                );
            }
        }
        resolved.hparams.set(key, theirs)?;
    }
    // The loss and the metrics the network was trained and judged with, unless given now.
    for key in crate::data_info::RESTORED_UNLESS_GIVEN {
        let given = resolved.explicit.iter().any(|(k, _)| k == key);
        match saved.get::<serde_json::Value>(key)? {
            Some(v) if !v.is_null() && !given => resolved.hparams.set(key, v)?,
            _ => {}
        }
    }
    resolved.args = crate::cli::typed(&resolved.hparams, &resolved.args)?;
    Ok(())
}

/// The model a `--ckpt-path` of these hyperparameters was trained as, when it names a readable
/// checkpoint (errors are reported where the checkpoint is loaded).
pub(crate) fn checkpoint_model(hparams: &lit_data::HParams) -> Option<String> {
    let spec: String = hparams.get("ckpt_path").ok().flatten()?;
    let log_dir: std::path::PathBuf = hparams.get("log_dir").ok().flatten()?;
    let model: String = hparams.get("model_name").ok().flatten()?;
    let path = if spec == "auto" {
        lit_core::checkpoint::resolve_auto(&log_dir, &model)?
    } else {
        lit_core::checkpoint::resolve(&spec, &log_dir, &model).ok()?
    };
    let meta = lit_core::checkpoint::read_meta(&path).ok()?;
    meta.hparams
        .get::<String>("model_name")
        .ok()
        .flatten()
        .or(meta.model_name)
}
