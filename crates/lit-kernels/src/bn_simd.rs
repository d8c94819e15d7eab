//! Batch norm's backward sums written with AVX intrinsics: the compiler does not vectorise the
//! masked lanes of the portable loop. Each lane adds in the same order, with a separate
//! multiply and add, so the sums are the same bits as the portable loop's.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// The lanes of `norm::masked_lanes`: per lane, the sum of `g` and of `g * (x - mean)`, with
/// `g` zero where `relu` and `y <= 0`. The slices hold whole groups of 8.
#[target_feature(enable = "avx")]
pub(crate) fn masked_lanes_avx(
    gy: &[f32],
    y: &[f32],
    x: &[f32],
    mean: f32,
    relu: bool,
) -> ([f32; 8], [f32; 8]) {
    let n = gy.len() / 8 * 8;
    assert!(
        y.len() >= n && x.len() >= n,
        "masked sums: slices shorter than the gradient"
    );
    let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (m, zero) = (_mm256_set1_ps(mean), _mm256_setzero_ps());
    for i in (0..n).step_by(8) {
        // SAFETY: the assert: 8 floats from `i` of each slice.
        let (g, yv, xv) = unsafe {
            (
                _mm256_loadu_ps(gy.as_ptr().add(i)),
                _mm256_loadu_ps(y.as_ptr().add(i)),
                _mm256_loadu_ps(x.as_ptr().add(i)),
            )
        };
        let g = if relu {
            _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(yv, zero), g)
        } else {
            g
        };
        a = _mm256_add_ps(a, g);
        b = _mm256_add_ps(b, _mm256_mul_ps(g, _mm256_sub_ps(xv, m)));
    }
    let (mut sa, mut sb) = ([0f32; 8], [0f32; 8]);
    // SAFETY: 8 floats each.
    unsafe {
        _mm256_storeu_ps(sa.as_mut_ptr(), a);
        _mm256_storeu_ps(sb.as_mut_ptr(), b);
    }
    (sa, sb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avx_sums_are_the_portable_loops_bits() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        // Outputs below, at and above zero and NaN; gradients and inputs of mixed signs.
        let wave = |i: usize, f: f32| ((i as f32 * f).sin() * 3.0).round() / 2.0;
        let n = 8 * 13;
        let gy: Vec<f32> = (0..n).map(|i| wave(i, 0.7) + 0.1).collect();
        let mut y: Vec<f32> = (0..n).map(|i| wave(i, 1.3)).collect();
        y[5] = f32::NAN;
        let x: Vec<f32> = (0..n).map(|i| wave(i, 0.37) * 1.7).collect();
        for relu in [true, false] {
            let want = crate::norm::masked_lanes(&gy, &y, &x, 0.3, relu);
            // SAFETY: the CPU has AVX.
            let got = unsafe { masked_lanes_avx(&gy, &y, &x, 0.3, relu) };
            let bits = |v: [f32; 8]| v.map(f32::to_bits);
            assert_eq!(bits(got.0), bits(want.0), "relu {relu}: sums of g");
            assert_eq!(
                bits(got.1),
                bits(want.1),
                "relu {relu}: sums of g * (x - mean)"
            );
        }
    }
}
