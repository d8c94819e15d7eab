//! `lit-bench`: times lit's Trainer against a bare Candle loop on ExampleNet, MNIST (60,000
//! training images), batch 64, Adam, f32, the same seed and the same kernels.
//!
//! Variants: `candle`, a bare loop on candle's own layers; `bare`, the same loop on lit's CPU
//! kernels (`lit_model::nn`); `lit`, lit's Trainer on those kernels. `cargo xtask bench` runs each
//! in its own process (so peak memory is its own) and reports samples/s, seconds per
//! 60,000-image epoch, peak resident memory and each time relative to `bare`. `--full` reports
//! the median epoch of 3-epoch runs: candle's once, then the bare loop and the Trainer twice each,
//! alternating, so that a drift in the machine's speed hits both sides of the overhead ratio. The
//! default runs 400 steps of each once (where fit's fixed set-up cost still shows in the ratio).
//!
//! `--resnet` times lit's Trainer against PyTorch's plain loop (`scripts/resnet_torch.py`, run by
//! `$PYTHON` or `python3` when it has torch) on ExampleNet and the `resnet` model (ResNet-8:
//! batch norm, residual blocks, dropout) at batch 64 and 256, the sides alternating three times,
//! with each ratio, the medians, PyTorch Lightning's time when it is installed and the fraction of
//! the machine's sgemm peak each reaches (see `resnet_row`). The default table ends with it.
// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use candle::{DType, Device, ModuleT};
use lit_core::{Accelerator, Callback, Limit, Trainer, TrainerConfig, TrainerState};
use lit_data::mnist::{self, Flavor};
use lit_data::{
    DInterface, DataContext, DataLoader, DataLoaderConfig, Dataset, DatasetRegistry, HParams,
};
use lit_model::init::SeededVarMap;
use lit_model::optim::{named_params, Adam, AdamConfig, Optimizer};
use lit_model::{MInterface, ModelRegistry, Net};

mod resnet_row;
mod table;
use resnet_row::resnet_row;
use table::{median, print_rows, Row};

// The mnist app's allocator (glibc's malloc on Linux, tuned by `threads::init`; mimalloc
// elsewhere), or mimalloc everywhere with the `mimalloc` feature, for `--allocators`.
#[cfg(any(
    feature = "mimalloc",
    not(all(target_os = "linux", target_env = "gnu"))
))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A malloc tunable with its default value: its presence in `GLIBC_TUNABLES` tells
/// `threads::init` to leave glibc's malloc untuned (the user's settings stand).
const GLIBC_DEFAULTS: &str = "glibc.malloc.perturb=0";

const SEED: u64 = 1234;
const BATCH: usize = 64;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// This process's minor page faults and system CPU seconds, from `/proc/self/stat`.
fn faults_and_system_time() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at the state, field 3.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // minflt is field 10, stime field 15, in clock ticks of 1/100 s on Linux.
    (
        field(10).unwrap_or(f64::NAN),
        field(15).map_or(f64::NAN, |t| t / 100.0),
    )
}

fn roots() -> Vec<PathBuf> {
    DataContext::new(HParams::new())
        .map(|c| c.roots)
        .unwrap_or_default()
}

fn train_set() -> anyhow::Result<Arc<dyn Dataset>> {
    let raw = mnist::load_split(Flavor::Mnist, &roots(), true)?;
    Ok(Arc::new(mnist::to_dataset(
        &raw,
        0.1307,
        0.3081,
        &Device::Cpu,
    )?))
}

/// ExampleNet on candle's own layers and kernels (candle-nn's conv2d, candle's max-pool).
struct CandleNet {
    convs: Vec<candle_nn::Conv2d>,
    fc9: candle_nn::Linear,
    fc11: candle_nn::Linear,
}

impl CandleNet {
    fn new(vb: candle_nn::VarBuilder) -> candle::Result<Self> {
        let vb = vb.pp("model");
        let same = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = |i: usize, o: usize, name: &str| -> candle::Result<candle_nn::Conv2d> {
            let c = lit_model::nn::conv2d(i, o, 3, same, vb.pp(name))?;
            Ok(candle_nn::Conv2d::new(
                c.weight().clone(),
                c.bias().cloned(),
                same,
            ))
        };
        Ok(Self {
            convs: vec![conv(1, 16, "0")?, conv(16, 32, "3")?, conv(32, 64, "6")?],
            fc9: candle_linear(lit_model::nn::linear(7 * 7 * 64, 128, vb.pp("9"))?),
            fc11: candle_linear(lit_model::nn::linear(128, 10, vb.pp("11"))?),
        })
    }
}

/// candle-nn's `Linear` over the parameters of lit's (initialised as PyTorch does).
fn candle_linear(l: lit_model::nn::Linear) -> candle_nn::Linear {
    candle_nn::Linear::new(l.weight().clone(), l.bias().cloned())
}

impl ModuleT for CandleNet {
    fn forward_t(&self, xs: &candle::Tensor, _train: bool) -> candle::Result<candle::Tensor> {
        use candle::Module;
        let xs = self.convs[0].forward(xs)?.relu()?.max_pool2d(2)?;
        let xs = self.convs[1].forward(&xs)?.relu()?.max_pool2d(2)?;
        let xs = self.convs[2].forward(&xs)?.relu()?.flatten_from(1)?;
        self.fc11.forward(&self.fc9.forward(&xs)?.relu()?)
    }
}

/// The bare loop: forward, cross-entropy, backward, Adam step; nothing else. `candle_kernels`
/// picks candle's own layers instead of lit's (same parameters, same initial values).
/// What a timed run measured: total seconds, samples, and the seconds of each epoch.
struct Timing {
    seconds: f64,
    samples: usize,
    epochs: Vec<f64>,
}

fn bare(steps: usize, epochs: usize, candle_kernels: bool) -> anyhow::Result<Timing> {
    // Batches gathered on the loop's own thread, as a bare loop does (no prefetching worker).
    let config = DataLoaderConfig {
        batch_size: BATCH,
        shuffle: true,
        seed: SEED,
        num_workers: 0,
        ..Default::default()
    };
    let loader = DataLoader::new(train_set()?, config)?;
    let varmap = candle_nn::VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, SEED, DType::F32, &Device::Cpu);
    let net: Box<dyn ModuleT> = if candle_kernels {
        Box::new(CandleNet::new(vb)?)
    } else {
        Box::new(example_net::ExampleNet::new(
            &example_net::Config::default(),
            vb,
        )?)
    };
    let mut opt = Adam::new(named_params(&varmap), AdamConfig::default())?;
    let start = Instant::now();
    let mut samples = 0;
    // CPU ops are synchronous, so wall-clock splits of a step are exact.
    let mut split = [0f64; 3];
    let mut epoch_seconds = Vec::new();
    for epoch in 0..epochs {
        let epoch_start = Instant::now();
        for batch in loader.iter(epoch as u64).take(steps) {
            let batch = batch?;
            let t0 = Instant::now();
            let logits = net.forward_t(&batch.input, true)?;
            let loss = if candle_kernels {
                candle_nn::loss::cross_entropy(&logits, &batch.target.to_dtype(DType::U32)?)?
            } else {
                lit_model::loss::cross_entropy(&logits, &batch.target)?
            };
            let t1 = Instant::now();
            let grads = loss.backward()?;
            let t2 = Instant::now();
            opt.step(&grads)?;
            split[0] += (t1 - t0).as_secs_f64();
            split[1] += (t2 - t1).as_secs_f64();
            split[2] += t2.elapsed().as_secs_f64();
            samples += batch.len();
        }
        epoch_seconds.push(epoch_start.elapsed().as_secs_f64());
    }
    let steps = (samples / BATCH).max(1) as f64;
    eprintln!(
        "bare loop per step: forward + loss {:.2} ms, backward {:.2} ms, optimizer {:.2} ms",
        split[0] * 1e3 / steps,
        split[1] * 1e3 / steps,
        split[2] * 1e3 / steps
    );
    Ok(Timing {
        seconds: start.elapsed().as_secs_f64(),
        samples,
        epochs: epoch_seconds,
    })
}

/// Records the wall-clock length of each training epoch.
struct EpochClock {
    start: Option<Instant>,
    epochs: Rc<RefCell<Vec<f64>>>,
}

impl Callback for EpochClock {
    fn name(&self) -> &str {
        "EpochClock"
    }

    fn on_train_epoch_start(&mut self, _: &mut TrainerState) -> lit_core::Result<()> {
        self.start = Some(Instant::now());
        Ok(())
    }

    fn on_train_epoch_end(&mut self, _: &mut TrainerState) -> lit_core::Result<()> {
        if let Some(start) = self.start.take() {
            self.epochs.borrow_mut().push(start.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// lit's Trainer with MInterface and DInterface on `model`, logging every 50 steps, no
/// validation.
fn lit(model: &str, steps: usize, epochs: usize) -> anyhow::Result<Timing> {
    // `--resnet` runs other batch sizes through its children.
    let batch = match std::env::var("LIT_BENCH_BATCH") {
        Ok(b) => b.parse().context("LIT_BENCH_BATCH")?,
        Err(_) => BATCH,
    };
    let mut hp = HParams::new();
    for (k, v) in [
        ("model_name", serde_json::json!(model)),
        ("train_dataset", serde_json::json!("mnist_60k")),
        ("batch_size", serde_json::json!(batch)),
        ("seed", serde_json::json!(SEED)),
        ("optimizer", serde_json::json!("adam")),
    ] {
        hp.set(k, v)?;
    }
    let mut datasets = DatasetRegistry::new();
    datasets.register("mnist_60k", |ctx| {
        let ds = ctx.cached("mnist_60k", || {
            let raw = mnist::load_split(Flavor::Mnist, &roots(), true)?;
            mnist::to_dataset(&raw, 0.1307, 0.3081, &Device::Cpu)
        })?;
        Ok(ds as Arc<dyn Dataset>)
    });
    let mut dm = DInterface::new(datasets, hp.clone())?;
    // Read the data before timing, as the bare loop does (fit's own setup then hits the cache).
    lit_data::DataModule::setup(&mut dm, lit_data::Stage::Fit)?;
    let mut models = ModelRegistry::new();
    models.register::<example_net::ExampleNet>("example_net");
    models.register::<resnet::ResNet>("resnet");
    let mut module = MInterface::new(&models, hp.clone(), &Device::Cpu, candle::DType::F32)?;
    let cfg = TrainerConfig {
        max_epochs: epochs,
        limit_train_batches: Limit::Batches(steps),
        num_sanity_val_steps: 0,
        accelerator: Accelerator::Cpu,
        logger: false,
        ..Default::default()
    };
    let clock = Rc::new(RefCell::new(Vec::new()));
    let mut trainer = Trainer::new(cfg)?
        .with_hparams(hp)
        .with_callback(EpochClock {
            start: None,
            epochs: clock.clone(),
        });
    let start = Instant::now();
    trainer.fit(&mut module, &mut dm)?;
    let seconds = start.elapsed().as_secs_f64();
    let epochs = clock.borrow().clone();
    Ok(Timing {
        seconds,
        samples: trainer.state().global_step() as usize * batch,
        epochs,
    })
}

fn child(variant: &str, steps: usize, epochs: usize) -> anyhow::Result<()> {
    let Timing {
        seconds: secs,
        samples,
        epochs: epoch_seconds,
    } = match variant {
        "candle" => bare(steps, epochs, true)?,
        "bare" => bare(steps, epochs, false)?,
        "lit" => lit("example_net", steps, epochs)?,
        "lit-resnet" => lit("resnet", steps, epochs)?,
        other => bail!("unknown variant {other}"),
    };
    let (faults, system) = faults_and_system_time();
    println!(
        "{}",
        serde_json::json!({
            "variant": variant,
            "seconds": secs,
            "samples": samples,
            "epoch_seconds": epoch_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "minor_faults": faults,
            "system_seconds": system,
        })
    );
    Ok(())
}

/// One variant's run in a child process of `exe`, with extra environment variables.
fn run_child(
    exe: &std::path::Path,
    env: &[(&str, &str)],
    variant: &str,
    steps: usize,
    epochs: usize,
) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(exe)
        .args(["--child", variant, &steps.to_string(), &epochs.to_string()])
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!("{variant} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    serde_json::from_str(&line).with_context(|| format!("{variant} printed {line}"))
}

/// The Trainer (ExampleNet, then ResNet-8) on this binary's allocator, glibc's malloc tuned as
/// `threads::init` tunes it, against glibc's defaults (the same binary with [`GLIBC_DEFAULTS`])
/// and mimalloc (`mimalloc`, the same program built with the `mimalloc` feature).
fn allocators(mimalloc: &std::path::Path, steps: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    println!("lit's Trainer, {steps} steps of batch {BATCH}, by global allocator");
    println!(
        "{:<10} {:<18} {:>10} {:>12} {:>8} {:>13} {:>9}",
        "network", "allocator", "samples/s", "s per epoch", "peak MB", "minor faults", "system s"
    );
    let plain = [("GLIBC_TUNABLES", GLIBC_DEFAULTS)];
    for (network, variant) in [("ExampleNet", "lit"), ("ResNet-8", "lit-resnet")] {
        let steps = if variant == "lit" { steps } else { steps / 3 };
        for (name, exe, env) in [
            ("glibc, tuned", exe.as_path(), &[][..]),
            ("glibc, defaults", exe.as_path(), &plain),
            ("mimalloc", mimalloc, &[]),
        ] {
            let v = run_child(exe, env, variant, steps, 1)?;
            let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let (secs, samples) = (num("seconds"), num("samples"));
            println!(
                "{network:<10} {name:<18} {:>10.0} {:>12.2} {:>8.0} {:>13.0} {:>9.2}",
                samples / secs,
                60_000.0 * secs / samples,
                num("peak_rss_mb"),
                num("minor_faults"),
                num("system_seconds"),
            );
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // As the mnist app: mimalloc keeps freed pages instead of handing them back to the kernel
    // (children inherit it).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        std::env::set_var("MIMALLOC_PURGE_DELAY", "-1");
    }
    // The same thread settings as the mnist app, for every variant (children inherit them).
    let threads = lit_core::threads::init();
    if let [flag, variant, steps, epochs] = args.as_slice() {
        if flag == "--child" {
            return child(variant, steps.parse()?, epochs.parse()?);
        }
    }
    if let [flag, mimalloc] = args.as_slice() {
        if flag == "--allocators" {
            return allocators(std::path::Path::new(mimalloc), 600);
        }
    }
    if args.iter().any(|a| a == "--full") {
        return full(threads);
    }
    if args.iter().any(|a| a == "--resnet") {
        return resnet_row(threads);
    }
    println!(
        "ExampleNet, MNIST train (60,000), batch {BATCH}, Adam, f32, seed {SEED}, {threads} thread(s); 400 steps",
    );
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for variant in ["candle", "bare", "lit"] {
        let v = run_child(&exe, &[], variant, 400, 1)?;
        let secs = v["seconds"].as_f64().unwrap_or(f64::NAN);
        let samples = v["samples"].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            variant,
            epoch_seconds: 60_000.0 * secs / samples,
            peak_mb: v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        });
    }
    print_rows(&rows);
    println!();
    resnet_row(threads)
}

/// Full mode: 3-epoch runs, candle's once and lit's kernels' twice each, the bare loop and the
/// Trainer alternating so that a drift in the machine's speed hits both; each row is the median
/// epoch of its runs.
fn full(threads: usize) -> anyhow::Result<()> {
    println!(
        "ExampleNet, MNIST train (60,000), batch {BATCH}, Adam, f32, seed {SEED}, {threads} thread(s); \
         median epoch of 3-epoch runs (candle once, bare and lit twice each, alternating)",
    );
    let exe = std::env::current_exe()?;
    let mut epochs: [Vec<f64>; 3] = Default::default();
    let mut peak = [0f64; 3];
    for (i, variant) in [
        (0, "candle"),
        (1, "bare"),
        (2, "lit"),
        (1, "bare"),
        (2, "lit"),
    ] {
        let v = run_child(&exe, &[], variant, usize::MAX, 3)?;
        let these: Vec<f64> = v["epoch_seconds"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default();
        eprintln!(
            "{variant}: epochs {}",
            these
                .iter()
                .map(|s| format!("{s:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        epochs[i].extend(these);
        peak[i] = peak[i].max(v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN));
    }
    let rows: Vec<Row> = ["candle", "bare", "lit"]
        .into_iter()
        .zip(epochs)
        .zip(peak)
        .map(|((variant, e), peak_mb)| Row {
            variant,
            epoch_seconds: median(e),
            peak_mb,
        })
        .collect();
    print_rows(&rows);
    Ok(())
}
