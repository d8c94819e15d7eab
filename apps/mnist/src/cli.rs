//! The command line, mirroring the template's `main.py`, and how it becomes the run's
//! hyperparameters: defaults, then a config file, then flags given on the command line, then
//! `--set key=value` pairs.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use lit_data::{HParams, Registry};
use lit_model::{loss, optim, scheduler, METRICS, TOP_K_METRIC};
use serde::{Deserialize, Serialize};

/// Train, validate, test and predict on MNIST-format data with lit.
#[derive(Debug, Parser)]
#[command(name = "mnist", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) args: RunArgs,
}

/// What to run (default: fit, then test).
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Train with validation, then test (unless --no-test).
    Fit(RunArgs),
    /// Run the validation sets once.
    Validate(RunArgs),
    /// Run the test sets once.
    Test(RunArgs),
    /// Write predictions for the prediction sets (default: the test sets).
    Predict(RunArgs),
    /// Compare the forward and backward pass on --accelerator with the CPU's, on the same weights
    /// and the first test batch.
    CheckDevice(RunArgs),
}

/// Every option; each one is also a hyperparameter key (the same name in snake_case).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunArgs {
    /// A YAML file of hyperparameters (a run's hparams.yaml works); flags given here override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Print the resolved hyperparameters as YAML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub(crate) print_config: bool,
    /// Set any hyperparameter, such as a model's own: `--set hid=128` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub(crate) set: Vec<String>,

    /// Seed of initialisation and shuffling.
    #[arg(long, default_value_t = lit_model::DEFAULT_SEED, allow_negative_numbers = true)]
    pub(crate) seed: u64,
    /// cpu, cuda, metal or auto.
    #[arg(long, default_value = "auto")]
    pub(crate) accelerator: String,
    /// Devices per machine: more than 1 trains data-parallel, one process per device (the app
    /// starts them with mpirun; needs the `mpi` feature).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) devices: usize,
    /// Machines of a data-parallel run (launch it with mpirun and a host file; see the README).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) num_nodes: usize,
    /// How training is spread: auto (data-parallel when devices x num_nodes > 1) or ddp.
    #[arg(long, default_value = "auto", value_parser = ["auto", "ddp"])]
    pub(crate) strategy: String,
    /// Training epochs.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub(crate) max_epochs: usize,
    /// Train at least this many epochs, even when early stopping or the time limit asks to stop.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) min_epochs: usize,
    /// Stop after this many optimizer steps (mid-epoch: `last` resumes inside the epoch).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) max_steps: Option<u64>,
    /// Examples per batch.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub(crate) batch_size: usize,
    /// Loader threads preparing batches ahead of the model (0: none).
    #[arg(long, default_value_t = lit_data::DEFAULT_NUM_WORKERS, allow_negative_numbers = true)]
    pub(crate) num_workers: usize,
    /// Learning rate.
    #[arg(long, default_value_t = opt().lr, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) lr: f64,
    #[arg(long, default_value_t = opt().optimizer, help = one_of("The optimizer", &optim::OPTIMIZERS))]
    pub(crate) optimizer: String,
    /// Momentum of sgd and rmsprop.
    #[arg(long, default_value_t = opt().momentum, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) momentum: f64,
    /// Weight decay (default: 0, or 0.01 for adamw as in PyTorch).
    #[arg(long, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) weight_decay: Option<f64>,
    #[arg(long, default_value_t = sched().lr_scheduler, help = one_of("The learning-rate schedule", &scheduler::SCHEDULERS))]
    pub(crate) lr_scheduler: String,
    /// Linear warmup length, in scheduler steps.
    #[arg(long, default_value_t = sched().warmup_steps, allow_negative_numbers = true)]
    pub(crate) warmup_steps: u64,
    /// Step size of `step`, T_max of `cosine`, total steps of `one_cycle`.
    #[arg(long, default_value_t = sched().lr_decay_steps, allow_negative_numbers = true)]
    pub(crate) lr_decay_steps: u64,
    /// Decay factor (gamma) of step, multi_step and exponential (default 0.5), and plateau's
    /// factor (default 0.1, as PyTorch's ReduceLROnPlateau).
    #[arg(long, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) lr_decay_rate: Option<f64>,
    /// The floor of `cosine` and `plateau`.
    #[arg(long, default_value_t = scheduler::COSINE_MIN_LR, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) lr_decay_min_lr: f64,
    /// Milestones of `multi_step`, comma-separated.
    #[arg(long)]
    pub(crate) milestones: Option<String>,
    /// Step the schedule every `epoch` or every optimizer `step`.
    #[arg(long, default_value = "epoch", value_parser = ["epoch", "step"])]
    pub(crate) lr_interval: String,
    #[arg(long, default_value = "mnist_train", help = datasets_help("The training set"))]
    pub(crate) train_dataset: String,
    #[arg(long, default_value = "mnist_val,mnist_val_shifted", help = datasets_help("Validation sets, comma-separated"))]
    pub(crate) val_datasets: String,
    #[arg(long, default_value = "mnist_test", help = datasets_help("Test sets, comma-separated"))]
    pub(crate) test_datasets: String,
    /// Random transforms of the training images, comma-separated: crop, flip, affine,
    /// resized_crop, or none; auto is the training set's own (crop,flip for Fashion-MNIST, none
    /// for MNIST's digits and image folders). Their sizes are hyperparameters: --set
    /// aug_padding=2 (pixels), --set aug_degrees=10, --set aug_translate=0.1 (of the image),
    /// --set aug_scale=0.08 (resized_crop's smallest fraction of the area).
    #[arg(long, default_value = "auto")]
    pub(crate) augment: String,
    /// The probability that each transform applies to a training example.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) aug_prob: f64,
    /// Train on the images as they are (the same as --augment none).
    #[arg(long)]
    pub(crate) no_augment: bool,
    #[arg(long, default_value = "example_net", help = format!("The network: {}.", crate::models::registry().names().join(", ")))]
    pub(crate) model_name: String,
    #[arg(long, default_value_t = loss_hp().loss, help = one_of("The loss", &loss::LOSSES))]
    pub(crate) loss: String,
    /// Label smoothing of cross_entropy, in [0, 1).
    #[arg(long, default_value_t = loss_hp().label_smoothing, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) label_smoothing: f64,
    /// No weight decay on biases and other one-dimensional parameters.
    #[arg(long)]
    pub(crate) no_decay_bias: bool,
    /// Sum gradients over N batches per optimizer step.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) accumulate_grad_batches: usize,
    /// Clip gradients at this positive value (global norm, or element value).
    #[arg(long, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) gradient_clip_val: Option<f64>,
    #[arg(long, default_value = "norm", value_parser = ["norm", "value"])]
    /// Clip the global norm or each element's value.
    pub(crate) gradient_clip_algorithm: String,
    #[arg(long, default_value = "accuracy", help = format!(
        "Metrics per validation and test set, comma-separated: {}, {}.",
        METRICS.names().join(", "),
        TOP_K_METRIC
    ))]
    pub(crate) metric: String,
    /// Classes.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub(crate) num_classes: usize,
    /// The data root (a folder holding mnist/ and fashion-mnist/); default $LIT_DATA_DIR, then data/.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Where run directories go.
    #[arg(long, default_value = "logs")]
    pub(crate) log_dir: PathBuf,
    /// Run N batches (default 1) of each stage, write nothing.
    #[arg(long, num_args = 0..=1, default_missing_value = "1", value_name = "N")]
    pub(crate) fast_dev_run: Option<usize>,
    /// Training batches per epoch: a count (200) or a fraction (0.25).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) limit_train_batches: Option<String>,
    /// Validation batches per set: a count or a fraction.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) limit_val_batches: Option<String>,
    /// Test batches per set: a count or a fraction.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) limit_test_batches: Option<String>,
    /// Prediction batches per set: a count or a fraction.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) limit_predict_batches: Option<String>,
    /// Also validate within epochs, every N batches or fraction of an epoch.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) val_check_interval: Option<String>,
    /// Train and validate on N batches (or a fraction), the same unshuffled training batches
    /// every epoch, to check that the model can overfit them.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) overfit_batches: Option<String>,
    /// Validate every N epochs (early stopping and checkpoints skip the epochs in between).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) check_val_every_n_epoch: usize,
    /// Validation batches per set run before training.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub(crate) num_sanity_val_steps: usize,
    /// Log step values every N optimizer steps.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    pub(crate) log_every_n_steps: u64,
    #[arg(long, default_value = "32", help = one_of(
        "Floating-point precision, as Lightning names it (mixed keeps f32 weights and computes in \
         the low type, true computes and keeps everything in it)",
        &lit_core::PRECISIONS
    ))]
    pub(crate) precision: String,
    /// The logged key that early stopping and checkpoints watch (default: val_acc, or val_loss
    /// when accuracy is not a metric; with several validation sets, that of the first:
    /// val_acc/<set>).
    #[arg(long)]
    pub(crate) monitor: Option<String>,
    /// Whether a higher (max) or lower (min) monitored value is better (default: min for a loss
    /// or an error such as val_loss and val_mse, max for the rest).
    #[arg(long, default_value = "max", hide_default_value = true, value_parser = ["max", "min"])]
    pub(crate) mode: String,
    /// Stop after this many validation checks without improvement (0: no early stopping).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub(crate) early_stopping_patience: usize,
    /// The smallest change that counts as an improvement (>= 0).
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) min_delta: f64,
    /// Early stopping: stop at once when the monitored value is better than this.
    #[arg(long, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) stopping_threshold: Option<f64>,
    /// Early stopping: stop at once when the monitored value is worse than this.
    #[arg(long, allow_negative_numbers = true, value_parser = finite)]
    pub(crate) divergence_threshold: Option<f64>,
    /// Early stopping and checkpoints: skip, instead of failing, when the monitored key was not
    /// logged.
    #[arg(long)]
    pub(crate) no_strict: bool,
    /// Checkpoints to keep by the monitored value (-1: all, 0: none).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) save_top_k: i64,
    /// Do not keep last.safetensors.
    #[arg(long)]
    pub(crate) no_save_last: bool,
    /// Also write last.safetensors every N optimizer steps (a checkpoint that resumes at the next
    /// batch; top-k files are ranked at epoch ends).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) checkpoint_every_n_train_steps: u64,
    /// Checkpoint file name template, such as best-{epoch}-{val_acc:.4f}.
    #[arg(long)]
    pub(crate) checkpoint_filename: Option<String>,
    /// Checkpoints hold the weights only (not resumable).
    #[arg(long)]
    pub(crate) save_weights_only: bool,
    /// Stop after this much training time, within one batch, writing `last` to resume from:
    /// DD:HH:MM:SS, HH:MM:SS, MM:SS or seconds.
    #[arg(long)]
    pub(crate) max_time: Option<String>,
    /// Log the learning rate every optimizer step instead of every epoch.
    #[arg(long)]
    pub(crate) lr_monitor_every_step: bool,
    /// Start from a checkpoint: `last` (the newest run of this model that has one), `best` (of
    /// the latest run), `auto` (`last` when one exists, else a fresh start: for job scripts that
    /// are requeued) or a file. fit resumes it (into a new version directory); validate, test
    /// and predict load its weights.
    #[arg(long)]
    pub(crate) ckpt_path: Option<String>,
    /// fit takes only the weights of --ckpt-path and starts a new run at epoch 0 with a fresh
    /// optimizer (for a checkpoint of another optimizer, or one without optimizer state).
    #[arg(long)]
    pub(crate) ckpt_weights_only: bool,
    /// Refuse settings that are not bit-reproducible (a GPU); on the CPU a run with the same seed
    /// and thread count is reproduced bit for bit.
    #[arg(long)]
    pub(crate) deterministic: bool,
    /// After fit, skip the test sets.
    #[arg(long)]
    pub(crate) no_test: bool,
    /// Where `predict` writes its CSV of classes and class probabilities (default:
    /// predictions.csv in the run directory).
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
}

impl Default for RunArgs {
    fn default() -> Self {
        Cli::parse_from(["mnist"]).args
    }
}

/// Which subcommand, the typed options and the full hyperparameters, resolved.
pub(crate) struct Resolved {
    pub(crate) command: &'static str,
    pub(crate) args: RunArgs,
    pub(crate) hparams: HParams,
    pub(crate) print_config: bool,
    /// Keys the user gave (flags on the command line, the config file, `--set`), each with
    /// where it was given; the rest are defaults.
    pub(crate) explicit: Vec<(String, String)>,
}

/// The optimizers' defaults: the options' defaults are theirs, so each key has one.
fn opt() -> optim::OptimizerHParams {
    optim::OptimizerHParams::default()
}

/// The schedules' defaults.
fn sched() -> scheduler::SchedulerHParams {
    scheduler::SchedulerHParams::default()
}

/// The loss's defaults.
fn loss_hp() -> loss::LossHParams {
    loss::LossHParams::default()
}

/// `--help` text for a choice made by name, written from the table that builds it.
fn one_of<T>(what: &str, table: &Registry<T>) -> String {
    format!("{what}: {}.", table.prose())
}

/// `--help` text for a dataset option, listing the registered datasets.
fn datasets_help(what: &str) -> String {
    format!(
        "{what}: {}.",
        crate::datasets::registry().names().join(", ")
    )
}

/// Parses a float flag, refusing NaN and infinities (which a run would otherwise store as null
/// and replace with the default).
fn finite(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("expected a finite number, got {v}")),
        Err(_) => Err(format!("expected a number, got '{raw}'")),
    }
}

/// Reads a config file: a regular file (a FIFO or device would block or never end) holding a
/// YAML map of hyperparameters.
fn read_config(path: &std::path::Path) -> anyhow::Result<HParams> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("config file {shown}"))?;
    if !meta.is_file() {
        bail!("config file {shown}: not a regular file; expected a YAML file of hyperparameters");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading config file {shown}"))?;
    HParams::from_yaml(&text).with_context(|| format!("config file {shown}"))
}

/// Parses the command line and merges it with the config file and `--set` pairs.
pub(crate) fn resolve() -> anyhow::Result<Resolved> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let (command, args, sub) = match (&cli.command, matches.subcommand()) {
        (Some(Command::Fit(a)), Some((_, m))) => ("fit", a.clone(), m),
        (Some(Command::Validate(a)), Some((_, m))) => ("validate", a.clone(), m),
        (Some(Command::Test(a)), Some((_, m))) => ("test", a.clone(), m),
        (Some(Command::Predict(a)), Some((_, m))) => ("predict", a.clone(), m),
        (Some(Command::CheckDevice(a)), Some((_, m))) => ("check-device", a.clone(), m),
        _ => ("fit", cli.args.clone(), &matches),
    };
    let print_config = args.print_config;
    let mut hparams = HParams::from_serialize(&args)?;
    let defaults = HParams::from_serialize(&RunArgs::default())?;
    let mut given: Vec<(String, String)> = Vec::new();
    if let Some(path) = &args.config {
        let file = read_config(path)?;
        crate::keys::refuse_nulls(&file, &defaults, &format!("config file {}", path.display()))?;
        for (key, value) in file.iter() {
            given.push((key.clone(), format!("config file {}", path.display())));
            if !given_on_command_line(sub, key) {
                hparams.set(key.clone(), value.clone())?;
            }
        }
    }
    for pair in &args.set {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--set {pair}: expected KEY=VALUE");
        };
        let key = key.trim().replace('-', "_");
        if key.is_empty() {
            bail!("--set {pair}: expected KEY=VALUE with a key");
        }
        let value =
            HParams::parse_value(&key, value.trim()).with_context(|| format!("--set {pair}"))?;
        let mut single = HParams::new();
        single.set(key.clone(), value.clone())?;
        crate::keys::refuse_nulls(&single, &defaults, &format!("--set {pair}"))?;
        given.push((key.clone(), format!("--set {pair}")));
        hparams.set(key, value)?;
    }
    let mut model_name: String = hparams.get("model_name")?.unwrap_or_default();
    for (key, _) in hparams.iter() {
        if given_on_command_line(sub, key) {
            given.push((key.clone(), format!("--{}", key.replace('_', "-"))));
        }
    }
    // A run from a checkpoint builds the checkpoint's network: its keys are the known ones.
    if !given.iter().any(|(k, _)| k == "model_name") {
        if let Some(name) = crate::restore::checkpoint_model(&hparams) {
            model_name = name;
        }
    }
    crate::keys::check_keys(
        given.iter().map(|(k, s)| (k.as_str(), s.clone())),
        &model_name,
    )?;
    // Typed options follow the merged values, so a config file's `max_epochs` takes effect too.
    let merged = typed(&hparams, &args)?;
    if print_config {
        // Every key the run reads, with the value it will take: the module's and the network's
        // defaults where nothing set them.
        hparams.merge_missing(&lit_model::module_defaults());
        hparams.merge_missing(&crate::models::registry().config_defaults(&model_name));
        hparams.merge_missing(&crate::datasets::registry().defaults());
    }
    Ok(Resolved {
        command,
        args: merged,
        hparams,
        print_config,
        explicit: given,
    })
}

/// The typed options of merged hyperparameters, checked (a config file's values too).
pub(crate) fn typed(hparams: &HParams, given: &RunArgs) -> anyhow::Result<RunArgs> {
    let mut merged: RunArgs = hparams
        .to_config()
        .context("hyperparameters do not fit the command-line options")?;
    merged.config = given.config.clone();
    merged.check()?;
    Ok(merged)
}

fn given_on_command_line(m: &ArgMatches, key: &str) -> bool {
    m.try_get_raw(key).ok().flatten().is_some()
        && m.value_source(key) == Some(ValueSource::CommandLine)
}
