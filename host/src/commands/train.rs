//! `securerouter train`: the pool's experts fine-tuned, then the router trained (the `train`
//! feature; a build without it refuses, saying why).

use crate::commands::data::DataArgs;
#[cfg(feature = "train")]
use anyhow::bail;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

/// What `securerouter train` does.
#[derive(Debug, Subcommand, PartialEq)]
pub enum TrainAction {
    /// Fine-tune one expert: a BERT checkpoint folder (Hugging Face's layout) trained on a
    /// labelled task, GLUE's files (--task, --data) or your own table (--data with
    /// --text-col and --label-col), and written as a BertForSequenceClassification folder
    /// with its label set; prints the task's metric on held-out examples as JSON.
    Expert {
        /// The checkpoint folder: config.json, model.safetensors (or shards), tokenizer.json
        /// or vocab.txt.
        #[arg(long)]
        model_dir: PathBuf,
        /// The folder to write the classifier to.
        #[arg(long)]
        out: PathBuf,
        /// The labelled data.
        #[command(flatten)]
        data: DataArgs,
        /// Keep only the checkpoint's first N encoder layers.
        #[arg(long)]
        layers: Option<usize>,
        /// Encoder layers fine-tuned from the top (0 fits the head alone).
        #[arg(long, default_value_t = 1)]
        tune_top: usize,
        /// Passes over the training examples.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Tokens per example (a pair shares them).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..=4096))]
        seq: u64,
        /// Examples per step.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Learning rate of the fine-tuned encoder layers (AdamW).
        #[arg(long, default_value_t = 5e-5)]
        lr: f64,
        /// Learning rate of the head (AdamW).
        #[arg(long, default_value_t = 2e-3)]
        head_lr: f64,
        /// Use at most this many training and held-out examples (quick runs).
        #[arg(long)]
        limit: Option<usize>,
        /// Replace what --out holds.
        #[arg(long)]
        force: bool,
    },
    /// Build the pool: MiniLM-L6 cut to each of --experts layers, its top layers and a head
    /// fine-tuned on a labelled classification task (the Rotten Tomatoes sentences unless
    /// --task and --data, or a table, name another), then any --expert classifier folders
    /// trained on the same data; the task's metric on held-out examples, MPC cost measured
    /// with `bench`, and a manifest. A built pool is reused unless --force.
    Pool {
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// The labelled data (default: the Rotten Tomatoes sentences).
        #[command(flatten)]
        data: DataArgs,
        /// Pool directory (default: the cache directory's `pool`).
        #[arg(long)]
        pool_dir: Option<PathBuf>,
        /// Layers each expert keeps, comma-separated, cheapest first.
        #[arg(long, value_delimiter = ',', default_value = "1,3,6")]
        experts: Vec<usize>,
        /// A classifier checkpoint folder (from `train expert` on the same data) that joins
        /// the pool after the cuts with its own tokenizer, embeddings and head; repeat for
        /// more, cheapest first.
        #[arg(long = "expert", value_name = "DIR")]
        checkpoints: Vec<PathBuf>,
        /// Tokens per sequence under MPC.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=512))]
        seq: u64,
        /// Fine-tuning epochs.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Layers each cut fine-tunes from the top, all of a smaller cut (default: a third
        /// of its layers, at least one).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        tune_top: Option<u64>,
        /// The cuts also learn the last --expert's class probabilities (knowledge
        /// distillation, temperature 2, half the loss).
        #[arg(long)]
        distill: bool,
        /// Use at most this many examples of each part: the experts', the router's, held out
        /// (quick runs).
        #[arg(long)]
        limit: Option<usize>,
        /// Queries `bench` averages to measure each expert's cost (0 skips the measurement).
        #[arg(long, default_value_t = 2)]
        cost_queries: usize,
        /// Rebuild an existing pool.
        #[arg(long)]
        force: bool,
        /// Measure a built pool's experts under MPC again (after an engine change, or on
        /// another machine), keeping its experts; reads the pool's own held-out examples, so
        /// the build's data flags are not needed.
        #[arg(long, conflicts_with = "force")]
        measure_costs: bool,
    },
    /// Train the router on a built pool: straight-through Gumbel-Softmax with task,
    /// load-balancing and cost losses; prints the route distribution, accuracy and the task's
    /// metric on held-out examples as JSON and stores the router in the pool.
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

/// Runs `securerouter train`: the command line's options mapped to the training library's,
/// each expert's cost measured with [`securerouter_bench::expert_cost`].
#[cfg(feature = "train")]
pub fn run(action: &TrainAction, out: &mut dyn Write) -> anyhow::Result<()> {
    use securerouter_train::{checkpoint_expert, expert, pool, router};
    match action {
        TrainAction::Expert {
            model_dir,
            out: out_dir,
            data,
            layers,
            tune_top,
            epochs,
            seq,
            batch_size,
            lr,
            head_lr,
            limit,
            force,
        } => {
            for (what, v) in [("--lr", *lr), ("--head-lr", *head_lr)] {
                if !(v.is_finite() && v > 0.0) {
                    bail!("{what} must be a positive number, not {v}");
                }
            }
            if *epochs == 0 || *batch_size == 0 {
                bail!("--epochs and --batch-size must be at least 1");
            }
            check_out_dir(out_dir, model_dir, *force)?;
            let Some(source) = data.source()? else {
                bail!(
                    "train expert needs labelled data: --task and --data, a table, or --rotten-tomatoes"
                );
            };
            let cache = securerouter_ml::assets::cache_dir(None)?;
            let task_data = source.load(&cache, data.held_out)?;
            let opts = checkpoint_expert::ExpertOptions {
                layers: *layers,
                tune_top: *tune_top,
                seq_len: *seq as usize,
                fine_tune: expert::FineTuneOptions {
                    epochs: *epochs,
                    batch_size: *batch_size,
                    layer_lr: *lr,
                    head_lr: *head_lr,
                    ..expert::FineTuneOptions::default()
                },
                limit: *limit,
            };
            let report =
                checkpoint_expert::train_expert(model_dir, out_dir, &task_data, &opts, out)?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
            Ok(())
        }
        TrainAction::Pool {
            cache_dir,
            data,
            pool_dir,
            experts,
            checkpoints,
            seq,
            epochs,
            tune_top,
            distill,
            limit,
            cost_queries,
            force,
            measure_costs,
        } => {
            let opts = pool::PoolOptions {
                cache: cache_dir.clone(),
                data: data.source()?.map(|s| (s, data.held_out)),
                dir: pool_dir.clone(),
                expert_layers: experts.clone(),
                checkpoints: checkpoints.clone(),
                seq_len: *seq as usize,
                fine_tune: expert::FineTuneOptions {
                    epochs: *epochs,
                    ..expert::FineTuneOptions::default()
                },
                tune_top: tune_top.map(|t| t as usize),
                distill: *distill,
                limit: *limit,
                cost_queries: *cost_queries,
                force: *force,
                remeasure: *measure_costs,
            };
            let m = pool::build_pool(
                &opts,
                &|req, out| {
                    securerouter_bench::expert_cost(req, cache_dir.as_deref(), out)
                        .map_err(Into::into)
                },
                out,
            )?;
            writeln!(out, "{}", serde_json::to_string(&m)?)?;
            Ok(())
        }
        TrainAction::Router {
            cache_dir,
            pool_dir,
            task_weight,
            balance_weight,
            cost_weight,
            costs,
            tau,
            epochs,
            hidden,
            dry_run,
        } => {
            let opts = router::RouterOptions {
                hidden: *hidden,
                epochs: *epochs,
                tau: *tau,
                task_weight: *task_weight,
                balance_weight: *balance_weight,
                cost_weight: *cost_weight,
                ..router::RouterOptions::default()
            };
            opts.check()?;
            let dir =
                securerouter_ml::pool_format::pool_dir(pool_dir.as_deref(), cache_dir.as_deref())?;
            let (_, report) = pool::train_pool_router(&dir, &opts, costs.as_deref(), !dry_run)?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
            Ok(())
        }
    }
}

/// Refuses to write a classifier over its own checkpoint, or into a folder that holds files
/// unless `force`.
#[cfg(feature = "train")]
fn check_out_dir(
    out: &std::path::Path,
    model_dir: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    if let (Ok(a), Ok(b)) = (out.canonicalize(), model_dir.canonicalize())
        && a == b
    {
        bail!(
            "--out {} is the checkpoint folder itself; write the classifier elsewhere",
            out.display()
        );
    }
    let holds_files = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if holds_files && !force {
        bail!(
            "--out {} is not empty (--force replaces its files)",
            out.display()
        );
    }
    Ok(())
}

/// `securerouter train` in a build without the `train` feature: refused, saying why.
#[cfg(not(feature = "train"))]
pub fn run(_: &TrainAction, _: &mut dyn Write) -> anyhow::Result<()> {
    Err(without_train("`securerouter train`"))
}

/// The error of a command that needs the `train` feature, in a build without it.
#[cfg(not(feature = "train"))]
pub fn without_train(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs training, and this securerouter was built without the `train` feature \
         (build it with the default features, or with `--features train`)"
    )
}
