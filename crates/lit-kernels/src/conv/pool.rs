//! The 2x2 max-pool after a convolution (with its optional ReLU) and its backward, a row pair
//! at a time: 16 windows per step on AVX-512, one at a time elsewhere and for the last few.

use super::{beats, DEAD};

/// Max-pools the first `ph` row pairs and `2 * pw` columns of each `ohw`-float plane in
/// `full` (`ow` floats a row) into `out`, recording each window's argmax in `arg`: the first maximum in
/// PyTorch's order (top-left, top-right, bottom-left, bottom-right) or the last NaN; after a
/// ReLU when `relu`, where a window at or below zero becomes 0 with argmax [`DEAD`].
pub(super) fn pool2(
    full: &[f32],
    (ow, ohw, ph, pw): (usize, usize, usize, usize),
    relu: bool,
    out: &mut [f32],
    arg: &mut [u8],
) {
    let wide = crate::wide::has_avx512();
    let planes = full.chunks_exact(ohw).zip(out.chunks_exact_mut(ph * pw));
    for ((plane, out), arg) in planes.zip(arg.chunks_exact_mut(ph * pw)) {
        let rows = plane.chunks_exact(2 * ow).zip(out.chunks_exact_mut(pw));
        for ((pair, out), arg) in rows.zip(arg.chunks_exact_mut(pw)) {
            let (top, bottom) = pair.split_at(ow);
            let done = match wide {
                // SAFETY: the CPU has AVX-512F.
                #[cfg(target_arch = "x86_64")]
                true => unsafe {
                    super::simd::pool2_row_avx512(top, bottom, out, arg, (relu, DEAD))
                },
                _ => 0,
            };
            pool2_row(
                &top[2 * done..],
                &bottom[2 * done..],
                relu,
                &mut out[done..],
                &mut arg[done..],
            );
        }
    }
}

/// One row pair of [`pool2`], a window at a time.
fn pool2_row(top: &[f32], bottom: &[f32], relu: bool, out: &mut [f32], arg: &mut [u8]) {
    let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (((t, b), y), a) in windows.zip(out.iter_mut()).zip(arg.iter_mut()) {
        let (mut m, mut best) = (t[0], 0u8);
        for (j, v) in [(1u8, t[1]), (2, b[0]), (3, b[1])] {
            if beats(v, m) {
                m = v;
                best = j;
            }
        }
        (*y, *a) = if relu && m <= 0.0 {
            (0.0, DEAD)
        } else {
            (m, best)
        };
    }
}

/// The backward of [`pool2`]: routes each window's gradient to the position its argmax names,
/// writing every element of `full` once (zeros elsewhere, and in a last odd row or column).
pub(super) fn unpool2(
    gy: &[f32],
    arg: &[u8],
    (ow, ohw, ph, pw): (usize, usize, usize, usize),
    full: &mut [f32],
) {
    let wide = crate::wide::has_avx512();
    let planes = full.chunks_exact_mut(ohw).zip(gy.chunks_exact(ph * pw));
    for ((plane, gy), arg) in planes.zip(arg.chunks_exact(ph * pw)) {
        let (pairs, rest) = plane.split_at_mut(ph * 2 * ow);
        rest.fill(0.0);
        let rows = pairs.chunks_exact_mut(2 * ow).zip(gy.chunks_exact(pw));
        for ((pair, gy), arg) in rows.zip(arg.chunks_exact(pw)) {
            let (top, bottom) = pair.split_at_mut(ow);
            top[2 * pw..].fill(0.0);
            bottom[2 * pw..].fill(0.0);
            let done = match wide {
                // SAFETY: the CPU has AVX-512F.
                #[cfg(target_arch = "x86_64")]
                true => unsafe { super::simd::unpool2_row_avx512(gy, arg, top, bottom) },
                _ => 0,
            };
            let (top, bottom) = (&mut top[2 * done..], &mut bottom[2 * done..]);
            let windows = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
            for (((t, b), &v), &a) in windows.zip(&gy[done..]).zip(&arg[done..]) {
                let pick = |j: u8| if a == j { v } else { 0.0 };
                (t[0], t[1], b[0], b[1]) = (pick(0), pick(1), pick(2), pick(3));
            }
        }
    }
}
