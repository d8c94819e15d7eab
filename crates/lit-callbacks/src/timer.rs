//! [`Timer`]: stop cleanly after a wall-clock budget (`max_time`).
// Stopping is announced to the user.

use std::time::{Duration, Instant};

use lit_core::{Callback, Result, TrainerState};

/// Stops training once `duration` of training time has passed, as Lightning's `Timer`. The time
/// already spent is saved in checkpoints, so a resumed run keeps counting from there.
#[derive(Debug, Clone)]
pub struct Timer {
    /// The budget.
    pub duration: Duration,
    offset: Duration,
    started: Option<Instant>,
}

impl Timer {
    /// A budget of `duration`.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            offset: Duration::ZERO,
            started: None,
        }
    }

    /// Parses `DD:HH:MM:SS`, `HH:MM:SS`, `MM:SS` or a number of seconds.
    pub fn parse(s: &str) -> Option<Duration> {
        let parts: Vec<u64> = s
            .split(':')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        let secs = parts
            .iter()
            .rev()
            .zip([1, 60, 3600, 86_400])
            .map(|(v, m)| v * m)
            .sum::<u64>();
        (parts.len() <= 4).then_some(Duration::from_secs(secs))
    }

    /// Training time spent so far.
    pub fn elapsed(&self) -> Duration {
        self.offset + self.started.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

impl Callback for Timer {
    fn name(&self) -> &str {
        "timer"
    }

    fn on_train_start(&mut self, _s: &mut TrainerState) -> Result<()> {
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_train_batch_end(&mut self, s: &mut TrainerState, _batch_idx: usize) -> Result<()> {
        if !s.should_stop() && self.elapsed() >= self.duration {
            tracing::info!(target: lit_core::REPORT_TARGET,
                "time limit of {:?} reached after {:.1?}; stopping",
                self.duration,
                self.elapsed()
            );
            s.stop(format!("max_time {:?} reached", self.duration));
        }
        Ok(())
    }

    fn state_dict(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "elapsed_secs": self.elapsed().as_secs_f64() }))
    }

    fn load_state_dict(&mut self, state: &serde_json::Value) -> Result<()> {
        self.offset = Duration::from_secs_f64(
            state
                .get("elapsed_secs")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lightning_durations() {
        assert_eq!(Timer::parse("00:00:01:30"), Some(Duration::from_secs(90)));
        assert_eq!(Timer::parse("1:00:00"), Some(Duration::from_secs(3600)));
        assert_eq!(Timer::parse("45"), Some(Duration::from_secs(45)));
        assert_eq!(Timer::parse("x"), None);
    }
}
