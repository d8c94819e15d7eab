//! Signals through the binary, as a scheduler or a user's Ctrl-C sends them: SIGTERM, SIGINT and
//! SIGUSR1 mid-epoch stop at the end of a batch with `last` written, the exit status is 128 + the
//! signal's number, no process is left, and the resumed run equals the uninterrupted one bit for
//! bit; in a data-parallel run the signal to the program the user started reaches every process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::flags::{data, meta, resume_matches_a_straight_run, run_dir};

/// The options of a run long enough to be interrupted: `last` every 3 steps, so the test knows
/// when training is under way.
const BASE: &[&str] = &[
    "--max-epochs",
    "2",
    "--limit-train-batches",
    "150",
    "--no-test",
    "--checkpoint-every-n-train-steps",
    "3",
];

/// Starts `mnist` in `dir` with `args` and the limits `flags::ok` adds, so its runs compare
/// with those of `resume_matches_a_straight_run`.
fn start(dir: &Path, root: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .args(["--data-dir", root])
        .args(super::flags::LIMITS)
        .current_dir(dir)
        .env_remove("LIT_DATA_DIR")
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mnist")
}

/// Waits until `path` exists (training is under way), failing after two minutes.
fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
            }
            panic!(
                "the run ended ({status}) before {} appeared: {stderr}",
                path.display()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes whose command line mentions `marker` (a test's own folder).
fn processes_mentioning(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            found.push(cmd);
        }
    }
    found
}

/// Interrupts a run of `args` with `signal` once training is under way; returns its stderr.
fn interrupt(dir: &Path, root: &str, args: &[&str], signal: Signal) -> String {
    // The folder named on the command line, so every process of the run can be found by it.
    let logs = dir.join("logs");
    let args = [args, &["--log-dir", logs.to_str().unwrap()]].concat();
    let mut child = start(dir, root, &args);
    let last = run_dir(dir, 0).join("checkpoints/last.safetensors");
    wait_for(&last, &mut child);
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(128 + signal as i32),
        "{signal:?}: exit status; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Checks what an interrupted run left: `last` inside the epoch and a flushed metrics.csv with
/// the partial epoch's values.
fn check_interrupted_run(dir: &Path, signal: Signal, stderr: &str) -> PathBuf {
    let run = run_dir(dir, 0);
    let last = run.join("checkpoints/last.safetensors");
    let m = meta(&last);
    let (epoch, batch) = (m["resume_epoch"].as_u64(), m["resume_batch"].as_u64());
    assert!(
        epoch < Some(2) && batch > Some(0),
        "{signal:?}: last should resume inside an epoch, at {epoch:?}/{batch:?}"
    );
    assert!(
        stderr.contains("resume with the same command")
            && (stderr.contains("--ckpt-path last") || stderr.contains("--ckpt-path auto")),
        "{signal:?}: how to resume is printed: {stderr}"
    );
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        csv.contains("train_loss_epoch"),
        "{signal:?}: the partial epoch is logged: {csv}"
    );
    last
}

#[test]
fn sigterm_sigint_and_sigusr1_stop_cleanly_and_the_run_resumes_bit_exactly() {
    let Some(root) = data() else { return };
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGUSR1] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let stderr = interrupt(dir, &root, BASE, signal);
        check_interrupted_run(dir, signal, &stderr);
        let marker = dir.to_string_lossy().into_owned();
        assert!(processes_mentioning(&marker).is_empty());
        resume_matches_a_straight_run(dir, &root, BASE);
    }
}

#[test]
fn a_second_sigint_ends_the_run_at_once_and_keeps_what_was_written() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut child = start(dir, &root, BASE);
    let last = run_dir(dir, 0).join("checkpoints/last.safetensors");
    wait_for(&last, &mut child);
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGINT).unwrap();
    kill(pid, Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    // Whatever `last` holds now is a whole checkpoint (written through a rename).
    let m = meta(&last);
    assert!(m["global_step"].as_u64().unwrap() >= 3, "{m}");
}

#[test]
fn ckpt_path_auto_starts_fresh_then_resumes_the_newest_last() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let auto = [BASE, &["--ckpt-path", "auto"]].concat();
    // No run yet: a fresh start, as a job's first submission.
    let stderr = interrupt(dir, &root, &auto, Signal::SIGUSR1);
    check_interrupted_run(dir, Signal::SIGUSR1, &stderr);
    // The requeued job, the same command: resumes version_0's last into version_1.
    let out = super::mnist(
        dir,
        &[
            &auto[..],
            &[
                "--data-dir",
                &root,
                "--limit-val-batches",
                "2",
                "--num-sanity-val-steps",
                "1",
            ],
        ]
        .concat(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("checkpoint: ") && stdout.contains("version_0"),
        "{stdout}"
    );
    let done = meta(&run_dir(dir, 1).join("checkpoints/last.safetensors"));
    assert_eq!(done["global_step"], 300, "{done}");
}

#[test]
fn sigterm_to_the_program_that_started_a_data_parallel_run_stops_every_process() {
    let Some(root) = data() else { return };
    if !super::parallel::mpi_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [BASE, &["--devices", "2", "--batch-size", "32"]].concat();
    let stderr = interrupt(dir, &root, &base, Signal::SIGTERM);
    check_interrupted_run(dir, Signal::SIGTERM, &stderr);
    let marker = dir.to_string_lossy().into_owned();
    // mpirun and both processes are gone with the program (their folder is the test's).
    let start = Instant::now();
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "left running: {:?}",
            processes_mentioning(&marker)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    resume_matches_a_straight_run(dir, &root, &base);
}

#[test]
fn a_mid_epoch_checkpoint_resumes_at_the_same_example_with_another_batch_size() {
    let Some(root) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = [
        "--max-epochs",
        "1",
        "--limit-train-batches",
        "20",
        "--no-test",
    ];
    // 3 steps of 64: 192 examples of the epoch trained.
    super::flags::ok(dir, &root, &[&base[..], &["--max-steps", "3"]].concat());
    // 192 = 4 x 48: the resumed run continues at its batch 4.
    super::flags::ok(
        dir,
        &root,
        &[
            &base[..],
            &[
                "--ckpt-path",
                "last",
                "--batch-size",
                "48",
                "--max-steps",
                "4",
            ],
        ]
        .concat(),
    );
    let m = meta(&run_dir(dir, 1).join("checkpoints/last.safetensors"));
    assert_eq!(
        (m["resume_batch"].as_u64(), m["batch_size"].as_u64()),
        (Some(5), Some(48)),
        "{m}"
    );
    // 192 is no multiple of 40: refused, saying why and what would resume.
    let e = super::fails(
        dir,
        &[
            &base[..],
            &[
                "--data-dir",
                &root,
                "--ckpt-path",
                run_dir(dir, 0)
                    .join("checkpoints/last.safetensors")
                    .to_str()
                    .unwrap(),
                "--batch-size",
                "40",
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("after 192 examples") && e.contains("--batch-size 64"),
        "{e}"
    );
}
