//! Callbacks in real fits on a tiny scripted module: early stopping, checkpoints, loggers.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use lit_callbacks::{EarlyStopping, ModelCheckpoint, TensorBoardLogger};
use lit_core::lit_data::{Batch, DataLoader, DataLoaderConfig, DataModule, TensorDataset};
use lit_core::lit_model::optim::{Sgd, SgdConfig};
use lit_core::lit_model::scheduler::Mode;
use lit_core::lit_model::{self, LitModule, LogOptions, Optimization, StepContext};
use lit_core::{Accelerator, Trainer, TrainerConfig};

/// One parameter; validation logs `val_score` from a script, one value per epoch.
struct Scripted {
    varmap: VarMap,
    script: Vec<f64>,
    epoch: usize,
}

impl Scripted {
    fn new(script: &[f64]) -> Self {
        let varmap = VarMap::new();
        varmap
            .get(
                (1,),
                "w",
                candle_nn::Init::Const(1.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        Self {
            varmap,
            script: script.to_vec(),
            epoch: 0,
        }
    }
}

impl LitModule for Scripted {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }
    fn forward(&self, input: &Tensor, _train: bool) -> lit_model::Result<Tensor> {
        Ok(input.broadcast_mul(&self.varmap.all_vars()[0].as_tensor().detach())?)
    }
    fn training_step(
        &mut self,
        batch: &Batch,
        _i: usize,
        ctx: &mut StepContext,
    ) -> lit_model::Result<Tensor> {
        let w = self.varmap.all_vars()[0].as_tensor().clone();
        let loss = batch.input.broadcast_mul(&w)?.sqr()?.mean_all()?;
        ctx.log(
            "train_loss",
            &loss,
            LogOptions {
                on_step: true,
                on_epoch: true,
                prog_bar: true,
            },
        )?;
        Ok(loss)
    }
    fn validation_step(
        &mut self,
        batch: &Batch,
        _i: usize,
        ctx: &mut StepContext,
    ) -> lit_model::Result<()> {
        let v = self.script.get(self.epoch).copied().unwrap_or(0.0) as f32;
        let t = Tensor::new(v, batch.input.device())?;
        ctx.log("val_score", &t, LogOptions::for_stage(ctx.stage()))
    }
    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> lit_model::Result<()> {
        if ctx.stage() == lit_model::RunningStage::Validate {
            self.epoch += 1;
        }
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lit_model::Result<Optimization> {
        let params = lit_model::optim::named_params(&self.varmap);
        Ok(Optimization {
            optimizer: Box::new(Sgd::new(
                params,
                SgdConfig {
                    lr: 0.01,
                    ..Default::default()
                },
            )?),
            scheduler: None,
        })
    }
}

struct Data;

fn loader() -> DataLoader {
    let x = Tensor::arange(0f32, 8.0, &Device::Cpu)
        .unwrap()
        .reshape((8, 1))
        .unwrap();
    let ds = TensorDataset::new(x.clone(), x).unwrap();
    DataLoader::new(
        Arc::new(ds),
        DataLoaderConfig {
            batch_size: 4,
            ..Default::default()
        },
    )
    .unwrap()
}

impl DataModule for Data {
    fn train_dataloader(&self) -> lit_core::lit_data::Result<DataLoader> {
        Ok(loader())
    }
    fn val_dataloaders(&self) -> lit_core::lit_data::Result<Vec<lit_core::lit_data::NamedLoader>> {
        Ok(vec![lit_core::lit_data::NamedLoader {
            name: "v".into(),
            loader: loader(),
        }])
    }
}

fn trainer(root: &std::path::Path, epochs: usize) -> Trainer {
    Trainer::new(TrainerConfig {
        max_epochs: epochs,
        accelerator: Accelerator::Cpu,
        default_root_dir: root.to_path_buf(),
        run_name: "scripted".into(),
        num_sanity_val_steps: 1,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn early_stopping_waits_patience_checks() {
    let root = tempfile::tempdir().unwrap();
    let mut t = trainer(root.path(), 10)
        .with_callback(EarlyStopping::new("val_score", Mode::Max).patience(2));
    t.fit(&mut Scripted::new(&[0.1, 0.5, 0.4, 0.45, 0.9]), &mut Data)
        .unwrap();
    // Best at epoch 2 (0.5), then two checks without improvement: stops after epoch 4.
    assert_eq!(t.state().epoch(), 3);
    assert!(t.state().stop_reason().unwrap().contains("did not improve"));
}

#[test]
fn a_nan_monitored_value_stops_with_check_finite() {
    let root = tempfile::tempdir().unwrap();
    let mut t = trainer(root.path(), 5).with_callback(EarlyStopping::new("val_score", Mode::Min));
    t.fit(&mut Scripted::new(&[0.3, f64::NAN, 0.1]), &mut Data)
        .unwrap();
    assert_eq!(t.state().epoch(), 1);
    let reason = t.state().stop_reason().unwrap();
    assert!(
        reason.contains("val_score = NaN is not finite") && reason.contains("check_finite"),
        "{reason}"
    );
}

#[test]
fn a_monitor_that_was_never_logged_fails_at_the_sanity_check() {
    let root = tempfile::tempdir().unwrap();
    let mut t = trainer(root.path(), 5).with_callback(EarlyStopping::new("val_scroe", Mode::Max));
    let err = t
        .fit(&mut Scripted::new(&[0.1]), &mut Data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'val_scroe' was never logged") && err.contains("val_score"),
        "{err}"
    );
    assert_eq!(t.state().global_step(), 0, "no training step ran");
}

#[test]
fn top_k_checkpoints_keep_the_best_and_delete_the_displaced() {
    let root = tempfile::tempdir().unwrap();
    let mut mc = ModelCheckpoint::monitored("val_score", Mode::Max);
    mc.save_top_k = 2;
    mc.save_last = true;
    mc.filename = Some("best_{epoch}_{val_score:.2f}".into());
    let mut t = trainer(root.path(), 4).with_callback(mc);
    t.fit(&mut Scripted::new(&[0.2, 0.7, 0.5, 0.6]), &mut Data)
        .unwrap();
    let dir = root.path().join("scripted/version_0/checkpoints");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "best_epoch=1_val_score=0.70.safetensors",
            "best_epoch=3_val_score=0.60.safetensors",
            "last.safetensors"
        ]
    );
    let (best, score) = t.state().best_model().unwrap();
    assert!(
        best.ends_with("best_epoch=1_val_score=0.70.safetensors") && (score - 0.7).abs() < 1e-6
    );
    // The files are checkpoints that know their score.
    let ck = lit_core::checkpoint::load(best).unwrap();
    assert_eq!(
        ck.meta.monitor.as_ref().map(|m| m.0.as_str()),
        Some("val_score")
    );
    assert!(ck.weights.contains_key("w"));
}

#[test]
fn tensorboard_events_are_valid_tfrecords() {
    let root = tempfile::tempdir().unwrap();
    let mut t = trainer(root.path(), 2).with_logger(TensorBoardLogger::new());
    t.fit(&mut Scripted::new(&[0.2, 0.3]), &mut Data).unwrap();
    let dir = root.path().join("scripted/version_0");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .unwrap();
    let bytes = std::fs::read(file).unwrap();
    let mut at = 0;
    let mut records = 0;
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        let masked = crc32c::crc32c(data)
            .rotate_right(15)
            .wrapping_add(0xa282_ead8);
        assert_eq!(crc, masked, "record {records}");
        at += 16 + len;
        records += 1;
    }
    // Version, hparams, then scalar rows.
    assert!(records >= 4, "{records}");
}
