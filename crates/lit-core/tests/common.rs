//! A small module and data module for trainer tests, with a recorder of every hook call.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use candle::{Device, ModuleT, Tensor};
use candle_nn::{Module, VarBuilder, VarMap};
use lit_core::{Callback, Result as CoreResult, TrainerState};
use lit_data::{DInterface, Dataset, DatasetRegistry, TensorDataset};
use lit_model::nn::Linear;
use lit_model::{
    Batch, HParams, LitModule, MInterface, ModelRegistry, Net, Optimization, Result, StepContext,
};

pub(crate) type Log = Rc<RefCell<Vec<String>>>;

pub(crate) struct Linear4(Linear);

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct NoConfig {}

impl Net for Linear4 {
    type Config = NoConfig;
    fn new(_: &NoConfig, vb: VarBuilder) -> candle::Result<Self> {
        Ok(Self(lit_model::nn::linear(4, 3, vb.pp("fc"))?))
    }
}

impl ModuleT for Linear4 {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> candle::Result<Tensor> {
        self.0.forward(xs)
    }
}

/// Synthetic 3-class data: the class is the arg-max of the first three features.
fn synthetic(n: usize, seed: u64) -> Arc<dyn Dataset> {
    let mut g = lit_data::Generator::new(seed);
    let x = g.normal(n * 4, 0.0, 1.0);
    let y: Vec<u32> = x
        .chunks(4)
        .map(|r| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap_or(0) as u32)
        .collect();
    let x = Tensor::from_vec(x, (n, 4), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(y, n, &Device::Cpu).unwrap();
    Arc::new(TensorDataset::new(x, y).unwrap())
}

pub(crate) fn hparams(pairs: &[(&str, serde_json::Value)]) -> HParams {
    let mut h = HParams::new();
    h.set("model_name", "linear4").unwrap();
    h.set("train_dataset", "train").unwrap();
    h.set("val_datasets", "va,vb").unwrap();
    h.set("test_datasets", "test").unwrap();
    h.set("batch_size", 4).unwrap();
    h.set("num_classes", 3).unwrap();
    h.set("lr", 0.05).unwrap();
    for (k, v) in pairs {
        h.set(*k, v.clone()).unwrap();
    }
    h
}

pub(crate) fn datamodule(hp: &HParams) -> DInterface {
    let mut r = DatasetRegistry::new();
    r.register("train", |_| Ok(synthetic(40, 1)));
    r.register("va", |_| Ok(synthetic(10, 2)));
    r.register("vb", |_| Ok(synthetic(6, 3)));
    r.register("test", |_| Ok(synthetic(8, 4)));
    r.register("train64", |_| Ok(synthetic(64, 9)));
    DInterface::new(r, hp.clone()).unwrap()
}

/// MInterface over [`Linear4`], recording the module hooks the trainer calls.
pub(crate) struct Recorded {
    pub(crate) inner: MInterface,
    pub(crate) log: Log,
    pub(crate) nan_loss: bool,
}

/// The parameter type of the `precision` the hyperparameters name, as the trainer hands it.
fn param_dtype(hp: &HParams) -> candle::DType {
    let name: String = hp
        .get("precision")
        .unwrap()
        .unwrap_or_else(|| "32-true".into());
    lit_core::precision_from_name(&name).unwrap().param_dtype()
}

impl Recorded {
    pub(crate) fn new(hp: &HParams, log: Log) -> Self {
        let mut models = ModelRegistry::new();
        models.register::<Linear4>("linear4");
        Self {
            inner: MInterface::new(&models, hp.clone(), &Device::Cpu, param_dtype(hp)).unwrap(),
            log,
            nan_loss: false,
        }
    }

    fn rec(&self, what: &str) {
        self.log.borrow_mut().push(format!("module.{what}"));
    }

    pub(crate) fn weights(&self) -> Vec<f32> {
        let data = self.inner.varmap().data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        names
            .iter()
            .flat_map(|n| {
                data[*n]
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }
}

impl LitModule for Recorded {
    fn varmap(&self) -> &VarMap {
        self.inner.varmap()
    }
    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        self.inner.forward(input, train)
    }
    fn hparams(&self) -> HParams {
        self.inner.hparams()
    }
    fn training_step(
        &mut self,
        batch: &Batch,
        batch_idx: usize,
        ctx: &mut StepContext,
    ) -> Result<Tensor> {
        self.rec("training_step");
        let loss = self.inner.training_step(batch, batch_idx, ctx)?;
        if self.nan_loss {
            return Ok(loss.affine(f64::NAN, 0.0)?);
        }
        Ok(loss)
    }
    fn on_train_epoch_start(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.rec("on_train_epoch_start");
        self.inner.on_train_epoch_start(ctx)
    }
    fn on_train_epoch_end(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.rec("on_train_epoch_end");
        self.inner.on_train_epoch_end(ctx)
    }
    fn validation_step(
        &mut self,
        batch: &Batch,
        batch_idx: usize,
        ctx: &mut StepContext,
    ) -> Result<()> {
        self.rec(&format!("validation_step[{}]", ctx.dataloader_idx()));
        self.inner.validation_step(batch, batch_idx, ctx)
    }
    fn on_validation_epoch_start(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.rec("on_validation_epoch_start");
        self.inner.on_validation_epoch_start(ctx)
    }
    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.rec("on_validation_epoch_end");
        self.inner.on_validation_epoch_end(ctx)
    }
    fn test_step(&mut self, batch: &Batch, batch_idx: usize, ctx: &mut StepContext) -> Result<()> {
        self.rec("test_step");
        self.inner.test_step(batch, batch_idx, ctx)
    }
    fn on_test_epoch_end(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.rec("on_test_epoch_end");
        self.inner.on_test_epoch_end(ctx)
    }
    fn configure_optimizers(&mut self) -> Result<Optimization> {
        self.rec("configure_optimizers");
        self.inner.configure_optimizers()
    }
}

/// A callback that records every hook it sees.
pub(crate) struct Recorder(pub(crate) Log);

impl Recorder {
    fn rec(&self, what: &str) -> CoreResult<()> {
        self.0.borrow_mut().push(what.to_string());
        Ok(())
    }
}

impl Callback for Recorder {
    fn on_fit_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_fit_start")
    }
    fn on_fit_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_fit_end")
    }
    fn on_sanity_check_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_sanity_check_start")
    }
    fn on_sanity_check_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_sanity_check_end")
    }
    fn on_train_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_train_start")
    }
    fn on_train_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_train_end")
    }
    fn on_train_epoch_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_train_epoch_start")
    }
    fn on_train_epoch_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_train_epoch_end")
    }
    fn on_train_batch_start(
        &mut self,
        _: &mut TrainerState,
        _: &Batch,
        _: usize,
    ) -> CoreResult<()> {
        self.rec("on_train_batch_start")
    }
    fn on_train_batch_end(&mut self, _: &mut TrainerState, _: usize) -> CoreResult<()> {
        self.rec("on_train_batch_end")
    }
    fn on_validation_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_validation_start")
    }
    fn on_validation_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_validation_end")
    }
    fn on_validation_epoch_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_validation_epoch_start")
    }
    fn on_validation_epoch_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_validation_epoch_end")
    }
    fn on_validation_batch_end(
        &mut self,
        _: &mut TrainerState,
        idx: usize,
        _: usize,
    ) -> CoreResult<()> {
        self.rec(&format!("on_validation_batch_end[{idx}]"))
    }
    fn on_test_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_test_start")
    }
    fn on_test_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_test_end")
    }
    fn on_test_epoch_start(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_test_epoch_start")
    }
    fn on_test_epoch_end(&mut self, _: &mut TrainerState) -> CoreResult<()> {
        self.rec("on_test_epoch_end")
    }
    fn on_test_batch_end(&mut self, _: &mut TrainerState, _: usize, _: usize) -> CoreResult<()> {
        self.rec("on_test_batch_end")
    }
}
