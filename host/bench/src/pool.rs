//! `securerouter bench pool`: the trained pool served by dealer, P0 and P1 as processes on
//! loopback. Every held-out example (the pool's own, stored by `train pool`) runs twice under
//! MPC, routed (in the chosen routing privacy mode) and through the largest expert alone, so
//! the speed-up is measured end to end on the same examples, not projected from per-expert
//! costs, and both are scored by the task's metric. The plaintext pool checks the secure
//! router's choices.

use crate::error::{Error, Result, invalid};
use securerouter_circuits::{CircuitKind, RouteMode};
use securerouter_ml::ClientBundle;
use securerouter_ml::Scores;
use securerouter_ml::assets;
use securerouter_ml::data::{Example, Label};
use securerouter_ml::pool_format::{load_held_out, pool_dir};
use securerouter_runtime::client::{Client, SessionOutputs};
use securerouter_runtime::local_cluster::LocalCluster;
use securerouter_runtime::local_cluster::ServerFlags;
use securerouter_runtime::relay::LinkModel;
use securerouter_runtime::served_pool::{ServedPool, embed_query_for};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// What `bench pool` runs.
#[derive(Clone, Debug)]
pub struct PoolBenchOptions {
    /// The pool directory (default: the cache's `pool`).
    pub pool_dir: Option<PathBuf>,
    /// Asset cache.
    pub cache: Option<PathBuf>,
    /// Routing privacy mode of the routed queries.
    pub mode: RouteMode,
    /// Held-out examples to run.
    pub queries: usize,
    /// Seconds any link may stay silent.
    pub timeout_s: u64,
    /// Ask the servers to run their kernels on the GPU.
    pub gpu: bool,
    /// Threads each server's CPU kernels use (0: one per core).
    pub kernel_threads: usize,
    /// The network between client and servers and between the servers.
    pub link: LinkModel,
    /// Held-out examples per session (1: one query a session).
    pub batch: usize,
}

/// Cost per query of one way of answering, averaged over the sentences (a batch's cost shared
/// by its queries).
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueryCost {
    /// Queries answered per second of the client's end-to-end time.
    pub queries_per_s: f64,
    /// Online seconds (the slower server), keys received before the online phase; a
    /// reveal-route batch's expert sessions, which run at the same time, add up.
    pub online_s: f64,
    /// Seconds the servers spent receiving keys before the online phase.
    pub offline_s: f64,
    /// End-to-end seconds as the client saw them.
    pub wall_s: f64,
    /// Bytes each server sent the other online (the larger).
    pub online_bytes_per_server: f64,
    /// Key bytes per server (the larger, P1's).
    pub key_bytes_per_server: f64,
    /// Rounds.
    pub rounds: f64,
}

impl QueryCost {
    fn add(&mut self, a: &SessionOutputs) {
        let cost = a.worst_server();
        self.online_s += cost.online_s;
        self.offline_s += cost.offline_s;
        self.wall_s += a.wall_s;
        self.online_bytes_per_server += cost.online_bytes_sent as f64;
        self.key_bytes_per_server += cost.key_bytes_received as f64;
        self.rounds += cost.rounds as f64;
    }

    fn mean(mut self, n: usize) -> Self {
        let n = n as f64;
        for v in [
            &mut self.online_s,
            &mut self.offline_s,
            &mut self.wall_s,
            &mut self.online_bytes_per_server,
            &mut self.key_bytes_per_server,
            &mut self.rounds,
        ] {
            *v /= n;
        }
        self.queries_per_s = 1.0 / self.wall_s;
        self
    }
}

/// One `bench pool` run, as the JSON line prints it.
#[derive(Clone, Debug, Serialize)]
pub struct PoolBenchLine {
    /// The experts, cheapest first.
    pub experts: Vec<String>,
    /// Routing privacy mode of the routed queries.
    pub route_mode: String,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// The network the servers and the client talked over.
    pub link: LinkModel,
    /// What the link adds by its model to the routed queries' mean online time (rounds × rtt
    /// / 2 + bytes / rate; see [`crate::link_seconds`]).
    pub routed_link_s_predicted: f64,
    /// The same for the always-largest queries.
    pub largest_link_s_predicted: f64,
    /// The pool's task.
    pub task: String,
    /// Held-out examples run.
    pub queries: usize,
    /// Held-out examples per session.
    pub batch: usize,
    /// Accuracy of the routed secure answers.
    pub accuracy: f64,
    /// Accuracy of the largest expert's secure answers on the same examples.
    pub largest_accuracy: f64,
    /// The task's metric of the routed secure answers.
    pub scores: Scores,
    /// The task's metric of the largest expert's secure answers.
    pub largest_scores: Scores,
    /// Share of the sentences routed to each expert under MPC.
    pub route_distribution: Vec<f64>,
    /// Share of sentences whose secure route equals the plaintext router's.
    pub router_agreement: f64,
    /// Share of sentences whose secure routed label equals the plaintext pool's.
    pub label_agreement: f64,
    /// Every query where the secure pool's route or label differs from the plaintext pool's,
    /// with how close the plaintext call was: fixed-point rounding can flip only close calls.
    pub disagreements: Vec<Disagreement>,
    /// Always-largest online time over routed online time, summed over the same sentences.
    pub measured_speedup: f64,
    /// The same ratio for the client's end-to-end time (keys included).
    pub measured_wall_speedup: f64,
    /// Online seconds per query of the router stage (summary encoder, its head, router head;
    /// reveal-route only: in hide-route the router and every expert are one stage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_online_s: Option<f64>,
    /// The router stage's share of the routed online time (reveal-route only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_overhead: Option<f64>,
    /// Routed queries' cost per query.
    pub routed: QueryCost,
    /// The largest expert's cost per query.
    pub largest: QueryCost,
    /// Peak resident memory of dealer, P0 and P1, MiB.
    pub peak_rss_mb: [f64; 3],
}

/// A query the secure pool answered otherwise than the plaintext pool.
#[derive(Clone, Debug, Serialize)]
pub struct Disagreement {
    /// The query's index among the sentences run.
    pub query: usize,
    /// `"route"` (the secure router chose another expert) or `"label"` (same expert, another
    /// label).
    pub what: &'static str,
    /// The plaintext pool's margin between its top two router scores (route) or logits
    /// (label).
    pub margin: f64,
}

/// The trained pool served on loopback (keys prefetched), with the first `opts.queries` of its
/// held-out examples and a client: what every held-out pool benchmark starts from.
pub(crate) struct HeldOutRun {
    pub pool: ServedPool,
    pub examples: Vec<Example>,
    pub cluster: LocalCluster,
    pub bundle: ClientBundle,
    pub client: Client,
    pub runtime: tokio::runtime::Runtime,
}

impl HeldOutRun {
    pub fn start(opts: &PoolBenchOptions) -> Result<Self> {
        if opts.queries == 0 {
            invalid!("--queries must be at least 1");
        }
        if opts.batch == 0 || opts.batch > opts.queries {
            invalid!(
                "--batch must be between 1 and --queries ({}), not {}",
                opts.queries,
                opts.batch
            );
        }
        let cache = assets::cache_dir(opts.cache.as_deref())?;
        let dir = pool_dir(opts.pool_dir.as_deref(), Some(&cache))?;
        let pool = ServedPool::load(&dir, &cache)?;
        let mut examples = load_held_out(&dir, &pool.manifest, &cache)?;
        examples.truncate(opts.queries);
        let servers = ServerFlags {
            prefetch_keys: true,
            gpu: opts.gpu,
            kernel_threads: opts.kernel_threads,
            link: opts.link,
        };
        let (cluster, bundle) = pool.start_local(opts.timeout_s, servers)?;
        let client = cluster.client()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::AsyncRuntime)?;
        Ok(HeldOutRun {
            pool,
            examples,
            cluster,
            bundle,
            client,
            runtime,
        })
    }
}

/// Runs the pool bench and writes its JSON line (or a summary) to `out`.
pub fn run(opts: &PoolBenchOptions, json: bool, out: &mut dyn Write) -> Result<PoolBenchLine> {
    let HeldOutRun {
        pool,
        examples,
        cluster,
        bundle,
        client,
        runtime,
    } = HeldOutRun::start(opts)?;
    let k = pool.experts.len();
    let largest_kind = CircuitKind::Expert((k - 1) as u8);
    let (mut routed, mut largest) = (QueryCost::default(), QueryCost::default());
    let (mut right, mut largest_right, mut agree_route, mut agree_label) = (0, 0, 0, 0);
    let mut routes = vec![0usize; k];
    let mut disagreements = Vec::new();
    let mut router_s = 0.0;
    let shape = pool.shape();
    let (mut routed_labels, mut largest_labels, mut gold) = (Vec::new(), Vec::new(), Vec::new());
    let bar = securerouter_ml::progress::Progress::new(
        examples.len(),
        "routed and always-largest under MPC",
    );
    for (chunk, batch) in examples.chunks(opts.batch).enumerate() {
        let input = |k, b: usize| {
            let s: &Example = &batch[b];
            let pair = s.text_pair.as_deref();
            Ok(embed_query_for(&bundle, k, &s.text, pair, pool.seq_len())?)
        };
        let ask = |kind| client.ask_pool_batch(&shape, kind, pool.seq_len(), batch.len(), input);
        let a = runtime.block_on(ask(CircuitKind::Routed(opts.mode)))?;
        let b = runtime.block_on(ask(largest_kind))?;
        routed.add(&a.outputs);
        largest.add(&b.outputs);
        router_s += a
            .outputs
            .servers
            .iter()
            .map(|st| st.stages.first().map_or(0.0, |p| p.online_s))
            .fold(0.0, f64::max);
        for (j, (s, (a, b))) in batch
            .iter()
            .zip(a.answers.iter().zip(&b.answers))
            .enumerate()
        {
            let i = chunk * opts.batch + j;
            let pair = s.text_pair.as_deref();
            let plain = pool.answer(&s.text, pair)?;
            let class = |c: usize| Label::Class(c as u32);
            routed_labels.push(class(a.label));
            largest_labels.push(class(b.label));
            gold.push(s.label);
            routes[a.route] += 1;
            right += usize::from(class(a.label) == s.label);
            largest_right += usize::from(class(b.label) == s.label);
            agree_route += usize::from(a.route == plain.route);
            agree_label += usize::from(a.label == securerouter_ml::head::argmax(&plain.logits));
            // Name each disagreement with the plaintext pool and how close its call was.
            let disagreement = if a.route != plain.route {
                Some(("route", &plain.scores))
            } else if a.label != securerouter_ml::head::argmax(&plain.logits) {
                Some(("label", &plain.logits))
            } else {
                None
            };
            if let Some((what, values)) = disagreement {
                let margin = securerouter_ml::head::top_two_margin(values);
                tracing::warn!(
                    "query {i}: the secure {what} differs from the plaintext pool's (margin between \
                 its top two {} {margin:.4})",
                    if what == "route" {
                        "router scores"
                    } else {
                        "logits"
                    }
                );
                disagreements.push(Disagreement {
                    query: i,
                    what,
                    margin,
                });
            }
            let done = i + 1;
            bar.set_message(format!(
                "under MPC: routed {right}/{done} right, always-largest {largest_right}/{done}"
            ));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let peak_rss_mb = cluster.peak_rss_mb();
    drop(cluster);
    let n = examples.len();
    let share = |c: usize| c as f64 / n as f64;
    let metric = pool.manifest.metric;
    let reveal = opts.mode == RouteMode::Reveal;
    let line = PoolBenchLine {
        experts: pool
            .manifest
            .experts
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        route_mode: opts.mode.name().into(),
        seq_len: pool.seq_len(),
        link: opts.link,
        routed_link_s_predicted: crate::link_seconds(
            opts.link,
            (routed.rounds / n as f64).round() as u64,
            (routed.online_bytes_per_server / n as f64) as u64,
        ),
        largest_link_s_predicted: crate::link_seconds(
            opts.link,
            (largest.rounds / n as f64).round() as u64,
            (largest.online_bytes_per_server / n as f64) as u64,
        ),
        task: pool.manifest.task.clone(),
        queries: n,
        batch: opts.batch,
        accuracy: share(right),
        largest_accuracy: share(largest_right),
        scores: metric.score(&routed_labels, &gold)?,
        largest_scores: metric.score(&largest_labels, &gold)?,
        route_distribution: routes.iter().map(|&c| share(c)).collect(),
        router_agreement: share(agree_route),
        label_agreement: share(agree_label),
        disagreements,
        measured_speedup: largest.online_s / routed.online_s,
        measured_wall_speedup: largest.wall_s / routed.wall_s,
        router_online_s: reveal.then(|| router_s / n as f64),
        router_overhead: reveal.then(|| router_s / routed.online_s),
        routed: routed.mean(n),
        largest: largest.mean(n),
        peak_rss_mb,
    };
    if json {
        let text = serde_json::to_string(&line).map_err(Error::Json)?;
        writeln!(out, "{text}").map_err(Error::Output)?;
    } else {
        let dist: Vec<String> = line
            .experts
            .iter()
            .zip(&line.route_distribution)
            .map(|(e, d)| format!("{e} {:.0}%", 100.0 * d))
            .collect();
        writeln!(
            out,
            "pool of {} experts on {}, {}, {} held-out examples at {} tokens\n  \
             routed: {}, online {:.3} s, {:.1} MB and {:.0} rounds per server\n  \
             always-largest: {}, online {:.3} s, {:.1} MB and {:.0} rounds per server\n  \
             measured speed-up {:.2}x online ({:.2}x end to end){}\n  \
             {} per session: routed {:.3} queries/s, always-largest {:.3} queries/s\n  \
             routes: {}; secure route = plaintext route on {:.1}%",
            k,
            line.task,
            line.route_mode,
            n,
            line.seq_len,
            line.scores,
            line.routed.online_s,
            line.routed.online_bytes_per_server / 1e6,
            line.routed.rounds,
            line.largest_scores,
            line.largest.online_s,
            line.largest.online_bytes_per_server / 1e6,
            line.largest.rounds,
            line.measured_speedup,
            line.measured_wall_speedup,
            match (line.router_online_s, line.router_overhead) {
                (Some(s), Some(o)) => format!("; router {s:.3} s ({:.0}% of routed)", 100.0 * o),
                _ => String::new(),
            },
            match line.batch {
                1 => "one query".to_string(),
                b => format!("batches of {b}"),
            },
            line.routed.queries_per_s,
            line.largest.queries_per_s,
            dist.join(", "),
            100.0 * line.router_agreement
        )
        .map_err(Error::Output)?;
    }
    Ok(line)
}
