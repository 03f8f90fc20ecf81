//! The client bundle: what a client needs to turn text into its private input, and nothing
//! more (DESIGN §1: the client never needs the model). It holds the WordPiece vocabulary and
//! the embedding tables with their LayerNorm; the encoder weights stay with the servers.

use super::matrix::Matrix;
use super::tokenizer::WordPiece;
use super::weights::{BertWeights, Embeddings, LayerNorm, Positions};
use crate::error::{Error, Result, invalid};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Tokenizer and embeddings of one model.
pub struct ClientBundle {
    /// The tokenizer.
    pub tokenizer: WordPiece,
    /// Token, position and type embeddings with their LayerNorm.
    pub embeddings: Embeddings,
}

#[derive(Serialize, Deserialize)]
struct StoredMatrix {
    rows: usize,
    cols: usize,
    /// f32, little-endian (the checkpoint's own precision).
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct StoredBundle {
    vocab: String,
    word: StoredMatrix,
    position: StoredMatrix,
    token_type: StoredMatrix,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    eps: f64,
}

fn store(m: &Matrix) -> StoredMatrix {
    StoredMatrix {
        rows: m.rows,
        cols: m.cols,
        data: m
            .data
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
    }
}

fn restore(m: StoredMatrix, what: &str) -> Result<Matrix> {
    if m.rows.checked_mul(m.cols).and_then(|n| n.checked_mul(4)) != Some(m.data.len()) {
        invalid!("the bundle's {what} table does not match its shape");
    }
    let data: Vec<f64> = m
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect();
    if data.iter().any(|v| !v.is_finite()) {
        invalid!("the bundle's {what} table holds NaN or infinity");
    }
    Ok(Matrix::new(m.rows, m.cols, data))
}

impl ClientBundle {
    /// Writes the bundle of `model` with the vocabulary text `vocab` (one token per line).
    /// Only BERT models have a bundle: an MPNet model is refused (its positions and
    /// `<s>`/`</s>` tokens are not the bundle's).
    pub fn save(model: &BertWeights, vocab: &str, path: &Path) -> Result<()> {
        let e = &model.embeddings;
        if e.positions != Positions::FromZero || model.relative_attention_bias.is_some() {
            invalid!(
                "model_type {:?} has no client bundle yet (only BERT models have one)",
                model.config.model_type
            );
        }
        let s = StoredBundle {
            vocab: vocab.to_string(),
            word: store(&e.word),
            position: store(&e.position),
            token_type: store(&e.token_type),
            gamma: e.norm.gamma.clone(),
            beta: e.norm.beta.clone(),
            eps: e.norm.eps,
        };
        let bytes = postcard::to_allocvec(&s).map_err(|source| Error::Postcard {
            what: format!("encoding {}", path.display()),
            source,
        })?;
        std::fs::write(path, bytes).map_err(Error::io("writing", path))
    }

    /// Reads and checks a bundle.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
        let s: StoredBundle = postcard::from_bytes(&bytes).map_err(|source| Error::Postcard {
            what: format!("{} is not a client bundle", path.display()),
            source,
        })?;
        let tokenizer =
            WordPiece::from_vocab_text(&s.vocab).map_err(|source| Error::BundleVocabulary {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        let (word, position, token_type) = (
            restore(s.word, "word")?,
            restore(s.position, "position")?,
            restore(s.token_type, "token type")?,
        );
        let h = word.cols;
        if position.cols != h
            || token_type.cols != h
            || s.gamma.len() != h
            || s.beta.len() != h
            || word.rows != tokenizer.vocab_size()
        {
            invalid!(
                "{}: the embedding tables, LayerNorm and vocabulary disagree in size",
                path.display()
            );
        }
        if !(s.eps > 0.0 && s.eps < 1.0) {
            invalid!(
                "{}: LayerNorm epsilon {} is outside (0, 1)",
                path.display(),
                s.eps
            );
        }
        Ok(ClientBundle {
            tokenizer,
            embeddings: Embeddings {
                word,
                position,
                token_type,
                norm: LayerNorm {
                    gamma: s.gamma,
                    beta: s.beta,
                    eps: s.eps,
                },
                positions: Positions::FromZero,
            },
        })
    }

    /// The embedding tables as the device's flash-resident int8 table (format 1 of
    /// `securerouter_device::embedding`, written here because host does not depend on device;
    /// a test ties the two): each row quantised with its own scale, max |v| / 127.
    pub fn device_table(&self) -> Result<Vec<u8>> {
        let e = &self.embeddings;
        let h = e.word.cols;
        let narrow = |n: usize, what: &str| {
            u16::try_from(n).map_err(|e| Error::Parse {
                what: format!("{n} {what} do not fit the device table"),
                source: Box::new(e),
            })
        };
        let vocab = u32::try_from(e.word.rows).map_err(|e| Error::Parse {
            what: "the vocabulary is too large".into(),
            source: Box::new(e),
        })?;
        // The table stores f32: a bundle's f64 LayerNorm (checked only as f64 on load) must
        // still be valid after narrowing, or the device would refuse the table.
        let eps = e.norm.eps as f32;
        if !(eps > 0.0 && eps < 1.0) {
            invalid!(
                "LayerNorm epsilon {} is outside (0, 1) as the device table's f32",
                e.norm.eps
            );
        }
        if let Some(v) = e
            .norm
            .gamma
            .iter()
            .chain(&e.norm.beta)
            .find(|v| !(**v as f32).is_finite())
        {
            invalid!("LayerNorm gain or bias {v} does not fit the device table's f32");
        }
        let mut out = Vec::with_capacity(
            24 + (e.word.rows + e.position.rows + e.token_type.rows) * (h + 4) + 8 * h,
        );
        out.extend_from_slice(b"SRDEVEMB");
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&narrow(h, "hidden units")?.to_le_bytes());
        out.extend_from_slice(&vocab.to_le_bytes());
        out.extend_from_slice(&narrow(e.position.rows, "positions")?.to_le_bytes());
        out.extend_from_slice(&narrow(e.token_type.rows, "token types")?.to_le_bytes());
        out.extend_from_slice(&eps.to_le_bytes());
        for table in [&e.word, &e.position, &e.token_type] {
            let scales: Vec<f64> = (0..table.rows)
                .map(|r| table.row(r).iter().fold(0.0f64, |m, v| m.max(v.abs())) / 127.0)
                .collect();
            for s in &scales {
                out.extend_from_slice(&(*s as f32).to_le_bytes());
            }
            for (r, s) in scales.iter().enumerate() {
                out.extend(table.row(r).iter().map(|v| {
                    let q = if *s > 0.0 { (v / s).round() } else { 0.0 };
                    q.clamp(-127.0, 127.0) as i8 as u8
                }));
            }
        }
        for v in e.norm.gamma.iter().chain(&e.norm.beta) {
            out.extend_from_slice(&(*v as f32).to_le_bytes());
        }
        Ok(out)
    }

    /// Tokenises `text` (at most `max_len` tokens) and embeds it: rows of the hidden size.
    pub fn embed_text(&self, text: &str, max_len: usize) -> Result<Matrix> {
        let e = self.tokenizer.encode(text, max_len);
        self.embeddings.embed(&e.ids, &e.type_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BertConfig;
    use securerouter_core::prg::Seed;

    #[test]
    fn a_bundle_embeds_like_the_model_and_rejects_damage() {
        let config = BertConfig {
            vocab_size: 6,
            hidden_size: 4,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 8,
            hidden_act: "gelu".into(),
            max_position_embeddings: 8,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: "bert".into(),
            architectures: Vec::new(),
            position_embedding_type: "absolute".into(),
        };
        let model = BertWeights::random(config, &Seed::from_bytes([2; 16])).unwrap();
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld";
        let dir = std::env::temp_dir().join(format!("bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client.bundle");
        ClientBundle::save(&model, vocab, &path).unwrap();
        let b = ClientBundle::load(&path).unwrap();
        let got = b.embed_text("hello world", 8).unwrap();
        let want = model.embed(&[2, 4, 5, 3], &[0; 4]).unwrap();
        // The bundle keeps the checkpoint's f32 precision.
        assert!(got.max_abs_diff(&want) < 1e-5);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = ClientBundle::load(&path).err().unwrap();
        assert!(format!("{e:#}").contains("not a client bundle"), "{e:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Found by the `client_bundle` fuzz target: a bundle whose LayerNorm is valid as f64 but
    /// not as f32 (epsilon rounding to 0 or 1, a gain overflowing) gave a device table the
    /// device's parser refuses (`BadEpsilon`, `BadReal`); now `device_table` says why instead.
    #[test]
    fn a_layer_norm_that_does_not_fit_f32_gives_no_device_table() {
        let config = BertConfig {
            vocab_size: 4,
            hidden_size: 2,
            num_hidden_layers: 1,
            num_attention_heads: 1,
            intermediate_size: 2,
            hidden_act: "gelu".into(),
            max_position_embeddings: 4,
            type_vocab_size: 1,
            layer_norm_eps: 1e-12,
            model_type: "bert".into(),
            architectures: Vec::new(),
            position_embedding_type: "absolute".into(),
        };
        let model = BertWeights::random(config, &Seed::from_bytes([3; 16])).unwrap();
        let bundle = |eps: f64, gain: f64| ClientBundle {
            tokenizer: WordPiece::from_vocab_text("[PAD]\n[UNK]\n[CLS]\n[SEP]").unwrap(),
            embeddings: Embeddings {
                norm: LayerNorm {
                    gamma: vec![gain, 1.0],
                    eps,
                    ..model.embeddings.norm.clone()
                },
                ..model.embeddings.clone()
            },
        };
        let table = bundle(1e-12, 1.0).device_table().unwrap();
        assert_eq!(&table[20..24], &1e-12f32.to_le_bytes());
        for (eps, gain, what) in [
            (1e-50, 1.0, "epsilon"),
            (1.0 - 1e-12, 1.0, "epsilon"),
            (1e-12, 1e300, "gain or bias"),
        ] {
            let e = bundle(eps, gain).device_table().unwrap_err();
            assert!(format!("{e:#}").contains(what), "{e:#}");
        }
    }
}
