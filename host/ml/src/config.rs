//! The Hugging Face `config.json` of a BERT or MPNet model, checked before anything is
//! allocated: its sizes, and that the checkpoint is one this encoder computes exactly (family,
//! architecture, activation, position embeddings), so that an unsupported model is refused
//! rather than run with the wrong graph.

use crate::error::{Error, Result, invalid};
use crate::mpnet;
use serde::Deserialize;
use std::path::Path;

/// The fields of a BERT or MPNet `config.json` the encoder needs; [`BertConfig::kind`] says
/// which of the two it is.
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
    /// Activation of the feed-forward layer: "gelu" (exact) or "gelu_new" / "gelu_pytorch_tanh"
    /// (the tanh approximation); see [`BertConfig::activation`].
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Token types (segments). MPNet has none: [`BertConfig::load`] sets 1 for it (the one
    /// all-zero type that every token has).
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The model family Hugging Face records: "bert" (MiniLM checkpoints are BERT) or "mpnet";
    /// see [`BertConfig::kind`].
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// The Hugging Face classes the checkpoint was saved from (may be empty in old configs).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// How positions are embedded: only "absolute" is the graph computed here.
    #[serde(default = "default_positions")]
    pub position_embedding_type: String,
}

/// The feed-forward activation, as [`BertConfig::hidden_act`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// x·Φ(x) with the exact normal CDF (Hugging Face's "gelu").
    Gelu,
    /// The tanh approximation (Hugging Face's "gelu_new" and "gelu_pytorch_tanh").
    GeluTanh,
}

/// The model families computed here, as [`BertConfig::model_type`] names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// BERT ("bert"), MiniLM included.
    Bert,
    /// MPNet ("mpnet"): BERT's layers with a relative-attention bias, positions counted after
    /// the padding id and no token types (see [`crate::mpnet`]).
    MPNet,
}

/// The Hugging Face architectures whose encoder is the BERT computed here; their task heads
/// other than sequence classification are ignored. MPNet's are [`crate::mpnet::ARCHITECTURES`].
pub const SUPPORTED_ARCHITECTURES: [&str; 4] = [
    "BertModel",
    "BertForSequenceClassification",
    "BertForMaskedLM",
    "BertForPreTraining",
];

fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_model_type() -> String {
    "bert".into()
}
fn default_positions() -> String {
    "absolute".into()
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
        let mut c: BertConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            what: format!("{} is not a BERT or MPNet config.json", path.display()),
            source,
        })?;
        if c.model_type == mpnet::MODEL_TYPE {
            // MPNet has no token-type embeddings (its configs have no type_vocab_size).
            c.type_vocab_size = 1;
            mpnet::check_config(path)?;
        }
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
        if self.kind()? == ModelKind::MPNet && self.type_vocab_size != 1 {
            invalid!(
                "type_vocab_size = {} for an MPNet model, which has no token types (1)",
                self.type_vocab_size
            );
        }
        self.activation()?;
        if self.position_embedding_type != "absolute" {
            invalid!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            );
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            invalid!("layer_norm_eps {} is outside (0, 1)", self.layer_norm_eps);
        }
        Ok(())
    }

    /// The model family, or an error naming `model_type` or `architectures` when the family
    /// is not one computed here or the architectures are not of that family.
    pub fn kind(&self) -> Result<ModelKind> {
        let (kind, supported): (_, &[&str]) = match self.model_type.as_str() {
            "bert" => (ModelKind::Bert, &SUPPORTED_ARCHITECTURES),
            mpnet::MODEL_TYPE => (ModelKind::MPNet, &mpnet::ARCHITECTURES),
            other => invalid!(
                "model_type {other:?} is not supported (only \"bert\", which includes MiniLM, \
                 and \"mpnet\")"
            ),
        };
        if self
            .architectures
            .iter()
            .any(|a| !supported.contains(&a.as_str()))
        {
            invalid!(
                "architectures {:?} is not supported for model_type {:?} (only {} are)",
                self.architectures,
                self.model_type,
                supported.join(", ")
            );
        }
        Ok(kind)
    }

    /// The feed-forward activation, or an error naming `hidden_act` when it is not a GeLU.
    pub fn activation(&self) -> Result<Activation> {
        Ok(match self.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => invalid!(
                "hidden_act {other:?} is not supported (\"gelu\", \"gelu_new\" and \"gelu_pytorch_tanh\" are)"
            ),
        })
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
        assert!(format!("{:#}", e.unwrap_err()).contains("hidden_act \"relu\""));
        let tanh = parse(&ok.replace("}", ",\"hidden_act\":\"gelu_new\"}")).unwrap();
        assert_eq!(tanh.activation().unwrap(), Activation::GeluTanh);
        let e = parse(&ok.replace("}", ",\"position_embedding_type\":\"relative_key\"}"));
        assert!(format!("{:#}", e.unwrap_err()).contains("relative_key"));
        assert!(parse("{\"vocab_size\":\"x\"}").is_err());
    }

    #[test]
    fn mpnet_is_its_own_family() {
        let mpnet = r#"{"vocab_size":10,"hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":34,"model_type":"mpnet","architectures":["MPNetForMaskedLM"]}"#;
        let dir = std::env::temp_dir().join(format!("sr-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, mpnet).unwrap();
        // No token types: the loaded config has the one all-zero type.
        let c = BertConfig::load(&path).unwrap();
        assert_eq!(
            (c.kind().unwrap(), c.type_vocab_size),
            (ModelKind::MPNet, 1)
        );
        // Parsed without `load`, the default 2 types are refused by name.
        let e = parse(mpnet).unwrap_err().to_string();
        assert!(e.contains("type_vocab_size = 2"), "{e}");
        let bucket = mpnet.replace("}", ",\"relative_attention_num_buckets\":16}");
        std::fs::write(&path, bucket).unwrap();
        let e = format!("{:#}", BertConfig::load(&path).unwrap_err());
        assert!(e.contains("relative_attention_num_buckets 16"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
        // The families' architectures do not mix, and other families are refused.
        let e = parse(&mpnet.replace("MPNetForMaskedLM", "BertModel")).unwrap_err();
        assert!(e.to_string().contains("for model_type \"mpnet\""), "{e}");
        let e = parse(&mpnet.replace("\"mpnet\"", "\"roberta\"")).unwrap_err();
        assert!(e.to_string().contains("model_type \"roberta\""), "{e}");
    }
}
