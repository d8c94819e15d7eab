//! Setting a fit up: its loaders after the limits, and the checks a module must pass first.

use std::sync::Arc;

use candle::DType;
use lit_data::{DataLoader, DataLoaderConfig, DataModule, NamedLoader, Stage};
use lit_model::LitModule;

use super::Trainer;
use crate::{Error, Limit, Result};

impl Trainer {
    /// The fit's loaders after the limits: training (unshuffled when overfitting), validation
    /// (none when `limit_val_batches` is 0), and the number of training batches per epoch.
    pub(super) fn setup_loaders<M: LitModule, D: DataModule>(
        &mut self,
        module: &mut M,
        dm: &mut D,
    ) -> Result<(DataLoader, Vec<NamedLoader>, usize)> {
        dm.prepare_data()?;
        dm.setup(Stage::Fit)?;
        module.setup(Stage::Fit)?;
        let mut train = dm.train_dataloader()?;
        if train.dataset().is_empty() {
            return Err(Error::Config(
                "the training set has no examples: nothing to train on (check the data files or \
                 the split sizes)"
                    .into(),
            ));
        }
        if self.config.overfit_batches.is_some() {
            // Lightning turns shuffling off to overfit the same batches every epoch.
            let config = DataLoaderConfig {
                shuffle: false,
                ..train.config().clone()
            };
            train = DataLoader::new(Arc::clone(train.dataset()), config)?;
        }
        // limit_val_batches = 0 turns validation off, as if there were no validation sets (so
        // monitors of validation keys fail loudly rather than never acting).
        let vals = match self.config.limit_val_batches {
            Limit::Batches(0) => Vec::new(),
            _ => self.strategy.process_eval_loaders(dm.val_dataloaders()?)?,
        };
        let train = self.strategy.process_train_loader(train)?;
        let n_train = self.config.limit_train_batches.of(train.len());
        if let Some(Limit::Batches(k)) = self.config.val_check_interval {
            if k > n_train && !vals.is_empty() {
                return Err(Error::Config(format!(
                    "val_check_interval = {k} batches is more than the {n_train} training batches \
                     of an epoch; use a smaller count or a fraction such as 0.5"
                )));
            }
        }
        Ok((train, vals, n_train))
    }

    /// Refuses a module whose float parameters are not in the precision's parameter type (a
    /// `bf16-true` trainer with f32 parameters would silently train as mixed precision).
    pub(super) fn check_param_dtype<M: LitModule>(&self, module: &M) -> Result<()> {
        let want = self.precision.param_dtype();
        let data = module.varmap().data().lock().expect("varmap lock poisoned");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let have = data[name].dtype();
            // f64 parameters are the user's choice under 32-bit precisions; half ones are not.
            let wrong = match want {
                DType::F32 => matches!(have, DType::BF16 | DType::F16),
                _ => have.is_float() && have != want,
            };
            if wrong {
                return Err(Error::Config(format!(
                    "precision {} needs the module's parameters in {want:?}, but {name} is \
                     {have:?}; MInterface builds them from the `precision` hyperparameter, so set \
                     it to the trainer's precision",
                    self.precision.name()
                )));
            }
        }
        Ok(())
    }
}
