//! Data-parallel runs of the app: whether one is asked for, starting its processes through
//! `mpirun` when no launcher started this one, and the strategy each process trains with.

use std::any::Any;
use std::process::Command;

use anyhow::{bail, Context};
use lit_core::DataParallel;

use crate::cli::RunArgs;

/// Set in the processes the app starts under mpirun, so that none of them starts more.
const CHILD: &str = "LIT_DATA_PARALLEL_CHILD";

/// The process id of the program that started the processes under mpirun.
const PARENT: &str = "LIT_DATA_PARALLEL_PARENT";

/// Whether the program that started the processes wrote to a terminal (`1` or `0`).
const CHILD_TERMINAL: &str = "LIT_DATA_PARALLEL_TERMINAL";

/// For a process the app started under mpirun: whether its output ends up on a terminal (the
/// starting program's stdout decides, not the pipe mpirun gives the process); `None` elsewhere.
pub(crate) fn started_on_terminal() -> Option<bool> {
    std::env::var(CHILD_TERMINAL).ok().map(|v| v == "1")
}

/// Passes `result` through; in a data-parallel run an error is printed and ends every process
/// of the job (MPI_Abort), since the others would wait for this one forever.
pub(crate) fn abort_on_error(parallel: bool, result: anyhow::Result<()>) -> anyhow::Result<()> {
    #[cfg(feature = "mpi")]
    if let (true, Err(e)) = (parallel, &result) {
        // A signal's stop is taken by every process at the same batch: each ends on its own.
        if matches!(
            e.downcast_ref::<lit_core::Error>(),
            Some(lit_core::Error::Interrupted { .. })
        ) {
            return result;
        }
        eprintln!("error: {}", crate::chain(e));
        lit_distributed::mpi::abort(1);
    }
    let _ = parallel;
    result
}

/// What must live as long as the run (the MPI environment), and the process's strategy.
type Parallel = (Option<Box<dyn Any>>, Option<DataParallel>);

/// Whether the options ask for a data-parallel run.
pub(crate) fn wanted(args: &RunArgs) -> bool {
    args.strategy == "ddp" || args.devices * args.num_nodes > 1
}

/// Runs this program again as `--devices` processes under `mpirun`, with the same arguments, and
/// exits with its status. One machine only: several machines are launched by the user's own
/// `mpirun` with a host file.
pub(crate) fn relaunch(args: &RunArgs) -> anyhow::Result<()> {
    if args.num_nodes > 1 {
        bail!(
            "--num-nodes {}: start a run on several machines with mpirun and a host file \
             (README, \"Training on several processes or machines\")",
            args.num_nodes
        );
    }
    if !cfg!(feature = "mpi") {
        bail!("{}", needs_mpi(args));
    }
    if std::env::var_os(CHILD).is_some() {
        bail!(
            "this process was started for a data-parallel run, but finds no rank in its \
             environment (Open MPI's OMPI_COMM_WORLD_RANK, or PMI_RANK): is this mpirun Open MPI \
             or MPICH?"
        );
    }
    let exe = std::env::current_exe().context("finding this program to start its processes")?;
    let mut cmd = Command::new("mpirun");
    // The processes divide the cores among themselves unless the user chose a count.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        cmd.env_remove("RAYON_NUM_THREADS");
    }
    cmd.args([
        "-n",
        &args.devices.to_string(),
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    // Open MPI refuses to start as root without both; containers often run as root.
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env(CHILD, "1")
    // mpirun hands its processes a terminal of its own: they draw bars only if we had one.
    .env(
        CHILD_TERMINAL,
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            "1"
        } else {
            "0"
        },
    )
    .arg(exe)
    .args(std::env::args_os().skip(1));
    let code = forwarding_signals(&mut cmd).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "--devices {}: mpirun not found; install Open MPI (Debian: apt-get install \
                 openmpi-bin libopenmpi-dev)",
            args.devices
        ),
        _ => anyhow::anyhow!("starting mpirun: {e}"),
    })?;
    std::process::exit(code)
}

/// The error of a data-parallel run asked of a build without MPI: the flag that asked for it
/// and the commands that add it.
fn needs_mpi(args: &RunArgs) -> String {
    let asked = if args.devices > 1 {
        format!("--devices {}", args.devices)
    } else {
        "--strategy ddp".to_string()
    };
    format!(
        "{asked}: data-parallel training needs the `mpi` feature, which this build lacks: \
         `cargo xtask train -- {asked} ...` builds and runs with it, or build with \
         `cargo build --release -p mnist --features mpi` (Open MPI installed: on Debian, \
         apt-get install libopenmpi-dev openmpi-bin libclang-dev)"
    )
}

/// Runs `cmd` (mpirun) in a process group of its own, so a terminal's Ctrl-C reaches this
/// program only, and passes signals on: the first SIGINT, SIGTERM or SIGUSR1 becomes a SIGUSR1,
/// which mpirun hands to every process (each stops at the same batch and writes `last`); a second
/// SIGINT or SIGTERM ends the job at once. Returns the exit status to end with: 128 + the first
/// signal's number when one came, else mpirun's.
#[cfg(unix)]
fn forwarding_signals(cmd: &mut Command) -> std::io::Result<i32> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    use std::os::unix::process::CommandExt;
    // Registered before the child starts, so no signal falls between.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
    let handle = signals.handle();
    let mut child = cmd.process_group(0).spawn()?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let forwarder = std::thread::spawn(move || {
        let mut first = None;
        for sig in signals.forever() {
            let send = match first {
                None => {
                    first = Some(sig);
                    eprintln!(
                        "{} received: asking every process to stop at the end of its batch \
                         (again to end them at once)",
                        lit_core::signals::name(sig)
                    );
                    Signal::SIGUSR1
                }
                Some(_) if sig == SIGUSR1 => continue,
                Some(_) => Signal::SIGTERM,
            };
            // The job may have ended in between; nothing is left to tell then.
            let _ = kill(pid, send);
        }
        first
    });
    let status = child.wait()?;
    handle.close();
    let first = forwarder.join().unwrap_or(None);
    let code = status.code().unwrap_or(1);
    // A stop the signal asked for ends each process with 128 + SIGUSR1; anything else (a rank
    // that failed while stopping) is the job's own status, which a requeue script must see.
    Ok(match first {
        Some(sig) if matches!(code, 0) || code == 128 + SIGUSR1 => 128 + sig,
        _ => code,
    })
}

/// In a process the app started under mpirun: stops this process as a signal would (a clean
/// stop with `last` written) once the program that started the run is gone, killed by a signal
/// it could not pass on (SIGKILL, the out-of-memory killer), so no process trains on orphaned.
#[cfg(unix)]
pub(crate) fn watch_starter() {
    let Some(pid) = std::env::var(PARENT)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        if nix::sys::signal::kill(pid, None).is_err() {
            eprintln!("the program that started this data-parallel run is gone: stopping");
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
            return;
        }
    });
}

#[cfg(not(unix))]
pub(crate) fn watch_starter() {}

#[cfg(not(unix))]
fn forwarding_signals(cmd: &mut Command) -> std::io::Result<i32> {
    Ok(cmd.status()?.code().unwrap_or(1))
}

/// The data-parallel strategy of this process when one is asked for, and what must live as long
/// as the run (the MPI environment).
pub(crate) fn strategy(args: &RunArgs, wanted: bool) -> anyhow::Result<Parallel> {
    if !wanted {
        return Ok((None, None));
    }
    engine(args)
}

#[cfg(feature = "mpi")]
fn engine(args: &RunArgs) -> anyhow::Result<Parallel> {
    let (local, _) = lit_distributed::local_rank();
    let device = args
        .accelerator
        .parse::<lit_core::Accelerator>()?
        .device(local)?;
    // GPUs sum gradients through NCCL when it is built in; everything else through MPI.
    #[cfg(feature = "nccl")]
    let (guard, collective) = if device.is_cuda() {
        lit_distributed::nccl::init(&device)?
    } else {
        lit_distributed::mpi::init()?
    };
    #[cfg(not(feature = "nccl"))]
    let (guard, collective) = lit_distributed::mpi::init()?;
    // A panic in one process ends the job too.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        lit_distributed::mpi::abort(101);
    }));
    tracing::info!(
        rank = collective.rank(),
        world = collective.world_size(),
        ?device,
        "data-parallel process"
    );
    Ok((
        Some(Box::new(guard)),
        Some(DataParallel::new(device, collective)),
    ))
}

#[cfg(not(feature = "mpi"))]
fn engine(args: &RunArgs) -> anyhow::Result<Parallel> {
    bail!(
        "--devices {} x --num-nodes {}: this process was started by a launcher for a \
         data-parallel run, but the program was built without the `mpi` feature",
        args.devices,
        args.num_nodes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_mpi_names_the_flag_given_and_the_command_that_adds_it() {
        let mut args = RunArgs {
            strategy: "ddp".into(),
            ..RunArgs::default()
        };
        let e = needs_mpi(&args);
        assert!(
            e.starts_with("--strategy ddp:") && e.contains("cargo xtask train -- --strategy ddp"),
            "{e}"
        );
        args.devices = 2;
        let e = needs_mpi(&args);
        assert!(
            e.starts_with("--devices 2:") && e.contains("--features mpi"),
            "{e}"
        );
    }
}
