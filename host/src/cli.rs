//! Command-line interface of the `securerouter` binary.

use clap::{Parser, Subcommand};

/// One line on what SecureRouter is (the `about` of `--help`).
pub const ABOUT: &str = "SecureRouter: private inference of Transformer classifiers with \
two-party computation and an encrypted router over a pool of experts";

const AFTER_HELP: &str = "\
This build provides the subcommands listed above; further subcommands arrive with later work.

Logging goes to stderr; set RUST_LOG to filter it (default: info), e.g. RUST_LOG=debug.";

/// The `securerouter` command line.
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(
    name = "securerouter",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    arg_required_else_help = true,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Report the environment facts that matter for running SecureRouter.
    ///
    /// Prints the version, the platform, whether AES runs on hardware instructions, and whether
    /// a CUDA GPU is usable (with the reason when it is not, in which case server kernels run on
    /// the CPU). Exits 0 whenever the report was written; a missing GPU is a fact, not an error.
    Doctor,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_doctor() {
        let cli = Cli::try_parse_from(["securerouter", "doctor"]).unwrap();
        assert_eq!(cli.command, Command::Doctor);
    }

    #[test]
    fn rejects_unknown_input() {
        let err = Cli::try_parse_from(["securerouter", "--frobnicate"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
        let err = Cli::try_parse_from(["securerouter", "serve"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
        let err = Cli::try_parse_from(["securerouter", "doctor", "extra"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn no_arguments_shows_help() {
        let err = Cli::try_parse_from(["securerouter"]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }
}
