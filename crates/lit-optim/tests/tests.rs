//! lit-optim against PyTorch's reference values and candle's own optimizers.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

mod fused;
mod torch;
