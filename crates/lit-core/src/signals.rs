//! Signals as clean stops, as Lightning's signal connector: during `fit`, the first SIGINT,
//! SIGTERM or SIGUSR1 (what Slurm's `--signal` sends before pre-emption) asks the loop to stop at
//! the end of the current batch, write `last` and flush its loggers; a second SIGINT or SIGTERM
//! ends the process at once with 128 + its number. Outside a fit the signals keep their default
//! action.
//!
//! The handlers are installed once per process and stay: a [`SignalGuard`] arms them for the
//! time it lives (a fit), and their default action is emulated while none lives. Handlers only
//! store atomics (and, for the second signal, call `_exit`), which is all a signal handler may
//! safely do.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// SIGINT's number.
#[cfg(unix)]
pub const SIGINT: i32 = signal_hook::consts::SIGINT;
/// SIGTERM's number.
#[cfg(unix)]
pub const SIGTERM: i32 = signal_hook::consts::SIGTERM;
/// SIGUSR1's number (10 on Linux, 30 on macOS).
#[cfg(unix)]
pub const SIGUSR1: i32 = signal_hook::consts::SIGUSR1;
/// SIGINT's number.
#[cfg(not(unix))]
pub const SIGINT: i32 = 2;
/// SIGTERM's number.
#[cfg(not(unix))]
pub const SIGTERM: i32 = 15;
/// SIGUSR1's number (none off Unix).
#[cfg(not(unix))]
pub const SIGUSR1: i32 = -1;

/// The name of signal `signal` (`SIGTERM`), or `signal N`.
pub fn name(signal: i32) -> String {
    lit_base::signal_name(signal)
}

/// The process's handlers: what they set, and how many guards arm them.
struct Handlers {
    /// The signal received in the current fit (0: none).
    received: Arc<AtomicUsize>,
    /// Set by the first signal: a second SIGINT or SIGTERM exits at once.
    armed: Arc<AtomicBool>,
    /// True while no guard lives: the signals take their default action.
    outside: Arc<AtomicBool>,
    /// Living guards.
    guards: Mutex<usize>,
}

static HANDLERS: OnceLock<Option<Handlers>> = OnceLock::new();

#[cfg(unix)]
fn install() -> std::io::Result<Handlers> {
    use signal_hook::flag;
    let h = Handlers {
        received: Arc::new(AtomicUsize::new(0)),
        armed: Arc::new(AtomicBool::new(false)),
        outside: Arc::new(AtomicBool::new(true)),
        guards: Mutex::new(0),
    };
    for sig in [SIGINT, SIGTERM, SIGUSR1] {
        // The order matters: outside a fit the default action; a second terminating signal
        // exits before the first's flag is looked at; then the flags.
        flag::register_conditional_default(sig, Arc::clone(&h.outside))?;
        if sig != SIGUSR1 {
            flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&h.armed))?;
        }
        flag::register_usize(sig, Arc::clone(&h.received), sig as usize)?;
        flag::register(sig, Arc::clone(&h.armed))?;
    }
    announce(Arc::clone(&h.received));
    Ok(h)
}

/// Says at once that a signal was received (the stop itself waits for the batch to end, which
/// can take a while on a large model), from a thread that looks every 50 ms.
#[cfg(unix)]
fn announce(received: Arc<AtomicUsize>) {
    let spawned = std::thread::Builder::new()
        .name("lit-signals".into())
        .spawn(move || {
            let mut told = 0;
            loop {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let now = received.load(Ordering::SeqCst);
                if now != 0 && now != told {
                    let name = name(i32::try_from(now).unwrap_or(0));
                    tracing::info!(target: crate::REPORT_TARGET,
                        "{name} received: training stops at the end of the current batch and \
                         writes `last` (a second SIGINT or SIGTERM ends it at once)");
                }
                told = now;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no thread to announce signals: {e}");
    }
}

#[cfg(not(unix))]
fn install() -> std::io::Result<Handlers> {
    Err(std::io::Error::other("signals are handled on Unix only"))
}

fn handlers() -> Option<&'static Handlers> {
    HANDLERS
        .get_or_init(|| match install() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(
                    "signal handlers not installed ({e}): a signal ends the run at once"
                );
                None
            }
        })
        .as_ref()
}

/// Arms the handlers while it lives: a signal is then recorded for the loop instead of ending
/// the process.
#[derive(Debug)]
pub struct SignalGuard {
    armed: bool,
}

impl SignalGuard {
    /// Arms the handlers (installing them on first use) and forgets earlier signals.
    pub fn arm() -> Self {
        let Some(h) = handlers() else {
            return Self { armed: false };
        };
        let mut guards = h.guards.lock().expect("signal guard count poisoned");
        if *guards == 0 {
            h.received.store(0, Ordering::SeqCst);
            h.armed.store(false, Ordering::SeqCst);
        }
        *guards += 1;
        h.outside.store(false, Ordering::SeqCst);
        Self { armed: true }
    }

    /// The signal received since the handlers were armed, if any.
    pub fn received(&self) -> Option<i32> {
        let h = handlers().filter(|_| self.armed)?;
        match h.received.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let Some(h) = handlers().filter(|_| self.armed) else {
            return;
        };
        let mut guards = h.guards.lock().expect("signal guard count poisoned");
        *guards = guards.saturating_sub(1);
        if *guards == 0 {
            h.outside.store(true, Ordering::SeqCst);
        }
    }
}
