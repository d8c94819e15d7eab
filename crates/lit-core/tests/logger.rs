//! `metrics.csv` as Python's `csv` module reads it: quoted keys, appended rows, a rewrite only
//! when a key adds a column.

use std::collections::BTreeMap;

use lit_core::{CsvLogger, Logger};
use lit_data::HParams;

fn row(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn csv_logger_quotes_keys_appends_rows_and_rewrites_for_a_new_column() {
    let dir = std::env::temp_dir().join(format!("lit-csv-logger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("metrics.csv");
    let mut log = CsvLogger::new();
    log.start(&dir, &HParams::default()).unwrap();
    log.log_metrics(&row(&[("val_acc/a,b", 0.5), ("loss \"x\"", 1.0)]), 0, 1)
        .unwrap();
    log.flush().unwrap();
    // csv.writer(f).writerow(["epoch", "step", 'loss "x"', "val_acc/a,b"]) writes this header.
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        first,
        "epoch,step,\"loss \"\"x\"\"\",\"val_acc/a,b\"\n0,1,1,0.5\n"
    );
    // Same keys: appended, the earlier bytes untouched.
    log.log_metrics(&row(&[("val_acc/a,b", 0.25)]), 0, 2)
        .unwrap();
    log.flush().unwrap();
    let second = std::fs::read_to_string(&path).unwrap();
    assert_eq!(second, format!("{first}0,2,,0.25\n"));
    // A new key: the file is rewritten with the new column for every row.
    log.log_metrics(&row(&[("lr", 0.1)]), 1, 3).unwrap();
    log.flush().unwrap();
    let third = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        third,
        "epoch,step,\"loss \"\"x\"\"\",lr,\"val_acc/a,b\"\n0,1,1,,0.5\n0,2,,,0.25\n1,3,,0.1,\n"
    );
    // Nothing new: nothing written.
    log.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), third);
    std::fs::remove_dir_all(&dir).unwrap();
}
