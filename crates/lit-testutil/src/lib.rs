//! Test helpers shared by the lit crates (a dev-dependency only).
//!
//! The PyTorch reference values live in the repository, in `tests/fixtures/` (override with
//! `LIT_FIXTURES_DIR`), and so does the example data, `data/mnist/` (override with
//! `LIT_DATA_DIR`), so a fresh clone runs every test. A test that needs something from outside (a
//! GPU, a system package) calls [`skip`] when it is missing: that prints the reason and records it
//! under `target/test-skips/`, where `cargo xtask test` counts the skips after the run. In CI
//! (`CI` set) a missing resource is a failure, not a skip.
// Skipping loudly is the point of these helpers.
#![allow(clippy::print_stderr)]

mod collective;
mod tensors;

pub use collective::ThreadCollective;
pub use tensors::{assert_tensor_close, random_tensor};

use std::io::Write;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this is a CI run, where missing fixtures or data are failures.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The folder where skips are recorded for `cargo xtask test` to count.
pub fn skips_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("test-skips")
}

/// Records that the calling test skipped its checks for `reason` (a GPU, a system package, the
/// network): printed, and written under [`skips_dir`] so the run's summary counts it.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    eprintln!("SKIPPED {test}: {reason}");
    let dir = skips_dir();
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.txt", std::process::id())))?;
        writeln!(f, "{test}: {reason}")
    });
    if let Err(e) = written {
        eprintln!("could not record the skip in {}: {e}", dir.display());
    }
}

/// `Some(path)` when `path` exists; otherwise `None` and a recorded [`skip`], or a panic in CI.
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(!in_ci(), "{what} missing in CI: {}", path.display());
    skip(&format!("{what} not found at {}", path.display()));
    None
}

/// A folder named by `var`, else `default`; it must exist (it ships with the repository).
fn dir_from(var: &str, default: PathBuf) -> PathBuf {
    let dir = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default);
    assert!(
        dir.is_dir(),
        "{} is not a folder (set by {var}, or shipped with the repository)",
        dir.display()
    );
    dir
}

/// The fixtures folder: `LIT_FIXTURES_DIR`, else the repository's `tests/fixtures`.
pub fn fixtures_dir() -> Option<PathBuf> {
    Some(dir_from(
        "LIT_FIXTURES_DIR",
        workspace_root().join("tests/fixtures"),
    ))
}

/// `reference.json` from the fixtures folder.
pub fn reference() -> Option<serde_json::Value> {
    let path = fixtures_dir()?.join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The real-data root (it holds `mnist/`): `LIT_DATA_DIR`, else the repository's `data/`.
pub fn data_root() -> Option<PathBuf> {
    Some(dir_from("LIT_DATA_DIR", workspace_root().join("data")))
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
