//! `securerouter bench`: a BERT classifier under MPC with the dealer, P0 and P1 as separate
//! processes on loopback over the encrypted links, measured against the f64 reference.
//!
//! The bench writes a throw-away deployment (fresh keys, the model shared for the servers),
//! starts `securerouter dealer` and `securerouter serve --prefetch-keys` for P0 and P1, and
//! runs the client in this process. The servers receive each session's whole key stream
//! before its online phase, so `offline_s` (dealer generation and transfer) and `online_s`
//! (the two servers computing) are timed apart. Figures are per query, averaged.

#![forbid(unsafe_code)]

pub mod error;
pub mod pool;
pub mod router_agreement;
#[cfg(feature = "train")]
pub mod sweep;
pub mod throughput;

pub use error::{Error, Result};

use crate::error::invalid;
use securerouter_circuits::ModelSpec;
use securerouter_circuits::bert::{BertHead, BertShape, client_input, deployable};
use securerouter_circuits::profile::{PhaseStats, add_phases};
use securerouter_ml::assets;
use securerouter_ml::data::{self, DataSource, Label, LabelSet};
use securerouter_ml::head::{ExpertHead, argmax};
use securerouter_ml::hf_tokenizer::{TOKENIZER_JSON, VOCAB_TXT};
use securerouter_ml::metrics::{Metric, Scores};
use securerouter_ml::pool::{CostRequest, MeasuredCost};
use securerouter_ml::pool_format::load_held_out;
use securerouter_ml::{
    BertConfig, BertWeights, ClassifierHead, ClientBundle, Linear, Matrix,
    SequenceClassificationHead, Tokenizer, WordPiece,
};
use securerouter_runtime::deployment::{CLIENT_BUNDLE, DeploymentDir, random_seed};
use securerouter_runtime::local_cluster::{LocalCluster, ServerFlags};
use securerouter_runtime::relay::LinkModel;
use securerouter_runtime::server::peak_rss_mb;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which model to run.
#[derive(Clone, Debug, PartialEq)]
pub enum BenchModel {
    /// MiniLM-L6 from the asset cache (optionally cut to its first `layers`), with a head
    /// fitted on Rotten Tomatoes sentences, run on held-out sentences.
    MiniLm {
        /// Layers kept (all 6 when `None`).
        layers: Option<usize>,
    },
    /// Random weights of a shape, on random tokens filling the whole sequence.
    Random(BertShape),
    /// An expert of a pool (`securerouter train pool`), run on the pool's held-out sentences.
    PoolExpert {
        /// The pool directory.
        pool: PathBuf,
        /// The expert's name in the manifest.
        name: String,
    },
    /// A `BertForSequenceClassification` checkpoint folder (`config.json`, safetensors, and
    /// `vocab.txt` when it has one) with its own head (first token, pooler and tanh,
    /// classifier), on random token ids filling the whole sequence, or on a task's held-out
    /// examples (tokenized by the folder's own tokenizer), scored by the task's metric.
    Checkpoint {
        /// The checkpoint folder.
        dir: PathBuf,
        /// The labelled data, if any, and the share of it held out (as `train expert` held
        /// it out).
        data: Option<(DataSource, f64)>,
    },
}

/// What to run and how.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The model.
    pub model: BenchModel,
    /// Tokens per sequence (sentences are padded to it).
    pub seq_len: usize,
    /// Queries to run (held-out sentences, or random sequences).
    pub queries: usize,
    /// Print the per-part breakdown.
    pub breakdown: bool,
    /// Asset cache.
    pub cache: Option<PathBuf>,
    /// Seconds any link may stay silent.
    pub timeout_s: u64,
    /// Ask the servers to run their kernels on the GPU.
    pub gpu: bool,
    /// Threads each server's CPU kernels use (0: one per core).
    pub kernel_threads: usize,
    /// The network between client and servers and between the servers.
    pub link: LinkModel,
}

/// One bench run, as the JSON line prints it.
#[derive(Clone, Debug, Serialize)]
pub struct BenchLine {
    /// Model name.
    pub model: String,
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Heads.
    pub heads: usize,
    /// Feed-forward size.
    pub ffn: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Queries run.
    pub queries: usize,
    /// Online seconds per query (the slower server).
    pub online_s: f64,
    /// Offline seconds per query: the dealer generating and streaming the keys.
    pub offline_s: f64,
    /// Bytes each server sent the other per query (the larger).
    pub online_bytes_per_server: u64,
    /// Key bytes each server received per query (the larger, P1's).
    pub key_bytes_per_server: u64,
    /// Rounds per query.
    pub rounds: u64,
    /// The network the servers and the client talked over (`loopback`, or a relay's model).
    pub link: LinkModel,
    /// What the link adds to a query's online time by its model: rounds × rtt / 2 + bytes /
    /// rate ([`link_seconds`]). Added to the online time measured on loopback, it predicts the
    /// online time on that link.
    pub link_s_predicted: f64,
    /// Peak resident memory of the largest process (dealer, P0, P1 or this client), MiB.
    pub peak_rss_mb: f64,
    /// Peak resident memory per process: dealer, P0, P1, client.
    pub peak_rss_mb_by_process: [f64; 4],
    /// Largest |secure logit − f64 reference logit| over all queries.
    pub max_abs_logit_err: f64,
    /// Share of queries whose secure label equals the reference label.
    pub label_agreement: f64,
    /// Every query whose secure label differs from the reference's, with the reference's
    /// margin between its top two logits: logits each within e of the reference's can flip
    /// only a call closer than 2e.
    pub disagreements: Vec<pool::Disagreement>,
    /// End-to-end seconds per query as the client saw it.
    pub wall_s: f64,
    /// The kernels the servers ran on, as they reported them (e.g. "cpu",
    /// "cpu (avx2, 2 threads)" or "cuda: DEVICE").
    pub kernels: String,
    /// Of `online_s`, the seconds the slower server spent in its kernels (matrix products,
    /// FSS evaluation; GPU copies included).
    pub kernel_s: f64,
    /// Of `online_s`, the seconds the slower server spent reading the dealer's keys.
    pub key_read_s: f64,
    /// Of `online_s`, the seconds the slower server spent exchanging messages with the other
    /// (encryption, network, waiting for it); the rest of `online_s` is local protocol work
    /// (key decoding, packing, element-wise ring arithmetic).
    pub exchange_s: f64,
    /// CPU seconds the slower server's process used in `online_s` (all its threads): near
    /// `online_s` when it computed throughout, lower when it waited for the other server.
    pub online_cpu_s: f64,
    /// Online cost per circuit part, per query, at the slower server (with --breakdown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Vec<PhaseStats>>,
    /// The task the queries came from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The task's metric on the secure labels (or scores), against the gold labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Scores>,
    /// The same metric on the f64 reference's labels, for comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_metric: Option<Scores>,
}

/// What `link` adds to the online phase of a query of `rounds` rounds in which each server
/// sends `bytes`: each round half an rtt (in a round both servers send at once and each waits
/// for the other's message, one way), each byte its time on the link (each server on its own
/// direction).
pub fn link_seconds(link: LinkModel, rounds: u64, bytes: u64) -> f64 {
    rounds as f64 * link.rtt.as_secs_f64() / 2.0 + link.transmit_time(bytes as usize).as_secs_f64()
}

/// A prepared model with its inputs.
struct Prepared {
    name: String,
    /// The model's tokenizer, which the client bundle carries.
    tokenizer: Tokenizer,
    weights: BertWeights,
    head: ExpertHead,
    queries: Vec<Query>,
    /// The task the queries' gold labels come from (its name and metric), and how the head's
    /// outputs read as its labels.
    task: Option<(String, Metric, Reading)>,
}

/// One query: token ids, their segments, and the gold label where the data has one.
struct Query {
    ids: Vec<u32>,
    types: Vec<u32>,
    gold: Option<Label>,
}

impl Query {
    /// A single segment without a gold label.
    fn plain(ids: Vec<u32>) -> Self {
        let types = vec![0; ids.len()];
        Query {
            ids,
            types,
            gold: None,
        }
    }
}

/// How a head's outputs read as a task's labels.
enum Reading {
    /// Output j is the task's class `class_of[j]`.
    Classes(Vec<u32>),
    /// The one output is the task's score (a regression).
    Score,
}

impl Reading {
    /// Matches a checkpoint's labels to the task's: by name where the checkpoint names every
    /// task label (case-insensitively), else by position when the counts agree; a regression
    /// task needs a one-output head.
    fn of(task: &str, labels: &LabelSet, head: &SequenceClassificationHead) -> Result<Self> {
        match labels {
            LabelSet::Score => {
                if head.num_labels != 1 {
                    invalid!(
                        "{task} is a regression; the checkpoint's head has {} outputs, not 1",
                        head.num_labels
                    );
                }
                Ok(Reading::Score)
            }
            LabelSet::Classes { names } => {
                if head.num_labels != names.len() {
                    invalid!(
                        "{task} has {} labels ({names:?}); the checkpoint's head has {} outputs",
                        names.len(),
                        head.num_labels
                    );
                }
                let by_name: Option<Vec<u32>> = head
                    .id2label
                    .iter()
                    .map(|l| {
                        let at = names.iter().position(|n| n.eq_ignore_ascii_case(l))?;
                        u32::try_from(at).ok()
                    })
                    .collect();
                Ok(Reading::Classes(by_name.unwrap_or_else(|| {
                    (0..names.len())
                        .filter_map(|j| u32::try_from(j).ok())
                        .collect()
                })))
            }
        }
    }

    /// The task label the logits say.
    fn label(&self, logits: &[f64]) -> Label {
        match self {
            Reading::Score => Label::Score(logits.first().copied().unwrap_or(f64::NAN)),
            Reading::Classes(class_of) => {
                Label::Class(class_of.get(argmax(logits)).copied().unwrap_or(u32::MAX))
            }
        }
    }
}

/// `count` sequences of `len` token ids drawn uniformly below `vocab`.
fn random_queries(
    rng: &mut securerouter_core::prg::AesCtr,
    vocab: usize,
    count: usize,
    len: usize,
) -> Vec<Vec<u32>> {
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| (rng.next_u64() % vocab as u64) as u32)
                .collect()
        })
        .collect()
}

/// A WordPiece tokenizer that only names `size` token ids, for models run on random ids.
fn synthetic_tokenizer(size: usize) -> Result<Tokenizer> {
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .map(String::from)
        .chain((5..size).map(|i| format!("token{i}")))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Tokenizer::from_wordpiece(
        WordPiece::from_vocab_text(&vocab)?,
        Path::new("the synthetic vocabulary"),
    ))
}

const HEAD_TRAIN_SENTENCES: usize = 400;

fn prepare(opts: &BenchOptions) -> Result<Prepared> {
    match &opts.model {
        BenchModel::Random(shape) => {
            shape.validate()?;
            let vocab = 1000;
            let config = BertConfig {
                vocab_size: vocab,
                hidden_size: shape.hidden,
                num_hidden_layers: shape.layers,
                num_attention_heads: shape.heads,
                intermediate_size: shape.ffn,
                hidden_act: shape.activation.hidden_act().into(),
                max_position_embeddings: opts.seq_len,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                model_type: "bert".into(),
                architectures: Vec::new(),
                position_embedding_type: "absolute".into(),
            };
            let seed = random_seed();
            let weights = BertWeights::random(config, &seed)?;
            let mut rng =
                securerouter_core::prg::AesCtr::new(&seed, securerouter_core::prg::Domain(12));
            let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            let head = ClassifierHead {
                linear: Linear {
                    weight: Matrix::new(
                        shape.classes,
                        shape.hidden,
                        (0..shape.classes * shape.hidden).map(|_| unit()).collect(),
                    ),
                    bias: (0..shape.classes).map(|_| unit() * 0.1).collect(),
                },
            };
            let queries = random_queries(&mut rng, vocab, opts.queries, opts.seq_len)
                .into_iter()
                .map(Query::plain)
                .collect();
            // Random token ids stand for text; the vocabulary only names them.
            Ok(Prepared {
                tokenizer: synthetic_tokenizer(vocab)?,
                name: format!(
                    "random-{}x{}-h{}-f{}",
                    shape.layers, shape.hidden, shape.heads, shape.ffn
                ),
                weights,
                head: ExpertHead::Fitted(head),
                queries,
                task: None,
            })
        }
        BenchModel::Checkpoint { dir, data } => {
            let (weights, head) = BertWeights::load_with_head(dir, None)?;
            let Some(head) = head else {
                invalid!(
                    "{} has no sequence-classification head (classifier.weight)",
                    dir.display()
                );
            };
            let c = &weights.config;
            if opts.seq_len > c.max_position_embeddings {
                invalid!(
                    "--seq {} exceeds the checkpoint's {} positions",
                    opts.seq_len,
                    c.max_position_embeddings
                );
            }
            // The checkpoint's own tokenizer (tokenizer.json, else vocab.txt) for the client
            // bundle; a folder with neither runs on random ids named by a synthetic vocabulary.
            let has_tokenizer = [TOKENIZER_JSON, VOCAB_TXT]
                .iter()
                .any(|f| dir.join(f).is_file());
            let tokenizer = if has_tokenizer {
                Tokenizer::from_dir(dir)?
            } else {
                synthetic_tokenizer(c.vocab_size)?
            };
            let (queries, task) = match data {
                None => {
                    let mut rng = securerouter_core::prg::AesCtr::new(
                        &random_seed(),
                        securerouter_core::prg::Domain(12),
                    );
                    let queries =
                        random_queries(&mut rng, c.vocab_size, opts.queries, opts.seq_len)
                            .into_iter()
                            .map(Query::plain)
                            .collect();
                    (queries, None)
                }
                Some((source, held_out)) => {
                    let cache = assets::cache_dir(opts.cache.as_deref())?;
                    let set = source.load(&cache, *held_out)?;
                    let reading = Reading::of(&set.name, &set.labels, &head)?;
                    let examples = set.held_out;
                    if !has_tokenizer {
                        return Err(securerouter_ml::Error::NoTokenizer { dir: dir.clone() }.into());
                    }
                    let queries = examples
                        .into_iter()
                        .take(opts.queries)
                        .map(|e| {
                            let enc = match &e.text_pair {
                                Some(b) => tokenizer.encode_pair(&e.text, b, opts.seq_len)?,
                                None => tokenizer.encode(&e.text, opts.seq_len)?,
                            };
                            Ok(Query {
                                ids: enc.ids,
                                types: enc.type_ids,
                                gold: Some(e.label),
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (queries, Some((set.name, set.metric, reading)))
                }
            };
            let name = dir
                .file_name()
                .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
            Ok(Prepared {
                tokenizer,
                name,
                weights,
                head: ExpertHead::Checkpoint(head),
                queries,
                task,
            })
        }
        BenchModel::PoolExpert { pool, name } => {
            let cache = assets::cache_dir(opts.cache.as_deref())?;
            let manifest = securerouter_ml::PoolManifest::load(pool)?;
            let expert = manifest.load_expert(pool, &cache, manifest.index_of(name)?)?;
            let tokenizer = match expert.own_tokenizer {
                Some(own) => own,
                None => Tokenizer::from_dir(&manifest.base_asset()?.path(&cache)?)?,
            };
            let (weights, head) = (expert.weights, expert.head);
            let queries = load_held_out(pool, &manifest, &cache)?
                .into_iter()
                .take(opts.queries)
                .map(|e| {
                    let enc =
                        tokenizer.encode_input(&e.text, e.text_pair.as_deref(), opts.seq_len)?;
                    Ok(Query {
                        ids: enc.ids,
                        types: enc.type_ids,
                        gold: Some(e.label),
                    })
                })
                .collect::<Result<_>>()?;
            // The pool's experts give its classes in its order.
            let classes = (0..manifest.classes)
                .filter_map(|j| u32::try_from(j).ok())
                .collect();
            let task = Some((
                manifest.task.clone(),
                manifest.metric,
                Reading::Classes(classes),
            ));
            Ok(Prepared {
                tokenizer,
                name: name.clone(),
                weights,
                head,
                queries,
                task,
            })
        }
        BenchModel::MiniLm { layers } => {
            let cache = assets::cache_dir(opts.cache.as_deref())?;
            let dir = assets::MINILM_L6.path(&cache)?;
            let weights = BertWeights::load(&dir, *layers)?;
            let tokenizer = Tokenizer::from_dir(&dir)?;
            let sentences = data::rotten_tomatoes(&cache)?;
            let (train, test) = data::split(sentences, 0.2, &data::SPLIT_SEED)?;
            let kept = weights.layers.len();
            let head = sentiment_head(&cache, &weights, &tokenizer, &train, kept)?;
            let queries = test
                .iter()
                .take(opts.queries)
                .map(|s| Ok(Query::plain(tokenizer.encode(&s.text, opts.seq_len)?.ids)))
                .collect::<Result<_>>()?;
            Ok(Prepared {
                tokenizer,
                name: if kept == 6 {
                    "minilm-l6".into()
                } else {
                    format!("minilm-l6-first-{kept}")
                },
                weights,
                head: ExpertHead::Fitted(head),
                queries,
                task: None,
            })
        }
    }
}

/// A positive/negative head on mean-pooled features, fitted once on training sentences and
/// cached beside the assets.
fn sentiment_head(
    cache: &Path,
    model: &BertWeights,
    tokenizer: &Tokenizer,
    train: &[data::LabelledSentence],
    layers: usize,
) -> Result<ClassifierHead> {
    let path = cache
        .join("heads")
        .join(format!("minilm-l6-first-{layers}-rotten-tomatoes.json"));
    if path.exists() {
        return Ok(ClassifierHead::load(&path)?);
    }
    let take = train.len().min(HEAD_TRAIN_SENTENCES);
    let bar =
        securerouter_ml::progress::Progress::new(take, "pooled features for the sentiment head");
    let mut features = Vec::with_capacity(take);
    for s in &train[..take] {
        let e = tokenizer.encode(&s.text, 128)?;
        features.push(securerouter_ml::mean_pool(
            &model.forward(&e.ids, &e.type_ids)?,
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let labels: Vec<usize> = train[..take].iter().map(|s| s.label as usize).collect();
    let head = ClassifierHead::fit(&features, &labels, 2, 300, 1e-3)?;
    let heads = path.parent().unwrap_or(cache);
    std::fs::create_dir_all(heads).map_err(Error::io("creating", heads))?;
    head.save(&path)?;
    Ok(head)
}

/// Measures the MPC cost of one expert of a built pool: the bench on it (dealer, P0 and P1 as
/// processes, the CPU kernels), on `req.queries` of the pool's held-out sentences, its report
/// to `out`. `securerouter train pool` fills the manifest's costs with it.
pub fn expert_cost(
    req: &CostRequest<'_>,
    cache: Option<&Path>,
    out: &mut dyn Write,
) -> Result<MeasuredCost> {
    let line = run(
        &BenchOptions {
            model: BenchModel::PoolExpert {
                pool: req.pool.to_path_buf(),
                name: req.expert.to_string(),
            },
            seq_len: req.seq_len,
            queries: req.queries,
            breakdown: false,
            cache: cache.map(Path::to_path_buf),
            timeout_s: 600,
            gpu: false,
            kernel_threads: 0,
            link: LinkModel::LOOPBACK,
        },
        false,
        out,
    )?;
    Ok(MeasuredCost {
        online_s: line.online_s,
        offline_s: line.offline_s,
        online_bytes_per_server: line.online_bytes_per_server,
        key_bytes_per_server: line.key_bytes_per_server,
        rounds: line.rounds,
        queries: line.queries,
    })
}

/// Runs the bench and writes its JSON line (and, with `breakdown`, a table) to `out`.
pub fn run(opts: &BenchOptions, json: bool, out: &mut dyn Write) -> Result<BenchLine> {
    if opts.seq_len == 0 || opts.seq_len > 512 || opts.queries == 0 {
        invalid!("--seq must be in 1..=512 and --queries at least 1");
    }
    let prepared = prepare(opts)?;
    if prepared.queries.is_empty() {
        invalid!("no queries to run");
    }
    let (shape, head, layers) = deployable(&prepared.weights, &prepared.head)?;
    let spec = match head {
        BertHead::MeanPooled => ModelSpec::Bert(shape),
        BertHead::Checkpoint => ModelSpec::BertCheckpoint(shape),
    };
    let dir = LocalCluster::fresh_dir("bench");
    let deployment =
        DeploymentDir::create_with(&dir, LocalCluster::free_addrs()?, &spec, &layers, true)?;
    drop(layers);
    // The client works from its bundle alone (tokenizer and embeddings, no encoder weights).
    let bundle_path = dir.join(CLIENT_BUNDLE);
    ClientBundle::save(&prepared.weights, &prepared.tokenizer, &bundle_path)?;
    let bundle = ClientBundle::load(&bundle_path)?;
    let cluster = LocalCluster::start(
        deployment,
        opts.timeout_s,
        ServerFlags {
            prefetch_keys: true,
            gpu: opts.gpu,
            kernel_threads: opts.kernel_threads,
            link: opts.link,
        },
    )?;
    let client = cluster.client()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::AsyncRuntime)?;
    let (mut online, mut offline, mut wall) = (0.0, 0.0, 0.0);
    let (mut bytes, mut keys, mut rounds) = (0u64, 0u64, 0u64);
    let (mut worst, mut agree) = (0.0f64, 0usize);
    let mut disagreements = Vec::new();
    let mut kernels = String::new();
    let (mut kernel_s, mut key_read_s, mut exchange_s, mut cpu_s) = (0.0, 0.0, 0.0, 0.0);
    let mut phases: Vec<PhaseStats> = Vec::new();
    let bar = securerouter_ml::progress::Progress::new(
        prepared.queries.len(),
        format!("{} under MPC", prepared.name),
    );
    let (mut secure_labels, mut reference_labels, mut gold) = (Vec::new(), Vec::new(), Vec::new());
    for (i, q) in prepared.queries.iter().enumerate() {
        let embedded = bundle.embeddings.embed(&q.ids, &q.types)?;
        let x = client_input(&embedded.data, shape.hidden, opts.seq_len)?;
        let (logits, session) = runtime.block_on(client.classify(shape.input_cols(), &x))?;
        let want = prepared
            .head
            .reference(&prepared.weights, &q.ids, &q.types)?;
        if let (Some((_, _, reading)), Some(label)) = (&prepared.task, q.gold) {
            secure_labels.push(reading.label(&logits));
            reference_labels.push(reading.label(&want));
            gold.push(label);
        }
        let error = want
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        worst = worst.max(error);
        if argmax(&want) == argmax(&logits) {
            agree += 1;
        } else {
            // Say how close the call was: a flip within the logit error is a near-tie.
            let margin = securerouter_ml::head::top_two_margin(&want);
            tracing::warn!(
                "query {i}: the secure label differs from the reference's (reference margin \
                 between its top two logits {margin:.4}, largest logit error {error:.4})"
            );
            disagreements.push(pool::Disagreement {
                query: i,
                what: "label",
                margin,
            });
        }
        let cost = session.worst_server();
        online += cost.online_s;
        offline += cost.offline_s;
        wall += session.wall_s;
        bytes += cost.online_bytes_sent;
        keys += cost.key_bytes_received;
        rounds = cost.rounds;
        kernels = cost.kernels;
        kernel_s += cost.kernel_s;
        key_read_s += cost.key_read_s;
        exchange_s += cost.exchange_s;
        cpu_s += cost.online_cpu_s;
        add_phases(&mut phases, &cost.phases);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rss = cluster.peak_rss_mb();
    drop(cluster);
    let q = prepared.queries.len();
    let per = |v: f64| v / q as f64;
    for p in &mut phases {
        p.online_s /= q as f64;
        p.bytes_sent /= q as u64;
        p.rounds /= q as u64;
    }
    let rss_all = [rss[0], rss[1], rss[2], peak_rss_mb()];
    let (task, metric, reference_metric) = match &prepared.task {
        Some((task, metric, _)) => (
            Some(task.clone()),
            Some(metric.score(&secure_labels, &gold)?),
            Some(metric.score(&reference_labels, &gold)?),
        ),
        None => (None, None, None),
    };
    let line = BenchLine {
        model: prepared.name,
        layers: shape.layers,
        hidden: shape.hidden,
        heads: shape.heads,
        ffn: shape.ffn,
        seq_len: opts.seq_len,
        queries: q,
        online_s: per(online),
        offline_s: per(offline),
        online_bytes_per_server: bytes / q as u64,
        key_bytes_per_server: keys / q as u64,
        rounds,
        link: opts.link,
        link_s_predicted: link_seconds(opts.link, rounds, bytes / q as u64),
        peak_rss_mb: rss_all.iter().cloned().fold(0.0, f64::max),
        peak_rss_mb_by_process: rss_all,
        max_abs_logit_err: worst,
        label_agreement: agree as f64 / q as f64,
        disagreements,
        wall_s: per(wall),
        kernels,
        kernel_s: per(kernel_s),
        key_read_s: per(key_read_s),
        exchange_s: per(exchange_s),
        online_cpu_s: per(cpu_s),
        breakdown: opts.breakdown.then_some(phases),
        task,
        metric,
        reference_metric,
    };
    if json {
        let text = serde_json::to_string(&line).map_err(Error::Json)?;
        writeln!(out, "{text}").map_err(Error::Output)?;
    } else {
        writeln!(
            out,
            "{}: {} layers, hidden {}, {} tokens, {} queries\n  online {:.3} s, {:.1} MB and {} rounds per server; offline {:.3} s, {:.1} MB keys per server\n  peak memory {:.0} MiB; max |logit error| {:.4}; label agreement {:.1}%",
            line.model,
            line.layers,
            line.hidden,
            line.seq_len,
            line.queries,
            line.online_s,
            line.online_bytes_per_server as f64 / 1e6,
            line.rounds,
            line.offline_s,
            line.key_bytes_per_server as f64 / 1e6,
            line.peak_rss_mb,
            line.max_abs_logit_err,
            100.0 * line.label_agreement
        )
        .map_err(Error::Output)?;
        if let (Some(task), Some(metric), Some(reference)) =
            (&line.task, &line.metric, &line.reference_metric)
        {
            writeln!(
                out,
                "  {task}: {metric} under MPC; {reference} in plaintext"
            )
            .map_err(Error::Output)?;
        }
    }
    if let Some(parts) = &line.breakdown {
        writeln!(
            out,
            "{:<10} {:>9} {:>7} {:>12} {:>7}",
            "part", "online_s", "share", "bytes", "rounds"
        )
        .map_err(Error::Output)?;
        let total: f64 = parts.iter().map(|p| p.online_s).sum();
        for p in parts {
            writeln!(
                out,
                "{:<10} {:>9.3} {:>6.1}% {:>12} {:>7}",
                p.name,
                p.online_s,
                100.0 * p.online_s / total.max(1e-12),
                p.bytes_sent,
                p.rounds
            )
            .map_err(Error::Output)?;
        }
    }
    Ok(line)
}
