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
use lit_metrics::{
    Average, MeanMetric, Metric, MetricCollection, MulticlassAccuracy, MulticlassAuroc,
    MulticlassConfusionMatrix, MulticlassF1Score, MulticlassPrecision, MulticlassRecall, Reduce,
    Reduction, Regression, RegressionKind,
};
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

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Checks `metric` after `update` with every batch, and again after `reset` when the batches go
/// through `forward` (which must also return each batch's own value).
fn check_with(group: &str, case: &str, mut metric: impl Metric, data: Vec<(Tensor, Tensor)>) {
    let Some(r) = reference() else { return };
    let expected = flat(&r["metrics"][group][case]);
    for (p, t) in &data {
        metric.update(p, t).unwrap();
    }
    assert_close(&values(&metric.compute().unwrap()), &expected, 1e-5, case);
    metric.reset();
    for (p, t) in &data {
        let batch_value = metric.forward(p, t).unwrap();
        let mut alone = metric.boxed_clone();
        alone.reset();
        alone.update(p, t).unwrap();
        assert_eq!(
            values(&batch_value),
            values(&alone.compute().unwrap()),
            "{case}: forward's batch value"
        );
    }
    assert_close(
        &values(&metric.compute().unwrap()),
        &expected,
        1e-5,
        &format!("{case} via forward"),
    );
}

fn check(case: &str, metric: impl Metric) {
    let Some(r) = reference() else { return };
    check_with("classification", case, metric, batches(&r));
}

fn regression_batches(r: &serde_json::Value) -> Vec<(Tensor, Tensor)> {
    r["metrics"]["regression_batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v = |k: &str| {
                let x: Vec<f32> = flat(&b[k]).iter().map(|&x| x as f32).collect();
                let n = x.len();
                Tensor::from_vec(x, n, &Device::Cpu).unwrap()
            };
            (v("pred"), v("target"))
        })
        .collect()
}

#[test]
fn regression_metrics_match_torchmetrics() {
    let Some(r) = reference() else { return };
    for (case, kind) in [
        ("mse", RegressionKind::Mse),
        ("rmse", RegressionKind::Rmse),
        ("mae", RegressionKind::Mae),
        ("r2", RegressionKind::R2),
        ("pearson", RegressionKind::Pearson),
    ] {
        check_with(
            "regression",
            case,
            Regression::new(kind),
            regression_batches(&r),
        );
    }
}

#[test]
fn precision_recall_f1_match_torchmetrics() {
    check(
        "precision_macro",
        MulticlassPrecision::new(4, Average::Macro),
    );
    check("f1_macro", MulticlassF1Score::new(4, Average::Macro));
    check("f1_weighted", MulticlassF1Score::new(4, Average::Weighted));
}

#[test]
fn top_k_accuracy_matches_torchmetrics() {
    check(
        "accuracy_top2_micro",
        MulticlassAccuracy::new(4, Average::Micro).with_top_k(2),
    );
}

#[test]
fn confusion_matrix_matches_torchmetrics() {
    check("confusion_matrix", MulticlassConfusionMatrix::new(4));
}

#[test]
fn auroc_matches_torchmetrics() {
    check("auroc_macro", MulticlassAuroc::new(4, Average::Macro));
}

/// torchmetrics' `MulticlassAUROC` softmaxes scores that are not probabilities. Logits
/// `log(p) + c_row` have softmax `p` whatever the row's offset `c_row`, so on such logits it gives
/// the same value as on the probabilities, while a ranking of the raw logits would not (the
/// offsets reorder the rows within each class).
#[test]
fn auroc_softmaxes_logits_as_torchmetrics_does() {
    let Some(r) = reference() else { return };
    let logits: Vec<(Tensor, Tensor)> = batches(&r)
        .into_iter()
        .map(|(p, t)| {
            let n = p.dim(0).unwrap();
            let offsets: Vec<f32> = (0..n).map(|i| (i as f32 * 1.7).sin() * 6.0).collect();
            let offsets = Tensor::from_vec(offsets, (n, 1), &Device::Cpu).unwrap();
            (p.log().unwrap().broadcast_add(&offsets).unwrap(), t)
        })
        .collect();
    check_with(
        "classification",
        "auroc_macro",
        MulticlassAuroc::new(4, Average::Macro),
        logits,
    );
}

#[test]
fn states_merge_as_if_one_worker_saw_everything() {
    let Some(r) = reference() else { return };
    let data = batches(&r);
    let mut whole = MulticlassF1Score::new(4, Average::Macro);
    let (mut a, mut b) = (whole.clone(), whole.clone());
    for (i, (p, t)) in data.iter().enumerate() {
        whole.update(p, t).unwrap();
        if i.is_multiple_of(2) {
            a.update(p, t).unwrap()
        } else {
            b.update(p, t).unwrap()
        }
    }
    a.merge(&b).unwrap();
    assert_eq!(
        values(&a.compute().unwrap()),
        values(&whole.compute().unwrap())
    );
    let err = a
        .merge(&MulticlassAuroc::new(4, Average::Macro))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot merge 'auroc' into 'f1'"), "{err}");
}

#[test]
fn a_collection_prefixes_its_keys() {
    let Some(r) = reference() else { return };
    let mut c = MetricCollection::new(
        "val_",
        vec![
            Box::new(MulticlassAccuracy::new(4, Average::Micro)),
            Box::new(MulticlassRecall::new(4, Average::Macro)),
        ],
    );
    for (p, t) in batches(&r) {
        c.update(&p, &t).unwrap();
    }
    let out = c.compute().unwrap();
    assert_eq!(out.keys().collect::<Vec<_>>(), ["val_acc", "val_recall"]);
    assert_close(
        &values(&out["val_acc"]),
        &flat(&r["metrics"]["classification"]["accuracy_micro"]),
        1e-5,
        "acc",
    );
    let test = c.clone_with_prefix("test_");
    assert!(values(&test.compute().unwrap()["test_acc"])[0] == 0.0);
}

#[test]
fn sum_max_min() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[3.0f32, -1.0, 2.0], &dev).unwrap();
    let y = Tensor::new(&[7.0f32], &dev).unwrap();
    for (red, want) in [
        (Reduction::Sum, 11.0),
        (Reduction::Max, 7.0),
        (Reduction::Min, -1.0),
    ] {
        let mut m = Reduce::new(red);
        m.update(&x, &x).unwrap();
        m.update(&y, &y).unwrap();
        assert_eq!(m.compute().unwrap().to_scalar::<f32>().unwrap(), want);
    }
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
