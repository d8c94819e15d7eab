//! A user's own module under data parallelism, as `examples/blobs` writes one: a metric object
//! it logs covers the whole validation set, not rank 0's share; a per-process value logged at
//! the epoch's end is refused with the way to log it.

use std::sync::Arc;

use candle::{Device, Tensor};
use candle_nn::VarMap;
use lit_core::lit_data::{DataLoader, DataLoaderConfig, Loaders, NamedLoader, TensorDataset};
use lit_core::lit_model::optim::{named_params, Sgd, SgdConfig};
use lit_core::lit_model::{Batch, LitModule, Optimization, Result, StepContext};
use lit_core::{DataParallel, Trainer, TrainerConfig};
use lit_metrics::{Average, Metric, MulticlassAccuracy};

/// Predicts class 0 for inputs below 0.5 and class 1 above (fixed weights: two logits, x and
/// 0.5), logging its accuracy as a metric object or, with `per_process`, as a plain tensor.
struct Threshold {
    varmap: VarMap,
    acc: MulticlassAccuracy,
    per_process: bool,
}

impl Threshold {
    fn new(per_process: bool) -> Self {
        Self {
            varmap: VarMap::new(),
            acc: MulticlassAccuracy::new(2, Average::Micro),
            per_process,
        }
    }
}

impl LitModule for Threshold {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward(&self, input: &Tensor, _train: bool) -> Result<Tensor> {
        let half = Tensor::full(0.5f32, input.shape(), input.device())?;
        Ok(Tensor::cat(&[&half, input], 1)?)
    }

    fn training_step(&mut self, _: &Batch, _: usize, _: &mut StepContext) -> Result<Tensor> {
        unreachable!("validation only")
    }

    fn validation_step(&mut self, batch: &Batch, _: usize, _: &mut StepContext) -> Result<()> {
        let logits = self.forward(&batch.input, false)?;
        self.acc.update(&logits, &batch.target)
    }

    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> Result<()> {
        if self.per_process {
            ctx.log_epoch_tensor("val_acc", &self.acc.compute()?, 0, false)?;
            self.acc.reset();
            return Ok(());
        }
        ctx.log_metric("val_acc", &mut self.acc, 0, true)
    }

    fn configure_optimizers(&mut self) -> Result<Optimization> {
        Ok(Optimization {
            optimizer: Box::new(Sgd::new(named_params(&self.varmap), SgdConfig::default())?),
            scheduler: None,
        })
    }
}

/// 8 points in order, every even one (rank 0's share) classified right, every odd one (rank
/// 1's) wrong: 50% over the whole set, 100% on rank 0 alone.
fn loaders() -> Loaders {
    let x: Vec<f32> = (0..8).map(|i| if i % 2 == 0 { 0.9 } else { 0.1 }).collect();
    let y: Vec<u32> = vec![1; 8];
    let data = TensorDataset::new(
        Tensor::from_vec(x, (8, 1), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, 8, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let config = DataLoaderConfig {
        batch_size: 2,
        ..Default::default()
    };
    let loader = DataLoader::new(Arc::new(data), config).unwrap();
    Loaders {
        train: None,
        val: vec![NamedLoader::new("val", loader)],
        test: Vec::new(),
    }
}

/// Validates on two processes played by threads; each one's result.
fn validate_on_two(per_process: bool) -> Vec<lit_core::Result<f64>> {
    let handles: Vec<_> = lit_testutil::ThreadCollective::group(2)
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let config = TrainerConfig {
                    devices: 2,
                    logger: false,
                    ..Default::default()
                };
                let strategy = DataParallel::new(Device::Cpu, c);
                let mut trainer = Trainer::new(config)?.with_strategy(strategy);
                let values = trainer.validate(&mut Threshold::new(per_process), &mut loaders())?;
                Ok(values["val_acc"])
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_logged_metric_object_covers_every_process_of_a_data_parallel_run() {
    for result in validate_on_two(false) {
        assert_eq!(
            result.unwrap(),
            0.5,
            "the whole set's accuracy on every process"
        );
    }
    // One process sees the whole set: the same value.
    let mut trainer = Trainer::new(TrainerConfig {
        logger: false,
        ..Default::default()
    })
    .unwrap();
    let values = trainer
        .validate(&mut Threshold::new(false), &mut loaders())
        .unwrap();
    assert_eq!(values["val_acc"], 0.5);
}

#[test]
fn a_per_process_epoch_value_in_a_data_parallel_run_is_refused_with_the_way_to_log_it() {
    for result in validate_on_two(true) {
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains("val_acc") && e.contains("ctx.log_metric") && e.contains("2 processes"),
            "{e}"
        );
    }
}
