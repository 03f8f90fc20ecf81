//! Process facts and tuning: the host's two calls into the C library, each behind a safe
//! function, and a process's peak memory. With the SIMD kernels (the private `kernels::simd`,
//! whose documentation lists its own), this module is the only code of the crate allowed
//! `unsafe`, in three blocks:
//! 1. [`keep_freed_memory`]: `mallopt` takes no pointers and checks its arguments, and glibc
//!    changes the parameters under the main arena's lock, so any call is sound.
//! 2. `process_cpu_seconds`: `getrusage` writes one `rusage` through a pointer to a live,
//!    zeroed `MaybeUninit<rusage>`.
//! 3. `process_cpu_seconds`: `assume_init` of that struct, after `getrusage` succeeded (it
//!    was fully initialised, with zeros, before).
//!
//! Neither touches secret data. Beside them, [`peak_rss_of`] reads a process's peak memory
//! from `/proc` (no `unsafe`).

#![allow(unsafe_code)]

/// glibc hands freed blocks above 128 KiB straight back to the kernel, so the megabyte-sized
/// buffers every gate allocates come back as fresh pages to fault in and zero: 8 % of a
/// server's online CPU in profiles. Serving them from the heap, and trimming it only past
/// 256 MiB of free space, keeps a process at about its peak memory, which bounds it anyway.
/// The binary calls it first, before any allocation it would affect.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt takes no pointers and checks its arguments; glibc changes the
    // parameters under the main arena's lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Nothing to tune outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// User and system CPU seconds this process has used, all threads (0 where unknown).
#[cfg(unix)]
pub(crate) fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given, which is valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded, so it filled the struct (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// User and system CPU seconds: unknown here, 0.
#[cfg(not(unix))]
pub(crate) fn process_cpu_seconds() -> f64 {
    0.0
}

/// A process's peak resident memory in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
