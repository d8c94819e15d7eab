//! Fast CPU kernels as candle custom ops, so autograd still works through them.
//!
//! candle's CPU convolution backward sums the bias gradient with a strided reduction, computes the
//! input gradient with loops rather than a matrix product (also for the input image, which nothing
//! uses), and max-pool backward goes through several generic ops. These kernels do the same maths
//! with im2col and the `gemm` crate candle itself uses, parallel over the batch, skipping gradients
//! nobody needs. They run for contiguous f32 tensors on the CPU; the layers in [`crate::nn`] fall
//! back to candle's own ops on other devices and dtypes.

mod conv;
mod pool;

pub use conv::conv2d;
pub use pool::max_pool2d;
