//! In-place parameter updates for f32 parameters on the CPU: one parallel pass over parameter,
//! gradient and the optimizer's state, with no tensor allocated.
//!
//! An optimizer written with tensor arithmetic allocates a tensor per operation and parameter
//! (Adam: about ten). Here the state lives in host vectors, the parameter is updated in place
//! through candle's in-place custom op (so every tensor sharing the variable sees the new values,
//! as with `Var::set`), and the state becomes tensors only when it is saved.

use std::sync::Mutex;

use candle::{CpuStorage, DType, InplaceOp2, Layout, Shape, Tensor, Var};
use rayon::prelude::*;

use crate::{Error, Result};

/// Elements per parallel task; smaller parameters are updated on the calling thread.
const CHUNK: usize = 1 << 14;

/// Whether `var` takes the fused update: f32, contiguous, on the CPU.
pub(crate) fn on_host(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == DType::F32 && var.is_contiguous()
}

/// The update of one chunk: parameter, gradient, and the same range of each state buffer.
pub(crate) trait Update: Fn(&mut [f32], &[f32], &mut [&mut [f32]]) + Sync {}
impl<F: Fn(&mut [f32], &[f32], &mut [&mut [f32]]) + Sync> Update for F {}

struct InPlace<'a, F> {
    state: Mutex<Vec<&'a mut [f32]>>,
    update: F,
}

impl<F: Update> InplaceOp2 for InPlace<'_, F> {
    fn name(&self) -> &'static str {
        "lit-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            candle::bail!("the fused update needs f32 parameters and gradients")
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle::bail!("the fused update needs contiguous parameters and gradients")
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut state = self
            .state
            .lock()
            .map_err(|_| candle::Error::Msg("optimizer state lock poisoned".into()))?;
        if g.len() != p.len() || state.iter().any(|s| s.len() != p.len()) {
            candle::bail!(
                "parameter ({}), gradient ({}) and optimizer state ({:?}) differ in size",
                p.len(),
                g.len(),
                state.iter().map(|s| s.len()).collect::<Vec<_>>()
            )
        }
        if p.len() < 4 * CHUNK {
            (self.update)(p, g, &mut state);
            return Ok(());
        }
        // The same chunk of every state buffer, task by task.
        let mut chunked: Vec<_> = state.iter_mut().map(|s| s.chunks_mut(CHUNK)).collect();
        let tasks: Vec<Vec<&mut [f32]>> = (0..p.len().div_ceil(CHUNK))
            .map(|_| chunked.iter_mut().filter_map(|c| c.next()).collect())
            .collect();
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(tasks)
            .for_each(|((p, g), mut s)| (self.update)(p, g, &mut s));
        Ok(())
    }
}

/// Applies `update` in place to `var` (which must satisfy [`on_host`]), its gradient and the
/// `state` buffers, chunk by chunk in parallel; errors name the parameter.
pub(crate) fn apply(
    name: &str,
    var: &Var,
    grad: &Tensor,
    state: Vec<&mut [f32]>,
    update: impl Update,
) -> Result<()> {
    let op = InPlace {
        state: Mutex::new(state),
        update,
    };
    var.as_tensor()
        .inplace_op2(&grad.contiguous()?, &op)
        .map_err(|e| Error::Invalid(format!("optimizer step for {name}: {e}")))
}

/// A host state buffer as a tensor of `shape`, for saving. The optimizers size every buffer from
/// its parameter's shape, so the lengths always agree.
pub(crate) fn to_tensor(buf: &[f32], shape: &Shape) -> Tensor {
    Tensor::from_slice(buf, shape, &candle::Device::Cpu)
        .expect("a host state buffer has its parameter's length")
}

/// A saved state tensor as a host buffer for `var`, checked against its shape.
pub(crate) fn from_tensor(what: &str, name: &str, t: &Tensor, var: &Var) -> Result<Vec<f32>> {
    check_shape(what, name, t, var)?;
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Fails unless the saved state tensor `t` has `var`'s shape.
pub(crate) fn check_shape(what: &str, name: &str, t: &Tensor, var: &Var) -> Result<()> {
    if t.shape() == var.shape() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "optimizer state for {name}: {what} of shape {:?}, but the parameter has shape {:?}",
            t.dims(),
            var.dims()
        )))
    }
}
