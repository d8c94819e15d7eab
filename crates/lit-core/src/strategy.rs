//! [`Strategy`]: how training is spread over devices, the seam for data parallelism.
//!
//! [`SingleDevice`] runs everything in one process. [`DataParallel`] is Lightning's DDP: one
//! process per device, each with the same initial weights and its own share of every epoch's data,
//! gradients averaged with one all-reduce per optimizer step, epoch means and metric states
//! merged before they are logged, and logs and checkpoints written by rank 0 only. The processes
//! talk through a [`Collective`] (MPI or NCCL, in `lit-distributed`).

use lit_model::LoggedResults;
use std::sync::Arc;

use candle::{backprop::GradStore, DType, Device, Tensor, Var};
use lit_base::Collective;
use lit_data::{DataLoader, NamedLoader, Shard};
use lit_model::{RunningStage, StepContext};

use crate::Result;

/// How training is spread over devices.
///
/// The trainer asks the strategy for its device, shards the data by its rank, reduces gradients
/// through it between backward and the optimizer step, merges logged values through its
/// collective, and writes logs and checkpoints only where `is_global_zero` holds.
pub trait Strategy {
    /// The device this process computes on.
    fn device(&self) -> &Device;
    /// This process's rank.
    fn rank(&self) -> usize {
        0
    }
    /// The number of processes.
    fn world_size(&self) -> usize {
        1
    }
    /// Whether this process writes logs and checkpoints.
    fn is_global_zero(&self) -> bool {
        self.rank() == 0
    }
    /// The collective operations of a data-parallel run (none on one device).
    fn collective(&self) -> Option<Arc<dyn Collective>> {
        None
    }
    /// This process's share of the training data (Lightning's `process_dataloader`): all of it
    /// on one device.
    fn process_train_loader(&self, loader: DataLoader) -> Result<DataLoader> {
        Ok(loader)
    }
    /// This process's share of evaluation data: all of it on one device.
    fn process_eval_loaders(&self, loaders: Vec<NamedLoader>) -> Result<Vec<NamedLoader>> {
        Ok(loaders)
    }
    /// A logging context for a stage whose loaders are `names`, merging its epoch values over
    /// the processes of a data-parallel run.
    fn step_context(&self, stage: RunningStage, names: Vec<String>) -> StepContext {
        StepContext::new(stage, names)
    }
    /// Adds `values` over every process (Lightning's `reduce`); on one device they stay.
    fn all_reduce_sum(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    /// Whether any process decided so (Lightning's `reduce_boolean_decision` with `all=False`).
    fn reduce_any(&self, decision: bool) -> Result<bool> {
        let mut vote = [f64::from(u8::from(decision))];
        self.all_reduce_sum(&mut vote)?;
        Ok(vote[0] > 0.0)
    }
    /// Rank 0's `bytes`, on every process (Lightning's `broadcast`).
    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        Ok(bytes)
    }
    /// Averages the gradients of `params` across processes (nothing to do on one device).
    fn reduce_gradients(&self, _grads: &mut GradStore, _params: &[Var]) -> Result<()> {
        Ok(())
    }
    /// Makes every process's buffers (batch norm's running statistics) rank 0's, as DDP's
    /// `broadcast_buffers` does (nothing to do on one device); called after each optimizer step
    /// (DDP broadcasts before each forward pass, so with gradient accumulation a validation
    /// inside an accumulation window sees each process's own statistics).
    fn sync_buffers(&self, _buffers: &[Var]) -> Result<()> {
        Ok(())
    }
    /// A line on what the strategy did (data parallelism: its all-reduces and their time).
    fn summary(&self) -> Option<String> {
        None
    }
}

/// Everything on one device.
#[derive(Debug, Clone)]
pub struct SingleDevice {
    device: Device,
}

impl SingleDevice {
    /// A strategy on `device`.
    pub fn new(device: Device) -> Self {
        Self { device }
    }
}

impl Strategy for SingleDevice {
    fn device(&self) -> &Device {
        &self.device
    }
}

/// Data parallelism, as Lightning's DDP: this process computes on `device` and averages its
/// gradients with the other processes of `collective`.
pub struct DataParallel {
    device: Device,
    collective: Arc<dyn Collective>,
    /// Gradient all-reduces so far: count, seconds, bytes each.
    reduces: std::sync::Mutex<(u64, f64, usize)>,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataParallel")
            .field("device", &self.device)
            .field("rank", &self.collective.rank())
            .field("world_size", &self.collective.world_size())
            .finish()
    }
}

impl DataParallel {
    /// This process's shard of a loader: `pad`ded for training.
    fn shard(&self, pad: bool) -> Shard {
        Shard {
            rank: self.collective.rank(),
            world: self.collective.world_size(),
            pad,
        }
    }

    /// Process `collective.rank()` of a data-parallel run, computing on `device`.
    pub fn new(device: Device, collective: Arc<dyn Collective>) -> Self {
        Self {
            device,
            collective,
            reduces: std::sync::Mutex::new((0, 0.0, 0)),
        }
    }
}

impl Strategy for DataParallel {
    fn device(&self) -> &Device {
        &self.device
    }

    fn rank(&self) -> usize {
        self.collective.rank()
    }

    fn world_size(&self) -> usize {
        self.collective.world_size()
    }

    fn collective(&self) -> Option<Arc<dyn Collective>> {
        Some(Arc::clone(&self.collective))
    }

    /// A padded share, so every process takes as many steps.
    fn process_train_loader(&self, loader: DataLoader) -> Result<DataLoader> {
        loader.sharded(self.shard(true))
    }

    /// Disjoint, unpadded shares, so merged metrics cover every example exactly once.
    fn process_eval_loaders(&self, loaders: Vec<NamedLoader>) -> Result<Vec<NamedLoader>> {
        loaders
            .into_iter()
            .map(|l| {
                Ok(NamedLoader {
                    name: l.name,
                    loader: l.loader.sharded(self.shard(false))?,
                })
            })
            .collect()
    }

    fn step_context(&self, stage: RunningStage, names: Vec<String>) -> StepContext {
        StepContext::new(stage, names).with_collective(Some(Arc::clone(&self.collective)))
    }

    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        self.collective.all_reduce_sum_f64(values)
    }

    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let all = self.collective.all_gather_bytes(&bytes)?;
        Ok(all.into_iter().next().unwrap_or_default())
    }

    fn summary(&self) -> Option<String> {
        let (n, secs, bytes) = *self.reduces.lock().ok()?;
        if n == 0 {
            return None;
        }
        Some(format!(
            "data-parallel: {} process{}, {n} gradient all-reduces of {:.2} MB, {:.3} ms each",
            self.collective.world_size(),
            if self.collective.world_size() == 1 {
                ""
            } else {
                "es"
            },
            bytes as f64 / 1e6,
            if n > 0 { secs * 1e3 / n as f64 } else { 0.0 }
        ))
    }

    /// One all-reduce in which rank 0 alone adds its float buffers' values; the others take
    /// them (rank 0 keeps its own, whatever their type).
    fn sync_buffers(&self, buffers: &[Var]) -> Result<()> {
        // Float buffers only: counters (num_batches_tracked) advance alike everywhere.
        let floats: Vec<&Var> = buffers.iter().filter(|b| b.dtype().is_float()).collect();
        if self.collective.world_size() <= 1 || floats.is_empty() {
            return Ok(());
        }
        let rank0 = self.collective.rank() == 0;
        let mut flat = Vec::with_capacity(floats.len());
        for b in &floats {
            let t = b.as_tensor().to_dtype(DType::F32)?.flatten_all()?;
            flat.push(if rank0 { t } else { t.zeros_like()? });
        }
        // A broadcast as a sum to which only rank 0 contributes.
        let summed = self
            .collective
            .all_reduce_sum_tensor(&Tensor::cat(&flat, 0)?.to_device(&self.device)?)?;
        if rank0 {
            return Ok(());
        }
        let mut at = 0;
        for b in floats {
            let n = b.elem_count();
            let t = summed.narrow(0, at, n)?.reshape(b.shape())?;
            b.set(&t.to_dtype(b.dtype())?.to_device(b.device())?)?;
            at += n;
        }
        Ok(())
    }

    /// One all-reduce over a flat f32 buffer of every parameter's gradient, then the mean: the
    /// sum over processes divided by their number. A parameter without a gradient here adds
    /// zeros (so every process lays the buffer out alike), and one more element per parameter
    /// counts the processes that had a gradient for it: one that none had stays without one, so
    /// that optimizers leave it alone as they do on one device. The buffer stays on the device
    /// when the engine reduces device memory (NCCL); MPI goes through the host.
    fn reduce_gradients(&self, grads: &mut GradStore, params: &[Var]) -> Result<()> {
        let world = self.collective.world_size();
        if world <= 1 || params.is_empty() {
            return Ok(());
        }
        let mut flat = Vec::with_capacity(params.len() + 1);
        let mut present = Vec::with_capacity(params.len());
        for p in params {
            let g = match grads.get(p.as_tensor()) {
                Some(g) => {
                    present.push(1f32);
                    g.to_dtype(DType::F32)?.flatten_all()?
                }
                None => {
                    present.push(0f32);
                    Tensor::zeros(p.elem_count(), DType::F32, p.device())?
                }
            };
            flat.push(g);
        }
        flat.push(Tensor::from_vec(present, params.len(), &Device::Cpu)?.to_device(&self.device)?);
        let flat = Tensor::cat(&flat, 0)?;
        let started = std::time::Instant::now();
        let summed = self.collective.all_reduce_sum_tensor(&flat)?;
        if let Ok(mut r) = self.reduces.lock() {
            *r = (
                r.0 + 1,
                r.1 + started.elapsed().as_secs_f64(),
                flat.elem_count() * 4,
            );
        }
        let total: usize = params.iter().map(|p| p.elem_count()).sum();
        let counts = summed.narrow(0, total, params.len())?.to_vec1::<f32>()?;
        let all = summed
            .narrow(0, 0, total)?
            .affine(1.0 / world as f64, 0.0)?
            .to_device(&self.device)?;
        let mut at = 0;
        for (p, count) in params.iter().zip(counts) {
            let n = p.elem_count();
            if count > 0.0 {
                let g = all
                    .narrow(0, at, n)?
                    .reshape(p.shape())?
                    .to_dtype(p.dtype())?;
                grads.insert(p.as_tensor(), g);
            }
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lit_testutil::ThreadCollective;

    #[test]
    fn gradients_average_and_a_parameter_nobody_touched_keeps_no_gradient() {
        let handles: Vec<_> = ThreadCollective::group(2)
            .into_iter()
            .enumerate()
            .map(|(rank, c)| {
                std::thread::spawn(move || {
                    let dp = DataParallel::new(Device::Cpu, c);
                    let vars: Vec<Var> = (0..3)
                        .map(|_| Var::zeros(2, DType::F32, &Device::Cpu).unwrap())
                        .collect();
                    // Both processes have a gradient for vars[0], only rank 0 for vars[1], nobody
                    // for vars[2].
                    let r = rank as f32;
                    let w0 = Tensor::new(&[1.0 + r, 2.0 + r], &Device::Cpu).unwrap();
                    let mut loss = (vars[0].as_tensor() * w0).unwrap().sum_all().unwrap();
                    if rank == 0 {
                        let w1 = Tensor::new(&[4f32, 8.], &Device::Cpu).unwrap();
                        let l1 = (vars[1].as_tensor() * w1).unwrap().sum_all().unwrap();
                        loss = (loss + l1).unwrap();
                    }
                    let mut grads = loss.backward().unwrap();
                    dp.reduce_gradients(&mut grads, &vars).unwrap();
                    let g = |v: &Var| {
                        grads
                            .get(v.as_tensor())
                            .map(|g| g.to_vec1::<f32>().unwrap())
                    };
                    (g(&vars[0]), g(&vars[1]), g(&vars[2]), dp.summary())
                })
            })
            .collect();
        for h in handles {
            let (g0, g1, g2, summary) = h.join().unwrap();
            assert_eq!(
                g0,
                Some(vec![1.5, 2.5]),
                "the mean of both processes' gradients"
            );
            assert_eq!(
                g1,
                Some(vec![2.0, 4.0]),
                "rank 0's gradient over both processes"
            );
            assert_eq!(
                g2, None,
                "no process had one: the optimizer leaves it alone"
            );
            assert!(summary.unwrap().contains("1 gradient all-reduces"));
        }
    }

    #[test]
    fn buffers_become_rank_zeros_as_ddp_broadcasts_them() {
        let handles: Vec<_> = ThreadCollective::group(3)
            .into_iter()
            .enumerate()
            .map(|(rank, c)| {
                std::thread::spawn(move || {
                    let dp = DataParallel::new(Device::Cpu, c);
                    let r = rank as f32;
                    let mean = Var::new(&[r, 10.0 + r], &Device::Cpu).unwrap();
                    let var = Var::new(&[[1.0 + r]], &Device::Cpu).unwrap();
                    let tracked = Var::new(&[5i64 + rank as i64], &Device::Cpu).unwrap();
                    dp.sync_buffers(&[mean.clone(), var.clone(), tracked.clone()])
                        .unwrap();
                    (
                        mean.to_vec1::<f32>().unwrap(),
                        var.to_vec2::<f32>().unwrap(),
                        tracked.to_vec1::<i64>().unwrap(),
                    )
                })
            })
            .collect();
        for (rank, h) in handles.into_iter().enumerate() {
            let (mean, var, tracked) = h.join().unwrap();
            assert_eq!(mean, [0.0, 10.0], "rank {rank}");
            assert_eq!(var, [[1.0]], "rank {rank}");
            assert_eq!(tracked, [5 + rank as i64], "integer buffers are left alone");
        }
    }
}
