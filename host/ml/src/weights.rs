//! BERT and MPNet weights from a Hugging Face checkpoint folder ([`crate::checkpoint`]),
//! converted to f64, each tensor checked against the config's shape. A model can be cut to its
//! first k layers at load time (small experts are cut from bigger pretrained models).

use super::config::{BertConfig, ModelKind};
use super::matrix::Matrix;
use crate::checkpoint::{CheckpointFiles, NamedTensor, TensorFile, write_f32_safetensors};
use crate::classification::SequenceClassificationHead;
use crate::error::{Error, Result, invalid};
use crate::mpnet::{self, RelativeAttentionBias};
use std::path::Path;

/// y = x·Wᵀ + b with W stored as Hugging Face does, [out, in].
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weights, out × in.
    pub weight: Matrix,
    /// Bias, one per output.
    pub bias: Vec<f64>,
}

/// LayerNorm with learned scale and shift.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale γ.
    pub gamma: Vec<f64>,
    /// Shift β.
    pub beta: Vec<f64>,
    /// ε.
    pub eps: f64,
}

/// Which row of the position table each token takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// BERT: the token's index, 0, 1, 2, ….
    FromZero,
    /// MPNet: `padding_idx` for a token of that id, else `padding_idx` plus the count of other
    /// tokens so far, this one included ([`crate::mpnet::position_ids`]).
    AfterPadding {
        /// The padding token's id.
        padding_idx: u32,
    },
}

impl Positions {
    /// The positions of a model family.
    pub fn of(kind: ModelKind) -> Self {
        match kind {
            ModelKind::Bert => Positions::FromZero,
            ModelKind::MPNet => Positions::AfterPadding {
                padding_idx: mpnet::PADDING_IDX,
            },
        }
    }
}

/// Token, position and token-type embeddings with their LayerNorm: the part the client
/// computes itself from its bundle.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// Word embeddings, vocab × hidden.
    pub word: Matrix,
    /// Position embeddings, max positions × hidden.
    pub position: Matrix,
    /// Token-type embeddings, types × hidden (MPNet: one row of zeros).
    pub token_type: Matrix,
    /// LayerNorm over the sum.
    pub norm: LayerNorm,
    /// How tokens are given their position rows.
    pub positions: Positions,
}

/// One encoder layer.
#[derive(Clone, Debug)]
pub struct EncoderLayer {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Attention output projection.
    pub attention_out: Linear,
    /// LayerNorm after attention (with the residual).
    pub attention_norm: LayerNorm,
    /// Feed-forward up-projection.
    pub ffn_in: Linear,
    /// Feed-forward down-projection.
    pub ffn_out: Linear,
    /// LayerNorm after the feed-forward block (with the residual).
    pub ffn_norm: LayerNorm,
}

/// A whole BERT or MPNet encoder ([`BertConfig::kind`] says which).
#[derive(Clone, Debug)]
pub struct BertWeights {
    /// The config, with `num_hidden_layers` set to the layers actually loaded.
    pub config: BertConfig,
    /// Embeddings.
    pub embeddings: Embeddings,
    /// Encoder layers.
    pub layers: Vec<EncoderLayer>,
    /// MPNet's relative-attention bias, shared by every layer; `None` for BERT.
    pub relative_attention_bias: Option<RelativeAttentionBias>,
}

/// The checkpoint names of layer `index`'s parts, in [`EncoderLayer`]'s field order: four
/// linear layers of attention, its LayerNorm, two feed-forward linears, their LayerNorm.
fn layer_part_names(kind: ModelKind, index: usize) -> [String; 8] {
    if kind == ModelKind::MPNet {
        return mpnet::layer_part_names(index);
    }
    let p = format!("encoder.layer.{index}");
    [
        format!("{p}.attention.self.query"),
        format!("{p}.attention.self.key"),
        format!("{p}.attention.self.value"),
        format!("{p}.attention.output.dense"),
        format!("{p}.attention.output.LayerNorm"),
        format!("{p}.intermediate.dense"),
        format!("{p}.output.dense"),
        format!("{p}.output.LayerNorm"),
    ]
}

impl TensorFile<'_, '_> {
    fn layer(&self, index: usize, config: &BertConfig) -> Result<EncoderLayer> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let [q, k, v, ao, an, fi, fo, fnorm] = layer_part_names(config.kind()?, index);
        Ok(EncoderLayer {
            query: self.linear(&q, h, h)?,
            key: self.linear(&k, h, h)?,
            value: self.linear(&v, h, h)?,
            attention_out: self.linear(&ao, h, h)?,
            attention_norm: self.norm(&an, h, eps)?,
            ffn_in: self.linear(&fi, i, h)?,
            ffn_out: self.linear(&fo, h, i)?,
            ffn_norm: self.norm(&fnorm, h, eps)?,
        })
    }
}

impl EncoderLayer {
    /// The layer's tensors under the checkpoint names of layer `index`: (name, shape, values).
    pub(crate) fn named_tensors(&self, kind: ModelKind, index: usize) -> Vec<NamedTensor<'_>> {
        let names = layer_part_names(kind, index);
        let mut tensors = Vec::with_capacity(16);
        for (name, l) in [
            (&names[0], &self.query),
            (&names[1], &self.key),
            (&names[2], &self.value),
            (&names[3], &self.attention_out),
            (&names[5], &self.ffn_in),
            (&names[6], &self.ffn_out),
        ] {
            tensors.push((
                format!("{name}.weight"),
                vec![l.weight.rows, l.weight.cols],
                l.weight.data.as_slice(),
            ));
            tensors.push((
                format!("{name}.bias"),
                vec![l.bias.len()],
                l.bias.as_slice(),
            ));
        }
        for (name, n) in [
            (&names[4], &self.attention_norm),
            (&names[7], &self.ffn_norm),
        ] {
            tensors.push((
                format!("{name}.weight"),
                vec![n.gamma.len()],
                n.gamma.as_slice(),
            ));
            tensors.push((
                format!("{name}.bias"),
                vec![n.beta.len()],
                n.beta.as_slice(),
            ));
        }
        tensors
    }
}

impl BertWeights {
    /// Writes the top `count` encoder layers as a safetensors file (f32) under their
    /// checkpoint names, so that [`BertWeights::load_top_layers`] or any BERT loader can read
    /// them. Fine-tuned experts store only the layers they changed.
    pub fn save_top_layers(&self, count: usize, path: &Path) -> Result<()> {
        let first = self.top_layers(count)?;
        let kind = self.config.kind()?;
        let tensors: Vec<_> = self.layers[first..]
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_tensors(kind, first + i))
            .collect();
        write_f32_safetensors(path, &tensors)
    }

    /// The index of the first of the top `count` layers.
    fn top_layers(&self, count: usize) -> Result<usize> {
        self.layers.len().checked_sub(count).ok_or_else(|| {
            Error::Invalid(format!(
                "the model has {} layers, not {count}",
                self.layers.len()
            ))
        })
    }

    /// Replaces the top `count` encoder layers with those in a safetensors file (a whole
    /// checkpoint or one written by [`BertWeights::save_top_layers`]), every tensor checked.
    pub fn load_top_layers(&mut self, count: usize, path: &Path) -> Result<()> {
        let first = self.top_layers(count)?;
        let files = CheckpointFiles::single(path)?;
        let tensors = files.tensors()?;
        let f = TensorFile {
            tensors: &tensors,
            prefix: "",
        };
        for i in first..self.layers.len() {
            self.layers[i] = f.layer(i, &self.config)?;
        }
        Ok(())
    }
}

impl BertWeights {
    /// Loads `config.json` and the safetensors weights (one file or shards) from `dir`,
    /// keeping the first `layers` encoder layers (all when `None`). Task heads in the
    /// checkpoint are ignored. BERT and MPNet checkpoints are read, each under its own tensor
    /// names.
    pub fn load(dir: &Path, layers: Option<usize>) -> Result<Self> {
        Ok(Self::load_parts(dir, layers, false)?.0)
    }

    /// [`BertWeights::load`], and the checkpoint's sequence-classification head (pooler and
    /// classifier, as `BertForSequenceClassification` saves them; MPNet's `classifier.dense`
    /// and `classifier.out_proj`) when it has one.
    pub fn load_with_head(
        dir: &Path,
        layers: Option<usize>,
    ) -> Result<(Self, Option<SequenceClassificationHead>)> {
        Self::load_parts(dir, layers, true)
    }

    fn load_parts(
        dir: &Path,
        layers: Option<usize>,
        with_head: bool,
    ) -> Result<(Self, Option<SequenceClassificationHead>)> {
        let config_path = dir.join("config.json");
        let mut config = BertConfig::load(&config_path)?;
        let keep = layers.unwrap_or(config.num_hidden_layers);
        if keep == 0 || keep > config.num_hidden_layers {
            invalid!(
                "cannot keep {keep} layers of a model with {}",
                config.num_hidden_layers
            );
        }
        config.num_hidden_layers = keep;
        let kind = config.kind()?;
        let files = CheckpointFiles::open(dir)?;
        let tensors = files.tensors()?;
        // Task models (`BertFor…`, `MPNetFor…`) keep the encoder under `bert.` or `mpnet.`; a
        // bare `BertModel` or `MPNetModel` does not.
        let task_prefix = match kind {
            ModelKind::Bert => "bert.",
            ModelKind::MPNet => "mpnet.",
        };
        let prefix = if tensors.contains(&format!("{task_prefix}embeddings.word_embeddings.weight"))
        {
            task_prefix
        } else {
            ""
        };
        let f = TensorFile {
            tensors: &tensors,
            prefix,
        };
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let word = f.matrix("embeddings.word_embeddings.weight", config.vocab_size, h)?;
        let position = f.matrix(
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings,
            h,
        )?;
        // BERT's token-type table; MPNet has none (one row of zeros adds nothing).
        let token_type = match kind {
            ModelKind::Bert => f.matrix(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
                h,
            )?,
            ModelKind::MPNet => Matrix::new(1, h, vec![0.0; h]),
        };
        let embeddings = Embeddings {
            word,
            position,
            token_type,
            norm: f.norm("embeddings.LayerNorm", h, eps)?,
            positions: Positions::of(kind),
        };
        let relative_attention_bias = match kind {
            ModelKind::Bert => None,
            ModelKind::MPNet => Some(RelativeAttentionBias::new(f.matrix(
                mpnet::BIAS_TENSOR,
                mpnet::NUM_BUCKETS,
                config.num_attention_heads,
            )?)?),
        };
        let layers = (0..keep)
            .map(|l| f.layer(l, &config))
            .collect::<Result<_>>()?;
        let head = if with_head {
            SequenceClassificationHead::read(f, &config, &config_path)?
        } else {
            None
        };
        let model = BertWeights {
            config,
            embeddings,
            layers,
            relative_attention_bias,
        };
        Ok((model, head))
    }
}

/// Draws uniform values centre ± a.
fn draw(rng: &mut securerouter_core::prg::AesCtr, n: usize, centre: f64, a: f64) -> Vec<f64> {
    (0..n)
        .map(|_| centre + ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * a)
        .collect()
}

impl BertWeights {
    /// Random weights of the given config (for benchmarks of a shape without a checkpoint):
    /// weights uniform with BERT's initialisation spread (std 0.02), LayerNorm γ near 1, small
    /// biases and β, so activations stay in the ranges of a trained model. An MPNet config
    /// gets MPNet's embeddings (no token types) and a random relative-attention bias (±1).
    pub fn random(config: BertConfig, seed: &securerouter_core::prg::Seed) -> Result<Self> {
        config.validate()?;
        let rng =
            &mut securerouter_core::prg::AesCtr::new(seed, securerouter_core::prg::Domain(11));
        // Uniform on ±a has std a/√3: a = 0.02·√3 gives BERT's 0.02.
        let a = 0.02 * 3f64.sqrt();
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let matrix = |rng: &mut _, r: usize, c: usize| Matrix::new(r, c, draw(rng, r * c, 0.0, a));
        let linear = |rng: &mut _, out: usize, inp: usize| Linear {
            weight: matrix(rng, out, inp),
            bias: draw(rng, out, 0.0, 0.02),
        };
        let norm = |rng: &mut _| LayerNorm {
            gamma: draw(rng, h, 1.0, 0.1),
            beta: draw(rng, h, 0.0, 0.05),
            eps: config.layer_norm_eps,
        };
        let kind = config.kind()?;
        let embeddings = Embeddings {
            word: matrix(rng, config.vocab_size, h),
            position: matrix(rng, config.max_position_embeddings, h),
            token_type: match kind {
                ModelKind::Bert => matrix(rng, config.type_vocab_size, h),
                ModelKind::MPNet => Matrix::new(1, h, vec![0.0; h]),
            },
            norm: norm(rng),
            positions: Positions::of(kind),
        };
        let layers = (0..config.num_hidden_layers)
            .map(|_| EncoderLayer {
                query: linear(rng, h, h),
                key: linear(rng, h, h),
                value: linear(rng, h, h),
                attention_out: linear(rng, h, h),
                attention_norm: norm(rng),
                ffn_in: linear(rng, f, h),
                ffn_out: linear(rng, h, f),
                ffn_norm: norm(rng),
            })
            .collect();
        let relative_attention_bias = match kind {
            ModelKind::Bert => None,
            ModelKind::MPNet => {
                let heads = config.num_attention_heads;
                let table = Matrix::new(
                    mpnet::NUM_BUCKETS,
                    heads,
                    draw(rng, mpnet::NUM_BUCKETS * heads, 0.0, 1.0),
                );
                Some(RelativeAttentionBias::new(table)?)
            }
        };
        Ok(BertWeights {
            config,
            embeddings,
            layers,
            relative_attention_bias,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_top_layers_load_back_and_errors_name_the_problem() {
        let config = BertConfig {
            vocab_size: 20,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            hidden_act: "gelu".into(),
            max_position_embeddings: 8,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: "bert".into(),
            architectures: Vec::new(),
            position_embedding_type: "absolute".into(),
        };
        let model = BertWeights::random(
            config.clone(),
            &securerouter_core::prg::Seed::from_bytes([5; 16]),
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("layer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("layer.safetensors");
        model.save_top_layers(1, &path).unwrap();
        let mut back = model.clone();
        back.layers[1] = back.layers[0].clone();
        back.load_top_layers(1, &path).unwrap();
        // Stored as f32: equal to f32 precision; the layer below is untouched.
        let diff = |a: &Linear, b: &Linear| a.weight.max_abs_diff(&b.weight);
        assert!(diff(&back.layers[1].query, &model.layers[1].query) < 1e-7);
        assert!(diff(&back.layers[1].ffn_out, &model.layers[1].ffn_out) < 1e-7);
        assert_eq!(back.layers[0].query.weight, model.layers[0].query.weight);
        assert!(model.save_top_layers(3, &path).is_err());
        // The file holds layer 1 only: asking for two layers names the missing tensor.
        let e = format!("{:#}", back.load_top_layers(2, &path).unwrap_err());
        assert!(
            e.contains("encoder.layer.0.attention.self.query.weight is missing"),
            "{e}"
        );
        let mut wide = model.clone();
        wide.config.hidden_size = 16;
        let e = format!("{:#}", wide.load_top_layers(1, &path).unwrap_err());
        assert!(e.contains("shape"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
