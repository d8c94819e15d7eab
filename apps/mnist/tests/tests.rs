//! The `mnist` binary as a user runs it: bad input gets a clear error and a non-zero exit, the
//! hyperparameters merge as documented, and a fast dev run trains on real data.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

mod bad_checkpoints;
mod bad_inputs;
mod flags;
mod image_folder;
mod outputs;
mod parallel;
mod signals;
mod table;

fn mnist(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .current_dir(dir)
        .env_remove("LIT_DATA_DIR")
        .env("RUST_LOG", "off")
        .output()
        .expect("running mnist")
}

/// The run directory `run`'s hparams.yaml, which must hold each of `lines` as a line.
fn hparams_lines(run: &Path, lines: &[&str]) -> String {
    let hparams = std::fs::read_to_string(run.join("hparams.yaml")).unwrap();
    for line in lines {
        assert!(
            hparams.lines().any(|l| l == *line),
            "{line} not in:\n{hparams}"
        );
    }
    hparams
}

/// Runs and expects success; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = mnist(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs and expects failure; returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = mnist(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

fn idx(rank: u8, dims: &[u32]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, rank];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.resize(v.len() + dims.iter().product::<u32>() as usize, 0);
    v
}

/// A data root with small valid MNIST-format files.
fn fake_data(root: &Path) -> std::path::PathBuf {
    let dir = root.join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx(3, &[8, 28, 28])).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(1, &[8])).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx(3, &[4, 28, 28])).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(1, &[4])).unwrap();
    dir
}

#[test]
fn unknown_names_list_what_is_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fails(tmp.path(), &["--model-name", "resnet9000"]);
    assert!(
        e.contains("unknown model 'resnet9000'") && e.contains("example_net, standard_net"),
        "{e}"
    );
    let e = fails(tmp.path(), &["--val-datasets", "mnist_val,cifar"]);
    assert!(
        e.contains("unknown dataset 'cifar'") && e.contains("mnist_val_shifted"),
        "{e}"
    );
    let e = fails(tmp.path(), &["--optimizer", "lion"]);
    assert!(e.contains("unknown optimizer 'lion'"), "{e}");
    let e = fails(tmp.path(), &["--lr-scheduler", "poly"]);
    assert!(e.contains("unknown lr scheduler 'poly'"), "{e}");
    let e = fails(tmp.path(), &["--loss", "hinge"]);
    assert!(e.contains("unknown loss 'hinge'"), "{e}");
}

#[test]
fn out_of_range_values_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fails(tmp.path(), &["--batch-size", "0"]);
    assert!(e.contains("batch_size") && e.contains("at least 1"), "{e}");
    let e = fails(tmp.path(), &["--lr", "-0.1"]);
    assert!(e.contains("'lr'") && e.contains("-0.1"), "{e}");
}

#[test]
fn missing_data_names_the_file_and_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fails(tmp.path(), &["--fast-dev-run"]);
    assert!(
        e.contains("train-images-idx3-ubyte")
            && e.contains("LIT_DATA_DIR")
            && e.contains("cargo xtask data"),
        "{e}"
    );
}

#[test]
fn corrupt_files_are_named_with_expected_and_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fake_data(tmp.path());
    let root = tmp.path().to_str().unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(3, &[8, 1, 1])).unwrap();
    let e = fails(tmp.path(), &["--fast-dev-run", "--data-dir", root]);
    assert!(
        e.contains("train-labels-idx1-ubyte")
            && e.contains("expected 0x00000801")
            && e.contains("found 0x00000803"),
        "{e}"
    );
    let mut truncated = idx(1, &[8]);
    truncated.truncate(10);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), truncated).unwrap();
    let e = fails(tmp.path(), &["--fast-dev-run", "--data-dir", root]);
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("truncated") && e.contains("8 bytes"),
        "{e}"
    );
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(1, &[7])).unwrap();
    let e = fails(tmp.path(), &["--fast-dev-run", "--data-dir", root]);
    assert!(e.contains("7 labels for 8 images"), "{e}");
}

#[test]
fn hyperparameters_merge_defaults_config_file_flags_and_set() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("run.yaml"),
        "max_epochs: 7\nlr: 0.5\nhid: 3\n",
    )
    .unwrap();
    let out = mnist(
        tmp.path(),
        &[
            "--config",
            "run.yaml",
            "--lr",
            "0.01",
            "--model-name",
            "standard_net",
            "--set",
            "hid=17",
            "--print-config",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    for line in [
        "max_epochs: 7",
        "lr: 0.01",
        "hid: 17",
        "batch_size: 64",
        "model_name: standard_net",
        // The data side's keys, from its configs, with their defaults.
        "aug_prob: 0.5",
        "shift_pixels: 2",
        "normalize_std: null",
        "num_workers: 1",
    ] {
        assert!(yaml.lines().any(|l| l == line), "{line} not in:\n{yaml}");
    }
}

#[test]
fn fast_dev_run_on_real_mnist_writes_no_run_directory() {
    let Some(root) = lit_testutil::data_root() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = mnist(
        tmp.path(),
        &["--fast-dev-run", "--data-dir", root.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("val_acc/mnist_val_shifted") && stdout.contains("test_acc"),
        "{stdout}"
    );
    assert!(!tmp.path().join("logs").exists());
}

#[test]
fn a_misspelt_monitor_fails_before_the_first_epoch_ends() {
    let Some(root) = lit_testutil::data_root() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--monitor",
        "val_acc/typo",
        "--limit-train-batches",
        "3",
        "--limit-val-batches",
        "2",
        "--data-dir",
        root.to_str().unwrap(),
    ];
    let e = fails(tmp.path(), &args);
    assert!(
        e.contains("'val_acc/typo' was never logged") && e.contains("val_acc/mnist_val"),
        "{e}"
    );
    let out = mnist(tmp.path(), &args);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("epoch 1/"),
        "an epoch finished"
    );
}

#[test]
fn a_short_fit_writes_every_artifact_without_nested_folders() {
    let Some(root) = lit_testutil::data_root() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = mnist(
        tmp.path(),
        &[
            "--max-epochs",
            "2",
            "--limit-train-batches",
            "4",
            "--limit-val-batches",
            "2",
            "--limit-test-batches",
            "2",
            "--checkpoint-filename",
            "best_{epoch}_{val_acc/mnist_val:.4f}",
            "--data-dir",
            root.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Total params") && stdout.contains("best model: "),
        "{stdout}"
    );
    let run = tmp.path().join("logs/example_net/version_0");
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in ["metrics.csv", "hparams.yaml", "curves.png", "checkpoints"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("events.out.tfevents.")),
        "{names:?}"
    );
    for e in std::fs::read_dir(run.join("checkpoints")).unwrap() {
        let e = e.unwrap();
        assert!(
            e.file_type().unwrap().is_file(),
            "nested folder {:?}",
            e.path()
        );
        assert!(e.file_name().to_string_lossy().ends_with(".safetensors"));
    }
}

#[test]
fn evaluation_takes_the_networks_hyperparameters_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("data");
    fake_data(&root);
    let root = root.to_str().unwrap();
    let fit = mnist(
        dir,
        &[
            "--data-dir",
            root,
            "--val-datasets",
            "",
            "--no-test",
            "--max-epochs",
            "1",
            "--model-name",
            "standard_net",
            "--set",
            "hid=16",
            "--early-stopping-patience",
            "0",
            "--monitor",
            "train_loss_epoch",
            "--mode",
            "min",
        ],
    );
    assert!(fit.status.success(), "{fit:?}");
    let ckpt = dir.join("logs/standard_net/version_0/checkpoints/last.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    // Neither the model's name nor its hidden size repeated: both come from the checkpoint.
    for command in ["test", "validate", "predict"] {
        let out = mnist(
            dir,
            &[
                command,
                "--data-dir",
                root,
                "--ckpt-path",
                ckpt,
                // The fake data set is too small for MNIST's own validation split.
                "--val-datasets",
                "mnist_test",
            ],
        );
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // fit resumes it the same way, and its run's hparams.yaml is a config whose null keys
    // (max_steps, ckpt_path) flags may set.
    let resumed = mnist(
        dir,
        &[
            "--data-dir",
            root,
            "--val-datasets",
            "",
            "--no-test",
            "--max-epochs",
            "2",
            "--ckpt-path",
            ckpt,
            "--early-stopping-patience",
            "0",
            "--monitor",
            "train_loss",
            "--mode",
            "min",
        ],
    );
    assert!(resumed.status.success(), "{resumed:?}");
    let hparams = dir.join("logs/standard_net/version_0/hparams.yaml");
    let config = mnist(
        dir,
        &[
            "--config",
            hparams.to_str().unwrap(),
            "--max-steps",
            "5",
            "--print-config",
        ],
    );
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(
        config.status.success() && text.contains("max_steps: 5") && text.contains("hid: 16"),
        "{config:?}"
    );
    // A value given that contradicts the checkpoint is an error naming both.
    let e = fails(
        dir,
        &[
            "test",
            "--data-dir",
            root,
            "--ckpt-path",
            ckpt,
            "--set",
            "hid=32",
        ],
    );
    assert!(
        e.contains("--set hid=32 gives hid = 32") && e.contains("trained with hid = 16"),
        "{e}"
    );
    let e = fails(
        dir,
        &[
            "test",
            "--data-dir",
            root,
            "--ckpt-path",
            ckpt,
            "--model-name",
            "example_net",
        ],
    );
    assert!(
        e.contains("--model-name gives model_name = \"example_net\"")
            && e.contains("\"standard_net\""),
        "{e}"
    );
}
