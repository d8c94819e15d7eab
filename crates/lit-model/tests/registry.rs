//! Building modules from hyperparameters, and the errors a user sees when a name is wrong.

use candle::{DType, Device, ModuleT, Tensor};
use candle_nn::{Module, VarBuilder};
use lit_model::nn::Linear;
use lit_model::{HParams, LitModule, MInterface, ModelRegistry, Net};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct TinyConfig {
    hid: usize,
}

struct Tiny(Linear, Linear);

impl Net for Tiny {
    type Config = TinyConfig;
    fn new(c: &TinyConfig, vb: VarBuilder) -> candle::Result<Self> {
        let hid = if c.hid == 0 { 3 } else { c.hid };
        Ok(Tiny(
            lit_model::nn::linear(4, hid, vb.pp("a"))?,
            lit_model::nn::linear(hid, 10, vb.pp("b"))?,
        ))
    }
}

impl ModuleT for Tiny {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> candle::Result<Tensor> {
        self.1.forward(&self.0.forward(xs)?.relu()?)
    }
}

fn registry() -> ModelRegistry {
    let mut r = ModelRegistry::new();
    r.register::<Tiny>("tiny");
    r
}

fn hp(pairs: &[(&str, serde_json::Value)]) -> HParams {
    let mut h = HParams::new();
    h.set("model_name", "tiny").unwrap();
    for (k, v) in pairs {
        h.set(*k, v.clone()).unwrap();
    }
    h
}

fn error(pairs: &[(&str, serde_json::Value)]) -> String {
    MInterface::new(&registry(), hp(pairs), &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_new_hyperparameter_reaches_the_config_by_name() {
    let m = MInterface::new(
        &registry(),
        hp(&[("hid", 17.into()), ("unrelated", "x".into())]),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let shape = m.varmap().data().lock().unwrap()["a.weight"]
        .dims()
        .to_vec();
    assert_eq!(shape, [17, 4]);
    // The resolved config is part of the module's hyperparameters.
    assert_eq!(m.hparams().get::<usize>("hid").unwrap(), Some(17));
}

#[test]
fn unknown_names_list_the_choices() {
    let e = error(&[("model_name", "nope".into())]);
    assert!(
        e.contains("unknown model 'nope'") && e.contains("tiny"),
        "{e}"
    );
    let e = error(&[("optimizer", "adagrad".into())]);
    assert!(
        e.contains("unknown optimizer 'adagrad'") && e.contains("sgd, adam, adamw"),
        "{e}"
    );
    let e = error(&[("lr_scheduler", "poly".into())]);
    assert!(
        e.contains("unknown lr scheduler 'poly'") && e.contains("cosine"),
        "{e}"
    );
    let e = error(&[("loss", "hinge".into())]);
    assert!(
        e.contains("unknown loss 'hinge'") && e.contains("cross_entropy"),
        "{e}"
    );
    let e = error(&[("metric", "accuracy,auc".into())]);
    assert!(e.contains("unknown metric 'auc'"), "{e}");
}

#[test]
fn out_of_range_values_name_the_key() {
    let e = error(&[("lr", (-0.1).into())]);
    assert!(e.contains("'lr'") && e.contains("-0.1"), "{e}");
    let e = error(&[("optimizer", "sgd".into()), ("nesterov", true.into())]);
    assert!(e.contains("'nesterov'"), "{e}");
    let e = error(&[("hid", "wide".into())]);
    assert!(e.contains("'hid'"), "{e}");
}

#[test]
fn same_seed_same_initial_weights() {
    let weights = |seed: u64| {
        let m = MInterface::new(
            &registry(),
            hp(&[("seed", seed.into())]),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let w = m.varmap().data().lock().unwrap()["a.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap();
        w.to_vec1::<f32>().unwrap()
    };
    assert_eq!(weights(3), weights(3));
    assert_ne!(weights(3), weights(4));
}
