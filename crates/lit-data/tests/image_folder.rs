//! `image_folder` on PNG files written here: classes, splits, conversions, sizes, the
//! normalisation, and an error naming the file or folder for each bad input.

use std::path::Path;

use lit_data::image_folder;
use lit_data::{DataContext, Dataset, HParams, Split};

/// A gray `side x side` PNG whose pixels are all `value`.
fn gray(path: &Path, side: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(side, side, image::Luma([value]))
        .save(path)
        .unwrap();
}

/// An RGB `w x h` PNG of one colour.
fn rgb(path: &Path, w: u32, h: u32, c: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(c))
        .save(path)
        .unwrap();
}

fn context(root: &Path, extra: &[(&str, serde_json::Value)], split: Split) -> DataContext {
    let mut h = HParams::new();
    h.set("data_root", root.display().to_string()).unwrap();
    for (k, v) in extra {
        h.set(*k, v.clone()).unwrap();
    }
    DataContext::new(h).unwrap().for_split(split)
}

fn build(
    root: &Path,
    extra: &[(&str, serde_json::Value)],
    split: Split,
) -> lit_data::Result<std::sync::Arc<dyn lit_data::StoredImages>> {
    image_folder::build(&context(root, extra, split))
}

fn error(root: &Path, extra: &[(&str, serde_json::Value)], split: Split) -> String {
    build(root, extra, split).err().unwrap().to_string()
}

/// Two classes in the order `sorted` gives them, 5 images each, all pixels of the class's
/// value (`b_cat` 200, `a_dog` 50).
fn two_classes(root: &Path) {
    for i in 0..5 {
        gray(&root.join(format!("b_cat/{i}.png")), 6, 200);
        gray(&root.join(format!("a_dog/{i}.PNG")), 6, 50);
    }
}

#[test]
fn classes_are_sorted_and_train_is_split_by_a_seeded_val_split() {
    let tmp = tempfile::tempdir().unwrap();
    two_classes(tmp.path());
    let train = build(tmp.path(), &[("val_split", 0.2.into())], Split::Train).unwrap();
    let val = build(tmp.path(), &[("val_split", 0.2.into())], Split::Val).unwrap();
    assert_eq!((train.len(), val.len()), (8, 2));
    let info = train.info().unwrap();
    // torchvision: ImageFolder(root).class_to_idx == {"a_dog": 0, "b_cat": 1}
    assert_eq!(info.classes, ["a_dog", "b_cat"]);
    assert_eq!(info.input_shape, [1, 6, 6]);
    // Every file once, in one of the two splits.
    let mut files: Vec<_> = info
        .files
        .iter()
        .chain(&val.info().unwrap().files)
        .cloned()
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 10);
    // Each label matches its folder, and the pixels their class.
    let b = train.get_batch(&(0..8).collect::<Vec<_>>()).unwrap();
    let labels = b.target.to_vec1::<u32>().unwrap();
    for (l, f) in labels.iter().zip(&info.files) {
        let folder = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(info.classes[*l as usize], folder);
    }
    // The same seed gives the same split; another seed another one (for 10 images, likely).
    let again = build(tmp.path(), &[("val_split", 0.2.into())], Split::Val).unwrap();
    assert_eq!(again.info().unwrap().files, val.info().unwrap().files);
}

#[test]
fn batches_are_normalised_with_the_training_split_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    two_classes(tmp.path());
    let hp = [("val_split", 0.0.into())];
    let train = build(tmp.path(), &hp, Split::Train).unwrap();
    // Half the pixels 50/255, half 200/255: mean 125/255, population std 75/255.
    let (mean, std) = train.info().unwrap().normalization.unwrap();
    assert!((mean[0] - 125.0 / 255.0).abs() < 1e-9, "{mean:?}");
    assert!((std[0] - 75.0 / 255.0).abs() < 1e-9, "{std:?}");
    let x = train.get_batch(&[0]).unwrap().input;
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // An a_dog image: (50 - 125) / 75 = -1.
    assert!(v.iter().all(|p| (p + 1.0).abs() < 1e-6), "{v:?}");
    // Given values win, one per channel or one for all.
    let given = [
        ("val_split", 0.0.into()),
        ("normalize_mean", 0.5.into()),
        ("normalize_std", serde_json::json!([0.25])),
    ];
    let x = build(tmp.path(), &given, Split::Train)
        .unwrap()
        .get_batch(&[0])
        .unwrap()
        .input;
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!((v[0] - ((50.0 / 255.0 - 0.5) / 0.25) as f32).abs() < 1e-6);
}

#[test]
fn rgb_images_become_pils_gray_or_stay_rgb_and_are_resized_and_cropped() {
    let tmp = tempfile::tempdir().unwrap();
    rgb(&tmp.path().join("train/x/0.png"), 10, 6, [200, 100, 50]);
    rgb(&tmp.path().join("train/y/0.png"), 10, 6, [0, 0, 255]);
    let gray = build(
        tmp.path(),
        &[
            ("channels", 1.into()),
            ("normalize_mean", 0.0.into()),
            ("normalize_std", 1.0.into()),
        ],
        Split::Train,
    )
    .unwrap();
    assert_eq!(gray.info().unwrap().input_shape, [1, 6, 10]);
    // PIL: Image.new("RGB", (1, 1), (200, 100, 50)).convert("L").getpixel((0, 0)) -> 124
    let v = gray
        .get_batch(&[0])
        .unwrap()
        .input
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!((v[0] - 124.0 / 255.0).abs() < 1e-6, "{}", v[0] * 255.0);
    // Unset channels: 3 for colour images; image_size: the shorter side resized, the centre cropped.
    let sized = build(tmp.path(), &[("image_size", 4.into())], Split::Train).unwrap();
    assert_eq!(sized.info().unwrap().input_shape, [3, 4, 4]);
    assert_eq!(sized.len(), 2);
    // Per channel: a mean as comma-separated text, one std for all three channels.
    let given = [
        ("normalize_mean", "0.5, 0.25, 0".into()),
        ("normalize_std", 0.5.into()),
    ];
    let rgb = build(tmp.path(), &given, Split::Train).unwrap();
    let (mean, std) = rgb.info().unwrap().normalization.unwrap();
    assert_eq!((mean, std), (vec![0.5, 0.25, 0.0], vec![0.5; 3]));
    let v = rgb
        .get_batch(&[0])
        .unwrap()
        .input
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // Channel c of the (200, 100, 50) image: (x / 255 - mean[c]) / 0.5, 60 pixels a channel.
    for (c, (x, m)) in [(200.0, 0.5), (100.0, 0.25), (50.0, 0.0)]
        .iter()
        .enumerate()
    {
        let want = ((x / 255.0 - m) / 0.5) as f32;
        assert!(
            (v[c * 60] - want).abs() < 1e-5,
            "channel {c}: {} vs {want}",
            v[c * 60]
        );
    }
}

#[test]
fn val_and_test_folders_take_the_training_classes_and_shape() {
    let tmp = tempfile::tempdir().unwrap();
    for part in ["train", "val", "test"] {
        gray(&tmp.path().join(format!("{part}/a/0.png")), 5, 10);
        gray(&tmp.path().join(format!("{part}/b/0.png")), 5, 20);
    }
    assert_eq!(build(tmp.path(), &[], Split::Train).unwrap().len(), 2);
    assert_eq!(build(tmp.path(), &[], Split::Val).unwrap().len(), 2);
    assert_eq!(build(tmp.path(), &[], Split::Test).unwrap().len(), 2);
    gray(&tmp.path().join("test/c/0.png"), 5, 20);
    let e = error(tmp.path(), &[], Split::Test);
    assert!(
        e.contains("test/c") && e.contains("class 'c' is not one of the training classes (a, b)"),
        "{e}"
    );
}

#[test]
fn bad_folders_and_files_are_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // No data_root.
    let e = image_folder::build(&DataContext::new(HParams::new()).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("data_root") && e.contains("train/<class>/"),
        "{e}"
    );
    // A missing root.
    let e = error(&root.join("nothing"), &[], Split::Train);
    assert!(e.contains("nothing") && e.contains("No such file"), "{e}");
    // An empty root.
    let e = error(root, &[], Split::Train);
    assert!(e.contains("holds no class folders"), "{e}");
    // A class folder with no images.
    std::fs::create_dir_all(root.join("empty")).unwrap();
    gray(&root.join("full/0.png"), 4, 1);
    let e = error(root, &[], Split::Train);
    assert!(e.contains("empty") && e.contains("holds no images"), "{e}");
    std::fs::remove_dir(root.join("empty")).unwrap();
    // A corrupt image.
    std::fs::write(root.join("full/1.png"), b"not a png").unwrap();
    let e = error(root, &[], Split::Train);
    assert!(
        e.contains("full/1.png") && e.contains("not a readable PNG, JPEG or BMP image"),
        "{e}"
    );
    // A truncated one.
    let good = std::fs::read(root.join("full/0.png")).unwrap();
    std::fs::write(root.join("full/1.png"), &good[..good.len() / 2]).unwrap();
    let e = error(root, &[], Split::Train);
    assert!(e.contains("full/1.png"), "{e}");
    // Two sizes without image_size.
    gray(&root.join("full/1.png"), 5, 1);
    let e = error(root, &[], Split::Train);
    assert!(
        e.contains("full/1.png") && e.contains("is 5 x 5 pixels") && e.contains("image_size"),
        "{e}"
    );
    // Channels that cannot be made.
    let e = error(root, &[("channels", 4.into())], Split::Train);
    assert!(
        e.contains("channels") && e.contains("expected 1 (gray) or 3 (RGB), got 4"),
        "{e}"
    );
    // A split left empty, and no test folder.
    let e = error(
        root,
        &[("image_size", 4.into()), ("val_split", 0.01.into())],
        Split::Val,
    );
    assert!(
        e.contains("val_split") && e.contains("raise val_split"),
        "{e}"
    );
    let e = error(root, &[("image_size", 4.into())], Split::Test);
    assert!(
        e.contains("test") && e.contains("image_folder tests on data_root/test/<class>/"),
        "{e}"
    );
    // Recorded classes that the folders no longer hold.
    let e = error(
        root,
        &[
            ("image_size", 4.into()),
            ("classes", serde_json::json!(["full", "other"])),
        ],
        Split::Train,
    );
    assert!(
        e.contains("classes") && e.contains("trained on the classes full, other"),
        "{e}"
    );
}

/// Every example of `data` as one batch: its inputs and targets.
fn everything(data: &dyn lit_data::StoredImages) -> (Vec<f32>, Vec<u32>) {
    let b = data
        .get_batch(&(0..data.len()).collect::<Vec<_>>())
        .unwrap();
    (
        b.input.flatten_all().unwrap().to_vec1().unwrap(),
        b.target.to_vec1().unwrap(),
    )
}

#[test]
fn a_folder_over_the_memory_budget_decodes_batch_by_batch_to_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for i in 0..6 {
        rgb(
            &root.join(format!("train/red/{i}.png")),
            9,
            7,
            [200, 10 * i as u8, 0],
        );
        rgb(
            &root.join(format!("train/blue/{i}.png")),
            9,
            7,
            [0, 20, 150 + i as u8],
        );
    }
    rgb(&root.join("test/red/0.png"), 9, 7, [190, 0, 0]);
    let lazy = [("image_memory_mb", 0.into()), ("val_split", 0.25.into())];
    let eager = [("val_split", 0.25.into())];
    for split in [Split::Train, Split::Val, Split::Test] {
        let a = build(root, &eager, split).unwrap();
        let b = build(root, &lazy, split).unwrap();
        let (ia, ib) = (a.info().unwrap(), b.info().unwrap());
        assert_eq!(ia, ib, "{split:?}");
        assert_eq!(ia.input_shape, [3, 7, 9]);
        let ((xa, ya), (xb, yb)) = (everything(a.as_ref()), everything(b.as_ref()));
        assert_eq!(ya, yb);
        let close = xa.iter().zip(&xb).all(|(p, q)| (p - q).abs() < 1e-5);
        assert!(close, "{split:?}");
    }
    // The transforms reach the decoded pixels: a flip with probability 1 mirrors each row.
    let b = build(root, &lazy, Split::Train).unwrap();
    let cfg = lit_data::AugmentConfig {
        transforms: vec![lit_data::Transform::HorizontalFlip],
        prob: 1.0,
        seed: 0,
    };
    let aug = lit_data::Augmented::new(b.clone(), cfg).unwrap();
    let x = aug.get_batch_at(&[0], 0).unwrap().input;
    let plain = b.get_batch(&[0]).unwrap().input;
    assert_eq!(
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        plain
            .flip(&[3])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    // A file broken after the listing is named when its batch is gathered.
    let train = build(
        root,
        &[("image_memory_mb", 0.into()), ("val_split", 0.0.into())],
        Split::Train,
    )
    .unwrap();
    std::fs::write(root.join("train/blue/0.png"), b"not a png").unwrap();
    let e = train.get_batch(&[0]).err().unwrap().to_string();
    assert!(
        e.contains("blue/0.png") && e.contains("not a readable"),
        "{e}"
    );
}
