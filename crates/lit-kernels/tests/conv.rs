//! The fast CPU convolution and pooling kernels against candle's own ops: forward values and
//! every gradient, on random data, odd sizes, strides and paddings.

use candle::{Device, Tensor, Var};
use lit_kernels as kernels;

use crate::common::{close, random, same_grads};

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
        // Stride-2 rows of 36 and 19 outputs: whole 16-wide blocks and a remainder.
        (2, 3, 5, 71, 4, 3, 2, 1),
        (2, 3, 6, 38, 5, 1, 2, 0),
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

/// Forward values and the three gradients of `conv2d_pool` (or `conv2d` when `pool` is 0) for
/// a 3x3 stride-1 "same" kernel from `c` to `o` channels, on a rayon pool of `threads` threads.
fn grads_on(
    threads: usize,
    n: usize,
    (c, o): (usize, usize),
    hw: (usize, usize),
    pool: usize,
) -> Vec<Tensor> {
    let (h, w) = hw;
    let run = || {
        let x = Var::from_tensor(&random(&[n, c, h, w], 7)).unwrap();
        let wt = Var::from_tensor(&random(&[o, c, 3, 3], 8)).unwrap();
        let b = Var::from_tensor(&random(&[o], 9)).unwrap();
        let (xt, wtt, bt) = (x.as_tensor(), wt.as_tensor(), b.as_tensor());
        let y = match pool {
            0 => kernels::conv2d(xt, wtt, bt, 1, 1, true).unwrap(),
            k => kernels::conv2d_pool(xt, wtt, bt, 1, 1, true, k).unwrap(),
        };
        let probe = random(y.dims(), 10);
        let g = (&y * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grads = [&x, &wt, &b].map(|v| g.get(v).unwrap().clone());
        std::iter::once(y).chain(grads).collect()
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(run)
}

#[test]
fn direct_and_im2col_convolutions_agree() {
    // One thread takes whole images (the direct loops for 3x3 stride 1); more threads than
    // images spread each image's products over the pool instead (im2col and gemm).
    // Output channels: one vector of lanes, two and a half, one and a bit.
    for (case, &(n, co, hw, pool)) in [
        (3, (1, 16), (28, 28), 2),
        (2, (16, 5), (14, 14), 0),
        (2, (7, 40), (9, 11), 2),
        (3, (3, 5), (1, 1), 0),
        (2, (33, 64), (7, 7), 0),
        (2, (32, 17), (5, 6), 0),
    ]
    .iter()
    .enumerate()
    {
        let direct = grads_on(1, n, co, hw, pool);
        let cols = grads_on(n + 1, n, co, hw, pool);
        for (what, (a, b)) in ["forward", "input grad", "weight grad", "bias grad"]
            .iter()
            .zip(direct.iter().zip(&cols))
        {
            close(a, b, &format!("case {case} {what}"));
        }
    }
}
