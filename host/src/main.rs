//! The `securerouter` binary: parse, set up logging, run. The work lives in the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use securerouter_host::cli::Cli;

fn main() -> ExitCode {
    securerouter_host::sys::keep_freed_memory();
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
