//! `mnist`: train, validate, test and predict with lit on MNIST-format data.
//!
//! This binary is the template's `main.py`: it parses the command line into hyperparameters,
//! builds the generic data module and module from registered names, picks the callbacks and runs
//! the trainer. It is the only place that prints results or installs a log subscriber.
// The binary reports to the user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[cfg(feature = "mkl")]
extern crate intel_mkl_src;

mod check_device;
mod cli;
mod datasets;
mod models;
mod parallel;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use lit_callbacks::{
    Curves, EarlyStopping, LearningRateMonitor, ModelCheckpoint, ModelSummary, ProgressBar,
    TensorBoardLogger, Timer,
};
use lit_core::{Accelerator, GradientClip, Limit, Trainer, TrainerConfig};
use lit_data::DInterface;
use lit_model::scheduler::Mode;
use lit_model::MInterface;

// glibc's allocator returns freed tensor buffers to the kernel and faults them back in on the next
// step; mimalloc keeps them (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Diagnostics (warnings, and more with `RUST_LOG`) go to stderr with their level; the callbacks'
/// reports (early stopping, the best checkpoint, the model summary, the time limit) are INFO
/// events of the target `lit_core::REPORT_TARGET`, printed on stdout as plain lines, as Lightning
/// prints them.
fn init_tracing() {
    use tracing::Level;
    use tracing_subscriber::filter::{filter_fn, EnvFilter};
    use tracing_subscriber::prelude::*;
    // In a data-parallel run, rank 0 alone reports (the others compute the same decisions), and
    // the others print only errors unless RUST_LOG asks for more.
    let rank0 = lit_distributed::launched().is_none_or(|(rank, _)| rank == 0);
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(if rank0 { "warn" } else { "error" }))
                // Reports go to stdout below, not twice.
                .add_directive(
                    format!("{}=off", lit_core::REPORT_TARGET)
                        .parse()
                        .expect("a valid directive"),
                ),
        );
    let reports = tracing_subscriber::fmt::layer()
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .with_filter(
            filter_fn(|m| *m.level() == Level::INFO && m.target() == lit_core::REPORT_TARGET)
                .with_max_level_hint(Level::INFO),
        );
    tracing_subscriber::registry()
        .with(diagnostics)
        .with(rank0.then_some(reports))
        .init();
}

fn main() -> ExitCode {
    // mimalloc hands freed pages back to the kernel after 10 ms by default, and a training step
    // frees and reallocates its activations every few milliseconds, so the pages were faulted in
    // and zeroed again each step; keep them (mimalloc reads the option at its first purge).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        std::env::set_var("MIMALLOC_PURGE_DELAY", "-1");
    }
    init_tracing();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: an I/O error that an outer message
/// already quotes is not repeated.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn limit(value: &Option<String>, flag: &str) -> anyhow::Result<Limit> {
    match value {
        None => Ok(Limit::All),
        Some(v) => v.parse().with_context(|| format!("--{flag}")),
    }
}

fn print_table(title: &str, values: &BTreeMap<String, f64>) {
    let width = values
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(title.len());
    let rule = format!("+-{}-+------------+", "-".repeat(width));
    println!("{rule}\n| {title:<width$} | {:>10} |\n{rule}", "value");
    for (k, v) in values {
        println!("| {k:<width$} | {v:>10.4} |");
    }
    println!("{rule}");
}

/// The template's callbacks: summary, learning-rate monitor, early stopping, checkpoints, plus the
/// time limit and the curves.
fn add_fit_callbacks(trainer: &mut Trainer, args: &cli::RunArgs) -> anyhow::Result<()> {
    let mode = match args.mode.as_str() {
        "max" => Mode::Max,
        "min" => Mode::Min,
        other => bail!("--mode {other}: expected max or min"),
    };
    let monitor = args.monitor.clone().unwrap_or_else(|| {
        let vals: Vec<&str> = args
            .val_datasets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if vals.len() > 1 {
            format!("val_acc/{}", vals[0])
        } else {
            "val_acc".into()
        }
    });
    trainer.add_callback(Box::new(ModelSummary::new()));
    trainer.add_callback(Box::new(LearningRateMonitor::new(
        args.lr_monitor_every_step,
    )));
    if let Some(t) = &args.max_time {
        let d = Timer::parse(t).with_context(|| {
            format!("--max-time {t}: expected DD:HH:MM:SS, HH:MM:SS, MM:SS or seconds")
        })?;
        trainer.add_callback(Box::new(Timer::new(d)));
    }
    if args.early_stopping_patience > 0 {
        let mut stopping = EarlyStopping::new(monitor.clone(), mode)
            .patience(args.early_stopping_patience)
            .min_delta(args.min_delta);
        stopping.stopping_threshold = args.stopping_threshold;
        stopping.divergence_threshold = args.divergence_threshold;
        stopping.strict = !args.no_strict;
        trainer.add_callback(Box::new(stopping));
    } else if args.stopping_threshold.is_some() || args.divergence_threshold.is_some() {
        bail!("--stopping-threshold and --divergence-threshold belong to early stopping, which --early-stopping-patience 0 turns off");
    }
    if let Some(name) = &args.checkpoint_filename {
        lit_callbacks::check_filename(name)?;
    }
    let mut checkpoints = ModelCheckpoint::monitored(monitor, mode);
    checkpoints.filename = args.checkpoint_filename.clone();
    checkpoints.save_top_k = args.save_top_k;
    checkpoints.save_last = !args.no_save_last;
    checkpoints.every_n_train_steps = args.checkpoint_every_n_train_steps;
    checkpoints.save_weights_only = args.save_weights_only;
    checkpoints.strict = !args.no_strict;
    trainer.add_callback(Box::new(checkpoints));
    trainer.add_callback(Box::new(Curves::new()));
    Ok(())
}

/// `dataset,index,prediction,prob_0,...`: the class with the highest score and the softmax of
/// the scores (the class probabilities of a classifier trained with cross-entropy).
fn predictions_csv(outputs: &[(String, candle::Tensor)]) -> anyhow::Result<String> {
    use std::fmt::Write;
    let classes = outputs
        .first()
        .map_or(0, |(_, t)| t.dims().last().copied().unwrap_or(0));
    let mut csv = String::from("dataset,index,prediction");
    for c in 0..classes {
        write!(csv, ",prob_{c}")?;
    }
    csv.push('\n');
    for (name, scores) in outputs {
        let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(candle::DType::F32)?)?
            .to_vec2::<f32>()?;
        for (i, row) in probs.iter().enumerate() {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(c, _)| c);
            write!(csv, "{name},{i},{best}")?;
            for p in row {
                write!(csv, ",{p}")?;
            }
            csv.push('\n');
        }
    }
    Ok(csv)
}

fn run() -> anyhow::Result<()> {
    let resolved = cli::resolve()?;
    if resolved.print_config {
        print!("{}", serde_yaml::to_string(&resolved.hparams)?);
        return Ok(());
    }
    let args = &resolved.args;
    // A data-parallel run is one process per device: started here through mpirun unless a
    // launcher started this process (before the thread counts are set, so that each process
    // takes its share of the cores).
    let parallel = parallel::wanted(args) && resolved.command != "check-device";
    if parallel && lit_distributed::launched().is_none() {
        return parallel::relaunch(args);
    }
    // Thread counts, once and before any tensor work (see lit_core::threads).
    lit_core::threads::init();
    if resolved.command == "check-device" {
        return check_device::run(args, resolved.hparams.clone());
    }
    let (_mpi_guard, strategy) = parallel::strategy(args, parallel)?;
    // An error in one process of a data-parallel run ends them all (the others would wait in
    // their next collective forever): the error is printed, then the job is aborted.
    parallel::abort_on_error(parallel, run_with(&resolved, strategy))
}

fn run_with(
    resolved: &cli::Resolved,
    strategy: Option<lit_core::DataParallel>,
) -> anyhow::Result<()> {
    let args = &resolved.args;
    let rank0 = strategy
        .as_ref()
        .is_none_or(lit_core::Strategy::is_global_zero);
    let config = TrainerConfig {
        max_epochs: args.max_epochs,
        max_steps: args.max_steps,
        min_epochs: args.min_epochs,
        overfit_batches: match &args.overfit_batches {
            None => None,
            Some(v) => Some(v.parse().context("--overfit-batches")?),
        },
        ckpt_weights_only: args.ckpt_weights_only,
        limit_train_batches: limit(&args.limit_train_batches, "limit-train-batches")?,
        limit_val_batches: limit(&args.limit_val_batches, "limit-val-batches")?,
        limit_test_batches: limit(&args.limit_test_batches, "limit-test-batches")?,
        limit_predict_batches: limit(&args.limit_test_batches, "limit-test-batches")?,
        check_val_every_n_epoch: args.check_val_every_n_epoch,
        val_check_interval: match &args.val_check_interval {
            None => None,
            Some(v) => Some(v.parse().context("--val-check-interval")?),
        },
        num_sanity_val_steps: args.num_sanity_val_steps,
        fast_dev_run: args.fast_dev_run.unwrap_or(0),
        log_every_n_steps: args.log_every_n_steps,
        default_root_dir: args.log_dir.clone(),
        run_name: args.model_name.clone(),
        logger: true,
        accelerator: args.accelerator.parse::<Accelerator>()?,
        devices: args.devices,
        num_nodes: args.num_nodes,
        seed: args.seed,
        accumulate_grad_batches: args.accumulate_grad_batches,
        gradient_clip: match (
            args.gradient_clip_val,
            args.gradient_clip_algorithm.as_str(),
        ) {
            (None, _) => GradientClip::None,
            (Some(v), "norm") => GradientClip::Norm(v),
            (Some(v), "value") => GradientClip::Value(v),
            (Some(_), other) => bail!("--gradient-clip-algorithm {other}: expected norm or value"),
        },
        precision: args.precision.clone(),
    };
    // What a run starts from is not a hyperparameter of it: a run's hparams.yaml fed back with
    // --config repeats the run instead of resuming whichever run is newest then.
    let mut run_hparams = resolved.hparams.clone();
    run_hparams.set("ckpt_path", serde_json::Value::Null)?;
    let mut datamodule = DInterface::new(datasets::registry(), run_hparams.clone())?;
    let mut trainer = Trainer::new(config)?
        .with_hparams(run_hparams.clone())
        .with_logger(TensorBoardLogger::new());
    if let Some(strategy) = strategy {
        trainer = trainer.with_strategy(strategy);
    }
    if rank0 {
        let bar = match parallel::started_on_terminal() {
            Some(terminal) => ProgressBar::new().plain(!terminal),
            None => ProgressBar::new(),
        };
        trainer = trainer.with_callback(bar);
    }
    if resolved.command == "fit" {
        add_fit_callbacks(&mut trainer, args)?;
    }
    if args.deterministic && !trainer.device().is_cpu() {
        bail!("--deterministic: GPU kernels (atomics, cuDNN autotuning) are not bit-reproducible; use --accelerator cpu");
    }
    if let Some(spec) = &args.ckpt_path {
        let path = lit_core::checkpoint::resolve(spec, &args.log_dir, &args.model_name)?;
        if rank0 {
            println!("checkpoint: {}", path.display());
        }
        trainer = trainer.with_ckpt_path(path);
    }
    let mut module = MInterface::new(&models::registry(), run_hparams, trainer.device())?;
    match resolved.command {
        "fit" => {
            trainer.fit(&mut module, &mut datamodule)?;
            if !args.no_test {
                let values = trainer.test(&mut module, &mut datamodule)?;
                if rank0 {
                    print_table("test metric", &values);
                }
            }
        }
        "validate" => {
            let values = trainer.validate(&mut module, &mut datamodule)?;
            if rank0 {
                print_table("validation metric", &values);
            }
        }
        "test" => {
            let values = trainer.test(&mut module, &mut datamodule)?;
            if rank0 {
                print_table("test metric", &values);
            }
        }
        "predict" => {
            if args.ckpt_path.is_none() {
                tracing::warn!("predict without --ckpt-path runs the untrained network");
            }
            if let Some(dir) = args.output.as_ref().and_then(|p| p.parent()) {
                if !dir.as_os_str().is_empty() && !dir.is_dir() {
                    bail!(
                        "--output {}: the folder {} does not exist",
                        args.output
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string()),
                        dir.display()
                    );
                }
            }
            let outputs = trainer.predict(&mut module, &mut datamodule)?;
            if !rank0 {
                return Ok(());
            }
            let path = match (&args.output, trainer.log_dir()) {
                (Some(p), _) => p.clone(),
                (None, Some(dir)) => dir.join("predictions.csv"),
                (None, None) => {
                    println!("predictions not written (a fast dev run writes nothing; or pass --output FILE)");
                    return Ok(());
                }
            };
            lit_core::rundir::write_atomic(&path, predictions_csv(&outputs)?.as_bytes())?;
            println!("predictions written to {}", path.display());
        }
        other => bail!("unknown command {other}"),
    }
    if let Some(line) = trainer.strategy().summary().filter(|_| rank0) {
        println!("{line}");
    }
    if let Some(dir) = trainer.log_dir().filter(|_| rank0) {
        println!("run directory: {}", dir.display());
    }
    Ok(())
}
