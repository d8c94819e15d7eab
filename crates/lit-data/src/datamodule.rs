//! The [`DataModule`] interface, as Lightning's `LightningDataModule`.

use crate::{DataLoader, Result, Stage};

/// A loader with the name its logged keys carry (`val_acc/<name>` when there are several).
#[derive(Debug, Clone)]
pub struct NamedLoader {
    /// The dataset's name, such as `mnist_val`.
    pub name: String,
    /// The loader.
    pub loader: DataLoader,
}

/// Everything a run needs to know about its data: how to prepare it and the loaders of each stage.
///
/// Hooks have Lightning's names and no-op defaults; only `train_dataloader` is required for `fit`.
/// Several validation and test loaders are allowed; each is named.
pub trait DataModule {
    /// Downloads or otherwise prepares data once, before `setup`.
    fn prepare_data(&mut self) -> Result<()> {
        Ok(())
    }

    /// Builds the datasets needed by `stage`.
    fn setup(&mut self, _stage: Stage) -> Result<()> {
        Ok(())
    }

    /// The training loader.
    fn train_dataloader(&self) -> Result<DataLoader>;

    /// The validation loaders, in order.
    fn val_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        Ok(Vec::new())
    }

    /// The test loaders, in order.
    fn test_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        Ok(Vec::new())
    }

    /// The prediction loaders; the test loaders unless overridden.
    fn predict_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        self.test_dataloaders()
    }

    /// Releases what `setup` built for `stage`.
    fn teardown(&mut self, _stage: Stage) -> Result<()> {
        Ok(())
    }
}

impl NamedLoader {
    /// A loader named `name` (the suffix of its logged keys when a stage has several).
    pub fn new(name: impl Into<String>, loader: DataLoader) -> Self {
        Self {
            name: name.into(),
            loader,
        }
    }
}

/// A data module made of plain loaders, for `Trainer::fit_loaders` and users who need no
/// `setup`: a training loader and named validation and test loaders.
#[derive(Debug, Clone, Default)]
pub struct Loaders {
    /// The training loader (`fit` needs one).
    pub train: Option<DataLoader>,
    /// Validation loaders.
    pub val: Vec<NamedLoader>,
    /// Test (and predict) loaders.
    pub test: Vec<NamedLoader>,
}

impl DataModule for Loaders {
    fn train_dataloader(&self) -> Result<DataLoader> {
        self.train
            .clone()
            .ok_or_else(|| crate::Error::Invalid("fit needs a training loader".into()))
    }

    fn val_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        Ok(self.val.clone())
    }

    fn test_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        Ok(self.test.clone())
    }
}
