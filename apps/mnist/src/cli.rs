//! The command line, mirroring the template's `main.py`, and how it becomes the run's
//! hyperparameters: defaults, then a config file, then flags given on the command line, then
//! `--set key=value` pairs.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use lit_data::HParams;
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
    #[arg(long, default_value_t = 1234)]
    pub(crate) seed: u64,
    /// cpu, cuda, metal or auto.
    #[arg(long, default_value = "auto")]
    pub(crate) accelerator: String,
    /// Devices to use (1).
    #[arg(long, default_value_t = 1)]
    pub(crate) devices: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 5)]
    pub(crate) max_epochs: usize,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub(crate) max_steps: Option<u64>,
    /// Examples per batch.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
    /// Loader threads preparing batches ahead of the model (0: none).
    #[arg(long, default_value_t = 1)]
    pub(crate) num_workers: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub(crate) lr: f64,
    /// sgd, adam, adamw or rmsprop.
    #[arg(long, default_value = "adam")]
    pub(crate) optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) momentum: f64,
    /// Weight decay (default: 0, or 0.01 for adamw as in PyTorch).
    #[arg(long)]
    pub(crate) weight_decay: Option<f64>,
    /// none, step, multi_step, cosine, exponential, one_cycle or plateau.
    #[arg(long, default_value = "none")]
    pub(crate) lr_scheduler: String,
    /// Linear warmup length, in scheduler steps.
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup_steps: u64,
    /// Step size of `step`, T_max of `cosine`.
    #[arg(long, default_value_t = 20)]
    pub(crate) lr_decay_steps: u64,
    /// Decay factor (gamma).
    #[arg(long, default_value_t = 0.5)]
    pub(crate) lr_decay_rate: f64,
    /// The floor of `cosine`.
    #[arg(long, default_value_t = 1e-5)]
    pub(crate) lr_decay_min_lr: f64,
    /// Milestones of `multi_step`, comma-separated.
    #[arg(long)]
    pub(crate) milestones: Option<String>,
    /// Step the schedule every `epoch` or every optimizer `step`.
    #[arg(long, default_value = "epoch")]
    pub(crate) lr_interval: String,
    /// The training set.
    #[arg(long, default_value = "mnist_train")]
    pub(crate) train_dataset: String,
    /// Validation sets, comma-separated.
    #[arg(long, default_value = "mnist_val,mnist_val_shifted")]
    pub(crate) val_datasets: String,
    /// Test sets, comma-separated.
    #[arg(long, default_value = "mnist_test")]
    pub(crate) test_datasets: String,
    /// The network.
    #[arg(long, default_value = "example_net")]
    pub(crate) model_name: String,
    /// cross_entropy, nll, mse, l1, smooth_l1 or bce_with_logits.
    #[arg(long, default_value = "cross_entropy")]
    pub(crate) loss: String,
    /// Label smoothing of cross_entropy.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) label_smoothing: f64,
    /// No weight decay on biases and other one-dimensional parameters.
    #[arg(long)]
    pub(crate) no_decay_bias: bool,
    /// Sum gradients over N batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub(crate) accumulate_grad_batches: usize,
    /// Clip gradients at this value (global norm, or element value).
    #[arg(long)]
    pub(crate) gradient_clip_val: Option<f64>,
    /// norm or value.
    #[arg(long, default_value = "norm")]
    pub(crate) gradient_clip_algorithm: String,
    /// Metrics per validation and test set, comma-separated: accuracy, accuracy_macro, precision,
    /// recall, f1, f1_weighted, auroc, top<k>_accuracy.
    #[arg(long, default_value = "accuracy")]
    pub(crate) metric: String,
    /// Classes.
    #[arg(long, default_value_t = 10)]
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
    #[arg(long)]
    pub(crate) limit_train_batches: Option<String>,
    /// Validation batches per set: a count or a fraction.
    #[arg(long)]
    pub(crate) limit_val_batches: Option<String>,
    /// Test batches per set: a count or a fraction.
    #[arg(long)]
    pub(crate) limit_test_batches: Option<String>,
    /// Also validate within epochs, every N batches or fraction of an epoch.
    #[arg(long)]
    pub(crate) val_check_interval: Option<String>,
    /// Validate every N epochs.
    #[arg(long, default_value_t = 1)]
    pub(crate) check_val_every_n_epoch: usize,
    /// Validation batches per set run before training.
    #[arg(long, default_value_t = 2)]
    pub(crate) num_sanity_val_steps: usize,
    /// Log step values every N optimizer steps.
    #[arg(long, default_value_t = 50)]
    pub(crate) log_every_n_steps: u64,
    /// Floating-point precision: 32.
    #[arg(long, default_value = "32")]
    pub(crate) precision: String,
    /// The logged key that early stopping and checkpoints watch (default: val_acc, or
    /// val_acc/<first validation set> with several).
    #[arg(long)]
    pub(crate) monitor: Option<String>,
    /// max or min: whether a higher monitored value is better.
    #[arg(long, default_value = "max")]
    pub(crate) mode: String,
    /// Stop after this many epochs without improvement (0: no early stopping).
    #[arg(long, default_value_t = 10)]
    pub(crate) early_stopping_patience: usize,
    /// The smallest change that counts as an improvement.
    #[arg(long, default_value_t = 0.001)]
    pub(crate) min_delta: f64,
    /// Checkpoints to keep by the monitored value (-1: all, 0: none).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub(crate) save_top_k: i64,
    /// Do not keep last.safetensors.
    #[arg(long)]
    pub(crate) no_save_last: bool,
    /// Also checkpoint every N optimizer steps.
    #[arg(long, default_value_t = 0)]
    pub(crate) checkpoint_every_n_train_steps: u64,
    /// Checkpoint file name template, such as best-{epoch}-{val_acc:.4f}.
    #[arg(long)]
    pub(crate) checkpoint_filename: Option<String>,
    /// Checkpoints hold the weights only (not resumable).
    #[arg(long)]
    pub(crate) save_weights_only: bool,
    /// Stop after this much training time: DD:HH:MM:SS, HH:MM:SS, MM:SS or seconds.
    #[arg(long)]
    pub(crate) max_time: Option<String>,
    /// Log the learning rate every optimizer step instead of every epoch.
    #[arg(long)]
    pub(crate) lr_monitor_every_step: bool,
    /// Start from a checkpoint: `last`, `best` (of the latest run of this model) or a file. fit
    /// resumes it (into a new version directory); validate, test and predict load its weights.
    #[arg(long)]
    pub(crate) ckpt_path: Option<String>,
    /// Refuse settings that are not bit-reproducible (a GPU); on the CPU a run with the same seed
    /// and thread count is reproduced bit for bit.
    #[arg(long)]
    pub(crate) deterministic: bool,
    /// After fit, skip the test sets.
    #[arg(long)]
    pub(crate) no_test: bool,
    /// Where `predict` writes its CSV (default: predictions.csv in the run directory).
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
}

fn parse_value(raw: &str) -> serde_json::Value {
    serde_yaml::from_str::<serde_json::Value>(raw)
        .unwrap_or_else(|_| serde_json::Value::String(raw.into()))
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
        _ => ("fit", cli.args.clone(), &matches),
    };
    let print_config = args.print_config;
    let mut hparams = HParams::from_serialize(&args)?;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let file: HParams = serde_yaml::from_str(&text).with_context(|| {
            format!(
                "config file {}: expected a YAML map of hyperparameters",
                path.display()
            )
        })?;
        for (key, value) in file.iter() {
            if !given_on_command_line(sub, key) {
                hparams.set(key.clone(), value.clone())?;
            }
        }
    }
    for pair in &args.set {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--set {pair}: expected KEY=VALUE");
        };
        hparams.set(key.trim().replace('-', "_"), parse_value(value.trim()))?;
    }
    // Typed options follow the merged values, so a config file's `max_epochs` takes effect too.
    let mut merged: RunArgs = hparams
        .to_config()
        .context("hyperparameters do not fit the command-line options")?;
    merged.config = args.config.clone();
    Ok(Resolved {
        command,
        args: merged,
        hparams,
        print_config,
    })
}

fn given_on_command_line(m: &ArgMatches, key: &str) -> bool {
    m.try_get_raw(key).ok().flatten().is_some()
        && m.value_source(key) == Some(ValueSource::CommandLine)
}
