//! Data-parallel training for lit on existing engines: the [`Collective`] operations of
//! `lit_core::DataParallel` carried by MPI between processes and machines (feature `mpi`), and
//! by NCCL between GPUs (feature `nccl`, which also uses MPI to launch and bootstrap).
//!
//! A data-parallel run is one process per device, started by the engine's launcher (`mpirun -n
//! 2 ...`, or `srun` under Slurm). Each process builds its trainer with
//! `DataParallel::new(device, collective)`; the trainer then shards the data, averages gradients
//! with one all-reduce per step, merges epoch means and metric states, and lets rank 0 alone write
//! logs and checkpoints.
//!
//! ```no_run
//! # #[cfg(feature = "mpi")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (_mpi, collective) = lit_distributed::mpi::init()?; // keep `_mpi` alive for the run
//! let strategy = lit_core::DataParallel::new(candle::Device::Cpu, collective);
//! # let _ = strategy;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "mpi"))]
//! # fn main() {}
//! ```

pub use lit_base::Collective;

#[cfg(feature = "mpi")]
pub mod mpi;

#[cfg(feature = "nccl")]
pub mod nccl;

/// The rank and process count a launcher gave this process, from its environment (Open MPI's
/// `mpirun`; MPICH's and `srun --mpi=pmi2`'s PMI), before any engine is initialised; `None` when
/// no launcher started it.
pub fn launched() -> Option<(usize, usize)> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok()?.parse::<usize>().ok())
    };
    let size = var(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])?;
    let rank = var(&["OMPI_COMM_WORLD_RANK", "PMI_RANK"])?;
    Some((rank, size))
}

/// The processes a launcher put on this machine and this process's index among them (which GPU
/// it takes); `(0, 1)` outside a launcher.
pub use lit_core::threads::local_processes as local_rank;
