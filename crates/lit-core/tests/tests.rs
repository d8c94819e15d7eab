//! The Trainer's semantics on small synthetic data: hook order, logged keys, host syncs, run
//! directories, seeds and bad losses.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

mod common;
mod logger;
mod numerics;
mod resume;
mod trainer;
mod user_module;
