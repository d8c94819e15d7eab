//! ExampleNet against PyTorch: the same weights give the same logits.
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle::{DType, Device, ModuleT};
use candle_nn::VarBuilder;
use example_net::{Config, ExampleNet};
use lit_model::Net;

fn fixture() -> Option<PathBuf> {
    lit_testutil::require(
        lit_testutil::fixtures_dir()?.join("example_net.safetensors"),
        "ExampleNet fixture",
    )
}

#[test]
fn logits_match_pytorch() -> anyhow::Result<()> {
    let Some(path) = fixture() else { return Ok(()) };
    let dev = Device::Cpu;
    let tensors = candle::safetensors::load(&path, &dev)?;
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &dev);
    let net = ExampleNet::new(&Config::default(), vb)?;
    let logits = net.forward_t(&tensors["input"], false)?;
    let expected = &tensors["logits"];
    assert_eq!(logits.dims(), expected.dims());
    let diff = (logits - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = expected.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff <= 1e-5 * scale.max(1.0), "max |diff| = {diff}");
    Ok(())
}

#[test]
fn parameter_names_and_count_match_pytorch() -> anyhow::Result<()> {
    let vm = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    ExampleNet::new(&Config::default(), vb)?;
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut expected: Vec<String> = [0, 3, 6, 9, 11]
        .iter()
        .flat_map(|i| [format!("model.{i}.weight"), format!("model.{i}.bias")])
        .collect();
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());
    let count: usize = data.values().map(|v| v.elem_count()).sum();
    // reference.json: parameter_count of the PyTorch ExampleNet.
    assert_eq!(count, 426_122);
    Ok(())
}
