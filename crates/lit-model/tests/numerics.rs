//! Losses against `tests/fixtures/reference.json` (PyTorch 2.15, float64 references; lit
//! computes in f32, compared at a relative tolerance of 1e-5). The optimizers' and schedules'
//! checks are lit-optim's own tests.

use candle::{Device, Tensor};
use lit_testutil::{assert_close, flat, reference};
use serde_json::Value;

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    let data: Vec<f32> = flat(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn loss_case(r: &Value, case: &str) -> f64 {
    r["losses"]["cases"][case].as_f64().unwrap()
}

#[test]
fn losses_match_torch() {
    let Some(r) = reference() else { return };
    let l = &r["losses"];
    let logits = tensor(&l["logits"], &[6, 5]);
    let labels = Tensor::new(
        flat(&l["labels"])
            .iter()
            .map(|&x| x as u32)
            .collect::<Vec<_>>(),
        &Device::Cpu,
    )
    .unwrap();
    let scalar = |t: Tensor| f64::from(t.to_scalar::<f32>().unwrap());
    let ce = scalar(lit_model::loss::cross_entropy(&logits, &labels).unwrap());
    assert_close(
        &[ce],
        &[loss_case(&r, "cross_entropy")],
        1e-5,
        "cross_entropy",
    );
    let mse = scalar(
        lit_model::loss::mse(&tensor(&l["pred"], &[6, 4]), &tensor(&l["target"], &[6, 4])).unwrap(),
    );
    assert_close(&[mse], &[loss_case(&r, "mse")], 1e-5, "mse");
    let (a, p, n) = (
        tensor(&l["anchor"], &[4, 8]),
        tensor(&l["positive"], &[4, 8]),
        tensor(&l["negative"], &[4, 8]),
    );
    let ls = scalar(lit_model::loss::cross_entropy_smoothed(&logits, &labels, 0.1).unwrap());
    assert_close(
        &[ls],
        &[loss_case(&r, "cross_entropy_label_smoothing_0.1")],
        1e-5,
        "label smoothing",
    );
    let logp = candle_nn::ops::log_softmax(&logits, 1).unwrap();
    let nll = scalar(lit_model::loss::nll(&logp, &labels).unwrap());
    assert_close(&[nll], &[loss_case(&r, "nll_of_log_softmax")], 1e-5, "nll");
    let (pred, target) = (tensor(&l["pred"], &[6, 4]), tensor(&l["target"], &[6, 4]));
    let l1 = scalar(lit_model::loss::l1(&pred, &target).unwrap());
    assert_close(&[l1], &[loss_case(&r, "l1")], 1e-5, "l1");
    let sl1 = scalar(lit_model::loss::smooth_l1(&pred, &target, 1.0).unwrap());
    assert_close(&[sl1], &[loss_case(&r, "smooth_l1")], 1e-5, "smooth_l1");
    let bce = scalar(
        lit_model::loss::bce_with_logits(&pred, &tensor(&l["binary_target"], &[6, 4])).unwrap(),
    );
    assert_close(
        &[bce],
        &[loss_case(&r, "bce_with_logits(pred, binary_target)")],
        1e-5,
        "bce_with_logits",
    );
    let tm = scalar(lit_model::loss::triplet_margin(&a, &p, &n, 1.0).unwrap());
    assert_close(
        &[tm],
        &[loss_case(&r, "triplet_margin(margin=1, p=2)")],
        1e-5,
        "triplet_margin",
    );
}
