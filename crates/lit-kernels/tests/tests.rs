//! lit-kernels against candle's own ops and PyTorch's reference values.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

mod block;
mod common;
mod conv;
mod dense;
mod layers;
mod pool_rows;
