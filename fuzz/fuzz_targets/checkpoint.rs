//! The checkpoint loader on arbitrary bytes: parsing, then the checks against a model's
//! parameters (names, shapes, dtypes, finiteness).
#![no_main]

use std::path::Path;

use candle::{DType, Device};
use candle_nn::{Init, VarMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let Ok(ck) = lit_core::checkpoint::from_bytes(path, data) else {
        return;
    };
    let varmap = VarMap::new();
    for (name, shape) in [("w", &[2usize, 3][..]), ("b", &[3][..])] {
        varmap
            .get(shape, name, Init::Const(0.0), DType::F32, &Device::Cpu)
            .expect("a parameter");
    }
    let _ = lit_core::checkpoint::load_weights(path, &varmap, &ck.weights);
});
