//! The keys a run understands: every option, what the module and data interfaces read and the
//! chosen network's own `Config`; a key no part reads, or a null where a value is due, is refused
//! with the closest known key.

use anyhow::bail;
use lit_data::HParams;

use crate::cli::RunArgs;

/// Fails on a key set to null (`lr: null`, `lr: ~`) whose default is a value: serde would
/// silently take the default, which is not what the file says.
pub(crate) fn refuse_nulls(file: &HParams, defaults: &HParams, source: &str) -> anyhow::Result<()> {
    for (key, value) in file.iter() {
        let default = defaults.get::<serde_json::Value>(key)?;
        if value.is_null() && default.as_ref().is_some_and(|d| !d.is_null()) {
            bail!(
                "{source}: '{key}' is null; expected a value such as its default {} (or leave \
                 the key out)",
                default.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Every key a run understands: the options, what the module and data interfaces read, and the
/// chosen network's own `Config`.
pub(crate) fn known_keys(model_name: &str) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = HParams::from_serialize(&RunArgs::default())?
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(lit_model::module_keys().iter().map(|k| k.to_string()));
    keys.extend(crate::datasets::registry().keys());
    keys.extend(
        crate::models::registry()
            .config_keys(model_name)
            .iter()
            .cloned(),
    );
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// Fails on a key no part of the run reads, suggesting the closest known key.
pub(crate) fn check_keys<'a>(
    given: impl Iterator<Item = (&'a str, String)>,
    model_name: &str,
) -> anyhow::Result<()> {
    let known = known_keys(model_name)?;
    for (key, source) in given {
        if known.iter().any(|k| k == key) {
            continue;
        }
        let closest = known
            .iter()
            .map(|k| (strsim::normalized_damerau_levenshtein(key, k), k))
            .filter(|(score, _)| *score >= 0.6)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let models = crate::models::registry();
        let other_model = models
            .names()
            .into_iter()
            .find(|m| m != model_name && models.config_keys(m).iter().any(|k| k == key));
        let hint = match (other_model, closest) {
            (Some(m), _) => format!("it belongs to model '{m}' (a config of another model?)"),
            (None, Some((_, k))) => format!("did you mean '{k}'?"),
            (None, None) => {
                let own = models.config_keys(model_name).join(", ");
                format!(
                    "it is no option, no module or dataset key and not one of the model's own \
                     ({own}); --print-config lists every key"
                )
            }
        };
        bail!("{source}: unknown hyperparameter '{key}' (model '{model_name}'); {hint}");
    }
    Ok(())
}
