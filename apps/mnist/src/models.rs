//! The models this binary can train, by name: the one place a model is registered.
//!
//! `cargo xtask new-model NAME` adds a line above the marker comment.

use lit_model::ModelRegistry;

/// Every registered network.
pub(crate) fn registry() -> ModelRegistry {
    let mut r = ModelRegistry::new();
    r.register::<example_net::ExampleNet>("example_net");
    r.register::<standard_net::StandardNet>("standard_net");
    r.register::<resnet::ResNet>("resnet");
    r.register::<mlp::Mlp>("mlp");
    // lit:register-models
    r
}
