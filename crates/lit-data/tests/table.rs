//! `csv` on tables written here: labels, splits, standardisation, regression targets, and an
//! error naming the file, line or column for each bad input.

use std::path::{Path, PathBuf};

use lit_data::table;
use lit_data::{DataContext, Dataset, HParams, Split, Task};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn build(
    hp: &[(&str, serde_json::Value)],
    split: Split,
) -> lit_data::Result<std::sync::Arc<lit_data::TensorDataset>> {
    let mut h = HParams::new();
    for (k, v) in hp {
        h.set(*k, v.clone()).unwrap();
    }
    table::build(&DataContext::new(h).unwrap().for_split(split))
}

fn error(hp: &[(&str, serde_json::Value)]) -> String {
    build(hp, Split::Train).unwrap_err().to_string()
}

/// 20 rows: `x` is the row number, `c` constant, `label` text with three classes.
fn table20(dir: &Path) -> PathBuf {
    let mut text = String::from("x,c,label\n");
    for i in 0..20 {
        let label = ["dog", "cat", "bird"][i % 3];
        text.push_str(&format!("{i},5,{label}\n"));
    }
    write(dir, "t.csv", &text)
}

fn common(path: &Path) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("csv_path", path.display().to_string().into()),
        ("target_column", "label".into()),
    ]
}

fn column(data: &lit_data::TensorDataset, c: usize) -> Vec<f32> {
    let x = data
        .inputs()
        .narrow(1, c, 1)
        .unwrap()
        .flatten_all()
        .unwrap();
    x.to_vec1::<f32>().unwrap()
}

#[test]
fn rows_split_by_seed_into_disjoint_train_val_and_test() {
    let tmp = tempfile::tempdir().unwrap();
    let hp = common(&table20(tmp.path()));
    let [train, val, test] =
        [Split::Train, Split::Val, Split::Test].map(|s| build(&hp, s).unwrap());
    // Defaults: test_split 0.2, val_split 0.1 of 20 rows.
    assert_eq!((train.len(), val.len(), test.len()), (14, 2, 4));
    let mut rows: Vec<f32> = [&train, &val, &test]
        .iter()
        .flat_map(|d| column(d, 0))
        .collect();
    rows.sort_by(f32::total_cmp);
    assert_eq!(rows, (0..20).map(|i| i as f32).collect::<Vec<_>>());
    // The same seed cuts the same rows; another seed others.
    assert_eq!(
        column(&build(&hp, Split::Test).unwrap(), 0),
        column(&test, 0)
    );
    let mut other = hp.clone();
    other.push(("seed", 7.into()));
    assert_ne!(
        column(&build(&other, Split::Test).unwrap(), 0),
        column(&test, 0)
    );
}

#[test]
fn labels_map_in_sorted_order_and_features_standardise_on_training_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let hp = common(&table20(tmp.path()));
    let train = build(&hp, Split::Train).unwrap();
    let info = train.info().unwrap();
    assert_eq!(info.classes, ["bird", "cat", "dog"]);
    assert_eq!(info.input_shape, [2]);
    assert_eq!(info.task, Task::Classification);
    // The raw training rows' mean and population deviation; the constant column divides by 1.
    let raw = column(&train, 0);
    let mean = raw.iter().map(|&v| f64::from(v)).sum::<f64>() / raw.len() as f64;
    let (m, s) = info.normalization.unwrap();
    assert!(
        (m[0] - mean).abs() < 1e-9 && m[1] == 5.0 && s[1] == 1.0,
        "{m:?} {s:?}"
    );
    let batch = train
        .get_batch(&(0..train.len()).collect::<Vec<_>>())
        .unwrap();
    let x: Vec<Vec<f32>> = batch.input.to_vec2().unwrap();
    let mean0: f32 = x.iter().map(|r| r[0]).sum::<f32>() / x.len() as f32;
    assert!(mean0.abs() < 1e-5 && x.iter().all(|r| r[1] == 0.0), "{x:?}");
    // Row 0 is a dog (index 2), row 1 a cat (1), row 2 a bird (0).
    let first: Vec<u32> = batch.target.to_vec1().unwrap();
    let xs: Vec<f32> = raw;
    for (x, y) in xs.iter().zip(first) {
        assert_eq!(y, [2, 1, 0][*x as usize % 3]);
    }
}

#[test]
fn integer_labels_sort_as_numbers_and_other_files_are_read_by_column_name() {
    let tmp = tempfile::tempdir().unwrap();
    let train = write(tmp.path(), "a.csv", "f,y\n1,10\n2,9\n3,10\n4,2\n");
    let test = write(tmp.path(), "b.csv", "y,f\n9,7\n");
    let hp = [
        ("csv_path", train.display().to_string().into()),
        ("test_csv_path", test.display().to_string().into()),
        ("target_column", "y".into()),
        ("val_split", 0.0.into()),
    ];
    let data = build(&hp, Split::Train).unwrap();
    assert_eq!(data.info().unwrap().classes, ["2", "9", "10"]);
    assert_eq!(data.len(), 4);
    let t = build(&hp, Split::Test).unwrap();
    assert_eq!(column(&t, 0), [7.0]);
    assert_eq!(t.targets().to_vec1::<u32>().unwrap(), [1]);
}

#[test]
fn a_regression_target_is_a_value_with_its_training_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "r.csv",
        "a,b,y\n1,0,1.5\n2,1,2.5\n3,0,3.5\n4,1,4.5\n",
    );
    let mut hp = vec![
        ("csv_path", path.display().to_string().into()),
        ("target_column", "y".into()),
        ("val_split", 0.0.into()),
        ("test_split", 0.0.into()),
        ("loss", "mse".into()),
    ];
    let data = build(&hp, Split::Train).unwrap();
    assert_eq!(data.targets().dims(), [4, 1]);
    let info = data.info().unwrap();
    // mean 3, population std sqrt(1.25)
    assert_eq!(
        info.task,
        Task::Regression {
            mean: 3.0,
            std: 1.25f64.sqrt()
        }
    );
    assert!(info.classes.is_empty());
    // Without a regression loss, `auto` refuses to take fractions as classes; `task` decides.
    hp.pop();
    let e = error(&hp);
    assert!(
        e.contains("some with fractions") && e.contains("task=regression"),
        "{e}"
    );
    hp.push(("task", "classification".into()));
    let classes = build(&hp, Split::Train).unwrap().info().unwrap().classes;
    assert_eq!(classes.len(), 4);
    hp.pop();
    hp.push(("task", "regression".into()));
    assert_eq!(build(&hp, Split::Train).unwrap().targets().dims(), [4, 1]);
}

#[test]
fn a_label_spelt_like_a_missing_value_is_a_class_but_not_a_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "s.csv", "a,label\n1,none\n2,NA\n3,mild\n");
    let hp = [
        ("csv_path", path.display().to_string().into()),
        ("target_column", "label".into()),
        ("val_split", 0.0.into()),
        ("test_split", 0.0.into()),
    ];
    let info = build(&hp, Split::Train).unwrap().info().unwrap();
    assert_eq!(info.classes, ["NA", "mild", "none"]);
    let path = write(tmp.path(), "f.csv", "a,label\n1,x\nnone,y\n");
    let e = error(&[
        ("csv_path", path.display().to_string().into()),
        ("target_column", "label".into()),
    ]);
    assert!(
        e.contains("line 3") && e.contains("missing value ('none')"),
        "{e}"
    );
}

#[test]
fn given_statistics_and_classes_are_used_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hp = common(&table20(tmp.path()));
    hp.push(("normalize_mean", "1,2".into()));
    hp.push(("normalize_std", 2.into()));
    let info = build(&hp, Split::Train).unwrap().info().unwrap();
    assert_eq!(info.normalization, Some((vec![1.0, 2.0], vec![2.0, 2.0])));
    hp.push(("classes", "cat,dog".into()));
    let e = error(&hp);
    assert!(e.contains("classes") && e.contains("bird, cat, dog"), "{e}");
}

/// Each bad table, the key or file it is found in, and what the error must say.
#[test]
fn bad_tables_are_named_by_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let case = |name: &str, text: &str, extra: &[(&str, serde_json::Value)], wants: &[&str]| {
        let path = write(d, name, text);
        let mut hp = common(&path);
        hp.extend(extra.iter().cloned());
        let e = error(&hp);
        assert!(e.contains(name), "{name}: {e}");
        for w in wants {
            assert!(e.contains(w), "{name}: '{w}' not in: {e}");
        }
    };
    case(
        "missing.csv",
        "a,label\n1,x\n,y\n",
        &[],
        &["line 3", "'a'", "missing value"],
    );
    case(
        "na.csv",
        "a,label\n1,x\nNA,y\n",
        &[],
        &["line 3", "missing value ('NA')"],
    );
    case(
        "ragged.csv",
        "a,label\n1,x\n2,y,3\n",
        &[],
        &["line 3", "3 fields", "header has 2"],
    );
    case(
        "text.csv",
        "a,label\n1,x\nabc,y\n",
        &[],
        &["line 3", "'a'", "'abc' is not a number"],
    );
    case(
        "notarget.csv",
        "a,b\n1,2\n",
        &[],
        &["no column 'label'", "a, b"],
    );
    case(
        "oneclass.csv",
        "a,label\n1,x\n2,x\n",
        &[],
        &["one class ('x')", "at least two"],
    );
    case("empty.csv", "", &[], &["empty"]);
    case("header.csv", "a,label\n", &[], &["no rows"]);
    case("dup.csv", "a,a,label\n1,2,x\n", &[], &["'a' twice"]);
    case(
        "feat.csv",
        "a,label\n1,x\n",
        &[("feature_columns", "a,z".into())],
        &["no column 'z'"],
    );
    case(
        "value.csv",
        "a,label\n1,2.5\n2,high\n",
        &[("task", "regression".into())],
        &["line 3", "'high' is not a number"],
    );
}

#[test]
fn bad_keys_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = table20(tmp.path());
    let e = error(&[("target_column", "label".into())]);
    assert!(e.contains("csv_path"), "{e}");
    let e = error(&[("csv_path", path.display().to_string().into())]);
    assert!(
        e.contains("target_column") && e.contains("x, c, label"),
        "{e}"
    );
    let mut hp = common(&path);
    hp.push(("task", "clasification".into()));
    assert!(error(&hp).contains("'clasification'"));
    let mut hp = common(&path);
    hp.push(("val_split", 0.5.into()));
    hp.push(("test_split", 0.5.into()));
    assert!(error(&hp).contains("sum must be below 1"));
    let e = error(&common(&tmp.path().join("nope.csv")));
    assert!(e.contains("nope.csv"), "{e}");
    // A label the training file lacks, in the test file.
    let test = write(tmp.path(), "test.csv", "x,c,label\n1,5,cat\n2,5,fish\n");
    let mut hp = common(&path);
    hp.push(("test_csv_path", test.display().to_string().into()));
    let e = build(&hp, Split::Test).unwrap_err().to_string();
    assert!(
        e.contains("test.csv") && e.contains("line 3") && e.contains("'fish'"),
        "{e}"
    );
    // No validation rows at all.
    let mut hp = common(&path);
    hp.push(("val_split", 0.0.into()));
    let e = build(&hp, Split::Val).unwrap_err().to_string();
    assert!(e.contains("val_csv_path"), "{e}");
}
