//! Project automation, run as `cargo xtask <command>`:
//!
//! - `train [--dev] [--features F] [-- ARGS]`: build and run the `mnist` binary (release profile;
//!   `--dev` reuses the test build instead). ARGS go to the binary: `fit` is assumed when they do
//!   not start with a subcommand.
//! - `test [ARGS]`: `cargo test --workspace ARGS`, then the number of tests that skipped for want
//!   of an outside resource (a GPU, a system package), with their reasons.
//! - `fixtures`: regenerate `tests/fixtures/` with PyTorch (`python3` with torch, torchmetrics and
//!   safetensors).
//! - `data [--from DIR] [--fashion]`: put MNIST (or Fashion-MNIST) into `data/`, copied from DIR
//!   or downloaded with curl, and check it against SHA256SUMS. `data --image-folder DIR` writes
//!   the shipped MNIST and Fashion-MNIST out as PNG class folders (and a 32 x 32 RGB variant).
//! - `new-model NAME` / `remove-model NAME`: add a model crate from the blank and register it, or
//!   undo that.
//! - `bench [--full | --allocators | --ddp]`: lit's Trainer against a bare Candle loop, or on
//!   glibc's malloc tuned (the default) against its defaults and mimalloc, or data-parallel
//!   processes (MPI) against one process with as many threads (see BENCHMARKS.md).
//! - `fuzz [TARGET...] [--runs N]`: the cargo-fuzz targets of `fuzz/` (IDX raw and gzipped,
//!   checkpoints, config files), each for N executions (default 1,000,000), on the nightly
//!   toolchain; installs cargo-fuzz when it is missing.
//! - `cuda-toolkit`: install NVIDIA's CUDA 13.0 toolkit wheels into `target/cuda-toolkit` (a
//!   virtual environment, plus the unversioned library names and driver stub the linker needs),
//!   and print the environment a `cuda` build uses.
//! - `dist [--features F]`: the `mnist` binary for shipping (profile `dist`: optimised, stripped)
//!   in `target/dist/`, xz-compressed beside it; with `cuda`, built against that toolkit.
//! - `ci`: what CI checks: fmt, clippy, tests.
//!
//! This crate depends on std and anyhow only, so it builds in seconds.
// xtask is a command-line tool: it talks to the user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

mod cuda;
mod data;
mod image_folder;
mod model;
mod tidy;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = env::args().skip(1).collect();
    if args.is_empty() {
        bail!("usage: cargo xtask <train|test|data|bench|fuzz|fixtures|new-model|remove-model|cuda-toolkit|dist|ci> [ARGS]");
    }
    let command = args.remove(0);
    absolutize_env("LIT_DATA_DIR")?;
    let _ = CALLER_DIR.set(env::current_dir().context("reading the current folder")?);
    env::set_current_dir(project_root()).context("entering the project root")?;
    match command.as_str() {
        "train" => train(args),
        "test" => test(&args),
        "ci" => ci(),
        "bench" => bench(&args),
        "fuzz" => fuzz(&args),
        "fixtures" => fixtures(),
        "data" => data::run(args),
        "cuda-toolkit" => cuda::toolkit(&args),
        "dist" => cuda::dist(&args),
        "new-model" => model::new_model(one_name(&args)?),
        "remove-model" => model::remove_model(one_name(&args)?),
        other => bail!("unknown xtask command '{other}'; expected train, test, data, bench, fuzz, fixtures, new-model, remove-model, cuda-toolkit, dist or ci"),
    }
}

/// Regenerates `tests/fixtures/` with PyTorch: the optimizer, schedule, loss, metric and
/// ExampleNet references, the layer references (batch norm, pooling, residual block), then with
/// scikit-learn the table split and its linear-regression reference.
fn fixtures() -> anyhow::Result<()> {
    let python = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    run_cmd(
        Command::new(&python)
            .arg("tests/fixtures/make_fixtures.py")
            .arg("1234")
            .arg("tests/fixtures"),
    )?;
    let out = Command::new(&python)
        .arg("tests/fixtures/make_layer_fixtures.py")
        .output()
        .context("running tests/fixtures/make_layer_fixtures.py")?;
    if !out.status.success() {
        bail!(
            "tests/fixtures/make_layer_fixtures.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write("tests/fixtures/layers.json", out.stdout)
        .context("writing tests/fixtures/layers.json")?;
    run_cmd(Command::new(&python).arg("tests/fixtures/make_table_fixtures.py"))
}

fn one_name(args: &[String]) -> anyhow::Result<&str> {
    match args {
        [name] => Ok(name),
        _ => bail!("expected exactly one NAME, got {args:?}"),
    }
}

/// The workspace root: the parent of this crate's folder.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The folder the command was given in (xtask then runs in the project root).
pub(crate) static CALLER_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes a relative path in `var` absolute against the caller's folder, before we change folder.
fn absolutize_env(var: &str) -> anyhow::Result<()> {
    if let Some(value) = env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        if path.is_relative() {
            let abs = env::current_dir()?.join(path);
            env::set_var(var, abs);
        }
    }
    Ok(())
}

fn cargo_bin() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

pub(crate) fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo(base: &[&str], extra: &[String]) -> anyhow::Result<()> {
    run_cmd(Command::new(cargo_bin()).args(base).args(extra))
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let run = [
        "run",
        "--quiet",
        "--release",
        "--package",
        "lit-bench",
        "--",
    ];
    if args.iter().any(|a| a == "--ddp") {
        return bench_ddp();
    }
    if args.iter().all(|a| a != "--allocators") {
        return cargo(&run, args);
    }
    // The same program on mimalloc; keep that binary aside before the default build replaces it.
    let build = ["build", "--quiet", "--release", "--package", "lit-bench"];
    cargo(&build, &["--features".to_string(), "mimalloc".to_string()])?;
    let dir = project_root().join("target").join("release");
    let mimalloc = dir.join("lit-bench-mimalloc");
    fs::copy(dir.join("lit-bench"), &mimalloc).context("keeping the mimalloc build")?;
    cargo(
        &run,
        &["--allocators".to_string(), mimalloc.display().to_string()],
    )
}

/// The data-parallel row: the same 300 steps of 64 examples as 2 processes x 1 thread (32 each)
/// and as 1 process x 2 threads, through the release `mnist` binary with MPI.
fn bench_ddp() -> anyhow::Result<()> {
    cargo(
        &[
            "build",
            "--quiet",
            "--release",
            "--package",
            "mnist",
            "--features",
            "mpi",
        ],
        &[],
    )?;
    let bin = project_root().join("target/release/mnist");
    let common = [
        "--max-epochs",
        "1",
        "--limit-train-batches",
        "300",
        "--limit-val-batches",
        "1",
        "--num-sanity-val-steps",
        "0",
        "--no-test",
        "--optimizer",
        "sgd",
        "--log-dir",
    ];
    let logs = env::temp_dir().join("lit-bench-ddp");
    let run = |extra: &[&str], threads: Option<&str>| -> anyhow::Result<(f64, String)> {
        let mut cmd = Command::new(&bin);
        cmd.args(common)
            .arg(&logs)
            .args(extra)
            .env("RUST_LOG", "off");
        if let Some(t) = threads {
            cmd.env("RAYON_NUM_THREADS", t);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("{extra:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // "epoch 1/1 (12.3s, 4567 samples/s)": rank 0's share of the epoch.
        let rate = text
            .split("samples/s)")
            .next()
            .and_then(|s| s.rsplit(", ").next())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .with_context(|| format!("no epoch line in {text}"))?;
        let reduce = text
            .lines()
            .find(|l| l.starts_with("data-parallel:"))
            .unwrap_or("")
            .to_string();
        Ok((rate, reduce))
    };
    println!("ExampleNet, 300 SGD steps of 64 MNIST examples, release build, MPI on this machine");
    let (one, _) = run(&["--batch-size", "64"], Some("2"))?;
    let (per_rank, reduce) = run(&["--batch-size", "32", "--devices", "2"], None)?;
    let two = per_rank * 2.0;
    println!("variant                     samples/s   ratio");
    println!("1 process x 2 threads       {one:>9.0}   1.000");
    println!("2 processes x 1 thread      {two:>9.0}   {:.3}", two / one);
    println!("{reduce}");
    Ok(())
}

/// The cargo-fuzz targets of `fuzz/fuzz_targets`.
const FUZZ_TARGETS: [&str; 4] = ["idx", "idx_gz", "checkpoint", "config"];

fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let mut runs = "1000000".to_string();
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a count")?.clone(),
            t if FUZZ_TARGETS.contains(&t) => targets.push(t),
            other => bail!(
                "cargo xtask fuzz: unknown target or option '{other}'; targets: {}, option: --runs N",
                FUZZ_TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    let has_fuzz = Command::new(cargo_bin())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        cargo(&["install", "cargo-fuzz", "--locked"], &[])?;
    }
    let dir = project_root().join("fuzz");
    for target in targets {
        println!("== fuzz {target}: {runs} executions");
        // The working corpus (ignored by git) first, where new inputs go; the committed seeds
        // (valid files of each format) after it.
        let corpus = dir.join("corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        run_cmd(
            Command::new("cargo")
                .current_dir(&dir)
                .env_remove("CARGO")
                .args(["+nightly", "fuzz", "run", target])
                .arg(&corpus)
                .arg(dir.join("seeds").join(target))
                .arg("--")
                .arg(format!("-runs={runs}"))
                .arg("-max_len=65536"),
        )?;
    }
    Ok(())
}

fn train(args: Vec<String>) -> anyhow::Result<()> {
    let (mut ours, mut theirs): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut it = args.into_iter();
    for a in it.by_ref() {
        if a == "--" {
            break;
        }
        ours.push(a);
    }
    theirs.extend(it);
    let mut cmd = Command::new(cargo_bin());
    cmd.args(["run", "--quiet", "--package", "mnist", "--bin", "mnist"]);
    let mut release = true;
    let mut ours = ours.into_iter();
    while let Some(a) = ours.next() {
        match a.as_str() {
            "--dev" => release = false,
            "--release" => release = true,
            "--features" => {
                let f = ours.next().context("--features needs a value")?;
                cmd.args(["--features", &f]);
            }
            other => bail!("cargo xtask train: unknown option '{other}' (options go after `--`)"),
        }
    }
    if release {
        cmd.arg("--release");
    }
    // A data-parallel run (more than one device or node, or --strategy ddp) needs MPI.
    if wants_parallel(&theirs) {
        cmd.args(["--features", "mpi"]);
    }
    cmd.arg("--");
    let subcommands = ["fit", "validate", "test", "predict", "check-device"];
    if theirs
        .first()
        .is_none_or(|a| !subcommands.contains(&a.as_str()) && a != "--help" && a != "-h")
    {
        cmd.arg("fit");
    }
    cmd.args(&theirs);
    run_cmd(&mut cmd)
}

/// Whether the app's arguments ask for a data-parallel run.
fn wants_parallel(args: &[String]) -> bool {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, value) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let value = || value.clone().or_else(|| it.clone().next().cloned());
        match flag {
            "--devices" | "--num-nodes"
                if value().is_some_and(|v| v.parse::<usize>().is_ok_and(|n| n > 1)) =>
            {
                return true
            }
            "--strategy" if value().as_deref() == Some("ddp") => return true,
            _ => {}
        }
    }
    false
}

/// Whether an MPI library to build against is installed (`mpicc` runs).
fn has_mpi() -> bool {
    Command::new("mpicc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo test --workspace ARGS`, then the count of tests that skipped for want of an outside
/// resource (recorded by `lit_testutil::skip` under `target/test-skips/`).
fn test(args: &[String]) -> anyhow::Result<()> {
    let skips = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
        .join("test-skips");
    match fs::remove_dir_all(&skips) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("clearing {}", skips.display())),
    }
    // The data-parallel tests run where MPI is installed (CI installs it); elsewhere they count as
    // skipped.
    let mut extra = Vec::new();
    if has_mpi() {
        extra.extend(["--features".to_string(), "mnist/mpi".to_string()]);
    }
    extra.extend(args.iter().cloned());
    let result = cargo(&["test", "--workspace"], &extra);
    let mut reasons = Vec::new();
    if let Ok(entries) = fs::read_dir(&skips) {
        for e in entries.flatten() {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            reasons.extend(text.lines().map(str::to_string));
        }
    }
    reasons.sort();
    println!(
        "tests skipped for want of an outside resource: {}",
        reasons.len()
    );
    for r in &reasons {
        println!("  skipped {r}");
    }
    result
}

/// The checks CI runs before its training run (`.ci/run` calls this): formatting, clippy (with
/// the `mpi` feature too where MPI is installed, and then with `cuda` and `nccl` against the
/// toolkit `cuda-toolkit` installs), unused dependencies, then the tests.
fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    if has_mpi() {
        cargo(
            &[
                "clippy",
                "-p",
                "mnist",
                "-p",
                "lit-distributed",
                "--all-targets",
                "--features",
                "mnist/mpi,lit-distributed/mpi",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )?;
        // `nccl` needs MPI as well as the CUDA toolkit.
        cuda::clippy()?;
    }
    unused_dependencies()?;
    test(&[])
}

/// Fails on a dependency no crate uses (cargo-machete, installed from crates.io on first use).
fn unused_dependencies() -> anyhow::Result<()> {
    let have = Command::new("cargo-machete")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        cargo(
            &["install", "--locked", "cargo-machete", "--version", "0.9.2"],
            &[],
        )?;
    }
    // Called directly: through a toolchain's own cargo it would take its name for a path.
    run_cmd(Command::new("cargo-machete").current_dir(project_root()))
}

/// Replaces `marker` in `path` with `insert` followed by the marker.
pub(crate) fn insert_before(path: &Path, marker: &str, insert: &str) -> anyhow::Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if !text.contains(marker) {
        bail!("{}: marker '{marker}' not found", path.display());
    }
    let line_start = text[..text.find(marker).unwrap_or(0)]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let mut out = String::with_capacity(text.len() + insert.len());
    out.push_str(&text[..line_start]);
    out.push_str(insert);
    out.push_str(&text[line_start..]);
    fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Removes every line equal to `line` from `path`.
pub(crate) fn remove_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let out: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| l.trim_end_matches('\n') != line)
        .collect();
    fs::write(path, out.concat()).with_context(|| format!("writing {}", path.display()))
}
