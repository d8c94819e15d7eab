//! The [`Collective`] over NCCL for processes on GPUs (feature `nccl`): gradients are summed in
//! device memory, GPU to GPU; the few host-side exchanges (metric states, stop votes, the run
//! directory's name) and NCCL's own start-up go through MPI, which also launches the processes.
//!
//! NCCL's communicator cannot move between threads, so it lives in the thread that made it (the
//! training loop's); the collective refuses to work from another one.

use std::cell::RefCell;
use std::sync::Arc;

use candle::backend::BackendStorage;
use candle::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle::{CpuStorage, CudaStorage, CustomOp1, Device, Layout, Shape, Tensor};
use lit_base::{Collective, Error, Result};

use crate::mpi::{MpiCollective, MpiGuard};

thread_local! {
    static COMM: RefCell<Option<Comm>> = const { RefCell::new(None) };
}

/// Initialises MPI and, over it, an NCCL communicator on `device` (this process's GPU); returns
/// the guard to keep for the run and the collective.
pub fn init(device: &Device) -> Result<(MpiGuard, Arc<dyn Collective>)> {
    let Device::Cuda(gpu) = device else {
        return Err(Error::Invalid(format!(
            "NCCL needs a CUDA device, got {device:?}; use MPI on the CPU"
        )));
    };
    let (guard, _) = crate::mpi::init()?;
    let mpi = MpiCollective;
    // Rank 0 makes NCCL's id; every process learns it through MPI.
    let mine: Vec<u8> = if mpi.rank() == 0 {
        let id = Id::new().map_err(|e| Error::Invalid(format!("NCCL id: {e:?}")))?;
        id.internal().iter().map(|&c| c as u8).collect()
    } else {
        Vec::new()
    };
    let all = mpi.all_gather_bytes(&mine)?;
    let bytes = all
        .first()
        .filter(|b| b.len() == 128)
        .ok_or_else(|| Error::Invalid("NCCL id: rank 0 sent no 128-byte id".into()))?;
    let mut internal = [0 as std::ffi::c_char; 128];
    for (d, s) in internal.iter_mut().zip(bytes) {
        *d = *s as std::ffi::c_char;
    }
    let comm = Comm::from_rank(
        gpu.cuda_stream(),
        mpi.rank(),
        mpi.world_size(),
        Id::uninit(internal),
    )
    .map_err(|e| Error::Invalid(format!("NCCL communicator: {e:?}")))?;
    COMM.with(|c| *c.borrow_mut() = Some(comm));
    Ok((guard, Arc::new(NcclCollective { mpi })))
}

/// Sums on GPUs through NCCL; host-side operations through MPI.
#[derive(Debug, Clone, Copy)]
pub struct NcclCollective {
    mpi: MpiCollective,
}

/// NCCL's sum of an f32 CUDA tensor over every process, as a candle op (no gradient).
struct AllReduce;

impl CustomOp1 for AllReduce {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        candle::bail!("the NCCL all-reduce needs a CUDA tensor")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle::Result<(CudaStorage, Shape)> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle::Error::Msg("the NCCL all-reduce needs a contiguous tensor".into())
        })?;
        let src = s.as_cuda_slice::<f32>()?.slice(start..end);
        let dev = s.device().clone();
        let mut dst = dev.alloc_zeros::<f32>(end - start)?;
        COMM.with(|c| {
            let c = c.borrow();
            let comm = c.as_ref().ok_or_else(|| {
                candle::Error::Msg(
                    "no NCCL communicator on this thread (the one that called init)".into(),
                )
            })?;
            comm.all_reduce(&src, &mut dst, &ReduceOp::Sum)
                .map(|_| ())
                .map_err(|e| candle::Error::Msg(format!("NCCL all-reduce: {e:?}")))
        })?;
        Ok((CudaStorage::wrap_cuda_slice(dst, dev), l.shape().clone()))
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.mpi.all_reduce_sum_f32(values)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.mpi.all_reduce_sum_f64(values)
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.mpi.all_gather_bytes(bytes)
    }

    fn all_reduce_sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        if !t.device().is_cuda() {
            let mut host = t
                .flatten_all()?
                .to_dtype(candle::DType::F32)?
                .to_vec1::<f32>()?;
            self.mpi.all_reduce_sum_f32(&mut host)?;
            return Ok(Tensor::from_vec(host, t.elem_count(), t.device())?);
        }
        Ok(t.flatten_all()?
            .contiguous()?
            .apply_op1_no_bwd(&AllReduce)?)
    }
}
