//! Data-parallel training through the binary (`--devices 2`, two processes under mpirun): the
//! same weights as one process with the whole batch, one run directory, and metrics over the
//! whole validation set.

use std::collections::BTreeMap;
use std::path::Path;

use super::flags::{data, logged, run_dir};
use super::mnist;

/// Whether this build can run data-parallel; otherwise a recorded skip (a failure in CI, where
/// `cargo xtask test` turns the `mpi` feature on).
fn mpi_available() -> bool {
    if cfg!(feature = "mpi") {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("built without the `mpi` feature: CI runs `cargo xtask test`, which turns it on");
    }
    lit_testutil::skip("built without the `mpi` feature (cargo xtask test turns it on)");
    false
}

fn run(dir: &Path, root: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend([
        "--data-dir",
        root,
        "--num-sanity-val-steps",
        "0",
        "--no-test",
    ]);
    let out = mnist(dir, &all);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{all:?} failed: {stdout}\n{stderr}");
    stdout.into_owned()
}

/// The weights of a checkpoint (optimizer state left out) as f32 vectors by name.
fn weights(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("optimizer."))
        .map(|(k, v)| {
            let f = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, f)
        })
        .collect()
}

#[test]
fn two_processes_with_half_batches_match_one_with_the_whole_batch() {
    let Some(root) = data() else { return };
    if !mpi_available() {
        return;
    }
    let (two, one) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let common = [
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--max-epochs",
        "1",
        "--limit-train-batches",
        "20",
    ];
    let out = run(
        two.path(),
        &root,
        &[&common[..], &["--devices", "2", "--batch-size", "32"]].concat(),
    );
    run(
        one.path(),
        &root,
        &[&common[..], &["--batch-size", "64"]].concat(),
    );
    // One run directory, written once.
    let runs: Vec<_> = std::fs::read_dir(two.path().join("logs/example_net"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1, "one run directory: {out}");
    assert_eq!(
        out.matches("run directory:").count(),
        1,
        "rank 0 alone reports: {out}"
    );
    // 20 SGD steps on the same 64 examples each: every weight agrees within float rounding.
    let ckpt = |d: &Path| run_dir(d, 0).join("checkpoints/last.safetensors");
    let (a, b) = (weights(&ckpt(two.path())), weights(&ckpt(one.path())));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, wa) in &a {
        let wb = &b[name];
        let scale = wb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = wa
            .iter()
            .zip(wb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "{name}: off by {diff} (scale {scale})"
        );
    }
    // The merged val_acc is the accuracy on the whole validation set: what one process
    // validating the same checkpoint gives.
    let merged: f64 = logged(&run_dir(two.path(), 0), "val_acc/mnist_val")
        .last()
        .unwrap()
        .parse()
        .unwrap();
    let path = ckpt(two.path());
    let validate = mnist(
        two.path(),
        &[
            "validate",
            "--data-dir",
            &root,
            "--ckpt-path",
            path.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&validate.stdout);
    let single: f64 = text
        .lines()
        .find(|l| l.contains("val_acc/mnist_val "))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no val_acc/mnist_val in {text}"));
    assert!(
        (merged - single).abs() <= 2e-4,
        "merged {merged}, one process {single}"
    );
}
