//! `securerouter demo`: the whole job on this machine. Fetches the assets, builds and trains the
//! pool and its router if the cache lacks them, starts the dealer, P0 and P1 as processes on
//! loopback over the encrypted links, and classifies a few held-out sentences (and any
//! `--text`) twice under MPC: routed, and through the largest expert alone.
//!
//! `--pool base` does the same with the base-size pool: MPNet-base fine-tuned on the Rotten
//! Tomatoes sentences (fetched and trained once) next to the MiniLM-L6 cuts.
//!
//! Building and training need the `train` feature (on by default); a build without it serves
//! a pool built before and says so when there is none.

use anyhow::bail;
use securerouter_circuits::{CircuitKind, RouteMode};
use securerouter_ml::assets;
use securerouter_ml::data::Label;
use securerouter_ml::pool::MANIFEST;
use securerouter_ml::pool_format::{load_held_out, pool_dir, router_is_current};
use securerouter_runtime::client::PoolAnswer;
use securerouter_runtime::local_cluster::ServerFlags;
use securerouter_runtime::served_pool::{ServedPool, embed_query_for};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Held-out sentences the demo classifies besides `--text`.
pub const DEMO_SENTENCES: usize = 3;

/// `securerouter demo`'s options.
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct DemoArgs {
    /// A sentence to classify too (repeatable).
    #[arg(long = "text")]
    pub texts: Vec<String>,
    /// Routing privacy mode.
    #[arg(long = "route", value_enum, default_value = "reveal-route")]
    pub mode: RouteMode,
    /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
    #[arg(long = "cache-dir")]
    pub cache: Option<PathBuf>,
    /// Which pool: `small` (MiniLM-L6 cut to 1, 3 and 6 layers) or `base` (the same cuts
    /// and MPNet-base fine-tuned on the task: about 40 minutes to build on 2 cores, once).
    #[arg(long = "pool", value_enum, default_value = "small")]
    pub pool: DemoPool,
    /// Pool directory (default: the cache directory's `pool`, or `pool-base`).
    #[arg(long)]
    pub pool_dir: Option<PathBuf>,
    /// Seconds any link may stay silent.
    #[arg(long = "timeout", default_value_t = 600)]
    pub timeout_s: u64,
}

/// The pools the demo builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoPool {
    /// MiniLM-L6 cut to 1, 3 and 6 layers.
    Small,
    /// The small pool's cuts and MPNet-base fine-tuned on the task.
    Base,
}

/// Where the base-size pool lives in the cache.
const BASE_POOL_DIR: &str = "pool-base";
/// Where its MPNet expert, fine-tuned on the task, lives in the cache.
#[cfg(feature = "train")]
const BASE_EXPERT_DIR: &str = "experts/mpnet-base";

/// Runs the demo, writing its report to `out`.
pub fn run(opts: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(t) = opts.texts.iter().find(|t| t.trim().is_empty()) {
        bail!("--text {t:?} is empty");
    }
    let cache = assets::cache_dir(opts.cache.as_deref())?;
    for a in assets::ALL {
        a.fetch(&cache)?;
    }
    let dir = match (opts.pool, &opts.pool_dir) {
        (DemoPool::Base, None) => cache.join(BASE_POOL_DIR),
        (_, given) => pool_dir(given.as_deref(), Some(&cache))?,
    };
    prepare_pool(&cache, &dir, opts.pool, out)?;
    let pool = ServedPool::load(&dir, &cache)?;
    let names: Vec<&str> = pool
        .manifest
        .experts
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let k = names.len();
    // The pool's own held-out examples with their truth, then the user's texts.
    let mut queries: Vec<(String, Option<String>, Option<Label>)> =
        load_held_out(&dir, &pool.manifest, &cache)?
            .into_iter()
            .take(DEMO_SENTENCES)
            .map(|e| (e.text, e.text_pair, Some(e.label)))
            .collect();
    queries.extend(
        opts.texts
            .iter()
            .map(|t| (t.trim().to_string(), None, None)),
    );

    writeln!(
        out,
        "pool: {} (cheapest first); {}: {}",
        names.join(", "),
        opts.mode.name(),
        match opts.mode {
            RouteMode::Reveal => "the servers and the dealer learn each query's route",
            RouteMode::Hide => "every expert runs; nobody but the client learns the route",
        }
    )?;
    writeln!(
        out,
        "starting the dealer, P0 and P1 on loopback (encrypted, mutually authenticated links)"
    )?;
    let (cluster, bundle) = pool.start_local(opts.timeout_s, ServerFlags::default())?;
    let client = cluster.client()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let shape = pool.shape();
    let ask = |kind: CircuitKind, text: &str, pair: Option<&str>| -> anyhow::Result<PoolAnswer> {
        let input = |k| Ok(embed_query_for(&bundle, k, text, pair, pool.seq_len())?);
        Ok(runtime.block_on(client.ask_pool(&shape, kind, pool.seq_len(), input))?)
    };
    let mb = |a: &PoolAnswer| a.outputs.worst_server().online_bytes_sent as f64 / 1e6;
    let labels = &pool.manifest.labels;
    let label = |l: usize| labels.get(l).map_or("?", String::as_str);
    let (mut routed_s, mut routed_mb, mut largest_s, mut largest_mb) = (0.0, 0.0, 0.0, 0.0);
    for (text, pair, truth) in &queries {
        let pair = pair.as_deref();
        let routed = ask(CircuitKind::Routed(opts.mode), text, pair)?;
        let largest = ask(CircuitKind::Expert((k - 1) as u8), text, pair)?;
        let shown = |t: &str| -> String {
            if t.chars().count() > 72 {
                t.chars().take(69).chain("...".chars()).collect()
            } else {
                t.to_string()
            }
        };
        writeln!(out, "\n\"{}\"", shown(text))?;
        if let Some(b) = pair {
            writeln!(out, "\"{}\"", shown(b))?;
        }
        if let Some(Label::Class(t)) = truth {
            writeln!(out, "  truth           {}", label(*t as usize))?;
        }
        writeln!(
            out,
            "  routed          {:<9} via {:<18} {:>6.2} s  {:>6.1} MB per server",
            label(routed.label),
            names[routed.route],
            routed.outputs.wall_s,
            mb(&routed)
        )?;
        writeln!(
            out,
            "  always-largest  {:<9} via {:<18} {:>6.2} s  {:>6.1} MB per server",
            label(largest.label),
            names[k - 1],
            largest.outputs.wall_s,
            mb(&largest)
        )?;
        routed_s += routed.outputs.wall_s;
        routed_mb += mb(&routed);
        largest_s += largest.outputs.wall_s;
        largest_mb += mb(&largest);
    }
    writeln!(
        out,
        "\n{} queries: routed {:.1} s and {:.0} MB per server; always-largest {:.1} s and {:.0} MB \
         per server ({:.2}x the time)",
        queries.len(),
        routed_s,
        routed_mb,
        largest_s,
        largest_mb,
        largest_s / routed_s
    )?;
    writeln!(
        out,
        "times are end to end at the client (keys streamed alongside); `securerouter bench \
         --pool` measures accuracy and the online speed-up on many sentences"
    )?;
    Ok(())
}

/// Builds the pool in `dir` if it is missing (its experts' costs measured with `bench`; for
/// the base-size pool, MPNet-base fetched and fine-tuned first unless the cache holds it) and
/// trains its router if it has none that this version reads.
#[cfg(feature = "train")]
fn prepare_pool(
    cache: &Path,
    dir: &Path,
    pool: DemoPool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use securerouter_train::pool::{PoolOptions, build_pool, train_pool_router};
    use securerouter_train::router::RouterOptions;
    if !dir.join(MANIFEST).exists() {
        let base = PoolOptions {
            cache: Some(cache.to_path_buf()),
            dir: Some(dir.to_path_buf()),
            ..PoolOptions::default()
        };
        // The base-size pool's cuts are fine-tuned whole and taught by MPNet-base: cuts tuned
        // as the small pool's are too weak beside it for the router to keep its accuracy.
        let (opts, minutes) = match pool {
            DemoPool::Small => (base, 10),
            DemoPool::Base => (
                PoolOptions {
                    checkpoints: vec![base_expert(cache, out)?],
                    tune_top: Some(6),
                    distill: true,
                    ..base
                },
                26,
            ),
        };
        writeln!(
            out,
            "building the pool in {} (once; about {minutes} minutes on 2 cores)",
            dir.display()
        )?;
        build_pool(
            &opts,
            &|req, out| securerouter_bench::expert_cost(req, Some(cache), out).map_err(Into::into),
            out,
        )?;
    }
    if !router_is_current(dir)? {
        writeln!(out, "training the router")?;
        let opts = match pool {
            DemoPool::Small => RouterOptions::default(),
            // Its experts' costs differ 22-fold: no load balancing, a lighter cost weight.
            DemoPool::Base => RouterOptions {
                balance_weight: 0.0,
                cost_weight: 0.1,
                epochs: 30,
                ..RouterOptions::default()
            },
        };
        train_pool_router(dir, &opts, None, true)?;
    }
    Ok(())
}

/// MPNet-base fine-tuned on the Rotten Tomatoes experts' sentences (the top 2 of its 12
/// layers, 2 epochs, 64 tokens), from the cache or fetched and trained now (about 20 minutes
/// on 2 cores); returns its folder.
#[cfg(feature = "train")]
fn base_expert(cache: &Path, out: &mut dyn Write) -> anyhow::Result<PathBuf> {
    use securerouter_train::checkpoint_expert::{ExpertOptions, TRAINING_RECORD, train_expert};
    use securerouter_train::expert::FineTuneOptions;
    let folder = cache.join(BASE_EXPERT_DIR);
    if folder.join(TRAINING_RECORD).is_file() {
        return Ok(folder);
    }
    let model_dir = assets::MPNET_BASE.fetch(cache)?;
    writeln!(
        out,
        "fine-tuning MPNet-base on the Rotten Tomatoes sentences into {} (once; about 20 \
         minutes on 2 cores)",
        folder.display()
    )?;
    let opts = ExpertOptions {
        layers: None,
        tune_top: 2,
        seq_len: 64,
        fine_tune: FineTuneOptions {
            epochs: 2,
            ..FineTuneOptions::default()
        },
        limit: None,
    };
    let task = securerouter_ml::data::TaskData::rotten_tomatoes(cache)?;
    train_expert(&model_dir, &folder, &task, &opts, out)?;
    Ok(folder)
}

/// Without training, the demo serves a pool built and routed before (by a build with the
/// `train` feature), and refuses to start without one.
#[cfg(not(feature = "train"))]
fn prepare_pool(
    _cache: &Path,
    dir: &Path,
    _pool: DemoPool,
    _out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !dir.join(MANIFEST).exists() || !router_is_current(dir)? {
        bail!(
            "the pool in {} is not built or has no current router, and this securerouter was \
             built without the `train` feature, so it cannot train them: run `securerouter \
             train pool` and `securerouter train router` with a default build (or build with \
             `--features train`)",
            dir.display()
        );
    }
    Ok(())
}
