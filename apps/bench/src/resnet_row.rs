//! `--resnet`: lit's Trainer against PyTorch's plain loop on ExampleNet and ResNet-8 (the
//! `resnet` model), the same network, data, batch, optimizer and thread count, each run in its
//! own process, the two sides alternating for [`ROUNDS`] rounds so that a drift in the
//! machine's speed hits both. Each round's ratio and their median are printed, PyTorch
//! Lightning's time when it is installed, and the fraction of this machine's sgemm peak (measured
//! in the same run) that each side's training reaches.

// The bench prints its table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use candle::{Device, Tensor};
use lit_data::mnist::{self, Flavor};

use crate::{roots, run_child};

/// Rounds of each side, alternating.
const ROUNDS: usize = 3;

/// One comparison: the network's name, lit's child variant, the script's network, the batch and
/// the steps of each run.
struct Case {
    name: &'static str,
    variant: &'static str,
    net: &'static str,
    batch: usize,
    steps: usize,
    /// Training FLOPs per example: three times the forward pass's (the forward, the input
    /// gradient and the weight gradient), two per multiply-add.
    flops: f64,
}

/// Multiply-adds of a `k x k` convolution to `cout` channels of `h x w` from `cin` channels.
fn conv(h: usize, w: usize, cout: usize, cin: usize, k: usize) -> f64 {
    (h * w * cout * cin * k * k) as f64
}

/// ExampleNet on 28 x 28: three 3x3 convolutions (16, 32, 64 channels at 28, 14, 7) and two
/// linear layers.
fn example_net_flops() -> f64 {
    let macs = conv(28, 28, 16, 1, 3)
        + conv(14, 14, 32, 16, 3)
        + conv(7, 7, 64, 32, 3)
        + (7 * 7 * 64 * 128 + 128 * 10) as f64;
    6.0 * macs
}

/// ResNet-8 (width 16) on 28 x 28: the stem, one basic block per stage (the second and third
/// halving the size, with a 1x1 shortcut), the classifier.
fn resnet8_flops() -> f64 {
    let mut macs = conv(28, 28, 16, 1, 3) + 2.0 * conv(28, 28, 16, 16, 3);
    for (side, c) in [(14, 32), (7, 64)] {
        macs += conv(side, side, c, c / 2, 3) + conv(side, side, c, c, 3);
        macs += conv(side, side, c, c / 2, 1);
    }
    6.0 * (macs + 640.0)
}

fn cases() -> [Case; 4] {
    let (e, r) = (example_net_flops(), resnet8_flops());
    let case = |name, variant, net, batch, steps, flops| Case {
        name,
        variant,
        net,
        batch,
        steps,
        flops,
    };
    [
        case("ExampleNet", "lit", "example", 64, 400, e),
        case("ExampleNet", "lit", "example", 256, 100, e),
        case("ResNet-8", "lit-resnet", "resnet", 64, 200, r),
        case("ResNet-8", "lit-resnet", "resnet", 256, 50, r),
    ]
}

/// This machine's f32 matrix-multiply rate in FLOP/s: the best of ten 1024 x 1024 products
/// through candle's CPU gemm on the bench's threads.
fn sgemm_peak() -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        c.sum_all()?.to_scalar::<f32>()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / best)
}

/// The median of `v` (NaN for none).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Every case: lit and PyTorch alternating, then Lightning once.
pub(crate) fn resnet_row(threads: usize) -> anyhow::Result<()> {
    let peak = sgemm_peak()?;
    println!(
        "lit's Trainer against PyTorch's plain loop, MNIST train, Adam, f32, {threads} thread(s), \
         {ROUNDS} alternating rounds; sgemm peak {:.1} GFLOP/s (1024 x 1024, candle)",
        peak / 1e9
    );
    let python = torch_python();
    if let Err(why) = &python {
        println!("pytorch: not run ({why:#})");
    }
    println!(
        "{:<12} {:>5} {:>6} {:>12} {:>12} {:>10} {:>9} {:>9} {:>7} {:>7}",
        "network",
        "batch",
        "round",
        "lit /s",
        "pytorch /s",
        "time ratio",
        "lit peak",
        "pt peak",
        "lit MB",
        "pt MB"
    );
    for case in cases() {
        compare(&case, threads, peak, python.as_ref().ok())?;
    }
    println!(
        "time ratio: lit's time per sample over PyTorch's (below 1: lit is faster); peak: the \
         fraction of the sgemm peak; MB: peak resident memory (the median row: the largest)"
    );
    Ok(())
}

/// One case's rounds and its median row.
fn compare(case: &Case, threads: usize, peak: f64, python: Option<&PathBuf>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let batch = case.batch.to_string();
    let env = [("LIT_BENCH_BATCH", batch.as_str())];
    let (mut lits, mut torches, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lit_mb, mut torch_mb) = (0f64, 0f64);
    let fraction = |rate: f64| 100.0 * rate * case.flops / peak;
    for round in 1..=ROUNDS {
        let v = run_child(&exe, &env, case.variant, case.steps, 1)?;
        let lit =
            v["samples"].as_f64().unwrap_or(f64::NAN) / v["seconds"].as_f64().unwrap_or(f64::NAN);
        let (torch, tmb) = match python {
            Some(p) => torch_rate(p, case, threads, "plain")?,
            None => (f64::NAN, f64::NAN),
        };
        let lmb = v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
        (lit_mb, torch_mb) = (lit_mb.max(lmb), torch_mb.max(tmb));
        lits.push(lit);
        torches.push(torch);
        ratios.push(torch / lit);
        println!(
            "{:<12} {:>5} {:>6} {lit:>12.0} {torch:>12.0} {:>10.3} {:>8.1}% {:>8.1}% {lmb:>7.0} {tmb:>7.0}",
            case.name,
            case.batch,
            round,
            torch / lit,
            fraction(lit),
            fraction(torch)
        );
    }
    let (lit, torch) = (median(lits), median(torches));
    println!(
        "{:<12} {:>5} {:>6} {lit:>12.0} {torch:>12.0} {:>10.3} {:>8.1}% {:>8.1}% {lit_mb:>7.0} {torch_mb:>7.0}",
        case.name,
        case.batch,
        "median",
        median(ratios),
        fraction(lit),
        fraction(torch)
    );
    if let Some(p) = python {
        match torch_rate(p, case, threads, "lightning") {
            Ok((rate, mb)) => println!(
                "{:<12} {:>5} {:>6} {:>12} {rate:>12.0} {:>10.3} {:>9} {:>8.1}% {:>7} {mb:>7.0}  \
                 (PyTorch Lightning)",
                case.name,
                case.batch,
                "L",
                "",
                rate / lit,
                "",
                fraction(rate),
                ""
            ),
            Err(why) => println!(
                "{:<12} {:>5} lightning: not run ({why:#})",
                case.name, case.batch
            ),
        }
    }
    Ok(())
}

/// `$PYTHON` (or `python3`) when it can import torch.
fn torch_python() -> anyhow::Result<PathBuf> {
    let python = PathBuf::from(std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into()));
    let has_torch = Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        bail!(
            "{} cannot import torch; set PYTHON to an interpreter that can",
            python.display()
        );
    }
    Ok(python)
}

/// PyTorch's samples/s on `case` (`scripts/resnet_torch.py bench`), with its plain loop or
/// Lightning's Trainer (`runner`), and its peak resident memory in MB.
fn torch_rate(
    python: &PathBuf,
    case: &Case,
    threads: usize,
    runner: &str,
) -> anyhow::Result<(f64, f64)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/resnet_torch.py");
    let dir = mnist::locate(Flavor::Mnist, &roots()).context("no MNIST data found")?;
    let out = Command::new(python)
        .arg(&script)
        .args(["bench", &dir.display().to_string()])
        .args([
            case.steps.to_string(),
            threads.to_string(),
            case.batch.to_string(),
            case.net.to_string(),
            runner.to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    if !out.status.success() {
        bail!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("the PyTorch loop printed {line}"))?;
    let peak = v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
    match v["samples"].as_f64().zip(v["seconds"].as_f64()) {
        Some((n, s)) => Ok((n / s, peak)),
        None => bail!("{}", v["error"].as_str().unwrap_or("no timing printed")),
    }
}
