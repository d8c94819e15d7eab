//! `image_folder` through the binary: a run on RGB PNG class folders takes its input shape,
//! classes and normalisation from the data, records them, trains, and `predict` names each
//! file and class.

use std::path::Path;

use crate::ok;

/// `n` 12 x 12 RGB images per class under `root/<part>/<class>/`: `red` mostly red, `blue`
/// mostly blue, with seeded noise.
fn folder(root: &Path, part: &str, n: usize) {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 60) as u8
    };
    for (class, base) in [("red", [180u8, 40, 40]), ("blue", [40, 40, 180])] {
        let dir = root.join(part).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(12, 12, |_, _| {
                image::Rgb([base[0] + noise(), base[1] + noise(), base[2] + noise()])
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

#[test]
fn a_run_on_rgb_class_folders_takes_its_shape_from_the_data_and_predict_names_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    folder(&root, "train", 40);
    folder(&root, "test", 8);
    let data_root = format!("data_root={}", root.display());
    let common = [
        "--train-dataset",
        "image_folder",
        "--val-datasets",
        "image_folder",
        "--test-datasets",
        "image_folder",
        "--set",
        data_root.as_str(),
        "--batch-size",
        "16",
    ];
    let mut args = vec!["fit", "--max-epochs", "3", "--log-dir", "logs"];
    args.extend(common);
    let out = ok(tmp.path(), &args);
    // Two colours, well apart: the test set is classified.
    assert!(out.contains("test_acc"), "{out}");
    let run = tmp.path().join("logs/example_net/version_0");
    let hparams = crate::hparams_lines(
        &run,
        &[
            "in_channels: 3",
            "input_height: 12",
            "input_width: 12",
            "num_classes: 2",
            "- blue",
            "- red",
        ],
    );
    assert!(hparams.contains("normalize_mean:\n- 0."), "{hparams}");
    let acc: f64 = crate::flags::logged(&run, "test_acc")[0].parse().unwrap();
    assert!(acc >= 0.9, "test_acc {acc}");
    // predict from the checkpoint: one row per test file, with its path and class name.
    let ckpt = run.join("checkpoints/last.safetensors");
    let mut args = vec![
        "predict",
        "--ckpt-path",
        ckpt.to_str().unwrap(),
        "--output",
        "p.csv",
    ];
    args.extend(common);
    ok(tmp.path(), &args);
    let csv = std::fs::read_to_string(tmp.path().join("p.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "dataset,index,file,prediction,class,prob_0,prob_1"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 16);
    let right = rows
        .iter()
        .filter(|r| {
            let f: Vec<&str> = r.split(',').collect();
            f[2].contains(&format!("/test/{}/", f[4]))
        })
        .count();
    assert!(
        right >= 15,
        "{right} of 16 predicted as their folder:\n{csv}"
    );
}
