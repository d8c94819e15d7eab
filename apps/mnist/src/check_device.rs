//! `mnist check-device`: lit's forward and backward pass on an accelerator against the CPU, on
//! the same weights and the same batch (the first test batch), so a GPU build can be trusted
//! before it trains.
//!
//! Both modules are built from the run's hyperparameters; the accelerator's copy then takes the
//! CPU's weights. The logits, the loss and every parameter's gradient are compared by their
//! largest difference relative to the CPU tensor's largest magnitude.

use anyhow::{bail, Context};
use candle::{DType, Device, Tensor};
use lit_core::{precision_from_name, Accelerator};
use lit_data::{DInterface, DataModule, HParams, Stage};
use lit_model::{LitModule, MInterface};

use crate::cli::RunArgs;
use crate::{datasets, models};

/// One pass's logits, loss and parameter gradients by name.
type Pass = (Tensor, Tensor, Vec<(String, Tensor)>);

/// The largest accepted relative difference: f32, and the half types.
fn tolerance(precision: &str) -> f64 {
    match precision {
        "32" | "32-true" => 1e-4,
        _ => 3e-2,
    }
}

/// Runs the check; an error when a difference is above the tolerance.
pub(crate) fn run(args: &RunArgs, hparams: HParams) -> anyhow::Result<()> {
    let device = args.accelerator.parse::<Accelerator>()?.device(0)?;
    if device.is_cpu() {
        bail!(
            "check-device compares an accelerator with the CPU: pass --accelerator cuda (or metal)"
        );
    }
    println!("device: {device:?}, precision {}", args.precision);
    let mut data = DInterface::new(datasets::registry(), hparams.clone())?;
    data.setup(Stage::Test)?;
    let loaders = data.test_dataloaders()?;
    let first = loaders
        .first()
        .context("no test set to take a batch from")?;
    let batch = first
        .loader
        .iter(0)
        .next()
        .context("the test set is empty")??;
    let precision = precision_from_name(&args.precision)?;
    let registry = models::registry();
    let dtype = precision.param_dtype();
    let cpu = MInterface::new(&registry, hparams.clone(), &Device::Cpu, dtype)?;
    let gpu = MInterface::new(&registry, hparams, &device, dtype)?;
    let cpu_vars = cpu.varmap().data().lock().expect("varmap lock").clone();
    for (name, var) in gpu.varmap().data().lock().expect("varmap lock").iter() {
        let src = cpu_vars
            .get(name)
            .with_context(|| format!("parameter {name} missing on the CPU"))?;
        var.set(&src.as_tensor().to_device(&device)?)?;
    }
    let pass = |module: &MInterface, device: &Device| -> anyhow::Result<Pass> {
        let b = precision.convert_batch(batch.clone(), device)?;
        let logits = module.forward(&b.input, true)?;
        let loss = lit_model::loss::cross_entropy(&logits, &b.target)?;
        let grads = loss.backward()?;
        let mut named: Vec<(String, Tensor)> = module
            .varmap()
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .filter_map(|(n, v)| grads.get(v).map(|g| (n.clone(), g.clone())))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((logits, loss, named))
    };
    let (cl, closs, cg) = pass(&cpu, &Device::Cpu)?;
    let (gl, gloss, gg) = pass(&gpu, &device)?;
    let tol = tolerance(&args.precision);
    let mut rows = vec![
        ("logits".to_string(), relative(&gl, &cl)?),
        ("loss".to_string(), relative(&gloss, &closs)?),
    ];
    let names = |v: &[(String, Tensor)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
    if names(&cg) != names(&gg) {
        bail!(
            "gradients of {:?} on the CPU, of {:?} on {device:?}",
            names(&cg),
            names(&gg)
        );
    }
    for ((name, c), (_, g)) in cg.iter().zip(&gg) {
        rows.push((format!("grad {name}"), relative(g, c)?));
    }
    let worst = rows.iter().fold(0f64, |m, r| m.max(r.1));
    for (what, rel) in &rows {
        println!("  {what:<28} relative difference {rel:.2e}");
    }
    if worst > tol {
        bail!("{device:?} differs from the CPU by {worst:.2e}, more than {tol:.0e}");
    }
    println!("check-device: ok, largest relative difference {worst:.2e} <= {tol:.0e}");
    Ok(())
}

/// `max |a - b| / max |b|`, on the host in f64.
fn relative(a: &Tensor, b: &Tensor) -> anyhow::Result<f64> {
    let host = |t: &Tensor| -> anyhow::Result<Vec<f64>> {
        Ok(t.to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?)
    };
    let (a, b) = (host(a)?, host(b)?);
    if a.len() != b.len() {
        bail!("{} values against {}", a.len(), b.len());
    }
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    Ok(diff / scale)
}
