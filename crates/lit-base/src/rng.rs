//! [`Generator`]: the seeded random generator that lit owns.
//!
//! candle's CPU random functions draw from an unseedable thread-local generator, so lit draws every
//! random number it needs (initial weights, shuffling, dropout masks, augmentation) from this one.
//! Each use takes its own stream derived from the run seed and a purpose, so adding a new random
//! consumer never changes the numbers another one sees.

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
}
