//! The inner loops of the [`Direct`] convolution written with AVX-512 and AVX2 intrinsics, so
//! that each register block's sums provably stay in vector registers (the compiler's own
//! vectorisation of the generic loops does not manage it). Each function checks once that its
//! slices are as long as the plan needs; the loops then read and write through raw pointers.
//!
//! The sums run in the same order as the generic loops in `direct`: over input channels, then
//! the nine taps, with one fused multiply-add each.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::direct::{Direct, QB};

/// Checks the slices of a `correlate` call against the plan: `cin` padded input planes, a
/// packed kernel of `cin x 9` taps per block of `ob` rows, and whole blocks of flat output.
fn check_correlate(
    d: &Direct,
    padded: &[f32],
    packed: &[f32],
    cin: usize,
    flat: &[f32],
    ob: usize,
) {
    let blocks = flat.len() / (ob * d.qlen);
    assert!(
        padded.len() >= cin * d.plen
            && d.taps_fit()
            && packed.len() >= blocks * cin * 9 * ob
            && flat.len() == blocks * ob * d.qlen
            && d.qlen.is_multiple_of(QB),
        "direct conv: buffers do not match the plan"
    );
}

/// `Direct::correlate` with 8 output rows x 32 positions of sums in 16 AVX-512 registers.
#[target_feature(enable = "avx512f,fma")]
pub(super) fn correlate_avx512(
    d: &Direct,
    padded: &[f32],
    packed: &[f32],
    cin: usize,
    flat: &mut [f32],
) {
    const OB: usize = 8;
    check_correlate(d, padded, packed, cin, flat, OB);
    let shifts = d.shifts();
    for b in 0..flat.len() / (OB * d.qlen) {
        for q0 in (0..d.qlen).step_by(QB) {
            let mut acc = [[_mm512_setzero_ps(); 2]; OB];
            for k in 0..cin {
                // SAFETY: `check_correlate`: tap `t` of channel `k` at `q0` reads below
                // `k * plen + tap + qlen <= cin * plen` floats of `padded` (`taps_fit`), and the
                // kernel's block `b`, channel `k` lies inside `packed`.
                unsafe {
                    let xk = padded.as_ptr().add(k * d.plen + q0);
                    let wk = packed.as_ptr().add(((b * cin + k) * 9) * OB);
                    for (t, &s) in shifts.iter().enumerate() {
                        let x0 = _mm512_loadu_ps(xk.add(s));
                        let x1 = _mm512_loadu_ps(xk.add(s + 16));
                        for (i, a) in acc.iter_mut().enumerate() {
                            let w = _mm512_set1_ps(*wk.add(t * OB + i));
                            a[0] = _mm512_fmadd_ps(w, x0, a[0]);
                            a[1] = _mm512_fmadd_ps(w, x1, a[1]);
                        }
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                let out = &mut flat[(b * OB + i) * d.qlen + q0..][..QB];
                // SAFETY: `out` holds 32 floats.
                unsafe {
                    _mm512_storeu_ps(out.as_mut_ptr(), a[0]);
                    _mm512_storeu_ps(out.as_mut_ptr().add(16), a[1]);
                }
            }
        }
    }
}

/// `Direct::correlate` with 4 output rows x 16 positions of sums in 8 AVX2 registers.
#[target_feature(enable = "avx2,fma")]
pub(super) fn correlate_avx2(
    d: &Direct,
    padded: &[f32],
    packed: &[f32],
    cin: usize,
    flat: &mut [f32],
) {
    const OB: usize = 4;
    check_correlate(d, padded, packed, cin, flat, OB);
    let shifts = d.shifts();
    for b in 0..flat.len() / (OB * d.qlen) {
        for q0 in (0..d.qlen).step_by(16) {
            let mut acc = [[_mm256_setzero_ps(); 2]; OB];
            for k in 0..cin {
                // SAFETY: as in `correlate_avx512`, with 16 positions per block.
                unsafe {
                    let xk = padded.as_ptr().add(k * d.plen + q0);
                    let wk = packed.as_ptr().add(((b * cin + k) * 9) * OB);
                    for (t, &s) in shifts.iter().enumerate() {
                        let x0 = _mm256_loadu_ps(xk.add(s));
                        let x1 = _mm256_loadu_ps(xk.add(s + 8));
                        for (i, a) in acc.iter_mut().enumerate() {
                            let w = _mm256_set1_ps(*wk.add(t * OB + i));
                            a[0] = _mm256_fmadd_ps(w, x0, a[0]);
                            a[1] = _mm256_fmadd_ps(w, x1, a[1]);
                        }
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                let out = &mut flat[(b * OB + i) * d.qlen + q0..][..16];
                // SAFETY: `out` holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(out.as_mut_ptr().add(8), a[1]);
                }
            }
        }
    }
}

/// `Direct::weight_grad` on AVX-512: blocks of 32 output channels x 9 taps (or 16 channels x 9
/// taps x 2 input channels) of sums in 18 registers, added to `gwt` once per block.
#[target_feature(enable = "avx512f,fma")]
pub(super) fn weight_grad_avx512(d: &Direct, gyt: &[f32], x: &[f32], op: usize, gwt: &mut [f32]) {
    let cin = x.len() / d.plen;
    assert!(
        op.is_multiple_of(16)
            && x.len() == cin * d.plen
            && d.taps_fit()
            && gyt.len() >= d.h * d.w * op
            && gwt.len() >= cin * 9 * op,
        "direct conv: weight gradient buffers do not match the plan"
    );
    let mut o0 = 0;
    while o0 + 32 <= op {
        for c in 0..cin {
            weight_grad_block::<2, 1>(d, gyt, x, (o0, c, op), gwt);
        }
        o0 += 32;
    }
    if o0 < op {
        let pairs = cin / 2 * 2;
        for c in (0..pairs).step_by(2) {
            weight_grad_block::<1, 2>(d, gyt, x, (o0, c, op), gwt);
        }
        if pairs < cin {
            weight_grad_block::<1, 1>(d, gyt, x, (o0, pairs, op), gwt);
        }
    }
}

/// `OV` vectors of output channels from `o0` x 9 taps x `CB` input channels from `c0`.
#[target_feature(enable = "avx512f,fma")]
fn weight_grad_block<const OV: usize, const CB: usize>(
    d: &Direct,
    gyt: &[f32],
    x: &[f32],
    (o0, c0, op): (usize, usize, usize),
    gwt: &mut [f32],
) {
    let shifts = d.shifts();
    let mut acc = [[[_mm512_setzero_ps(); OV]; 9]; CB];
    for y in 0..d.h {
        for xx in 0..d.w {
            let p = y * d.w + xx;
            // SAFETY: the checks in `weight_grad_avx512`: position `p < H*W` of `gyt` has `op`
            // lanes from `o0 + 16 * OV <= op`, and `y * wp + xx + shift < qlen + shift <= plen`
            // in each of the `cin` input planes (`taps_fit`).
            unsafe {
                let g: [__m512; OV] = std::array::from_fn(|v| {
                    _mm512_loadu_ps(gyt.as_ptr().add(p * op + o0 + 16 * v))
                });
                for (ci, ac) in acc.iter_mut().enumerate() {
                    let xc = x.as_ptr().add((c0 + ci) * d.plen + y * d.wp + xx);
                    for (at, &s) in ac.iter_mut().zip(&shifts) {
                        let xv = _mm512_set1_ps(*xc.add(s));
                        for (a, &g) in at.iter_mut().zip(&g) {
                            *a = _mm512_fmadd_ps(g, xv, *a);
                        }
                    }
                }
            }
        }
    }
    for (ci, ac) in acc.iter().enumerate() {
        for (t, at) in ac.iter().enumerate() {
            for (v, a) in at.iter().enumerate() {
                let out = &mut gwt[((c0 + ci) * 9 + t) * op + o0 + 16 * v..][..16];
                // SAFETY: `out` holds 16 floats.
                unsafe {
                    let sum = _mm512_add_ps(_mm512_loadu_ps(out.as_ptr()), *a);
                    _mm512_storeu_ps(out.as_mut_ptr(), sum);
                }
            }
        }
    }
}

/// `Direct::transpose_grad` on AVX-512: `gy` (`O x HW`) into `gyt` (`HW x lanes(O)`) in tiles
/// of 16 channels x 16 positions, each transposed in registers; lanes past `O` get zeros.
#[target_feature(enable = "avx512f")]
pub(super) fn transpose_avx512(gy: &[f32], (o, hw): (usize, usize), gyt: &mut [f32]) {
    let op = Direct::lanes(o);
    assert!(
        gy.len() >= o * hw && gyt.len() >= hw * op,
        "direct conv: transposed gradient buffers do not match the plan"
    );
    for o0 in (0..op).step_by(16) {
        for p0 in (0..hw).step_by(16) {
            let n = (hw - p0).min(16);
            let mask: __mmask16 = if n == 16 { !0 } else { (1 << n) - 1 };
            let rows: [__m512; 16] = std::array::from_fn(|i| {
                if o0 + i < o {
                    // SAFETY: the assert: channel `o0 + i < O` has `n` floats from `p0`.
                    unsafe { _mm512_maskz_loadu_ps(mask, gy.as_ptr().add((o0 + i) * hw + p0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            let cols = transpose16(rows);
            for (j, c) in cols.iter().enumerate().take(n) {
                // SAFETY: the assert: position `p0 + j < HW` has lanes `o0..o0 + 16 <= op`.
                unsafe { _mm512_storeu_ps(gyt.as_mut_ptr().add((p0 + j) * op + o0), *c) };
            }
        }
    }
}

/// The transpose of a 16 x 16 tile held as 16 rows: 32-bit, then 64-bit interleaves within
/// 128-bit lanes, then two rounds of lane shuffles.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved (columns 4L, 4L+1 and 4L+2, 4L+3 of lane L).
    let t: [__m512; 16] = std::array::from_fn(|k| {
        let (a, b) = (r[k & !1], r[k | 1]);
        if k % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4i+k], lane L: column 4L+k of rows 4i..4i+3.
    let u: [__m512; 16] = std::array::from_fn(|m| {
        let (i, k) = (m / 4, m % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * i + k / 2]),
            _mm512_castps_pd(t[4 * i + 2 + k / 2]),
        );
        _mm512_castpd_ps(if k % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    let mut out = [_mm512_setzero_ps(); 16];
    for k in 0..4 {
        let v1 = _mm512_shuffle_f32x4::<0x44>(u[k], u[4 + k]);
        let v2 = _mm512_shuffle_f32x4::<0xEE>(u[k], u[4 + k]);
        let w1 = _mm512_shuffle_f32x4::<0x44>(u[8 + k], u[12 + k]);
        let w2 = _mm512_shuffle_f32x4::<0xEE>(u[8 + k], u[12 + k]);
        out[k] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
        out[4 + k] = _mm512_shuffle_f32x4::<0xDD>(v1, w1);
        out[8 + k] = _mm512_shuffle_f32x4::<0x88>(v2, w2);
        out[12 + k] = _mm512_shuffle_f32x4::<0xDD>(v2, w2);
    }
    out
}

/// `Direct::weight_grad` on AVX2: the portable loops, compiled for AVX2 with their lanes
/// innermost.
#[target_feature(enable = "avx2,fma")]
pub(super) fn weight_grad_avx2(d: &Direct, gyt: &[f32], x: &[f32], op: usize, gwt: &mut [f32]) {
    d.weight_grad_portable(gyt, x, op, gwt)
}

/// One row pair of a 2x2 max-pool with argmax (PyTorch's first maximum, NaN propagating) and
/// an optional ReLU on the result, 16 windows at a time on AVX-512: `top` and `bottom` hold
/// `2 * out.len()` or more floats. Returns the windows done; the caller does the rest.
#[target_feature(enable = "avx512f")]
pub(super) fn pool2_row_avx512(
    top: &[f32],
    bottom: &[f32],
    out: &mut [f32],
    arg: &mut [u8],
    (relu, dead): (bool, u8),
) -> usize {
    let n = out.len().min(arg.len()) / 16 * 16;
    assert!(
        top.len() >= 2 * n && bottom.len() >= 2 * n,
        "pool2: rows shorter than the output"
    );
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    let zero = _mm512_setzero_ps();
    for j in (0..n).step_by(16) {
        // SAFETY: the assert: 32 floats from `2 * j` of each row, 16 outputs from `j`.
        unsafe {
            let (t_lo, t_hi) = (
                _mm512_loadu_ps(top.as_ptr().add(2 * j)),
                _mm512_loadu_ps(top.as_ptr().add(2 * j + 16)),
            );
            let (b_lo, b_hi) = (
                _mm512_loadu_ps(bottom.as_ptr().add(2 * j)),
                _mm512_loadu_ps(bottom.as_ptr().add(2 * j + 16)),
            );
            let mut m = _mm512_permutex2var_ps(t_lo, even, t_hi);
            let mut best = _mm512_setzero_si512();
            let rest = [
                (1, _mm512_permutex2var_ps(t_lo, odd, t_hi)),
                (2, _mm512_permutex2var_ps(b_lo, even, b_hi)),
                (3, _mm512_permutex2var_ps(b_lo, odd, b_hi)),
            ];
            for (k, v) in rest {
                // `beats`: greater, or NaN.
                let wins = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, m)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                m = _mm512_mask_mov_ps(m, wins, v);
                best = _mm512_mask_mov_epi32(best, wins, _mm512_set1_epi32(k));
            }
            if relu {
                let off = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(m, zero);
                m = _mm512_mask_mov_ps(m, off, zero);
                best = _mm512_mask_mov_epi32(best, off, _mm512_set1_epi32(i32::from(dead)));
            }
            _mm512_storeu_ps(out.as_mut_ptr().add(j), m);
            _mm_storeu_si128(arg.as_mut_ptr().add(j).cast(), _mm512_cvtepi32_epi8(best));
        }
    }
    n
}

/// The backward of [`pool2_row_avx512`]: each window's gradient `gy` to the position its
/// argmax names (zeros elsewhere, and nowhere for a dead window), 16 windows at a time into
/// `2 * n` floats of `top` and `bottom`. Returns the windows done.
#[target_feature(enable = "avx512f")]
pub(super) fn unpool2_row_avx512(
    gy: &[f32],
    arg: &[u8],
    top: &mut [f32],
    bottom: &mut [f32],
) -> usize {
    let n = gy.len().min(arg.len()) / 16 * 16;
    assert!(
        top.len() >= 2 * n && bottom.len() >= 2 * n,
        "unpool2: rows shorter than the output"
    );
    // Interleaving: lanes 0..16 of the result take even, odd, even, ... from the two inputs.
    let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    let hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for j in (0..n).step_by(16) {
        // SAFETY: the assert: 16 gradients and arguments from `j`, 32 floats from `2 * j`.
        unsafe {
            let g = _mm512_loadu_ps(gy.as_ptr().add(j));
            let a = _mm512_cvtepu8_epi32(_mm_loadu_si128(arg.as_ptr().add(j).cast()));
            let (p0, p1) = (pick(a, 0, g), pick(a, 1, g));
            let (p2, p3) = (pick(a, 2, g), pick(a, 3, g));
            let (t, b) = (top.as_mut_ptr().add(2 * j), bottom.as_mut_ptr().add(2 * j));
            _mm512_storeu_ps(t, _mm512_permutex2var_ps(p0, lo, p1));
            _mm512_storeu_ps(t.add(16), _mm512_permutex2var_ps(p0, hi, p1));
            _mm512_storeu_ps(b, _mm512_permutex2var_ps(p2, lo, p3));
            _mm512_storeu_ps(b.add(16), _mm512_permutex2var_ps(p2, hi, p3));
        }
    }
    n
}

/// `g` where `a` is `k`, else zero.
#[target_feature(enable = "avx512f")]
fn pick(a: __m512i, k: i32, g: __m512) -> __m512 {
    _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(k)), g)
}

/// Masks of the first `n` of 16 lanes.
fn first(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// `dst[j] = src[j * 2]`, 16 at a time; `src` holds at least `2 * dst.len() - 1` floats.
#[target_feature(enable = "avx512f")]
pub(super) fn gather2_avx512(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert!(
        n == 0 || src.len() > 2 * (n - 1),
        "gather2: source shorter than the row"
    );
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for j in (0..n).step_by(16) {
        let m = (n - j).min(16);
        // Source floats this block reads: 2 * m - 1 from `2 * j`.
        let need = 2 * m - 1;
        // SAFETY: the masks keep the loads within the `need` floats the assert covers, and
        // the store within `m` floats of `dst` from `j`.
        unsafe {
            let p = src.as_ptr().add(2 * j);
            let lo = _mm512_maskz_loadu_ps(first(need), p);
            let hi = _mm512_maskz_loadu_ps(first(need.saturating_sub(16)), p.wrapping_add(16));
            let v = _mm512_permutex2var_ps(lo, even, hi);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j), first(m), v);
        }
    }
}

/// `dst[j * 2] += src[j]`, 16 at a time; `dst` holds at least `2 * src.len() - 1` floats. The
/// odd positions are not touched.
#[target_feature(enable = "avx512f")]
pub(super) fn scatter_add2_avx512(dst: &mut [f32], src: &[f32]) {
    let n = src.len();
    assert!(
        n == 0 || dst.len() > 2 * (n - 1),
        "scatter_add2: target shorter than the row"
    );
    // Lane 2k of `lo` takes src lane k (k < 8), of `hi` src lane 8 + k.
    let lo_idx = _mm512_set_epi32(0, 7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0);
    let hi_idx = _mm512_set_epi32(0, 15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8);
    let evens: __mmask16 = 0x5555;
    for j in (0..n).step_by(16) {
        let m = (n - j).min(16);
        let need = 2 * m - 1;
        let (mlo, mhi) = (first(need), first(need.saturating_sub(16)));
        // SAFETY: as in `gather2_avx512`, with the roles of the slices swapped.
        unsafe {
            let s = _mm512_maskz_loadu_ps(first(m), src.as_ptr().add(j));
            let p = dst.as_mut_ptr().add(2 * j);
            let dlo = _mm512_maskz_loadu_ps(mlo, p);
            let dhi = _mm512_maskz_loadu_ps(mhi, p.wrapping_add(16));
            let slo = _mm512_permutexvar_ps(lo_idx, s);
            let shi = _mm512_permutexvar_ps(hi_idx, s);
            _mm512_mask_storeu_ps(p, mlo & evens, _mm512_add_ps(dlo, slo));
            _mm512_mask_storeu_ps(p.wrapping_add(16), mhi & evens, _mm512_add_ps(dhi, shi));
        }
    }
}
