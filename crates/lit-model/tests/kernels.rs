//! The fast CPU kernels against candle's own ops: forward values and every gradient, on random
//! data, odd sizes, strides and paddings.

use candle::{Device, Tensor, Var};
use lit_base::Generator;
use lit_model::kernels;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        Generator::new(seed).normal(n, 0.0, 1.0),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Direct-loop convolution gradients (PyTorch's definition) for `sum(conv2d(x, w) + b) * gy)`.
#[allow(clippy::too_many_arguments)]
fn naive_grads(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    stride: usize,
    pad: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, c, h, wd) = x.dims4().unwrap();
    let (o, _, k, _) = w.dims4().unwrap();
    let (_, _, oh, ow) = gy.dims4().unwrap();
    let (xs, ws, g) = (
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        gy.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let (mut gx, mut gw, mut gb) = (vec![0f32; xs.len()], vec![0f32; ws.len()], vec![0f32; o]);
    for ni in 0..n {
        for oi in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let gv = g[((ni * o + oi) * oh + oy) * ow + ox];
                    gb[oi] += gv;
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy * stride + ky) as isize - pad as isize,
                                    (ox * stride + kx) as isize - pad as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((ni * c + ci) * h + iy as usize) * wd + ix as usize;
                                let wi = ((oi * c + ci) * k + ky) * k + kx;
                                gw[wi] += gv * xs[xi];
                                gx[xi] += gv * ws[wi];
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, gw, gb)
}

fn close_vec(a: &Tensor, b: &[f32], what: &str) {
    close(
        a,
        &Tensor::from_slice(b, a.dims(), &Device::Cpu).unwrap(),
        what,
    );
}

#[test]
fn conv2d_matches_candle_forward_and_gradients() {
    // (n, c, h, w, o, k, stride, pad)
    for (case, &(n, c, h, w, o, k, stride, pad)) in [
        (2, 3, 7, 5, 4, 3, 1, 1),
        (3, 1, 28, 28, 16, 3, 1, 1),
        (2, 4, 9, 8, 5, 3, 2, 0),
        (1, 2, 6, 7, 3, 2, 2, 1),
        (2, 5, 5, 5, 2, 1, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        let seed = case as u64 * 10;
        let x = Var::from_tensor(&random(&[n, c, h, w], seed)).unwrap();
        let wt = Var::from_tensor(&random(&[o, c, k, k], seed + 1)).unwrap();
        let b = Var::from_tensor(&random(&[o], seed + 2)).unwrap();
        let probe = random(
            &[
                n,
                o,
                (h + 2 * pad - k) / stride + 1,
                (w + 2 * pad - k) / stride + 1,
            ],
            seed + 3,
        );

        let ours = kernels::conv2d(
            x.as_tensor(),
            wt.as_tensor(),
            b.as_tensor(),
            stride,
            pad,
            false,
        )
        .unwrap();
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), pad, stride, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, o, 1, 1)).unwrap())
            .unwrap();
        close(&ours, &theirs, &format!("case {case} forward"));

        let g1 = (&ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (gx, gw, gb) = naive_grads(x.as_tensor(), wt.as_tensor(), &probe, stride, pad);
        close_vec(g1.get(&x).unwrap(), &gx, &format!("case {case} grad input"));
        close_vec(
            g1.get(&wt).unwrap(),
            &gw,
            &format!("case {case} grad weight"),
        );
        close_vec(g1.get(&b).unwrap(), &gb, &format!("case {case} grad bias"));
        if stride == 1 {
            // candle's own backward agrees where it supports the case (its stride-2 input
            // gradient can come out with the wrong shape, hence the direct loops above).
            let g2 = (&theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (v, name) in [(&x, "input"), (&wt, "weight"), (&b, "bias")] {
                close(
                    g1.get(v).unwrap(),
                    g2.get(v).unwrap(),
                    &format!("case {case} grad {name} vs candle"),
                );
            }
        }
    }
}

#[test]
fn conv2d_skips_the_gradient_of_an_untracked_input() {
    let x = random(&[2, 1, 6, 6], 1);
    let w = Var::from_tensor(&random(&[3, 1, 3, 3], 2)).unwrap();
    let b = Var::from_tensor(&random(&[3], 3)).unwrap();
    let y = kernels::conv2d(&x, w.as_tensor(), b.as_tensor(), 1, 1, false).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(&w).is_some() && grads.get(&b).is_some());
}

#[test]
fn max_pool_matches_candle_forward_and_gradient() {
    for (case, &(n, c, h, w, k)) in [(2, 3, 8, 8, 2), (1, 4, 7, 9, 2), (2, 2, 9, 9, 3)]
        .iter()
        .enumerate()
    {
        let x = Var::from_tensor(&random(&[n, c, h, w], 100 + case as u64)).unwrap();
        let ours = kernels::max_pool2d(x.as_tensor(), k).unwrap();
        let theirs = x.as_tensor().max_pool2d(k).unwrap();
        close(&ours, &theirs, &format!("case {case} forward"));
        let probe = random(ours.dims(), 200 + case as u64);
        let g1 = (&ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // PyTorch routes each window's gradient to its (first) maximum, unscaled. candle 0.11
        // multiplies it by the window's mean of the max mask (1 / k² without ties) and maps odd
        // sizes wrongly, so the reference here is direct loops.
        let xs = x
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gy = probe.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (oh, ow) = (h / k, w / k);
        let mut gx = vec![0f32; xs.len()];
        for p in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let idx = (0..k * k)
                        .map(|j| (p * h + oy * k + j / k) * w + ox * k + j % k)
                        .fold(None, |best: Option<usize>, i| match best {
                            Some(b) if xs[b] >= xs[i] => Some(b),
                            _ => Some(i),
                        })
                        .unwrap();
                    gx[idx] += gy[(p * oh + oy) * ow + ox];
                }
            }
        }
        close(
            g1.get(&x).unwrap(),
            &Tensor::from_vec(gx, x.dims(), &Device::Cpu).unwrap(),
            &format!("case {case} grad"),
        );
    }
}

#[test]
fn fused_relu_matches_conv_then_relu() {
    let x = Var::from_tensor(&random(&[2, 3, 9, 7], 7)).unwrap();
    let w = Var::from_tensor(&random(&[4, 3, 3, 3], 8)).unwrap();
    let b = Var::from_tensor(&random(&[4], 9)).unwrap();
    let fused = kernels::conv2d(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1, 1, true).unwrap();
    let plain = kernels::conv2d(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1, 1, false)
        .unwrap()
        .relu()
        .unwrap();
    close(&fused, &plain, "forward");
    let probe = random(fused.dims(), 10);
    let g1 = (&fused * &probe)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g2 = (&plain * &probe)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (v, name) in [(&x, "input"), (&w, "weight"), (&b, "bias")] {
        close(g1.get(v).unwrap(), g2.get(v).unwrap(), name);
    }
}

/// `sum(ours * probe)` and `sum(theirs * probe)` have the same gradients for `vars`.
fn same_grads(ours: &Tensor, theirs: &Tensor, vars: &[(&Var, &str)], what: &str) {
    close(ours, theirs, &format!("{what} forward"));
    let probe = random(ours.dims(), 99);
    let backward = |t: &Tensor| (t * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let (g1, g2) = (backward(ours), backward(theirs));
    for (v, name) in vars {
        close(
            g1.get(v).unwrap(),
            g2.get(v).unwrap(),
            &format!("{what} grad {name}"),
        );
    }
}

#[test]
fn fused_conv_relu_pool_matches_the_three_ops_in_sequence() {
    // (n, c, h, w, o, k, stride, pad, pool, relu): odd outputs that pooling truncates (7 -> 3),
    // stride 2, no padding, a 3-wide window, and pooling without the ReLU.
    for (case, &(n, c, h, w, o, k, stride, pad, pool, relu)) in [
        (2, 3, 8, 8, 4, 3, 1, 1, 2, true),
        (3, 1, 28, 28, 16, 3, 1, 1, 2, true),
        (2, 2, 7, 9, 3, 3, 1, 1, 2, true),
        (2, 4, 11, 10, 5, 3, 2, 0, 2, true),
        (1, 2, 9, 9, 3, 1, 1, 0, 3, true),
        (2, 3, 8, 6, 4, 3, 1, 1, 2, false),
    ]
    .iter()
    .enumerate()
    {
        let seed = 300 + case as u64 * 10;
        let x = Var::from_tensor(&random(&[n, c, h, w], seed)).unwrap();
        let wt = Var::from_tensor(&random(&[o, c, k, k], seed + 1)).unwrap();
        let b = Var::from_tensor(&random(&[o], seed + 2)).unwrap();
        let (xt, wtt, bt) = (x.as_tensor(), wt.as_tensor(), b.as_tensor());
        let fused = kernels::conv2d_pool(xt, wtt, bt, stride, pad, relu, pool).unwrap();
        // The reference is a convolution, a ReLU and lit's PyTorch-exact max-pool in turn: candle's
        // convolution, or with stride 2, where candle's input gradient comes out with the wrong
        // shape, lit's unfused one (checked against direct loops above).
        let mut conv = if stride == 1 {
            xt.conv2d(wtt, pad, stride, 1, 1)
                .unwrap()
                .broadcast_add(&bt.reshape((1, o, 1, 1)).unwrap())
                .unwrap()
        } else {
            kernels::conv2d(xt, wtt, bt, stride, pad, false).unwrap()
        };
        if relu {
            conv = conv.relu().unwrap();
        }
        let seq = kernels::max_pool2d(&conv, pool).unwrap();
        let vars = [(&x, "input"), (&wt, "weight"), (&b, "bias")];
        same_grads(&fused, &seq, &vars, &format!("case {case}"));
    }
}

#[test]
fn fused_conv_relu_pool_sends_no_gradient_through_dead_windows() {
    // A bias of -100 makes every pre-activation negative: the output is all zeros and so are the
    // weight and input gradients; the bias gradient too, as PyTorch's ReLU passes none at 0.
    let x = Var::from_tensor(&random(&[2, 2, 6, 6], 1)).unwrap();
    let w = Var::from_tensor(&random(&[3, 2, 3, 3], 2)).unwrap();
    let b = Var::from_tensor(&Tensor::full(-100f32, 3, &Device::Cpu).unwrap()).unwrap();
    let y =
        kernels::conv2d_pool(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1, 1, true, 2).unwrap();
    assert_eq!(y.dims(), &[2, 3, 3, 3]);
    assert_eq!(
        y.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    let grads = y.sum_all().unwrap().backward().unwrap();
    for v in [&x, &w, &b] {
        let total = grads.get(v).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(total.to_scalar::<f32>().unwrap(), 0.0);
    }
}

#[test]
fn fused_conv_pool_rejects_a_window_larger_than_the_output() {
    let x = random(&[1, 1, 3, 3], 1);
    let (w, b) = (random(&[2, 1, 3, 3], 2), random(&[2], 3));
    let err = kernels::conv2d_pool(&x, &w, &b, 1, 0, true, 2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pooling window 2 does not fit the 1x1 output"),
        "{err}"
    );
}

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
fn max_pooling_propagates_nan_as_pytorch_does() {
    // torch.nn.functional.max_pool2d(torch.tensor([[[[1., nan], [3., 2.]]]]), 2) -> nan: a NaN
    // wins its window (and relu(nan) is nan), so a diverging activation is not hidden.
    let x = Tensor::from_vec(
        vec![1f32, f32::NAN, 3.0, 2.0, 1.0, 4.0, 0.5, 2.0],
        (1, 2, 2, 2),
        &Device::Cpu,
    )
    .unwrap();
    let pooled = kernels::max_pool2d(&x, 2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(pooled[0].is_nan() && pooled[1] == 4.0, "{pooled:?}");
    // The fused op on an identity 1x1 convolution pools the same values (the two planes as
    // two images, since a NaN times a zero weight would reach every output channel).
    let x = x.reshape((2, 1, 2, 2)).unwrap();
    let w = Tensor::ones((1, 1, 1, 1), candle::DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(1, candle::DType::F32, &Device::Cpu).unwrap();
    let fused = kernels::conv2d_pool(&x, &w, &b, 1, 0, true, 2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(fused[0].is_nan() && fused[1] == 4.0, "{fused:?}");
}

#[test]
fn layers_off_the_fast_path_match_the_kernels() {
    // f64 takes the path GPUs take (candle's ops and lit's reduction max-pool); its values and
    // gradients must equal the f32 kernels', max-pool included (candle's own would scale each
    // gradient by 1/k²).
    use candle::DType;
    use candle_nn::Conv2dConfig;
    use lit_model::nn::{max_pool2d, Conv2d, Linear};
    let run = |dtype: DType| {
        let to = |t: Tensor| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap();
        let x = to(random(&[2, 3, 9, 7], 41));
        let (w, b) = (to(random(&[4, 3, 3, 3], 42)), to(random(&[4], 43)));
        let (lw, lb) = (to(random(&[5, 4 * 4 * 3], 44)), to(random(&[5], 45)));
        let conv = Conv2d::new(
            w.as_tensor().clone(),
            Some(b.as_tensor().clone()),
            Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
        );
        let fc = Linear::new(lw.as_tensor().clone(), Some(lb.as_tensor().clone()));
        let fused = conv.forward_relu_pool(x.as_tensor(), 2).unwrap();
        let pooled = max_pool2d(&conv.forward_relu(x.as_tensor()).unwrap(), 2).unwrap();
        let y = fc
            .forward_relu(&(fused + pooled).unwrap().flatten_from(1).unwrap())
            .unwrap();
        let target = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
        let loss = lit_model::loss::cross_entropy(&y, &target).unwrap();
        let grads = loss.backward().unwrap();
        let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let mut out = vec![f32s(&y)];
        for v in [&x, &w, &b, &lw, &lb] {
            out.push(f32s(grads.get(v).unwrap()));
        }
        out
    };
    let (fast, generic) = (run(DType::F32), run(DType::F64));
    for (i, (a, b)) in fast.iter().zip(&generic).enumerate() {
        close(
            a,
            b,
            ["output", "grad x", "grad w", "grad b", "grad lw", "grad lb"][i],
        );
    }
}

#[test]
fn layers_compute_in_their_inputs_half_type_with_f32_parameters() {
    // Mixed precision: bf16 and f16 inputs with f32 parameters give outputs of the input's type
    // and f32 parameter gradients, within the half type's rounding of the f32 results.
    use candle::DType;
    use candle::Module;
    use candle_nn::Conv2dConfig;
    use lit_model::nn::{Conv2d, Linear};
    let run = |dtype: DType| {
        let x = random(&[2, 3, 8, 8], 51).to_dtype(dtype).unwrap();
        let (w, b) = (
            Var::from_tensor(&random(&[4, 3, 3, 3], 52)).unwrap(),
            Var::from_tensor(&random(&[4], 53)).unwrap(),
        );
        let lw = Var::from_tensor(&random(&[5, 4 * 4 * 4], 54)).unwrap();
        let lb = Var::from_tensor(&random(&[5], 55)).unwrap();
        let conv = Conv2d::new(
            w.as_tensor().clone(),
            Some(b.as_tensor().clone()),
            Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
        );
        let fc = Linear::new(lw.as_tensor().clone(), Some(lb.as_tensor().clone()));
        let h = conv.forward_relu_pool(&x, 2).unwrap();
        assert_eq!(h.dtype(), dtype, "the convolution's output type");
        let y = fc.forward(&h.flatten_from(1).unwrap()).unwrap();
        assert_eq!(y.dtype(), dtype, "the linear layer's output type");
        let y = y.to_dtype(DType::F32).unwrap();
        let target = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
        let grads = lit_model::loss::cross_entropy(&y, &target)
            .unwrap()
            .backward()
            .unwrap();
        let mut out = vec![y];
        for v in [&w, &b, &lw, &lb] {
            let g = grads.get(v).unwrap();
            assert_eq!(g.dtype(), DType::F32, "a parameter's gradient stays f32");
            out.push(g.clone());
        }
        out
    };
    let full = run(DType::F32);
    for (dtype, tol) in [(DType::BF16, 0.05), (DType::F16, 0.01)] {
        for (i, (a, b)) in run(dtype).iter().zip(&full).enumerate() {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
            let worst = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= tol * scale,
                "{dtype:?} {}: off by {worst}, scale {scale}",
                ["output", "grad w", "grad b", "grad lw", "grad lb"][i]
            );
        }
    }
}

#[test]
fn fused_adamw_matches_candles_adamw() {
    // 70,001 elements: above the size where the update runs in parallel chunks, with a remainder.
    use candle_nn::Optimizer as _;
    use lit_model::optim::{Adam, AdamConfig, Optimizer};
    let (lr, wd) = (0.01, 0.1);
    let start = random(&[7, 10_001], 61);
    let (ours, theirs) = (
        Var::from_tensor(&start).unwrap(),
        Var::from_tensor(&start).unwrap(),
    );
    let mut lit_opt = Adam::new(
        vec![("p".into(), ours.clone())],
        AdamConfig {
            lr,
            weight_decay: wd,
            decoupled_weight_decay: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut candle_opt = candle_nn::AdamW::new(
        vec![theirs.clone()],
        candle_nn::ParamsAdamW {
            lr,
            weight_decay: wd,
            ..Default::default()
        },
    )
    .unwrap();
    for step in 0..5 {
        // The gradient of sum(p * r) is r: a fresh random gradient each step.
        let r = random(&[7, 10_001], 70 + step);
        let loss = |v: &Var| (v.as_tensor() * &r).unwrap().sum_all().unwrap();
        lit_opt.step(&loss(&ours).backward().unwrap()).unwrap();
        candle_opt.step(&loss(&theirs).backward().unwrap()).unwrap();
    }
    close(
        ours.as_tensor(),
        theirs.as_tensor(),
        "parameters after 5 AdamW steps",
    );
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `n` values in the shape, with NaN at `at`.
fn with_nan(shape: &[usize], at: usize, seed: u64) -> Tensor {
    let mut v = values(&random(shape, seed));
    v[at] = f32::NAN;
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
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
