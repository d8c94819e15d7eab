//! The geometry of a 2-d convolution: sizes, and the im2col / col2im transforms between an image
//! and the columns its kernel windows see.

/// Input, kernel and output sizes of one convolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> candle::Result<Self> {
        let (&[n, c, h, wd], &[o, c2, kh, kw]) = (x, w) else {
            candle::bail!("conv2d kernel: expected 4-d input and weight, got {x:?} and {w:?}")
        };
        if c != c2 {
            candle::bail!("conv2d kernel: input has {c} channels, weight expects {c2}")
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw || stride == 0 {
            candle::bail!(
                "conv2d kernel: kernel {kh}x{kw} does not fit input {h}x{wd} with padding {pad}"
            )
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride,
            pad,
            oh,
            ow,
        })
    }
    pub(super) fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub(super) fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    pub(super) fn chw(&self) -> usize {
        self.c * self.h * self.w
    }

    /// For each (channel, ky, kx, oy) with an in-bounds input row, calls `f(col_start, x_start,
    /// ox_lo, ox_hi)`: output columns `ox_lo..ox_hi` of that column row read input
    /// `x_start + ox * stride` (no per-element bounds test in the inner loops).
    #[inline]
    pub(super) fn rows(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (ohw, s, p) = (self.ohw(), self.stride, self.pad);
        for c in 0..self.c {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = ((c * self.kh + ky) * self.kw + kx) * ohw;
                    // ox in [lo, hi) keeps ix = ox * s + kx - p inside [0, w).
                    let lo = p.saturating_sub(kx).div_ceil(s);
                    let hi = if self.w + p > kx {
                        ((self.w + p - kx - 1) / s + 1).min(self.ow)
                    } else {
                        0
                    };
                    if lo >= hi {
                        continue;
                    }
                    for oy in 0..self.oh {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let x_start = c * self.h * self.w + iy as usize * self.w + kx;
                        f(row + oy * self.ow, x_start, lo, hi);
                    }
                }
            }
        }
    }

    /// Unfolds one image `x` (`C x H x W`) into `cols` (`C*KH*KW x OH*OW`). Positions that read
    /// the zero padding are not written: `cols` must hold zeros there, as a buffer does that was
    /// created zeroed and only ever filled by `im2col` with this geometry (the kernels' per-thread
    /// buffers), which saves clearing it for every image.
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (s, p) = (self.stride, self.pad);
        self.rows(|col, xs, lo, hi| {
            // Input index of output column ox: xs + ox * s - p.
            gather(&mut cols[col + lo..col + hi], &x[xs + lo * s - p..], s);
        });
    }

    pub(super) fn col2im(&self, cols: &[f32], dx: &mut [f32]) {
        let (s, p) = (self.stride, self.pad);
        self.rows(|col, xs, lo, hi| {
            scatter_add(&mut dx[xs + lo * s - p..], &cols[col + lo..col + hi], s);
        });
    }
}

wide! {
/// `dst[j] = src[j * s]`.
fn gather(dst: &mut [f32], src: &[f32], s: usize) {
    match s {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => gather2(dst, src),
        _ => dst.iter_mut().zip(src.iter().step_by(s)).for_each(|(d, v)| *d = *v),
    }
}
}

wide! {
/// `dst[j * s] += src[j]`.
fn scatter_add(dst: &mut [f32], src: &[f32], s: usize) {
    match s {
        1 => dst.iter_mut().zip(src).for_each(|(d, v)| *d += v),
        2 => scatter_add2(dst, src),
        _ => dst.iter_mut().step_by(s).zip(src).for_each(|(d, v)| *d += v),
    }
}
}

/// `dst[j] = src[2 * j]`, on AVX-512 where the CPU has it.
fn gather2(dst: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::wide::has_avx512() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { super::simd::gather2_avx512(dst, src) };
    }
    dst.iter_mut()
        .zip(src.chunks(2))
        .for_each(|(d, v)| *d = v[0]);
}

/// `dst[2 * j] += src[j]`, on AVX-512 where the CPU has it.
fn scatter_add2(dst: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::wide::has_avx512() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { super::simd::scatter_add2_avx512(dst, src) };
    }
    dst.chunks_mut(2).zip(src).for_each(|(d, v)| d[0] += v);
}
