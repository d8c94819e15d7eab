//! lit-model against PyTorch's reference values, and its error messages.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

mod layers;
mod logging;
mod numerics;
mod parallel;
mod registry;
