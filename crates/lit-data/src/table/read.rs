//! Reading a CSV file into features and targets, every bad cell named by file, line and column.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A CSV file's feature columns as numbers and its target column as text.
pub(super) struct Parsed {
    /// The file read.
    pub(super) path: PathBuf,
    /// The feature columns' names, in the order of `features`' columns.
    pub(super) feature_names: Vec<String>,
    /// Row-major features, `rows x feature_names.len()`.
    pub(super) features: Vec<f32>,
    /// The target of each row, as written.
    pub(super) targets: Vec<String>,
    /// The line of each row in the file (the header is line 1), for errors about a row.
    pub(super) lines: Vec<u64>,
}

impl Parsed {
    /// The number of rows.
    pub(super) fn len(&self) -> usize {
        self.targets.len()
    }
}

/// Which columns to read.
pub(super) struct Columns<'a> {
    /// The target's name.
    pub(super) target: &'a str,
    /// The features' names; `None`: every column but the target.
    pub(super) features: Option<&'a [String]>,
    /// Whether the target is a number, whose missing-value spellings (`NA`, `nan`, ...) are
    /// missing values; a class label may be spelt so (`none`, `NA`), and only an empty one is.
    pub(super) numeric_target: bool,
}

/// Reads `path`: a header row, then one row per example with a value in every column.
pub(super) fn read(path: &Path, columns: &Columns) -> Result<Parsed> {
    let format = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, e))?
        .iter()
        .map(String::from)
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(format(
            "is empty; expected a header row naming the columns, then one row per example".into(),
        ));
    }
    let (target, features) = pick(&header, columns).map_err(format)?;
    let mut parsed = Parsed {
        path: path.to_path_buf(),
        feature_names: features.iter().map(|&i| header[i].clone()).collect(),
        features: Vec::new(),
        targets: Vec::new(),
        lines: Vec::new(),
    };
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |i: usize| -> Result<&str> {
            let v = record.get(i).unwrap_or("");
            let label = i == target && !columns.numeric_target;
            if v.is_empty() || (!label && missing(v)) {
                return Err(format(format!(
                    "line {line}, column '{}': missing value{}; fill it in or drop the row",
                    header[i],
                    if v.is_empty() {
                        String::new()
                    } else {
                        format!(" ('{v}')")
                    }
                )));
            }
            Ok(v)
        };
        for &i in &features {
            let v = cell(i)?;
            let x: f32 = v
                .parse()
                .ok()
                .filter(|x: &f32| x.is_finite())
                .ok_or_else(|| {
                    format(format!(
                    "line {line}, column '{}': '{v}' is not a number; a feature must be numeric \
                     (encode categories as numbers, or leave the column out of feature_columns)",
                    header[i]
                ))
                })?;
            parsed.features.push(x);
        }
        parsed.targets.push(cell(target)?.to_string());
        parsed.lines.push(line);
    }
    if parsed.targets.is_empty() {
        return Err(format(
            "has a header but no rows; expected one row per example".into(),
        ));
    }
    Ok(parsed)
}

/// Empty cells and the usual spellings of a missing value.
fn missing(v: &str) -> bool {
    v.is_empty()
        || ["na", "nan", "null", "none", "?"]
            .iter()
            .any(|m| v.eq_ignore_ascii_case(m))
}

/// The csv crate's error, named by file and line (a ragged row says how many fields it has).
fn csv_error(path: &Path, e: csv::Error) -> Error {
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "line {}: {len} fields, but the header has {expected_len}; every row needs one \
             value per column",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        csv::ErrorKind::Utf8 { pos, .. } => format!(
            "line {}: not UTF-8 text; expected a CSV text file",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        csv::ErrorKind::Io(io) => format!("could not be read: {io}"),
        _ => format!("is not valid CSV: {e}"),
    };
    Error::Format {
        path: path.to_path_buf(),
        message,
    }
}

/// The target's column and the features' columns in `header`.
fn pick(header: &[String], columns: &Columns) -> std::result::Result<(usize, Vec<usize>), String> {
    let known = || header.join(", ");
    let find = |name: &str, key: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "has no column '{name}' (the {key} names it); its columns are: {}",
                known()
            )
        })
    };
    let target = find(columns.target, "target_column")?;
    let features = match columns.features {
        Some(names) => names
            .iter()
            .map(|n| find(n, "feature_columns"))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        None => (0..header.len()).filter(|&i| i != target).collect(),
    };
    if let Some(dup) = header
        .iter()
        .enumerate()
        .find(|(i, h)| header[..*i].contains(h))
    {
        return Err(format!(
            "names the column '{}' twice; column names must be unique",
            dup.1
        ));
    }
    if features.contains(&target) {
        return Err(format!(
            "feature_columns includes the target column '{}'",
            columns.target
        ));
    }
    if features.is_empty() {
        return Err(format!(
            "has no feature column besides the target '{}'",
            columns.target
        ));
    }
    Ok((target, features))
}

/// The column names of `path`'s header row.
pub(super) fn header(path: &Path) -> Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    Ok(reader
        .headers()
        .map_err(|e| csv_error(path, e))?
        .iter()
        .map(String::from)
        .collect())
}
