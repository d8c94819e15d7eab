//! The example trains on a folder of PNG files written here, as a user's folder would be, and
//! reaches its accuracy, so `cargo test` (and CI) runs it on every change.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

/// `n` 20 x 20 RGB images per class: `red/` mostly red, `blue/` mostly blue, with noise.
fn folder(root: &std::path::Path, n: usize) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 70) as u8
    };
    for (class, base) in [("red", [170u8, 40, 40]), ("blue", [40, 40, 170])] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(20, 20, |_, _| {
                image::Rgb([base[0] + noise(), base[1] + noise(), base[2] + noise()])
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

#[test]
fn the_example_trains_on_an_image_folder_to_its_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path(), 100);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_my-images"))
        .args([tmp.path().to_str().unwrap(), "0.9"])
        .env("RUST_LOG", "off")
        .output()
        .expect("running my-images");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("classes: blue, red"), "{stdout}");
    assert!(stdout.contains("validation accuracy"), "{stdout}");
}
