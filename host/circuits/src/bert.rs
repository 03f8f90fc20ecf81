//! A BERT classifier as one secure circuit (DESIGN §3–§4): the client sends the embedded
//! tokens; the servers run every encoder layer, then either masked mean pooling and a linear
//! classifier fitted on it ([`bert_classifier`]), or a Hugging Face checkpoint's own head:
//! the first token's hidden state, the pooler's dense layer and tanh, and the checkpoint's
//! classifier ([`bert_checkpoint_classifier`]).
//!
//! The input is one [tokens, hidden + 2] tensor, or a batch of them, [inputs, tokens,
//! hidden + 2] (every input padded to the same length), which runs in the rounds of one: the
//! embeddings (after the embedding
//! LayerNorm, which the client computes from its bundle), then per token an additive
//! attention bias (0 for real tokens, [`PAD_BIAS`] for padding) and a pooling weight (1/n for
//! the n real tokens, 0 for padding). Padding keeps the sentence length secret; the bias and
//! weights are secret inputs like the embeddings.
//!
//! Weights are fixed point at [`FRAC`] bits, biases at 2·FRAC (they add to products), the
//! LayerNorm shift at 3·FRAC. The attention scale 1/√d is folded into the query projection,
//! and Q, K, V are one linear layer.
//!
//! An MPNet encoder is BERT's plus a relative-attention bias
//! `B[h][i][j] = table[bucket(j − i)][h]` added to every layer's scores after the 1/√d scaling
//! ([`BertShape::relative_buckets`]).
//! The table is one more weight layer, first in the model's layers, with no inputs (k = 0) and
//! its buckets × heads values as biases at 2·FRAC, the scale of the Q·Kᵀ product: the servers
//! hold it in additive shares and the dealer's part of it is empty. Each server adds its share,
//! expanded by the public bucket(j − i) of the padded length, to its share of Q·Kᵀ before the
//! product is opened ([`Protocol::matmul_offset`]): no round, byte or key more than BERT.

pub use super::layers::Activation;
use super::layers::{self, ACT_BITS, FRAC, LINEAR_BITS};
use crate::error::invalid;
use securerouter_core::Error;
use securerouter_core::gate::{self, DealerWeights, Protocol, ServerWeights, Tensor};
use securerouter_core::prg::{Domain, Seed};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_ml::head::ExpertHead;
use securerouter_ml::mpnet::RelativeAttentionBias;
use securerouter_ml::{
    BertWeights, ClassifierHead, LayerNorm, Linear, ModelKind, SequenceClassificationHead,
};
use serde::{Deserialize, Serialize};

/// The attention bias of padding tokens (−256 in real terms): after the row maximum is
/// subtracted, exp clips it to 0.
pub const PAD_BIAS: f64 = -256.0;

/// Weight layers per encoder layer: QKV, attention output, LayerNorm, FFN in, FFN out,
/// LayerNorm.
pub const PARTS_PER_LAYER: usize = 6;

/// The shape of a BERT classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BertShape {
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward inner size.
    pub ffn: usize,
    /// Output classes.
    pub classes: usize,
    /// The feed-forward activation (the checkpoint's `hidden_act`): the secure GeLU reads the
    /// correction table of this function.
    pub activation: Activation,
    /// Buckets of a relative-attention bias added to every layer's scores (MPNet's
    /// [`RELATIVE_BUCKETS`]), or 0 for none (BERT). Its table is the model's first weight layer.
    pub relative_buckets: usize,
}

/// The relative-position buckets of MPNet's attention bias (T5's bidirectional buckets with a
/// maximum distance of 128, [`securerouter_ml::mpnet::relative_position_bucket`]).
pub const RELATIVE_BUCKETS: usize = securerouter_ml::mpnet::NUM_BUCKETS;

/// The largest |value| of a relative-attention bias the circuit takes: scores stay far inside
/// what the softmax compares, and padding ([`PAD_BIAS`]) stays masked.
pub const MAX_RELATIVE_BIAS: f64 = 64.0;

impl BertShape {
    /// Checks the shape is consistent and bounded (shapes come from files and the CLI).
    pub fn validate(&self) -> crate::Result<()> {
        for (what, v, max) in [
            ("layers", self.layers, 64),
            ("hidden", self.hidden, 8192),
            ("heads", self.heads, 256),
            ("ffn", self.ffn, 32768),
            ("classes", self.classes, 4096),
        ] {
            if v == 0 || v > max {
                invalid!("BERT {what} = {v} is outside 1..={max}");
            }
        }
        if self.relative_buckets != 0 && self.relative_buckets != RELATIVE_BUCKETS {
            invalid!(
                "a relative attention bias of {} buckets is not supported (0 or \
                 {RELATIVE_BUCKETS})",
                self.relative_buckets
            );
        }
        if !self.hidden.is_multiple_of(self.heads) {
            invalid!(
                "hidden size {} is not a multiple of the {} heads",
                self.hidden,
                self.heads
            );
        }
        Ok(())
    }

    /// Size of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Weight layers of the encoder: the relative-attention bias's table, if any, then
    /// [`PARTS_PER_LAYER`] per layer.
    pub fn encoder_weight_layers(&self) -> usize {
        usize::from(self.relative_buckets > 0) + self.layers * PARTS_PER_LAYER
    }

    /// Columns of the client's input per token: embedding, attention bias, pooling weight.
    pub fn input_cols(&self) -> usize {
        self.hidden + 2
    }

    /// (inputs, outputs) of every weight layer in circuit order, with the mean-pooled head;
    /// LayerNorms are one-input layers (element-wise scale and shift).
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        self.layer_shapes_for(BertHead::MeanPooled)
    }

    /// [`BertShape::layer_shapes`] for a model ending in `head`: the checkpoint's head has
    /// one more layer, the pooler (hidden × hidden), before the classifier. A relative
    /// attention bias comes first, as a layer with no inputs and buckets × heads biases.
    pub fn layer_shapes_for(&self, head: BertHead) -> Vec<(usize, usize)> {
        let (h, f) = (self.hidden, self.ffn);
        let mut v = Vec::new();
        if self.relative_buckets > 0 {
            v.push((0, self.relative_buckets * self.heads));
        }
        for _ in 0..self.layers {
            v.extend([(h, 3 * h), (h, h), (1, h), (h, f), (f, h), (1, h)]);
        }
        if head == BertHead::Checkpoint {
            v.push((h, h));
        }
        v.push((h, self.classes));
        v
    }
}

/// The head a BERT classifier ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BertHead {
    /// Masked mean pooling and a linear classifier fitted on it ([`bert_classifier`]).
    MeanPooled,
    /// A `BertForSequenceClassification` checkpoint's own head: the first token's hidden
    /// state, the pooler (dense, tanh), the classifier ([`bert_checkpoint_classifier`]).
    Checkpoint,
}

/// The named parts of the circuit, for per-part accounting (`bench ... --breakdown`).
pub mod phase {
    /// Linear layers (QKV, attention output, feed-forward) and the classifier.
    pub const LINEAR: &str = "linear";
    /// Q·Kᵀ and probabilities·V.
    pub const ATTENTION: &str = "attention";
    /// Softmax.
    pub const SOFTMAX: &str = "softmax";
    /// GeLU.
    pub const GELU: &str = "gelu";
    /// LayerNorm.
    pub const LAYER_NORM: &str = "layernorm";
    /// Input opening, pooling and output.
    pub const OTHER: &str = "other";
    /// Every part, in report order.
    pub const ALL: [&str; 6] = [LINEAR, ATTENTION, SOFTMAX, GELU, LAYER_NORM, OTHER];
}

/// y = linear(x) in the linear layers' ring, truncated back to FRAC bits in the full ring.
async fn dense<P: Protocol>(p: &mut P, x: &Tensor, w: &P::Weights) -> Result<Tensor, Error> {
    p.phase(phase::LINEAR);
    // In the linear ring, or a narrower one the input already has (GeLU's).
    let ring = match x.width().bits() < LINEAR_BITS {
        true => x.width(),
        false => linear_ring()?,
    };
    let y = p.linear(&x.reduce(ring)?, w).await?;
    p.truncate_to(&y, FRAC, BitWidth::FULL).await
}

fn linear_ring() -> Result<BitWidth, Error> {
    BitWidth::new(LINEAR_BITS)
}

/// Runs the classifier on one sequence `x` ([tokens, hidden + 2]); returns the logits
/// [1, classes].
pub async fn bert_classifier<P: Protocol>(
    p: &mut P,
    shape: &BertShape,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Tensor, Error> {
    let [encoder @ .., head] = weights else {
        return Err(Error::ShapeMismatch(
            "the weights do not match the BERT shape",
        ));
    };
    let pooled = bert_pooled(p, shape, x, encoder).await?;
    classifier_head(p, &pooled, head).await
}

/// Runs the classifier ending in `head` on one sequence `x` ([tokens, hidden + 2]); returns
/// the logits [1, classes]. `weights` as [`BertShape::layer_shapes_for`] lists them.
pub async fn classifier_with_head<P: Protocol>(
    p: &mut P,
    shape: &BertShape,
    head: BertHead,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Tensor, Error> {
    match head {
        BertHead::MeanPooled => bert_classifier(p, shape, x, weights).await,
        BertHead::Checkpoint => bert_checkpoint_classifier(p, shape, x, weights).await,
    }
}

/// Runs a checkpoint's own classifier on one sequence `x` ([tokens, hidden + 2]; the
/// pooling weights are not read): the encoder layers, then HF's pooled output
/// tanh(W_p·h_CLS + b_p) and the logits W_c·pooled + b_c [1, classes]. `weights`: the
/// encoder's, the pooler, the classifier ([`BertShape::layer_shapes_for`]).
pub async fn bert_checkpoint_classifier<P: Protocol>(
    p: &mut P,
    shape: &BertShape,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Tensor, Error> {
    let [encoder @ .., pooler, head] = weights else {
        return Err(Error::ShapeMismatch(
            "the weights do not match the BERT shape",
        ));
    };
    let (batch, n, x) = sequences(shape, x)?;
    let hidden = bert_encoder(p, shape, &x, batch, encoder).await?;
    p.phase(phase::OTHER);
    // Each input's first token's row: local, no key and no round.
    let cls = hidden
        .reshape(&[batch, n, shape.hidden])?
        .transpose()?
        .gather_last(&[0])?
        .reshape(&[batch, shape.hidden])?;
    let pooled = dense(p, &cls, pooler).await?;
    p.phase(phase::OTHER);
    let pooled = layers::tanh(p, &pooled).await?;
    classifier_head(p, &pooled, head).await
}

/// The classifier head on pooled features [1, hidden]: logits [1, classes].
pub async fn classifier_head<P: Protocol>(
    p: &mut P,
    pooled: &Tensor,
    head: &P::Weights,
) -> Result<Tensor, Error> {
    let logits = dense(p, pooled, head).await?;
    p.phase(phase::OTHER);
    Ok(logits)
}

/// Runs the encoder layers (`weights`: [`PARTS_PER_LAYER`] per layer, no head) on one sequence
/// `x` ([tokens, hidden + 2]); returns the mean of the real tokens' last hidden states
/// [1, hidden], the features both a classifier head and the router read.
pub async fn bert_pooled<P: Protocol>(
    p: &mut P,
    shape: &BertShape,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Tensor, Error> {
    let (batch, n, x) = sequences(shape, x)?;
    let hidden = bert_encoder(p, shape, &x, batch, weights).await?;
    let pool = x
        .gather_last(&[shape.hidden + 1])?
        .reshape(&[batch, 1, n])?;
    p.phase(phase::OTHER);
    let pooled = p
        .matmul(&pool, &hidden.reshape(&[batch, n, shape.hidden])?)
        .await?
        .reshape(&[batch, shape.hidden])?;
    p.truncate(&pooled, FRAC).await
}

/// A BERT input as (inputs, tokens per input, [inputs · tokens, hidden + 2]): one sequence
/// [tokens, hidden + 2] or a batch [inputs, tokens, hidden + 2].
fn sequences(shape: &BertShape, x: &Tensor) -> Result<(usize, usize, Tensor), Error> {
    let (batch, n) = match *x.shape() {
        [n, cols] if cols == shape.input_cols() => (1, n),
        [batch, n, cols] if cols == shape.input_cols() => (batch, n),
        _ => {
            return Err(Error::ShapeMismatch(
                "BERT input must be [tokens, hidden + 2] or [inputs, tokens, hidden + 2]",
            ));
        }
    };
    if batch == 0 || n == 0 {
        return Err(Error::ShapeMismatch("a BERT input needs a token"));
    }
    Ok((batch, n, x.reshape(&[batch * n, shape.input_cols()])?))
}

/// For each element (head h, query i, key j) of the [heads, n, n] scores, the index of its
/// relative-attention bias in the table's layer: bucket(j − i) · heads + h (the table is
/// buckets × heads, row-major). Public: it depends on the padded length alone.
pub fn relative_bias_index(heads: usize, n: usize) -> Result<Vec<u32>, Error> {
    let too_long = || Error::ShapeMismatch("too many scores for a relative bias index");
    let len = heads
        .checked_mul(n)
        .and_then(|v| v.checked_mul(n))
        .ok_or_else(too_long)?;
    let mut index = vec![0u32; len];
    for i in 0..n {
        for j in 0..n {
            let rel = j as i64 - i as i64;
            let bucket = securerouter_ml::mpnet::relative_position_bucket(rel);
            for hd in 0..heads {
                let v = bucket * heads + hd;
                index[(hd * n + i) * n + j] = u32::try_from(v).map_err(|_| too_long())?;
            }
        }
    }
    Ok(index)
}

/// The encoder layers on `batch` sequences of equal length, their rows stacked in `x`
/// ([batch · tokens, hidden + 2]): the last hidden states [batch · tokens, hidden]. Every
/// layer but attention is row-wise; attention runs per input and head, [batch · heads,
/// tokens, d], each input with its own key bias.
async fn bert_encoder<P: Protocol>(
    p: &mut P,
    shape: &BertShape,
    x: &Tensor,
    batch: usize,
    weights: &[P::Weights],
) -> Result<Tensor, Error> {
    let (h, heads, d) = (shape.hidden, shape.heads, shape.head_dim());
    if weights.len() != shape.encoder_weight_layers() {
        return Err(Error::ShapeMismatch(
            "the weights do not match the BERT shape",
        ));
    }
    let (relative, weights) = match weights {
        [table, rest @ ..] if shape.relative_buckets > 0 => (Some(table), rest),
        _ => (None, weights),
    };
    if x.shape().len() != 2 || x.last_dim() != shape.input_cols() || batch == 0 {
        return Err(Error::ShapeMismatch(
            "BERT input must be [tokens, hidden + 2]",
        ));
    }
    let n = x.shape()[0] / batch;
    if n * batch != x.shape()[0] {
        return Err(Error::ShapeMismatch(
            "a batch of sequences of unequal length",
        ));
    }
    let cols = |r: core::ops::Range<usize>| r.collect::<Vec<_>>();
    let mut hidden = x.gather_last(&cols(0..h))?;
    let relative = match relative {
        // The same index for every input: it depends on the padded length alone.
        Some(table) => Some((table, relative_bias_index(heads, n)?.repeat(batch))),
        None => None,
    };
    // Row i of input b's [heads·n, n] score matrix gets b's bias_j in column j.
    let key_bias = x
        .gather_last(&[h])?
        .reshape(&[batch, n])?
        .reduce(BitWidth::new(ACT_BITS)?)?
        .repeat_last(heads * n)
        .transpose()?
        .reshape(&[batch * heads * n, n])?;
    for w in weights.chunks(PARTS_PER_LAYER) {
        let [qkv_w, out_w, norm1, ffn_in, ffn_out, norm2] = w else {
            unreachable!("chunks of PARTS_PER_LAYER");
        };
        p.phase(phase::LINEAR);
        let qkv = p.linear(&hidden.reduce(linear_ring()?)?, qkv_w).await?;
        let split = |i: usize, axes: &[usize]| -> Result<Tensor, Error> {
            qkv.gather_last(&cols(i * h..(i + 1) * h))?
                .reshape(&[batch, n, heads, d])?
                .permute(axes)?
                .reshape(&[batch * heads, n, d])
        };
        // Q and K only meet in the scores, which the softmax reads on ACT_BITS bits: their
        // product is needed modulo 2^(ACT_BITS + FRAC) alone, so Q and K are rescaled by the
        // local shift and multiplied in that ring. V keeps the full ring.
        let score_ring = BitWidth::new(ACT_BITS + FRAC)?;
        let narrow = |t: Tensor| t.shift_down(FRAC)?.reduce(score_ring);
        let (q, k) = (
            narrow(split(0, &[0, 2, 1, 3])?)?,
            narrow(split(1, &[0, 2, 1, 3])?.transpose()?)?,
        );
        // V is needed only after the softmax: its truncation opens with Q·Kᵀ, in no round of
        // its own.
        let v = p
            .truncate_later(&split(2, &[0, 2, 1, 3])?, FRAC, BitWidth::FULL)
            .await?;
        p.phase(phase::ATTENTION);
        // Q·Kᵀ at scale 2^(2·FRAC); a relative bias (at the same scale) joins it in the shares
        // the product opens.
        let scores = match &relative {
            Some((table, index)) => p.matmul_offset(&q, &k, table, index).await?,
            None => p.matmul(&q, &k).await?,
        };
        let scores = scores.shift_down(FRAC)?;
        let scores = scores.reshape(&[batch * heads * n, n])?.add(&key_bias)?;
        p.phase(phase::SOFTMAX);
        let probs = layers::softmax_triple_scale(p, &scores).await?;
        p.phase(phase::ATTENTION);
        let v = p.resolve(v).await?;
        // Probabilities at scale 2^(3·FRAC) times V at 2^FRAC.
        let context = p
            .matmul(&probs.reshape(&[batch * heads, n, n])?, &v)
            .await?;
        let context = p.truncate(&context, 3 * FRAC).await?;
        let context = context
            .reshape(&[batch, heads, n, d])?
            .permute(&[0, 2, 1, 3])?
            .reshape(&[batch * n, h])?;
        let attn = dense(p, &context, out_w).await?.add(&hidden)?;
        p.phase(phase::LAYER_NORM);
        let attn = layers::layer_norm(p, &attn, norm1).await?;
        p.phase(phase::LINEAR);
        let inner = p.linear(&attn.reduce(linear_ring()?)?, ffn_in).await?;
        // GeLU reads the product untruncated: its truncation costs no round of its own.
        p.phase(phase::GELU);
        let inner = layers::gelu_of_product(p, &inner, shape.activation).await?;
        let out = dense(p, &inner, ffn_out).await?.add(&attn)?;
        p.phase(phase::LAYER_NORM);
        hidden = layers::layer_norm(p, &out, norm2).await?;
    }
    Ok(hidden)
}

/// One weight layer in the ring: k×n weights (row-major, inputs × outputs) and n biases.
#[derive(Clone, Debug, PartialEq)]
pub struct RingLayer {
    /// Inputs.
    pub k: usize,
    /// Outputs.
    pub n: usize,
    /// Weights.
    pub w: Vec<u64>,
    /// Biases.
    pub bias: Vec<u64>,
}

fn encode(v: &[f64], frac: u32, what: &str) -> crate::Result<Vec<u64>> {
    let fp = FixedPoint::new(frac, BitWidth::FULL)?;
    v.iter()
        .map(|&a| fp.encode(a))
        .collect::<Result<_, _>>()
        .map_err(|source| crate::Error::FixedPoint {
            what: what.to_owned(),
            source,
        })
}

/// A linear layer (Hugging Face layout, out × in) as inputs × outputs, scaled by `scale`.
fn dense_parts(l: &Linear, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let (out, inp) = (l.weight.rows, l.weight.cols);
    let mut w = vec![0.0; inp * out];
    for o in 0..out {
        for i in 0..inp {
            w[i * out + o] = l.weight.data[o * inp + i] * scale;
        }
    }
    (w, l.bias.iter().map(|b| b * scale).collect())
}

fn ring_dense(parts: &[(&Linear, f64)], what: &str) -> crate::Result<RingLayer> {
    // Several linear layers with equal inputs side by side (Q, K, V).
    let k = parts[0].0.weight.cols;
    let n: usize = parts.iter().map(|(l, _)| l.weight.rows).sum();
    let mut w = vec![0.0; k * n];
    let mut bias = Vec::with_capacity(n);
    let mut col = 0;
    for (l, scale) in parts {
        let (pw, pb) = dense_parts(l, *scale);
        let m = l.weight.rows;
        for i in 0..k {
            w[i * n + col..i * n + col + m].copy_from_slice(&pw[i * m..(i + 1) * m]);
        }
        bias.extend(pb);
        col += m;
    }
    Ok(RingLayer {
        k,
        n,
        w: encode(&w, FRAC, what)?,
        bias: encode(&bias, 2 * FRAC, what)?,
    })
}

fn ring_norm(l: &LayerNorm, what: &str) -> crate::Result<RingLayer> {
    Ok(RingLayer {
        k: 1,
        n: l.gamma.len(),
        w: encode(&l.gamma, FRAC, what)?,
        bias: encode(&l.beta, 3 * FRAC, what)?,
    })
}

/// The encoder layers and classifier head of a model as ring layers in circuit order.
pub fn ring_layers(model: &BertWeights, head: &ClassifierHead) -> crate::Result<Vec<RingLayer>> {
    let mut out = encoder_ring_layers(model)?;
    out.push(ring_dense(&[(&head.linear, 1.0)], "classifier")?);
    Ok(out)
}

/// The encoder layers and a checkpoint's own head (pooler, classifier) as ring layers in
/// circuit order, for [`bert_checkpoint_classifier`].
pub fn checkpoint_ring_layers(
    model: &BertWeights,
    head: &SequenceClassificationHead,
) -> crate::Result<Vec<RingLayer>> {
    let h = model.config.hidden_size;
    let (p, c) = (&head.pooler.weight, &head.classifier.weight);
    if (p.rows, p.cols, c.cols) != (h, h, h) || c.rows != head.num_labels {
        invalid!(
            "a head with a {}×{} pooler and a {}×{} classifier does not fit hidden size {h} \
             and {} labels",
            p.rows,
            p.cols,
            c.rows,
            c.cols,
            head.num_labels
        );
    }
    let mut out = encoder_ring_layers(model)?;
    out.push(ring_dense(&[(&head.pooler, 1.0)], "pooler")?);
    out.push(ring_dense(&[(&head.classifier, 1.0)], "classifier")?);
    Ok(out)
}

/// The relative-attention bias of `model` (MPNet's; none for BERT), refused when it does not
/// fit the model or lies outside what the circuit takes.
fn relative_bias(model: &BertWeights) -> crate::Result<Option<&RelativeAttentionBias>> {
    let c = &model.config;
    match (c.kind()?, &model.relative_attention_bias) {
        (ModelKind::Bert, None) => Ok(None),
        (ModelKind::MPNet, Some(b)) => {
            if b.heads() != c.num_attention_heads || b.table().rows != RELATIVE_BUCKETS {
                invalid!(
                    "the relative attention bias is {} × {}, not {RELATIVE_BUCKETS} buckets × \
                     {} heads",
                    b.table().rows,
                    b.heads(),
                    c.num_attention_heads
                );
            }
            let max = b.table().data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if max > MAX_RELATIVE_BIAS {
                invalid!(
                    "the relative attention bias reaches |{max}|, beyond the ±\
                     {MAX_RELATIVE_BIAS} the secure softmax takes"
                );
            }
            Ok(Some(b))
        }
        (ModelKind::Bert, Some(_)) => {
            invalid!(
                "model_type {:?} has a relative attention bias",
                c.model_type
            )
        }
        (ModelKind::MPNet, None) => {
            invalid!(
                "model_type {:?} has no relative attention bias",
                c.model_type
            )
        }
    }
}

fn encoder_ring_layers(model: &BertWeights) -> crate::Result<Vec<RingLayer>> {
    let c = &model.config;
    // BERT and MPNet run under MPC (MPNet with its relative bias); any other model_type is
    // refused by name ([`securerouter_ml::BertConfig::kind`]).
    let relative = relative_bias(model)?;
    // The activation is not in the ring layers but in the shape ([`shape_of`]); it is checked
    // here too, so that a config altered to an unknown activation is refused before deploying.
    c.activation()?;
    let scale = 1.0 / (c.head_dim() as f64).sqrt();
    let mut out = Vec::new();
    if let Some(b) = relative {
        // Added to Q·Kᵀ after the 1/√d folded into Q, at the product's scale 2·FRAC.
        out.push(RingLayer {
            k: 0,
            n: b.table().data.len(),
            w: Vec::new(),
            bias: encode(&b.table().data, 2 * FRAC, "relative attention bias")?,
        });
    }
    for (i, l) in model.layers.iter().enumerate() {
        let what = |part: &str| format!("layer {i} {part}");
        out.push(ring_dense(
            &[(&l.query, scale), (&l.key, 1.0), (&l.value, 1.0)],
            &what("QKV"),
        )?);
        out.push(ring_dense(
            &[(&l.attention_out, 1.0)],
            &what("attention output"),
        )?);
        out.push(ring_norm(&l.attention_norm, &what("attention LayerNorm"))?);
        out.push(ring_dense(&[(&l.ffn_in, 1.0)], &what("FFN in"))?);
        out.push(ring_dense(&[(&l.ffn_out, 1.0)], &what("FFN out"))?);
        out.push(ring_norm(&l.ffn_norm, &what("FFN LayerNorm"))?);
    }
    Ok(out)
}

/// The shape of a model with a head, its activation the config's `hidden_act` (an error
/// names one that is not a GeLU).
pub fn shape_of(model: &BertWeights, head: &ClassifierHead) -> crate::Result<BertShape> {
    shape_with_classes(model, head.linear.weight.rows)
}

/// The shape of a model with its checkpoint's own head (run as
/// [`crate::ModelSpec::BertCheckpoint`]), its activation the config's `hidden_act`.
pub fn checkpoint_shape_of(
    model: &BertWeights,
    head: &SequenceClassificationHead,
) -> crate::Result<BertShape> {
    shape_with_classes(model, head.classifier.weight.rows)
}

/// The shape, head and ring layers of `model` ending in `head`, as a pool or a benchmark
/// deploys it.
pub fn deployable(
    model: &BertWeights,
    head: &ExpertHead,
) -> crate::Result<(BertShape, BertHead, Vec<RingLayer>)> {
    Ok(match head {
        ExpertHead::Fitted(h) => (
            shape_of(model, h)?,
            BertHead::MeanPooled,
            ring_layers(model, h)?,
        ),
        ExpertHead::Checkpoint(h) => (
            checkpoint_shape_of(model, h)?,
            BertHead::Checkpoint,
            checkpoint_ring_layers(model, h)?,
        ),
    })
}

fn shape_with_classes(model: &BertWeights, classes: usize) -> crate::Result<BertShape> {
    let c = &model.config;
    Ok(BertShape {
        layers: model.layers.len(),
        hidden: c.hidden_size,
        heads: c.num_attention_heads,
        ffn: c.intermediate_size,
        classes,
        activation: c.activation()?.into(),
        relative_buckets: relative_bias(model)?.map_or(0, |b| b.table().rows),
    })
}

/// Every role's part of a deployed model (see `securerouter_core::gate::share_weights`).
pub struct SharedModel {
    /// The dealer's part: the weight masks alone.
    pub dealer: Vec<DealerWeights>,
    /// P0's and P1's parts: masked weights and shares.
    pub servers: [Vec<ServerWeights>; 2],
}

/// Deploys ring layers (layer i's masks from `seed` derived for i; `seed` must be secret and
/// fresh per deployment).
pub fn share_layers(layers: &[RingLayer], seed: &Seed) -> crate::Result<SharedModel> {
    let mut m = SharedModel {
        dealer: Vec::new(),
        servers: [Vec::new(), Vec::new()],
    };
    for (i, l) in layers.iter().enumerate() {
        let (d, s0, s1) = share_layer(i, l, seed)?;
        m.dealer.push(d);
        m.servers[0].push(s0);
        m.servers[1].push(s1);
    }
    Ok(m)
}

/// Layer `i` of [`share_layers`] alone (the dealer's part, P0's, P1's), so that a large model
/// can be deployed one layer at a time.
pub fn share_layer(
    i: usize,
    l: &RingLayer,
    seed: &Seed,
) -> crate::Result<(DealerWeights, ServerWeights, ServerWeights)> {
    let id = u32::try_from(i).map_err(|source| crate::Error::TooMany {
        what: "layers",
        source,
    })?;
    Ok(gate::share_weights(
        id,
        &l.w,
        &l.bias,
        (l.k, l.n),
        &seed.derive(Domain::WEIGHTS, i as u64),
    )?)
}

/// The client's input rows for `n` real tokens of `embedded` (rows of `hidden`), padded to
/// `seq_len` tokens: embedding, attention bias, pooling weight.
pub fn client_input(embedded: &[f64], hidden: usize, seq_len: usize) -> crate::Result<Vec<f64>> {
    let n = embedded.len() / hidden.max(1);
    if n == 0 || n * hidden != embedded.len() || n > seq_len {
        invalid!("{n} embedded tokens do not fit a sequence of {seq_len}");
    }
    let mut x = Vec::with_capacity(seq_len * (hidden + 2));
    for t in 0..seq_len {
        if t < n {
            x.extend_from_slice(&embedded[t * hidden..(t + 1) * hidden]);
            x.extend([0.0, 1.0 / n as f64]);
        } else {
            x.extend(std::iter::repeat_n(0.0, hidden));
            x.extend([PAD_BIAS, 0.0]);
        }
    }
    Ok(x)
}
