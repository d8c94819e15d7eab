//! Each documented flag through the binary, alone and combined, on real MNIST: what a Lightning
//! user would try (validation every N epochs with early stopping, a time limit mid-epoch, resume
//! after a step limit), with what must hold afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{fails, mnist};

/// The real-data root, or `None` (a loud skip outside CI).
pub(crate) fn data() -> Option<String> {
    lit_testutil::data_root().map(|p| p.to_string_lossy().into_owned())
}

/// The small limits `ok` adds to every run (and the signal tests to theirs, so they compare).
pub(crate) const LIMITS: [&str; 6] = [
    "--limit-val-batches",
    "2",
    "--limit-test-batches",
    "1",
    "--num-sanity-val-steps",
    "1",
];

/// Runs `mnist` with `args` plus small limits on real data and expects success; returns stdout.
pub(crate) fn ok(dir: &Path, root: &str, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", root]);
    all.extend(LIMITS);
    let out = mnist(dir, &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{all:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub(crate) fn run_dir(dir: &Path, version: usize) -> PathBuf {
    dir.join(format!("logs/example_net/version_{version}"))
}

/// The `lit` metadata of a checkpoint (read from the safetensors header).
pub(crate) fn meta(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_str(header["__metadata__"]["lit"].as_str().unwrap()).unwrap()
}

/// Every tensor of a checkpoint, as raw bytes by name.
pub(crate) fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect()
}

/// The rows of `metrics.csv` as maps from column to value (empty cells left out).
fn metrics(run: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The values logged under `key`, in order.
pub(crate) fn logged(run: &Path, key: &str) -> Vec<String> {
    metrics(run)
        .into_iter()
        .filter_map(|r| r.get(key).cloned())
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The text `--help` gives for `flag`, up to the next option.
fn help_of(flag: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let help = String::from_utf8_lossy(&mnist(tmp.path(), &["--help"]).stdout).into_owned();
    let start = help
        .find(&format!("{flag} <"))
        .unwrap_or_else(|| panic!("{flag} not in --help"));
    let rest = &help[start..];
    let end = rest[2..].find("\n  -").map_or(rest.len(), |e| e + 2);
    rest[..end].replace('\n', " ")
}

/// The names a `--help` entry lists after its colon ("The optimizer: sgd, adam or rmsprop.").
fn names_in_help(flag: &str) -> Vec<String> {
    let text = help_of(flag);
    let list = text.split_once(": ").unwrap().1;
    let list = list.split_once('.').unwrap().0;
    list.replace(" or ", ", ")
        .split(", ")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(""))
        .collect()
}

/// Resumes run 0 of `dir` from its `last` with `base`, runs `base` straight through, and asserts
/// that both end with the same weights and optimizer state, bit for bit, and log the same epoch
/// means. Returns the resumed and the straight run's folders.
pub(crate) fn resume_matches_a_straight_run(
    dir: &Path,
    root: &str,
    base: &[&str],
) -> (PathBuf, PathBuf) {
    resume_matches_a_straight_run_of("example_net", dir, root, base)
}

/// [`resume_matches_a_straight_run`] for the runs of `model`.
fn resume_matches_a_straight_run_of(
    model: &str,
    dir: &Path,
    root: &str,
    base: &[&str],
) -> (PathBuf, PathBuf) {
    ok(dir, root, &[base, &["--ckpt-path", "last"]].concat());
    ok(dir, root, base);
    let run = |v: usize| dir.join(format!("logs/{model}/version_{v}"));
    let (resumed, straight) = (run(1), run(2));
    assert_eq!(
        tensors(&resumed.join("checkpoints/last.safetensors")),
        tensors(&straight.join("checkpoints/last.safetensors")),
        "weights and optimizer state after resume differ from the uninterrupted run"
    );
    // The resumed run logs the epochs it ran (all of them after a mid-epoch stop), with the
    // straight run's values: a resumed epoch's mean covers the batches before the stop.
    let (after, all) = (
        logged(&resumed, "train_loss_epoch"),
        logged(&straight, "train_loss_epoch"),
    );
    assert!(
        !after.is_empty() && all.ends_with(&after),
        "epoch means after resume {after:?}, straight run {all:?}"
    );
    (resumed, straight)
}

#[test]
fn every_choice_that_help_offers_trains() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (flag, extra) in [
        ("--optimizer", &[][..]),
        (
            "--lr-scheduler",
            &["--lr-interval", "step", "--milestones", "1"][..],
        ),
        ("--loss", &[][..]),
        ("--precision", &[][..]),
    ] {
        let names = names_in_help(flag);
        assert!(names.len() >= 4, "{flag}: {names:?}");
        for name in names {
            let mut args = vec!["--fast-dev-run", "2", flag, name.as_str()];
            args.extend(extra);
            ok(tmp.path(), &root, &args);
        }
    }
    let metrics = help_of("--metric");
    for name in [
        "accuracy",
        "accuracy_macro",
        "precision",
        "recall",
        "f1",
        "f1_weighted",
        "auroc",
    ] {
        assert!(metrics.contains(name), "{metrics}");
    }
    let out = ok(
        tmp.path(),
        &root,
        &[
            "--fast-dev-run",
            "--metric",
            "accuracy,accuracy_macro,precision,recall,f1,f1_weighted,auroc,top3_accuracy",
        ],
    );
    assert!(
        out.contains("test_top3_acc") && out.contains("test_auroc"),
        "{out}"
    );
}

#[test]
fn validation_every_second_epoch_with_early_stopping_and_checkpoints() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(
        tmp.path(),
        &root,
        &[
            "--max-epochs",
            "4",
            "--limit-train-batches",
            "3",
            "--check-val-every-n-epoch",
            "2",
            "--early-stopping-patience",
            "1",
            "--save-top-k",
            "2",
        ],
    );
    assert!(
        out.contains("epoch 4/4") || out.contains("early stopping"),
        "{out}"
    );
    let run = run_dir(tmp.path(), 0);
    let epochs_with_val: Vec<String> = metrics(&run)
        .into_iter()
        .filter(|r| r.contains_key("val_acc/mnist_val"))
        .map(|r| r["epoch"].clone())
        .collect();
    assert_eq!(
        epochs_with_val,
        ["1", "3"][..epochs_with_val.len()],
        "{out}"
    );
    let ckpts = files(&run.join("checkpoints"));
    assert!(ckpts.iter().any(|f| f.starts_with("epoch=1-")), "{ckpts:?}");
    assert!(
        !ckpts.iter().any(|f| f.starts_with("epoch=0-")),
        "{ckpts:?}"
    );
    assert!(ckpts.contains(&"last.safetensors".to_string()));
}

#[test]
fn max_time_stops_within_a_batch_and_the_run_resumes_bit_exactly() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, epoch) = (
        tmp.path(),
        [
            "--max-epochs",
            "1",
            "--limit-train-batches",
            "6",
            "--no-test",
        ],
    );
    let out = ok(dir, &root, &[&epoch[..], &["--max-time", "0"]].concat());
    assert!(out.contains("time limit"), "{out}");
    let last = run_dir(dir, 0).join("checkpoints/last.safetensors");
    let m = meta(&last);
    assert_eq!(
        (m["resume_epoch"].as_u64(), m["resume_batch"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(m["global_step"], 1, "stopped after one batch");
    // The epoch is not over: no validation until a resume ends it; its training means so far
    // are logged, as Lightning logs an epoch a limit stopped.
    assert!(logged(&run_dir(dir, 0), "val_acc/mnist_val").is_empty());
    assert_eq!(logged(&run_dir(dir, 0), "train_loss_epoch").len(), 1);
    assert!(
        out.contains("epoch 1/1 stopped after batch 1 of 6"),
        "{out}"
    );
    let (resumed, _) = resume_matches_a_straight_run(dir, &root, &epoch);
    assert_eq!(
        meta(&resumed.join("checkpoints/last.safetensors"))["global_step"],
        6
    );
}

#[test]
fn max_steps_mid_epoch_resumes_where_it_stopped() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--max-epochs",
        "2",
        "--limit-train-batches",
        "5",
        "--no-test",
    ];
    ok(dir, &root, &[&base[..], &["--max-steps", "3"]].concat());
    let m = meta(&run_dir(dir, 0).join("checkpoints/last.safetensors"));
    assert_eq!(
        (m["resume_epoch"].as_u64(), m["resume_batch"].as_u64()),
        (Some(0), Some(3))
    );
    let (resumed, _) = resume_matches_a_straight_run(dir, &root, &base);
    assert_eq!(
        meta(&resumed.join("checkpoints/last.safetensors"))["global_step"],
        10
    );
}

#[test]
fn a_resumed_run_keeps_every_file_of_the_run_it_resumed() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = ["--limit-train-batches", "3", "--no-test"];
    ok(dir, &root, &[&base[..], &["--max-epochs", "2"]].concat());
    let before = files(&run_dir(dir, 0).join("checkpoints"));
    assert!(before.len() >= 2, "{before:?}");
    ok(
        dir,
        &root,
        &[&base[..], &["--max-epochs", "4", "--ckpt-path", "last"]].concat(),
    );
    assert_eq!(files(&run_dir(dir, 0).join("checkpoints")), before);
    assert!(files(&run_dir(dir, 1).join("checkpoints")).len() >= 2);
}

#[test]
fn ckpt_path_last_skips_a_run_killed_before_its_first_checkpoint() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = ["--limit-train-batches", "2", "--no-test"];
    ok(dir, &root, &[&base[..], &["--max-epochs", "1"]].concat());
    // A run killed while writing its first checkpoint: only a temporary file of a dead process.
    let killed = run_dir(dir, 1).join("checkpoints");
    std::fs::create_dir_all(&killed).unwrap();
    let stale = killed.join(".last.safetensors.4000000000.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let out = ok(
        dir,
        &root,
        &[&base[..], &["--ckpt-path", "last", "--max-epochs", "2"]].concat(),
    );
    assert!(
        out.contains("version_0/checkpoints/last.safetensors"),
        "{out}"
    );
    assert!(
        !stale.exists(),
        "the stale temporary file was not cleaned up"
    );
}

#[test]
fn checkpoint_filenames_cannot_leave_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["../..", "../escape", "/tmp/x-{epoch}", "..", "a/b"] {
        let e = fails(tmp.path(), &["--checkpoint-filename", name]);
        assert!(
            e.contains("checkpoint filename") && e.contains("without folders"),
            "{e}"
        );
    }
    assert!(!tmp.path().join("logs").exists());
}

#[test]
fn predict_writes_classes_and_probabilities_into_the_run_directory() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &root,
        &[
            "--limit-train-batches",
            "2",
            "--max-epochs",
            "1",
            "--no-test",
        ],
    );
    // Predict has its own limit (it used to follow --limit-test-batches, which `ok` sets).
    let out = ok(
        dir,
        &root,
        &[
            "predict",
            "--ckpt-path",
            "last",
            "--limit-predict-batches",
            "1",
        ],
    );
    assert!(
        !dir.join("predictions.csv").exists(),
        "written in the current folder"
    );
    let csv = std::fs::read_to_string(run_dir(dir, 1).join("predictions.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header,
        "dataset,index,prediction,prob_0,prob_1,prob_2,prob_3,prob_4,prob_5,prob_6,prob_7,prob_8,prob_9"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 64, "{out}");
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        let probs: Vec<f64> = cells[3..].iter().map(|c| c.parse().unwrap()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row}");
        let best = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(cells[2], best.to_string(), "{row}");
    }
    let out_file = dir.join("out.csv");
    ok(
        dir,
        &root,
        &[
            "predict",
            "--ckpt-path",
            "last",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(out_file.is_file());
    assert!(!files(dir).iter().any(|f| f.ends_with(".tmp")));
}

#[test]
fn early_stopping_thresholds_strictness_and_min_epochs() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--limit-train-batches",
        "2",
        "--max-epochs",
        "3",
        "--no-test",
    ];
    let out = ok(
        dir,
        &root,
        &[&base[..], &["--stopping-threshold", "0.0"]].concat(),
    );
    assert!(
        out.contains("stopping threshold reached") && !out.contains("epoch 2/3"),
        "{out}"
    );
    let out = ok(
        dir,
        &root,
        &[&base[..], &["--divergence-threshold", "2.0"]].concat(),
    );
    assert!(
        out.contains("divergence threshold reached") && !out.contains("epoch 2/3"),
        "{out}"
    );
    let out = ok(
        dir,
        &root,
        &[
            &base[..],
            &["--stopping-threshold", "0.0", "--min-epochs", "2"],
        ]
        .concat(),
    );
    assert!(
        out.contains("epoch 2/3") && !out.contains("epoch 3/3"),
        "{out}"
    );
    let out = ok(
        dir,
        &root,
        &[&base[..], &["--monitor", "val_typo", "--no-strict"]].concat(),
    );
    assert!(out.contains("epoch 3/3"), "{out}");
    let e = fails(
        dir,
        &[&base[..], &["--monitor", "val_typo", "--data-dir", &root]].concat(),
    );
    assert!(e.contains("'val_typo' was never logged"), "{e}");
}

#[test]
fn overfit_batches_trains_and_validates_on_the_same_few_batches() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &root,
        &[
            "--overfit-batches",
            "2",
            "--max-epochs",
            "3",
            "--no-test",
            "--lr",
            "0.003",
        ],
    );
    let m = meta(&run_dir(dir, 0).join("checkpoints/last.safetensors"));
    assert_eq!(m["global_step"], 6, "two batches an epoch");
    let losses: Vec<f64> = logged(&run_dir(dir, 0), "train_loss_epoch")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        losses[2] < losses[0],
        "the same batches are learnt: {losses:?}"
    );
}

#[test]
fn resuming_with_another_optimizer_is_refused_unless_weights_only() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--limit-train-batches",
        "2",
        "--max-epochs",
        "1",
        "--no-test",
    ];
    ok(dir, &root, &base);
    let e = fails(
        dir,
        &[
            &base[..],
            &[
                "--ckpt-path",
                "last",
                "--optimizer",
                "sgd",
                "--momentum",
                "0.9",
                "--data-dir",
                &root,
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("Adam") && e.contains("SGD") && e.contains("--ckpt-weights-only"),
        "{e}"
    );
    ok(
        dir,
        &root,
        &[
            &base[..],
            &[
                "--ckpt-path",
                "last",
                "--optimizer",
                "sgd",
                "--ckpt-weights-only",
            ],
        ]
        .concat(),
    );
}

#[test]
fn plateau_cuts_by_a_tenth_by_default() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Patience 0 in max mode on a falling val_loss: the second epoch is "worse" and cuts the rate.
    ok(
        dir,
        &root,
        &[
            "--limit-train-batches",
            "3",
            "--max-epochs",
            "3",
            "--no-test",
            "--lr-scheduler",
            "plateau",
            "--set",
            "plateau_patience=0",
            "--set",
            "plateau_mode=max",
            "--early-stopping-patience",
            "0",
        ],
    );
    let lrs: Vec<f64> = logged(&run_dir(dir, 0), "lr-Adam")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let cut = lrs
        .windows(2)
        .find(|w| w[1] < w[0])
        .expect("the rate was never cut");
    assert!((cut[1] / cut[0] - 0.1).abs() < 1e-9, "{lrs:?}");
}

#[test]
fn a_time_limit_with_gradient_accumulation_stops_at_a_step_and_resumes_bit_exactly() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--max-epochs",
        "1",
        "--limit-train-batches",
        "6",
        "--accumulate-grad-batches",
        "2",
        "--no-test",
    ];
    ok(dir, &root, &[&base[..], &["--max-time", "0"]].concat());
    let m = meta(&run_dir(dir, 0).join("checkpoints/last.safetensors"));
    assert_eq!(
        m["resume_batch"], 2,
        "the stop waits for the accumulated step"
    );
    assert_eq!(m["global_step"], 1);
    ok(dir, &root, &[&base[..], &["--ckpt-path", "last"]].concat());
    ok(dir, &root, &base);
    assert_eq!(
        tensors(&run_dir(dir, 1).join("checkpoints/last.safetensors")),
        tensors(&run_dir(dir, 2).join("checkpoints/last.safetensors"))
    );
}

#[test]
fn min_epochs_holds_back_a_time_limit_for_whole_epochs() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = ok(
        dir,
        &root,
        &[
            "--max-epochs",
            "4",
            "--min-epochs",
            "2",
            "--max-time",
            "0",
            "--limit-train-batches",
            "3",
            "--no-test",
        ],
    );
    // The stop asked for in the first batch waits for two whole epochs, then ends the fit at
    // the end of the second, as in Lightning.
    assert!(
        out.contains("epoch 2/4 (") && !out.contains("epoch 3/4"),
        "{out}"
    );
    let m = meta(&run_dir(dir, 0).join("checkpoints/last.safetensors"));
    assert_eq!(
        (m["resume_epoch"].as_u64(), m["resume_batch"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(logged(&run_dir(dir, 0), "train_loss_epoch").len(), 2);
}

#[test]
fn a_warmup_starts_at_its_first_rate_and_lr_is_logged_for_the_epoch_it_runs() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // torch: LinearLR(opt, start_factor=0.01, total_iters=2) with lr 1e-3 runs epoch 0 at 1e-5
    // and epoch 1 at 1e-3 * (0.01 + 0.99 / 2) = 5.05e-4.
    ok(
        dir,
        &root,
        &[
            "--warmup-steps",
            "2",
            "--max-epochs",
            "2",
            "--limit-train-batches",
            "3",
            "--no-test",
        ],
    );
    let rows: Vec<(String, f64)> = metrics(&run_dir(dir, 0))
        .into_iter()
        .filter_map(|r| Some((r.get("epoch")?.clone(), r.get("lr-Adam")?.parse().ok()?)))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "0");
    assert!((rows[0].1 - 1e-5).abs() < 1e-12, "{rows:?}");
    assert_eq!(rows[1].0, "1");
    assert!((rows[1].1 - 5.05e-4).abs() < 1e-12, "{rows:?}");
}

#[test]
fn checkpoint_filename_templates_pad_and_fail_early_on_unknown_keys() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--max-epochs",
        "1",
        "--limit-train-batches",
        "3",
        "--no-test",
    ];
    ok(
        dir,
        &root,
        &[
            &base[..],
            &["--checkpoint-filename", "{epoch:02d}-{step:04d}"],
        ]
        .concat(),
    );
    let ckpts = files(&run_dir(dir, 0).join("checkpoints"));
    assert!(
        ckpts.contains(&"epoch=00-step=0003.safetensors".to_string()),
        "{ckpts:?}"
    );
    // With two validation sets the key is val_acc/<set>: refused at the sanity check.
    let bad = [
        "--checkpoint-filename",
        "best-{epoch}-{val_acc:.4f}",
        "--data-dir",
        &root,
    ];
    let e = fails(dir, &[&base[..], &bad[..]].concat());
    assert!(
        e.contains("'val_acc' was never logged") && e.contains("val_acc/mnist_val"),
        "{e}"
    );
    assert!(!run_dir(dir, 1).join("checkpoints").exists());
}

#[test]
fn val_check_interval_beyond_the_epoch_is_refused_before_the_run_starts() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--val-check-interval",
        "25",
        "--limit-train-batches",
        "20",
        "--data-dir",
        &root,
    ];
    let e = fails(tmp.path(), &args);
    assert!(
        e.contains("val_check_interval = 25") && e.contains("20 training batches"),
        "{e}"
    );
    assert!(!tmp.path().join("logs").exists());
}

#[test]
fn a_resumed_runs_hparams_repeat_it_rather_than_resume_again() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = ["--limit-train-batches", "2", "--no-test"];
    ok(dir, &root, &[&base[..], &["--max-epochs", "1"]].concat());
    ok(
        dir,
        &root,
        &[&base[..], &["--ckpt-path", "last", "--max-epochs", "2"]].concat(),
    );
    let yaml = std::fs::read_to_string(run_dir(dir, 1).join("hparams.yaml")).unwrap();
    assert!(yaml.lines().any(|l| l == "ckpt_path: null"), "{yaml}");
}

#[test]
fn reduced_precision_runs_resume_bit_exact_and_save_f32_weights() {
    let Some(root) = data() else { return };
    // 16-mixed runs as bf16-mixed on the CPU (as in Lightning); the loss scale's save and
    // restore are unit-tested in lit-core's precision module.
    for precision in ["bf16-mixed", "bf16-true"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let base = [
            "--max-epochs",
            "2",
            "--limit-train-batches",
            "5",
            "--no-test",
            "--precision",
            precision,
        ];
        ok(dir, &root, &[&base[..], &["--max-steps", "3"]].concat());
        let last = run_dir(dir, 0).join("checkpoints/last.safetensors");
        let bytes = std::fs::read(&last).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            if !name.starts_with("optimizer.") {
                assert_eq!(
                    view.dtype(),
                    safetensors::Dtype::F32,
                    "{precision}: {name} is stored in f32"
                );
            }
        }
        let (resumed, _) = resume_matches_a_straight_run(dir, &root, &base);
        assert_eq!(
            meta(&resumed.join("checkpoints/last.safetensors"))["global_step"],
            10,
            "{precision}"
        );
    }
}

#[test]
fn bf16_mixed_trains_example_net_to_98_percent_in_one_epoch() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    ok(
        tmp.path(),
        &root,
        &["--max-epochs", "1", "--precision", "bf16-mixed"],
    );
    let acc: f64 = logged(&run_dir(tmp.path(), 0), "test_acc")
        .last()
        .expect("test_acc logged")
        .parse()
        .unwrap();
    assert!(acc >= 0.98, "bf16-mixed, 1 epoch: test accuracy {acc}");
}

#[test]
fn resnet_with_batch_norm_dropout_and_augmentation_resumes_bit_exactly() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Every transform, dropout on half the features, batch norm everywhere; two workers, so
    // batches are gathered on other threads.
    let base = [
        "--model-name",
        "resnet",
        "--augment",
        "crop,flip,affine",
        "--aug-prob",
        "0.7",
        "--set",
        "dropout=0.5",
        "--num-workers",
        "2",
        "--limit-train-batches",
        "4",
        "--no-test",
    ];
    ok(dir, &root, &[&base[..], &["--max-epochs", "2"]].concat());
    let three = [&base[..], &["--max-epochs", "3"]].concat();
    let (resumed, _) = resume_matches_a_straight_run_of("resnet", dir, &root, &three);
    let last = tensors(&resumed.join("checkpoints/last.safetensors"));
    // The buffers are in the checkpoint, and they moved: 3 epochs of 4 batches.
    assert_eq!(
        last["bn1.num_batches_tracked"],
        12i64.to_le_bytes().to_vec(),
        "num_batches_tracked, int64"
    );
    assert!(last.contains_key("layer3.0.downsample.1.running_var"));
    // And from the middle of an epoch (step 6 of 4-batch epochs).
    let mid = tempfile::tempdir().unwrap();
    ok(
        mid.path(),
        &root,
        &[&three[..], &["--max-steps", "6"]].concat(),
    );
    resume_matches_a_straight_run_of("resnet", mid.path(), &root, &three);
    let model_summary = ok(dir, &root, &[&base[..], &["--fast-dev-run"]].concat());
    assert!(
        model_summary.contains("0            Non-trainable params")
            && !model_summary.contains("running_mean"),
        "buffers are not counted as parameters:\n{model_summary}"
    );
}

#[test]
fn augmentation_flags_change_the_training_images_only() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--limit-train-batches",
        "3",
        "--max-epochs",
        "1",
        "--no-test",
    ];
    let weights = |v: usize| tensors(&run_dir(dir, v).join("checkpoints/last.safetensors"));
    let loss = |v: usize| logged(&run_dir(dir, v), "train_loss_epoch");
    // MNIST's own (auto) augmentation is none, the same as --no-augment, --augment none and a
    // probability of 0.
    ok(dir, &root, &base);
    ok(dir, &root, &[&base[..], &["--no-augment"]].concat());
    ok(dir, &root, &[&base[..], &["--augment", "none"]].concat());
    ok(
        dir,
        &root,
        &[&base[..], &["--augment", "crop,flip", "--aug-prob", "0"]].concat(),
    );
    for v in 1..4 {
        assert_eq!(weights(0), weights(v), "run {v} trained on other images");
    }
    // Transforms change what trains; --no-augment overrides a list.
    ok(
        dir,
        &root,
        &[&base[..], &["--augment", "crop,flip", "--aug-prob", "1"]].concat(),
    );
    ok(dir, &root, &[&base[..], &["--augment", "affine"]].concat());
    ok(
        dir,
        &root,
        &[&base[..], &["--augment", "affine", "--no-augment"]].concat(),
    );
    assert_ne!(loss(0), loss(4), "crop and flip change the training loss");
    assert_ne!(loss(4), loss(5));
    assert_eq!(weights(0), weights(6), "--no-augment wins over --augment");
    // Validation sets are never transformed: the same weights validate the same with or without.
    let ckpt = run_dir(dir, 0).join("checkpoints/last.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let plain = ok(dir, &root, &["validate", "--ckpt-path", ckpt]);
    let augmented = ok(
        dir,
        &root,
        &[
            "validate",
            "--ckpt-path",
            ckpt,
            "--augment",
            "crop,flip,affine",
            "--aug-prob",
            "1",
        ],
    );
    let table = |out: &str| {
        out.lines()
            .filter(|l| l.contains("val_"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(!table(&plain).is_empty(), "{plain}");
    assert_eq!(table(&plain), table(&augmented));
}

#[test]
fn a_misspelt_training_monitor_fails_after_the_first_batch() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = mnist(
        tmp.path(),
        &[
            "--data-dir",
            &root,
            "--max-epochs",
            "1",
            "--limit-train-batches",
            "100",
            "--monitor",
            "train_los",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stderr.contains("'train_los' was never logged") && stderr.contains("train_loss_epoch"),
        "{stderr}"
    );
    // Before the epoch's end, which prints its line.
    assert!(!stdout.contains("epoch 1/1 ("), "{stdout}");
}

#[test]
fn sixteen_bit_mixed_precision_on_the_cpu_runs_bf16_mixed() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bom = dir.join("bom.yaml");
    // A config written by an editor that starts files with a byte-order mark.
    std::fs::write(&bom, "\u{feff}precision: 16-mixed\n").unwrap();
    ok(
        dir,
        &root,
        &[
            "--config",
            bom.to_str().unwrap(),
            "--max-epochs",
            "1",
            "--limit-train-batches",
            "2",
            "--no-test",
        ],
    );
    let hparams = std::fs::read_to_string(run_dir(dir, 0).join("hparams.yaml")).unwrap();
    assert!(hparams.contains("precision: bf16-mixed"), "{hparams}");
}
