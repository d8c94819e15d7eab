//! `blobs`: lit as a user outside this repository uses it, from one dependency, one `use` and one
//! error type: three Gaussian blobs in the plane, a two-layer perceptron, the user's own
//! `LitModule`, and a fit with early stopping. `cargo run --release -p blobs` runs it; it exits
//! non-zero below 95% validation accuracy (it reaches about 99%).
#![allow(clippy::print_stdout)] // a program reports to its user

use lit::prelude::*;

/// The user's module: a 2 -> 32 -> 3 perceptron with PyTorch's initialisation, its metric and optimizer.
struct Classifier {
    varmap: VarMap,
    hidden: nn::Linear,
    out: nn::Linear,
    val_acc: MulticlassAccuracy,
}

impl LitModule for Classifier {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward(&self, input: &Tensor, _train: bool) -> lit::Result<Tensor> {
        Ok(self.out.forward(&self.hidden.forward_relu(input)?)?)
    }

    fn training_step(&mut self, b: &Batch, _: usize, ctx: &mut StepContext) -> lit::Result<Tensor> {
        let loss = loss::cross_entropy(&self.forward(&b.input, true)?, &b.target)?;
        ctx.log("train_loss", &loss, LogOptions::step().prog_bar())?;
        Ok(loss)
    }

    fn validation_step(&mut self, b: &Batch, _: usize, ctx: &mut StepContext) -> lit::Result<()> {
        let logits = self.forward(&b.input, false)?;
        let loss = loss::cross_entropy(&logits, &b.target)?;
        ctx.log("val_loss", &loss, LogOptions::default())?;
        self.val_acc.update(&logits, &b.target)
    }

    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> lit::Result<()> {
        ctx.log_metric("val_acc", &mut self.val_acc, 0, true)
    }

    fn configure_optimizers(&mut self) -> lit::Result<Optimization> {
        let config = AdamConfig {
            lr: 0.01,
            ..Default::default()
        };
        Ok(Adam::new(named_params(&self.varmap), config)?.into())
    }
}

/// A loader over `n` points of the blobs centred at (-2, 0), (2, 0) and (0, 3), labelled by blob.
fn blobs(n: usize, seed: u64, shuffle: bool) -> lit::Result<DataLoader> {
    let centres = [(-2.0f32, 0.0f32), (2.0, 0.0), (0.0, 3.0)];
    let noise = Generator::new(seed).normal(2 * n, 0.0, 0.7);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let points = labels.iter().zip(noise.chunks(2));
    let points: Vec<f32> = points
        .flat_map(|(&c, e)| [centres[c as usize].0 + e[0], centres[c as usize].1 + e[1]])
        .collect();
    let data = TensorDataset::new(
        Tensor::from_vec(points, (n, 2), &Device::Cpu)?,
        Tensor::new(labels, &Device::Cpu)?,
    )?;
    let config = DataLoaderConfig {
        batch_size: 32,
        shuffle,
        ..Default::default()
    };
    DataLoader::new(Arc::new(data), config)
}

fn main() -> lit::Result<()> {
    threads::init();
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, 42, DType::F32, &Device::Cpu);
    let (hidden, out) = (
        nn::linear(2, 32, vb.pp("hidden"))?,
        nn::linear(32, 3, vb.pp("out"))?,
    );
    let val_acc = MulticlassAccuracy::new(3, Average::Micro);
    let mut module = Classifier {
        varmap,
        hidden,
        out,
        val_acc,
    };
    let config = TrainerConfig {
        max_epochs: 20,
        logger: false,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config)?
        .with_callback(ProgressBar::new())
        .with_callback(EarlyStopping::new("val_acc", Mode::Max).patience(3));
    let val = NamedLoader::new("val", blobs(300, 2, false)?);
    trainer.fit_loaders(&mut module, blobs(1500, 1, true)?, vec![val])?;
    let state = trainer.state();
    let (epochs, steps) = (state.history().len(), state.global_step());
    let acc = state.metric("val_acc").unwrap_or(0.0);
    println!("blobs: {epochs} epochs, {steps} steps, validation accuracy {acc:.4}");
    match acc >= 0.95 {
        true => Ok(()),
        false => Err(lit::Error::Invalid(format!("accuracy {acc:.4} < 0.95"))),
    }
}
