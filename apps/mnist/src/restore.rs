//! Lightning's `load_from_checkpoint` for `validate`, `test` and `predict --ckpt-path`: the
//! network's hyperparameters come from the checkpoint, so a checkpoint of `--set hid=256` loads
//! without repeating the flag; a value the user gave that contradicts it is an error naming both.

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
    resolved.args = crate::cli::typed(&resolved.hparams, &resolved.args)?;
    Ok(())
}
