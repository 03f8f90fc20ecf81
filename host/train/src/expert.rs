//! Fine-tuning a pool expert: a pretrained encoder cut to its first k layers gets its top
//! layers and a fresh classifier head trained on labelled sentences. The layers below stay
//! frozen, so their outputs are computed once, and the embeddings stay the pretrained ones, so one client
//! embedding serves every expert of a pool.

use super::encoder::{Batch, CandleLayer, CandleLinear};
use crate::error::{Result, invalid};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_ml::data::shuffle;
use securerouter_ml::progress::Progress;
use securerouter_ml::{BertWeights, ClassifierHead, WordPiece};

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

/// The client's embedding of each text (tokens × hidden, row-major, f32), at most `seq_len`
/// tokens each.
pub fn embed_texts(
    model: &BertWeights,
    tokenizer: &WordPiece,
    texts: &[&str],
    seq_len: usize,
) -> Result<Vec<Vec<f32>>> {
    texts
        .iter()
        .map(|t| {
            let e = tokenizer.encode(t, seq_len);
            let m = model.embed(&e.ids, &e.type_ids)?;
            Ok(m.data.iter().map(|&v| v as f32).collect())
        })
        .collect()
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

/// Runs frozen `layers` on every input (rows of `hidden`) in length-sorted batches; returns
/// each input's output rows, in input order.
pub fn run_frozen(
    layers: &[CandleLayer],
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
        let mut h = batch.x.clone();
        for l in layers {
            h = l.forward(&h, &batch.key_bias)?;
        }
        for (i, rows) in idx.iter().zip(batch.unpad(&h)?) {
            out[*i] = rows;
        }
        bar.inc(idx.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Fine-tunes `base`'s top `tuned` layers and a fresh `classes`-way head on the embedded
/// sentences `inputs` (from [`embed_texts`]) with their `labels`; the layers below stay frozen.
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
    opts: &FineTuneOptions,
) -> Result<Expert> {
    let (hidden, heads) = (base.config.hidden_size, base.config.num_attention_heads);
    if tuned == 0 || tuned > base.layers.len() {
        invalid!(
            "cannot fine-tune {tuned} layers of a model with {}",
            base.layers.len()
        );
    }
    if inputs.is_empty() || inputs.len() != labels.len() || labels.iter().any(|&l| l >= classes) {
        invalid!(
            "fine-tuning needs one label in 0..{classes} per sentence ({} sentences, {} labels)",
            inputs.len(),
            labels.len()
        );
    }
    let dev = Device::Cpu;
    let candle = |layers: &[securerouter_ml::EncoderLayer]| -> Result<Vec<CandleLayer>> {
        layers
            .iter()
            .map(|l| CandleLayer::from_layer(l, heads, &dev))
            .collect()
    };
    let split = base.layers.len() - tuned;
    let below = run_frozen(
        &candle(&base.layers[..split])?,
        inputs,
        hidden,
        opts.batch_size,
        "frozen layers on the training sentences",
    )?;
    let layers = candle(&base.layers[split..])?;
    let head = CandleLinear::zeros(classes, hidden, &dev)?;
    let params = |lr| ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..ParamsAdamW::default()
    };
    let mut layer_opt = AdamW::new(
        layers.iter().flat_map(CandleLayer::vars).collect(),
        params(opts.layer_lr),
    )?;
    let mut head_opt = AdamW::new(head.vars().to_vec(), params(opts.head_lr))?;
    let lens: Vec<usize> = below.iter().map(|r| r.len() / hidden).collect();
    let rng = &mut AesCtr::new(&opts.seed, SHUFFLE_DOMAIN);
    let steps = inputs.len().div_ceil(opts.batch_size.max(1)) * opts.epochs;
    let bar = Progress::new(steps, "fine-tuning");
    for epoch in 0..opts.epochs {
        let mut loss_sum = 0.0;
        let mut seen = 0usize;
        for idx in batches(&lens, opts.batch_size, Some(rng)) {
            let batch = Batch::new(&batch_of(&below, &idx), hidden, &dev)?;
            let mut h = batch.x.clone();
            for l in &layers {
                h = l.forward(&h, &batch.key_bias)?;
            }
            let logits = head.forward(&batch.mean_pool(&h)?)?;
            let target: Vec<u32> = idx.iter().map(|&i| labels[i] as u32).collect();
            let target = Tensor::from_vec(target, idx.len(), &dev)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &target)?;
            let grads = loss.backward()?;
            layer_opt.step(&grads)?;
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
    let mut weights = base.clone();
    for (w, l) in weights.layers[split..].iter_mut().zip(&layers) {
        *w = l.to_layer()?;
    }
    Ok(Expert {
        weights,
        head: ClassifierHead {
            linear: head.to_linear()?,
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
            .map(|l| CandleLayer::from_layer(l, c.num_attention_heads, &dev))
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
            let mut h = batch.x.clone();
            for l in &layers {
                h = l.forward(&h, &batch.key_bias)?;
            }
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

    /// A learnable task (is token 7 in the sentence?) on a random 2-layer model: fine-tuning
    /// the top layer and the head must learn it, and the fine-tuned expert's candle inference
    /// must equal the f64 reference of the weights it returns.
    #[test]
    fn fine_tuning_learns_a_token_task_and_returns_the_weights_it_trained() {
        let model = tiny(2, 3);
        let rng = &mut AesCtr::new(&Seed::from_bytes([9; 16]), Domain(1));
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
        let labels: Vec<usize> = sentences.iter().map(|s| s.contains(&7) as usize).collect();
        let inputs: Vec<Vec<f32>> = sentences.iter().map(|ids| embed(&model, ids)).collect();
        let opts = FineTuneOptions {
            epochs: 30,
            batch_size: 16,
            layer_lr: 1e-3,
            head_lr: 1e-2,
            ..FineTuneOptions::default()
        };
        let expert = fine_tune(&model, 1, &inputs, &labels, 2, &opts).unwrap();
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

    #[test]
    fn bad_labels_are_errors() {
        let model = tiny(1, 3);
        let x = vec![vec![0.0f32; 16]];
        let opts = FineTuneOptions::default();
        assert!(fine_tune(&model, 1, &x, &[2], 2, &opts).is_err());
        assert!(fine_tune(&model, 1, &x, &[], 2, &opts).is_err());
        assert!(fine_tune(&model, 2, &x, &[1], 2, &opts).is_err());
        assert!(fine_tune(&model, 0, &x, &[1], 2, &opts).is_err());
    }
}
