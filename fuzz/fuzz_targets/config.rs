//! The config-file parser on arbitrary text, then the typed view of the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lit_data::HParams;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
#[allow(dead_code)]
struct Options {
    lr: f64,
    max_epochs: usize,
    val_datasets: String,
    milestones: Vec<u64>,
    ckpt_path: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(hp) = HParams::from_yaml(text) {
        let _ = hp.to_config::<Options>();
        let _ = hp.get_list("val_datasets");
    }
    if let Some((key, value)) = text.split_once('=') {
        let _ = HParams::parse_value(key, value);
    }
});
