//! The [`Collective`] over MPI (the `mpi` crate on the system's MPI library, such as Open MPI).
//!
//! MPI's default error handler aborts the whole job when a call fails, and `mpirun` ends every
//! process when one dies, so a lost process never leaves the others waiting.

use std::sync::Arc;

use lit_base::{Collective, Error, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

/// Keeps MPI initialised; MPI is finalised when it is dropped, after the run.
pub struct MpiGuard {
    _universe: Universe,
}

impl std::fmt::Debug for MpiGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MpiGuard")
    }
}

/// Initialises MPI; returns the guard to keep for the run and the world's collective.
pub fn init() -> Result<(MpiGuard, Arc<dyn Collective>)> {
    let universe = mpi::initialize()
        .ok_or_else(|| Error::Invalid("MPI is already initialised in this process".into()))?;
    Ok((
        MpiGuard {
            _universe: universe,
        },
        Arc::new(MpiCollective),
    ))
}

/// Ends every process of the job with `code` (MPI_Abort): what a process that fails must do, as
/// the others would otherwise wait for it in their next collective.
pub fn abort(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

/// Collective operations over `MPI_COMM_WORLD`; the communicator is looked up for each call, so
/// the value is plain data that any thread may hold.
#[derive(Debug, Clone, Copy)]
pub struct MpiCollective;

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        world().rank() as usize
    }

    fn world_size(&self) -> usize {
        world().size() as usize
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        let send = values.to_vec();
        world().all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        world().all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let w = world();
        let size = w.size() as usize;
        let too_big = || {
            Error::Invalid(format!(
                "an all-gather of {} bytes per process is more than MPI's counts hold",
                bytes.len()
            ))
        };
        let mine = Count::try_from(bytes.len()).map_err(|_| too_big())?;
        let mut counts = vec![0 as Count; size];
        w.all_gather_into(&mine, &mut counts[..]);
        let mut displs = Vec::with_capacity(size);
        let mut at: Count = 0;
        for &c in &counts {
            displs.push(at);
            at = at.checked_add(c).ok_or_else(too_big)?;
        }
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut buf = vec![0u8; total];
        {
            let mut partition = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            w.all_gather_varcount_into(bytes, &mut partition);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| buf[d as usize..(d + c) as usize].to_vec())
            .collect())
    }
}
