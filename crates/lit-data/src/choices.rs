//! [`Choices`]: a table of things chosen by name (optimizers, schedules, losses, metrics).
//!
//! One table per kind is the only source of its names: the code that builds a choice looks it
//! up here, the error for an unknown name lists the table's names, and the command line's
//! `--help` is written from the same table, so the three cannot drift apart.

/// A name that is not in a [`Choices`] table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{name}'; expected one of: {}", known.join(", "))]
pub struct UnknownChoice {
    /// What was being chosen ("optimizer").
    pub kind: &'static str,
    /// The name given.
    pub name: String,
    /// Every name the table accepts.
    pub known: Vec<&'static str>,
}

/// A constant table of named entries of type `T` (usually builder functions).
#[derive(Debug)]
pub struct Choices<T: 'static> {
    kind: &'static str,
    entries: &'static [(&'static str, T)],
}

impl<T> Choices<T> {
    /// A table of `kind` (used in messages) with `entries`.
    pub const fn new(kind: &'static str, entries: &'static [(&'static str, T)]) -> Self {
        Self { kind, entries }
    }

    /// What the table chooses, such as "optimizer".
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The names, in table order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|(n, _)| *n).collect()
    }

    /// The entry called `name` (compared case-insensitively), or an error listing the names.
    pub fn get(&self, name: &str) -> Result<&'static T, UnknownChoice> {
        let entries: &'static [(&'static str, T)] = self.entries;
        entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, t)| t)
            .ok_or_else(|| self.unknown(name))
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
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Choices<u8> = Choices::new("colour", &[("red", 1), ("green", 2), ("blue", 3)]);

    #[test]
    fn looks_up_by_name_and_lists_names_on_error() {
        assert_eq!(*T.get("green").unwrap(), 2);
        assert_eq!(*T.get("BLUE").unwrap(), 3);
        let err = T.get("mauve").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown colour 'mauve'; expected one of: red, green, blue"
        );
        assert_eq!(T.prose(), "red, green or blue");
    }
}
