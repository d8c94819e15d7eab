//! [`TensorBoardLogger`]: TensorBoard event files, written without TensorFlow.
//!
//! An event file is a sequence of TFRecords (`u64` length, masked CRC-32C of the length, the
//! bytes, masked CRC-32C of the bytes), each holding a serialized `tensorflow.Event` protobuf. The
//! few messages needed (`Event`, `Summary`, `Summary.Value`, and the hparams plugin's
//! `HParamsPluginData`) are encoded by hand below.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lit_core::lit_data::HParams;
use lit_core::{Error, Logger, Result};

/// CRC-32C (Castagnoli), as TFRecord uses (the `crc32c` crate: hardware instructions where the
/// CPU has them).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// A minimal protobuf writer.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }
    fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn int(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn scalar_event(step: u64, values: &BTreeMap<String, f64>) -> Vec<u8> {
    let mut summary = Proto::default();
    for (tag, v) in values {
        let mut value = Proto::default();
        value.bytes(1, tag.as_bytes()).float(2, *v as f32);
        summary.bytes(1, &value.0);
    }
    let mut event = Proto::default();
    event
        .double(1, wall_time())
        .int(2, step)
        .bytes(5, &summary.0);
    event.0
}

fn hparams_event(hparams: &HParams) -> Vec<u8> {
    // SessionStartInfo.hparams: map<string, google.protobuf.Value>.
    let mut session = Proto::default();
    for (k, v) in hparams.iter() {
        let mut value = Proto::default();
        match v {
            serde_json::Value::Number(n) => {
                value.double(2, n.as_f64().unwrap_or(f64::NAN));
            }
            serde_json::Value::Bool(b) => {
                value.int(4, u64::from(*b));
            }
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => {
                value.bytes(3, s.as_bytes());
            }
            other => {
                value.bytes(3, other.to_string().as_bytes());
            }
        }
        let mut entry = Proto::default();
        entry.bytes(1, k.as_bytes()).bytes(2, &value.0);
        session.bytes(1, &entry.0);
    }
    session.double(5, wall_time());
    let mut plugin_data = Proto::default();
    plugin_data.int(1, 0).bytes(3, &session.0);
    let mut plugin = Proto::default();
    plugin.bytes(1, b"hparams").bytes(2, &plugin_data.0);
    let mut metadata = Proto::default();
    metadata.bytes(1, &plugin.0);
    let mut value = Proto::default();
    value
        .bytes(1, b"_hparams_/session_start_info")
        .bytes(9, &metadata.0);
    let mut summary = Proto::default();
    summary.bytes(1, &value.0);
    let mut event = Proto::default();
    event.double(1, wall_time()).bytes(5, &summary.0);
    event.0
}

/// Writes `events.out.tfevents.*` in the run directory: a scalar for every logged key (tagged with
/// the key, at the optimizer step) and the hyperparameters for TensorBoard's HPARAMS tab.
#[derive(Default)]
pub struct TensorBoardLogger {
    path: Option<PathBuf>,
    out: Option<BufWriter<File>>,
}

impl std::fmt::Debug for TensorBoardLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBoardLogger")
            .field("path", &self.path)
            .finish()
    }
}

impl TensorBoardLogger {
    /// A logger that writes into the run directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The event file, once started.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let (Some(out), Some(path)) = (self.out.as_mut(), self.path.as_ref()) else {
            return Ok(());
        };
        let len = (data.len() as u64).to_le_bytes();
        let mut write = || -> std::io::Result<()> {
            out.write_all(&len)?;
            out.write_all(&masked_crc(&len).to_le_bytes())?;
            out.write_all(data)?;
            out.write_all(&masked_crc(data).to_le_bytes())
        };
        write().map_err(|e| Error::io(path, e))
    }
}

impl Logger for TensorBoardLogger {
    fn name(&self) -> &str {
        "tensorboard"
    }

    fn start(&mut self, log_dir: &Path, hparams: &HParams) -> Result<()> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = log_dir.join(format!(
            "events.out.tfevents.{secs}.{host}.{}",
            std::process::id()
        ));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        self.out = Some(BufWriter::new(file));
        self.path = Some(path);
        let mut version = Proto::default();
        version.double(1, wall_time()).bytes(3, b"brain.Event:2");
        self.record(&version.0)?;
        self.record(&hparams_event(hparams))?;
        self.flush()
    }

    fn log_metrics(
        &mut self,
        metrics: &BTreeMap<String, f64>,
        _epoch: usize,
        step: u64,
    ) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        self.record(&scalar_event(step, metrics))
    }

    fn flush(&mut self) -> Result<()> {
        if let (Some(out), Some(path)) = (self.out.as_mut(), self.path.as_ref()) {
            out.flush().map_err(|e| Error::io(path, e))?;
            out.get_ref().sync_data().map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // The CRC-32C check value of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn varints_encode_as_protobuf() {
        let mut p = Proto::default();
        p.int(2, 300);
        assert_eq!(p.0, [0x10, 0xac, 0x02]);
    }
}
