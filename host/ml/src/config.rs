//! The Hugging Face `config.json` of a BERT model, checked before anything is allocated.

use crate::error::{Error, Result, invalid};
use serde::Deserialize;
use std::path::Path;

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BertConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer (only "gelu" is supported).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// Bounds that keep a hostile config from asking for absurd allocations.
const MAX_DIM: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 20;
const MAX_LAYERS: usize = 256;

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(Error::io("reading the model config", path))?;
        let c: BertConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            what: format!("{} is not a BERT config.json", path.display()),
            source,
        })?;
        c.validate().map_err(Error::in_file(path))?;
        Ok(c)
    }

    /// Checks sizes and the activation.
    pub fn validate(&self) -> Result<()> {
        for (what, v, max) in [
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_DIM,
            ),
            ("num_attention_heads", self.num_attention_heads, MAX_DIM),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("type_vocab_size", self.type_vocab_size, MAX_DIM),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
        ] {
            if v == 0 || v > max {
                invalid!("{what} = {v} is outside 1..={max}");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            invalid!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.hidden_act != "gelu" {
            invalid!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                self.hidden_act
            );
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            invalid!("layer_norm_eps {} is outside (0, 1)", self.layer_norm_eps);
        }
        Ok(())
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> std::result::Result<BertConfig, Box<dyn std::error::Error>> {
        let c: BertConfig = serde_json::from_str(s)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let ok = r#"{"vocab_size":10,"hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32}"#;
        assert_eq!(parse(ok).unwrap().head_dim(), 4);
        let e = parse(&ok.replace("\"num_attention_heads\":2", "\"num_attention_heads\":3"));
        assert!(format!("{:#}", e.unwrap_err()).contains("multiple"));
        let e = parse(&ok.replace("\"hidden_size\":8", "\"hidden_size\":0"));
        assert!(format!("{:#}", e.unwrap_err()).contains("hidden_size = 0"));
        let e = parse(&ok.replace("}", ",\"hidden_act\":\"relu\"}"));
        assert!(format!("{:#}", e.unwrap_err()).contains("relu"));
        assert!(parse("{\"vocab_size\":\"x\"}").is_err());
    }
}
