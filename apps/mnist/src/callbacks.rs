//! The callbacks of `fit`, from the command line: what they watch and when they act.

use anyhow::{bail, Context};
use lit_callbacks::{
    Curves, EarlyStopping, LearningRateMonitor, ModelCheckpoint, ModelSummary, Timer,
};
use lit_core::Trainer;
use lit_data::HParams;
use lit_model::scheduler::Mode;

use crate::cli;

/// What checkpoints and early stopping watch, and which way is better: `--monitor`, else
/// `val_acc` when accuracy is among the metrics and `val_loss` when not (a regression), suffixed
/// `/<set>` with the first validation set's name when there are several; `--mode`, else lower
/// is better for a loss or an error (`*loss*`, `*mse`, `*mae`) and higher for the rest.
pub(crate) fn monitor(
    args: &cli::RunArgs,
    hparams: &HParams,
    explicit: &[(String, String)],
) -> anyhow::Result<(String, Mode)> {
    let own: lit_model::MInterfaceHParams = hparams.to_config()?;
    let monitor = args.monitor.clone().unwrap_or_else(|| {
        let vals: Vec<&str> = args
            .val_datasets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let key = if own.metric.iter().any(|m| m == "accuracy") {
            "val_acc"
        } else {
            "val_loss"
        };
        match vals.as_slice() {
            [first, _, ..] => format!("{key}/{first}"),
            _ => key.into(),
        }
    });
    let mode = if explicit.iter().any(|(k, _)| k == "mode") {
        args.mode.as_str()
    } else {
        let name = monitor.split('/').next().unwrap_or("");
        let lower = ["loss", "mse", "mae"].iter().any(|e| name.contains(e));
        if lower {
            "min"
        } else {
            "max"
        }
    };
    let mode = match mode {
        "max" => Mode::Max,
        "min" => Mode::Min,
        other => bail!("--mode {other}: expected max or min"),
    };
    Ok((monitor, mode))
}

/// `--max-time` as a duration.
fn max_time(args: &cli::RunArgs) -> anyhow::Result<Option<std::time::Duration>> {
    args.max_time
        .as_ref()
        .map(|t| {
            Timer::parse(t).with_context(|| {
                format!("--max-time {t}: expected DD:HH:MM:SS, HH:MM:SS, MM:SS or seconds")
            })
        })
        .transpose()
}

/// Refuses a bad callback option before any data is read.
pub(crate) fn check(args: &cli::RunArgs) -> anyhow::Result<()> {
    max_time(args)?;
    if args.early_stopping_patience == 0
        && (args.stopping_threshold.is_some() || args.divergence_threshold.is_some())
    {
        bail!("--stopping-threshold and --divergence-threshold belong to early stopping, which --early-stopping-patience 0 turns off");
    }
    if let Some(name) = &args.checkpoint_filename {
        lit_callbacks::check_filename(name)?;
    }
    Ok(())
}

/// Adds `fit`'s callbacks as the command line asks, watching `monitor` (see [`monitor`]; the
/// options were checked by [`check`]).
pub(crate) fn add_fit_callbacks(
    trainer: &mut Trainer,
    args: &cli::RunArgs,
    monitor: String,
    mode: Mode,
) {
    trainer.add_callback(Box::new(ModelSummary::new()));
    trainer.add_callback(Box::new(LearningRateMonitor::new(
        args.lr_monitor_every_step,
    )));
    if let Ok(Some(d)) = max_time(args) {
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
}
