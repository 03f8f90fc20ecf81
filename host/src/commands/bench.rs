//! `securerouter bench`: one subcommand per thing measured, each under MPC with the dealer, P0
//! and P1 as processes on loopback over the encrypted links.

use crate::commands::data::DataArgs;
use clap::{Args, Subcommand};
use securerouter_bench::pool::PoolBenchOptions;
use securerouter_bench::{BenchModel, BenchOptions};
use securerouter_circuits::{Activation, BertShape, RouteMode};
use securerouter_ml::pool_format::pool_dir;
use securerouter_runtime::relay::LinkModel;
use std::io::Write;
use std::path::PathBuf;

/// What `securerouter bench` measures.
#[derive(Debug, Subcommand, PartialEq)]
pub enum BenchCommand {
    /// MiniLM-L6 from the asset cache (cut to its first --layers), with a sentiment head
    /// fitted once on Rotten Tomatoes sentences, on held-out sentences padded to --seq tokens.
    Minilm {
        /// Layers kept (default: all 6).
        #[arg(long)]
        layers: Option<usize>,
        /// How to run and report.
        #[command(flatten)]
        run: ModelRunArgs,
    },
    /// A BERT of random weights and this shape on random tokens, e.g. the BERT-tiny shape
    /// (--layers 2 --hidden 128 --heads 2 --ffn 512) or the BERT-base shape (12/768/12/3072).
    Shape {
        /// Encoder layers.
        #[arg(long)]
        layers: usize,
        /// Hidden size.
        #[arg(long)]
        hidden: usize,
        /// Attention heads.
        #[arg(long)]
        heads: usize,
        /// Feed-forward size.
        #[arg(long)]
        ffn: usize,
        /// How to run and report.
        #[command(flatten)]
        run: ModelRunArgs,
    },
    /// A `BertForSequenceClassification` checkpoint folder with its own head (first token,
    /// pooler and tanh, classifier), on random token ids or, with --task and --data, on the
    /// task's dev examples tokenized by the folder's tokenizer; reports the label agreement
    /// with the checkpoint's f64 forward pass, and the task's metric under MPC and in
    /// plaintext.
    Checkpoint {
        /// The checkpoint folder (`config.json`, safetensors, and `tokenizer.json` or
        /// `vocab.txt`).
        #[arg(long)]
        model_dir: PathBuf,
        /// The labelled examples to run (the held-out ones; random token ids without).
        #[command(flatten)]
        data: DataArgs,
        /// How to run and report.
        #[command(flatten)]
        run: ModelRunArgs,
    },
    /// One expert of the trained pool (`securerouter train pool`), on the pool's held-out
    /// sentences.
    Expert {
        /// The expert's name in the pool's manifest.
        name: String,
        /// The pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// How to run and report.
        #[command(flatten)]
        run: ModelRunArgs,
    },
    /// The trained pool (`securerouter train pool`, then `train router`): each of --queries
    /// held-out sentences runs routed (in the --route mode) and through the largest expert
    /// alone, both under MPC; prints accuracy, the route distribution, the secure router's
    /// agreement with the plaintext router, the measured speed-up over always-largest and
    /// the router's overhead.
    Pool {
        /// Held-out sentences per session: each batch runs the router once for all its
        /// sentences (in reveal-route each chosen expert then once for those routed to it),
        /// and the largest expert once for all; the report adds queries per second.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// The pool and how to run it.
        #[command(flatten)]
        pool: PoolRunArgs,
    },
    /// Only the pool's router under MPC (no expert) on --queries held-out sentences: how
    /// often its choice equals the plaintext router's, with a one-sided 95% lower confidence
    /// bound.
    Router {
        /// The pool and how to run it.
        #[command(flatten)]
        pool: PoolRunArgs,
    },
    /// The trained pool served as `serve` runs by default (dealer, P0 and P1 as processes on
    /// this machine), under each --clients level of concurrent clients: routed queries per
    /// second and each query's latency as its client saw it (p50, p99), --queries per level
    /// on the pool's held-out examples.
    Throughput {
        /// Concurrent clients, comma-separated; one level after the other.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        clients: Vec<usize>,
        /// Routing privacy mode of the queries.
        #[arg(long, value_enum, default_value = "reveal-route")]
        route: RouteMode,
        /// The pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Queries per level.
        #[arg(long, default_value_t = 64)]
        queries: usize,
        /// Print one JSON line per level instead of a table.
        #[arg(long)]
        json: bool,
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Seconds any link may stay silent.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Threads each server's CPU kernels use (0: one per core).
        #[arg(long, default_value_t = 0)]
        kernel_threads: usize,
        /// The network between the clients and the servers and between the servers (as for
        /// the other benchmarks: loopback, lan, wan or rtt=..,rate=..).
        #[arg(long, default_value = "loopback")]
        link: LinkModel,
    },
    /// Retrain the pool's router for each --cost-weights value, measure its routed queries and
    /// every expert alone under MPC on --queries held-out sentences, and draw held-out
    /// accuracy against measured online time per query (SVG at --plot). Needs a build with
    /// the `train` feature (the default).
    Sweep {
        /// Cost-loss weights, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,0.1,0.2,0.3,0.6,1")]
        cost_weights: Vec<f64>,
        /// Where to write the plot.
        #[arg(long, default_value = "pool-sweep.svg")]
        plot: PathBuf,
        /// Weight of each router's load-balancing loss (as `train router`).
        #[arg(long, default_value_t = 0.02)]
        balance_weight: f64,
        /// Each router's training epochs (as `train router`).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        router_epochs: u64,
        /// Routing privacy mode of the routed queries.
        #[arg(long, value_enum, default_value = "reveal-route")]
        route: RouteMode,
        /// The pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Held-out sentences each router runs on.
        #[arg(long, default_value_t = 1)]
        queries: usize,
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Seconds any link may stay silent.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

/// What every benchmark in a local cluster takes: how many queries, the cache, the links'
/// patience, the servers' kernels and the report's form.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct ClusterArgs {
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Queries to run and average over (held-out sentences, or random sequences for `shape`).
    #[arg(long, default_value_t = 1)]
    pub queries: usize,
    /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Seconds any link may stay silent (key generation for big models takes minutes).
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Run both servers' kernels on the GPU (`serve --gpu`; the CPU where none is usable).
    /// The JSON line's `kernels` says what the servers really ran on.
    #[arg(long)]
    pub gpu: bool,
    /// Threads each server's CPU kernels use (`serve --kernel-threads`; 0: one per core).
    #[arg(long, default_value_t = 0)]
    pub kernel_threads: usize,
    /// The network between the client and the servers and between the servers: `loopback`,
    /// `lan` (1 ms, 1 Gbit/s), `wan` (40 ms, 200 Mbit/s) or `rtt=40ms,rate=200mbit`, run by a
    /// user-space relay in front of each server (the dealer's links stay on loopback).
    #[arg(long, default_value = "loopback")]
    pub link: LinkModel,
}

/// How a model benchmark runs and reports.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct ModelRunArgs {
    /// Also print online time, bytes and rounds per part (linear, attention, softmax, GeLU,
    /// LayerNorm, other).
    #[arg(long)]
    pub breakdown: bool,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// The cluster and the report.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Which trained pool a pool benchmark runs, and how.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct PoolRunArgs {
    /// Routing privacy mode of the routed queries.
    #[arg(long, value_enum, default_value = "reveal-route")]
    pub route: RouteMode,
    /// The pool directory (default: the cache directory's `pool`).
    #[arg(long)]
    pub pool_dir: Option<PathBuf>,
    /// The cluster and the report.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl PoolRunArgs {
    fn options(&self) -> PoolBenchOptions {
        let c = &self.cluster;
        PoolBenchOptions {
            pool_dir: self.pool_dir.clone(),
            cache: c.cache_dir.clone(),
            mode: self.route,
            queries: c.queries,
            timeout_s: c.timeout,
            gpu: c.gpu,
            kernel_threads: c.kernel_threads,
            link: c.link,
            batch: 1,
        }
    }
}

/// Runs one benchmark, writing its report to `out`.
pub fn run(what: &BenchCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let (model, run) = match what {
        BenchCommand::Minilm { layers, run } => (BenchModel::MiniLm { layers: *layers }, run),
        BenchCommand::Shape {
            layers,
            hidden,
            heads,
            ffn,
            run,
        } => (
            BenchModel::Random(BertShape {
                layers: *layers,
                hidden: *hidden,
                heads: *heads,
                ffn: *ffn,
                classes: 2,
                activation: Activation::Gelu,
                relative_buckets: 0,
            }),
            run,
        ),
        BenchCommand::Checkpoint {
            model_dir,
            data,
            run,
        } => (
            BenchModel::Checkpoint {
                dir: model_dir.clone(),
                data: data.source()?.map(|s| (s, data.held_out)),
            },
            run,
        ),
        BenchCommand::Expert {
            name,
            pool_dir: dir,
            run,
        } => (
            BenchModel::PoolExpert {
                pool: pool_dir(dir.as_deref(), run.cluster.cache_dir.as_deref())?,
                name: name.clone(),
            },
            run,
        ),
        BenchCommand::Pool { pool, batch } => {
            let opts = PoolBenchOptions {
                batch: *batch,
                ..pool.options()
            };
            securerouter_bench::pool::run(&opts, pool.cluster.json, out)?;
            return Ok(());
        }
        BenchCommand::Throughput {
            clients,
            route,
            pool_dir,
            queries,
            json,
            cache_dir,
            timeout,
            kernel_threads,
            link,
        } => {
            let opts = securerouter_bench::throughput::ThroughputOptions {
                link: *link,
                pool_dir: pool_dir.clone(),
                cache: cache_dir.clone(),
                mode: *route,
                clients: clients.clone(),
                queries: *queries,
                timeout_s: *timeout,
                kernel_threads: *kernel_threads,
            };
            securerouter_bench::throughput::run(&opts, *json, out)?;
            return Ok(());
        }
        BenchCommand::Router { pool } => {
            securerouter_bench::router_agreement::run(&pool.options(), pool.cluster.json, out)?;
            return Ok(());
        }
        BenchCommand::Sweep {
            cost_weights,
            plot,
            balance_weight,
            router_epochs,
            route,
            pool_dir,
            queries,
            cache_dir,
            timeout,
        } => {
            #[cfg(feature = "train")]
            {
                let opts = securerouter_bench::sweep::SweepOptions {
                    pool_dir: pool_dir.clone(),
                    cache: cache_dir.clone(),
                    mode: *route,
                    queries: *queries,
                    weights: cost_weights.clone(),
                    router: securerouter_train::router::RouterOptions {
                        balance_weight: *balance_weight,
                        epochs: *router_epochs as usize,
                        ..securerouter_train::router::RouterOptions::default()
                    },
                    plot: plot.clone(),
                    timeout_s: *timeout,
                };
                securerouter_bench::sweep::run(&opts, out)?;
                return Ok(());
            }
            #[cfg(not(feature = "train"))]
            {
                // The sweep's options, which this build cannot use.
                let _ = (
                    cost_weights,
                    plot,
                    balance_weight,
                    router_epochs,
                    route,
                    pool_dir,
                    queries,
                    cache_dir,
                    timeout,
                );
                return Err(super::train::without_train(
                    "`bench sweep` (it retrains the router per cost weight)",
                ));
            }
        }
    };
    let c = &run.cluster;
    let opts = BenchOptions {
        model,
        seq_len: run.seq,
        queries: c.queries,
        breakdown: run.breakdown,
        cache: c.cache_dir.clone(),
        timeout_s: c.timeout,
        gpu: c.gpu,
        kernel_threads: c.kernel_threads,
        link: c.link,
    };
    securerouter_bench::run(&opts, c.json, out)?;
    Ok(())
}
