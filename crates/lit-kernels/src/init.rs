//! Seeded parameter initialisation.
//!
//! candle's `VarMap` draws initial weights from candle's unseedable CPU generator. [`SeededVarMap`]
//! is a `VarBuilder` backend that honours the same [`Init`] hints (Kaiming, uniform, normal,
//! constants) but draws from lit's [`Generator`], one stream per parameter name, so the same seed
//! gives the same weights bit for bit, whatever order layers are built in.

use candle::{DType, Device, Shape, Tensor, Var};
use candle_nn::{var_builder::SimpleBackend, Init, VarBuilder, VarMap};
use lit_base::Generator;

/// A `VarBuilder` backend that stores parameters in a [`VarMap`] and initialises new ones from a
/// seeded generator.
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SeededVarMap {
    /// A backend that adds parameters to `varmap`, initialised from `seed`.
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        Self { varmap, seed }
    }

    /// A `VarBuilder` over a seeded backend.
    pub fn var_builder(
        varmap: &VarMap,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(Self::new(varmap.clone(), seed)),
            dtype,
            device.clone(),
        )
    }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Draws a tensor of `shape` for `init` from `generator` (on the CPU, in f32).
pub fn init_tensor(init: Init, shape: &Shape, generator: &mut Generator) -> candle::Result<Tensor> {
    let n = shape.elem_count();
    let values = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => generator.uniform(n, lo, up),
        Init::Randn { mean, stdev } => generator.normal(n, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    generator.uniform(n, -bound, bound)
                }
                candle_nn::init::NormalOrUniform::Normal => generator.normal(n, 0.0, std),
            }
        }
    };
    Tensor::from_vec(values, shape.clone(), &Device::Cpu)
}

/// This machine's memory in bytes (Linux's `MemTotal`), if known.
fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a parameter that would take the parameters past this machine's memory (counted
/// twice over for the f32 copy it is drawn in): a size a user mistyped (`width=100000`) ends
/// with an error naming the parameter instead of an allocation failure that aborts the process.
fn check_fits(
    data: &std::collections::HashMap<String, Var>,
    name: &str,
    shape: &Shape,
    dtype: DType,
) -> candle::Result<()> {
    let Some(memory) = memory_bytes() else {
        return Ok(());
    };
    let bytes = |dims: &[usize], size: usize| {
        dims.iter()
            .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64))
    };
    let have: u64 = data
        .values()
        .map(|v| bytes(v.dims(), v.dtype().size_in_bytes()).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add);
    let new = bytes(shape.dims(), dtype.size_in_bytes().max(4)).unwrap_or(u64::MAX);
    if have.saturating_add(new) > memory {
        candle::bail!(
            "parameter {name} of shape {shape:?} would bring the network's parameters to {:.1} \
             GB, more than this machine's {:.1} GB of memory: the network is too large (check \
             its sizes)",
            have.saturating_add(new) as f64 / 1e9,
            memory as f64 / 1e9
        )
    }
    Ok(())
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock poisoned");
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle::bail!(
                    "shape mismatch for parameter {name}: the model asks for {s:?}, found {:?}",
                    var.shape()
                )
            }
            return Ok(var.as_tensor().clone());
        }
        check_fits(&data, name, &s, dtype)?;
        let mut generator = Generator::stream(self.seed, "init", name_hash(name));
        let t = init_tensor(h, &s, &mut generator)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        let data = self.varmap.data().lock().expect("varmap lock poisoned");
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle::bail!("cannot find parameter {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock poisoned")
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> Vec<f32> {
        let vm = VarMap::new();
        let vb = SeededVarMap::var_builder(&vm, seed, DType::F32, &Device::Cpu);
        let l = candle_nn::linear(4, 3, vb.pp("fc")).unwrap();
        l.weight().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights() {
        assert_eq!(build(1), build(1));
        assert_ne!(build(1), build(2));
    }
}
