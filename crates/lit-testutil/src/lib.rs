//! Test helpers shared by the lit crates (a dev-dependency only).
//!
//! Reference values from PyTorch live outside the repository, in `../shared/fixtures` beside the
//! checkout (override with `LIT_FIXTURES_DIR`); real data sets in `$LIT_DATA_DIR`. A test that
//! needs them skips loudly on a machine without them, and fails in CI (`CI` set), where they must
//! exist.
// Skipping loudly is the point of these helpers.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this is a CI run, where missing fixtures or data are failures.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `Some(path)` when `path` exists; otherwise `None` with a loud skip message, or a panic in CI.
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(!in_ci(), "{what} missing in CI: {}", path.display());
    eprintln!("SKIPPED: {what} not found at {}", path.display());
    None
}

/// The fixtures folder (`LIT_FIXTURES_DIR`, else `../shared/fixtures` beside the checkout).
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LIT_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/fixtures"));
    require(dir, "PyTorch reference fixtures")
}

/// `reference.json` from the fixtures folder.
pub fn reference() -> Option<serde_json::Value> {
    let path = fixtures_dir()?.join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The real-data root named by `LIT_DATA_DIR` (it holds `mnist/`), if set and present.
pub fn data_root() -> Option<PathBuf> {
    match std::env::var_os("LIT_DATA_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => require(PathBuf::from(dir), "LIT_DATA_DIR"),
        None => {
            assert!(!in_ci(), "LIT_DATA_DIR must be set in CI");
            eprintln!("SKIPPED: LIT_DATA_DIR is not set");
            None
        }
    }
}

/// A JSON array of numbers (any nesting) flattened to f64s.
pub fn flat(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flat).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        other => panic!("expected numbers, got {other}"),
    }
}

/// Asserts `actual` and `expected` agree within `rtol` relative (plus a tiny absolute) tolerance.
pub fn assert_close(actual: &[f64], expected: &[f64], rtol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let tol = rtol * e.abs() + 1e-7;
        assert!(
            (a - e).abs() <= tol,
            "{what}[{i}]: got {a}, expected {e} (tolerance {tol})"
        );
    }
}
