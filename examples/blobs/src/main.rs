//! `blobs`: lit as a user outside this repository's app uses it, from one dependency and one
//! `use`: a small network, a synthetic data set, the user's own `LitModule`, and `fit` on plain
//! loaders with early stopping. Run it with `cargo run --release -p blobs`; its test (run by
//! `cargo test` and so by CI) runs it too.
//!
//! The data: three Gaussian blobs in the plane, one class each. The network: a two-layer
//! perceptron. It reaches about 99% validation accuracy in a few epochs and exits non-zero when
//! it does not reach 95%.
// A program reports to its user.
#![allow(clippy::print_stdout)]

use lit::candle;
use lit::prelude::*;

/// The network: 2 -> 32 -> 3, with PyTorch's initialisation and parameter names.
struct Mlp {
    hidden: nn::Linear,
    out: nn::Linear,
}

impl Mlp {
    fn new(vb: VarBuilder) -> candle::Result<Self> {
        Ok(Self {
            hidden: nn::linear(2, 32, vb.pp("hidden"))?,
            out: nn::linear(32, 3, vb.pp("out"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        self.out.forward(&self.hidden.forward_relu(xs)?)
    }
}

/// The user's module: the network, its loss, its metric and its optimizer.
struct Classifier {
    varmap: VarMap,
    net: Mlp,
    val_acc: MulticlassAccuracy,
}

impl Classifier {
    fn new(seed: u64) -> lit::model::Result<Self> {
        let varmap = VarMap::new();
        let vb =
            lit::model::init::SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
        Ok(Self {
            net: Mlp::new(vb)?,
            varmap,
            val_acc: MulticlassAccuracy::new(3, Average::Micro),
        })
    }
}

impl LitModule for Classifier {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward(&self, input: &Tensor, _train: bool) -> lit::model::Result<Tensor> {
        Ok(self.net.forward(input)?)
    }

    fn training_step(
        &mut self,
        batch: &Batch,
        _batch_idx: usize,
        ctx: &mut StepContext,
    ) -> lit::model::Result<Tensor> {
        let logits = self.net.forward(&batch.input)?;
        let loss = loss::cross_entropy(&logits, &batch.target)?;
        let opts = LogOptions {
            on_step: true,
            prog_bar: true,
            ..Default::default()
        };
        ctx.log("train_loss", &loss, opts)?;
        Ok(loss)
    }

    fn validation_step(
        &mut self,
        batch: &Batch,
        _batch_idx: usize,
        ctx: &mut StepContext,
    ) -> lit::model::Result<()> {
        let logits = self.net.forward(&batch.input)?;
        let loss = loss::cross_entropy(&logits, &batch.target)?;
        ctx.log("val_loss", &loss, LogOptions::default())?;
        self.val_acc.update(&logits, &batch.target)?;
        Ok(())
    }

    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> lit::model::Result<()> {
        ctx.log_metric("val_acc", &mut self.val_acc, 0, true)
    }

    fn configure_optimizers(&mut self) -> lit::model::Result<Optimization> {
        let params = lit::model::optim::named_params(&self.varmap);
        let config = AdamConfig {
            lr: 0.01,
            ..Default::default()
        };
        Ok(Optimization {
            optimizer: Box::new(Adam::new(params, config)?),
            scheduler: None,
        })
    }
}

/// `n` points of three blobs centred at (-2, 0), (2, 0) and (0, 3), labelled by blob.
fn blobs(n: usize, seed: u64) -> lit::data::Result<Arc<TensorDataset>> {
    let centres = [(-2.0f32, 0.0f32), (2.0, 0.0), (0.0, 3.0)];
    let noise = lit::data::Generator::new(seed).normal(2 * n, 0.0, 0.7);
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let points: Vec<f32> = labels
        .iter()
        .zip(noise.chunks(2))
        .flat_map(|(&c, e)| {
            let (x, y) = centres[c as usize];
            [x + e[0], y + e[1]]
        })
        .collect();
    let x = Tensor::from_vec(points, (n, 2), &Device::Cpu)?;
    let y = Tensor::from_vec(labels, n, &Device::Cpu)?;
    Ok(Arc::new(TensorDataset::new(x, y)?))
}

fn loader(data: Arc<TensorDataset>, shuffle: bool) -> lit::data::Result<DataLoader> {
    let config = DataLoaderConfig {
        batch_size: 32,
        shuffle,
        seed: 7,
        ..Default::default()
    };
    DataLoader::new(data, config)
}

fn main() -> lit::Result<()> {
    lit::core::threads::init();
    let train = loader(blobs(1500, 1)?, true)?;
    let val = NamedLoader::new("val", loader(blobs(300, 2)?, false)?);
    let mut module = Classifier::new(42)?;
    let config = TrainerConfig {
        max_epochs: 20,
        logger: false,
        seed: 42,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config)?
        .with_callback(ProgressBar::new())
        .with_callback(EarlyStopping::new("val_acc", Mode::Max).patience(3));
    trainer.fit_loaders(&mut module, train, vec![val])?;
    let state = trainer.state();
    let acc = state
        .callback_metrics()
        .get("val_acc")
        .copied()
        .unwrap_or(0.0);
    println!(
        "blobs: {} epochs, {} steps, validation accuracy {acc:.4}",
        state.history().len(),
        state.global_step()
    );
    if acc < 0.95 {
        return Err(lit::Error::Config(format!(
            "validation accuracy {acc:.4} is below 0.95"
        )));
    }
    Ok(())
}
