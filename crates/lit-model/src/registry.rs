//! [`Net`] and [`ModelRegistry`]: plain networks chosen by name.

use candle::{ModuleT, Tensor};
use candle_nn::VarBuilder;
use lit_base::{HParams, Registry};
use serde::{de::DeserializeOwned, Serialize};

use crate::Result;

/// A plain network: built from a `Config` and a `VarBuilder`, with a forward pass that takes a
/// train flag. Nothing about losses, optimizers or logging.
///
/// `Config` is filled from the run's hyperparameters by field name (unknown keys ignored, missing
/// ones from `Default`), so a new hyperparameter needs no change anywhere but the `Config`.
pub trait Net: ModuleT + Send + Sync + Sized + 'static {
    /// The network's own hyperparameters; give it `#[serde(default)]`.
    type Config: DeserializeOwned + Serialize + Default;

    /// Builds the network, creating its parameters through `vb`.
    fn new(config: &Self::Config, vb: VarBuilder) -> candle::Result<Self>;
}

/// A network behind a trait object, as the registry builds it.
pub type BoxedNet = Box<dyn ModuleT + Send + Sync>;

type Builder = Box<dyn Fn(&HParams, VarBuilder) -> Result<(BoxedNet, HParams)> + Send + Sync>;

/// A registered network: its builder and its `Config`'s keys with their defaults.
struct Entry {
    build: Builder,
    keys: Vec<String>,
    defaults: HParams,
}

/// Network builders by snake_case name (a [`Registry`] of them).
pub struct ModelRegistry {
    entries: Registry<Entry>,
}

impl Default for ModelRegistry {
    fn default() -> Self {
        Self {
            entries: Registry::new("model"),
        }
    }
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.names()).finish()
    }
}

struct Wrapped<N>(N);

impl<N: Net> ModuleT for Wrapped<N> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle::Result<Tensor> {
        self.0.forward_t(xs, train)
    }
}

impl ModelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers network `N` under `name`.
    pub fn register<N: Net>(&mut self, name: &str) -> &mut Self {
        let build: Builder = Box::new(|hparams: &HParams, vb: VarBuilder| {
            let config: N::Config = hparams.to_config()?;
            let resolved = HParams::from_serialize(&config)?;
            let net = N::new(&config, vb)?;
            Ok((Box::new(Wrapped(net)) as BoxedNet, resolved))
        });
        let defaults = HParams::from_serialize(&N::Config::default()).unwrap_or_default();
        let keys = defaults.iter().map(|(k, _)| k.clone()).collect();
        self.entries.register(
            name,
            Entry {
                build,
                keys,
                defaults,
            },
        );
        self
    }

    /// The hyperparameter keys of network `name`'s own `Config` (empty for an unknown name).
    pub fn config_keys(&self, name: &str) -> &[String] {
        self.entries.get(name).map_or(&[], |e| e.keys.as_slice())
    }

    /// Network `name`'s own `Config` keys with their defaults (empty for an unknown name).
    pub fn config_defaults(&self, name: &str) -> HParams {
        self.entries
            .get(name)
            .map_or_else(|_| HParams::new(), |e| e.defaults.clone())
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries.names()
    }

    /// Fails with the list of registered names unless `name` is one.
    pub fn check(&self, name: &str) -> Result<()> {
        self.entries.get(name)?;
        Ok(())
    }

    /// Builds network `name` from `hparams`; also returns its resolved `Config` as hyperparameters.
    pub fn build(
        &self,
        name: &str,
        hparams: &HParams,
        vb: VarBuilder,
    ) -> Result<(BoxedNet, HParams)> {
        (self.entries.get(name)?.build)(hparams, vb)
    }
}
