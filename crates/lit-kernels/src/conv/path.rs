//! The two ways one image's convolution is computed, and the per-thread scratch each needs:
//! im2col + gemm for any shape, or the [`Direct`] loops for 3x3 kernels with padding 1 and
//! stride 1 or 2 when every thread has whole images to work on (with fewer images than threads,
//! the im2col path spreads each image's matrix products over the threads instead). A stride-2
//! convolution's input gradient (a transposed convolution) stays on the im2col path.

use super::direct::Direct;
use super::geom::Geom;
use std::mem::MaybeUninit;

use crate::{assume_written, copied, filled, gemm};

/// How one call of the op computes its convolutions.
pub(super) enum Path {
    Cols,
    /// The direct loops, with the kernel packed once per call: as it is for the forward pass,
    /// flipped and transposed for a stride-1 input gradient (empty for stride 2).
    Direct {
        plan: Direct,
        packed: Vec<f32>,
    },
}

impl Path {
    /// The path for `g`, given whether each image's products run on the pool (`inner`); with
    /// `transpose`, the kernel is packed for the input gradient.
    pub(super) fn choose(g: &Geom, w: &[f32], inner: bool, transpose: bool) -> Self {
        match Direct::plan(g.h, g.w, (g.kh, g.kw), g.stride, g.pad) {
            // For stride 2 the input gradient takes the im2col path: no transposed kernel.
            Some(plan) if !inner => Self::Direct {
                packed: if transpose && plan.stride != 1 {
                    Vec::new()
                } else {
                    plan.pack(w, g.o, g.c, transpose)
                },
                plan,
            },
            _ => Self::Cols,
        }
    }

    /// Zeroed scratch for one thread: the input's columns or padded planes, and (for the direct
    /// path) the flat output of `flat_channels` channels.
    pub(super) fn scratch(&self, g: &Geom, flat_channels: usize) -> (Vec<f32>, Vec<f32>) {
        match self {
            Self::Cols => (vec![0f32; g.ckk() * g.ohw()], Vec::new()),
            Self::Direct { plan, .. } => (
                vec![0f32; plan.padded_len(g.c)],
                vec![0f32; plan.flat_len(flat_channels)],
            ),
        }
    }

    /// `conv(x_n) + b` into `y` (`O x OH*OW`), through the scratch `(a, flat)` of
    /// [`Self::scratch`]; the im2col path's product on rayon's pool when `inner`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward<'a>(
        &self,
        g: &Geom,
        xn: &[f32],
        w: &[f32],
        b: &[f32],
        (a, flat): (&mut [f32], &mut [f32]),
        y: &'a mut [MaybeUninit<f32>],
        inner: bool,
    ) -> &'a mut [f32] {
        match self {
            Self::Cols => {
                let (ckk, ohw) = (g.ckk(), g.ohw());
                g.im2col(xn, a);
                assert_eq!(y.len(), g.o * ohw, "conv2d: output of the wrong size");
                for (o, row) in y.chunks_mut(ohw).enumerate() {
                    filled(row, b[o]);
                }
                // SAFETY: the assert: the rows above covered `y`.
                let y = unsafe { assume_written(y) };
                gemm(
                    g.o,
                    ohw,
                    ckk,
                    y,
                    true,
                    (w, ckk as isize, 1),
                    (a, ohw as isize, 1),
                    inner,
                );
                y
            }
            Self::Direct { plan, packed } => {
                plan.pad(xn, a);
                plan.correlate(a, packed, g.c, flat);
                plan.unflatten(flat, Some(b), y)
            }
        }
    }
}

/// One image's input gradient to write, and what to add to it (when anything).
pub(super) type InputGrad<'a> = (&'a mut [MaybeUninit<f32>], Option<&'a [f32]>);

/// Per-thread buffers and partial sums of the backward pass.
pub(super) struct Partial {
    /// The input's columns, or its padded planes.
    pub(super) a: Vec<f32>,
    /// The gradient of the convolution's output.
    pub(super) gy: Vec<f32>,
    /// The input gradient's columns, or its flat planes.
    pub(super) da: Vec<f32>,
    /// The direct path's output gradient: padded planes (for the input gradient) and
    /// position-major (for the weight gradient).
    gypad: Vec<f32>,
    gyt: Vec<f32>,
    /// The weight gradient: `O x C*KH*KW`, or tap-major (`C x 9 x lanes(O)`) on the direct path.
    gw: Vec<f32>,
    pub(super) gb: Vec<f32>,
}

impl Partial {
    /// Zeroed buffers for `g` on `path`; the input gradient's only when `dx`.
    pub(super) fn new(g: &Geom, path: &Path, dx: bool) -> Self {
        let some = |len: usize| if dx { len } else { 0 };
        let (a, da, gypad, gyt, gw) = match path {
            Path::Cols => (
                g.ckk() * g.ohw(),
                some(g.ckk() * g.ohw()),
                0,
                0,
                g.o * g.ckk(),
            ),
            Path::Direct { plan, .. } if plan.stride == 1 => (
                plan.padded_len(g.c),
                some(plan.flat_len(g.c)),
                some(plan.padded_len(g.o)),
                g.ohw() * Direct::lanes(g.o),
                g.c * 9 * Direct::lanes(g.o),
            ),
            Path::Direct { plan, .. } => (
                plan.padded_len(g.c),
                some(g.ckk() * g.ohw()),
                0,
                g.ohw() * Direct::lanes(g.o),
                g.c * 9 * Direct::lanes(g.o),
            ),
        };
        let zeros = |len| vec![0f32; len];
        Self {
            a: zeros(a),
            gy: zeros(g.o * g.ohw()),
            da: zeros(da),
            gypad: zeros(gypad),
            gyt: zeros(gyt),
            gw: zeros(gw),
            gb: zeros(g.o),
        }
    }

    /// Adds this thread's weight gradient to `gw` (`O x C x KH x KW`).
    pub(super) fn add_weight_grad(&self, g: &Geom, path: &Path, gw: &mut [f32]) {
        match path {
            Path::Cols => gw.iter_mut().zip(&self.gw).for_each(|(a, b)| *a += b),
            Path::Direct { .. } => Direct::untranspose_weight_grad(&self.gw, g.o, gw),
        }
    }

    /// Adds image `xn`'s share of the weight gradient, given its output gradient `gyn`, and
    /// writes every element of its input gradient `dxn` when asked (plus the addend with it,
    /// when given); `w` is the unpacked kernel.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn weight_and_input_grads(
        &mut self,
        g: &Geom,
        path: &Path,
        xn: &[f32],
        w: &[f32],
        gyn: &[f32],
        dxn: Option<InputGrad>,
        inner: bool,
    ) {
        match path {
            Path::Cols => {
                let (ckk, ohw) = (g.ckk(), g.ohw());
                g.im2col(xn, &mut self.a);
                gemm(
                    g.o,
                    ckk,
                    ohw,
                    &mut self.gw,
                    true,
                    (gyn, ohw as isize, 1),
                    (&self.a, 1, ohw as isize),
                    inner,
                );
                if let Some(dxn) = dxn {
                    cols_input_grad(g, w, gyn, &mut self.da, dxn, inner);
                }
            }
            Path::Direct { plan, packed } => {
                plan.pad(xn, &mut self.a);
                plan.transpose_grad(gyn, g.o, &mut self.gyt);
                plan.weight_grad(&self.gyt, &self.a, Direct::lanes(g.o), &mut self.gw);
                match dxn {
                    Some(dxn) if plan.stride != 1 => {
                        cols_input_grad(g, w, gyn, &mut self.da, dxn, inner)
                    }
                    Some((dxn, addend)) => {
                        plan.pad(gyn, &mut self.gypad);
                        plan.correlate(&self.gypad, packed, g.o, &mut self.da);
                        plan.unflatten_add(&self.da, addend, dxn);
                    }
                    None => {}
                }
            }
        }
    }
}

/// The input gradient through the columns: `da = w^T gy`, then col2im into `dxn`, which starts
/// from the addend (or zero).
fn cols_input_grad(
    g: &Geom,
    w: &[f32],
    gyn: &[f32],
    da: &mut [f32],
    (dxn, addend): InputGrad,
    inner: bool,
) {
    let (ckk, ohw) = (g.ckk(), g.ohw());
    gemm(
        ckk,
        ohw,
        g.o,
        da,
        false,
        (w, 1, ckk as isize),
        (gyn, ohw as isize, 1),
        inner,
    );
    let dxn = match addend {
        Some(a) => copied(dxn, a),
        None => filled(dxn, 0.0),
    };
    g.col2im(da, dxn);
}
