//! CPU thread pools: set once, at the start of a program, before any tensor work.
//!
//! Two pools run tensor work on the CPU. rayon's pool runs lit's kernels, the `gemm` crate's
//! matrix products and candle's convolutions; its size is `RAYON_NUM_THREADS`. candle 0.11 keeps
//! a second pool for its element-wise ops on large tensors, sized by `CANDLE_NUM_THREADS`
//! (defaulting to rayon's count), whose workers spin for a while after each op. During training
//! the two pools alternate many times per step, so the spinning workers of one take the cores
//! the other needs: on a 2-core machine, one spinning candle worker made ExampleNet's backward
//! pass about 40% slower (see BENCHMARKS.md).

/// Sets the CPU thread counts for this process, keeping any the user has set:
/// `RAYON_NUM_THREADS` to the available parallelism, shared among the processes a launcher put on
/// this machine (a data-parallel run; without it candle counts the cores again on
/// every matrix product, reading `/proc/cpuinfo` each time), and `CANDLE_NUM_THREADS` to 1, so
/// that candle's element-wise ops run on the calling thread instead of a second spinning pool.
/// Returns rayon's thread count.
///
/// It also tunes glibc's malloc to keep freed memory in the process
/// ([`lit_kernels::alloc::tune_malloc`]: a training step frees and reallocates its activations
/// every few milliseconds, which the defaults hand back to the kernel and fault in again).
///
/// Call it first thing in `main`, before any thread is spawned: it sets environment variables,
/// which the pools read once, when they start, and the allocator's tuning needs a process with
/// one thread.
pub fn init() -> usize {
    let tuned = lit_kernels::alloc::tune_malloc();
    tracing::debug!(tuned, "glibc malloc set to keep freed memory");
    let rayon = match std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        Some(n) => n,
        None => {
            // The processes a launcher (mpirun, srun) put on this machine share its cores.
            let local = [
                "OMPI_COMM_WORLD_LOCAL_SIZE",
                "MPI_LOCALNRANKS",
                "SLURM_NTASKS_PER_NODE",
            ]
            .iter()
            .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let n = (cores / local).max(1);
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            n
        }
    };
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    rayon
}

/// This process's index among the processes a launcher (Open MPI's `mpirun`, MPICH, Slurm) put on
/// this machine, and their number, from the launcher's environment; `(0, 1)` without one. The
/// index picks the GPU of a data-parallel process; the number divides the cores.
pub fn local_processes() -> (usize, usize) {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok()?.parse::<usize>().ok())
    };
    let rank = var(&[
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]);
    let size = var(&[
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]);
    (rank.unwrap_or(0), size.unwrap_or(1).max(1))
}
