//! `my-images`: lit on a user's own photos, from one dependency and one `use`: the images of
//! `DIR/<class>/` (or `DIR/train/<class>/`, with `DIR/val/<class>/`), a small convolutional
//! network shaped by the data, the user's own `LitModule`, and a fit.
//!
//! `cargo run --release -p my-images -- DIR [MIN_ACCURACY]` trains it, prints the classes and the
//! validation accuracy, and exits non-zero below `MIN_ACCURACY` when one is given.
#![allow(clippy::print_stdout)] // a program reports to its user

use lit::data::image_folder;
use lit::prelude::*;

/// The user's module: conv 3x3 -> ReLU -> max-pool 2 -> linear, its metric and optimizer.
struct Classifier {
    varmap: VarMap,
    conv: nn::Conv2d,
    fc: nn::Linear,
    val_acc: MulticlassAccuracy,
}

impl LitModule for Classifier {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward(&self, input: &Tensor, _train: bool) -> lit::Result<Tensor> {
        let x = self.conv.forward_relu_pool(input, 2)?.flatten_from(1)?;
        Ok(self.fc.forward(&x)?)
    }

    fn training_step(&mut self, b: &Batch, _: usize, ctx: &mut StepContext) -> lit::Result<Tensor> {
        let loss = loss::cross_entropy(&self.forward(&b.input, true)?, &b.target)?;
        ctx.log("train_loss", &loss, LogOptions::step().prog_bar())?;
        Ok(loss)
    }

    fn validation_step(&mut self, b: &Batch, _: usize, ctx: &mut StepContext) -> lit::Result<()> {
        let logits = self.forward(&b.input, false)?;
        ctx.log(
            "val_loss",
            &loss::cross_entropy(&logits, &b.target)?,
            LogOptions::default(),
        )?;
        self.val_acc.update(&logits, &b.target)
    }

    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> lit::Result<()> {
        ctx.log_metric("val_acc", &mut self.val_acc, 0, true)
    }

    fn configure_optimizers(&mut self) -> lit::Result<Optimization> {
        Ok(Adam::new(named_params(&self.varmap), AdamConfig::default())?.into())
    }
}

/// The network for images of `info`'s shape and classes.
fn classifier(info: &DataInfo) -> lit::Result<Classifier> {
    let [c, h, w] = info.input_shape[..] else {
        return Err(lit::Error::Invalid(format!(
            "expected images, got {info:?}"
        )));
    };
    let varmap = VarMap::new();
    let vb = SeededVarMap::var_builder(&varmap, 42, DType::F32, &Device::Cpu);
    let same = lit::candle_nn::Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let conv = nn::conv2d(c, 16, 3, same, vb.pp("conv"))?;
    let fc = nn::linear(16 * (h / 2) * (w / 2), info.classes.len(), vb.pp("fc"))?;
    let val_acc = MulticlassAccuracy::new(info.classes.len(), Average::Micro);
    Ok(Classifier {
        varmap,
        conv,
        fc,
        val_acc,
    })
}

fn main() -> lit::Result<()> {
    threads::init();
    let mut args = std::env::args().skip(1);
    let usage = || lit::Error::Invalid("usage: my-images DIR [MIN_ACCURACY]".into());
    let mut hparams = HParams::new();
    hparams.set("data_root", args.next().ok_or_else(usage)?)?;
    hparams.set("image_size", 16)?;
    let data = DataContext::new(hparams)?;
    let train = image_folder::build(&data.for_split(Split::Train))?;
    let val = image_folder::build(&data.for_split(Split::Val))?;
    let info = train.info().unwrap_or_default();
    println!("classes: {}", info.classes.join(", "));
    let mut module = classifier(&info)?;
    let loader = |set, shuffle| {
        let config = DataLoaderConfig {
            batch_size: 32,
            shuffle,
            ..Default::default()
        };
        DataLoader::new(set, config)
    };
    let config = TrainerConfig {
        max_epochs: 5,
        logger: false,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config)?.with_callback(ProgressBar::new());
    let val = NamedLoader::new("val", loader(val, false)?);
    trainer.fit_loaders(&mut module, loader(train, true)?, vec![val])?;
    let acc = trainer.state().metric("val_acc").unwrap_or(0.0);
    println!("validation accuracy {acc:.4}");
    match args.next().map(|m| m.parse::<f64>()) {
        Some(Ok(min)) if acc < min => {
            Err(lit::Error::Invalid(format!("accuracy {acc:.4} < {min}")))
        }
        Some(Err(e)) => Err(lit::Error::Invalid(format!("MIN_ACCURACY: {e}"))),
        _ => Ok(()),
    }
}
