//! The plaintext f64 reference of the BERT encoder: the exact graph the servers evaluate
//! under MPC (embeddings and their LayerNorm on the client; per layer: Q, K, V projections,
//! per-head softmax(QKᵀ/√d)·V, output projection, residual and LayerNorm, GeLU feed-forward,
//! residual and LayerNorm), with exact non-linearities. Secure results are measured against it.
//! The feed-forward activation follows the checkpoint's `hidden_act` (exact or tanh GeLU).
//!
//! MPNet is the same graph with its own embeddings (word + position, positions counted after
//! the padding id) and its relative-attention bias added to every layer's scores,
//! softmax(QKᵀ/√d + B)·V, as Hugging Face's `MPNetModel` computes it ([`crate::mpnet`]).

use super::config::Activation;
use super::matrix::Matrix;
use super::weights::{BertWeights, Embeddings, LayerNorm, Linear, Positions};
use crate::Result;
use crate::error::invalid;

/// Σ a_i·b_i over eight running sums: independent sums let the compiler use SIMD lanes (one
/// serial f64 sum cannot be reordered), several times faster on model-sized rows.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

impl Linear {
    /// x·Wᵀ + b for every row of x.
    pub fn apply(&self, x: &Matrix) -> Matrix {
        let out = self.weight.rows;
        let mut y = Vec::with_capacity(x.rows * out);
        for i in 0..x.rows {
            let xi = x.row(i);
            for o in 0..out {
                y.push(dot(xi, self.weight.row(o)) + self.bias[o]);
            }
        }
        Matrix::new(x.rows, out, y)
    }
}

impl LayerNorm {
    /// Normalises every row to mean 0, variance 1, then scales and shifts.
    pub fn apply(&self, x: &mut Matrix) {
        for i in 0..x.rows {
            let row = x.row_mut(i);
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * inv * self.gamma[j] + self.beta[j];
            }
        }
    }
}

impl Embeddings {
    /// LayerNorm(word + position + token type) for each token: what the client computes
    /// from its bundle before sharing. MPNet's token-type table is zeros, and its positions
    /// are counted after the padding id ([`Positions`]).
    pub fn embed(&self, ids: &[u32], type_ids: &[u32]) -> Result<Matrix> {
        let max_len = self.max_tokens();
        // MPNet's `<pad>` tokens take no position of their own: its position ids are checked
        // one by one below.
        let too_long = self.positions == Positions::FromZero && ids.len() > max_len;
        if ids.is_empty() || too_long || ids.len() != type_ids.len() {
            invalid!(
                "{} tokens with {} type ids; the model takes 1..={max_len} tokens",
                ids.len(),
                type_ids.len(),
            );
        }
        let positions = match self.positions {
            Positions::FromZero => (0..ids.len()).collect(),
            Positions::AfterPadding { padding_idx } => crate::mpnet::position_ids(ids, padding_idx),
        };
        let h = self.word.cols;
        let mut x = Matrix::new(ids.len(), h, vec![0.0; ids.len() * h]);
        for (p, ((&id, &t), &position)) in ids.iter().zip(type_ids).zip(&positions).enumerate() {
            if id as usize >= self.word.rows || t as usize >= self.token_type.rows {
                invalid!("token {id} / type {t} at position {p} is outside the vocabulary");
            }
            if position >= self.position.rows {
                invalid!(
                    "token {id} at position {p} takes position id {position}, beyond the {} \
                     position embeddings (at most {max_len} tokens other than padding)",
                    self.position.rows
                );
            }
            let (w, pos, ty) = (
                self.word.row(id as usize),
                self.position.row(position),
                self.token_type.row(t as usize),
            );
            for (j, v) in x.row_mut(p).iter_mut().enumerate() {
                *v = w[j] + pos[j] + ty[j];
            }
        }
        self.norm.apply(&mut x);
        Ok(x)
    }

    /// The longest sequence the position table takes: one per row for BERT; for MPNet the
    /// rows after the padding id (512 of all-mpnet-base-v2's 514), a sequence without
    /// `<pad>` tokens.
    pub fn max_tokens(&self) -> usize {
        match self.positions {
            Positions::FromZero => self.position.rows,
            Positions::AfterPadding { padding_idx } => {
                self.position.rows.saturating_sub(padding_idx as usize + 1)
            }
        }
    }
}

/// GeLU as BERT defines it: x·Φ(x) with the exact normal CDF.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// GeLU's tanh approximation, Hugging Face's "gelu_new" (GPT-2's and some BERT variants'):
/// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
pub fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
}

impl BertWeights {
    /// The feed-forward activation of the config. A loaded or random model's config has been
    /// validated; one altered since to an unknown activation is computed with exact GeLU.
    fn activation(&self) -> fn(f64) -> f64 {
        match self.config.activation() {
            Ok(Activation::GeluTanh) => gelu_tanh,
            Ok(Activation::Gelu) | Err(_) => gelu,
        }
    }

    /// The client's part: LayerNorm(word + position + token type) for each token.
    pub fn embed(&self, ids: &[u32], type_ids: &[u32]) -> Result<Matrix> {
        self.embeddings.embed(ids, type_ids)
    }

    /// The servers' part: every encoder layer on the embedded tokens. MPNet's
    /// relative-attention bias is computed once and added to every layer's scores after the
    /// 1/√d scaling, before the softmax.
    pub fn encode(&self, mut x: Matrix) -> Matrix {
        let heads = self.config.num_attention_heads;
        let d = self.config.head_dim();
        let scale = 1.0 / (d as f64).sqrt();
        let n = x.rows;
        let act = self.activation();
        // heads × n × n; a loaded or random model's table has one column per head.
        let position_bias = self
            .relative_attention_bias
            .as_ref()
            .map(|b| b.scores_bias(n));
        for layer in &self.layers {
            let (q, k, v) = (
                layer.query.apply(&x),
                layer.key.apply(&x),
                layer.value.apply(&x),
            );
            let mut context = Matrix::new(n, x.cols, vec![0.0; n * x.cols]);
            for hd in 0..heads {
                let cols = hd * d..(hd + 1) * d;
                for i in 0..n {
                    let qi = &q.row(i)[cols.clone()];
                    let scores: Vec<f64> = match &position_bias {
                        None => (0..n)
                            .map(|j| dot(qi, &k.row(j)[cols.clone()]) * scale)
                            .collect(),
                        Some(bias) => {
                            let bias = &bias[(hd * n + i) * n..(hd * n + i + 1) * n];
                            (0..n)
                                .map(|j| dot(qi, &k.row(j)[cols.clone()]) * scale + bias[j])
                                .collect()
                        }
                    };
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = exps.iter().sum();
                    let out = &mut context.row_mut(i)[cols.clone()];
                    for (j, e) in exps.iter().enumerate() {
                        let vj = &v.row(j)[cols.clone()];
                        for (o, &vv) in out.iter_mut().zip(vj) {
                            *o += e / sum * vv;
                        }
                    }
                }
            }
            let mut attn = layer.attention_out.apply(&context);
            attn.data.iter_mut().zip(&x.data).for_each(|(a, r)| *a += r);
            layer.attention_norm.apply(&mut attn);
            let mut inner = layer.ffn_in.apply(&attn);
            inner.data.iter_mut().for_each(|v| *v = act(*v));
            let mut out = layer.ffn_out.apply(&inner);
            out.data
                .iter_mut()
                .zip(&attn.data)
                .for_each(|(a, r)| *a += r);
            layer.ffn_norm.apply(&mut out);
            x = out;
        }
        x
    }

    /// Hidden states of the last layer for one sequence.
    pub fn forward(&self, ids: &[u32], type_ids: &[u32]) -> Result<Matrix> {
        Ok(self.encode(self.embed(ids, type_ids)?))
    }
}

/// Mean over tokens (sentence-transformers pooling).
pub fn mean_pool(x: &Matrix) -> Vec<f64> {
    (0..x.cols)
        .map(|j| (0..x.rows).map(|i| x.data[i * x.cols + j]).sum::<f64>() / x.rows as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        assert!((gelu(0.0)).abs() < 1e-15);
        assert!((gelu(1.0) - 0.841_344_746_068_543).abs() < 1e-12);
        assert!((gelu(-1.0) + 0.158_655_253_931_457).abs() < 1e-12);
    }

    #[test]
    fn gelu_tanh_matches_known_values() {
        assert!(gelu_tanh(0.0).abs() < 1e-15);
        // 0.5·(1 + tanh(√(2/π)·1.044715)) = 0.8411919906082…
        assert!((gelu_tanh(1.0) - 0.841_191_990_608_277).abs() < 1e-12);
        assert!((gelu_tanh(3.0) - gelu(3.0)).abs() < 1e-3);
    }

    #[test]
    fn layer_norm_normalises() {
        let ln = LayerNorm {
            gamma: vec![1.0; 4],
            beta: vec![0.0; 4],
            eps: 1e-12,
        };
        let mut m = Matrix::new(1, 4, vec![1.0, 2.0, 3.0, 4.0]);
        ln.apply(&mut m);
        assert!(m.data.iter().sum::<f64>().abs() < 1e-12);
        let var = m.data.iter().map(|v| v * v).sum::<f64>() / 4.0;
        assert!((var - 1.0).abs() < 1e-9);
    }
}
