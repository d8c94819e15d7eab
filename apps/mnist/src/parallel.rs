//! Data-parallel runs of the app: whether one is asked for, starting its processes through
//! `mpirun` when no launcher started this one, and the strategy each process trains with.

use std::any::Any;
use std::process::Command;

use anyhow::{bail, Context};
use lit_core::DataParallel;

use crate::cli::RunArgs;

/// Set in the processes the app starts under mpirun, so that none of them starts more.
const CHILD: &str = "LIT_DATA_PARALLEL_CHILD";

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
        bail!(
            "--devices {}: data-parallel training needs the `mpi` feature \
             (`cargo xtask train -- --devices {}` adds it; or build with --features mpi)",
            args.devices,
            args.devices
        );
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
    let status = cmd
        .args([
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
        .args(std::env::args_os().skip(1))
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "--devices {}: mpirun not found; install Open MPI (Debian: apt-get install \
                 openmpi-bin libopenmpi-dev)",
                args.devices
            ),
            _ => anyhow::anyhow!("starting mpirun: {e}"),
        })?;
    std::process::exit(status.code().unwrap_or(1))
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
