//! `csv` through the binary on the shipped tables: a classification reaches its accuracy and
//! records its classes, a regression matches scikit-learn's linear regression on the same split,
//! and `predict` writes class names or values.

use std::path::{Path, PathBuf};

use crate::{fails, ok};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn csv_args(sets: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--train-dataset",
        "csv",
        "--val-datasets",
        "csv",
        "--test-datasets",
        "csv",
    ]
    .map(String::from)
    .to_vec();
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    args
}

fn run(dir: &Path, first: &[&str], rest: &[String]) -> String {
    let mut args: Vec<&str> = first.to_vec();
    args.extend(rest.iter().map(String::as_str));
    ok(dir, &args)
}

#[test]
fn breast_cancer_classifies_above_95_percent_with_its_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let table = repo().join("data/tables/breast_cancer.csv");
    let args = csv_args(&[
        format!("csv_path={}", table.display()),
        "target_column=diagnosis".into(),
    ]);
    let fit = [
        "fit",
        "--model-name",
        "mlp",
        "--max-epochs",
        "30",
        "--log-dir",
        "logs",
    ];
    run(tmp.path(), &fit, &args);
    let dir = tmp.path().join("logs/mlp/version_0");
    let acc: f64 = crate::flags::logged(&dir, "test_acc")[0].parse().unwrap();
    assert!(acc >= 0.95, "test_acc {acc}");
    crate::hparams_lines(
        &dir,
        &[
            "in_features: 30",
            "num_classes: 2",
            "- benign",
            "- malignant",
        ],
    );
    let ckpt = dir.join("checkpoints/last.safetensors");
    let predict = [
        "predict",
        "--ckpt-path",
        ckpt.to_str().unwrap(),
        "--output",
        "p.csv",
    ];
    run(tmp.path(), &predict, &args);
    let csv = std::fs::read_to_string(tmp.path().join("p.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "dataset,index,prediction,class,prob_0,prob_1"
    );
    // 20% of 569 rows test.
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 114);
    assert!(rows
        .iter()
        .all(|r| r.contains(",benign,") || r.contains(",malignant,")));
}

/// scikit-learn's R2 on the fixture's split, made by tests/fixtures/make_table_fixtures.py:
/// `LinearRegression().fit(x_train, y_train)`, `r2_score(y_test, model.predict(x_test))`.
fn sklearn_r2() -> f64 {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/tables.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["diabetes_linear_regression_test_r2"].as_f64().unwrap()
}

#[test]
fn diabetes_regression_matches_sklearn_linear_regression_r2() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |part: &str| repo().join(format!("tests/fixtures/tables/diabetes_{part}.csv"));
    let args = csv_args(&[
        format!("csv_path={}", f("train").display()),
        format!("val_csv_path={}", f("val").display()),
        format!("test_csv_path={}", f("test").display()),
        "target_column=progression".into(),
        "task=regression".into(),
    ]);
    let fit = [
        "fit",
        "--model-name",
        "mlp",
        "--max-epochs",
        "100",
        "--log-dir",
        "logs",
    ];
    let out = run(tmp.path(), &fit, &args);
    assert!(out.contains("test_mae"), "{out}");
    let dir = tmp.path().join("logs/mlp/version_0");
    let r2: f64 = crate::flags::logged(&dir, "test_r2")[0].parse().unwrap();
    let want = sklearn_r2();
    assert!(
        (r2 - want).abs() <= 0.02,
        "test_r2 {r2}, scikit-learn {want}"
    );
    // The decided monitor is recorded, so the hparams.yaml fed back repeats it.
    crate::hparams_lines(
        &dir,
        &[
            "loss: mse",
            "metric: mse,mae,r2",
            "num_classes: 1",
            "in_features: 10",
            "monitor: val_loss",
            "mode: min",
        ],
    );
    // From the checkpoint, without repeating task: values, one per test row.
    let ckpt = dir.join("checkpoints/last.safetensors");
    let rest = csv_args(&[
        format!("csv_path={}", f("train").display()),
        format!("test_csv_path={}", f("test").display()),
        "target_column=progression".into(),
    ]);
    let predict = [
        "predict",
        "--ckpt-path",
        ckpt.to_str().unwrap(),
        "--output",
        "p.csv",
    ];
    run(tmp.path(), &predict, &rest);
    let csv = std::fs::read_to_string(tmp.path().join("p.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "dataset,index,prediction");
    assert_eq!(csv.lines().count(), 1 + 88);
    let first: f64 = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!((25.0..=346.0).contains(&first), "{first}");
}

#[test]
fn a_classification_loss_or_metric_for_a_regression_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let table = repo().join("data/tables/diabetes.csv");
    let args = csv_args(&[
        format!("csv_path={}", table.display()),
        "target_column=progression".into(),
        "task=regression".into(),
    ]);
    for (flag, value, wants) in [
        ("--loss", "cross_entropy", "mse, l1, smooth_l1"),
        ("--metric", "accuracy", "mse, rmse, mae, r2, pearson"),
        ("--augment", "flip", "transforms images"),
    ] {
        let mut all = vec!["fit", "--model-name", "mlp", "--fast-dev-run", flag, value];
        all.extend(args.iter().map(String::as_str));
        let e = fails(tmp.path(), &all);
        assert!(e.contains(value) && e.contains(wants), "{e}");
    }
    let mut all = vec!["fit", "--model-name", "mlp", "--fast-dev-run"];
    let bad = csv_args(&[
        format!("csv_path={}", table.display()),
        "target_column=Progression".into(),
    ]);
    all.extend(bad.iter().map(String::as_str));
    let e = fails(tmp.path(), &all);
    assert!(
        e.contains("diabetes.csv") && e.contains("no column 'Progression'"),
        "{e}"
    );
    // A regression metric on classes, and a numeric target left to `auto`.
    let classes = csv_args(&[
        format!("csv_path={}", repo().join("data/tables/wine.csv").display()),
        "target_column=cultivar".into(),
    ]);
    let mut all = vec![
        "fit",
        "--model-name",
        "mlp",
        "--fast-dev-run",
        "--metric",
        "r2",
    ];
    all.extend(classes.iter().map(String::as_str));
    let e = fails(tmp.path(), &all);
    assert!(e.contains("metric r2") && e.contains("classes"), "{e}");
    let auto = csv_args(&[
        format!("csv_path={}", table.display()),
        "target_column=progression".into(),
    ]);
    let mut all = vec!["fit", "--model-name", "mlp", "--fast-dev-run"];
    all.extend(auto.iter().map(String::as_str));
    let e = fails(tmp.path(), &all);
    assert!(
        e.contains("214 distinct numbers") && e.contains("task=regression"),
        "{e}"
    );
}
