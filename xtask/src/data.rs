//! `cargo xtask data`: put MNIST or Fashion-MNIST into `data/` and check it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::run_cmd;

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// SHA-256 of the canonical uncompressed MNIST files.
const MNIST_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist";
const FASHION_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";

pub(crate) fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut from: Option<PathBuf> = None;
    let mut fashion = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--from" => from = Some(PathBuf::from(it.next().context("--from needs a folder")?)),
            "--fashion" => fashion = true,
            "--image-folder" => {
                let dir = it
                    .next()
                    .context("--image-folder needs a folder to write into")?;
                return crate::image_folder::write(Path::new(&dir));
            }
            other => bail!(
                "cargo xtask data: unknown option '{other}'; usage: data [--from DIR] [--fashion] \
                 | data --image-folder DIR"
            ),
        }
    }
    let target = PathBuf::from("data").join(if fashion { "fashion-mnist" } else { "mnist" });
    fs::create_dir_all(&target)?;
    for file in FILES {
        let dest = target.join(file);
        if dest.is_file() || target.join(format!("{file}.gz")).is_file() {
            continue;
        }
        match &from {
            Some(dir) => copy_one(dir, file, &target)?,
            None => download(if fashion { FASHION_URL } else { MNIST_URL }, file, &target)?,
        }
    }
    if fashion {
        println!(
            "Fashion-MNIST is in {} (no published checksums to verify)",
            target.display()
        );
    } else {
        verify(&target)?;
        println!(
            "MNIST is in {} and matches its SHA-256 sums",
            target.display()
        );
    }
    Ok(())
}

fn copy_one(dir: &Path, file: &str, target: &Path) -> anyhow::Result<()> {
    for (src, name) in [
        (dir.join(file), file.to_string()),
        (dir.join(format!("{file}.gz")), format!("{file}.gz")),
        (dir.join("mnist").join(file), file.to_string()),
    ] {
        if src.is_file() {
            fs::copy(&src, target.join(&name))
                .with_context(|| format!("copying {}", src.display()))?;
            return Ok(());
        }
    }
    bail!("{} has no {file} (nor {file}.gz)", dir.display())
}

fn download(base: &str, file: &str, target: &Path) -> anyhow::Result<()> {
    let gz = target.join(format!("{file}.gz"));
    println!("downloading {base}/{file}.gz");
    run_cmd(
        Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&gz)
            .arg(format!("{base}/{file}.gz")),
    )
    .context("downloading needs curl and network access; or use `cargo xtask data --from DIR`")?;
    run_cmd(Command::new("gunzip").arg("-f").arg(&gz))
}

fn verify(dir: &Path) -> anyhow::Result<()> {
    let sums: String = FILES
        .iter()
        .zip(MNIST_SHA256)
        .map(|(f, h)| format!("{h}  {f}\n"))
        .collect();
    fs::write(dir.join("SHA256SUMS"), &sums)?;
    let raw_present = FILES.iter().all(|f| dir.join(f).is_file());
    if !raw_present {
        println!("(gzipped files: checksums are checked on the uncompressed files only)");
        return Ok(());
    }
    run_cmd(
        Command::new("sha256sum")
            .arg("--quiet")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(dir),
    )
    .with_context(|| {
        format!(
            "{} does not match the published MNIST checksums",
            dir.display()
        )
    })
}
