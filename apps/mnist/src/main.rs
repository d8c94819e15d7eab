//! `mnist`: train, validate, test and predict with lit on MNIST-format data.
//!
//! This binary is the template's `main.py`: it parses the command line into hyperparameters,
//! builds the generic data module and module from registered names, picks the callbacks and runs
//! the trainer. It is the only place that prints results or installs a log subscriber.
// The binary reports to the user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[cfg(feature = "mkl")]
extern crate intel_mkl_src;

/// `println!` for results: a closed pipe (`mnist test | head -1`) ends the program quietly, a
/// full device with a clear error, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod callbacks;
mod check_device;
mod checks;
mod cli;
mod data_info;
mod datasets;
mod keys;
mod models;
mod output;
mod parallel;
mod restore;

use std::process::ExitCode;

use anyhow::{bail, Context};
use lit_callbacks::{ProgressBar, TensorBoardLogger};
use lit_core::{Accelerator, GradientClip, Limit, Trainer, TrainerConfig};
use lit_data::DInterface;
use lit_model::scheduler::Mode;
use lit_model::MInterface;

// On Linux, glibc's malloc, which `threads::init` tunes to keep freed tensor buffers instead of
// handing them back to the kernel; elsewhere mimalloc, which keeps them when told to (below).
// BENCHMARKS.md ("Allocator") compares the two.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
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
    // Where mimalloc is the allocator: it hands freed pages back to the kernel after 10 ms by
    // default, and a training step frees and reallocates its activations every few
    // milliseconds, so the pages were faulted in and zeroed again each step; keep them
    // (mimalloc reads the option at its first purge).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        std::env::set_var("MIMALLOC_PURGE_DELAY", "-1");
    }
    init_tracing();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Prints an error (a signal's stop with how to resume) and gives the exit status: 128 + the
/// signal's number for an interrupted fit, as a scheduler expects of a job a signal ended.
fn report(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<lit_core::Error>() {
        Some(lit_core::Error::Interrupted { signal, checkpoint }) => {
            let rank0 = lit_distributed::launched().is_none_or(|(rank, _)| rank == 0);
            if rank0 {
                let name = lit_core::signals::name(*signal);
                match checkpoint {
                    Some(p) => eprintln!(
                        "interrupted by {name}; checkpoint written: {}\n{}",
                        p.display(),
                        resume_hint(p)
                    ),
                    None => eprintln!("interrupted by {name}; no checkpoint was written"),
                }
            }
            ExitCode::from(
                lit_core::Error::Interrupted {
                    signal: *signal,
                    checkpoint: None,
                }
                .exit_code(),
            )
        }
        _ => {
            eprintln!("error: {}", chain(e));
            ExitCode::FAILURE
        }
    }
}

/// How to resume from `last`: the same command again when it already resumes by itself.
fn resume_hint(last: &std::path::Path) -> String {
    let auto = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "--ckpt-path" && w[1] == "auto")
        || std::env::args().any(|a| a == "--ckpt-path=auto");
    if auto {
        "resume with the same command (--ckpt-path auto takes the newest last)".into()
    } else {
        format!(
            "resume with the same command and --ckpt-path last (or --ckpt-path {}; in a job \
             script that is requeued, --ckpt-path auto)",
            last.display()
        )
    }
}

/// The error and its causes on one line, each cause once: an I/O error that an outer message
/// already quotes is not repeated, and a long value it quotes is shortened.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = output::shorten_words(&cause.to_string());
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

/// The template's callbacks: summary, learning-rate monitor, early stopping, checkpoints, plus the
/// time limit and the curves.
/// The checkpoint `--ckpt-path` names: `auto` is the newest `last` or none (a fresh start).
fn ckpt_path(args: &cli::RunArgs) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(spec) = &args.ckpt_path else {
        return Ok(None);
    };
    Ok(if spec == "auto" {
        lit_core::checkpoint::resolve_auto(&args.log_dir, &args.model_name)
    } else {
        Some(lit_core::checkpoint::resolve(
            spec,
            &args.log_dir,
            &args.model_name,
        )?)
    })
}

/// The precision to run: as given, except `16-mixed` on a CPU, which has no fast float16 and
/// runs `bf16-mixed` instead with a warning, as Lightning does.
fn cpu_precision(args: &cli::RunArgs) -> anyhow::Result<String> {
    let cpu = args
        .accelerator
        .parse::<Accelerator>()?
        .device(0)
        .is_ok_and(|d| d.is_cpu());
    if cpu && matches!(args.precision.as_str(), "16-mixed" | "16") {
        tracing::warn!(
            "--precision {} is not supported on the CPU: using bf16-mixed instead, as Lightning \
             does",
            args.precision
        );
        return Ok("bf16-mixed".into());
    }
    Ok(args.precision.clone())
}

fn run() -> anyhow::Result<()> {
    let mut resolved = cli::resolve()?;
    if resolved.command == "predict"
        && resolved
            .args
            .output
            .as_deref()
            .is_some_and(lit_core::rundir::is_stdout)
    {
        output::notes_to_stderr();
    }
    if let Some(path) = ckpt_path(&resolved.args)? {
        restore::network_hparams(&mut resolved, &path)?;
    }
    if resolved.print_config {
        output::stdout(&serde_yaml::to_string(&resolved.hparams)?);
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
    if parallel {
        parallel::watch_starter();
    }
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
    let precision = cpu_precision(args)?;
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
        limit_predict_batches: limit(&args.limit_predict_batches, "limit-predict-batches")?,
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
        // predict --output FILE writes that file and nothing else.
        logger: !(resolved.command == "predict" && args.output.is_some()),
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
        precision: precision.clone(),
        handle_signals: true,
    };
    // What a run starts from is not a hyperparameter of it: a run's hparams.yaml fed back with
    // --config repeats the run instead of resuming whichever run is newest then.
    let mut run_hparams = resolved.hparams.clone();
    run_hparams.set("ckpt_path", serde_json::Value::Null)?;
    run_hparams.set("precision", &precision)?;
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
        callbacks::check(args)?;
    }
    if args.deterministic && !trainer.device().is_cpu() {
        bail!("--deterministic: GPU kernels (atomics, cuDNN autotuning) are not bit-reproducible; use --accelerator cpu");
    }
    match ckpt_path(args)? {
        Some(path) => {
            if rank0 {
                out!("checkpoint: {}", path.display());
            }
            trainer = trainer.with_ckpt_path(path);
        }
        None if args.ckpt_path.is_some() && rank0 => {
            out!("checkpoint: none yet (--ckpt-path auto), starting fresh");
        }
        None => {}
    }
    // Built before any data is read, so a bad choice fails first; built again when the data
    // decides one of its keys otherwise (another input shape, the classes).
    let mut module = MInterface::new(
        &models::registry(),
        run_hparams.clone(),
        trainer.device(),
        trainer.param_dtype(),
    )?;
    let model_name = run_hparams.get::<String>("model_name")?.unwrap_or_default();
    let data_info = data_info::record(
        &mut run_hparams,
        &datamodule,
        match resolved.command {
            "validate" => lit_data::Stage::Validate,
            "test" => lit_data::Stage::Test,
            "predict" => lit_data::Stage::Predict,
            _ => lit_data::Stage::Fit,
        },
        &resolved.explicit,
        &model_name,
        ckpt_path(args)?.is_some(),
    )?;
    if data_info::changes(&lit_model::LitModule::hparams(&module), &run_hparams) {
        trainer = trainer.with_hparams(run_hparams.clone());
        module = MInterface::new(
            &models::registry(),
            run_hparams.clone(),
            trainer.device(),
            trainer.param_dtype(),
        )?;
    }
    if resolved.command == "fit" {
        // Recorded as decided, so the run's hparams.yaml fed back with --config repeats them.
        let (monitor, mode) = callbacks::monitor(args, &run_hparams, &resolved.explicit)?;
        run_hparams.set("monitor", &monitor)?;
        run_hparams.set("mode", if mode == Mode::Max { "max" } else { "min" })?;
        trainer = trainer.with_hparams(run_hparams.clone());
        callbacks::add_fit_callbacks(&mut trainer, args, monitor, mode);
    }
    if resolved.command != "fit" && args.ckpt_path.is_none() {
        tracing::warn!(
            "{} without --ckpt-path runs the untrained network",
            resolved.command
        );
    }
    match resolved.command {
        "fit" => {
            trainer.fit(&mut module, &mut datamodule)?;
            if !args.no_test {
                let values = trainer.test(&mut module, &mut datamodule)?;
                if rank0 {
                    output::print_table("test metric", &values);
                }
            }
        }
        "validate" => {
            let values = trainer.validate(&mut module, &mut datamodule)?;
            if rank0 {
                output::print_table("validation metric", &values);
            }
        }
        "test" => {
            let values = trainer.test(&mut module, &mut datamodule)?;
            if rank0 {
                output::print_table("test metric", &values);
            }
        }
        "predict" => {
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
                    out!("predictions not written (a fast dev run writes nothing; or pass --output FILE)");
                    return Ok(());
                }
            };
            lit_core::rundir::write_output(
                &path,
                output::predictions_csv(&outputs, data_info.as_ref())?.as_bytes(),
            )?;
            out!("predictions written to {}", path.display());
        }
        other => bail!("unknown command {other}"),
    }
    if let Some(line) = trainer.strategy().summary().filter(|_| rank0) {
        out!("{line}");
    }
    if let Some(dir) = trainer.log_dir().filter(|_| rank0) {
        out!("run directory: {}", dir.display());
    }
    Ok(())
}
