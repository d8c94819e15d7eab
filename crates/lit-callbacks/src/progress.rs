//! [`ProgressBar`]: what a user sees while a run goes.
// A progress display is the one library component whose job is to draw on the terminal.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar as Bar, ProgressDrawTarget, ProgressStyle};
use lit_core::lit_model::RunningStage;
use lit_core::{Callback, Result, TrainerState};

/// Shows training and evaluation progress.
///
/// On a terminal each stage gets one bar that updates in place (validation replaces itself rather
/// than leaving a trail); elsewhere a plain line is printed every `plain_every` (default 10 s) and
/// at every epoch end. Each epoch ends with a summary line of its values.
pub struct ProgressBar {
    terminal: bool,
    plain_every: Duration,
    /// The bars on a terminal: the stage's, and validation's below it while it runs.
    bars: MultiProgress,
    bar: Option<Bar>,
    val_bar: Option<Bar>,
    started: Instant,
    samples: usize,
    last_plain: Instant,
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

fn fmt_values(values: &BTreeMap<String, f64>, keys: &[String]) -> String {
    keys.iter()
        .filter_map(|k| values.get(k).map(|v| format!("{k}={v:.4}")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl ProgressBar {
    /// A display that draws bars when stdout is a terminal.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            terminal: std::io::stdout().is_terminal(),
            plain_every: Duration::from_secs(10),
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bar: None,
            val_bar: None,
            started: now,
            samples: 0,
            last_plain: now,
        }
    }

    /// Forces plain lines (or bars) whatever stdout is.
    pub fn plain(mut self, plain: bool) -> Self {
        self.terminal = !plain;
        self
    }

    fn label(s: &TrainerState) -> String {
        match s.stage() {
            Some(RunningStage::Train) => format!("epoch {}/{}", s.epoch() + 1, s.max_epochs()),
            Some(RunningStage::SanityCheck) => "sanity check".into(),
            Some(RunningStage::Validate) => {
                format!("validate {}", s.dataloader_name().unwrap_or(""))
            }
            Some(RunningStage::Test) => {
                format!("test {}", s.dataloader_name().unwrap_or(""))
            }
            Some(RunningStage::Predict) => "predict".into(),
            None => String::new(),
        }
    }

    fn start(&mut self, s: &TrainerState) {
        self.finish_bar();
        self.started = Instant::now();
        self.last_plain = self.started;
        self.samples = 0;
        if self.terminal {
            self.bar = Some(self.new_bar(s));
        }
    }

    fn new_bar(&self, s: &TrainerState) -> Bar {
        let bar = self.bars.add(Bar::new(s.num_batches() as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(Self::label(s));
        bar
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn message(&self, s: &TrainerState) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut msg = format!("{:.0} samples/s", self.samples as f64 / secs);
        if s.stage() == Some(RunningStage::Train) {
            if let Some(loss) = s.last_train_loss() {
                msg = format!("loss={loss:.4} {msg}");
            }
        }
        msg
    }

    fn advance(&mut self, s: &TrainerState, batch_idx: usize) {
        self.samples += s.batch_size();
        let msg = self.message(s);
        if let Some(bar) = &self.bar {
            bar.set_position(batch_idx as u64 + 1);
            bar.set_message(msg);
        } else if self.last_plain.elapsed() >= self.plain_every {
            self.last_plain = Instant::now();
            line(&format!(
                "{} {}/{} {msg}",
                Self::label(s),
                batch_idx + 1,
                s.num_batches()
            ));
        }
    }

    fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => line(text),
        }
    }
}

/// A line on stdout; a reader that went away (`| head`) costs the run nothing, so a failed
/// write is dropped rather than ending training.
fn line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

impl Callback for ProgressBar {
    fn name(&self) -> &str {
        "progress_bar"
    }

    fn on_train_epoch_start(&mut self, s: &mut TrainerState) -> Result<()> {
        self.start(s);
        Ok(())
    }

    fn on_train_batch_end(&mut self, s: &mut TrainerState, batch_idx: usize) -> Result<()> {
        if s.stage() == Some(RunningStage::Train) {
            self.advance(s, batch_idx);
        }
        Ok(())
    }

    fn on_train_epoch_end(&mut self, s: &mut TrainerState) -> Result<()> {
        let secs = self.started.elapsed().as_secs_f64();
        self.finish_bar();
        if s.epoch_interrupted() {
            line(&format!(
                "epoch {}/{} stopped after batch {} of {} ({secs:.1}s): {}",
                s.epoch() + 1,
                s.max_epochs(),
                s.resume_point().1,
                s.num_batches(),
                s.stop_reason().unwrap_or("a stop was asked for")
            ));
            return Ok(());
        }
        let mut keys: Vec<String> = s
            .epoch_metrics()
            .keys()
            .filter(|k| !k.ends_with("_step"))
            .cloned()
            .collect();
        keys.sort_by_key(|k| (!k.starts_with("train"), k.clone()));
        line(&format!(
            "epoch {}/{} ({secs:.1}s, {:.0} samples/s): {}",
            s.epoch() + 1,
            s.max_epochs(),
            self.samples as f64 / secs.max(1e-9),
            fmt_values(s.epoch_metrics(), &keys)
        ));
        Ok(())
    }

    fn on_validation_start(&mut self, s: &mut TrainerState) -> Result<()> {
        // Validation draws its own bar below the training one and clears it when done.
        if self.terminal {
            if let Some(bar) = &self.bar {
                bar.set_message(format!("{} (validating)", self.message(s)));
            }
            self.val_bar = Some(self.new_bar(s));
        }
        Ok(())
    }

    fn on_validation_batch_end(
        &mut self,
        s: &mut TrainerState,
        _idx: usize,
        batch_idx: usize,
    ) -> Result<()> {
        if let Some(bar) = &self.val_bar {
            bar.set_prefix(Self::label(s));
            bar.set_length(s.num_batches() as u64);
            bar.set_position(batch_idx as u64 + 1);
        }
        Ok(())
    }

    fn on_validation_end(&mut self, _s: &mut TrainerState) -> Result<()> {
        if let Some(bar) = self.val_bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }

    fn on_sanity_check_end(&mut self, _s: &mut TrainerState) -> Result<()> {
        self.println("sanity check passed");
        Ok(())
    }

    fn on_test_start(&mut self, s: &mut TrainerState) -> Result<()> {
        self.start(s);
        Ok(())
    }

    fn on_test_batch_end(
        &mut self,
        s: &mut TrainerState,
        _idx: usize,
        batch_idx: usize,
    ) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_prefix(Self::label(s));
            bar.set_length(s.num_batches() as u64);
        }
        self.advance(s, batch_idx);
        Ok(())
    }

    fn on_test_end(&mut self, _s: &mut TrainerState) -> Result<()> {
        self.finish_bar();
        Ok(())
    }

    fn on_exception(&mut self, _s: &mut TrainerState, _error: &lit_core::Error) {
        if let Some(bar) = self.val_bar.take() {
            bar.finish_and_clear();
        }
        self.finish_bar();
    }
}
