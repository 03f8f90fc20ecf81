//! SecureRouter's plaintext side, as the model provider holds it: BERT-style models, BERT and
//! MPNet (Hugging Face checkpoint folders: config, safetensors in one file or shards,
//! classification heads),
//! their tokenizer (`tokenizer.json`, or WordPiece from `vocab.txt`), the f64 reference encoder
//! that secure results are measured against, classifier heads, the router, the pool's manifest
//! and files, labelled data sets (GLUE tasks and users' own tables) and their metrics, and the
//! asset cache of pinned registry packages. Nothing here touches a secret share.

#![forbid(unsafe_code)]

pub mod assets;
pub mod bundle;
pub mod checkpoint;
pub mod classification;
pub mod config;
pub mod data;
pub mod error;
pub mod head;
pub mod hf_tokenizer;
pub mod matrix;
pub mod metrics;
pub mod mpnet;
pub mod pool;
pub mod pool_format;
pub mod pretrained;
pub mod progress;
pub mod reference;
pub mod router;
pub mod tokenizer;
pub mod weights;

pub use bundle::{ClientBundle, OwnInput};
pub use classification::{SequenceClassificationHead, logits_of_checkpoint};
pub use config::{BertConfig, ModelKind};
pub use error::{Error, Result};
pub use head::ClassifierHead;
pub use hf_tokenizer::Tokenizer;
pub use matrix::Matrix;
pub use metrics::{Metric, Scores};
pub use pool::PoolManifest;
pub use reference::mean_pool;
pub use tokenizer::{Encoding, WordPiece};
pub use weights::{BertWeights, Embeddings, EncoderLayer, LayerNorm, Linear, Positions};
