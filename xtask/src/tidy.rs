//! Conventions checked as a test, so `cargo test` catches what review would.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        let root = crate::project_root();
        let mut files = Vec::new();
        for d in ["crates", "apps", "xtask", "fuzz"] {
            rust_files(&root.join(d), &mut files);
        }
        assert!(files.len() > 20, "found only {} files", files.len());
        let missing: Vec<String> = files
            .iter()
            .filter(|f| {
                !std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .starts_with("//!")
            })
            .map(|f| f.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "files without a //! first line: {missing:?}"
        );
    }

    /// The data files that ship with the repository: the example data set and the PyTorch
    /// reference weights.
    const SHIPPED: [&str; 5] = [
        "data/mnist/t10k-images-idx3-ubyte.gz",
        "data/mnist/t10k-labels-idx1-ubyte.gz",
        "data/mnist/train-images-idx3-ubyte.gz",
        "data/mnist/train-labels-idx1-ubyte.gz",
        "tests/fixtures/example_net.safetensors",
    ];

    #[test]
    fn no_data_files_are_tracked_but_the_shipped_ones() {
        let root = crate::project_root();
        let out = std::process::Command::new("git")
            .args(["ls-files"])
            .current_dir(&root)
            .output();
        let Ok(out) = out else { return };
        let listing = String::from_utf8_lossy(&out.stdout);
        let bad: Vec<&str> = listing
            .lines()
            .filter(|l| l.contains("-ubyte") || l.ends_with(".safetensors"))
            .filter(|l| !SHIPPED.contains(l) && !l.starts_with("fuzz/seeds/"))
            .collect();
        assert!(bad.is_empty(), "data files tracked: {bad:?}");
    }
}
