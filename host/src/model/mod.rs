//! BERT-style models: Hugging Face config and safetensors loading, the WordPiece tokenizer,
//! the f64 reference encoder that secure results are measured against, and classifier heads.

pub mod bundle;
pub mod config;
pub mod head;
pub mod matrix;
pub mod pool;
pub mod reference;
pub mod tokenizer;
pub mod weights;

pub use bundle::ClientBundle;
pub use config::BertConfig;
pub use head::ClassifierHead;
pub use matrix::Matrix;
pub use pool::PoolManifest;
pub use reference::mean_pool;
pub use tokenizer::{Encoding, WordPiece};
pub use weights::{BertWeights, Embeddings, EncoderLayer, LayerNorm, Linear};
