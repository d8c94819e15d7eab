//! [`DataLoader`]: batching, seeded shuffling and prefetching worker threads.

use std::sync::{mpsc, Arc};
use std::thread;

use crate::{Batch, Dataset, Error, Generator, Result, DEFAULT_NUM_WORKERS, DEFAULT_SEED};

/// How a [`DataLoader`] batches its dataset. The defaults are torch's `DataLoader`'s, except the
/// worker threads and the seed, which are the run's ([`DEFAULT_NUM_WORKERS`], [`DEFAULT_SEED`]).
#[derive(Debug, Clone)]
pub struct DataLoaderConfig {
    /// Examples per batch (at least 1).
    pub batch_size: usize,
    /// Whether each epoch visits the examples in a new random order.
    pub shuffle: bool,
    /// Whether a last batch smaller than `batch_size` is dropped.
    pub drop_last: bool,
    /// Worker threads that prepare batches ahead of the model; 0 prepares them on the caller's
    /// thread when asked for.
    pub num_workers: usize,
    /// Batches each worker keeps ready ahead of the consumer.
    pub prefetch_factor: usize,
    /// The seed of the shuffling order; epoch `e` uses the stream `("shuffle", e)` of this seed.
    pub seed: u64,
    /// In a data-parallel run, this process's share of every epoch's order.
    pub shard: Option<Shard>,
}

/// One process's share of the data in a data-parallel run, as PyTorch's `DistributedSampler`:
/// of the epoch's order (the same on every process: seed and epoch decide it), rank `r` of `w`
/// takes positions `r, r + w, r + 2w, ...`. With `pad`, the order is first extended by its own
/// beginning to a multiple of `w`, so every process has as many batches (training steps in
/// lockstep); without, the shares are disjoint and cover the data exactly once (evaluation, whose
/// metrics are merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
    /// Whether the order is padded to a multiple of `world`.
    pub pad: bool,
}

impl Default for DataLoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 1,
            shuffle: false,
            drop_last: false,
            num_workers: DEFAULT_NUM_WORKERS,
            prefetch_factor: 2,
            seed: DEFAULT_SEED,
            shard: None,
        }
    }
}

/// Iterates over a dataset in batches, as PyTorch's `DataLoader`.
///
/// The order of epoch `e` depends only on the seed and `e`, so a run that resumes at epoch `e`,
/// batch `b` sees exactly the batches it would have seen, and worker threads never change the order.
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    config: DataLoaderConfig,
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("len", &self.dataset.len())
            .field("config", &self.config)
            .finish()
    }
}

impl DataLoader {
    /// A loader over `dataset`; fails when `batch_size` is 0.
    pub fn new(dataset: Arc<dyn Dataset>, config: DataLoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::Invalid(
                "batch_size must be at least 1, got 0".into(),
            ));
        }
        if let Some(s) = config.shard {
            if s.world == 0 || s.rank >= s.world {
                return Err(Error::Invalid(format!(
                    "shard: rank {} of {} processes; expected a rank below the process count",
                    s.rank, s.world
                )));
            }
        }
        Ok(Self { dataset, config })
    }

    /// The same loader over this process's share of the data (see [`Shard`]).
    pub fn sharded(&self, shard: Shard) -> Result<Self> {
        let config = DataLoaderConfig {
            shard: Some(shard),
            ..self.config.clone()
        };
        Self::new(Arc::clone(&self.dataset), config)
    }

    /// The examples one epoch visits: the dataset, or this process's share of it.
    fn epoch_samples(&self) -> usize {
        let n = self.dataset.len();
        match self.config.shard {
            None => n,
            Some(s) if s.pad => n.div_ceil(s.world),
            Some(s) => (n + s.world - 1 - s.rank) / s.world,
        }
    }

    /// The number of batches in one epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.epoch_samples(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Whether an epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of examples in the dataset.
    pub fn num_samples(&self) -> usize {
        self.dataset.len()
    }

    /// The loader's configuration.
    pub fn config(&self) -> &DataLoaderConfig {
        &self.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// The example order of `epoch` (this process's share of it in a data-parallel run).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.dataset.len();
        let mut order: Vec<usize> = if self.config.shuffle {
            Generator::stream(self.config.seed, "shuffle", epoch).permutation(n)
        } else {
            (0..n).collect()
        };
        let Some(s) = self.config.shard else {
            return order;
        };
        if s.pad && n > 0 {
            let total = n.div_ceil(s.world) * s.world;
            for i in 0..total - n {
                order.push(order[i % n]);
            }
        }
        order.into_iter().skip(s.rank).step_by(s.world).collect()
    }

    /// The batches of `epoch`.
    pub fn iter(&self, epoch: u64) -> BatchIter {
        self.iter_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `start` on (for resuming mid-epoch).
    pub fn iter_from(&self, epoch: u64, start: usize) -> BatchIter {
        let order = Arc::new(self.order(epoch));
        let (end, b) = (self.len(), self.config.batch_size);
        let start = start.min(end);
        let workers = self.config.num_workers.min(end - start);
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel(self.config.prefetch_factor.max(1));
            let (dataset, order) = (Arc::clone(&self.dataset), Arc::clone(&order));
            thread::spawn(move || {
                for i in (start + w..end).step_by(workers) {
                    let batch = dataset.get_batch_at(batch_indices(&order, i, b), epoch);
                    if tx.send(batch).is_err() {
                        return; // The consumer stopped early.
                    }
                }
            });
            receivers.push(rx);
        }
        BatchIter {
            epoch,
            dataset: Arc::clone(&self.dataset),
            order,
            batch_size: b,
            start,
            next: start,
            end,
            receivers,
        }
    }
}

fn batch_indices(order: &[usize], i: usize, b: usize) -> &[usize] {
    &order[i * b..((i + 1) * b).min(order.len())]
}

/// The batches of one epoch, in order; produced by worker threads when the loader has any.
pub struct BatchIter {
    epoch: u64,
    dataset: Arc<dyn Dataset>,
    order: Arc<Vec<usize>>,
    batch_size: usize,
    start: usize,
    next: usize,
    end: usize,
    receivers: Vec<mpsc::Receiver<Result<Batch>>>,
}

impl BatchIter {
    /// The index of the next batch within the epoch.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(
                self.dataset
                    .get_batch_at(batch_indices(&self.order, i, self.batch_size), self.epoch),
            );
        }
        // Worker w prepares batches start + w, start + w + n, ...
        let rx = &self.receivers[(i - self.start) % self.receivers.len()];
        Some(rx.recv().unwrap_or_else(|_| {
            Err(Error::Invalid(format!(
                "data loader worker for batch {i} stopped unexpectedly"
            )))
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use candle::{Device, Tensor};

    use super::*;
    use crate::TensorDataset;

    fn loader(n: usize, cfg: DataLoaderConfig) -> DataLoader {
        let x = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
        DataLoader::new(Arc::new(TensorDataset::new(x.clone(), x).unwrap()), cfg).unwrap()
    }

    fn targets(l: &DataLoader, epoch: u64, start: usize) -> Vec<Vec<u32>> {
        l.iter_from(epoch, start)
            .map(|b| b.unwrap().target.to_vec1::<u32>().unwrap())
            .collect()
    }

    #[test]
    fn drop_last_and_lengths() {
        let cfg = DataLoaderConfig {
            batch_size: 4,
            drop_last: true,
            ..Default::default()
        };
        let l = loader(10, cfg);
        assert_eq!(l.len(), 2);
        assert_eq!(targets(&l, 0, 0), [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    }

    #[test]
    fn shards_split_an_epoch_as_distributed_sampler_does() {
        let ds: Arc<dyn Dataset> = Arc::new(
            TensorDataset::new(
                Tensor::arange(0f32, 10., &Device::Cpu)
                    .unwrap()
                    .reshape((10, 1))
                    .unwrap(),
                Tensor::arange(0u32, 10, &Device::Cpu).unwrap(),
            )
            .unwrap(),
        );
        let config = DataLoaderConfig {
            batch_size: 2,
            shuffle: true,
            seed: 3,
            ..Default::default()
        };
        let whole = DataLoader::new(Arc::clone(&ds), config.clone()).unwrap();
        let order = whole.order(1);
        let shard = |rank, world, pad| whole.sharded(Shard { rank, world, pad }).unwrap().order(1);
        // Exact shares: disjoint, covering the epoch once, strided over the same order.
        let (a, b, c) = (shard(0, 3, false), shard(1, 3, false), shard(2, 3, false));
        assert_eq!(a, [order[0], order[3], order[6], order[9]]);
        assert_eq!((b.len(), c.len()), (3, 3));
        let mut all: Vec<usize> = [a, b, c].concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // Padded shares: as long as each other (10 -> 12, the first two again).
        let (p0, p2) = (shard(0, 3, true), shard(2, 3, true));
        assert_eq!((p0.len(), p2.len()), (4, 4));
        assert_eq!(p2[3], order[1], "padding repeats the order's beginning");
        assert_eq!(
            whole
                .sharded(Shard {
                    rank: 1,
                    world: 3,
                    pad: true
                })
                .unwrap()
                .len(),
            2
        );
        // Batch k of rank r out of w holds the same examples as batch k of w times the batch.
        let (r0, r1) = (shard(0, 2, true), shard(1, 2, true));
        let mut first: Vec<usize> = vec![r0[0], r0[1], r1[0], r1[1]];
        first.sort_unstable();
        let mut want = order[..4].to_vec();
        want.sort_unstable();
        assert_eq!(first, want);
        assert!(whole
            .sharded(Shard {
                rank: 2,
                world: 2,
                pad: false
            })
            .is_err());
    }

    #[test]
    fn shuffle_is_seeded_per_epoch_and_workers_keep_the_order() {
        let base = DataLoaderConfig {
            batch_size: 3,
            shuffle: true,
            seed: 5,
            ..Default::default()
        };
        let l0 = loader(20, base.clone());
        let l3 = loader(
            20,
            DataLoaderConfig {
                num_workers: 3,
                ..base.clone()
            },
        );
        let e0 = targets(&l0, 0, 0);
        assert_eq!(e0, targets(&l3, 0, 0));
        assert_eq!(e0, targets(&loader(20, base.clone()), 0, 0));
        assert_ne!(e0, targets(&l0, 1, 0));
        let mut all: Vec<u32> = e0.concat();
        all.sort();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        // Resuming at batch 2 yields the tail of the same epoch.
        assert_eq!(targets(&l3, 0, 2), e0[2..].to_vec());
    }

    #[test]
    fn zero_batch_size_is_an_error() {
        let x = Tensor::arange(0u32, 4, &Device::Cpu).unwrap();
        let ds = Arc::new(TensorDataset::new(x.clone(), x).unwrap());
        let err = DataLoader::new(
            ds,
            DataLoaderConfig {
                batch_size: 0,
                ..Default::default()
            },
        );
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("batch_size must be at least 1"));
    }
}
