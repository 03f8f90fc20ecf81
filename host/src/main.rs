//! The `securerouter` binary: parse, set up logging, run. Each command lives in
//! its own module of `commands`, over the host crates.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use cli::Cli;

mod cli;
mod commands;
mod logging;

fn main() -> ExitCode {
    securerouter_runtime::sys::keep_freed_memory();
    // On bad input clap prints its error and usage to stderr and exits with status 2;
    // `--help` and `--version` print to stdout and exit with 0.
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match commands::run(&cli.command, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
