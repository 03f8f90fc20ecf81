//! BERT models from Hugging Face files: `config.json`, `model.safetensors` and the WordPiece
//! `vocab.txt`, with a plaintext f64 reference of the encoder the servers run under MPC.

pub mod config;
pub mod reference;
pub mod tokenizer;
pub mod weights;

pub use config::BertConfig;
pub use reference::Matrix;
pub use tokenizer::{Encoding, WordPiece};
pub use weights::{BertWeights, Embeddings, EncoderLayer, LayerNorm, Linear};
