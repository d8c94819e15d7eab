//! The CUDA 13 build route: `cuda-toolkit` installs NVIDIA's toolkit wheels into a virtual
//! environment, and `dist` builds the `mnist` binary for shipping, with `cuda` when asked.
//!
//! NVIDIA publishes CUDA 13 as Python wheels; everything lands under
//! `<venv>/lib/python3.X/site-packages/nvidia/cu13` (`bin/nvcc`, `include/`, `lib/*.so.13`). Two
//! things a linker needs are missing there and made here, in `<toolkit>/link`:
//! unversioned names (`libcublas.so` -> `libcublas.so.13`, ...) and `libcuda.so`, a stub of the
//! driver library that only satisfies the link (its soname is `libcuda.so.1`, so the binary looks
//! for the real driver at run time; the stub is never on a run-time library path).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::{project_root, run_cmd};

/// The toolkit version: candle loads its kernels as PTX, which the driver compiles at start-up,
/// and a CUDA 13.0 driver cannot read the PTX of a newer nvcc.
const TOOLKIT: &str = "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart,cublas,curand,nvrtc]==13.0.2";

/// NCCL for data-parallel runs on several GPUs (the `nccl` feature); it lands beside the
/// toolkit, in `site-packages/nvidia/nccl`.
const NCCL: &str = "nvidia-nccl-cu13";

/// The compute capability the kernels are built for (Hopper: H100, H200).
const DEFAULT_COMPUTE_CAP: &str = "90";

/// Libraries given unversioned names for the linker: (link name, versioned file).
const LIBS: [(&str, &str); 6] = [
    ("libcublas.so", "libcublas.so.13"),
    ("libcublasLt.so", "libcublasLt.so.13"),
    ("libcudart.so", "libcudart.so.13"),
    ("libnvrtc.so", "libnvrtc.so.13"),
    ("libcurand.so", "libcurand.so.10"),
    ("libnvrtc-builtins.so", "libnvrtc-builtins.so.13.0"),
];

/// The largest binary that can be carried to a GPU machine.
const MAX_BINARY_MIB: u64 = 64;

/// Where the toolkit lives: `LIT_CUDA_TOOLKIT`, or `target/cuda-toolkit`.
fn toolkit_dir() -> PathBuf {
    env::var_os("LIT_CUDA_TOOLKIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target").join("cuda-toolkit"))
}

/// The CUDA root inside the virtual environment (`.../site-packages/nvidia/cu13`), if installed.
fn cuda_root(toolkit: &Path) -> Option<PathBuf> {
    let lib = toolkit.join("venv").join("lib");
    fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/nvidia/cu13"))
        .find(|p| p.join("bin").join("nvcc").is_file())
}

/// `cargo xtask cuda-toolkit`: installs the toolkit (once) and prints the environment to build
/// with it.
pub(crate) fn toolkit(args: &[String]) -> anyhow::Result<()> {
    if let Some(a) = args.first() {
        bail!("cargo xtask cuda-toolkit takes no arguments, got '{a}'");
    }
    let root = install()?;
    println!("CUDA toolkit ready: {}", root.display());
    println!("build environment (what `cargo xtask dist --features cuda` sets):");
    for (k, v) in build_env(&root)? {
        println!("  export {k}={v}");
    }
    Ok(())
}

/// Installs the toolkit wheels and the link folder when they are missing; returns the CUDA root.
fn install() -> anyhow::Result<PathBuf> {
    let dir = toolkit_dir();
    if cuda_root(&dir).is_none() {
        let venv = dir.join("venv");
        let python = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        println!("== installing {TOOLKIT} into {}", venv.display());
        run_cmd(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
        run_cmd(
            Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(TOOLKIT)
                .arg(NCCL),
        )?;
    }
    let root = cuda_root(&dir).with_context(|| {
        format!(
            "no nvcc under {} after installing {TOOLKIT}",
            dir.join("venv").display()
        )
    })?;
    link_folder(&dir, &root)?;
    Ok(root)
}

/// `<toolkit>/link`: unversioned library names and the driver stub.
fn link_folder(dir: &Path, root: &Path) -> anyhow::Result<PathBuf> {
    let link = dir.join("link");
    fs::create_dir_all(&link).with_context(|| format!("creating {}", link.display()))?;
    for (name, versioned) in LIBS {
        let target = root.join("lib").join(versioned);
        if !target.is_file() {
            bail!(
                "{} is missing: the toolkit wheels did not install {versioned}",
                target.display()
            );
        }
        let path = link.join(name);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(&target, &path)
            .with_context(|| format!("linking {} -> {}", path.display(), target.display()))?;
    }
    // NCCL, installed beside the toolkit (older installs lack it: `pip install` it then).
    let nccl = root.join("../nccl/lib/libnccl.so.2");
    if !nccl.is_file() {
        run_cmd(
            Command::new(dir.join("venv").join("bin").join("pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                NCCL,
            ]),
        )?;
    }
    let path = link.join("libnccl.so");
    let _ = fs::remove_file(&path);
    std::os::unix::fs::symlink(&nccl, &path)
        .with_context(|| format!("linking {} -> {}", path.display(), nccl.display()))?;
    let stub = link.join("libcuda.so");
    if !stub.is_file() {
        driver_stub(&stub)?;
    }
    Ok(link)
}

/// Builds `libcuda.so`, a shared library that defines every driver function the CUDA headers
/// declare (as empty functions) with the driver's soname, so that the binary links; at run time
/// the real `libcuda.so.1` of the machine's driver is loaded instead.
fn driver_stub(path: &Path) -> anyhow::Result<()> {
    let root = cuda_root(&toolkit_dir()).context("the toolkit is not installed")?;
    let header = root.join("include").join("cuda.h");
    let text =
        fs::read_to_string(&header).with_context(|| format!("reading {}", header.display()))?;
    let mut names: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("cu") && w.len() > 3)
        .filter(|w| w[2..].starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    names.sort_unstable();
    names.dedup();
    // The header's macros map names to versioned symbols (`cuCtxCreate` -> `cuCtxCreate_v2`); the
    // stub defines both spellings, which is harmless for a library only linked against.
    let mut c = String::from("/* A link-time stub of the CUDA driver library. */\n");
    for name in &names {
        c.push_str(&format!("int {name}(void) {{ return 0; }}\n"));
    }
    let source = path.with_extension("c");
    fs::write(&source, c).with_context(|| format!("writing {}", source.display()))?;
    let cc = env::var_os("CC").unwrap_or_else(|| "cc".into());
    run_cmd(
        Command::new(cc)
            .args(["-shared", "-fPIC", "-w", "-Wl,-soname,libcuda.so.1", "-o"])
            .arg(path)
            .arg(&source),
    )
}

/// The variables a `cuda` build needs: nvcc on `PATH` (cudarc runs `nvcc --version`), the
/// toolkit root, the compute capability (no `nvidia-smi` here), and the link folder.
fn build_env(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let link = toolkit_dir().join("link");
    let path = env::var("PATH").unwrap_or_default();
    let root_s = root.display().to_string();
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| DEFAULT_COMPUTE_CAP.into());
    let library_path = match env::var("LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", link.display()),
        _ => link.display().to_string(),
    };
    Ok(vec![
        (
            "PATH".into(),
            format!("{}:{path}", root.join("bin").display()),
        ),
        ("CUDA_HOME".into(), root_s.clone()),
        ("CUDA_ROOT".into(), root_s.clone()),
        ("CUDA_PATH".into(), root_s),
        ("CUDA_COMPUTE_CAP".into(), cap),
        ("LIBRARY_PATH".into(), library_path),
        (
            "RUSTFLAGS".into(),
            format!(
                "-L native={} {}",
                link.display(),
                env::var("RUSTFLAGS").unwrap_or_default()
            )
            .trim_end()
            .to_string(),
        ),
    ])
}

/// `cargo xtask dist [--features F]` (`cuda`, `cuda,nccl`, ...): the `mnist` binary built with the
/// `dist` profile
/// (optimised, stripped, no debug info) into `target/dist/`, with an xz-compressed copy when `xz`
/// is present; with `cuda` among the features, the toolkit is installed first and used.
pub(crate) fn dist(args: &[String]) -> anyhow::Result<()> {
    let mut features = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--features" => features.push(it.next().context("--features needs a value")?.clone()),
            other => bail!("cargo xtask dist: unknown option '{other}'; expected --features F"),
        }
    }
    let features = features.join(",");
    // `nccl` implies `cuda`.
    let cuda = features
        .split(',')
        .any(|f| matches!(f.trim(), "cuda" | "nccl"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--profile",
        "dist",
        "--package",
        "mnist",
        "--bin",
        "mnist",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features]);
    }
    if cuda {
        let root = install()?;
        for (k, v) in build_env(&root)? {
            cmd.env(k, v);
        }
    }
    run_cmd(&mut cmd)?;
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    let built = target.join("dist").join("mnist");
    let size = fs::metadata(&built)
        .with_context(|| format!("reading {}", built.display()))?
        .len();
    let mib = size as f64 / f64::from(1 << 20);
    println!("{}: {mib:.1} MiB", built.display());
    if size > MAX_BINARY_MIB << 20 {
        bail!(
            "{} is {mib:.1} MiB, more than the {MAX_BINARY_MIB} MiB that can be carried",
            built.display()
        );
    }
    if Command::new("xz").arg("--version").output().is_ok() {
        let xz = built.with_extension("xz");
        let _ = fs::remove_file(&xz);
        run_cmd(
            Command::new("xz")
                .args(["-T0", "-k", "-6", "--suffix=.xz"])
                .arg(&built),
        )?;
        let packed = fs::metadata(&xz).map(|m| m.len()).unwrap_or(0);
        println!(
            "{}: {:.1} MiB",
            xz.display(),
            packed as f64 / f64::from(1 << 20)
        );
    }
    Ok(())
}

/// Clippy over the workspace with `cuda` and `nccl` (through the `mnist` app's `nccl`, which
/// turns on every crate's `cuda`) against the toolkit, so that a change that breaks the GPU
/// build fails CI on a machine without a GPU. Only the compiler's checks run, nothing links, so
/// the toolkit's `PATH` and roots are all it needs (`RUSTFLAGS` stay as they are, which keeps
/// the other builds' artifacts valid).
pub(crate) fn clippy() -> anyhow::Result<()> {
    let root = install()?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root()).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        "mnist/nccl",
        "--",
        "-D",
        "warnings",
    ]);
    for (k, v) in build_env(&root)? {
        if k != "RUSTFLAGS" && k != "LIBRARY_PATH" {
            cmd.env(k, v);
        }
    }
    println!("== clippy with cuda and nccl against {}", root.display());
    run_cmd(&mut cmd)
}
