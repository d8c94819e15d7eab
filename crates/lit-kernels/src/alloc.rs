//! The process's memory allocator, tuned for training loops.
//!
//! glibc's malloc (the system allocator on Linux) maps every block above its mmap threshold
//! (128 KiB at first, rising with the blocks it sees freed, to at most 32 MiB) straight from
//! the kernel and unmaps it on free, and hands the heap's free top back to the kernel above
//! twice that threshold. A training step frees and reallocates its activations every few
//! milliseconds, so with the defaults the same memory was faulted in and zeroed by the kernel
//! again on every step (at batch 256, 1.6 million page faults in 50 steps of ResNet-8).
//! [`tune_malloc`] keeps freed memory in the process instead; measured against mimalloc in
//! BENCHMARKS.md ("Allocator"): as fast, with less peak memory.

/// Keeps freed memory in the process: blocks up to 32 MiB (glibc's maximum) come from the heap,
/// and the heap's top is trimmed only past 1 GiB free. Does nothing when `GLIBC_TUNABLES` sets
/// any malloc tunable (the user's settings stand), off glibc, or when the process already runs
/// more than one thread (glibc's `mallopt` must not race with other threads' allocations).
/// Returns whether the settings were applied.
pub fn tune_malloc() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
        if user_set || !single_threaded() {
            return false;
        }
        // SAFETY: `mallopt` only sets two of the allocator's parameters. glibc documents it as
        // unsafe while other threads allocate (they read those parameters without a lock);
        // this process has one thread (checked above), and it is inside this call.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether `/proc/self/status` says this process runs one thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_while_other_threads_run() {
        // The test harness runs tests on threads of its own, so the process is never single
        // threaded here: the call must refuse.
        assert!(!super::tune_malloc());
    }
}
