//! Helpers shared by the kernel tests: seeded random tensors and a relative comparison.

use candle::{Device, Tensor, Var};
pub(crate) use lit_testutil::{assert_tensor_close as close, random_tensor as random};

pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `n` values in the shape, with NaN at `at`.
pub(crate) fn with_nan(shape: &[usize], at: usize, seed: u64) -> Tensor {
    let mut v = values(&random(shape, seed));
    v[at] = f32::NAN;
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `sum(ours * probe)` and `sum(theirs * probe)` have the same gradients for `vars`.
pub(crate) fn same_grads(ours: &Tensor, theirs: &Tensor, vars: &[(&Var, &str)], what: &str) {
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
