//! What the binary writes cannot clobber or panic: `predict --output` writes into a device,
//! a FIFO or a symbolic link's target without replacing them, and stdout that is a closed pipe
//! or a full device ends the program quietly or with a clear error.

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::fake_data;

/// `predict` on the fake data set, writing to `output`.
fn predict(dir: &Path, output: &Path) -> std::process::Output {
    let root = dir.join("data");
    fake_data(&root);
    super::mnist(
        dir,
        &[
            "predict",
            "--data-dir",
            root.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
    )
}

#[test]
fn predict_output_writes_through_devices_fifos_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A device: /dev/null stays the device (as root, a rename would replace it).
    let out = predict(dir, Path::new("/dev/null"));
    assert!(out.status.success(), "{out:?}");
    let kind = std::fs::symlink_metadata("/dev/null").unwrap().file_type();
    assert!(kind.is_char_device(), "/dev/null is no longer a device");
    // No run directory for a prediction written elsewhere.
    assert!(
        !dir.join("logs").exists(),
        "predict --output made a run directory"
    );
    // A symbolic link: its target gets the CSV, the link stays a link.
    let target = dir.join("target.csv");
    std::fs::write(&target, "old").unwrap();
    let link = dir.join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = predict(dir, &link);
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .starts_with("dataset,index,prediction"));
    // A FIFO: a reader gets the CSV through it, and it stays a FIFO.
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    let out = predict(dir, &fifo);
    assert!(out.status.success(), "{out:?}");
    assert!(reader.join().unwrap().starts_with("dataset,index"));
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn stdout_closed_early_or_full_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    fake_data(&root);
    let args = ["test", "--data-dir", root.to_str().unwrap()];
    // `mnist test | head -1`: the reader leaves after a line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .current_dir(tmp.path())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 141)),
        "{:?}: {stderr}",
        out.status
    );
    // `mnist test > /dev/full`: a clear error, no panic.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .current_dir(tmp.path())
        .env("RUST_LOG", "off")
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing to standard output") && stderr.contains("No space left"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn predict_to_stdout_writes_the_csv_alone_and_appends_where_the_shell_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("data");
    fake_data(&root);
    let args = |output: &str| {
        vec![
            "predict".to_string(),
            "--data-dir".into(),
            root.to_str().unwrap().into(),
            "--output".into(),
            output.into(),
        ]
    };
    // `--output -` into a pipe: the CSV alone on stdout, the notes on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args("-"))
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("dataset,index,prediction"), "{stdout}");
    assert_eq!(
        stdout.lines().count(),
        5,
        "a header and the 4 test images: {stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("predictions written to -"));
    // `--output /dev/stdout >> all.csv`: what the file held stays.
    let all = dir.join("all.csv");
    std::fs::write(&all, "before\n").unwrap();
    let appending = std::fs::OpenOptions::new().append(true).open(&all).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args("/dev/stdout"))
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .stdout(appending)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&all).unwrap();
    assert!(text.starts_with("before\ndataset,index"), "{text}");
}

#[test]
fn a_terminal_shows_a_validation_bar_below_the_training_bar() {
    let Some(root) = super::flags::data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // `script` (util-linux, in every Debian) runs the program on a pseudo-terminal.
    let command = format!(
        "{} --data-dir {root} --max-epochs 1 --limit-train-batches 5 --limit-val-batches 20 \
         --num-sanity-val-steps 0 --no-test",
        env!("CARGO_BIN_EXE_mnist")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(tmp.path())
        .env("RUST_LOG", "off")
        .output()
        .expect("running script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("validate mnist_val") && screen.contains("/20"),
        "no validation bar: {screen}"
    );
}
