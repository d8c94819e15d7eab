//! [`Curves`]: `curves.png` in the run directory at the end of fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lit_core::{Callback, Error, Result, TrainerState};
use plotters::prelude::*;

/// Draws the training loss and every validation metric per epoch, one line per validation set,
/// into `curves.png` in the run directory when fit ends, so a run can be read without TensorBoard.
#[derive(Debug, Default, Clone)]
pub struct Curves {
    written: Option<PathBuf>,
}

impl Curves {
    /// Writes `curves.png` at the end of fit.
    pub fn new() -> Self {
        Self::default()
    }

    /// The file written, if any.
    pub fn path(&self) -> Option<&Path> {
        self.written.as_deref()
    }
}

/// The panels to draw: the metric name before any `/<set>` suffix, then each series' label and
/// its `(epoch, value)` points.
fn panels(
    history: &[BTreeMap<String, f64>],
) -> BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
    for (epoch, values) in history.iter().enumerate() {
        for (key, v) in values {
            if key.ends_with("_step")
                || !v.is_finite()
                || !(key.starts_with("train_loss") || key.starts_with("val_"))
            {
                continue;
            }
            let metric = key
                .split('/')
                .next()
                .unwrap_or(key)
                .trim_end_matches("_epoch")
                .to_string();
            out.entry(metric)
                .or_default()
                .entry(key.clone())
                .or_default()
                .push(((epoch + 1) as f64, *v));
        }
    }
    out
}

fn draw(
    path: &Path,
    history: &[BTreeMap<String, f64>],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let panels = panels(history);
    if panels.is_empty() {
        return Ok(());
    }
    let epochs = history.len().max(2) as f64;
    let cols = panels.len().min(2);
    let rows = panels.len().div_ceil(cols);
    let root = BitMapBackend::new(path, (560 * cols as u32, 380 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    for ((metric, series), area) in panels.iter().zip(areas.iter()) {
        let (lo, hi) = series
            .values()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(metric, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(1.0..epochs, (lo - pad)..(hi + pad))?;
        // Whole epochs on the x axis: one label each (at most 10), never 1.5.
        let span = (epochs - 1.0).max(1.0) as usize;
        let step = span.div_ceil(10).max(1);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(span / step + 1)
            .x_label_formatter(&|x| epoch_label(*x))
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, (label, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An embedded font: no system font or fontconfig needed to label the plot.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

impl Callback for Curves {
    fn name(&self) -> &str {
        "curves"
    }

    fn on_fit_end(&mut self, s: &mut TrainerState) -> Result<()> {
        let Some(dir) = s.log_dir().filter(|_| s.is_global_zero()) else {
            return Ok(());
        };
        register_font();
        let path = dir.join("curves.png");
        draw(&path, s.history())
            .map_err(|e| Error::Callback(format!("writing {}: {e}", path.display())))?;
        self.written = Some(path);
        Ok(())
    }
}

/// The label of an epoch axis position: whole epochs only.
fn epoch_label(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_axis_labels_whole_epochs_only() {
        assert_eq!(epoch_label(2.0), "2");
        assert_eq!(epoch_label(1.5), "");
        assert_eq!(epoch_label(3.0000000001), "3");
    }

    #[test]
    fn writes_a_png_with_one_line_per_validation_set() {
        let dir = tempfile::tempdir().unwrap();
        let history: Vec<BTreeMap<String, f64>> = (0..3)
            .map(|e| {
                let e = e as f64;
                BTreeMap::from([
                    ("train_loss_epoch".to_string(), 1.0 / (e + 1.0)),
                    ("val_acc/a".to_string(), 0.9 + e / 100.0),
                    ("val_acc/b".to_string(), 0.8 + e / 50.0),
                ])
            })
            .collect();
        assert_eq!(panels(&history)["val_acc"].len(), 2);
        register_font();
        let path = dir.path().join("curves.png");
        draw(&path, &history).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
