//! The ResNet row of the bench: lit's Trainer on ResNet-8 against PyTorch's plain loop on the
//! same network, batch and threads, each in its own process.

// The bench prints its table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use lit_data::mnist::{self, Flavor};

use crate::{roots, run_child, BATCH};

/// Steps of the ResNet row, on each side.
const RESNET_STEPS: usize = 200;

/// lit's Trainer on ResNet-8 against PyTorch's plain loop on the same network, as a ratio.
pub(crate) fn resnet_row(threads: usize) -> anyhow::Result<()> {
    println!(
        "ResNet-8 (resnet), MNIST train, batch {BATCH}, Adam, f32, {threads} thread(s); \
         {RESNET_STEPS} steps each"
    );
    let v = run_child(
        &std::env::current_exe()?,
        &[],
        "lit-resnet",
        RESNET_STEPS,
        1,
    )?;
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let lit_epoch = 60_000.0 * num(&v, "seconds") / num(&v, "samples");
    println!(
        "{:<22} {:>12} {:>14} {:>14}",
        "variant", "samples/s", "s per epoch", "ratio"
    );
    let row = |name: &str, epoch: f64, base: f64| {
        println!(
            "{name:<22} {:>12.0} {:>14.2} {:>14.3}",
            60_000.0 / epoch,
            epoch,
            epoch / base
        );
    };
    match torch_resnet(threads) {
        Ok(t) => {
            let torch_epoch = 60_000.0 * num(&t, "seconds") / num(&t, "samples");
            let version = t["torch"].as_str().unwrap_or("?");
            row(&format!("pytorch {version}"), torch_epoch, torch_epoch);
            row("lit", lit_epoch, torch_epoch);
            println!(
                "lit / PyTorch, time per epoch: {:.3} (below 1: lit is faster)",
                lit_epoch / torch_epoch
            );
        }
        Err(why) => {
            row("lit", lit_epoch, lit_epoch);
            println!("pytorch: not run ({why:#})");
        }
    }
    Ok(())
}

/// PyTorch's loop (`scripts/resnet_torch.py bench`), when `$PYTHON` (or `python3`) has torch.
fn torch_resnet(threads: usize) -> anyhow::Result<serde_json::Value> {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let has_torch = Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        bail!(
            "{} cannot import torch; set PYTHON to an interpreter that can",
            python.to_string_lossy()
        );
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/resnet_torch.py");
    let dir = mnist::locate(Flavor::Mnist, &roots()).context("no MNIST data found")?;
    let out = Command::new(&python)
        .arg(&script)
        .args(["bench", &dir.display().to_string()])
        .args([
            RESNET_STEPS.to_string(),
            threads.to_string(),
            BATCH.to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the PyTorch loop printed {line}"))
}
