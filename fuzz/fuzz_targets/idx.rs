//! The IDX reader on arbitrary bytes, as a file's content (raw, or gzip when it starts so).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for rank in [1, 3] {
        let _ = lit_data::idx::parse_file(Path::new("fuzz-idx3-ubyte"), data.to_vec(), rank);
    }
});
