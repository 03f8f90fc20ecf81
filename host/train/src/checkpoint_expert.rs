//! `securerouter train expert`: a user's BERT checkpoint folder fine-tuned on a user's
//! labelled task (single sentences or pairs, K classes or a score) into a
//! `BertForSequenceClassification` folder, scored on held-out examples by the task's metric.
//!
//! The result has a head as transformers builds one (the first token through the pooler and
//! tanh, then the classifier), so `bench checkpoint` runs it under MPC as it runs any
//! published classifier, and transformers loads it with its label names. Embeddings stay the
//! checkpoint's (the client embeds its own tokens); the top `--tune-top` layers and the head
//! are trained, the layers below stay frozen and are computed once.

use crate::encoder::CandleLinear;
use crate::error::{Error, Result, invalid};
use crate::expert::{FineTuneOptions, PoolerHead, Targets, fine_tune_top, head_outputs};
use candle_core::Device;
use securerouter_core::prg::{AesCtr, Domain};
use securerouter_ml::classification::ProblemType;
use securerouter_ml::data::{Example, Label, LabelSet, TaskData};
use securerouter_ml::head::argmax;
use securerouter_ml::metrics::Scores;
use securerouter_ml::pretrained::save_sequence_classifier;
use securerouter_ml::progress::Progress;
use securerouter_ml::{BertWeights, Linear, Matrix, SequenceClassificationHead, Tokenizer};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The training record written beside the trained checkpoint.
pub const TRAINING_RECORD: &str = "securerouter-training.json";

/// Training examples the fit is scored on after training.
pub const TRAIN_FIT_EXAMPLES: usize = 1000;

/// The domain of a fresh pooler's random initialisation.
const POOLER_INIT_DOMAIN: Domain = Domain(0x504f_4f4c_494e_4954); // "POOLINIT"

/// How `train expert` trains.
#[derive(Clone, Debug)]
pub struct ExpertOptions {
    /// Keep the checkpoint's first `layers` encoder layers (all when `None`).
    pub layers: Option<usize>,
    /// Encoder layers fine-tuned from the top (0: the head alone).
    pub tune_top: usize,
    /// Tokens per example (pairs share them); longer examples are truncated as the
    /// checkpoint's tokenizer truncates.
    pub seq_len: usize,
    /// Passes, batch size, learning rates and the batch-order seed.
    pub fine_tune: FineTuneOptions,
    /// Use at most this many training and held-out examples (quick runs).
    pub limit: Option<usize>,
}

/// What `train expert` reports (and writes as [`TRAINING_RECORD`]).
#[derive(Clone, Debug, Serialize)]
pub struct ExpertReport {
    /// The checkpoint fine-tuned.
    pub model_dir: PathBuf,
    /// The folder written.
    pub out: PathBuf,
    /// The task.
    pub task: String,
    /// The label set in output order.
    pub labels: LabelSet,
    /// Encoder layers kept.
    pub layers: usize,
    /// Of those, fine-tuned from the top.
    pub tuned_layers: usize,
    /// Whether the checkpoint's own head was trained further (else a fresh classifier).
    pub started_from_checkpoint_head: bool,
    /// Examples trained on.
    pub train_examples: usize,
    /// The metric on the first (at most [`TRAIN_FIT_EXAMPLES`]) training examples after
    /// training: how well it fits what it saw.
    pub train_metric: Scores,
    /// Examples held out.
    pub held_out_examples: usize,
    /// The metric on the held-out examples.
    pub held_out_metric: Scores,
    /// Seconds spent fine-tuning.
    pub train_seconds: f64,
}

/// Fine-tunes the checkpoint in `model_dir` on the experts' share of `data`'s training examples
/// ([`TaskData::experts_share`]) and writes the classifier to `out_dir`.
///
/// # Errors
/// If the checkpoint or its tokenizer cannot be read, an option does not fit the model, a
/// label is not in the label set, training fails, or the folder cannot be written.
pub fn train_expert(
    model_dir: &Path,
    out_dir: &Path,
    data: &TaskData,
    opts: &ExpertOptions,
    out: &mut dyn Write,
) -> Result<ExpertReport> {
    let (base, own_head) = BertWeights::load_with_head(model_dir, opts.layers)?;
    let c = &base.config;
    if opts.tune_top > base.layers.len() {
        invalid!(
            "--tune-top {} exceeds the {} layers kept",
            opts.tune_top,
            base.layers.len()
        );
    }
    if opts.seq_len < 2 || opts.seq_len > c.max_position_embeddings {
        invalid!(
            "--seq {} must be in 2..={} (the checkpoint's positions)",
            opts.seq_len,
            c.max_position_embeddings
        );
    }
    let take = |e: &[Example]| -> Vec<Example> {
        e.iter()
            .take(opts.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    };
    // The experts' share only: the router's share stays unseen, so the classifier can join a
    // pool on the same data.
    let (train, held_out) = (take(data.experts_share()), take(&data.held_out));
    if train.is_empty() || held_out.is_empty() {
        invalid!(
            "{} needs training and held-out examples ({} and {})",
            data.name,
            train.len(),
            held_out.len()
        );
    }
    let tokenizer = Tokenizer::from_dir(model_dir)?;
    let x_train = embed_examples(
        &base,
        &tokenizer,
        &train,
        opts.seq_len,
        "embedding the training examples",
    )?;
    let x_held = embed_examples(
        &base,
        &tokenizer,
        &held_out,
        opts.seq_len,
        "embedding the held-out examples",
    )?;
    let (head, started) = initial_head(model_dir, &base, own_head, &data.labels, &opts.fine_tune)?;
    let dev = Device::Cpu;
    let trainable = PoolerHead {
        pooler: CandleLinear::from_linear(&head.pooler, &dev)?,
        classifier: CandleLinear::from_linear(&head.classifier, &dev)?,
    };
    writeln!(
        out,
        "{}: fine-tuning the top {} of {} layers of {} and {} on {} examples",
        data.name,
        opts.tune_top,
        base.layers.len(),
        model_dir.display(),
        if started {
            "its own head"
        } else {
            "a fresh head"
        },
        train.len()
    )
    .map_err(Error::Output)?;
    let classes: Vec<usize>;
    let scores: Vec<f32>;
    let targets = match &data.labels {
        LabelSet::Score => {
            scores = train
                .iter()
                .map(|e| e.label.score().map(|s| s as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::Invalid(format!("{}: a training label is not a score", data.name))
                })?;
            Targets::Scores(&scores)
        }
        LabelSet::Classes { names } => {
            classes = train
                .iter()
                .map(|e| e.label.class().map(|c| c as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::Invalid(format!("{}: a training label is not a class", data.name))
                })?;
            Targets::Classes {
                labels: &classes,
                classes: names.len(),
            }
        }
    };
    let started_at = Instant::now();
    let top = fine_tune_top(
        &base,
        opts.tune_top,
        &x_train,
        targets,
        &trainable,
        &opts.fine_tune,
    )?;
    let train_seconds = started_at.elapsed().as_secs_f64();
    let mut weights = base.clone();
    let split = weights.layers.len() - opts.tune_top;
    weights.layers[split..].clone_from_slice(&top);
    let head = SequenceClassificationHead {
        pooler: trainable.pooler.to_linear()?,
        classifier: trainable.classifier.to_linear()?,
        ..head
    };
    let score = |examples: &[Example], inputs: &[Vec<f32>], msg: &str| -> Result<Scores> {
        let outputs = head_outputs(&weights, &trainable, inputs, 64, msg)?;
        let predicted: Vec<Label> = outputs.iter().map(|o| label_of(&data.labels, o)).collect();
        let gold: Vec<Label> = examples.iter().map(|e| e.label).collect();
        Ok(data.metric.score(&predicted, &gold)?)
    };
    // The fit on the training examples is a check that training took, not a result: a sample
    // is enough, and scoring them all would cost as much as an epoch.
    let fit = train.len().min(TRAIN_FIT_EXAMPLES);
    let train_metric = score(&train[..fit], &x_train[..fit], "scoring the training fit")?;
    let held_out_metric = score(&held_out, &x_held, "scoring the held-out examples")?;
    writeln!(
        out,
        "{}: {held_out_metric} on {} held-out examples ({train_metric} on {fit} training examples)",
        data.name,
        held_out.len()
    )
    .map_err(Error::Output)?;
    save_sequence_classifier(out_dir, model_dir, &weights, &head)?;
    let report = ExpertReport {
        model_dir: model_dir.to_path_buf(),
        out: out_dir.to_path_buf(),
        task: data.name.clone(),
        labels: data.labels.clone(),
        layers: weights.layers.len(),
        tuned_layers: opts.tune_top,
        started_from_checkpoint_head: started,
        train_examples: train.len(),
        train_metric,
        held_out_examples: held_out.len(),
        held_out_metric,
        train_seconds,
    };
    let record = out_dir.join(TRAINING_RECORD);
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::Invalid(format!("encoding the training record: {e}")))?;
    std::fs::write(&record, text + "\n").map_err(|source| Error::Io {
        action: "writing",
        path: record.clone(),
        source,
    })?;
    writeln!(
        out,
        "{}: classifier written to {}",
        data.name,
        out_dir.display()
    )
    .map_err(Error::Output)?;
    Ok(report)
}

/// The client's embedding (f32 rows) of each example, a pair as the tokenizer pairs it.
pub fn embed_examples(
    model: &BertWeights,
    tokenizer: &Tokenizer,
    examples: &[Example],
    seq_len: usize,
    msg: &str,
) -> Result<Vec<Vec<f32>>> {
    let bar = Progress::new(examples.len(), msg);
    let out = examples
        .iter()
        .map(|e| {
            let enc = match &e.text_pair {
                Some(b) => tokenizer.encode_pair(&e.text, b, seq_len)?,
                None => tokenizer.encode(&e.text, seq_len)?,
            };
            let m = model.embed(&enc.ids, &enc.type_ids)?;
            bar.inc(1);
            Ok(m.data.iter().map(|&v| v as f32).collect())
        })
        .collect();
    bar.finish_and_clear();
    out
}

/// The label the head's outputs say: the top class, or the one output as a score.
pub fn label_of(labels: &LabelSet, outputs: &[f32]) -> Label {
    match labels {
        LabelSet::Score => Label::Score(outputs.first().map_or(f64::NAN, |&v| f64::from(v))),
        LabelSet::Classes { .. } => {
            let o: Vec<f64> = outputs.iter().map(|&v| f64::from(v)).collect();
            Label::Class(u32::try_from(argmax(&o)).unwrap_or(u32::MAX))
        }
    }
}

/// The head training starts from: the checkpoint's own when it has the task's labels in the
/// task's order (names compared case-insensitively; a regression head for a score), else the
/// checkpoint's pooler (a random one if it has none) and a zero classifier with the task's
/// labels. Returns whether the checkpoint's head was kept.
fn initial_head(
    model_dir: &Path,
    base: &BertWeights,
    own: Option<SequenceClassificationHead>,
    labels: &LabelSet,
    opts: &FineTuneOptions,
) -> Result<(SequenceClassificationHead, bool)> {
    let (names, problem_type) = match labels {
        LabelSet::Score => (vec!["score".to_string()], ProblemType::Regression),
        LabelSet::Classes { names } => (names.clone(), ProblemType::SingleLabelClassification),
    };
    if let Some(head) = own {
        let same_labels = head.problem_type == problem_type
            && head.id2label.len() == names.len()
            && (problem_type == ProblemType::Regression
                || head
                    .id2label
                    .iter()
                    .zip(&names)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b)));
        if same_labels {
            let head = SequenceClassificationHead {
                id2label: names,
                ..head
            };
            return Ok((head, true));
        }
    }
    let h = base.config.hidden_size;
    let pooler = match SequenceClassificationHead::load_pooler(model_dir, h)? {
        Some(p) => p,
        None => random_linear(h, h, opts),
    };
    let classifier = Linear {
        weight: Matrix::new(names.len(), h, vec![0.0; names.len() * h]),
        bias: vec![0.0; names.len()],
    };
    Ok((
        SequenceClassificationHead {
            pooler,
            classifier,
            num_labels: names.len(),
            id2label: names,
            problem_type,
        },
        false,
    ))
}

/// A linear layer drawn as transformers initialises one (weights of standard deviation 0.02,
/// here uniform; zero bias), from the training seed.
fn random_linear(out: usize, inp: usize, opts: &FineTuneOptions) -> Linear {
    let rng = &mut AesCtr::new(&opts.seed, POOLER_INIT_DOMAIN);
    let a = 0.02 * 3f64.sqrt();
    let weight = (0..out * inp)
        .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * a)
        .collect();
    Linear {
        weight: Matrix::new(out, inp, weight),
        bias: vec![0.0; out],
    }
}
