//! The fused 2x2 max-pool on rows wide enough for its vector path (16 windows a step), with
//! ties, NaN and dead windows, against plain loops of PyTorch's rule: the first maximum in
//! window order (top-left, top-right, bottom-left, bottom-right), the last NaN, and after a
//! ReLU no gradient through a window at or below zero.

use candle::{DType, Device, Tensor, Var};
use lit_kernels as kernels;

use crate::common::{random, values};

/// Pooled values and the input gradient of `sum(pool(x) * gy)` by plain loops.
fn reference(
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    gy: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (ph, pw) = (h / 2, w / 2);
    let (mut y, mut gx) = (Vec::new(), vec![0f32; x.len()]);
    for i in 0..n {
        for py in 0..ph {
            for px in 0..pw {
                let at = |k: usize| i * h * w + (2 * py + k / 2) * w + 2 * px + k % 2;
                let mut best = 0;
                for k in 1..4 {
                    if x[at(k)] > x[at(best)] || x[at(k)].is_nan() {
                        best = k;
                    }
                }
                let m = x[at(best)];
                let g = gy[y.len()];
                if relu && m <= 0.0 {
                    y.push(0.0);
                } else {
                    y.push(m);
                    gx[at(best)] = g;
                }
            }
        }
    }
    (y, gx)
}

fn same_bits(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{what} at {i}: {a} vs {b}"
        );
    }
}

#[test]
fn wide_rows_pool_with_pytorch_ties_nan_and_dead_windows() {
    // Widths with 16, 18 and 33 windows a row (the last with an odd column left over), and an
    // odd height; values from a small set so that windows tie, some hold NaN, and some are
    // all at or below zero.
    for (case, &(n, h, w, relu)) in [
        (2, 4, 32, true),
        (3, 5, 37, true),
        (2, 7, 67, false),
        (1, 6, 37, false),
    ]
    .iter()
    .enumerate()
    {
        let choices = [-1.0f32, 0.0, 0.5, 1.0, 2.0, f32::NAN];
        let picks = values(&random(&[n, 1, h, w], 40 + case as u64));
        let x: Vec<f32> = picks
            .iter()
            .map(|p| choices[((p.abs() * 997.0) as usize) % choices.len()])
            .collect();
        let gy = values(&random(&[n, 1, h / 2, w / 2], 50 + case as u64));
        let (want_y, want_gx) = reference(&x, (n, h, w), &gy, relu);
        // An identity 1x1 convolution feeds the pool the input unchanged.
        let xv =
            Var::from_tensor(&Tensor::from_vec(x, (n, 1, h, w), &Device::Cpu).unwrap()).unwrap();
        let one = Tensor::ones((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let zero = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let y = kernels::conv2d_pool(xv.as_tensor(), &one, &zero, 1, 0, relu, 2).unwrap();
        same_bits(&values(&y), &want_y, &format!("case {case} forward"));
        let probe = Tensor::from_vec(gy, y.dims(), &Device::Cpu).unwrap();
        let grads = (y * probe).unwrap().sum_all().unwrap().backward().unwrap();
        same_bits(
            &values(grads.get(&xv).unwrap()),
            &want_gx,
            &format!("case {case} input grad"),
        );
    }
}
