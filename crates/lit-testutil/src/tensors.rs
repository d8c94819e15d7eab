//! Seeded random tensors and an element-wise comparison, for the crates' kernel, layer and
//! optimizer tests.

use candle::{Device, Tensor};
use lit_base::Generator;

/// A tensor of `shape` with standard normal values from `seed`, on the CPU.
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        Generator::new(seed).normal(n, 0.0, 1.0),
        shape,
        &Device::Cpu,
    )
    .expect("a shape matching its values")
}

/// Asserts that `a` and `b` (f32) have one shape and agree element by element within 1e-4,
/// relative to the larger of `|b|` and 1.
pub fn assert_tensor_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let values = |t: &Tensor| {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("an f32 tensor")
    };
    let (a, b) = (values(a), values(b));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}
