//! The example runs as a user runs it and reaches its accuracy (it exits non-zero below 95%), so
//! `cargo test` (and CI) trains it on every change.

#[test]
fn the_example_trains_to_its_accuracy() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blobs"))
        .env("RUST_LOG", "off")
        .output()
        .expect("running blobs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("validation accuracy"), "{stdout}");
}
