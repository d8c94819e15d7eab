//! Checkpoints whose state cannot be, through the binary: each is refused with an error naming
//! the file and what is impossible, before any training, instead of resuming into NaN or with
//! state silently dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{fails, fake_data, mnist};

/// Training on the fake data set, a small ResNet (batch norm buffers) with Adam.
const RUN: &[&str] = &[
    "--val-datasets",
    "",
    "--no-test",
    "--model-name",
    "resnet",
    "--set",
    "width=4",
    "--early-stopping-patience",
    "0",
    "--monitor",
    "train_loss_epoch",
    "--mode",
    "min",
];

/// A real checkpoint of one epoch on the fake data.
fn trained(dir: &Path, root: &str) -> PathBuf {
    let out = mnist(
        dir,
        &[RUN, &["--data-dir", root, "--max-epochs", "1"]].concat(),
    );
    assert!(out.status.success(), "{out:?}");
    dir.join("logs/resnet/version_0/checkpoints/last.safetensors")
}

type Tensors = HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

/// `src` with its tensors and `lit` metadata edited, written to `dst`.
fn edited(
    src: &Path,
    dst: &Path,
    tensors: impl Fn(&mut Tensors),
    meta: impl Fn(&mut serde_json::Value),
) -> PathBuf {
    let bytes = std::fs::read(src).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Tensors = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    tensors(&mut all);
    let mut lit: serde_json::Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()["lit"]).unwrap();
    meta(&mut lit);
    let views: Vec<(String, safetensors::tensor::TensorView)> = all
        .iter()
        .map(|(k, (dtype, shape, data))| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (k.clone(), view)
        })
        .collect();
    let meta = HashMap::from([("lit".to_string(), lit.to_string())]);
    std::fs::write(dst, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    dst.to_path_buf()
}

/// Sets every f32 of tensor `name` to `value`.
fn fill(name: &'static str, value: f32) -> impl Fn(&mut Tensors) {
    move |t: &mut Tensors| {
        let (_, _, data) = t.get_mut(name).unwrap_or_else(|| panic!("no {name}"));
        for chunk in data.chunks_exact_mut(4) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
    }
}

#[test]
fn impossible_checkpoint_states_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("data");
    fake_data(&root);
    let root = root.to_str().unwrap();
    let good = trained(dir, root);
    let keep = |_: &mut serde_json::Value| {};
    let same = |_: &mut Tensors| {};
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            edited(
                &good,
                &dir.join("var.st"),
                fill("bn1.running_var", -1.0),
                keep,
            ),
            vec!["var.st", "bn1.running_var", "negative"],
        ),
        (
            edited(
                &good,
                &dir.join("mean.st"),
                fill("bn1.running_mean", 3e38),
                keep,
            ),
            vec!["mean.st", "bn1.running_mean", "overflow"],
        ),
        (
            edited(
                &good,
                &dir.join("adam.st"),
                fill("optimizer.exp_avg_sq.fc.weight", -1.0),
                keep,
            ),
            vec!["adam.st", "exp_avg_sq.fc.weight", ">= 0"],
        ),
        (
            edited(
                &good,
                &dir.join("moments.st"),
                |t: &mut Tensors| t.retain(|k, _| !k.starts_with("optimizer.")),
                keep,
            ),
            vec!["moments.st", "moments", "missing"],
        ),
        (
            edited(&good, &dir.join("step.st"), same, |m| {
                m["global_step"] = u64::MAX.into();
            }),
            vec!["step.st", "global_step", "damaged"],
        ),
        (
            edited(&good, &dir.join("logs.st"), same, |m| {
                m["resume_batch"] = 1.into();
                m["epoch_logs"] = serde_json::json!({"garbage": [1, "x"]});
            }),
            vec!["logs.st", "epoch_logs"],
        ),
        (
            edited(&good, &dir.join("far.st"), same, |m| {
                m["resume_epoch"] = 1000.into();
            }),
            vec!["far.st", "epoch 1000", "max_epochs = 2"],
        ),
    ];
    for (path, expect) in cases {
        let args = [
            RUN,
            &[
                "--data-dir",
                root,
                "--max-epochs",
                "2",
                "--ckpt-path",
                path.to_str().unwrap(),
            ],
        ]
        .concat();
        let e = fails(dir, &args);
        for want in expect {
            assert!(e.contains(want), "{}: no '{want}' in: {e}", path.display());
        }
    }
}

#[test]
fn a_diverged_checkpoint_is_named_as_the_cause_of_a_nan_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("data");
    fake_data(&root);
    let root = root.to_str().unwrap();
    let good = trained(dir, root);
    let huge = edited(&good, &dir.join("huge.st"), fill("fc.weight", 3e38), |_| {});
    let e = fails(
        dir,
        &[
            RUN,
            &[
                "--data-dir",
                root,
                "--max-epochs",
                "2",
                "--ckpt-path",
                huge.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("resumed from") && e.contains("huge.st") && e.contains("diverged"),
        "{e}"
    );
}

#[test]
fn failures_in_training_name_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("data");
    fake_data(&root);
    let root = root.to_str().unwrap();
    let base = [
        "--val-datasets",
        "",
        "--no-test",
        "--early-stopping-patience",
        "0",
        "--monitor",
        "train_loss_epoch",
        "--mode",
        "min",
        "--data-dir",
        root,
        "--max-epochs",
        "1",
    ];
    // A step that overflows float16's range: the weights, not just the loss, are checked
    // before a checkpoint holds them.
    let e = fails(
        dir,
        &[
            &base[..],
            &[
                "--precision",
                "16-true",
                "--optimizer",
                "sgd",
                "--lr",
                "1000000",
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("NaN or infinite") && e.contains("16-true") && e.contains("bf16-true"),
        "{e}"
    );
}
