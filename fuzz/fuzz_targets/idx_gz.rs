//! The IDX reader on gzipped content: the input is compressed first, so every run reaches the
//! parser through the decompressor (and the truncated stream through its error path).
#![no_main]

use std::io::Write;
use std::path::Path;

use flate2::{write::GzEncoder, Compression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("writing to memory");
    let packed = gz.finish().expect("writing to memory");
    let path = Path::new("fuzz-idx3-ubyte.gz");
    for rank in [1, 3] {
        let _ = lit_data::idx::parse_file(path, packed.clone(), rank);
    }
    // A stream cut short, as a disk that filled up mid-write leaves it.
    let _ = lit_data::idx::parse_file(path, packed[..packed.len() / 2].to_vec(), 3);
});
