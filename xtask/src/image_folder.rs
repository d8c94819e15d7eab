//! `cargo xtask data --image-folder DIR`: the shipped MNIST and Fashion-MNIST written out as real
//! PNG files in class folders, the layout the `image_folder` dataset reads, so that it can be
//! tried and tested on real image files:
//!
//! ```text
//! DIR/mnist/{train,val,test}/<class>/<index>.png          28 x 28 gray
//! DIR/fashion-mnist/{train,val,test}/<class>/<index>.png  28 x 28 gray
//! DIR/fashion-mnist-rgb/{train,val,test}/<class>/<index>.png  32 x 32 RGB
//! ```
//!
//! `train/` holds the first 55,000 training images and `val/` the last 5,000, as the IDX
//! datasets split them, and `test/` the 10,000 test images, so a run on the folders sees the
//! same split. Class folders are named `<label>_<name>` so that their sorted order (the
//! `image_folder` class indices) is the label order. The RGB variant pads each image to 32 x 32
//! and paints it in a colour drawn for the image (from its index), on a dark background of
//! another, so the three channels differ.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The training images kept for training; the rest validate (the IDX datasets' split).
const TRAIN_SPLIT: usize = 55_000;

const MNIST_CLASSES: [&str; 10] = [
    "0_zero", "1_one", "2_two", "3_three", "4_four", "5_five", "6_six", "7_seven", "8_eight",
    "9_nine",
];

const FASHION_CLASSES: [&str; 10] = [
    "0_t-shirt_top",
    "1_trouser",
    "2_pullover",
    "3_dress",
    "4_coat",
    "5_sandal",
    "6_shirt",
    "7_sneaker",
    "8_bag",
    "9_ankle_boot",
];

/// Writes the folders under `out`.
pub(crate) fn write(out: &Path) -> anyhow::Result<()> {
    let mnist = PathBuf::from("data/mnist");
    write_set(&mnist, &out.join("mnist"), &MNIST_CLASSES, false)?;
    let fashion = ["data/fashion-mnist", "/usr/share/datasets/fashion-mnist"]
        .iter()
        .map(PathBuf::from)
        .find(|d| {
            d.join("train-images-idx3-ubyte.gz").is_file()
                || d.join("train-images-idx3-ubyte").is_file()
        });
    match fashion {
        Some(dir) => {
            write_set(&dir, &out.join("fashion-mnist"), &FASHION_CLASSES, false)?;
            write_set(&dir, &out.join("fashion-mnist-rgb"), &FASHION_CLASSES, true)?;
        }
        None => println!(
            "Fashion-MNIST not found (data/fashion-mnist or /usr/share/datasets/fashion-mnist; \
             apt-get install dataset-fashion-mnist): only MNIST written"
        ),
    }
    Ok(())
}

fn write_set(src: &Path, dest: &Path, classes: &[&str; 10], rgb: bool) -> anyhow::Result<()> {
    let (images, rows, cols) = read_images(&src.join("train-images-idx3-ubyte"))?;
    let labels = read_labels(&src.join("train-labels-idx1-ubyte"))?;
    let (test_images, _, _) = read_images(&src.join("t10k-images-idx3-ubyte"))?;
    let test_labels = read_labels(&src.join("t10k-labels-idx1-ubyte"))?;
    let per = rows * cols;
    for (what, n_images, n_labels) in [
        ("train", images.len() / per.max(1), labels.len()),
        ("t10k", test_images.len() / per.max(1), test_labels.len()),
    ] {
        if n_images != n_labels {
            bail!(
                "{}: {what} has {n_images} images but {n_labels} labels",
                src.display()
            );
        }
    }
    let split = TRAIN_SPLIT.min(labels.len());
    // Written to a temporary folder and renamed, so an interrupted export leaves no half set.
    let tmp = dest.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    for (part, range, imgs, labs) in [
        ("train", 0..split, &images, &labels),
        ("val", split..labels.len(), &images, &labels),
        ("test", 0..test_labels.len(), &test_images, &test_labels),
    ] {
        for c in classes {
            fs::create_dir_all(tmp.join(part).join(c))?;
        }
        for i in range {
            let label = usize::from(labs[i]);
            let class = classes
                .get(label)
                .with_context(|| format!("label {label} out of range"))?;
            let path = tmp.join(part).join(class).join(format!("{i:05}.png"));
            let pixels = &imgs[i * per..(i + 1) * per];
            if rgb {
                let (data, side) = colour(pixels, rows, cols, i as u64);
                png(&path, &data, side, side, png::ColorType::Rgb)?;
            } else {
                png(&path, pixels, cols, rows, png::ColorType::Grayscale)?;
            }
        }
    }
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    println!(
        "{}: {} training, {} validation, {} test images",
        dest.display(),
        split,
        labels.len() - split,
        test_labels.len()
    );
    Ok(())
}

/// A gray image padded by 2 pixels to a square of 32 (for 28 x 28) and painted: the digit or
/// garment in one colour, the background in a darker other, both drawn from `seed`.
fn colour(gray: &[u8], rows: usize, cols: usize, seed: u64) -> (Vec<u8>, usize) {
    let side = rows.max(cols) + 4;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
    };
    let fg = [next() / 2 + 128, next() / 2 + 128, next() / 2 + 128];
    let bg = [next() / 4, next() / 4, next() / 4];
    let mut out = vec![0u8; side * side * 3];
    for y in 0..side {
        for x in 0..side {
            let v = if (2..rows + 2).contains(&y) && (2..cols + 2).contains(&x) {
                f32::from(gray[(y - 2) * cols + (x - 2)]) / 255.0
            } else {
                0.0
            };
            for c in 0..3 {
                let p = f32::from(bg[c]) * (1.0 - v) + f32::from(fg[c]) * v;
                out[(y * side + x) * 3 + c] = p.round() as u8;
            }
        }
    }
    (out, side)
}

fn png(path: &Path, data: &[u8], w: usize, h: usize, color: png::ColorType) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(data)?;
    Ok(())
}

/// The bytes of an IDX file, or of its `.gz`.
fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_file() {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let gz = path.with_extension(match path.extension() {
        Some(e) => format!("{}.gz", e.to_string_lossy()),
        None => "gz".into(),
    });
    let gz = if gz.is_file() {
        gz
    } else {
        PathBuf::from(format!("{}.gz", path.display()))
    };
    let file = fs::File::open(&gz).with_context(|| format!("reading {}", gz.display()))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .with_context(|| format!("decompressing {}", gz.display()))?;
    Ok(out)
}

fn be(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

fn read_images(path: &Path) -> anyhow::Result<(Vec<u8>, usize, usize)> {
    let b = read(path)?;
    if b.len() < 16 || be(&b, 0) != 0x0803 {
        bail!("{}: not an IDX image file", path.display());
    }
    let (n, rows, cols) = (be(&b, 4), be(&b, 8), be(&b, 12));
    if b.len() != 16 + n * rows * cols {
        bail!(
            "{}: {} bytes, expected {}",
            path.display(),
            b.len(),
            16 + n * rows * cols
        );
    }
    Ok((b[16..].to_vec(), rows, cols))
}

fn read_labels(path: &Path) -> anyhow::Result<Vec<u8>> {
    let b = read(path)?;
    if b.len() < 8 || be(&b, 0) != 0x0801 || b.len() != 8 + be(&b, 4) {
        bail!("{}: not an IDX label file", path.display());
    }
    Ok(b[8..].to_vec())
}
