//! The BERT encoder graph in candle (f32, batched), the same graph as the f64 reference in
//! [`securerouter_ml::reference`]: padded keys get a large negative attention bias and pooling
//! averages real tokens only, so a padded batch computes what the reference computes on each
//! sentence alone. Built from differentiable primitives (no fused kernels without a backward
//! pass), so the same code fine-tunes a layer and computes frozen features.

use crate::error::{Error, Result, invalid};
use candle_core::{D, DType, Device, Tensor, Var};
use securerouter_ml::config::Activation;
use securerouter_ml::mpnet::RelativeAttentionBias;
use securerouter_ml::{BertConfig, EncoderLayer, LayerNorm, Linear, Matrix};

/// Attention bias of padded keys: exp(-1e4) is 0 in f32, like the secure circuit's pad bias.
const PAD_KEY_BIAS: f32 = -1e4;

/// A batch of embedded sentences, padded to the longest.
pub struct Batch {
    /// Token rows, [batch, tokens, hidden].
    pub x: Tensor,
    /// Attention bias per key, [batch, 1, 1, tokens]: 0 for real tokens, very negative for pads.
    pub key_bias: Tensor,
    /// Pooling weight per token, [batch, tokens]: 1/n for the n real tokens, 0 for pads.
    pub pool: Tensor,
}

impl Batch {
    /// Pads `rows` (each sentence's tokens × `hidden`, row-major) into one batch.
    pub fn new(rows: &[&[f32]], hidden: usize, device: &Device) -> Result<Self> {
        let lens: Vec<usize> = rows.iter().map(|r| r.len() / hidden.max(1)).collect();
        if rows.is_empty()
            || rows
                .iter()
                .zip(&lens)
                .any(|(r, &n)| n == 0 || n * hidden != r.len())
        {
            invalid!("a batch needs sentences of at least one token of width {hidden}");
        }
        let t = *lens.iter().max().unwrap_or(&1);
        let b = rows.len();
        let mut x = vec![0f32; b * t * hidden];
        let mut bias = vec![PAD_KEY_BIAS; b * t];
        let mut pool = vec![0f32; b * t];
        for (i, (r, &n)) in rows.iter().zip(&lens).enumerate() {
            x[i * t * hidden..i * t * hidden + r.len()].copy_from_slice(r);
            bias[i * t..i * t + n].fill(0.0);
            pool[i * t..i * t + n].fill(1.0 / n as f32);
        }
        Ok(Batch {
            x: Tensor::from_vec(x, (b, t, hidden), device)?,
            key_bias: Tensor::from_vec(bias, (b, 1, 1, t), device)?,
            pool: Tensor::from_vec(pool, (b, t), device)?,
        })
    }

    /// Mean of the real tokens of `hidden` ([batch, tokens, width]), [batch, width].
    pub fn mean_pool(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.broadcast_mul(&self.pool.unsqueeze(2)?)?.sum(1)?)
    }

    /// Each sentence's real rows of `hidden` ([batch, tokens, width]), row-major.
    pub fn unpad(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        let (_, _, width) = hidden.dims3()?;
        let rows = hidden.to_vec3::<f32>()?;
        let weights = self.pool.to_vec2::<f32>()?;
        Ok(rows
            .into_iter()
            .zip(weights)
            .map(|(r, w)| {
                let n = w.iter().filter(|&&v| v > 0.0).count();
                let mut out = Vec::with_capacity(n * width);
                r.iter().take(n).for_each(|row| out.extend_from_slice(row));
                out
            })
            .collect())
    }
}

/// Runs `layers` over `batch`: each token attends to the real tokens of its own sentence, with
/// the model's relative-attention bias (MPNet's; `None` for BERT) added to every layer's
/// scores, as the reference adds it.
pub fn run_layers(
    layers: &[CandleLayer],
    batch: &Batch,
    relative: Option<&RelativeAttentionBias>,
) -> Result<Tensor> {
    let mut h = batch.x.clone();
    if layers.is_empty() {
        return Ok(h);
    }
    let bias = match relative {
        None => batch.key_bias.clone(),
        Some(r) => {
            let (_, t, _) = h.dims3()?;
            let values: Vec<f32> = r.scores_bias(t).iter().map(|&v| v as f32).collect();
            Tensor::from_vec(values, (1, r.heads(), t, t), h.device())?
                .broadcast_add(&batch.key_bias)?
        }
    };
    for l in layers {
        h = l.forward(&h, &bias)?;
    }
    Ok(h)
}

/// y = x·Wᵀ + b on candle variables.
pub struct CandleLinear {
    weight: Var,
    bias: Var,
}

impl CandleLinear {
    /// A trainable copy of `l`.
    pub fn from_linear(l: &Linear, device: &Device) -> Result<Self> {
        Ok(CandleLinear {
            weight: var(&l.weight.data, (l.weight.rows, l.weight.cols), device)?,
            bias: var(&l.bias, l.bias.len(), device)?,
        })
    }

    /// Zero weights: a fresh classifier head (softmax regression starts from zero).
    pub fn zeros(out: usize, inp: usize, device: &Device) -> Result<Self> {
        Ok(CandleLinear {
            weight: Var::zeros((out, inp), DType::F32, device)?,
            bias: Var::zeros(out, DType::F32, device)?,
        })
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.as_tensor();
        let y = match x.rank() {
            2 => x.matmul(&w.t()?)?,
            _ => x.broadcast_matmul(&w.t()?)?,
        };
        Ok(y.broadcast_add(self.bias.as_tensor())?)
    }

    /// The layer back in f64 (what the MPC circuit and the reference use).
    pub fn to_linear(&self) -> Result<Linear> {
        let (rows, cols) = self.weight.dims2()?;
        Ok(Linear {
            weight: Matrix::new(rows, cols, to_f64(self.weight.as_tensor())?),
            bias: to_f64(self.bias.as_tensor())?,
        })
    }

    /// Its trainable variables.
    pub fn vars(&self) -> [Var; 2] {
        [self.weight.clone(), self.bias.clone()]
    }
}

/// LayerNorm over the last dimension, from primitive operations (differentiable).
struct CandleLayerNorm {
    gamma: Var,
    beta: Var,
    eps: f64,
}

impl CandleLayerNorm {
    fn from_norm(n: &LayerNorm, device: &Device) -> Result<Self> {
        Ok(CandleLayerNorm {
            gamma: var(&n.gamma, n.gamma.len(), device)?,
            beta: var(&n.beta, n.beta.len(), device)?,
            eps: n.eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(self.gamma.as_tensor())?
            .broadcast_add(self.beta.as_tensor())?)
    }

    fn to_norm(&self) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: to_f64(self.gamma.as_tensor())?,
            beta: to_f64(self.beta.as_tensor())?,
            eps: self.eps,
        })
    }

    fn vars(&self) -> [Var; 2] {
        [self.gamma.clone(), self.beta.clone()]
    }
}

/// One encoder layer as candle variables.
pub struct CandleLayer {
    heads: usize,
    activation: Activation,
    query: CandleLinear,
    key: CandleLinear,
    value: CandleLinear,
    attention_out: CandleLinear,
    attention_norm: CandleLayerNorm,
    ffn_in: CandleLinear,
    ffn_out: CandleLinear,
    ffn_norm: CandleLayerNorm,
}

impl CandleLayer {
    /// A copy of `layer` of a model of `config` (its heads and activation).
    pub fn from_layer(layer: &EncoderLayer, config: &BertConfig, device: &Device) -> Result<Self> {
        let heads = config.num_attention_heads;
        let hidden = layer.query.weight.rows;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            invalid!("hidden size {hidden} does not split into {heads} heads");
        }
        let lin = |l: &Linear| CandleLinear::from_linear(l, device);
        Ok(CandleLayer {
            heads,
            activation: config.activation()?,
            query: lin(&layer.query)?,
            key: lin(&layer.key)?,
            value: lin(&layer.value)?,
            attention_out: lin(&layer.attention_out)?,
            attention_norm: CandleLayerNorm::from_norm(&layer.attention_norm, device)?,
            ffn_in: lin(&layer.ffn_in)?,
            ffn_out: lin(&layer.ffn_out)?,
            ffn_norm: CandleLayerNorm::from_norm(&layer.ffn_norm, device)?,
        })
    }

    /// The layer on `x` ([batch, tokens, hidden]) with `bias` added to the attention scores:
    /// per key ([batch, 1, 1, tokens]) or per head, query and key ([batch, heads, tokens,
    /// tokens]).
    pub fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let d = h / self.heads;
        let split = |y: Tensor| -> Result<Tensor> {
            Ok(y.reshape((b, t, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores =
            (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let attn = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let inner = activate(self.activation, &self.ffn_in.forward(&attn)?)?;
        self.ffn_norm
            .forward(&(self.ffn_out.forward(&inner)? + &attn)?)
    }

    /// The layer back in f64.
    pub fn to_layer(&self) -> Result<EncoderLayer> {
        Ok(EncoderLayer {
            query: self.query.to_linear()?,
            key: self.key.to_linear()?,
            value: self.value.to_linear()?,
            attention_out: self.attention_out.to_linear()?,
            attention_norm: self.attention_norm.to_norm()?,
            ffn_in: self.ffn_in.to_linear()?,
            ffn_out: self.ffn_out.to_linear()?,
            ffn_norm: self.ffn_norm.to_norm()?,
        })
    }

    /// Every trainable variable.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = Vec::with_capacity(16);
        for l in [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_out,
            &self.ffn_in,
            &self.ffn_out,
        ] {
            v.extend(l.vars());
        }
        v.extend(self.attention_norm.vars());
        v.extend(self.ffn_norm.vars());
        v
    }
}

/// The feed-forward activation as the reference computes it: candle's `gelu` is the tanh
/// approximation, `gelu_erf` the exact one.
fn activate(activation: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
    })
}

fn var(data: &[f64], shape: impl Into<candle_core::Shape>, device: &Device) -> Result<Var> {
    let values: Vec<f32> = data.iter().map(|&v| v as f32).collect();
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?).map_err(Error::CandleVariable)
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{embed, tiny};

    /// For both activations (the reference computes each as transformers does).
    #[test]
    fn a_padded_batch_computes_the_reference_of_each_sentence() {
        for act in ["gelu", "gelu_new"] {
            let mut model = tiny(2, 7);
            model.config.hidden_act = act.into();
            padded_batch_matches_reference(&model);
        }
    }

    fn candle_layers(model: &securerouter_ml::BertWeights) -> Vec<CandleLayer> {
        let dev = Device::Cpu;
        model
            .layers
            .iter()
            .map(|l| CandleLayer::from_layer(l, &model.config, &dev).unwrap())
            .collect()
    }

    fn padded_batch_matches_reference(model: &securerouter_ml::BertWeights) {
        let dev = Device::Cpu;
        let layers = candle_layers(model);
        let sentences: [&[u32]; 3] = [&[2, 9, 17, 3], &[2, 5, 3], &[2, 30, 31, 32, 33, 3]];
        let embedded: Vec<Vec<f32>> = sentences.iter().map(|ids| embed(model, ids)).collect();
        let rows: Vec<&[f32]> = embedded.iter().map(Vec::as_slice).collect();
        let batch = Batch::new(&rows, 16, &dev).unwrap();
        let mut h = batch.x.clone();
        for l in &layers {
            h = l.forward(&h, &batch.key_bias).unwrap();
        }
        let pooled = batch.mean_pool(&h).unwrap().to_vec2::<f32>().unwrap();
        let unpadded = batch.unpad(&h).unwrap();
        for (i, ids) in sentences.iter().enumerate() {
            let want = model.forward(ids, &vec![0; ids.len()]).unwrap();
            assert_eq!(unpadded[i].len(), want.data.len());
            let err = want
                .data
                .iter()
                .zip(&unpadded[i])
                .map(|(a, &b)| (a - b as f64).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-4, "sentence {i}: hidden states differ by {err}");
            let pool = securerouter_ml::mean_pool(&want);
            let err = pool
                .iter()
                .zip(&pooled[i])
                .map(|(a, &b)| (a - b as f64).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-4, "sentence {i}: pooled features differ by {err}");
        }
    }

    /// Each activation is the reference's own, to f32 precision (2e-6), where the two differ by
    /// up to 4.7e-4 (at 2.7).
    #[test]
    fn activations_are_the_references() {
        use securerouter_ml::reference::{gelu, gelu_tanh};
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 / 10.0).collect();
        let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        for (act, f) in [
            (Activation::Gelu, gelu as fn(f64) -> f64),
            (Activation::GeluTanh, gelu_tanh),
        ] {
            let got = activate(act, &t).unwrap().to_vec1::<f32>().unwrap();
            for (x, y) in xs.iter().zip(got) {
                let want = f(f64::from(*x));
                assert!(
                    (want - f64::from(y)).abs() < 2e-6,
                    "{act:?}({x}) = {y}, not {want}"
                );
            }
        }
        assert!((gelu(2.7) - gelu_tanh(2.7)).abs() > 4e-4);
    }

    /// MPNet: a padded batch of the tiny transformers-saved fixture (its relative-attention
    /// bias drawn wide, so leaving it out shows) computes the f64 reference of each sentence.
    #[test]
    fn a_padded_mpnet_batch_computes_the_reference_with_its_relative_bias() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ml/tests/fixtures/mpnet/tiny");
        let model = &securerouter_ml::BertWeights::load(&dir, None).unwrap();
        let relative = model
            .relative_attention_bias
            .as_ref()
            .expect("MPNet's bias");
        let dev = Device::Cpu;
        let layers = candle_layers(model);
        let sentences: Vec<Vec<u32>> = vec![
            vec![0, 9, 17, 2],
            (0..40).map(|i| 5 + i % 90).collect(),
            vec![0, 30, 31, 32, 33, 2],
        ];
        let embedded: Vec<Vec<f32>> = sentences.iter().map(|ids| embed(model, ids)).collect();
        let rows: Vec<&[f32]> = embedded.iter().map(Vec::as_slice).collect();
        let batch = Batch::new(&rows, model.config.hidden_size, &dev).unwrap();
        let with = batch.unpad(&run_layers(&layers, &batch, Some(relative)).unwrap());
        let without = batch.unpad(&run_layers(&layers, &batch, None).unwrap());
        for (i, ids) in sentences.iter().enumerate() {
            let want = model.forward(ids, &vec![0; ids.len()]).unwrap();
            let diff = |got: &[f32]| {
                want.data
                    .iter()
                    .zip(got)
                    .map(|(a, &b)| (a - f64::from(b)).abs())
                    .fold(0.0, f64::max)
            };
            let (err, off) = (
                diff(&with.as_ref().unwrap()[i]),
                diff(&without.as_ref().unwrap()[i]),
            );
            assert!(err < 1e-4, "sentence {i}: hidden states differ by {err}");
            assert!(off > 0.1, "sentence {i}: without the bias only {off} off");
        }
    }

    #[test]
    fn layers_round_trip_to_f64() {
        let model = tiny(2, 7);
        let l = CandleLayer::from_layer(&model.layers[1], &model.config, &Device::Cpu).unwrap();
        let back = l.to_layer().unwrap();
        let err = back
            .ffn_in
            .weight
            .max_abs_diff(&model.layers[1].ffn_in.weight);
        assert!(err < 1e-7, "{err}");
        assert_eq!(l.vars().len(), 16);
        let mut five_heads = model.config.clone();
        five_heads.num_attention_heads = 5;
        assert!(CandleLayer::from_layer(&model.layers[0], &five_heads, &Device::Cpu).is_err());
    }

    #[test]
    fn empty_or_ragged_batches_are_errors() {
        let dev = Device::Cpu;
        assert!(Batch::new(&[], 4, &dev).is_err());
        assert!(Batch::new(&[&[1.0, 2.0, 3.0]], 4, &dev).is_err());
        assert!(Batch::new(&[&[]], 4, &dev).is_err());
    }
}
