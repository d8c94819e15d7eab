//! [`ThreadCollective`]: the processes of a data-parallel run played by threads of one test, so
//! the merging logic is tested without an MPI installation.

use std::sync::{Arc, Barrier, Mutex};

use lit_base::{Collective, Result};

struct Group {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

/// One "process" of a group of threads that exchange data as MPI processes do: every member must
/// call the same operations in the same order, each from its own thread.
pub struct ThreadCollective {
    rank: usize,
    size: usize,
    group: Arc<Group>,
}

impl ThreadCollective {
    /// A group of `size` members, rank 0 first; hand one to each thread.
    pub fn group(size: usize) -> Vec<Arc<dyn Collective>> {
        let group = Arc::new(Group {
            barrier: Barrier::new(size),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| {
                Arc::new(ThreadCollective {
                    rank,
                    size,
                    group: Arc::clone(&group),
                }) as Arc<dyn Collective>
            })
            .collect()
    }
}

impl Collective for ThreadCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.all_gather_bytes(&bytes)?;
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|b| f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap_or([0; 4])))
                .sum();
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.all_gather_bytes(&bytes)?;
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|b| f64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8])))
                .sum();
        }
        Ok(())
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let g = &self.group;
        g.slots.lock().map_err(|_| poisoned())?[self.rank] = bytes.to_vec();
        g.barrier.wait();
        let all = g.slots.lock().map_err(|_| poisoned())?.clone();
        // Nobody writes the next exchange before everyone has read this one.
        g.barrier.wait();
        Ok(all)
    }
}

fn poisoned() -> lit_base::Error {
    lit_base::Error::Invalid("a thread of the test group panicked".into())
}
