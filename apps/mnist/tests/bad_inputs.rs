//! The bad inputs users and disks produce, through the binary: each must give a clear error that
//! names the flag, key, file or value and what was expected, a non-zero exit, no panic, each OS
//! error once, and no file left behind. `LIT_BAD_INPUTS_TABLE=FILE` writes the table of cases
//! and the errors they gave as Markdown (docs/bad-inputs.md is made so).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::idx;

/// One bad input: the arguments (`{fake}`, `{real}`, ... replaced by fixture paths), the texts the
/// error must contain, and whether `$LIT_DATA_DIR` is set to a valid data root for the run.
struct Case {
    args: &'static [&'static str],
    expect: &'static [&'static str],
    env_data: bool,
}

const fn case(args: &'static [&'static str], expect: &'static [&'static str]) -> Case {
    Case {
        args,
        expect,
        env_data: false,
    }
}

/// Training on the 8-image fake data set without validation sets, so a case gets past the data.
const FAKE: &[&str] = &[
    "--data-dir",
    "{fake}",
    "--val-datasets",
    "",
    "--no-test",
    "--max-epochs",
    "1",
];

const CASES: &[Case] = &[
    // Floats: non-finite, out of range, not numbers.
    case(&["--lr", "NaN"], &["--lr", "finite"]),
    case(&["--lr", "inf"], &["--lr", "finite"]),
    case(&["--lr=-inf"], &["--lr", "finite"]),
    case(&["--lr", "-0.1"], &["'lr'", "-0.1"]),
    case(&["--lr", "fast"], &["--lr", "expected a number", "fast"]),
    case(
        &["--gradient-clip-val", "NaN"],
        &["--gradient-clip-val", "finite"],
    ),
    case(&["--gradient-clip-val", "0"], &["gradient_clip_val", "> 0"]),
    case(
        &["--gradient-clip-val", "-1"],
        &["gradient_clip_val", "> 0"],
    ),
    case(&["--min-delta", "NaN"], &["--min-delta", "finite"]),
    case(&["--aug-prob", "1.5"], &["aug_prob", "[0, 1]", "1.5"]),
    case(&["--min-delta", "-0.5"], &["min_delta", ">= 0"]),
    case(&["--momentum", "inf"], &["--momentum", "finite"]),
    case(&["--weight-decay", "-1"], &["weight_decay", ">= 0"]),
    case(&["--lr-decay-rate", "0"], &["lr_decay_rate", "> 0"]),
    case(&["--lr-decay-rate", "nan"], &["--lr-decay-rate", "finite"]),
    case(
        &["--label-smoothing", "1.5"],
        &["label_smoothing", "[0, 1)"],
    ),
    case(
        &["--stopping-threshold", "inf"],
        &["--stopping-threshold", "finite"],
    ),
    case(
        &["--divergence-threshold=-inf"],
        &["--divergence-threshold", "finite"],
    ),
    case(&["--set", "lr=.nan"], &["--set lr", "finite"]),
    case(&["--set", "lr=.inf"], &["--set lr", "finite"]),
    case(&["--config", "{nan_yaml}"], &["nan.yaml", "lr", "finite"]),
    case(
        &["--config", "{inf_clip_yaml}"],
        &["inf_clip.yaml", "gradient_clip_val", "finite"],
    ),
    // Misspelt keys.
    case(
        &["--set", "max_epoch=1"],
        &[
            "unknown hyperparameter 'max_epoch'",
            "did you mean 'max_epochs'",
        ],
    ),
    case(
        &["--config", "{typo_yaml}"],
        &[
            "typo.yaml",
            "unknown hyperparameter 'max_epoch'",
            "'max_epochs'",
        ],
    ),
    case(
        &["--model-name", "standard_net", "--set", "hidd=256"],
        &["'hidd'", "did you mean 'hid'"],
    ),
    // A dataset's key and the augmentation's, from their configs.
    case(
        &["--set", "normalise_std=0.3"],
        &["'normalise_std'", "did you mean 'normalize_std'"],
    ),
    case(
        &["--set", "aug_prb=0.3"],
        &["'aug_prb'", "did you mean 'aug_prob'"],
    ),
    case(
        &["--set", "hid=256"],
        &["unknown hyperparameter 'hid'", "example_net"],
    ),
    case(&["--set", "=3"], &["--set =3", "KEY=VALUE"]),
    case(&["--set", "lr"], &["--set lr", "KEY=VALUE"]),
    // Config files.
    case(
        &["--config", "{missing}"],
        &["config file", "no-such.yaml", "No such file"],
    ),
    case(
        &["--config", "{dir}"],
        &["config file", "not a regular file"],
    ),
    case(
        &["--config", "{fifo}"],
        &["config file", "fifo", "not a regular file"],
    ),
    case(
        &["--config", "{list_yaml}"],
        &["list.yaml", "expected a YAML map"],
    ),
    case(&["--config", "{garbage_yaml}"], &["garbage.yaml", "YAML"]),
    case(&["--config", "{wrong_type_yaml}"], &["max_epochs", "many"]),
    // Names.
    case(
        &["--optimizer", "lion"],
        &["unknown optimizer 'lion'", "rmsprop"],
    ),
    case(
        &["--lr-scheduler", "poly"],
        &["unknown lr scheduler 'poly'", "plateau"],
    ),
    case(
        &["--loss", "hinge"],
        &["unknown loss 'hinge'", "cross_entropy"],
    ),
    case(
        &["--metric", "accurcy"],
        &["unknown metric 'accurcy'", "top<k>_accuracy"],
    ),
    case(
        &["--metric", "top0_accuracy"],
        &["top0_accuracy", "k from 1 to num_classes"],
    ),
    case(
        &["--metric", "top11_accuracy"],
        &["top11_accuracy", "num_classes (10)"],
    ),
    case(
        &["--model-name", "resnet9000"],
        &["unknown model 'resnet9000'", "example_net"],
    ),
    case(
        &["--train-dataset", "cifar"],
        &["unknown dataset 'cifar'", "mnist_train"],
    ),
    case(
        &["--val-datasets", "mnist_val,cifar"],
        &["unknown dataset 'cifar'"],
    ),
    case(
        &["--test-datasets", "imagenet"],
        &["unknown dataset 'imagenet'"],
    ),
    case(&["--mode", "maximum"], &["'maximum'", "--mode", "max, min"]),
    case(
        &["--gradient-clip-algorithm", "l2"],
        &["'l2'", "norm, value"],
    ),
    case(&["--lr-interval", "batch"], &["'batch'", "epoch, step"]),
    case(
        &["--precision", "8"],
        &["unknown precision '8'", "bf16-mixed"],
    ),
    case(&["--accelerator", "tpu"], &["tpu"]),
    // One rule for names: case-sensitive, with the right spelling suggested.
    case(
        &["--precision", "BF16-MIXED"],
        &["'BF16-MIXED'", "case-sensitive", "'bf16-mixed'"],
    ),
    case(
        &["--optimizer", "Adam"],
        &["'Adam'", "case-sensitive", "'adam'"],
    ),
    case(&["--accelerator", "CPU"], &["'CPU'", "cpu, cuda"]),
    // Sizes no machine can hold, and counts beyond sense.
    case(
        &["--batch-size", "18446744073709551615"],
        &["batch_size", "expected at most 16777216"],
    ),
    case(
        &["--num-workers", "1000000"],
        &["num_workers", "at most 256", "1000000"],
    ),
    // Schedules PyTorch refuses.
    case(
        &["--lr-scheduler", "step", "--lr-decay-steps", "0"],
        &["lr_decay_steps", "step schedule", "at least 1"],
    ),
    case(
        &["--lr-scheduler", "cosine", "--lr-decay-steps", "0"],
        &["lr_decay_steps", "cosine schedule", "at least 1"],
    ),
    case(
        &["--warmup-steps", "5", "--set", "warmup_start_factor=0"],
        &["warmup_start_factor", "(0, 1]", "0"],
    ),
    case(
        &["--warmup-steps", "5", "--set", "warmup_start_factor=-0.5"],
        &["warmup_start_factor", "(0, 1]", "-0.5"],
    ),
    case(&["--config", "{null_lr_yaml}"], &["null_lr.yaml", "lr"]),
    case(
        &["--config", "{long_yaml}"],
        &["unknown model 'xxxxxxxx", "(1048579 bytes in all)"],
    ),
    case(
        &["--data-dir", "{empty}", "--val-datasets", "", "--no-test"],
        &["training set has no examples"],
    ),
    case(&["tran"], &["tran"]),
    // Counts and limits.
    case(&["--save-top-k", "-2"], &["save_top_k", "-1 (keep all)"]),
    case(
        &["--val-check-interval", "0"],
        &["val_check_interval", "positive"],
    ),
    case(
        &["--val-check-interval", "1.5"],
        &["--val-check-interval", "[0, 1]"],
    ),
    case(
        &["--val-check-interval", "often"],
        &["--val-check-interval", "batch count"],
    ),
    case(
        &["--limit-train-batches", "-1"],
        &["--limit-train-batches", "batch count"],
    ),
    case(
        &["--limit-val-batches", "2.5"],
        &["--limit-val-batches", "[0, 1]"],
    ),
    case(
        &["--overfit-batches", "0"],
        &["overfit_batches", "positive"],
    ),
    case(&["--seed", "-1"], &["'-1'", "--seed"]),
    case(&["--max-epochs", "-3"], &["'-3'", "--max-epochs"]),
    case(&["--batch-size", "0"], &["batch_size", "at least 1"]),
    case(&["--num-classes", "1"], &["num_classes", "at least 2"]),
    case(
        &["--check-val-every-n-epoch", "0"],
        &["check_val_every_n_epoch", "at least 1"],
    ),
    case(
        &["--accumulate-grad-batches", "0"],
        &["accumulate_grad_batches", "at least 1"],
    ),
    case(&["--devices", "0"], &["devices = 0", "at least 1"]),
    case(&["--num-nodes", "2"], &["--num-nodes 2", "host file"]),
    case(&["--max-time", "soon"], &["--max-time soon", "DD:HH:MM:SS"]),
    case(
        &["--max-time", "1:2:3:4:5"],
        &["--max-time 1:2:3:4:5", "DD:HH:MM:SS"],
    ),
    case(
        &["--min-epochs", "10", "--max-epochs", "2"],
        &["min_epochs = 10", "max_epochs = 2"],
    ),
    case(
        &[
            "--early-stopping-patience",
            "0",
            "--stopping-threshold",
            "0.9",
        ],
        &["--stopping-threshold", "early stopping"],
    ),
    case(
        &["--checkpoint-filename", "../.."],
        &["checkpoint filename '../..'", "without folders"],
    ),
    case(
        &["--checkpoint-filename", "/tmp/x"],
        &["checkpoint filename '/tmp/x'", "without folders"],
    ),
    // Checkpoints.
    case(
        &["--ckpt-path", "nothing.safetensors"],
        &["--ckpt-path nothing.safetensors", "no such file"],
    ),
    case(
        &["--ckpt-path", "last"],
        &["--ckpt-path last", "no run with checkpoints"],
    ),
    case(
        &["--ckpt-path", "best"],
        &["--ckpt-path best", "no run with checkpoints"],
    ),
    Case {
        args: &["--ckpt-path", "{garbage_ckpt}"],
        expect: &["garbage.safetensors", "not a safetensors file"],
        env_data: true,
    },
    Case {
        args: &["test", "--ckpt-path", "{nan_ckpt}"],
        expect: &["nan.safetensors", "model.0.weight", "NaN"],
        env_data: true,
    },
    Case {
        args: &["test", "--ckpt-path", "{other_model_ckpt}"],
        expect: &[
            "other.safetensors",
            "does not match the model",
            "missing keys",
        ],
        env_data: true,
    },
    // Data.
    case(
        &["--data-dir", "{missing}", "--fast-dev-run"],
        &[
            "data_dir",
            "no-such.yaml",
            "No such file",
            "expected a folder",
        ],
    ),
    case(
        &["--data-dir", "{nan_yaml}", "--fast-dev-run"],
        &["data_dir", "nan.yaml", "is a file"],
    ),
    Case {
        args: &["--data-dir", "{dir}", "--fast-dev-run"],
        expect: &["train-images-idx3-ubyte", "--data-dir was given"],
        env_data: true,
    },
    case(
        &["--data-dir", "{small}", "--fast-dev-run"],
        &["train-images-idx3-ubyte", "8 images", "more than 55000"],
    ),
    case(
        &["--data-dir", "{small20}", "--fast-dev-run"],
        &["train-images-idx3-ubyte", "20 x 20", "28 x 28"],
    ),
    case(
        &["--data-dir", "{badlabel}", "--fast-dev-run"],
        &["train-labels-idx1-ubyte", "label 12", "0 to 9"],
    ),
    case(
        &["--data-dir", "{magic}", "--fast-dev-run"],
        &[
            "train-labels-idx1-ubyte",
            "expected 0x00000801",
            "found 0x00000803",
        ],
    ),
    case(
        &["--data-dir", "{truncated}", "--fast-dev-run"],
        &["train-labels-idx1-ubyte", "truncated"],
    ),
    case(
        &["--data-dir", "{count}", "--fast-dev-run"],
        &["7 labels for 8 images"],
    ),
    case(
        &["--data-dir", "{badgz}", "--fast-dev-run"],
        &["train-images-idx3-ubyte.gz"],
    ),
];

/// Cases that get past the data on the fake set (their args are appended to [`FAKE`]).
const FAKE_CASES: &[Case] = &[
    case(
        &["--augment", "crop,rotate"],
        &["'rotate'", "crop, flip, affine"],
    ),
    case(
        &["--model-name", "resnet", "--set", "depth=10"],
        &["resnet", "6n + 2", "10"],
    ),
    case(
        &["--ckpt-path", "{garbage_ckpt}"],
        &["garbage.safetensors", "not a safetensors file"],
    ),
    case(
        &["--ckpt-path", "{no_optim_ckpt}"],
        &[
            "no-optim.safetensors",
            "no optimizer state",
            "--ckpt-weights-only",
        ],
    ),
    case(&["--log-dir", "{nan_yaml}"], &["nan.yaml"]),
    case(
        &["--model-name", "resnet", "--set", "width=100000"],
        &["layer1.0.conv1.weight", "GB of memory", "too large"],
    ),
    case(
        &["--augment", "crop", "--set", "aug_padding=1000000"],
        &["aug_padding", "at most 1024", "1000000"],
    ),
    case(
        &[
            "--augment",
            "crop",
            "--set",
            "aug_padding=18446744073709551615",
        ],
        &["aug_padding", "at most 1024"],
    ),
    case(
        &["--augment", "affine", "--set", "aug_translate=2.0"],
        &["aug_translate", "[0, 1]", "2"],
    ),
    case(
        &["--augment", "affine", "--set", "aug_translate=1e300"],
        &["aug_translate", "[0, 1]"],
    ),
    case(
        &["--set", "normalize_std=0"],
        &["normalize_std", "> 0", "got 0"],
    ),
    case(
        &["predict", "--output", "{missing_dir}/p.csv"],
        &["--output", "no-such-dir", "does not exist"],
    ),
];

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A data root with MNIST-format files of `n` images of `side` x `side`, edited by `edit`.
fn fake_root(base: &Path, name: &str, n: u32, side: u32, edit: impl Fn(&Path)) -> PathBuf {
    let root = base.join(name);
    let dir = root.join("mnist");
    write(
        &dir.join("train-images-idx3-ubyte"),
        &idx(3, &[n, side, side]),
    );
    write(&dir.join("train-labels-idx1-ubyte"), &idx(1, &[n]));
    write(
        &dir.join("t10k-images-idx3-ubyte"),
        &idx(3, &[4, side, side]),
    );
    write(&dir.join("t10k-labels-idx1-ubyte"), &idx(1, &[4]));
    edit(&dir);
    root
}

/// ExampleNet's parameters and shapes.
const EXAMPLE_NET: &[(&str, &[usize])] = &[
    ("model.0.weight", &[16, 1, 3, 3]),
    ("model.0.bias", &[16]),
    ("model.3.weight", &[32, 16, 3, 3]),
    ("model.3.bias", &[32]),
    ("model.6.weight", &[64, 32, 3, 3]),
    ("model.6.bias", &[64]),
    ("model.9.weight", &[128, 3136]),
    ("model.9.bias", &[128]),
    ("model.11.weight", &[10, 128]),
    ("model.11.bias", &[10]),
];

/// A safetensors file of `params` set to 0.01, with a NaN in `nan_in`, and `lit` metadata.
fn checkpoint(
    path: &Path,
    params: &[(&str, &[usize])],
    nan_in: Option<&str>,
    lit_meta: Option<&str>,
) {
    let data: Vec<Vec<u8>> = params
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let mut v = vec![0.01f32; n];
            if nan_in == Some(*name) {
                v[n / 2] = f32::NAN;
            }
            v.into_iter().flat_map(f32::to_le_bytes).collect()
        })
        .collect();
    let views = params.iter().zip(&data).map(|((name, shape), bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), bytes)
                .unwrap();
        (*name, view)
    });
    let meta =
        lit_meta.map(|m| std::collections::HashMap::from([("lit".to_string(), m.to_string())]));
    write(path, &safetensors::serialize(views, meta).unwrap());
}

struct Fixtures {
    subs: Vec<(String, PathBuf)>,
}

impl Fixtures {
    fn new(base: &Path) -> Self {
        let f = |name: &str| base.join(name);
        let yaml = |name: &str, text: &str| {
            write(&f(name), text.as_bytes());
            f(name)
        };
        let mut subs = vec![
            ("fake".into(), fake_root(base, "fake", 8, 28, |_| {})),
            ("small".into(), base.join("fake")),
            ("small20".into(), fake_root(base, "small20", 8, 20, |_| {})),
            (
                "badlabel".into(),
                fake_root(base, "badlabel", 8, 28, |d| {
                    let mut l = idx(1, &[8]);
                    l[8 + 3] = 12;
                    write(&d.join("train-labels-idx1-ubyte"), &l);
                }),
            ),
            (
                "magic".into(),
                fake_root(base, "magic", 8, 28, |d| {
                    write(&d.join("train-labels-idx1-ubyte"), &idx(3, &[8, 1, 1]))
                }),
            ),
            (
                "truncated".into(),
                fake_root(base, "truncated", 8, 28, |d| {
                    write(&d.join("train-labels-idx1-ubyte"), &idx(1, &[8])[..10])
                }),
            ),
            (
                "count".into(),
                fake_root(base, "count", 8, 28, |d| {
                    write(&d.join("train-labels-idx1-ubyte"), &idx(1, &[7]))
                }),
            ),
            (
                "badgz".into(),
                fake_root(base, "badgz", 8, 28, |d| {
                    std::fs::remove_file(d.join("train-images-idx3-ubyte")).unwrap();
                    write(
                        &d.join("train-images-idx3-ubyte.gz"),
                        b"\x1f\x8b not really gzip",
                    );
                }),
            ),
            ("nan_yaml".into(), yaml("nan.yaml", "lr: .nan\n")),
            ("null_lr_yaml".into(), yaml("null_lr.yaml", "lr: null\n")),
            (
                "long_yaml".into(),
                yaml(
                    "long.yaml",
                    &format!("model_name: {}\n", "x".repeat(1 << 20)),
                ),
            ),
            ("empty".into(), fake_root(base, "empty", 0, 28, |_| {})),
            (
                "inf_clip_yaml".into(),
                yaml("inf_clip.yaml", "gradient_clip_val: .inf\n"),
            ),
            ("typo_yaml".into(), yaml("typo.yaml", "max_epoch: 1\n")),
            ("list_yaml".into(), yaml("list.yaml", "[1, 2]\n")),
            (
                "garbage_yaml".into(),
                yaml("garbage.yaml", "lr: [unclosed\n"),
            ),
            (
                "wrong_type_yaml".into(),
                yaml("wrong_type.yaml", "max_epochs: many\n"),
            ),
            ("missing".into(), f("no-such.yaml")),
            ("missing_dir".into(), f("no-such-dir")),
            ("dir".into(), {
                std::fs::create_dir_all(f("empty-dir")).unwrap();
                f("empty-dir")
            }),
            ("garbage_ckpt".into(), {
                write(
                    &f("garbage.safetensors"),
                    b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a checkpoint",
                );
                f("garbage.safetensors")
            }),
            ("nan_ckpt".into(), f("nan.safetensors")),
            ("other_model_ckpt".into(), f("other.safetensors")),
            ("no_optim_ckpt".into(), f("no-optim.safetensors")),
            ("fifo".into(), f("fifo")),
        ];
        // Weights-only shaped files: NaN weights; a tensor set of another model; and a full
        // checkpoint's metadata without optimizer state.
        checkpoint(
            &f("nan.safetensors"),
            EXAMPLE_NET,
            Some("model.0.weight"),
            None,
        );
        checkpoint(&f("other.safetensors"), &EXAMPLE_NET[..3], None, None);
        checkpoint(
            &f("no-optim.safetensors"),
            EXAMPLE_NET,
            None,
            Some(
                r#"{"model_name":"example_net","resume_epoch":0,"resume_batch":1,"global_step":1}"#,
            ),
        );
        let status = Command::new("mkfifo")
            .arg(f("fifo"))
            .status()
            .expect("mkfifo");
        assert!(status.success(), "mkfifo failed");
        subs.push(("real".into(), PathBuf::from("/nonexistent")));
        Self { subs }
    }

    fn fill(&self, arg: &str) -> String {
        let mut out = arg.to_string();
        for (k, v) in &self.subs {
            out = out.replace(&format!("{{{k}}}"), &v.to_string_lossy());
        }
        out
    }
}

fn tree(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            tree(&e.path(), out);
        }
    }
}

#[test]
fn every_bad_input_gets_a_clear_error_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures_dir = tmp.path().join("fixtures");
    let fixtures = Fixtures::new(&fixtures_dir);
    let mut before = Vec::new();
    tree(&fixtures_dir, &mut before);
    let real = lit_testutil::data_root();
    let fake_cases = FAKE_CASES.iter().map(|c| (c, true));
    let all: Vec<(&Case, bool)> = CASES.iter().map(|c| (c, false)).chain(fake_cases).collect();
    assert!(all.len() >= 60, "{} cases", all.len());
    let mut table = String::from("| arguments | error |\n|---|---|\n");
    let mut failures = Vec::new();
    for (i, (case, on_fake)) in all.iter().enumerate() {
        let cwd = tmp.path().join(format!("run{i}"));
        std::fs::create_dir(&cwd).unwrap();
        let mut args: Vec<String> = Vec::new();
        let command = case
            .args
            .first()
            .filter(|a| ["test", "predict", "validate"].contains(a));
        args.extend(command.map(|c| c.to_string()));
        if *on_fake {
            args.extend(FAKE.iter().map(|a| fixtures.fill(a)));
        }
        args.extend(
            case.args
                .iter()
                .skip(command.is_some() as usize)
                .map(|a| fixtures.fill(a)),
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist"));
        cmd.args(&args)
            .current_dir(&cwd)
            .env("RUST_LOG", "off")
            .env_remove("LIT_DATA_DIR");
        if case.env_data {
            match &real {
                Some(root) => cmd.env("LIT_DATA_DIR", root),
                None => continue,
            };
        }
        let out = cmd.output().expect("running mnist");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let shown: Vec<String> = case.args.iter().map(|a| a.to_string()).collect();
        table.push_str(&format!(
            "| `{}{}` | {} |\n",
            if *on_fake { "<fake data> " } else { "" },
            shown.join(" "),
            stderr
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("")
                .replace('|', "\\|")
                .replace(tmp.path().to_str().unwrap(), "…")
        ));
        let mut problems = Vec::new();
        if out.status.success() {
            problems.push("exit 0".to_string());
        }
        if stderr.contains("panicked") {
            problems.push("panicked".into());
        }
        if stderr.matches("os error").count() > 1 {
            problems.push("an OS error printed twice".into());
        }
        for want in case.expect {
            if !stderr.contains(&fixtures.fill(want)) {
                problems.push(format!("no '{want}'"));
            }
        }
        let mut left = Vec::new();
        tree(&cwd, &mut left);
        if !left.is_empty() {
            problems.push(format!("left behind: {left:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{args:?}: {}\n    stderr: {stderr}",
                problems.join(", ")
            ));
        }
    }
    let mut after = Vec::new();
    tree(&fixtures_dir, &mut after);
    before.sort();
    after.sort();
    assert_eq!(
        before, after,
        "files appeared or vanished among the fixtures"
    );
    if let Some(path) = std::env::var_os("LIT_BAD_INPUTS_TABLE") {
        std::fs::write(path, &table).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
