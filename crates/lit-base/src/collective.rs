//! [`Collective`]: the operations data-parallel processes perform together, whatever carries
//! them (MPI between processes and machines, NCCL between GPUs).

use candle::{DType, Device, Tensor};

use crate::Result;

/// Collective operations over the processes of a data-parallel run, one process per device.
///
/// Every process must call the same operations in the same order with buffers of the same
/// length (except `all_gather_bytes`); an engine aborts the run when a process dies, so no call
/// waits forever.
pub trait Collective: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn world_size(&self) -> usize;

    /// Sums `values` element-wise over every process, in place (gradients: one call per step).
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()>;

    /// Sums `values` element-wise over every process, in place (epoch sums, stop votes).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Every process's `bytes`, indexed by rank (metric states, the run directory's name).
    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// The element-wise sum of an f32 vector `t` over every process, on `t`'s device. By default
    /// through the host ([`Collective::all_reduce_sum_f32`]); an engine that reduces device
    /// memory directly (NCCL) overrides it.
    fn all_reduce_sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let mut host = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        self.all_reduce_sum_f32(&mut host)?;
        Ok(Tensor::from_vec(host, t.elem_count(), &Device::Cpu)?.to_device(t.device())?)
    }
}
