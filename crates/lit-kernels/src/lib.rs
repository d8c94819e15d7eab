//! Fast CPU kernels as candle custom ops, so autograd still works through them.
//!
//! candle's CPU convolution backward sums the bias gradient with a strided reduction, computes the
//! input gradient with loops rather than a matrix product (also for the input image, which nothing
//! uses), and max-pool backward goes through several generic ops. These kernels do the same maths
//! with im2col and the `gemm` crate candle itself uses, parallel over the batch, skipping gradients
//! nobody needs, and fuse what follows a layer (bias, ReLU, pooling) into it so that autograd
//! stores, sums and frees fewer tensors. They run for contiguous f32 tensors on the CPU; the
//! layers in [`nn`] fall back to candle's own ops on other devices and dtypes.
//!
//! This is the only lit crate with `unsafe` code (the calls into `gemm`; the AVX-512 and AVX2
//! loops of the direct convolution, the 2x2 pool and batch norm's backward sums; the calls into
//! the AVX-512 copies of element-wise loops that `wide!` makes; glibc's `mallopt` in [`alloc`]),
//! and the only one built with full optimisation in the dev profile. [`init`] draws initial weights from lit's seeded
//! generator, as PyTorch initialises them.

#[macro_use]
mod wide;

pub mod alloc;
mod block;
mod bn_simd;
mod conv;
mod conv_bn;
pub mod init;
mod linear;
pub mod nn;
mod norm;
mod pool;
mod xent;

use std::mem::MaybeUninit;

use candle::{CpuStorage, Layout};

pub use block::{residual_block, BlockConv};
pub use conv::{conv2d, conv2d_pool};
pub use conv_bn::conv2d_batch_norm;
pub use linear::linear;
pub use norm::{batch_norm, channel_stats, ChannelStats};
pub use pool::max_pool2d;
pub use xent::cross_entropy;

/// Whether a max-pool window's candidate `v` replaces the maximum `m` so far, as in PyTorch: when
/// greater, or when NaN (so NaN propagates, and ties keep the first position).
#[inline]
fn beats(v: f32, m: f32) -> bool {
    v > m || v.is_nan()
}

/// PyTorch's ReLU: negative values become 0, NaN stays NaN (`f32::max(NaN, 0.0)` is 0, which
/// would hide a diverged run behind a plausible loss).
#[inline]
fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// `dst (m x n) (+)= a (m x k) * b (k x n)`, with each operand given by its row and column
/// strides; on the calling thread when `parallel` is false, else on rayon's current pool.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    parallel: bool,
) {
    let extent = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows.saturating_sub(1)) * rs.unsigned_abs() + (cols.saturating_sub(1)) * cs.unsigned_abs()
    };
    assert!(dst.len() >= m * n, "gemm: destination too small");
    assert!(
        a.1 >= 0 && a.2 >= 0 && b.1 >= 0 && b.2 >= 0,
        "gemm: negative strides are not supported"
    );
    assert!(
        m * k == 0 || extent(m, k, a.1, a.2) < a.0.len(),
        "gemm: left operand too small"
    );
    assert!(
        k * n == 0 || extent(k, n, b.1, b.2) < b.0.len(),
        "gemm: right operand too small"
    );
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the strides are not negative and the asserts above keep the furthest element
    // they reach inside each slice, so every element read lies in its slice; `dst` (row-major,
    // n columns) holds m x n elements and is a unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.0.as_ptr(),
            a.2,
            a.1,
            b.0.as_ptr(),
            b.2,
            b.1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The sum of `f(v)` over `xs`, in 16 independent lanes that the compiler vectorises.
#[inline(always)]
fn lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A vector of `len` floats that `fill` writes without a zeroing pass first (a large share of a
/// step's time otherwise). `fill` must write every element of the slice it is given: each
/// caller's loops assert that their inputs are at least as long as their outputs.
fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` initialised all `len` elements, as above.
    unsafe { v.set_len(len) };
    v
}

/// `out` after writing `v` to every element, as initialised floats.
fn filled(out: &mut [MaybeUninit<f32>], v: f32) -> &mut [f32] {
    out.iter_mut().for_each(|o| {
        o.write(v);
    });
    // SAFETY: every element was just written, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { assume_written(out) }
}

/// `out` after copying `src` (of the same length) into it, as initialised floats.
fn copied<'a>(out: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    assert_eq!(
        out.len(),
        src.len(),
        "copy between slices of different lengths"
    );
    out.iter_mut().zip(src).for_each(|(o, &s)| {
        o.write(s);
    });
    // SAFETY: the assert: every element was just written.
    unsafe { assume_written(out) }
}

/// `out` as initialised floats.
///
/// # Safety
/// Every element of `out` has been written.
unsafe fn assume_written(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller's promise, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Initialised floats seen as a buffer to write.
///
/// # Safety
/// Only initialised floats may be written through the view (never `MaybeUninit::uninit()`).
unsafe fn as_uninit(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the caller writes only initialised floats.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// The f32 data of a contiguous CPU tensor's storage, without copying.
fn cpu_f32<'a>(
    s: &'a candle::Storage,
    l: &Layout,
    op: &str,
    what: &str,
) -> candle::Result<&'a [f32]> {
    match s {
        candle::Storage::Cpu(c) => slice(c, l, op, what),
        _ => candle::bail!("{op} kernel: {what} must be on the CPU"),
    }
}

/// The f32 data of contiguous CPU storage, without copying.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str, what: &str) -> candle::Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle::Error::Msg(format!("{op} kernel: {what} must be contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle::bail!("{op} kernel: {what} must be f32"),
    }
}
