//! Direct 3x3 convolution with padding 1, stride 1 or 2, without im2col: each image's planes
//! are copied once into zero-bordered planes `W + 2` wide (stride 1) or split into four phase
//! planes (stride 2, see [`Direct`]), where every kernel tap is one constant shift of a flat
//! index, so the output (computed on a grid one or two columns wider, the extra columns dropped)
//! is a sum of shifted planes. Register-blocked loops over a few output channels and a run of
//! positions keep the sums in vector registers: AVX-512 or AVX2 with FMA when the CPU has them
//! (chosen at run time, the loops in `simd`), else the portable loops here.
//!
//! For stride 1 the same loop computes the input gradient (the output gradient correlated with
//! the flipped, transposed kernel, which for this padding has the same geometry); a second loop
//! computes the weight gradient, for either stride, as dot products of the output gradient with
//! the shifted input planes. Every sum runs in a fixed order, so the bits depend on the
//! machine's instruction set only.

use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
use super::simd;

/// The positions each register block covers, and the multiple a plane's flat output rounds to.
pub(super) const QB: usize = 32;

/// The instruction set the loops are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Plain,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            if fma && std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if fma && std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Plain
    }

    /// Output channels per register block of the forward loop.
    fn channels(self) -> usize {
        match self {
            Self::Avx512 => 8,
            _ => 4,
        }
    }
}

/// The shapes of one direct convolution: a 3x3 kernel with padding 1, stride 1 or 2.
///
/// With stride 1 each input channel is one zero-bordered plane `W + 2` wide. With stride 2 it is
/// four phase planes (even and odd rows of the padded input, times even and odd columns), each
/// `OW + 1` wide: tap `(ky, kx)` then reads phase `(ky % 2, kx % 2)` shifted by `(ky / 2, kx / 2)`,
/// so a stride-2 convolution is the same sum of shifted planes as a stride-1 one, with nine tap
/// offsets spread over the four phases.
#[derive(Debug, Clone, Copy)]
pub(super) struct Direct {
    isa: Isa,
    /// The output's height and width.
    pub(super) h: usize,
    pub(super) w: usize,
    /// The width of the grid the output is computed on: `W + 2`, or `OW + 1` for stride 2.
    pub(super) wp: usize,
    /// Flat output positions per plane: `H * wp` rounded up to [`QB`].
    pub(super) qlen: usize,
    /// Floats per input channel in the padded layout: the output run plus the furthest tap.
    pub(super) plen: usize,
    /// The offset of each tap `(ky, kx)` (row-major) in a channel's padded layout.
    taps: [usize; 9],
    /// 1 or 2.
    pub(super) stride: usize,
    /// The input's height and width.
    ih: usize,
    iw: usize,
}

impl Direct {
    /// The plan for `h x w` inputs and kernels that are 3x3 with padding 1 and stride 1 or 2, or
    /// `None` for other shapes.
    pub(super) fn plan(
        h: usize,
        w: usize,
        k: (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Option<Self> {
        if k != (3, 3) || pad != 1 || !(stride == 1 || stride == 2) || h == 0 || w == 0 {
            return None;
        }
        let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
        let wp = if stride == 1 { w + 2 } else { ow + 1 };
        let qlen = (oh * wp).div_ceil(QB) * QB;
        let (plen, taps) = if stride == 1 {
            let taps = std::array::from_fn(|t| (t / 3) * wp + t % 3);
            (qlen + 2 * wp + 2, taps)
        } else {
            // A phase plane holds `oh + 1` rows; every tap reads at most `wp + 1` past a
            // position of the run.
            let phase = qlen + wp + 1;
            let taps = std::array::from_fn(|t| {
                let (ky, kx) = (t / 3, t % 3);
                ((ky % 2) * 2 + kx % 2) * phase + (ky / 2) * wp + kx / 2
            });
            (4 * phase, taps)
        };
        Some(Self {
            isa: Isa::detect(),
            h: oh,
            w: ow,
            wp,
            qlen,
            plen,
            taps,
            stride,
            ih: h,
            iw: w,
        })
    }

    /// Whether every tap of every position of the run stays inside a channel's layout, which
    /// the vector loops rely on.
    pub(super) fn taps_fit(&self) -> bool {
        self.taps.iter().all(|&t| t + self.qlen <= self.plen)
    }

    /// Floats of a buffer of `channels` padded planes.
    pub(super) fn padded_len(&self, channels: usize) -> usize {
        channels * self.plen
    }

    /// Floats of a buffer of `channels` flat outputs, rounded up to whole register blocks.
    pub(super) fn flat_len(&self, channels: usize) -> usize {
        channels.div_ceil(self.isa.channels()) * self.isa.channels() * self.qlen
    }

    /// The offset of tap `(ky, kx)` in a channel's padded layout.
    pub(super) fn shifts(&self) -> [usize; 9] {
        self.taps
    }

    /// Copies `channels` planes of `x` (input-sized) into `padded`: into the interiors of the
    /// padded planes, or (stride 2) into the four phase planes. The rest is never written:
    /// `padded` must hold zeros there, as a buffer does that was created zeroed and only ever
    /// filled by this function with this plan.
    pub(super) fn pad(&self, x: &[f32], padded: &mut [f32]) {
        let planes = x
            .chunks_exact(self.ih * self.iw)
            .zip(padded.chunks_exact_mut(self.plen));
        if self.stride == 2 {
            planes.for_each(|(src, dst)| self.split_phases(src, dst));
            return;
        }
        for (src, dst) in planes {
            let rows = src
                .chunks_exact(self.w)
                .zip(dst[self.wp + 1..].chunks_mut(self.wp));
            for (s, d) in rows {
                d[..self.w].copy_from_slice(s);
            }
        }
    }

    /// One channel into its phase planes: phase `(p, q)` holds padded row `2a + p`, column
    /// `2b + q` at `(a, b)`, that is input row `2a + p - 1`, column `2b + q - 1`: the even
    /// columns of a row go to phase `(p, 1)` from `b = 0`, the odd ones to `(p, 0)` from `b = 1`.
    fn split_phases(&self, src: &[f32], dst: &mut [f32]) {
        let phase_len = self.plen / 4;
        let (wp, iw) = (self.wp, self.iw);
        let (evens, odds) = (iw.div_ceil(2), iw / 2);
        for (p, pair) in dst.chunks_exact_mut(2 * phase_len).enumerate() {
            let (q0, q1) = pair.split_at_mut(phase_len);
            for a in 0..=self.h {
                let Some(r) = (2 * a + p).checked_sub(1).filter(|&r| r < self.ih) else {
                    continue;
                };
                let row = &src[r * iw..(r + 1) * iw];
                let even = &mut q1[a * wp..][..evens];
                let odd = &mut q0[a * wp + 1..][..odds];
                deinterleave(row, even, odd);
            }
        }
    }

    /// Packs a kernel for [`Self::correlate`]: `weight` is `O x C x 3 x 3`; with `transpose`, the
    /// input gradient's kernel (`C x O`, each 3x3 flipped) is packed instead.
    pub(super) fn pack(&self, weight: &[f32], o: usize, c: usize, transpose: bool) -> Vec<f32> {
        let ob = self.isa.channels();
        let (rows, cols) = if transpose { (c, o) } else { (o, c) };
        let mut packed = vec![0f32; rows.div_ceil(ob) * ob * cols * 9];
        for r in 0..rows {
            for k in 0..cols {
                for t in 0..9 {
                    let v = if transpose {
                        weight[(k * c + r) * 9 + 8 - t]
                    } else {
                        weight[(r * c + k) * 9 + t]
                    };
                    // Layout: [row block][input channel][tap][row within the block].
                    packed[((r / ob * cols + k) * 9 + t) * ob + r % ob] = v;
                }
            }
        }
        packed
    }

    /// `flat[r][q] = sum over k, t of packed[r][k][t] * padded[k][q + shift t]` for every output
    /// row `r` (rounded up to a block) and flat position `q`.
    pub(super) fn correlate(&self, padded: &[f32], packed: &[f32], cin: usize, flat: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found AVX-512F and FMA on this CPU.
            Isa::Avx512 => unsafe { simd::correlate_avx512(self, padded, packed, cin, flat) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found AVX2 and FMA on this CPU.
            Isa::Avx2 => unsafe { simd::correlate_avx2(self, padded, packed, cin, flat) },
            _ => correlate_with::<4>(self, padded, packed, cin, flat),
        }
    }

    /// Adds `bias` (when given) to the valid positions of `flat` and writes them densely to `out`
    /// (`channels x H x W`).
    pub(super) fn unflatten<'a>(
        &self,
        flat: &[f32],
        bias: Option<&[f32]>,
        out: &'a mut [MaybeUninit<f32>],
    ) -> &'a mut [f32] {
        let hw = self.h * self.w;
        let planes = out.len() / hw;
        assert!(
            out.len() == planes * hw && flat.len() >= planes * self.qlen,
            "direct convolution: the output is not whole planes of the flat result"
        );
        unflatten_planes(flat, bias, [self.qlen, self.wp, self.w, hw], out);
        // SAFETY: the assert: each of the `planes` planes is written in full (every row of
        // `w` floats, `h` rows, from a flat plane of `qlen >= h * wp` floats).
        unsafe { crate::assume_written(out) }
    }

    /// [`Self::unflatten`] without a bias, adding `addend` (`channels x H x W`, when given) to
    /// each value as it is written.
    pub(super) fn unflatten_add<'a>(
        &self,
        flat: &[f32],
        addend: Option<&[f32]>,
        out: &'a mut [MaybeUninit<f32>],
    ) -> &'a mut [f32] {
        let Some(addend) = addend else {
            return self.unflatten(flat, None, out);
        };
        let hw = self.h * self.w;
        let planes = out.len() / hw;
        assert!(
            out.len() == planes * hw
                && addend.len() == out.len()
                && flat.len() >= planes * self.qlen,
            "direct convolution: the output or addend is not whole planes of the flat result"
        );
        unflatten_planes_add(flat, addend, [self.qlen, self.wp, self.w, hw], out);
        // SAFETY: the assert, as in `unflatten`.
        unsafe { crate::assume_written(out) }
    }

    /// Output channels rounded up to whole vectors: the lanes of a transposed gradient.
    pub(super) fn lanes(o: usize) -> usize {
        o.div_ceil(16) * 16
    }

    /// Writes `gy` (`O x H x W`) position-major into `gyt` (`H*W x lanes(O)`); the lanes past
    /// `O` are zero (written so, or never written by the portable loop, so they stay zero).
    pub(super) fn transpose_grad(&self, gy: &[f32], o: usize, gyt: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            // SAFETY: `detect` found AVX-512F on this CPU.
            return unsafe { simd::transpose_avx512(gy, (o, self.h * self.w), gyt) };
        }
        self.transpose_grad_portable(gy, o, gyt)
    }

    /// [`Self::transpose_grad`] one float at a time.
    fn transpose_grad_portable(&self, gy: &[f32], o: usize, gyt: &mut [f32]) {
        let (hw, op) = (self.h * self.w, Self::lanes(o));
        for (oi, plane) in gy.chunks_exact(hw).take(o).enumerate() {
            for (p, &v) in plane.iter().enumerate() {
                gyt[p * op + oi] = v;
            }
        }
    }

    /// `gwt[c][t][o] += sum over positions p of gyt[p][o] * x[c][p + shift t]`: the weight
    /// gradient, tap-major with the output channels as lanes (no horizontal sums), from the
    /// output gradient of [`Self::transpose_grad`] and the input padded by [`Self::pad`].
    pub(super) fn weight_grad(&self, gyt: &[f32], x_padded: &[f32], op: usize, gwt: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found AVX-512F and FMA on this CPU.
            Isa::Avx512 => unsafe { simd::weight_grad_avx512(self, gyt, x_padded, op, gwt) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found AVX2 and FMA on this CPU.
            Isa::Avx2 => unsafe { simd::weight_grad_avx2(self, gyt, x_padded, op, gwt) },
            _ => self.weight_grad_portable(gyt, x_padded, op, gwt),
        }
    }

    /// [`Self::weight_grad`] in plain loops, the lanes innermost.
    #[inline(always)]
    pub(super) fn weight_grad_portable(&self, gyt: &[f32], x: &[f32], op: usize, gwt: &mut [f32]) {
        let shifts = self.shifts();
        for (xc, gc) in x.chunks_exact(self.plen).zip(gwt.chunks_exact_mut(9 * op)) {
            for (&s, acc) in shifts.iter().zip(gc.chunks_exact_mut(op)) {
                for y in 0..self.h {
                    for xx in 0..self.w {
                        let v = xc[y * self.wp + xx + s];
                        let g = &gyt[(y * self.w + xx) * op..][..op];
                        for (a, &g) in acc.iter_mut().zip(g) {
                            *a += g * v;
                        }
                    }
                }
            }
        }
    }

    /// Adds a tap-major gradient `gwt` (`C x 9 x lanes(O)`) to `gw` (`O x C x 3 x 3`).
    pub(super) fn untranspose_weight_grad(gwt: &[f32], o: usize, gw: &mut [f32]) {
        let op = Self::lanes(o);
        let cin = gwt.len() / (9 * op);
        for (oi, go) in gw.chunks_exact_mut(cin * 9).enumerate() {
            for (ct, g) in go.iter_mut().enumerate() {
                *g += gwt[ct * op + oi];
            }
        }
    }
}

/// [`Direct::correlate`] with `OB` output rows per block: `OB x QB` sums in registers while the
/// loop runs over the input channels and taps.
#[inline(always)]
fn correlate_with<const OB: usize>(
    d: &Direct,
    padded: &[f32],
    packed: &[f32],
    cin: usize,
    flat: &mut [f32],
) {
    let shifts = d.shifts();
    let blocks = packed
        .chunks_exact(cin * 9 * OB)
        .zip(flat.chunks_exact_mut(OB * d.qlen));
    for (wblock, yblock) in blocks {
        for q0 in (0..d.qlen).step_by(QB) {
            let mut acc = [[0f32; QB]; OB];
            for (k, wk) in wblock.chunks_exact(9 * OB).enumerate() {
                let xk = &padded[k * d.plen + q0..];
                for (&s, wt) in shifts.iter().zip(wk.chunks_exact(OB)) {
                    let xs: &[f32; QB] = xs_at(xk, s);
                    for (a, &wv) in acc.iter_mut().zip(wt) {
                        for (a, &xv) in a.iter_mut().zip(xs) {
                            *a += wv * xv;
                        }
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                yblock[i * d.qlen + q0..][..QB].copy_from_slice(a);
            }
        }
    }
}

/// The `N` floats of `x` from `at`.
#[inline(always)]
fn xs_at<const N: usize>(x: &[f32], at: usize) -> &[f32; N] {
    x[at..at + N].try_into().expect("a slice of N floats")
}

wide! {
/// `even[b] = row[2b]`, `odd[b] = row[2b + 1]`.
fn deinterleave(row: &[f32], even: &mut [f32], odd: &mut [f32]) {
    let (ne, no) = (even.len().min(row.len().div_ceil(2)), odd.len().min(row.len() / 2));
    for b in 0..ne {
        even[b] = row[2 * b];
    }
    for b in 0..no {
        odd[b] = row[2 * b + 1];
    }
}
}

wide! {
/// The planes of [`Direct::unflatten`], with the bias of each.
fn unflatten_planes(
    flat: &[f32],
    bias: Option<&[f32]>,
    dims: [usize; 4],
    out: &mut [MaybeUninit<f32>],
) {
    let [qlen, wp, w, hw] = dims;
    for (o, (src, dst)) in flat.chunks_exact(qlen).zip(out.chunks_exact_mut(hw)).enumerate() {
        let b = bias.map_or(0.0, |b| b[o]);
        for (s, d) in src.chunks_exact(wp).zip(dst.chunks_exact_mut(w)) {
            for (d, s) in d.iter_mut().zip(s) {
                d.write(s + b);
            }
        }
    }
}
}

wide! {
/// The planes of [`Direct::unflatten_add`].
fn unflatten_planes_add(flat: &[f32], addend: &[f32], dims: [usize; 4], out: &mut [MaybeUninit<f32>]) {
    let [qlen, wp, w, hw] = dims;
    let planes = flat.chunks_exact(qlen).zip(out.chunks_exact_mut(hw).zip(addend.chunks_exact(hw)));
    for (src, (dst, add)) in planes {
        let rows = src.chunks_exact(wp).zip(dst.chunks_exact_mut(w).zip(add.chunks_exact(w)));
        for (s, (d, a)) in rows {
            for ((d, s), a) in d.iter_mut().zip(s).zip(a) {
                d.write(s + a);
            }
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::{Direct, Isa};

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// `y[o][p] = sum w[o][c][t] x[c][s * p + tap t]` (padding 1, stride `s`), zero outside, by
    /// direct loops.
    fn naive(
        x: &[f32],
        w: &[f32],
        (c, o, h, wd): (usize, usize, usize, usize),
        s: usize,
    ) -> Vec<f32> {
        let (oh, ow) = ((h - 1) / s + 1, (wd - 1) / s + 1);
        let mut y = vec![0f32; o * oh * ow];
        for oi in 0..o {
            for yy in 0..oh {
                for xx in 0..ow {
                    let mut sum = 0f32;
                    for ci in 0..c {
                        for t in 0..9 {
                            let (iy, ix) = (s * yy + t / 3, s * xx + t % 3);
                            if (1..=h).contains(&iy) && (1..=wd).contains(&ix) {
                                sum +=
                                    w[(oi * c + ci) * 9 + t] * x[(ci * h + iy - 1) * wd + ix - 1];
                            }
                        }
                    }
                    y[(oi * oh + yy) * ow + xx] = sum;
                }
            }
        }
        y
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn forward_and_both_gradients_match_direct_loops() {
        // Every instruction set this CPU runs, each with more than one block of output rows and
        // of gradient lanes.
        let best = Isa::detect();
        let isas = [Isa::Avx512, Isa::Avx2, Isa::Plain];
        for isa in isas.into_iter().skip_while(|&i| i != best) {
            for (c, o, h, wd) in [(3, 10, 5, 7), (20, 37, 4, 3)] {
                check(isa, (c, o, h, wd));
            }
            // Stride 2: even and odd sizes, a single row and column, more than one block.
            for (c, o, h, wd) in [(3, 10, 5, 7), (4, 9, 8, 6), (20, 37, 14, 14), (2, 3, 1, 2)] {
                check_stride2(isa, (c, o, h, wd));
            }
        }
    }

    #[test]
    fn transposed_gradient_matches_the_portable_loop() {
        for (o, h, wd) in [(1, 1, 1), (10, 5, 7), (37, 6, 9), (64, 7, 7), (16, 4, 4)] {
            let d = Direct::plan(h, wd, (3, 3), 1, 1).unwrap();
            let gy = data(o * h * wd, 4);
            let op = Direct::lanes(o);
            let (mut fast, mut plain) = (vec![0f32; h * wd * op], vec![0f32; h * wd * op]);
            d.transpose_grad(&gy, o, &mut fast);
            d.transpose_grad_portable(&gy, o, &mut plain);
            assert_eq!(fast, plain, "{o} channels, {h}x{wd}");
        }
    }

    fn check(isa: Isa, (c, o, h, wd): (usize, usize, usize, usize)) {
        let (x, w, gy) = (data(c * h * wd, 1), data(o * c * 9, 2), data(o * h * wd, 3));
        let d = Direct {
            isa,
            ..Direct::plan(h, wd, (3, 3), 1, 1).unwrap()
        };
        let mut xp = vec![0f32; d.padded_len(c)];
        d.pad(&x, &mut xp);
        let mut flat = vec![0f32; d.flat_len(o)];
        d.correlate(&xp, &d.pack(&w, o, c, false), c, &mut flat);
        let mut y = vec![0f32; o * h * wd];
        // SAFETY: `unflatten` writes only floats.
        d.unflatten(&flat, None, unsafe { crate::as_uninit(&mut y) });
        close(&y, &naive(&x, &w, (c, o, h, wd), 1), "forward");

        // The input gradient: the flipped kernel with input and output channels swapped.
        let mut wt = vec![0f32; w.len()];
        for oi in 0..o {
            for ci in 0..c {
                for t in 0..9 {
                    wt[(ci * o + oi) * 9 + t] = w[(oi * c + ci) * 9 + 8 - t];
                }
            }
        }
        let mut gp = vec![0f32; d.padded_len(o)];
        d.pad(&gy, &mut gp);
        let mut flat = vec![0f32; d.flat_len(c)];
        d.correlate(&gp, &d.pack(&w, o, c, true), o, &mut flat);
        let mut dx = vec![0f32; c * h * wd];
        // SAFETY: `unflatten` writes only floats.
        d.unflatten(&flat, None, unsafe { crate::as_uninit(&mut dx) });
        close(&dx, &naive(&gy, &wt, (o, c, h, wd), 1), "input gradient");

        // The weight gradient: sum over positions of gy[o] times the shifted input.
        let op = Direct::lanes(o);
        let mut gyt = vec![0f32; h * wd * op];
        d.transpose_grad(&gy, o, &mut gyt);
        let mut gwt = vec![0f32; c * 9 * op];
        d.weight_grad(&gyt, &xp, op, &mut gwt);
        let mut gw = vec![0f32; o * c * 9];
        Direct::untranspose_weight_grad(&gwt, o, &mut gw);
        let mut portable = vec![0f32; c * 9 * op];
        d.weight_grad_portable(&gyt, &xp, op, &mut portable);
        close(&gwt, &portable, "portable weight gradient");
        let mut want = vec![0f32; o * c * 9];
        for oi in 0..o {
            for ci in 0..c {
                for t in 0..9 {
                    for yy in 0..h {
                        for xx in 0..wd {
                            let (iy, ix) = (yy + t / 3, xx + t % 3);
                            if (1..=h).contains(&iy) && (1..=wd).contains(&ix) {
                                want[(oi * c + ci) * 9 + t] += gy[(oi * h + yy) * wd + xx]
                                    * x[(ci * h + iy - 1) * wd + ix - 1];
                            }
                        }
                    }
                }
            }
        }
        close(&gw, &want, "weight gradient");
    }

    /// Forward and weight gradient of a stride-2 plan against direct loops.
    fn check_stride2(isa: Isa, (c, o, h, wd): (usize, usize, usize, usize)) {
        let d = Direct {
            isa,
            ..Direct::plan(h, wd, (3, 3), 2, 1).unwrap()
        };
        let (oh, ow) = (d.h, d.w);
        let (x, w, gy) = (
            data(c * h * wd, 1),
            data(o * c * 9, 2),
            data(o * oh * ow, 3),
        );
        let mut xp = vec![0f32; d.padded_len(c)];
        d.pad(&x, &mut xp);
        let mut flat = vec![0f32; d.flat_len(o)];
        d.correlate(&xp, &d.pack(&w, o, c, false), c, &mut flat);
        let mut y = vec![0f32; o * oh * ow];
        // SAFETY: `unflatten` writes only floats.
        d.unflatten(&flat, None, unsafe { crate::as_uninit(&mut y) });
        let what = format!("stride 2, {isa:?}, {c}x{h}x{wd} -> {o}");
        close(
            &y,
            &naive(&x, &w, (c, o, h, wd), 2),
            &format!("{what}: forward"),
        );

        let op = Direct::lanes(o);
        let mut gyt = vec![0f32; oh * ow * op];
        d.transpose_grad(&gy, o, &mut gyt);
        let mut gwt = vec![0f32; c * 9 * op];
        d.weight_grad(&gyt, &xp, op, &mut gwt);
        let mut gw = vec![0f32; o * c * 9];
        Direct::untranspose_weight_grad(&gwt, o, &mut gw);
        let mut want = vec![0f32; o * c * 9];
        for oi in 0..o {
            for ci in 0..c {
                for t in 0..9 {
                    for yy in 0..oh {
                        for xx in 0..ow {
                            let (iy, ix) = (2 * yy + t / 3, 2 * xx + t % 3);
                            if (1..=h).contains(&iy) && (1..=wd).contains(&ix) {
                                want[(oi * c + ci) * 9 + t] += gy[(oi * oh + yy) * ow + xx]
                                    * x[(ci * h + iy - 1) * wd + ix - 1];
                            }
                        }
                    }
                }
            }
        }
        close(&gw, &want, &format!("{what}: weight gradient"));
    }
}
