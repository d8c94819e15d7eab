//! Data-parallel training through the binary (`--devices 2`, two processes under mpirun): the
//! same weights as one process with the whole batch, one run directory, and metrics over the
//! whole validation set.

use std::collections::BTreeMap;
use std::path::Path;

use super::flags::{data, logged, run_dir};
use super::mnist;

/// Whether this build can run data-parallel; otherwise a recorded skip (a failure in CI, where
/// `cargo xtask test` turns the `mpi` feature on).
pub(crate) fn mpi_available() -> bool {
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
    let base = [
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--limit-train-batches",
        "20",
    ];
    let common = [&base[..], &["--max-epochs", "1"]].concat();
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

/// The process ids whose command line mentions `needle` (the data-parallel ranks of one run,
/// found through /proc), `mpirun` and `exclude` left out.
fn ranks(needle: &str, exclude: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != exclude)
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle) && !cmd.contains("mpirun") && !cmd.contains("orted")
        })
        .collect()
}

#[test]
fn a_killed_process_ends_the_run_quickly_and_last_resumes_it() {
    let Some(root) = data() else { return };
    if !mpi_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("killed-run-logs");
    let logs = logs.to_str().unwrap();
    let args = [
        "--devices",
        "2",
        "--max-epochs",
        "3",
        "--limit-train-batches",
        "150",
        "--limit-val-batches",
        "2",
        "--num-sanity-val-steps",
        "0",
        "--no-test",
        "--data-dir",
        &root,
        "--log-dir",
        logs,
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then kill one rank in the middle of the next epoch.
    let last = Path::new(logs).join("example_net/version_0/checkpoints/last.safetensors");
    let start = std::time::Instant::now();
    while !last.exists() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let victims = ranks(logs, child.id());
    assert_eq!(victims.len(), 2, "two ranks running: {victims:?}");
    std::process::Command::new("kill")
        .args(["-9", &victims[1].to_string()])
        .status()
        .unwrap();
    let killed = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed().as_secs() < 60,
            "the run still waits 60 s after a rank died"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "a run with a killed rank exits with an error"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("exited on signal 9"),
        "mpirun names the dead rank: {err}"
    );
    assert!(ranks(logs, 0).is_empty(), "no rank is left behind");
    // The run resumes from its last checkpoint.
    let out = mnist(tmp.path(), &[&args[..], &["--ckpt-path", "last"]].concat());
    assert!(
        out.status.success(),
        "resume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
