//! [`MInterface`]: the generic module around any registered network.

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

use lit_base::{Batch, HParams, Registry, Stage};
use lit_metrics::{
    Average, Metric, MulticlassAccuracy, MulticlassAuroc, MulticlassF1Score, MulticlassPrecision,
    MulticlassRecall, Regression, RegressionKind,
};

use crate::init::SeededVarMap;
use crate::loss::Loss;
use crate::{
    optim, scheduler, BoxedNet, Error, LitModule, LogOptions, ModelRegistry, Optimization, Result,
    RunningStage, StepContext,
};

type MetricBuilder = fn(usize) -> Box<dyn Metric>;

/// Every metric `--metric` names, by name: the only list of their names. `top<k>_accuracy` (such
/// as `top5_accuracy`, 1 <= k <= num_classes) is accepted as well.
pub static METRICS: LazyLock<Registry<MetricBuilder>> = LazyLock::new(|| {
    Registry::<MetricBuilder>::new("metric")
        .with("accuracy", |c| {
            Box::new(MulticlassAccuracy::new(c, Average::Micro))
        })
        .with("accuracy_macro", |c| {
            Box::new(MulticlassAccuracy::new(c, Average::Macro))
        })
        .with("precision", |c| {
            Box::new(MulticlassPrecision::new(c, Average::Macro))
        })
        .with("recall", |c| {
            Box::new(MulticlassRecall::new(c, Average::Macro))
        })
        .with("f1", |c| {
            Box::new(MulticlassF1Score::new(c, Average::Macro))
        })
        .with("f1_weighted", |c| {
            Box::new(MulticlassF1Score::new(c, Average::Weighted))
        })
        .with("auroc", |c| {
            Box::new(MulticlassAuroc::new(c, Average::Macro))
        })
        // Regression metrics, of outputs and targets of the same shape.
        .with("mse", |_| Box::new(Regression::new(RegressionKind::Mse)))
        .with("rmse", |_| Box::new(Regression::new(RegressionKind::Rmse)))
        .with("mae", |_| Box::new(Regression::new(RegressionKind::Mae)))
        .with("r2", |_| Box::new(Regression::new(RegressionKind::R2)))
        .with("pearson", |_| {
            Box::new(Regression::new(RegressionKind::Pearson))
        })
});

/// The regression metrics among [`METRICS`]: they compare outputs with values, not classes.
pub const REGRESSION_METRIC_NAMES: [&str; 5] = ["mse", "rmse", "mae", "r2", "pearson"];

/// The metrics of a regression run when `--metric` is not given.
pub const REGRESSION_METRICS: [&str; 3] = ["mse", "mae", "r2"];

/// The pattern of the top-k accuracies, shown with [`METRICS`]' names.
pub const TOP_K_METRIC: &str = "top<k>_accuracy";

/// The metric called `name` and the key it is logged under (`accuracy` logs as `acc`,
/// `top5_accuracy` as `top5_acc`).
fn make_metric(name: &str, c: usize) -> Result<(String, Box<dyn Metric>)> {
    // Case-sensitive, as every choice by name.
    let name = name.trim().to_string();
    if let Some(k) = name
        .strip_prefix("top")
        .and_then(|r| r.strip_suffix("_accuracy"))
    {
        return match k.parse::<usize>() {
            Ok(k) if (1..=c).contains(&k) => Ok((
                format!("top{k}_acc"),
                Box::new(MulticlassAccuracy::new(c, Average::Micro).with_top_k(k)),
            )),
            _ => Err(Error::HParam {
                key: "metric".into(),
                message: format!(
                    "{name}: expected top<k>_accuracy with k from 1 to num_classes ({c})"
                ),
            }),
        };
    }
    let build = METRICS.get(&name).map_err(|mut e| {
        e.known.push(TOP_K_METRIC.to_string());
        e
    })?;
    let key = if name == "accuracy" {
        "acc".into()
    } else {
        name
    };
    Ok((key, build(c)))
}

/// The `(std, mean)` the outputs are brought to, checked: both keys or neither.
fn output_scale(h: &MInterfaceHParams) -> Result<Option<(f64, f64)>> {
    match (h.target_mean, h.target_std) {
        (None, None) => Ok(None),
        (Some(m), Some(s)) if m.is_finite() && s.is_finite() && s > 0.0 => Ok(Some((s, m))),
        (m, s) => Err(Error::HParam {
            key: if m.is_some_and(f64::is_finite) {
                "target_std"
            } else {
                "target_mean"
            }
            .into(),
            message: format!(
                "expected a finite target_mean and a target_std > 0 together, got target_mean \
                 {m:?} and target_std {s:?}"
            ),
        }),
    }
}

/// The keys `MInterface` reads itself (its loss, optimizer and schedule read theirs, the network
/// its `Config`): one default per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MInterfaceHParams {
    /// The registered network to build.
    pub model_name: Option<String>,
    /// The seed of the initial weights.
    pub seed: u64,
    /// The classes the metrics count.
    pub num_classes: usize,
    /// The metrics of validation and test, a list or comma-separated names of [`METRICS`].
    #[serde(
        deserialize_with = "lit_base::hparams::names",
        serialize_with = "lit_base::hparams::names_as_text"
    )]
    pub metric: Vec<String>,
    /// A regression's target mean: the network's outputs are scaled by `target_std` and shifted
    /// by it, so a network that outputs values near 0 and 1 starts at the targets' scale (the
    /// data records the training targets' statistics; unset: outputs as they are).
    pub target_mean: Option<f64>,
    /// A regression's target standard deviation, as `target_mean`.
    pub target_std: Option<f64>,
}

impl Default for MInterfaceHParams {
    fn default() -> Self {
        Self {
            model_name: None,
            seed: DEFAULT_SEED,
            num_classes: 10,
            metric: vec!["accuracy".into()],
            target_mean: None,
            target_std: None,
        }
    }
}

/// Every hyperparameter key `MInterface` reads itself or through its loss, optimizer and schedule,
/// with its default (the network's own `Config` keys come from the model registry).
pub fn module_defaults() -> HParams {
    let mut d = lit_base::defaults_of::<MInterfaceHParams>();
    d.merge_missing(&crate::loss::defaults());
    d.merge_missing(&optim::defaults());
    d.merge_missing(&scheduler::defaults());
    d
}

/// The keys of [`module_defaults`].
pub fn module_keys() -> Vec<String> {
    module_defaults().iter().map(|(k, _)| k.clone()).collect()
}

pub use lit_base::DEFAULT_SEED;

type Metrics = Vec<(String, Box<dyn Metric>)>;

/// The template's `MInterface`: wraps the network named by `model_name` and owns its loss,
/// metrics, optimizer and learning-rate schedule, all taken from the hyperparameters.
///
/// Logged keys: `train_loss` (per step and epoch), and per validation or test set
/// `val_loss`, `val_<metric>`, `test_loss`, `test_<metric>` (suffixed `/<set name>` when a stage
/// has several sets). Metrics are computed from whole-epoch state.
pub struct MInterface {
    net: BoxedNet,
    varmap: VarMap,
    loss: Loss,
    metric_names: Vec<String>,
    num_classes: usize,
    val_metrics: Vec<Metrics>,
    test_metrics: Vec<Metrics>,
    hparams: HParams,
    /// `(std, mean)` of a regression's targets, which the outputs are scaled and shifted by.
    output_scale: Option<(f64, f64)>,
    /// The optimizer and schedule built with the module, until the first fit takes them.
    optimization: Option<Optimization>,
}

impl std::fmt::Debug for MInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MInterface")
            .field("loss", &self.loss)
            .field("metrics", &self.metric_names)
            .finish_non_exhaustive()
    }
}

impl MInterface {
    /// Builds the network named by `model_name` from `registry` on `device`, its float
    /// parameters in `dtype` (the trainer's `param_dtype()`: f32, or the low type of a `-true`
    /// precision), as Lightning's trainer hands a module its device and precision.
    ///
    /// Every choice is checked here, before any training: the model, loss, metric, optimizer and
    /// scheduler names and their arguments. Weights are initialised from `seed` (default [`DEFAULT_SEED`]). The
    /// network's resolved `Config` is added to the hyperparameters, so `hparams()` is complete.
    pub fn new(
        registry: &ModelRegistry,
        mut hparams: HParams,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let own: MInterfaceHParams = hparams.to_config()?;
        let output_scale = output_scale(&own)?;
        let name = own.model_name.ok_or_else(|| Error::HParam {
            key: "model_name".into(),
            message: format!(
                "no model chosen; registered models: {}",
                registry.names().join(", ")
            ),
        })?;
        registry.check(&name)?;
        let varmap = VarMap::new();
        let vb = SeededVarMap::var_builder(&varmap, own.seed, dtype, device);
        let (net, resolved) = registry.build(&name, &hparams, vb)?;
        hparams.merge_missing(&resolved);
        let loss = Loss::from_hparams(&hparams)?;
        let num_classes = own.num_classes;
        let metric_names = match own.metric {
            names if names.is_empty() => MInterfaceHParams::default().metric,
            names => names,
        };
        for m in &metric_names {
            make_metric(m, num_classes)?;
        }
        // Built now, so a bad optimizer or schedule fails before any data is read; the fit takes
        // them from here. Every key the module reads is recorded with its value.
        let optimization = Self::optimization(&hparams, &varmap)?;
        hparams.merge_missing(&module_defaults());
        Ok(Self {
            net,
            varmap,
            loss,
            metric_names,
            num_classes,
            val_metrics: Vec::new(),
            test_metrics: Vec::new(),
            hparams,
            output_scale,
            optimization: Some(optimization),
        })
    }

    /// The network's outputs in f32 (losses and metrics run in f32 whatever the compute type,
    /// as autocast runs them), at the targets' scale for a regression.
    fn outputs(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.net.forward_t(input, train)?.to_dtype(DType::F32)?;
        Ok(match self.output_scale {
            Some((std, mean)) => y.affine(std, mean)?,
            None => y,
        })
    }

    /// The optimizer of `hparams` over `varmap`, and its schedule from the optimizer's rate.
    fn optimization(hparams: &HParams, varmap: &VarMap) -> Result<Optimization> {
        let optimizer = optim::from_hparams(hparams, varmap)?;
        let scheduler = scheduler::from_hparams(hparams, optimizer.lr().get())?;
        Ok(Optimization {
            optimizer,
            scheduler,
        })
    }

    fn metrics(&mut self, stage: RunningStage, idx: usize) -> Result<&mut Metrics> {
        let (names, n) = (&self.metric_names, self.num_classes);
        let sets = if stage == RunningStage::Test {
            &mut self.test_metrics
        } else {
            &mut self.val_metrics
        };
        while sets.len() <= idx {
            sets.push(
                names
                    .iter()
                    .map(|m| make_metric(m, n))
                    .collect::<Result<_>>()?,
            );
        }
        Ok(&mut sets[idx])
    }

    fn eval_step(&mut self, batch: &Batch, ctx: &mut StepContext, prefix: &str) -> Result<()> {
        let logits = self.outputs(&batch.input, false)?;
        let loss = self.loss.compute(&logits, &batch.target)?;
        ctx.log(
            &format!("{prefix}_loss"),
            &loss,
            LogOptions::for_stage(ctx.stage()).prog_bar(),
        )?;
        for (_, m) in self.metrics(ctx.stage(), ctx.dataloader_idx())? {
            m.update(&logits, &batch.target)?;
        }
        Ok(())
    }

    fn eval_epoch_end(&mut self, ctx: &mut StepContext, prefix: &str) -> Result<()> {
        // In a data-parallel run every loader, even one this process saw no batch of: each
        // metric is merged with every process's before it is computed.
        let sets = match ctx.stage() {
            RunningStage::Test => self.test_metrics.len(),
            _ => self.val_metrics.len(),
        };
        let n = match ctx.collective() {
            Some(_) => ctx.num_dataloaders().max(sets),
            None => sets,
        };
        for idx in 0..n {
            for (key, m) in self.metrics(ctx.stage(), idx)?.iter_mut() {
                ctx.log_metric(&format!("{prefix}_{key}"), m.as_mut(), idx, true)?;
            }
        }
        Ok(())
    }
}

impl LitModule for MInterface {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        self.outputs(input, train)
    }

    fn hparams(&self) -> HParams {
        self.hparams.clone()
    }

    fn setup(&mut self, _stage: Stage) -> Result<()> {
        self.configure_loss()
    }

    fn configure_loss(&mut self) -> Result<()> {
        self.loss = Loss::from_hparams(&self.hparams)?;
        Ok(())
    }

    fn training_step(
        &mut self,
        batch: &Batch,
        _batch_idx: usize,
        ctx: &mut StepContext,
    ) -> Result<Tensor> {
        let logits = self.outputs(&batch.input, true)?;
        let loss = self.loss.compute(&logits, &batch.target)?;
        ctx.log(
            "train_loss",
            &loss,
            LogOptions {
                on_step: true,
                on_epoch: true,
                prog_bar: true,
            },
        )?;
        Ok(loss)
    }

    fn validation_step(
        &mut self,
        batch: &Batch,
        _batch_idx: usize,
        ctx: &mut StepContext,
    ) -> Result<()> {
        self.eval_step(batch, ctx, "val")
    }

    fn on_validation_epoch_end(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.eval_epoch_end(ctx, "val")
    }

    fn test_step(&mut self, batch: &Batch, _batch_idx: usize, ctx: &mut StepContext) -> Result<()> {
        self.eval_step(batch, ctx, "test")
    }

    fn on_test_epoch_end(&mut self, ctx: &mut StepContext) -> Result<()> {
        self.eval_epoch_end(ctx, "test")
    }

    fn configure_optimizers(&mut self) -> Result<Optimization> {
        // The one built with the module, then fresh ones for each later fit.
        match self.optimization.take() {
            Some(o) => Ok(o),
            None => Self::optimization(&self.hparams, &self.varmap),
        }
    }
}
