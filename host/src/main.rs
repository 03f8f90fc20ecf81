//! The `securerouter` binary: parse, set up logging, run. The work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use securerouter_host::cli::Cli;

fn main() -> ExitCode {
    keep_freed_memory();
    // On bad input clap prints its error and usage to stderr and exits with status 2;
    // `--help` and `--version` print to stdout and exit with 0.
    let cli = Cli::parse();
    securerouter_host::logging::init();
    match securerouter_host::run(&cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc hands freed blocks above 128 KiB straight back to the kernel, so the megabyte-sized
/// buffers every gate allocates come back as fresh pages to fault in and zero: 8 % of a
/// server's online CPU in profiles. Serving them from the heap, and trimming it only past
/// 256 MiB of free space, keeps a process at about its peak memory, which bounds it anyway.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
