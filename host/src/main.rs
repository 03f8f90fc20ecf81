//! The `securerouter` binary: parse, set up logging, run. The work lives in the
//! host crates; `run` maps the command line onto them.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use cli::Cli;

mod cli;
mod demo;
mod doctor;
mod logging;
mod run;

fn main() -> ExitCode {
    securerouter_runtime::sys::keep_freed_memory();
    // On bad input clap prints its error and usage to stderr and exits with status 2;
    // `--help` and `--version` print to stdout and exit with 0.
    let cli = Cli::parse();
    logging::init();
    match run::run(&cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
