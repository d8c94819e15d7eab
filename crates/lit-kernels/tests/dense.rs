//! The fast CPU linear and cross-entropy kernels against candle's own ops, and how every
//! kernel carries NaN (as PyTorch does, so a diverging run is not hidden).

use candle::{Device, Tensor, Var};
use lit_kernels as kernels;

use crate::common::{random, same_grads, values, with_nan};

#[test]
fn linear_matches_candle_forward_and_gradients() {
    // (leading dims, in, out, relu)
    for (case, (lead, i, o, relu)) in [
        (vec![5], 7, 3, false),
        (vec![64], 3136, 128, true),
        (vec![2, 3], 4, 6, true),
        (vec![1], 1, 1, false),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 500 + case as u64 * 10;
        let shape: Vec<usize> = lead.iter().copied().chain([i]).collect();
        let x = Var::from_tensor(&random(&shape, seed)).unwrap();
        let w = Var::from_tensor(&random(&[o, i], seed + 1)).unwrap();
        let b = Var::from_tensor(&random(&[o], seed + 2)).unwrap();
        let ours = kernels::linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), relu).unwrap();
        let mut theirs = candle::Module::forward(
            &candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())),
            x.as_tensor(),
        )
        .unwrap();
        if relu {
            theirs = theirs.relu().unwrap();
        }
        same_grads(
            &ours,
            &theirs,
            &[(&x, "input"), (&w, "weight"), (&b, "bias")],
            &format!("case {case}"),
        );
    }
}

#[test]
fn linear_skips_the_gradient_of_an_untracked_input() {
    let x = random(&[3, 4], 1);
    let w = Var::from_tensor(&random(&[2, 4], 2)).unwrap();
    let b = Var::from_tensor(&random(&[2], 3)).unwrap();
    let y = kernels::linear(&x, w.as_tensor(), b.as_tensor(), false).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(&w).is_some() && grads.get(&b).is_some());
}

#[test]
fn cross_entropy_matches_candle_value_and_gradient() {
    for (case, (n, c)) in [(64, 10), (3, 1), (7, 5)].into_iter().enumerate() {
        let logits = Var::from_tensor(
            &random(&[n, c], 700 + case as u64)
                .affine(10.0, 0.0)
                .unwrap(),
        )
        .unwrap();
        let classes: Vec<u32> = (0..n).map(|i| (i * 7 % c) as u32).collect();
        let target = Tensor::new(classes.as_slice(), &Device::Cpu).unwrap();
        let theirs = candle_nn::loss::cross_entropy(logits.as_tensor(), &target).unwrap();
        for target in [
            target.clone(),
            target.to_dtype(candle::DType::I64).unwrap(),
            target.to_dtype(candle::DType::U8).unwrap(),
        ] {
            let ours = kernels::cross_entropy(logits.as_tensor(), &target).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            same_grads(
                &ours,
                &theirs,
                &[(&logits, "logits")],
                &format!("case {case} {:?}", target.dtype()),
            );
        }
    }
}

#[test]
fn cross_entropy_names_a_target_out_of_range() {
    let logits = random(&[2, 3], 1);
    let target = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    let err = kernels::cross_entropy(&logits, &target)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target class 3 is out of range for 3 classes"),
        "{err}"
    );
}

#[test]
fn conv_relu_propagates_nan_inputs_and_weights_as_pytorch_does() {
    // torch.relu(torch.conv2d(x, w, b, padding=1)) with one NaN pixel: every output whose window
    // covers it is NaN (relu(nan) = nan), the others are finite and >= 0.
    let x = with_nan(&[1, 1, 4, 4], 5, 1);
    let w = random(&[2, 1, 3, 3], 2);
    let b = random(&[2], 3);
    let theirs = values(&x.conv2d(&w, 1, 1, 1, 1).unwrap());
    let ours = values(&kernels::conv2d(&x, &w, &b, 1, 1, true).unwrap());
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o.is_nan(), t.is_nan(), "output {i}: {o} vs conv {t}");
    }
    assert!(ours.iter().any(|v| v.is_nan()));
    assert!(ours.iter().filter(|v| !v.is_nan()).all(|v| *v >= 0.0));
    // A NaN weight reaches every output of its channel, through ReLU and the fused pool too.
    let x = random(&[1, 1, 4, 4], 4);
    let w = with_nan(&[2, 1, 3, 3], 4, 5);
    let ours = values(&kernels::conv2d(&x, &w, &b, 1, 1, true).unwrap());
    assert!(ours[..16].iter().all(|v| v.is_nan()), "{ours:?}");
    assert!(ours[16..].iter().all(|v| v.is_finite()));
    let pooled = values(&kernels::conv2d_pool(&x, &w, &b, 1, 1, true, 2).unwrap());
    assert!(pooled[..4].iter().all(|v| v.is_nan()), "{pooled:?}");
}

#[test]
fn linear_relu_propagates_nan_as_pytorch_does() {
    // torch.relu(torch.nn.functional.linear(x, w, b)) with a NaN input: its row is all NaN.
    let x = with_nan(&[3, 5], 7, 6);
    let w = random(&[4, 5], 7);
    let b = random(&[4], 8);
    let y = values(&kernels::linear(&x, &w, &b, true).unwrap());
    assert!(y[4..8].iter().all(|v| v.is_nan()), "{y:?}");
    assert!(y[..4]
        .iter()
        .chain(&y[8..])
        .all(|v| v.is_finite() && *v >= 0.0));
    let w = with_nan(&[4, 5], 0, 9);
    let x = random(&[3, 5], 10);
    let y = values(&kernels::linear(&x, &w, &b, true).unwrap());
    assert!((0..3).all(|r| y[r * 4].is_nan()), "{y:?}");
}

#[test]
fn cross_entropy_of_nan_logits_is_nan() {
    // torch.nn.functional.cross_entropy with a NaN logit in one row -> nan.
    let logits = with_nan(&[4, 10], 13, 11);
    let target = Tensor::new(&[1u32, 2, 3, 4], &Device::Cpu).unwrap();
    let loss = kernels::cross_entropy(&logits, &target)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(loss.is_nan(), "{loss}");
}
