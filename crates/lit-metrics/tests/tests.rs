//! lit-metrics against torchmetrics 1.9 (`../shared/fixtures/reference.json`).
//!
//! The reference feeds three batches of 7 probability rows over 4 classes to `update`, then calls
//! `compute`:
//!
//! ```python
//! batches = [(torch.softmax(torch.randn(7, 4) * 2, -1).float(), torch.randint(0, 4, (7,))) for _ in range(3)]
//! m = torchmetrics.classification.MulticlassAccuracy(4, average="micro")
//! for pr, t in batches: m.update(pr, t)
//! m.compute()
//! ```
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

use candle::{DType, Device, Tensor};
use lit_metrics::{Average, MeanMetric, Metric, MulticlassAccuracy, MulticlassRecall};
use lit_testutil::{assert_close, flat, reference};

fn batches(r: &serde_json::Value) -> Vec<(Tensor, Tensor)> {
    r["metrics"]["classification_batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let probs: Vec<f32> = flat(&b["probs"]).iter().map(|&x| x as f32).collect();
            let n = probs.len() / 4;
            let target: Vec<u32> = flat(&b["target"]).iter().map(|&x| x as u32).collect();
            (
                Tensor::from_vec(probs, (n, 4), &Device::Cpu).unwrap(),
                Tensor::from_vec(target, n, &Device::Cpu).unwrap(),
            )
        })
        .collect()
}

fn check(case: &str, mut metric: impl Metric) {
    let Some(r) = reference() else { return };
    for (p, t) in batches(&r) {
        metric.update(&p, &t).unwrap();
    }
    let got = metric
        .compute()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_close(
        &got,
        &flat(&r["metrics"]["classification"][case]),
        1e-5,
        case,
    );
    // reset really clears: the same batches again give the same value.
    metric.reset();
    for (p, t) in batches(&r) {
        metric.update(&p, &t).unwrap();
    }
    let again = metric
        .compute()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(got, again);
}

#[test]
fn accuracy_micro_matches_torchmetrics() {
    check("accuracy_micro", MulticlassAccuracy::new(4, Average::Micro));
}

#[test]
fn accuracy_macro_matches_torchmetrics() {
    check("accuracy_macro", MulticlassAccuracy::new(4, Average::Macro));
}

#[test]
fn recall_macro_matches_torchmetrics() {
    check("recall_macro", MulticlassRecall::new(4, Average::Macro));
}

#[test]
fn recall_none_matches_torchmetrics() {
    check("recall_none", MulticlassRecall::new(4, Average::None));
}

#[test]
fn whole_epoch_state_is_not_a_mean_of_batch_values() {
    let dev = Device::Cpu;
    let mut acc = MulticlassAccuracy::new(2, Average::Micro);
    // 3 of 4 right, then 0 of 1 right: 3/5 = 0.6, not (0.75 + 0) / 2.
    acc.update(
        &Tensor::new(&[0u32, 1, 1, 0], &dev).unwrap(),
        &Tensor::new(&[0u32, 1, 1, 1], &dev).unwrap(),
    )
    .unwrap();
    acc.update(
        &Tensor::new(&[1u32], &dev).unwrap(),
        &Tensor::new(&[0u32], &dev).unwrap(),
    )
    .unwrap();
    assert!((acc.compute().unwrap().to_scalar::<f32>().unwrap() - 0.6).abs() < 1e-6);
}

#[test]
fn mean_is_weighted() {
    let dev = Device::Cpu;
    let mut m = MeanMetric::new();
    m.update(
        &Tensor::new(1.0f32, &dev).unwrap(),
        &Tensor::new(3.0f32, &dev).unwrap(),
    )
    .unwrap();
    m.update(
        &Tensor::new(5.0f32, &dev).unwrap(),
        &Tensor::new(1.0f32, &dev).unwrap(),
    )
    .unwrap();
    assert!((m.compute().unwrap().to_scalar::<f32>().unwrap() - 2.0).abs() < 1e-6);
}

#[test]
fn bad_shapes_are_named() {
    let dev = Device::Cpu;
    let mut acc = MulticlassAccuracy::new(4, Average::Micro);
    let e = acc.update(
        &Tensor::zeros((3, 5), DType::F32, &dev).unwrap(),
        &Tensor::new(&[0u32, 1, 2], &dev).unwrap(),
    );
    let msg = e.unwrap_err().to_string();
    assert!(
        msg.contains("MulticlassAccuracy") && msg.contains("5 columns"),
        "{msg}"
    );
}
