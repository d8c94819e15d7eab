//! Callbacks for the lit [`Trainer`](lit_core::Trainer).
//!
//! - [`ProgressBar`]: one live line per stage with the loss, the progress-bar metrics, samples/s
//!   and the ETA; plain periodic lines when stdout is not a terminal, so CI logs stay readable.

mod progress;

pub use progress::ProgressBar;
