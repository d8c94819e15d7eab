//! [`Registry`]: things chosen by name (models, datasets, optimizers, schedules, losses, metrics).
//!
//! One registry per kind is the only source of its names: the code that builds a choice looks it
//! up there, the error for an unknown name lists the registry's names, and the command line's
//! `--help` is written from the same registry, so they cannot drift apart. Adding a choice is one
//! `register` (or `with`) line.

/// A name that is not in a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{name}'; {}expected one of: {}", case_hint(name, known), known.join(", "))]
pub struct UnknownChoice {
    /// What was being chosen ("optimizer").
    pub kind: &'static str,
    /// The name given.
    pub name: String,
    /// Every name the registry accepts.
    pub known: Vec<String>,
}

/// "did you mean 'adam'? " when `name` differs from a known name in case only (names are
/// case-sensitive, as Lightning's).
fn case_hint(name: &str, known: &[String]) -> String {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name.trim()))
        .map(|k| format!("names are case-sensitive: did you mean '{k}'? "))
        .unwrap_or_default()
}

/// Entries of type `T` (usually builders) by name, in the order they were registered.
#[derive(Debug, Clone)]
pub struct Registry<T> {
    kind: &'static str,
    entries: Vec<(String, T)>,
}

impl<T> Registry<T> {
    /// An empty registry of `kind` (used in messages: "model", "optimizer").
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            entries: Vec::new(),
        }
    }

    /// Registers `entry` under `name`, replacing an earlier entry of that name.
    pub fn register(&mut self, name: impl Into<String>, entry: T) -> &mut Self {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = entry,
            None => self.entries.push((name, entry)),
        }
        self
    }

    /// [`Registry::register`] by value, for building a registry in one expression.
    pub fn with(mut self, name: impl Into<String>, entry: T) -> Self {
        self.register(name, entry);
        self
    }

    /// What the registry chooses, such as "optimizer".
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// The entry called `name` (exactly, as Lightning compares names; surrounding spaces
    /// ignored), or an error listing the names.
    pub fn get(&self, name: &str) -> Result<&T, UnknownChoice> {
        self.lookup(name).ok_or_else(|| self.unknown(name))
    }

    fn lookup(&self, name: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(n, _)| n == name.trim())
            .map(|(_, t)| t)
    }

    /// Every name and entry, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The error for `name`, listing the names.
    pub fn unknown(&self, name: &str) -> UnknownChoice {
        UnknownChoice {
            kind: self.kind,
            name: name.to_string(),
            known: self.names(),
        }
    }

    /// The names as prose: "a, b or c".
    pub fn prose(&self) -> String {
        let names = self.names();
        match names.split_last() {
            None => String::new(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_by_name_and_lists_names_on_error() {
        let r = Registry::new("colour")
            .with("red", 1)
            .with("green", 2)
            .with("blue", 3);
        assert_eq!(*r.get("green").unwrap(), 2);
        assert_eq!(
            r.get("BLUE").unwrap_err().to_string(),
            "unknown colour 'BLUE'; names are case-sensitive: did you mean 'blue'? expected one \
             of: red, green, blue"
        );
        let err = r.get("mauve").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown colour 'mauve'; expected one of: red, green, blue"
        );
        assert_eq!(r.prose(), "red, green or blue");
        let r = r.with("green", 20);
        assert_eq!((*r.get("green").unwrap(), r.names().len()), (20, 3));
    }
}
