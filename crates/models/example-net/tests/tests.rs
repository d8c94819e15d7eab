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

/// A NaN pixel reaches that image's every logit and the loss (torch: relu(nan) = nan and max-pool
/// lets NaN win), so the trainer's NaN guard fires; the other images stay finite.
#[test]
fn a_nan_pixel_makes_its_logits_and_the_loss_nan() -> anyhow::Result<()> {
    let vm = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = ExampleNet::new(&Config::default(), vb)?;
    let mut pixels = vec![0.5f32; 2 * 28 * 28];
    pixels[14 * 28 + 14] = f32::NAN;
    let x = candle::Tensor::from_vec(pixels, (2, 1, 28, 28), &Device::Cpu)?;
    let logits = net.forward_t(&x, true)?.to_vec2::<f32>()?;
    assert!(logits[0].iter().all(|v| v.is_nan()), "{:?}", logits[0]);
    assert!(logits[1].iter().all(|v| v.is_finite()), "{:?}", logits[1]);
    let target = candle::Tensor::new(&[3u32, 4], &Device::Cpu)?;
    let loss = lit_model::loss::cross_entropy(&net.forward_t(&x, true)?, &target)?;
    assert!(loss.to_scalar::<f32>()?.is_nan());
    Ok(())
}
