//! `securerouter bench throughput`: the trained pool served by dealer, P0 and P1 as processes
//! on this machine, as `serve` runs by default (keys streamed during the online phase), under
//! 1, 4, 16... concurrent clients: routed queries per second and the latency each query's
//! client saw (p50, p99), on the pool's held-out examples.

use crate::error::{Error, Result, invalid};
use securerouter_circuits::{CircuitKind, RouteMode};
use securerouter_ml::assets;
use securerouter_ml::pool_format::{load_held_out, pool_dir};
use securerouter_runtime::local_cluster::ServerFlags;
use securerouter_runtime::relay::LinkModel;
use securerouter_runtime::served_pool::{ServedPool, embed_query_for};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What `bench throughput` runs.
#[derive(Clone, Debug)]
pub struct ThroughputOptions {
    /// The pool directory (default: the cache's `pool`).
    pub pool_dir: Option<PathBuf>,
    /// Asset cache.
    pub cache: Option<PathBuf>,
    /// Routing privacy mode of the queries.
    pub mode: RouteMode,
    /// Concurrent clients, one level after the other.
    pub clients: Vec<usize>,
    /// Queries per level (the held-out examples, cycled).
    pub queries: usize,
    /// Seconds any link may stay silent.
    pub timeout_s: u64,
    /// Threads each server's CPU kernels use (0: one per core).
    pub kernel_threads: usize,
    /// The network between client and servers and between the servers.
    pub link: LinkModel,
}

/// One level of concurrency, as the JSON line prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputLine {
    /// The experts, cheapest first.
    pub experts: Vec<String>,
    /// Routing privacy mode.
    pub route_mode: String,
    /// Tokens per query.
    pub seq_len: usize,
    /// The network the servers and the clients talked over.
    pub link: LinkModel,
    /// Clients asking at once.
    pub clients: usize,
    /// Queries answered.
    pub queries: usize,
    /// Queries that failed (each named in the log).
    pub failed: usize,
    /// Seconds from the first query to the last answer.
    pub seconds: f64,
    /// Answered queries per second.
    pub queries_per_s: f64,
    /// Median of the client's wall time per query (both sessions of a reveal-route query
    /// that asked a second expert).
    pub p50_s: f64,
    /// 99th percentile of the same.
    pub p99_s: f64,
    /// Mean online seconds per query (the slower server).
    pub mean_online_s: f64,
}

/// The `p`-th percentile (0..=100) of sorted `values`, by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs every level and writes a JSON line (or a table row) per level to `out`.
pub fn run(
    opts: &ThroughputOptions,
    json: bool,
    out: &mut dyn Write,
) -> Result<Vec<ThroughputLine>> {
    if opts.clients.is_empty() || opts.clients.contains(&0) {
        invalid!("--clients needs at least one level, each at least 1");
    }
    if let Some(&c) = opts.clients.iter().find(|&&c| c > opts.queries) {
        invalid!("--queries {} is fewer than {c} clients", opts.queries);
    }
    let cache = assets::cache_dir(opts.cache.as_deref())?;
    let dir = pool_dir(opts.pool_dir.as_deref(), Some(&cache))?;
    let pool = ServedPool::load(&dir, &cache)?;
    let examples = Arc::new(load_held_out(&dir, &pool.manifest, &cache)?);
    let servers = ServerFlags {
        prefetch_keys: false,
        gpu: false,
        kernel_threads: opts.kernel_threads,
        link: opts.link,
    };
    let (cluster, bundle) = pool.start_local(opts.timeout_s, servers)?;
    let client = Arc::new(cluster.client()?);
    let (bundle, shape, seq) = (Arc::new(bundle), Arc::new(pool.shape()), pool.seq_len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::AsyncRuntime)?;
    let experts: Vec<String> = pool
        .manifest
        .experts
        .iter()
        .map(|e| e.name.clone())
        .collect();
    if !json {
        writeln!(out, "clients  queries/s   p50 s   p99 s  failed").map_err(Error::Output)?;
    }
    let mut lines = Vec::new();
    for &clients in &opts.clients {
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Mutex::new((Vec::new(), 0.0f64, 0usize)));
        let bar = Arc::new(securerouter_ml::progress::Progress::new(
            opts.queries,
            format!("{clients} concurrent clients"),
        ));
        let started = Instant::now();
        runtime.block_on(async {
            let workers: Vec<_> = (0..clients)
                .map(|_| {
                    let (next, done, bar) = (next.clone(), done.clone(), bar.clone());
                    let (client, bundle, shape, examples) = (
                        client.clone(),
                        bundle.clone(),
                        shape.clone(),
                        examples.clone(),
                    );
                    let (queries, mode) = (opts.queries, opts.mode);
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= queries {
                                break;
                            }
                            let e = &examples[i % examples.len()];
                            let pair = e.text_pair.as_deref();
                            let input = |k| {
                                embed_query_for(&bundle, k, &e.text, pair, seq).map_err(Box::new)
                            };
                            let asked = Instant::now();
                            let answer = client
                                .ask_pool(&shape, CircuitKind::Routed(mode), seq, input)
                                .await;
                            let wall = asked.elapsed().as_secs_f64();
                            if let Ok(mut d) = done.lock() {
                                match answer {
                                    Ok(a) => {
                                        d.0.push(wall);
                                        d.1 += a.outputs.worst_server().online_s;
                                    }
                                    Err(err) => {
                                        d.2 += 1;
                                        tracing::warn!("query {i} failed: {}", err.chain());
                                    }
                                }
                            }
                            bar.inc(1);
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
        });
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let (mut walls, online, failed) = done
            .lock()
            .map_err(|_| Error::Invalid("a client task panicked".into()))?
            .clone();
        walls.sort_by(f64::total_cmp);
        let answered = walls.len();
        let line = ThroughputLine {
            experts: experts.clone(),
            route_mode: opts.mode.name().into(),
            seq_len: seq,
            link: opts.link,
            clients,
            queries: answered,
            failed,
            seconds,
            queries_per_s: answered as f64 / seconds,
            p50_s: percentile(&walls, 50.0),
            p99_s: percentile(&walls, 99.0),
            mean_online_s: online / answered.max(1) as f64,
        };
        if json {
            let text = serde_json::to_string(&line).map_err(Error::Json)?;
            writeln!(out, "{text}").map_err(Error::Output)?;
        } else {
            writeln!(
                out,
                "{:>7}  {:>9.2}  {:>6.3}  {:>6.3}  {:>6}",
                clients, line.queries_per_s, line.p50_s, line.p99_s, failed
            )
            .map_err(Error::Output)?;
        }
        lines.push(line);
    }
    drop(cluster);
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
