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

    /// Parses YAML text holding a map of hyperparameters (a config file, or a run's
    /// `hparams.yaml`). An empty text is an empty map. Non-finite floats are refused with their
    /// key: JSON has none, so they would become null and silently fall back to the defaults.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let not_a_map = |found: &str| {
            Error::Invalid(format!(
                "expected a YAML map of hyperparameters, found {found}"
            ))
        };
        // A byte-order mark some editors write is no part of the YAML.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| not_a_map(&format!("invalid YAML ({e})")))?;
        let map = match yaml {
            serde_yaml::Value::Null => return Ok(Self::new()),
            serde_yaml::Value::Mapping(m) => m,
            other => return Err(not_a_map(yaml_kind(&other))),
        };
        let mut out = Self::new();
        for (k, v) in map {
            let key = match k {
                serde_yaml::Value::String(s) => s,
                other => return Err(not_a_map(&format!("a {} key", yaml_kind(&other)))),
            };
            let value = yaml_to_json(v, &key)?;
            out.0.insert(key, value);
        }
        Ok(out)
    }

    /// Parses one YAML value given for `key` (such as a `--set key=value` pair's); text that is
    /// not YAML is taken as a string. Non-finite floats are refused.
    pub fn parse_value(key: &str, text: &str) -> Result<Value> {
        match serde_yaml::from_str::<serde_yaml::Value>(text) {
            Ok(v) => yaml_to_json(v, key),
            Err(_) => Ok(Value::String(text.into())),
        }
    }

    /// Whether `key` is set to a non-null value.
    pub fn contains(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Bool(_) => "boolean",
        serde_yaml::Value::Number(_) => "number",
        serde_yaml::Value::String(_) => "string",
        serde_yaml::Value::Sequence(_) => "list",
        serde_yaml::Value::Mapping(_) => "map",
        serde_yaml::Value::Tagged(_) => "tagged value",
    }
}

/// A YAML value as JSON; `key` names it in errors.
fn yaml_to_json(value: serde_yaml::Value, key: &str) -> Result<Value> {
    use serde_yaml::Value as Y;
    let non_finite = |f: f64| Error::HParam {
        key: key.to_string(),
        message: format!("expected a finite number, got {f}"),
    };
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => b.into(),
        Y::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.into(),
            (_, Some(i), _) => i.into(),
            (_, _, Some(f)) if f.is_finite() => f.into(),
            (_, _, f) => return Err(non_finite(f.unwrap_or(f64::NAN))),
        },
        Y::String(s) => s.into(),
        Y::Sequence(items) => items
            .into_iter()
            .map(|v| yaml_to_json(v, key))
            .collect::<Result<Vec<_>>>()?
            .into(),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let name = match k {
                    Y::String(s) => s,
                    other => {
                        return Err(Error::HParam {
                            key: key.to_string(),
                            message: format!("expected text keys, got a {}", yaml_kind(&other)),
                        })
                    }
                };
                let inner = format!("{key}.{name}");
                out.insert(name, yaml_to_json(v, &inner)?);
            }
            out.into()
        }
        Y::Tagged(t) => yaml_to_json(t.value, key)?,
    })
}

/// A serde `deserialize_with` for a list of names given as a list or as one comma-separated
/// string (`val_datasets: a,b` or `[a, b]`), as [`HParams::get_list`] reads them.
pub fn names<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Names {
        Text(String),
        List(Vec<String>),
    }
    Ok(match <Names as serde::Deserialize>::deserialize(d)? {
        Names::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Names::List(v) => v,
    })
}

/// [`names`] for an optional list (unset stays `None`).
pub fn optional_names<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    names(d).map(Some)
}

/// A config's keys with their defaults, as hyperparameters (what `--print-config` shows and
/// what a misspelt key is compared with).
pub fn defaults_of<T: Serialize + Default>() -> HParams {
    HParams::from_serialize(&T::default()).expect("a config of plain data serialises")
}

/// A serde `serialize_with` writing a list of names as one comma-separated string, the form the
/// command line takes (the inverse of [`names`]).
pub fn names_as_text<S: serde::Serializer>(
    names: &[String],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&names.join(","))
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
    fn yaml_maps_parse_and_non_finite_values_are_refused_by_key() {
        let hp = HParams::from_yaml("lr: 0.5\nname: x\nlist: [1, 2]\n").unwrap();
        assert_eq!(hp.get::<f64>("lr").unwrap(), Some(0.5));
        assert!(HParams::from_yaml("").unwrap().iter().next().is_none());
        for text in ["lr: .nan", "lr: .inf", "lr: -.inf", "nested: {a: .nan}"] {
            let err = HParams::from_yaml(text).unwrap_err().to_string();
            assert!(err.contains("finite"), "{text}: {err}");
        }
        let err = HParams::from_yaml("[1, 2]").unwrap_err().to_string();
        assert!(
            err.contains("expected a YAML map") && err.contains("list"),
            "{err}"
        );
        assert!(HParams::parse_value("lr", ".nan").is_err());
        assert_eq!(HParams::parse_value("name", "a: b: c").unwrap(), "a: b: c");
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
