//! [`HParams`]: the run's hyperparameters as one ordered map, as Lightning's `self.hparams`.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// The hyperparameters of a run: one map from snake_case keys to JSON-like values.
///
/// Everything that configures a run lives here (trainer limits, optimizer, data names and the
/// model's own settings), so one `hparams.yaml` reproduces the run. Typed views are taken with
/// [`HParams::get`] or, for a whole struct such as a model's `Config`, [`HParams::to_config`],
/// which ignores unknown keys and uses the struct's defaults for missing ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct HParams(BTreeMap<String, Value>);

impl HParams {
    /// No hyperparameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`, if any.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// The value under `key` as `T`, or `None` when absent or null.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.raw(key)
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| Error::HParam {
                    key: key.to_string(),
                    message: format!("{e} (found {v})"),
                })
            })
            .transpose()
    }

    /// The value under `key` as `T`, or `default` when absent.
    pub fn get_or<T: DeserializeOwned>(&self, key: &str, default: T) -> Result<T> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// A comma-separated string or a list under `key`, as a list of names.
    pub fn get_list(&self, key: &str) -> Result<Vec<String>> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()),
            Some(_) => self.get::<Vec<String>>(key).map(Option::unwrap_or_default),
        }
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Serialize) -> Result<()> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|e| Error::HParam {
            key: key.clone(),
            message: e.to_string(),
        })?;
        self.0.insert(key, value);
        Ok(())
    }

    /// Adds every key of `other` that is not set here (or is null).
    pub fn merge_missing(&mut self, other: &HParams) {
        for (k, v) in &other.0 {
            if self.raw(k).is_none() {
                self.0.insert(k.clone(), v.clone());
            }
        }
    }

    /// Sets every key of `other` here, replacing existing values.
    pub fn extend(&mut self, other: HParams) {
        self.0.extend(other.0);
    }

    /// Fills a struct such as a model's `Config` from the keys it names.
    ///
    /// Unknown keys are ignored and missing ones take the struct's `#[serde(default)]` values; a
    /// value of the wrong type is an error that names its key.
    pub fn to_config<T: DeserializeOwned>(&self) -> Result<T> {
        let map: serde_json::Map<String, Value> = self
            .0
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| Error::HParam {
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// Builds hyperparameters from any serializable struct or map.
    pub fn from_serialize(value: &impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(value)
            .map_err(|e| Error::Invalid(format!("hyperparameters: {e}")))?;
        serde_json::from_value(value).map_err(|e| Error::Invalid(format!("hyperparameters: {e}")))
    }

    /// Iterates over keys and values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    /// Whether `key` is set to a non-null value.
    pub fn contains(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(default)]
    struct Cfg {
        hid: usize,
        dropout: f64,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self {
                hid: 32,
                dropout: 0.1,
            }
        }
    }

    #[test]
    fn config_takes_known_keys_ignores_unknown_and_defaults_missing() {
        let mut hp = HParams::new();
        hp.set("hid", 64).unwrap();
        hp.set("lr", 0.1).unwrap();
        let cfg: Cfg = hp.to_config().unwrap();
        assert_eq!(
            cfg,
            Cfg {
                hid: 64,
                dropout: 0.1
            }
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let mut hp = HParams::new();
        hp.set("hid", "wide").unwrap();
        let err = hp.to_config::<Cfg>().unwrap_err().to_string();
        assert!(err.contains("'hid'"), "{err}");
    }

    #[test]
    fn lists_from_commas_or_arrays() {
        let mut hp = HParams::new();
        hp.set("a", "x, y,z").unwrap();
        hp.set("b", vec!["p", "q"]).unwrap();
        assert_eq!(hp.get_list("a").unwrap(), ["x", "y", "z"]);
        assert_eq!(hp.get_list("b").unwrap(), ["p", "q"]);
        assert!(hp.get_list("c").unwrap().is_empty());
    }
}
