//! Host side of SecureRouter: the `securerouter` command-line tool.
//!
//! The binary (`src/main.rs`) stays thin: it parses the command line with [`cli::Cli`], sets up
//! logging with [`logging::init`], and hands over to [`run`]. Everything else lives in this
//! library so that it can be tested directly.

pub mod cli;
pub mod doctor;
pub mod logging;

use std::io::Write;

use cli::{Cli, Command};

/// Runs the parsed command, writing its report to `out`.
///
/// # Errors
/// Whatever the command fails with (for `doctor`, only a failure to write to `out`).
pub fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor => doctor::run(out),
    }
}
