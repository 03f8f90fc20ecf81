//! Offline training with candle (CPU, f32): fine-tuning the pool's experts and training the
//! router. Everything here runs before deployment; nothing in it touches a secret share.
//!
//! The module exists with the `train` feature (on by default), which brings candle in. It
//! reads the pool's files through [`securerouter_ml::pool_format`] and [`securerouter_ml::pool`] like the
//! services do, and measures nothing under MPC itself: [`pool::build_pool`] asks its caller for
//! each expert's cost ([`pool::CostMeter`]).

#![forbid(unsafe_code)]

pub mod checkpoint_expert;
pub mod encoder;
pub mod error;
pub mod expert;
pub mod pool;

/// Small models for the training modules' tests.
#[cfg(test)]
mod testing {
    use securerouter_core::prg::Seed;
    use securerouter_ml::{BertConfig, BertWeights};

    /// A random BERT of `layers` layers, hidden 16, 4 heads, vocabulary 40.
    pub fn tiny(layers: usize, seed: u8) -> BertWeights {
        let config = BertConfig {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: layers,
            num_attention_heads: 4,
            intermediate_size: 32,
            hidden_act: "gelu".into(),
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: "bert".into(),
            architectures: Vec::new(),
            position_embedding_type: "absolute".into(),
        };
        BertWeights::random(config, &Seed::from_bytes([seed; 16])).unwrap()
    }

    /// The client's f32 embedding of token ids.
    pub fn embed(model: &BertWeights, ids: &[u32]) -> Vec<f32> {
        let e = model.embed(ids, &vec![0; ids.len()]).unwrap();
        e.data.iter().map(|&v| v as f32).collect()
    }
}
pub mod router;

pub use error::{Error, Result};
