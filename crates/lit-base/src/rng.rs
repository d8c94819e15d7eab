//! [`Generator`]: the seeded random generator that lit owns.
//!
//! candle's CPU random functions draw from an unseedable thread-local generator, so lit draws every
//! random number it needs (initial weights, shuffling, dropout masks, augmentation) from this one.
//! Each use takes its own stream derived from the run seed and a purpose, so adding a new random
//! consumer never changes the numbers another one sees (within a training step, the draws of
//! the forward pass are numbered in order: see [`Generator::for_step`]).

use std::cell::Cell;
use std::hash::Hasher;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded, reproducible random generator (ChaCha8), the same on every platform.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: ChaCha8Rng,
}

impl Generator {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// An independent generator for one purpose (`"init"`, `"shuffle"`, ...) and index (an epoch, a
    /// layer), derived from `seed` alone.
    pub fn stream(seed: u64, purpose: &str, index: u64) -> Self {
        // FNV-1a over the purpose (a fixed algorithm, unlike std's hasher) keeps streams
        // stable across releases.
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(purpose.as_bytes());
        let tag = hasher.finish();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ tag);
        rng.set_stream(index);
        Self { rng }
    }

    /// The underlying `rand` generator.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            v.swap(i, j);
        }
        v
    }

    /// `n` samples from `U(lo, up)`.
    pub fn uniform(&mut self, n: usize, lo: f64, up: f64) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.random_range(lo..up) as f32)
            .collect()
    }

    /// `n` samples from `N(mean, std)` (`rand_distr`'s ziggurat sampler); NaNs when `std` is
    /// negative or not finite.
    pub fn normal(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        match rand_distr::Normal::new(mean, std) {
            Ok(dist) => (0..n).map(|_| self.rng.sample(dist) as f32).collect(),
            Err(_) => vec![f32::NAN; n],
        }
    }
}

thread_local! {
    /// The training step this thread runs, as `(seed, step key)`, and how many step streams the
    /// step has drawn so far.
    static STEP: Cell<(Option<(u64, u64)>, u64)> = const { Cell::new((None, 0)) };
    /// Streams drawn outside any step, ever, on this thread.
    static OUTSIDE: Cell<u64> = const { Cell::new(0) };
}

/// Sets the training step the calling thread runs: the run's `seed` and numbers that together
/// name the step (lit's trainer passes the epoch, the batch and the process's rank, and calls
/// this before each training step). Layers that draw random numbers in the forward pass (dropout)
/// take them from [`Generator::for_step`], so they depend on the seed, the step, the layer and
/// the order of the step's random draws (the network's forward pass, the same each step): a
/// resumed run draws the same masks, whatever ran before in the process. `None` clears it.
pub fn set_step(step: Option<(u64, &[u64])>) {
    let key = step.map(|(seed, parts)| {
        let mut hasher = fnv::FnvHasher::default();
        for p in parts {
            hasher.write_u64(*p);
        }
        (seed, hasher.finish())
    });
    STEP.with(|s| s.set((key, 0)));
}

impl Generator {
    /// A generator for `purpose` (such as a dropout layer's name) in the current training step
    /// (see [`set_step`]): the n-th call of a step gets the n-th stream of the step, so two uses
    /// of one layer in a forward pass draw different numbers, and a rerun of the step the same
    /// ones. Outside a step (a network called by hand), each call draws a new stream of seed 0.
    pub fn for_step(purpose: &str) -> Self {
        let (key, calls) = STEP.with(|s| {
            let (key, calls) = s.get();
            s.set((key, calls + 1));
            (key, calls)
        });
        match key {
            Some((seed, step)) => {
                let mut hasher = fnv::FnvHasher::default();
                hasher.write_u64(step);
                hasher.write_u64(calls);
                Self::stream(seed, purpose, hasher.finish())
            }
            None => {
                let n = OUTSIDE.with(|o| {
                    let n = o.get();
                    o.set(n + 1);
                    n
                });
                Self::stream(0, purpose, n)
            }
        }
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    /// One sample from `U(lo, up)` (`lo` when the range is empty).
    pub fn uniform_one(&mut self, lo: f64, up: f64) -> f64 {
        if up > lo {
            self.rng.random_range(lo..up)
        } else {
            lo
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let a = Generator::stream(7, "shuffle", 3).permutation(100);
        let b = Generator::stream(7, "shuffle", 3).permutation(100);
        let c = Generator::stream(8, "shuffle", 3).permutation(100);
        let d = Generator::stream(7, "shuffle", 4).permutation(100);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn normal_has_the_asked_moments() {
        let xs = Generator::new(1).normal(20_000, 1.0, 2.0);
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64;
        let var = xs
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / xs.len() as f64;
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn step_streams_follow_the_step_not_the_history() {
        let draw = || Generator::for_step("dropout").uniform(4, 0.0, 1.0);
        set_step(Some((3, &[1, 2, 0])));
        let (a1, a2) = (draw(), draw());
        assert_ne!(a1, a2, "a second call in a step draws other numbers");
        set_step(Some((3, &[1, 3, 0])));
        let b = draw();
        assert_ne!(a1, b);
        set_step(Some((3, &[1, 2, 0])));
        assert_eq!(draw(), a1, "the same step draws the same numbers again");
        set_step(Some((4, &[1, 2, 0])));
        assert_ne!(draw(), a1, "another seed draws other numbers");
        set_step(None);
    }
}
