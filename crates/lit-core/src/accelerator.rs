//! [`Accelerator`]: which kind of device a run computes on.

use candle::Device;

use crate::{Error, Result};

/// Which kind of device to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU (needs the `cuda` feature).
    Cuda,
    /// An Apple GPU (needs the `metal` feature).
    Metal,
    /// A GPU when one is available and compiled in, else the CPU.
    #[default]
    Auto,
}

impl std::str::FromStr for Accelerator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        // Case-sensitive, as every choice by name.
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "metal" | "mps" => Ok(Self::Metal),
            "auto" => Ok(Self::Auto),
            _ => Err(Error::Config(format!(
                "unknown accelerator '{s}'; expected cpu, cuda, metal or auto"
            ))),
        }
    }
}

impl Accelerator {
    /// The device `index` of this kind, failing clearly when it is not compiled in or absent.
    pub fn device(self, index: usize) -> Result<Device> {
        match self {
            Accelerator::Cpu => Ok(Device::Cpu),
            Accelerator::Cuda => Device::new_cuda(index).map_err(|e| {
                Error::Config(format!(
                    "accelerator cuda: {e} (build with `--features cuda` on a machine with an NVIDIA GPU)"
                ))
            }),
            Accelerator::Metal => Device::new_metal(index).map_err(|e| {
                Error::Config(format!("accelerator metal: {e} (build with `--features metal` on macOS)"))
            }),
            Accelerator::Auto => {
                if candle::utils::cuda_is_available() {
                    Accelerator::Cuda.device(index)
                } else if candle::utils::metal_is_available() {
                    Accelerator::Metal.device(index)
                } else {
                    Ok(Device::Cpu)
                }
            }
        }
    }
}
