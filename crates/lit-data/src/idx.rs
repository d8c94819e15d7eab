//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! An IDX file is a big-endian header (two zero bytes, a type byte, a rank byte, then one `u32`
//! per dimension) followed by the data. Only unsigned bytes (type `0x08`) are read here, which is
//! what both data sets use. Every read checks the magic number, the rank and that the file holds
//! exactly the bytes its header promises, and names the file in its error.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// The content of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions from the header, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads a whole file.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of a file's content, decompressed when they start with the gzip magic bytes.
fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Format {
                path: path.to_path_buf(),
                message: format!("corrupt gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes that claim to come from `path` and must have `rank` dimensions.
pub fn parse(path: &Path, bytes: &[u8], rank: u8) -> Result<IdxArray> {
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let expected_magic = 0x0000_0800u32 | u32::from(rank);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "truncated: {} bytes, too short for an IDX header (expected magic number {expected_magic:#010x})",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(bad(format!(
            "wrong magic number: expected {expected_magic:#010x} (IDX of unsigned bytes with {rank} \
             dimensions), found {magic:#010x}"
        )));
    }
    let header = 4 + 4 * usize::from(rank);
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated: the header needs {header} bytes, the file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let found = bytes.len() - header;
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            bad(format!(
                "the header promises {dims:?} values, more than this machine can address"
            ))
        })?;
    if found != expected {
        let shape = dims
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("x");
        let what = if found < expected {
            "truncated"
        } else {
            "trailing data"
        };
        return Err(bad(format!(
            "{what}: the header promises {shape} = {expected} bytes of data, found {found}"
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Parses the content of an IDX file (raw or gzipped) that claims to come from `path`.
pub fn parse_file(path: &Path, content: Vec<u8>, rank: u8) -> Result<IdxArray> {
    parse(path, &decompress(path, content)?, rank)
}

/// Reads an IDX file of `rank` dimensions (raw or gzipped).
pub fn read(path: &Path, rank: u8) -> Result<IdxArray> {
    parse_file(path, read_bytes(path)?, rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_a_valid_file() {
        let a = parse(Path::new("x"), &idx(3, &[2, 1, 2], &[1, 2, 3, 4]), 3).unwrap();
        assert_eq!(a.dims, [2, 1, 2]);
        assert_eq!(a.data, [1, 2, 3, 4]);
    }

    #[test]
    fn wrong_magic_names_file_expected_and_found() {
        let err = parse(Path::new("labels.idx"), &idx(3, &[1, 1, 1], &[0]), 1).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("labels.idx"), "{msg}");
        assert!(msg.contains("expected 0x00000801"), "{msg}");
        assert!(msg.contains("found 0x00000803"), "{msg}");
    }

    #[test]
    fn truncated_data_is_reported_with_sizes() {
        let msg = parse(Path::new("img"), &idx(1, &[5], &[1, 2]), 1)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("truncated") && msg.contains("5 bytes") && msg.contains("found 2"),
            "{msg}"
        );
        let msg = parse(Path::new("img"), &[0, 0], 1).unwrap_err().to_string();
        assert!(msg.contains("truncated"), "{msg}");
    }

    #[test]
    fn reads_gzip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&idx(1, &[3], &[7, 8, 9])).unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        assert_eq!(read(&path, 1).unwrap().data, [7, 8, 9]);
    }
}
