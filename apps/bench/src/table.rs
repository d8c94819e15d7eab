//! The bench's table: a row per variant, times relative to the bare loop, and medians.

// The bench prints its table.
#![allow(clippy::print_stdout)]

/// One variant's result: seconds per 60,000-image epoch and peak resident memory.
pub(crate) struct Row {
    pub(crate) variant: &'static str,
    pub(crate) epoch_seconds: f64,
    pub(crate) peak_mb: f64,
}

/// The table, with times relative to the bare loop on lit's kernels (the second row).
pub(crate) fn print_rows(rows: &[Row]) {
    println!(
        "{:<10} {:>12} {:>14} {:>14} {:>10}",
        "variant", "samples/s", "s per epoch", "peak MB", "ratio"
    );
    let base = rows[1].epoch_seconds;
    for r in rows {
        println!(
            "{:<10} {:>12.0} {:>14.2} {:>14.0} {:>10.3}",
            r.variant,
            60_000.0 / r.epoch_seconds,
            r.epoch_seconds,
            r.peak_mb,
            r.epoch_seconds / base
        );
    }
    println!(
        "framework overhead (lit / bare, same kernels): {:.3}",
        rows[2].epoch_seconds / base
    );
    println!(
        "lit's kernels against candle's (bare loops): {:.2}x faster",
        rows[0].epoch_seconds / base
    );
}

/// The median of `xs` (NaN when empty).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}
