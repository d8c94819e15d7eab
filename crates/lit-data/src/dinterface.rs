//! [`DInterface`]: the generic data module that builds datasets by registered name.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::DataHParams;
use crate::{
    defaults_of, DataInfo, DataLoader, DataLoaderConfig, DataModule, Dataset, Error, HParams,
    NamedLoader, Registry, Result, Stage,
};

/// The environment variable naming the data root: a folder holding `mnist/`, `fashion-mnist/`, ...
pub const DATA_DIR_ENV: &str = "LIT_DATA_DIR";

/// The part of the data a dataset is built for: one name (`image_folder`) serves several, each
/// taking its own split of the same files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set.
    Train,
    /// A validation set.
    Val,
    /// A test set.
    Test,
    /// A set `predict` runs on.
    Predict,
}

type Cache = Arc<Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>>;

/// What a dataset builder gets: the run's hyperparameters, the data roots to search, the split it
/// builds, and a cache so that datasets cut from the same files (train and validation splits)
/// read them once.
#[derive(Clone)]
pub struct DataContext {
    /// The run's hyperparameters.
    pub hparams: HParams,
    /// Folders to search for data files, in order.
    pub roots: Vec<PathBuf>,
    /// Whether `roots` is the user's explicit choice (`data_dir`), which allows no fallback to
    /// system folders or downloads.
    pub explicit: bool,
    /// The split being built.
    pub split: Split,
    cache: Cache,
}

impl std::fmt::Debug for DataContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataContext")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl DataContext {
    /// A context whose data roots are, in order: the `data_dir` hyperparameter, `$LIT_DATA_DIR`,
    /// then `data/`. An explicit `data_dir` is the only root, with no fallback: it must be a
    /// folder, and a data set missing there is an error, not a search elsewhere.
    pub fn new(hparams: HParams) -> Result<Self> {
        let mut roots = Vec::new();
        let explicit = hparams.get::<String>("data_dir")?.map(PathBuf::from);
        if let Some(dir) = &explicit {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::HParam {
                        key: "data_dir".into(),
                        message: format!(
                            "{} is a file; expected a folder holding mnist/",
                            dir.display()
                        ),
                    })
                }
                Err(e) => {
                    return Err(Error::HParam {
                        key: "data_dir".into(),
                        message: format!(
                            "{}: {e}; expected a folder holding mnist/",
                            dir.display()
                        ),
                    })
                }
            }
            roots.push(dir.clone());
        } else {
            if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
                roots.push(PathBuf::from(dir));
            }
            roots.push(PathBuf::from("data"));
        }
        Ok(Self {
            hparams,
            roots,
            explicit: explicit.is_some(),
            split: Split::Train,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The same context (and cache) building `split`.
    pub fn for_split(&self, split: Split) -> Self {
        Self {
            split,
            ..self.clone()
        }
    }

    /// The value cached under `key`, built by `make` the first time.
    pub fn cached<T: Send + Sync + 'static>(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<T>> {
        let hit = self
            .cache
            .lock()
            .expect("cache lock poisoned")
            .get(key)
            .cloned();
        if let Some(v) = hit {
            if let Ok(v) = v.downcast::<T>() {
                return Ok(v);
            }
        }
        let v = Arc::new(make()?);
        self.cache
            .lock()
            .expect("cache lock poisoned")
            .insert(key.to_string(), v.clone());
        Ok(v)
    }
}

/// Builds a dataset from the context.
pub type DatasetBuilder = Box<dyn Fn(&DataContext) -> Result<Arc<dyn Dataset>> + Send + Sync>;

/// Dataset builders by snake_case name (a [`Registry`] of builders), with the hyperparameter keys
/// the datasets read.
pub struct DatasetRegistry {
    builders: Registry<DatasetBuilder>,
    /// The keys the datasets read, with their defaults.
    defaults: HParams,
}

impl Default for DatasetRegistry {
    fn default() -> Self {
        Self {
            builders: Registry::new("dataset"),
            defaults: HParams::new(),
        }
    }
}

impl std::fmt::Debug for DatasetRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.builders.names()).finish()
    }
}

impl DatasetRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `build` under `name`, replacing any earlier one.
    pub fn register<F>(&mut self, name: &str, build: F) -> &mut Self
    where
        F: Fn(&DataContext) -> Result<Arc<dyn Dataset>> + Send + Sync + 'static,
    {
        self.builders.register(name, Box::new(build));
        self
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.builders.names()
    }

    /// Declares the keys the registered datasets read, as a config whose fields are the keys
    /// and whose `Default` gives their defaults (see [`crate::config`]): a config naming them is
    /// not refused as misspelt, and `--print-config` shows them.
    pub fn declare_config<T: Serialize + Default>(&mut self) -> &mut Self {
        self.defaults.merge_missing(&defaults_of::<T>());
        self
    }

    /// Every key the data side reads ([`DataHParams`]' and the declared configs'), with its
    /// default (null where it has none).
    pub fn defaults(&self) -> HParams {
        let mut all = defaults_of::<DataHParams>();
        for (k, v) in self.defaults.iter() {
            if !all.contains(k) {
                all.set(k.clone(), v).expect("a JSON value serialises");
            }
        }
        all
    }

    /// The keys the data side reads.
    pub fn keys(&self) -> Vec<String> {
        self.defaults().iter().map(|(k, _)| k.clone()).collect()
    }

    /// Fails with the list of registered names unless `name` is one.
    pub fn check(&self, name: &str) -> Result<()> {
        self.builders.get(name)?;
        Ok(())
    }

    /// Builds the dataset registered under `name`.
    pub fn build(&self, name: &str, ctx: &DataContext) -> Result<Arc<dyn Dataset>> {
        let dataset = (self.builders.get(name)?)(ctx)?;
        tracing::debug!(name, len = dataset.len(), "built dataset");
        Ok(dataset)
    }
}

/// The generic data module: a train set, named validation sets and named test sets, all chosen by
/// registered name from the hyperparameters.
///
/// Keys read: `train_dataset` (a name), `val_datasets` and `test_datasets` (comma-separated names
/// or lists), `predict_datasets` (defaults to the test sets), `batch_size` (64), `num_workers` (1),
/// `seed` (1234), and whatever the builders read themselves. Unknown names fail at construction,
/// before any data is read.
pub struct DInterface {
    registry: DatasetRegistry,
    ctx: DataContext,
    train_name: Option<String>,
    val_names: Vec<String>,
    test_names: Vec<String>,
    predict_names: Vec<String>,
    train: Option<Arc<dyn Dataset>>,
    val: Vec<(String, Arc<dyn Dataset>)>,
    test: Vec<(String, Arc<dyn Dataset>)>,
    predict: Vec<(String, Arc<dyn Dataset>)>,
    batch_size: usize,
    num_workers: usize,
    seed: u64,
}

impl std::fmt::Debug for DInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DInterface")
            .field("train", &self.train_name)
            .field("val", &self.val_names)
            .field("test", &self.test_names)
            .finish_non_exhaustive()
    }
}

impl DInterface {
    /// A data module over `registry` configured by `hparams`.
    pub fn new(registry: DatasetRegistry, hparams: HParams) -> Result<Self> {
        let DataHParams {
            train_dataset: train_name,
            val_datasets: val_names,
            test_datasets: test_names,
            predict_datasets,
            batch_size,
            num_workers,
            seed,
            data_dir: _,
        } = hparams.to_config()?;
        let predict_names = predict_datasets.unwrap_or_else(|| test_names.clone());
        for name in train_name
            .iter()
            .chain(&val_names)
            .chain(&test_names)
            .chain(&predict_names)
        {
            registry.check(name)?;
        }
        if batch_size == 0 {
            return Err(Error::HParam {
                key: "batch_size".into(),
                message: "must be at least 1, got 0".into(),
            });
        }
        let ctx = DataContext::new(hparams)?;
        Ok(Self {
            registry,
            ctx,
            train_name,
            val_names,
            test_names,
            predict_names,
            train: None,
            val: Vec::new(),
            test: Vec::new(),
            predict: Vec::new(),
            batch_size,
            num_workers,
            seed,
        })
    }

    fn build_all(&self, names: &[String], split: Split) -> Result<Vec<(String, Arc<dyn Dataset>)>> {
        let ctx = self.ctx.for_split(split);
        names
            .iter()
            .map(|n| Ok((n.clone(), self.registry.build(n, &ctx)?)))
            .collect()
    }

    /// What the data of `stage` tells the model (see [`DataInfo`]): the training set's for
    /// `fit`, else the first set of the stage; `None` when none is named or it does not say.
    /// The dataset is built through the context's cache, so `setup` reads nothing twice.
    pub fn info(&self, stage: Stage) -> Result<Option<DataInfo>> {
        let first = match stage {
            Stage::Fit => self.train_name.as_ref().map(|n| (n, Split::Train)),
            Stage::Validate => self.val_names.first().map(|n| (n, Split::Val)),
            Stage::Test => self.test_names.first().map(|n| (n, Split::Test)),
            Stage::Predict => self.predict_names.first().map(|n| (n, Split::Predict)),
        };
        match first {
            Some((name, split)) => Ok(self
                .registry
                .build(name, &self.ctx.for_split(split))?
                .info()),
            None => Ok(None),
        }
    }

    fn loader(&self, dataset: &Arc<dyn Dataset>, shuffle: bool) -> Result<DataLoader> {
        DataLoader::new(
            Arc::clone(dataset),
            DataLoaderConfig {
                batch_size: self.batch_size,
                shuffle,
                drop_last: false,
                num_workers: self.num_workers,
                prefetch_factor: 2,
                seed: self.seed,
                shard: None,
            },
        )
    }

    fn named(&self, sets: &[(String, Arc<dyn Dataset>)]) -> Result<Vec<NamedLoader>> {
        sets.iter()
            .map(|(name, ds)| {
                Ok(NamedLoader {
                    name: name.clone(),
                    loader: self.loader(ds, false)?,
                })
            })
            .collect()
    }
}

impl DataModule for DInterface {
    fn setup(&mut self, stage: Stage) -> Result<()> {
        match stage {
            Stage::Fit => {
                let name = self.train_name.clone().ok_or_else(|| Error::HParam {
                    key: "train_dataset".into(),
                    message: format!(
                        "fit needs a training set; registered: {}",
                        self.registry.names().join(", ")
                    ),
                })?;
                self.train = Some(
                    self.registry
                        .build(&name, &self.ctx.for_split(Split::Train))?,
                );
                self.val = self.build_all(&self.val_names, Split::Val)?;
            }
            Stage::Validate => self.val = self.build_all(&self.val_names, Split::Val)?,
            Stage::Test => self.test = self.build_all(&self.test_names, Split::Test)?,
            Stage::Predict => self.predict = self.build_all(&self.predict_names, Split::Predict)?,
        }
        Ok(())
    }

    fn train_dataloader(&self) -> Result<DataLoader> {
        let ds = self
            .train
            .as_ref()
            .ok_or_else(|| Error::Invalid("train_dataloader called before setup(Fit)".into()))?;
        self.loader(ds, true)
    }

    fn val_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        self.named(&self.val)
    }

    fn test_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        self.named(&self.test)
    }

    fn predict_dataloaders(&self) -> Result<Vec<NamedLoader>> {
        self.named(&self.predict)
    }

    fn teardown(&mut self, stage: Stage) -> Result<()> {
        match stage {
            Stage::Fit => {
                self.train = None;
                self.val.clear();
            }
            Stage::Validate => self.val.clear(),
            Stage::Test => self.test.clear(),
            Stage::Predict => self.predict.clear(),
        }
        Ok(())
    }
}
