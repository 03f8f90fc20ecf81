//! What MPNet (Hugging Face's `MPNetModel`, e.g. all-mpnet-base-v2) computes differently from
//! BERT, with the encoder otherwise shared ([`crate::BertWeights`], [`crate::reference`]):
//!
//! - **Embeddings**: word + position, then LayerNorm; no token-type embeddings (the table is
//!   one row of zeros, so the one type id is 0). Position ids count from `padding_idx + 1`
//!   (`padding_idx` = 1) and skip `<pad>` tokens, which take position `padding_idx`
//!   themselves, as `create_position_ids_from_input_ids` does ([`position_ids`]).
//! - **Attention**: a learned bias per head and relative-position bucket
//!   (`encoder.relative_attention_bias`, 32 buckets × heads), computed once for the sequence
//!   and added to every layer's scores after the 1/√d scaling and before the softmax
//!   ([`RelativeAttentionBias`]). Buckets are T5's bidirectional ones with a maximum distance
//!   of 128 ([`relative_position_bucket`]), over the plain token indices 0..n.
//! - **Tensor names**: `encoder.layer.N.attention.attn.{q,k,v,o}`, `attention.LayerNorm`,
//!   `intermediate.dense`, `output.dense`, `output.LayerNorm`, under `mpnet.` in task models.
//! - **Classification head** (`MPNetForSequenceClassification`): `classifier.dense`, tanh,
//!   `classifier.out_proj` on the first token (`<s>`), with no pooler: the same computation
//!   as BERT's pooler and classifier, so it is read into the same
//!   [`crate::SequenceClassificationHead`].

use crate::error::{Error, Result, invalid};
use crate::matrix::Matrix;
use serde::Deserialize;
use std::path::Path;

/// The `model_type` of MPNet configs.
pub const MODEL_TYPE: &str = "mpnet";

/// The Hugging Face MPNet architectures whose encoder is the one computed here; heads other
/// than sequence classification (the masked-LM head) are ignored.
pub const ARCHITECTURES: [&str; 3] = [
    "MPNetModel",
    "MPNetForMaskedLM",
    "MPNetForSequenceClassification",
];

/// The padding token's id, which MPNet's embeddings fix (`MPNetEmbeddings.padding_idx`,
/// whatever the config's `pad_token_id`): position ids start after it.
pub const PADDING_IDX: u32 = 1;

/// Relative-position buckets: Hugging Face's `compute_position_bias` always buckets with its
/// default of 32, so a config with another `relative_attention_num_buckets` is refused.
pub const NUM_BUCKETS: usize = 32;

/// Distances from this one on share the last bucket of their direction.
pub const MAX_DISTANCE: usize = 128;

/// The checkpoint name of the relative-attention bias table (under the encoder's prefix).
pub const BIAS_TENSOR: &str = "encoder.relative_attention_bias.weight";

/// The checkpoint names of layer `index`'s parts, in [`crate::EncoderLayer`]'s field order.
pub(crate) fn layer_part_names(index: usize) -> [String; 8] {
    let p = format!("encoder.layer.{index}");
    [
        format!("{p}.attention.attn.q"),
        format!("{p}.attention.attn.k"),
        format!("{p}.attention.attn.v"),
        format!("{p}.attention.attn.o"),
        format!("{p}.attention.LayerNorm"),
        format!("{p}.intermediate.dense"),
        format!("{p}.output.dense"),
        format!("{p}.output.LayerNorm"),
    ]
}

/// MPNet's position ids for `ids`: `padding_idx` for a `<pad>` token, else `padding_idx` plus
/// the number of non-pad tokens up to and including this one (Hugging Face's
/// `create_position_ids_from_input_ids`). Without padding: 2, 3, …, n + 1.
pub fn position_ids(ids: &[u32], padding_idx: u32) -> Vec<usize> {
    let mut count = 0;
    ids.iter()
        .map(|&id| {
            if id == padding_idx {
                padding_idx as usize
            } else {
                count += 1;
                padding_idx as usize + count
            }
        })
        .collect()
}

/// The bucket of a key `relative` positions after its query (negative: before), as
/// `MPNetEncoder.relative_position_bucket` computes it with 32 buckets and maximum distance
/// 128: keys after the query take buckets 16..32, the others 0..16; distances below 8 have a
/// bucket each, larger ones share buckets spaced logarithmically up to 128, and farther ones
/// the direction's last bucket.
///
/// Hugging Face computes the logarithmic buckets as 8 + ⌊ln(n/8) / ln(16) · 8⌋ in floating
/// point; that is 8 + ⌊log₂(n²/64)⌋ = 2 + ⌊log₂(n²)⌋, computed here in integers, so no
/// rounding of a logarithm can move a distance across a boundary (16, 32, 64 sit on them).
/// The tests check every distance against PyTorch's buckets.
pub fn relative_position_bucket(relative: i64) -> usize {
    let half = NUM_BUCKETS / 2;
    let max_exact = half / 2;
    // Hugging Face's n = −(key − query): a key after its query goes to the upper half.
    let offset = if relative > 0 { half } else { 0 };
    let n = relative.unsigned_abs();
    if n < max_exact as u64 {
        return offset + n as usize;
    }
    // n ≥ 8, so n² ≥ 64 and ⌊log₂(n²)⌋ ≥ 6; n² cannot overflow for any sequence length.
    let log2_square = 63 - n.saturating_mul(n).leading_zeros() as usize;
    offset + (2 + log2_square).min(half - 1)
}

/// MPNet's relative-attention bias: one learned value per bucket and head.
#[derive(Clone, Debug, PartialEq)]
pub struct RelativeAttentionBias {
    /// [`NUM_BUCKETS`] × heads, as `encoder.relative_attention_bias.weight`.
    table: Matrix,
}

impl RelativeAttentionBias {
    /// The bias of a [`NUM_BUCKETS`] × heads table, refused in any other shape or with a
    /// value that is not finite.
    pub fn new(table: Matrix) -> Result<Self> {
        if table.rows != NUM_BUCKETS || table.cols == 0 {
            invalid!(
                "the relative attention bias is {} × {}, not {NUM_BUCKETS} buckets × heads",
                table.rows,
                table.cols
            );
        }
        if table.data.iter().any(|v| !v.is_finite()) {
            invalid!("the relative attention bias holds NaN or infinity");
        }
        Ok(RelativeAttentionBias { table })
    }

    /// The table, [`NUM_BUCKETS`] × heads.
    pub fn table(&self) -> &Matrix {
        &self.table
    }

    /// Attention heads.
    pub fn heads(&self) -> usize {
        self.table.cols
    }

    /// The additive term of every head's attention scores for a sequence of `n` tokens,
    /// heads × n × n (head-major, then query row, then key column): the table's value at
    /// (bucket of key − query, head). It depends only on the length, not on the tokens, so
    /// it is public to anyone who knows the length.
    pub fn scores_bias(&self, n: usize) -> Vec<f64> {
        let heads = self.heads();
        let mut out = vec![0.0; heads * n * n];
        for i in 0..n {
            for j in 0..n {
                let bucket = relative_position_bucket(j as i64 - i as i64);
                let row = self.table.row(bucket);
                for (h, &v) in row.iter().enumerate() {
                    out[(h * n + i) * n + j] = v;
                }
            }
        }
        out
    }
}

/// The MPNet-only fields of `config.json`.
#[derive(Deserialize)]
struct MPNetFields {
    relative_attention_num_buckets: Option<usize>,
}

/// Checks the MPNet-only fields of the `config.json` at `path`: `relative_attention_num_buckets`
/// (32 when absent) must be [`NUM_BUCKETS`].
pub(crate) fn check_config(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io("reading the model config", path))?;
    let fields: MPNetFields = serde_json::from_str(&text).map_err(|source| Error::Json {
        what: format!("{}: relative_attention_num_buckets", path.display()),
        source,
    })?;
    let buckets = fields.relative_attention_num_buckets.unwrap_or(NUM_BUCKETS);
    if buckets != NUM_BUCKETS {
        invalid!(
            "{}: relative_attention_num_buckets {buckets} is not supported (only \
             {NUM_BUCKETS}: Hugging Face's MPNet buckets relative positions into {NUM_BUCKETS} \
             whatever the config says)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_ids_skip_padding() {
        assert_eq!(position_ids(&[0, 5, 6, 2], 1), [2, 3, 4, 5]);
        assert_eq!(position_ids(&[0, 1, 6, 1, 2], 1), [2, 1, 3, 1, 4]);
    }

    #[test]
    fn buckets_follow_t5s_bidirectional_scheme() {
        // Query at 0: keys before it (negative) in 0..16, after it in 16..32.
        let expected = [
            (0, 0),
            (-1, 1),
            (-7, 7),
            (-8, 8),
            (-11, 8),
            (-12, 9),
            (-15, 9),
            (-16, 10),
            (-22, 10),
            (-23, 11),
            (-31, 11),
            (-32, 12),
            (-45, 12),
            (-46, 13),
            (-63, 13),
            (-64, 14),
            (-90, 14),
            (-91, 15),
            (-10_000, 15),
            (1, 17),
            (7, 23),
            (8, 24),
            (16, 26),
            (64, 30),
            (91, 31),
            (i64::from(u32::MAX), 31),
        ];
        for (relative, bucket) in expected {
            assert_eq!(relative_position_bucket(relative), bucket, "{relative}");
        }
    }

    #[test]
    fn the_bias_is_read_per_head_from_the_bucket_row() {
        let table = Matrix::new(
            NUM_BUCKETS,
            2,
            (0..NUM_BUCKETS * 2).map(|v| v as f64).collect(),
        );
        let b = RelativeAttentionBias::new(table).unwrap().scores_bias(3);
        // Head 1, query 2, key 0: relative −2, bucket 2, value 2·2 + 1.
        assert_eq!(b[(3 + 2) * 3], 5.0);
        // Head 0, query 0, key 1: relative 1, bucket 17.
        assert_eq!(b[1], 34.0);
        assert_eq!(b.len(), 2 * 9);
        let e = RelativeAttentionBias::new(Matrix::new(16, 2, vec![0.0; 32])).unwrap_err();
        assert!(e.to_string().contains("16 × 2"), "{e}");
    }
}
