//! [`TensorBoardLogger`]: TensorBoard event files, written without TensorFlow.
//!
//! An event file is a sequence of TFRecords (`u64` length, masked CRC-32C of the length, the
//! bytes, masked CRC-32C of the bytes), each holding a serialized `tensorflow.Event` protobuf. The
//! few messages needed (`Event`, `Summary`, `Summary.Value`, and the hparams plugin's
//! `HParamsPluginData`) are `prost` messages declared below from the protos' field numbers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lit_core::lit_data::HParams;
use lit_core::{Error, Logger, Result};
use prost::Message;

/// CRC-32C (Castagnoli), as TFRecord uses (the `crc32c` crate: hardware instructions where the
/// CPU has them).
fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// The few messages of TensorFlow's and TensorBoard's protos a scalar logger needs, derived with
/// `prost` from their field numbers (no protobuf toolchain at build time). Field numbers and types
/// follow `tensorflow/core/util/event.proto`, `tensorflow/core/framework/summary.proto`,
/// `tensorboard/plugins/hparams/plugin_data.proto` and `google/protobuf/struct.proto`.
mod proto {
    use std::collections::BTreeMap;

    /// `tensorflow.Event` (the `summary` arm of its `what` oneof, or `file_version`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Event {
        #[prost(double, tag = "1")]
        pub(super) wall_time: f64,
        #[prost(int64, tag = "2")]
        pub(super) step: i64,
        #[prost(string, optional, tag = "3")]
        pub(super) file_version: Option<String>,
        #[prost(message, optional, tag = "5")]
        pub(super) summary: Option<Summary>,
    }

    /// `tensorflow.Summary`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub(super) value: Vec<SummaryValue>,
    }

    /// `tensorflow.Summary.Value`: a scalar (`simple_value`) or plugin data (`metadata`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct SummaryValue {
        #[prost(string, tag = "1")]
        pub(super) tag: String,
        #[prost(float, optional, tag = "2")]
        pub(super) simple_value: Option<f32>,
        #[prost(message, optional, tag = "9")]
        pub(super) metadata: Option<SummaryMetadata>,
    }

    /// `tensorflow.SummaryMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct SummaryMetadata {
        #[prost(message, optional, tag = "1")]
        pub(super) plugin_data: Option<PluginData>,
    }

    /// `tensorflow.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PluginData {
        #[prost(string, tag = "1")]
        pub(super) plugin_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) content: Vec<u8>,
    }

    /// `tensorboard.hparams.HParamsPluginData` with its `session_start_info` arm.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct HParamsPluginData {
        #[prost(int32, tag = "1")]
        pub(super) version: i32,
        #[prost(message, optional, tag = "3")]
        pub(super) session_start_info: Option<SessionStartInfo>,
    }

    /// `tensorboard.hparams.SessionStartInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct SessionStartInfo {
        #[prost(btree_map = "string, message", tag = "1")]
        pub(super) hparams: BTreeMap<String, Value>,
        #[prost(double, tag = "5")]
        pub(super) start_time_secs: f64,
    }

    /// `google.protobuf.Value`, the arms hyperparameters take.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Value {
        #[prost(oneof = "Kind", tags = "2, 3, 4")]
        pub(super) kind: Option<Kind>,
    }

    /// `google.protobuf.Value.kind`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Kind {
        #[prost(double, tag = "2")]
        Number(f64),
        #[prost(string, tag = "3")]
        String(String),
        #[prost(bool, tag = "4")]
        Bool(bool),
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn event(step: u64, values: Vec<proto::SummaryValue>) -> Vec<u8> {
    proto::Event {
        wall_time: wall_time(),
        step: i64::try_from(step).unwrap_or(i64::MAX),
        file_version: None,
        summary: Some(proto::Summary { value: values }),
    }
    .encode_to_vec()
}

fn version_event() -> Vec<u8> {
    proto::Event {
        wall_time: wall_time(),
        file_version: Some("brain.Event:2".into()),
        ..Default::default()
    }
    .encode_to_vec()
}

fn scalar_event(step: u64, values: &BTreeMap<String, f64>) -> Vec<u8> {
    let values = values
        .iter()
        .map(|(tag, v)| proto::SummaryValue {
            tag: tag.clone(),
            simple_value: Some(*v as f32),
            metadata: None,
        })
        .collect();
    event(step, values)
}

fn hparams_event(hparams: &HParams) -> Vec<u8> {
    use proto::Kind;
    let values = hparams
        .iter()
        .filter_map(|(k, v)| {
            let kind = match v {
                serde_json::Value::Number(n) => Kind::Number(n.as_f64().unwrap_or(f64::NAN)),
                serde_json::Value::Bool(b) => Kind::Bool(*b),
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => Kind::String(s.clone()),
                other => Kind::String(other.to_string()),
            };
            Some((k.clone(), proto::Value { kind: Some(kind) }))
        })
        .collect();
    let content = proto::HParamsPluginData {
        version: 0,
        session_start_info: Some(proto::SessionStartInfo {
            hparams: values,
            start_time_secs: wall_time(),
        }),
    }
    .encode_to_vec();
    let value = proto::SummaryValue {
        tag: "_hparams_/session_start_info".into(),
        simple_value: None,
        metadata: Some(proto::SummaryMetadata {
            plugin_data: Some(proto::PluginData {
                plugin_name: "hparams".into(),
                content,
            }),
        }),
    };
    event(0, vec![value])
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
        self.record(&version_event())?;
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
    fn a_scalar_event_has_protobufs_wire_bytes() {
        let values = BTreeMap::from([("a".to_string(), 1.0)]);
        let bytes = scalar_event(300, &values);
        // Field 1 (wall_time) is a double: tag 0x09 and 8 bytes; then step 300 as field 2.
        assert_eq!(bytes[0], 0x09);
        assert_eq!(&bytes[9..12], [0x10, 0xac, 0x02]);
        // Field 5 (summary) holds one value: tag "a" and simple_value 1.0f32.
        let value = [0x0a, 0x01, b'a', 0x15, 0x00, 0x00, 0x80, 0x3f];
        let mut summary = vec![0x0a, value.len() as u8];
        summary.extend(value);
        assert_eq!(
            &bytes[12..],
            [&[0x2a, summary.len() as u8][..], &summary].concat()
        );
        let back = proto::Event::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.step, 300);
        assert_eq!(back.summary.unwrap().value[0].simple_value, Some(1.0));
    }
}
