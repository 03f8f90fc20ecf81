//! Fine-tuning a pool expert: a pretrained encoder cut to its first k layers gets its top
//! layers and a fresh classifier head trained on labelled sentences. The layers below stay
//! frozen, so their outputs are computed once, and the embeddings stay the pretrained ones, so one client
//! embedding serves every expert of a pool.

use super::encoder::{Batch, CandleLayer, CandleLinear, run_layers};
use crate::error::{Result, invalid};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_ml::data::shuffle;
use securerouter_ml::mpnet::RelativeAttentionBias;
use securerouter_ml::progress::Progress;
use securerouter_ml::{BertWeights, ClassifierHead, EncoderLayer};

/// Domain of the training shuffles.
const SHUFFLE_DOMAIN: Domain = Domain(0x5452_4149_4e53_4846); // "TRAINSHF"

/// Hyper-parameters of [`fine_tune`].
#[derive(Clone, Debug)]
pub struct FineTuneOptions {
    /// Passes over the training sentences.
    pub epochs: usize,
    /// Sentences per step.
    pub batch_size: usize,
    /// AdamW learning rate of the fine-tuned encoder layers.
    pub layer_lr: f64,
    /// AdamW learning rate of the (fresh) classifier head.
    pub head_lr: f64,
    /// Seed of the batch order.
    pub seed: Seed,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        FineTuneOptions {
            epochs: 2,
            batch_size: 32,
            layer_lr: 5e-5,
            head_lr: 2e-3,
            seed: Seed::from_bytes(*b"SecureRouterTune"),
        }
    }
}

/// An expert: the encoder the servers run and the head on its mean-pooled output.
#[derive(Clone, Debug)]
pub struct Expert {
    /// The encoder (embeddings for the client, layers for the servers).
    pub weights: BertWeights,
    /// The classifier head on mean-pooled hidden states.
    pub head: ClassifierHead,
    /// How many top layers of `weights` were fine-tuned (the rest are the pretrained ones).
    pub tuned_layers: usize,
}

/// What an expert computes on a batch of sentences.
#[derive(Clone, Debug, Default)]
pub struct Inference {
    /// Mean-pooled hidden states of the last layer, one vector per sentence.
    pub pooled: Vec<Vec<f32>>,
    /// Classifier logits, one vector per sentence.
    pub logits: Vec<Vec<f32>>,
}

/// Index batches of at most `size` sentences of similar length (little padding), in a
/// shuffled order when `rng` is given.
fn batches(lens: &[usize], size: usize, rng: Option<&mut AesCtr>) -> Vec<Vec<usize>> {
    let size = size.max(1);
    let mut order: Vec<usize> = (0..lens.len()).collect();
    let Some(rng) = rng else {
        order.sort_by_key(|&i| lens[i]);
        return order.chunks(size).map(<[usize]>::to_vec).collect();
    };
    // Shuffle, sort within windows of 16 batches by length, then shuffle the batches.
    shuffle(&mut order, rng);
    let mut out: Vec<Vec<usize>> = order
        .chunks_mut(size * 16)
        .flat_map(|w| {
            w.sort_by_key(|&i| lens[i]);
            w.chunks(size).map(<[usize]>::to_vec).collect::<Vec<_>>()
        })
        .collect();
    shuffle(&mut out, rng);
    out
}

fn batch_of<'a>(inputs: &'a [Vec<f32>], idx: &[usize]) -> Vec<&'a [f32]> {
    idx.iter().map(|&i| inputs[i].as_slice()).collect()
}

/// Runs frozen `layers` (with the model's `relative` attention bias, if any) on every input
/// (rows of `hidden`) in length-sorted batches; returns each input's output rows, in input
/// order.
pub fn run_frozen(
    layers: &[CandleLayer],
    relative: Option<&RelativeAttentionBias>,
    inputs: &[Vec<f32>],
    hidden: usize,
    batch_size: usize,
    msg: &str,
) -> Result<Vec<Vec<f32>>> {
    if layers.is_empty() {
        return Ok(inputs.to_vec());
    }
    let dev = Device::Cpu;
    let lens: Vec<usize> = inputs.iter().map(|r| r.len() / hidden.max(1)).collect();
    let mut out = vec![Vec::new(); inputs.len()];
    let plan = batches(&lens, batch_size, None);
    let bar = Progress::new(inputs.len(), msg);
    for idx in plan {
        let batch = Batch::new(&batch_of(inputs, &idx), hidden, &dev)?;
        let h = run_layers(layers, &batch, relative)?;
        for (i, rows) in idx.iter().zip(batch.unpad(&h)?) {
            out[*i] = rows;
        }
        bar.inc(idx.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// What fine-tuning fits a head's outputs to.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// A class in `0..classes` per input, fitted by cross-entropy.
    Classes {
        /// One class per input.
        labels: &'a [usize],
        /// The number of classes (the head's outputs).
        classes: usize,
    },
    /// A real score per input, fitted by mean squared error on the head's one output.
    Scores(&'a [f32]),
    /// A class per input and a teacher's logits: cross-entropy on the labels plus the
    /// teacher's softened class probabilities (knowledge distillation).
    Distilled {
        /// One class per input.
        labels: &'a [usize],
        /// The teacher's logits per input, one per class.
        teacher: Teacher<'a>,
    },
}

/// A larger classifier's outputs a student also learns from (Hinton, Vinyals and Dean,
/// "Distilling the knowledge in a neural network", 2015): its probabilities at a temperature
/// say how sure it is and which inputs are hard, which the labels alone do not.
#[derive(Clone, Copy, Debug)]
pub struct Teacher<'a> {
    /// The teacher's logits, one row per input.
    pub logits: &'a [Vec<f32>],
    /// Softmax temperature of the teacher's and the student's probabilities (above 0).
    pub temperature: f32,
    /// Weight of the teacher's term in 0..=1; the labels' cross-entropy gets the rest.
    pub weight: f32,
}

impl Targets<'_> {
    fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } | Targets::Distilled { labels, .. } => labels.len(),
            Targets::Scores(s) => s.len(),
        }
    }

    /// Refuses targets that do not fit `inputs` inputs.
    fn check(&self, inputs: usize) -> Result<()> {
        if inputs == 0 || inputs != self.len() {
            invalid!(
                "fine-tuning needs one target per input ({inputs} inputs, {} targets)",
                self.len()
            );
        }
        match self {
            Targets::Classes { labels, classes } => {
                if let Some(l) = labels.iter().find(|&&l| l >= *classes) {
                    invalid!("label {l} is not one of the {classes} classes");
                }
            }
            Targets::Scores(s) => {
                if s.iter().any(|v| !v.is_finite()) {
                    invalid!("a target score is NaN or infinite");
                }
            }
            Targets::Distilled { labels, teacher } => {
                let classes = teacher.logits.first().map_or(0, Vec::len);
                if teacher.logits.len() != labels.len()
                    || classes < 2
                    || teacher.logits.iter().any(|l| l.len() != classes)
                {
                    invalid!(
                        "the teacher needs one row of at least two logits per input, all of one \
                         width ({} inputs, {} rows)",
                        labels.len(),
                        teacher.logits.len()
                    );
                }
                if teacher.logits.iter().flatten().any(|v| !v.is_finite()) {
                    invalid!("a teacher logit is NaN or infinite");
                }
                let temperature_ok = teacher.temperature.is_finite() && teacher.temperature > 0.0;
                if !temperature_ok || !(0.0..=1.0).contains(&teacher.weight) {
                    invalid!(
                        "distillation needs a positive temperature and a weight in 0..=1, not \
                         {} and {}",
                        teacher.temperature,
                        teacher.weight
                    );
                }
                if let Some(l) = labels.iter().find(|&&l| l >= classes) {
                    invalid!("label {l} is not one of the teacher's {classes} classes");
                }
            }
        }
        Ok(())
    }

    /// The loss of `outputs` ([batch, outputs]) on the inputs `idx`.
    fn loss(&self, outputs: &Tensor, idx: &[usize], dev: &Device) -> Result<Tensor> {
        Ok(match self {
            Targets::Classes { labels, .. } => {
                let target: Vec<u32> = idx.iter().map(|&i| labels[i] as u32).collect();
                let target = Tensor::from_vec(target, idx.len(), dev)?;
                candle_nn::loss::cross_entropy(outputs, &target)?
            }
            Targets::Scores(scores) => {
                let target: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
                let target = Tensor::from_vec(target, (idx.len(), 1), dev)?;
                candle_nn::loss::mse(outputs, &target)?
            }
            Targets::Distilled { labels, teacher } => {
                let hard = Targets::Classes {
                    labels,
                    classes: teacher.logits[0].len(),
                }
                .loss(outputs, idx, dev)?;
                let t = teacher.temperature;
                let soft: Vec<f32> = idx
                    .iter()
                    .flat_map(|&i| softmax_at(&teacher.logits[i], t))
                    .collect();
                let soft = Tensor::from_vec(soft, outputs.shape(), dev)?;
                let log_student = candle_nn::ops::log_softmax(&(outputs / f64::from(t))?, 1)?;
                // Cross-entropy against the teacher's probabilities, scaled by T² so that its
                // gradients keep their size whatever the temperature.
                let distilled =
                    ((soft * log_student)?.sum(1)?.mean_all()?.neg()? * f64::from(t * t))?;
                ((hard * f64::from(1.0 - teacher.weight))?
                    + (distilled * f64::from(teacher.weight))?)?
            }
        })
    }
}

/// The softmax of `logits / temperature`.
fn softmax_at(logits: &[f32], temperature: f32) -> Vec<f32> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits
        .iter()
        .map(|&v| ((v - m) / temperature).exp())
        .collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// A head trained on the encoder's last hidden states.
pub trait TrainableHead {
    /// The head's outputs, [batch, outputs], for the hidden states [batch, tokens, hidden] of
    /// `batch`.
    fn outputs(&self, batch: &Batch, hidden: &Tensor) -> Result<Tensor>;
    /// Its trainable variables.
    fn vars(&self) -> Vec<Var>;
}

/// A pool expert's head: a linear classifier on the mean of the real tokens.
pub struct MeanPooledHead(pub CandleLinear);

impl TrainableHead for MeanPooledHead {
    fn outputs(&self, batch: &Batch, hidden: &Tensor) -> Result<Tensor> {
        self.0.forward(&batch.mean_pool(hidden)?)
    }

    fn vars(&self) -> Vec<Var> {
        self.0.vars().to_vec()
    }
}

/// BERT's sequence-classification head: the first token's hidden state through the pooler
/// and tanh, then the classifier (as `BertForSequenceClassification`, dropout off).
pub struct PoolerHead {
    /// The pooler's dense layer, hidden × hidden.
    pub pooler: CandleLinear,
    /// The classifier, outputs × hidden.
    pub classifier: CandleLinear,
}

impl TrainableHead for PoolerHead {
    fn outputs(&self, _: &Batch, hidden: &Tensor) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        self.classifier
            .forward(&self.pooler.forward(&first)?.tanh()?)
    }

    fn vars(&self) -> Vec<Var> {
        let mut v = self.pooler.vars().to_vec();
        v.extend(self.classifier.vars());
        v
    }
}

/// Trains `base`'s top `tuned` layers (0: none, the head alone) and `head` on the embedded
/// inputs (from [`embed_examples`](crate::checkpoint_expert::embed_examples) or [`securerouter_ml::BertWeights::embed`]) against `targets`;
/// the layers below stay frozen, so their outputs are computed once. Returns the trained top
/// layers; the head's variables are trained in place.
///
/// # Errors
/// If the targets do not fit the inputs, `tuned` exceeds the layers, or candle fails.
pub fn fine_tune_top(
    base: &BertWeights,
    tuned: usize,
    inputs: &[Vec<f32>],
    targets: Targets<'_>,
    head: &dyn TrainableHead,
    opts: &FineTuneOptions,
) -> Result<Vec<EncoderLayer>> {
    let hidden = base.config.hidden_size;
    if tuned > base.layers.len() {
        invalid!(
            "cannot fine-tune {tuned} layers of a model with {}",
            base.layers.len()
        );
    }
    targets.check(inputs.len())?;
    let dev = Device::Cpu;
    let candle = |layers: &[EncoderLayer]| -> Result<Vec<CandleLayer>> {
        layers
            .iter()
            .map(|l| CandleLayer::from_layer(l, &base.config, &dev))
            .collect()
    };
    let split = base.layers.len() - tuned;
    let relative = base.relative_attention_bias.as_ref();
    let below = run_frozen(
        &candle(&base.layers[..split])?,
        relative,
        inputs,
        hidden,
        opts.batch_size,
        "frozen layers on the training examples",
    )?;
    let layers = candle(&base.layers[split..])?;
    let params = |lr| ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..ParamsAdamW::default()
    };
    let layer_vars: Vec<Var> = layers.iter().flat_map(CandleLayer::vars).collect();
    let mut layer_opt = if layer_vars.is_empty() {
        None
    } else {
        Some(AdamW::new(layer_vars, params(opts.layer_lr))?)
    };
    let mut head_opt = AdamW::new(head.vars(), params(opts.head_lr))?;
    let lens: Vec<usize> = below.iter().map(|r| r.len() / hidden).collect();
    let rng = &mut AesCtr::new(&opts.seed, SHUFFLE_DOMAIN);
    let steps = inputs.len().div_ceil(opts.batch_size.max(1)) * opts.epochs;
    let bar = Progress::new(steps, "fine-tuning");
    for epoch in 0..opts.epochs {
        let mut loss_sum = 0.0;
        let mut seen = 0usize;
        for idx in batches(&lens, opts.batch_size, Some(rng)) {
            let batch = Batch::new(&batch_of(&below, &idx), hidden, &dev)?;
            let h = run_layers(&layers, &batch, relative)?;
            let loss = targets.loss(&head.outputs(&batch, &h)?, &idx, &dev)?;
            let grads = loss.backward()?;
            if let Some(opt) = layer_opt.as_mut() {
                opt.step(&grads)?;
            }
            head_opt.step(&grads)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * idx.len() as f64;
            seen += idx.len();
            bar.set_message(format!(
                "fine-tuning, epoch {}/{}, loss {:.3}",
                epoch + 1,
                opts.epochs,
                loss_sum / seen as f64
            ));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    layers.iter().map(CandleLayer::to_layer).collect()
}

/// The outputs of `model`'s encoder and `head` on every embedded input, computed in candle
/// batches, in input order.
///
/// # Errors
/// If an input is not whole rows of the model's width, or candle fails.
pub fn head_outputs(
    model: &BertWeights,
    head: &dyn TrainableHead,
    inputs: &[Vec<f32>],
    batch_size: usize,
    msg: &str,
) -> Result<Vec<Vec<f32>>> {
    let dev = Device::Cpu;
    let c = &model.config;
    let layers: Vec<CandleLayer> = model
        .layers
        .iter()
        .map(|l| CandleLayer::from_layer(l, c, &dev))
        .collect::<Result<_>>()?;
    let lens: Vec<usize> = inputs.iter().map(|r| r.len() / c.hidden_size).collect();
    let mut out = vec![Vec::new(); inputs.len()];
    let bar = Progress::new(inputs.len(), msg);
    for idx in batches(&lens, batch_size, None) {
        let batch = Batch::new(&batch_of(inputs, &idx), c.hidden_size, &dev)?;
        let h = run_layers(&layers, &batch, model.relative_attention_bias.as_ref())?;
        for (i, o) in idx.iter().zip(head.outputs(&batch, &h)?.to_vec2::<f32>()?) {
            out[*i] = o;
        }
        bar.inc(idx.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Fine-tunes `base`'s top `tuned` layers and a fresh `classes`-way head on mean-pooled
/// states of the embedded sentences `inputs` (from [`embed_examples`](crate::checkpoint_expert::embed_examples)) with their `labels`,
/// and the `teacher`'s logits when given; the layers below stay frozen.
///
/// # Errors
/// If inputs and labels differ in number, a label is out of range, `tuned` is not in
/// 1..=layers, or candle fails.
pub fn fine_tune(
    base: &BertWeights,
    tuned: usize,
    inputs: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    teacher: Option<Teacher<'_>>,
    opts: &FineTuneOptions,
) -> Result<Expert> {
    if tuned == 0 {
        invalid!("an expert fine-tunes at least one layer");
    }
    let head = MeanPooledHead(CandleLinear::zeros(
        classes,
        base.config.hidden_size,
        &Device::Cpu,
    )?);
    let targets = match teacher {
        Some(teacher) if teacher.logits.first().map(Vec::len) != Some(classes) => {
            invalid!("the teacher's logits are not one per class of the {classes}")
        }
        Some(teacher) => Targets::Distilled { labels, teacher },
        None => Targets::Classes { labels, classes },
    };
    let top = fine_tune_top(base, tuned, inputs, targets, &head, opts)?;
    let mut weights = base.clone();
    let split = weights.layers.len() - tuned;
    weights.layers[split..].clone_from_slice(&top);
    Ok(Expert {
        weights,
        head: ClassifierHead {
            linear: head.0.to_linear()?,
        },
        tuned_layers: tuned,
    })
}

impl Expert {
    /// Pooled features and logits of every embedded input, computed in candle batches.
    pub fn infer(&self, inputs: &[Vec<f32>], batch_size: usize, msg: &str) -> Result<Inference> {
        let dev = Device::Cpu;
        let c = &self.weights.config;
        let layers: Vec<CandleLayer> = self
            .weights
            .layers
            .iter()
            .map(|l| CandleLayer::from_layer(l, c, &dev))
            .collect::<Result<_>>()?;
        let head = CandleLinear::from_linear(&self.head.linear, &dev)?;
        let lens: Vec<usize> = inputs.iter().map(|r| r.len() / c.hidden_size).collect();
        let mut out = Inference {
            pooled: vec![Vec::new(); inputs.len()],
            logits: vec![Vec::new(); inputs.len()],
        };
        let bar = Progress::new(inputs.len(), msg);
        for idx in batches(&lens, batch_size, None) {
            let batch = Batch::new(&batch_of(inputs, &idx), c.hidden_size, &dev)?;
            let h = run_layers(
                &layers,
                &batch,
                self.weights.relative_attention_bias.as_ref(),
            )?;
            let pooled = batch.mean_pool(&h)?;
            let logits = head.forward(&pooled)?;
            for ((i, p), l) in idx
                .iter()
                .zip(pooled.to_vec2::<f32>()?)
                .zip(logits.to_vec2::<f32>()?)
            {
                out.pooled[*i] = p;
                out.logits[*i] = l;
            }
            bar.inc(idx.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// The predicted class of `logits`: the index of the largest (the first on ties).
pub fn predicted(logits: &[f32]) -> usize {
    (0..logits.len()).fold(0, |b, c| if logits[c] > logits[b] { c } else { b })
}

/// Share of `logits` whose prediction is the label.
pub fn accuracy(logits: &[Vec<f32>], labels: &[usize]) -> f64 {
    if logits.is_empty() {
        return 0.0;
    }
    let right = logits
        .iter()
        .zip(labels)
        .filter(|(l, y)| predicted(l) == **y)
        .count();
    right as f64 / logits.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{embed, tiny};

    #[test]
    fn batches_cover_every_index_once() {
        let lens: Vec<usize> = (0..100).map(|i| 1 + (i * 37) % 23).collect();
        let rng = &mut AesCtr::new(&Seed::from_bytes([1; 16]), SHUFFLE_DOMAIN);
        for plan in [batches(&lens, 8, None), batches(&lens, 8, Some(rng))] {
            let mut all: Vec<usize> = plan.iter().flatten().copied().collect();
            assert!(plan.iter().all(|b| !b.is_empty() && b.len() <= 8));
            all.sort();
            assert_eq!(all, (0..100).collect::<Vec<_>>());
        }
    }

    /// 160 sentences of 3 to 8 random tokens, every other one holding token 7, and whether each
    /// holds it: a task a tiny model learns in a few dozen epochs.
    fn token_task(seed: u8) -> (Vec<Vec<u32>>, Vec<usize>) {
        let rng = &mut AesCtr::new(&Seed::from_bytes([seed; 16]), Domain(1));
        let sentences: Vec<Vec<u32>> = (0..160)
            .map(|i| {
                let n = 3 + (rng.next_u64() % 6) as usize;
                let mut ids: Vec<u32> = (0..n).map(|_| 8 + (rng.next_u64() % 30) as u32).collect();
                if i % 2 == 0 {
                    ids[(rng.next_u64() as usize) % n] = 7;
                }
                ids
            })
            .collect();
        let holds = sentences.iter().map(|s| s.contains(&7) as usize).collect();
        (sentences, holds)
    }

    /// Fine-tuning options that learn [`token_task`] on a tiny model.
    fn token_task_options() -> FineTuneOptions {
        FineTuneOptions {
            epochs: 30,
            batch_size: 16,
            layer_lr: 1e-3,
            head_lr: 1e-2,
            ..FineTuneOptions::default()
        }
    }

    /// A learnable task (is token 7 in the sentence?) on a random 2-layer model: fine-tuning
    /// the top layer and the head must learn it, and the fine-tuned expert's candle inference
    /// must equal the f64 reference of the weights it returns.
    #[test]
    fn fine_tuning_learns_a_token_task_and_returns_the_weights_it_trained() {
        let model = tiny(2, 3);
        let (sentences, labels) = token_task(9);
        let inputs: Vec<Vec<f32>> = sentences.iter().map(|ids| embed(&model, ids)).collect();
        let opts = token_task_options();
        let expert = fine_tune(&model, 1, &inputs, &labels, 2, None, &opts).unwrap();
        let out = expert.infer(&inputs, 32, "test").unwrap();
        let acc = accuracy(&out.logits, &labels);
        assert!(acc > 0.9, "training accuracy {acc}");
        // The frozen layer is untouched, the top layer moved.
        assert_eq!(
            expert.weights.layers[0].query.weight,
            model.layers[0].query.weight
        );
        assert!(
            expert.weights.layers[1]
                .ffn_in
                .weight
                .max_abs_diff(&model.layers[1].ffn_in.weight)
                > 1e-4
        );
        for (ids, got) in sentences.iter().zip(&out.logits).take(10) {
            let want = securerouter_ml::head::reference_logits(
                &expert.weights,
                &expert.head,
                ids,
                &vec![0; ids.len()],
            )
            .unwrap();
            for (w, g) in want.iter().zip(got) {
                assert!((w - f64::from(*g)).abs() < 1e-3, "{want:?} vs {got:?}");
            }
        }
    }

    /// A regression through BERT's own head shape (first token, pooler, tanh, one output):
    /// training lowers the squared error well below the targets' variance, and what candle
    /// computes with the trained weights is what the f64 checkpoint reference computes.
    #[test]
    fn a_pooler_head_learns_a_score_and_matches_the_reference() {
        let model = tiny(2, 5);
        let rng = &mut AesCtr::new(&Seed::from_bytes([3; 16]), Domain(2));
        let sentences: Vec<Vec<u32>> = (0..120)
            .map(|_| {
                let n = 3 + (rng.next_u64() % 5) as usize;
                (0..n).map(|_| 5 + (rng.next_u64() % 6) as u32).collect()
            })
            .collect();
        let scores: Vec<f32> = sentences
            .iter()
            .map(|s| s.iter().filter(|&&t| t == 7).count() as f32)
            .collect();
        let inputs: Vec<Vec<f32>> = sentences.iter().map(|ids| embed(&model, ids)).collect();
        let dev = Device::Cpu;
        let h = model.config.hidden_size;
        let head = PoolerHead {
            pooler: CandleLinear::from_linear(&model.layers[0].attention_out, &dev).unwrap(),
            classifier: CandleLinear::zeros(1, h, &dev).unwrap(),
        };
        let opts = FineTuneOptions {
            epochs: 60,
            batch_size: 16,
            layer_lr: 3e-3,
            head_lr: 1e-2,
            ..FineTuneOptions::default()
        };
        let top =
            fine_tune_top(&model, 2, &inputs, Targets::Scores(&scores), &head, &opts).unwrap();
        let mut trained = model.clone();
        trained.layers.clone_from_slice(&top);
        let out = head_outputs(&trained, &head, &inputs, 32, "test").unwrap();
        let mean = scores.iter().sum::<f32>() / scores.len() as f32;
        let var: f32 = scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / scores.len() as f32;
        let mse: f32 = out
            .iter()
            .zip(&scores)
            .map(|(o, s)| (o[0] - s).powi(2))
            .sum::<f32>()
            / scores.len() as f32;
        assert!(mse < 0.25 * var, "mse {mse}, variance {var}");
        let reference = securerouter_ml::SequenceClassificationHead {
            pooler: head.pooler.to_linear().unwrap(),
            classifier: head.classifier.to_linear().unwrap(),
            num_labels: 1,
            id2label: vec!["score".into()],
            problem_type: securerouter_ml::classification::ProblemType::Regression,
        };
        for (ids, got) in sentences.iter().zip(&out).take(10) {
            let want = securerouter_ml::logits_of_checkpoint(
                &trained,
                &reference,
                ids,
                &vec![0; ids.len()],
            )
            .unwrap();
            assert!(
                (want[0] - f64::from(got[0])).abs() < 1e-3,
                "{want:?} vs {got:?}"
            );
        }
        let bad = Targets::Scores(&scores[..3]);
        assert!(fine_tune_top(&model, 0, &inputs, bad, &head, &opts).is_err());
    }

    /// A student taught by a teacher alone learns the teacher's rule (is token 7 in the
    /// sentence?) although every label says class 0; with the teacher's weight at 0 it learns
    /// the labels.
    #[test]
    fn a_distilled_student_learns_the_teachers_rule_not_the_labels() {
        let model = tiny(2, 3);
        let (sentences, rule) = token_task(5);
        let teacher_logits: Vec<Vec<f32>> = rule
            .iter()
            .map(|&r| {
                if r == 1 {
                    vec![-2.0, 2.0]
                } else {
                    vec![2.0, -2.0]
                }
            })
            .collect();
        let labels = vec![0usize; sentences.len()];
        let inputs: Vec<Vec<f32>> = sentences.iter().map(|ids| embed(&model, ids)).collect();
        let opts = token_task_options();
        let taught = |weight: f32| {
            let teacher = Teacher {
                logits: &teacher_logits,
                temperature: 2.0,
                weight,
            };
            let expert = fine_tune(&model, 1, &inputs, &labels, 2, Some(teacher), &opts).unwrap();
            accuracy(&expert.infer(&inputs, 32, "test").unwrap().logits, &rule)
        };
        let by_teacher = taught(1.0);
        assert!(by_teacher > 0.9, "the teacher's rule: {by_teacher}");
        let by_labels = taught(0.0);
        assert!(by_labels < 0.6, "the labels say class 0: {by_labels}");
    }

    #[test]
    fn bad_teachers_are_errors() {
        let model = tiny(1, 3);
        let x = vec![vec![0.0f32; 16]; 2];
        let opts = FineTuneOptions::default();
        let rows = [vec![1.0f32, -1.0], vec![0.5, 0.5]];
        let teach = |logits, temperature, weight| Teacher {
            logits,
            temperature,
            weight,
        };
        let fit = |t: Teacher<'_>| fine_tune(&model, 1, &x, &[0, 1], 2, Some(t), &opts);
        assert!(fit(teach(&rows[..1], 2.0, 0.5)).is_err(), "a row short");
        let three = [vec![1.0f32, 0.0, 0.0], vec![0.0, 1.0, 0.0]];
        assert!(
            fit(teach(&three, 2.0, 0.5)).is_err(),
            "another number of classes"
        );
        let nan = [vec![f32::NAN, 0.0], vec![0.0, 1.0]];
        assert!(fit(teach(&nan, 2.0, 0.5)).is_err(), "a NaN logit");
        assert!(fit(teach(&rows, 0.0, 0.5)).is_err(), "temperature 0");
        assert!(fit(teach(&rows, 2.0, 1.5)).is_err(), "weight above 1");
        assert!(fit(teach(&rows, 2.0, 0.5)).is_ok());
    }

    #[test]
    fn bad_labels_are_errors() {
        let model = tiny(1, 3);
        let x = vec![vec![0.0f32; 16]];
        let opts = FineTuneOptions::default();
        assert!(fine_tune(&model, 1, &x, &[2], 2, None, &opts).is_err());
        assert!(fine_tune(&model, 1, &x, &[], 2, None, &opts).is_err());
        assert!(fine_tune(&model, 2, &x, &[1], 2, None, &opts).is_err());
        assert!(fine_tune(&model, 0, &x, &[1], 2, None, &opts).is_err());
    }
}
