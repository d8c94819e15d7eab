//! What the app writes for the user: results on stdout (a closed pipe ends the program quietly,
//! as Unix tools do; a full device is a clear error), the tables of metrics and the predictions'
//! CSV.

use std::collections::BTreeMap;
use std::io::Write;

/// Set when stdout carries data (`predict --output -`): the program's notes go to stderr.
static NOTES_TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends the program's notes (checkpoint, run directory, tables) to stderr from now on, so that
/// stdout carries only the data written there.
pub(crate) fn notes_to_stderr() {
    NOTES_TO_STDERR.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Writes `text` to stdout. A reader that went away (`mnist test | head -1`) ends the program
/// at once with the status a process SIGPIPE ended has (141), saying nothing; any other failure
/// (`> /dev/full`) is an error naming the cause, and exit status 1.
pub(crate) fn stdout(text: &str) {
    if NOTES_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        eprint!("{text}");
        return;
    }
    let mut out = std::io::stdout().lock();
    let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) else {
        return;
    };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("error: writing to standard output: {e}");
    std::process::exit(1);
}

/// The longest word an error quotes whole; a longer one (a 100 MB value in a config file) is
/// shown by its beginning and its length.
const LONGEST_WORD: usize = 120;

/// `text` with each word longer than [`LONGEST_WORD`] characters cut to its beginning.
pub(crate) fn shorten_words(text: &str) -> String {
    if text.len() <= LONGEST_WORD {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len().min(4 * LONGEST_WORD));
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match word.char_indices().nth(LONGEST_WORD / 2) {
            Some((cut, _)) if word.chars().count() > LONGEST_WORD => {
                out.push_str(&word[..cut]);
                out.push_str(&format!("... ({} bytes in all)", word.len()));
            }
            _ => out.push_str(word),
        }
        if out.len() > LONGEST_MESSAGE {
            out.push_str(&format!("... ({} bytes in all)", text.len()));
            break;
        }
    }
    out
}

/// The longest message shown whole (many short words can make a long one too).
const LONGEST_MESSAGE: usize = 4000;

/// A table of metric values, as Lightning prints at the end of `validate` and `test`.
pub(crate) fn print_table(title: &str, values: &BTreeMap<String, f64>) {
    let width = values
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(title.len());
    let rule = format!("+-{}-+------------+", "-".repeat(width));
    let mut text = format!("{rule}\n| {title:<width$} | {:>10} |\n{rule}\n", "value");
    for (k, v) in values {
        text.push_str(&format!("| {k:<width$} | {v:>10.4} |\n"));
    }
    text.push_str(&rule);
    text.push('\n');
    stdout(&text);
}

/// `dataset,index,prediction,prob_0,...`: the class with the highest score and the softmax of
/// the scores (the class probabilities of a classifier trained with cross-entropy); for a
/// regression, `dataset,index,prediction` with the predicted value.
pub(crate) fn predictions_csv(
    outputs: &[(String, candle::Tensor)],
    info: Option<&lit_data::DataInfo>,
) -> anyhow::Result<String> {
    if info.is_some_and(|i| matches!(i.task, lit_data::Task::Regression { .. })) {
        return values_csv(outputs);
    }
    let classes = outputs
        .first()
        .map_or(0, |(_, t)| t.dims().last().copied().unwrap_or(0));
    // The first set's files and the classes' names, when the data names them (image folders).
    let files = info.map_or(&[][..], |i| i.files.as_slice());
    let names = info.map_or(&[][..], |i| i.classes.as_slice());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["dataset".to_string(), "index".into()];
    if !files.is_empty() {
        header.push("file".into());
    }
    header.push("prediction".into());
    if !names.is_empty() {
        header.push("class".into());
    }
    header.extend((0..classes).map(|c| format!("prob_{c}")));
    w.write_record(&header)?;
    for (set, (name, scores)) in outputs.iter().enumerate() {
        let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(candle::DType::F32)?)?
            .to_vec2::<f32>()?;
        for (i, row) in probs.iter().enumerate() {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(c, _)| c);
            let mut record = vec![name.clone(), i.to_string()];
            if !files.is_empty() {
                let file = files.get(i).filter(|_| set == 0);
                record.push(file.map_or(String::new(), |f| f.display().to_string()));
            }
            record.push(best.to_string());
            if !names.is_empty() {
                record.push(names.get(best).cloned().unwrap_or_default());
            }
            record.extend(row.iter().map(f32::to_string));
            w.write_record(&record)?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// `dataset,index,prediction`: a regression's predicted values (several per example are
/// `prediction_0`, `prediction_1`, ...).
fn values_csv(outputs: &[(String, candle::Tensor)]) -> anyhow::Result<String> {
    let width = outputs
        .first()
        .map_or(1, |(_, t)| t.dims().last().copied().unwrap_or(1));
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["dataset".to_string(), "index".into()];
    match width {
        1 => header.push("prediction".into()),
        n => header.extend((0..n).map(|k| format!("prediction_{k}"))),
    }
    w.write_record(&header)?;
    for (name, values) in outputs {
        let rows = values
            .to_dtype(candle::DType::F32)?
            .flatten_from(1)?
            .to_vec2::<f32>()?;
        for (i, row) in rows.iter().enumerate() {
            let mut record = vec![name.clone(), i.to_string()];
            record.extend(row.iter().map(f32::to_string));
            w.write_record(&record)?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}
