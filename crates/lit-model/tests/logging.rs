//! Logging from steps: batch-size-weighted epoch means, named keys of several loaders.

use candle::{Device, Tensor};
use lit_model::LoggedResults;
use lit_model::{LogOptions, RunningStage, StepContext};

#[test]
fn epoch_means_are_batch_size_weighted() {
    let mut ctx = StepContext::new(RunningStage::Validate, vec!["a".into()]);
    let opts = LogOptions::for_stage(RunningStage::Validate);
    ctx.begin_batch(0, 64);
    ctx.log(
        "val_loss",
        &Tensor::new(1.0f32, &Device::Cpu).unwrap(),
        opts,
    )
    .unwrap();
    ctx.begin_batch(0, 16);
    ctx.log(
        "val_loss",
        &Tensor::new(6.0f32, &Device::Cpu).unwrap(),
        opts,
    )
    .unwrap();
    let v = ctx.epoch_values().unwrap()["val_loss"];
    assert!((v - 2.0).abs() < 1e-6, "{v}"); // (64 * 1 + 16 * 6) / 80, not (1 + 6) / 2
    assert_eq!(ctx.host_syncs(), 1);
}

#[test]
fn several_loaders_get_named_keys_and_step_epoch_suffixes() {
    let mut ctx = StepContext::new(RunningStage::Validate, vec!["a".into(), "b".into()]);
    ctx.begin_batch(1, 2);
    let both = LogOptions {
        on_step: true,
        on_epoch: true,
        prog_bar: true,
    };
    ctx.log(
        "val_loss",
        &Tensor::new(3.0f32, &Device::Cpu).unwrap(),
        both,
    )
    .unwrap();
    let step = ctx.take_step_values().unwrap();
    assert_eq!(step.keys().collect::<Vec<_>>(), ["val_loss/b_step"]);
    let epoch = ctx.epoch_values().unwrap();
    assert_eq!(epoch.keys().collect::<Vec<_>>(), ["val_loss/b_epoch"]);
    assert!(ctx.is_prog_bar("val_loss/b_epoch"));
}
