//! Layers initialised as PyTorch initialises them.
//!
//! candle-nn's `linear` and `conv2d` draw weights from a Kaiming normal with the ReLU gain, which
//! differs from PyTorch's default (`kaiming_uniform_(a = sqrt(5))`, that is `U(-1/sqrt(fan_in),
//! 1/sqrt(fan_in))` for weights and biases alike). These constructors use PyTorch's rule, so a
//! network ported from PyTorch starts from the same distribution and trains the same way. The
//! layers are candle-nn's own types.

use candle_nn::{Conv2d, Conv2dConfig, Init, Linear, VarBuilder};

fn torch_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// `nn.Linear(in_dim, out_dim)` with PyTorch's default initialisation.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle::Result<Linear> {
    let init = torch_uniform(in_dim);
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let b = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(w, Some(b)))
}

/// `nn.Conv2d(in_channels, out_channels, kernel_size)` with PyTorch's default initialisation.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> candle::Result<Conv2d> {
    let fan_in = in_channels / cfg.groups.max(1) * kernel_size * kernel_size;
    let init = torch_uniform(fan_in);
    let w = vb.get_with_hints(
        (
            out_channels,
            in_channels / cfg.groups.max(1),
            kernel_size,
            kernel_size,
        ),
        "weight",
        init,
    )?;
    let b = vb.get_with_hints(out_channels, "bias", init)?;
    Ok(Conv2d::new(w, Some(b), cfg))
}
