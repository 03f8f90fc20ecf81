//! The client bundle: what a client needs to turn text into its private inputs, and nothing
//! more (DESIGN §1: the client never needs the model). A pool's experts read the summary's
//! embedded tokens, except an expert from another checkpoint, which reads an input of its own
//! that the client embeds with that checkpoint's tokenizer and tables; so the bundle holds one
//! embedder for the summary (expert 0) and one for each expert with an input of its own, keyed
//! by its index in the pool. An embedder is the checkpoint's own tokenizer (its
//! `tokenizer.json`, or for a checkpoint with only a `vocab.txt` the WordPiece vocabulary and
//! whether it lowercases) and the embedding tables with their LayerNorm and the way tokens take
//! their position rows (BERT's from 0, MPNet's after the padding id); the encoder weights stay
//! with the servers.
//!
//! A bundle file is [`MAGIC`], the format version ([`FORMAT_VERSION`], u16 little-endian) and
//! the postcard encoding of the summary's embedder, then the list of the others by increasing
//! expert index (tables as f32, little-endian). A file of any other version, or of the older
//! format without the magic, is refused with a message that says to re-export the deployment.
//! Every size, shape, value and expert index is checked on load: the file is untrusted input.

use super::hf_tokenizer::Tokenizer;
use super::matrix::Matrix;
use super::tokenizer::WordPiece;
use super::weights::{BertWeights, Embeddings, LayerNorm, Positions};
use crate::error::{Error, Result, invalid};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The first bytes of a client bundle.
pub const MAGIC: [u8; 8] = *b"SRBUNDLE";
/// The bundle format this version writes and reads: 2 added the magic, the checkpoint's
/// `tokenizer.json` (or the WordPiece vocabulary with its casing) and MPNet's positions; 3 added
/// the embedders of experts with inputs of their own.
pub const FORMAT_VERSION: u16 = 3;

/// The most experts a pool holds, the summary among them (as `securerouter_circuits::pool`).
const MAX_EXPERTS: usize = 16;

/// What a client embeds a pool's inputs with.
pub struct ClientBundle {
    /// The summary's (expert 0's) tokenizer, which every expert without an input of its own
    /// reads through.
    pub tokenizer: Tokenizer,
    /// The summary's token, position and type embeddings with their LayerNorm, and how tokens
    /// take their positions.
    pub embeddings: Embeddings,
    /// The experts with inputs of their own, by increasing expert index (none is 0, none
    /// twice).
    pub own_inputs: Vec<OwnInput>,
}

/// The tokenizer and embeddings of an expert that reads an input of its own.
pub struct OwnInput {
    /// The expert's index in the pool (never 0, the summary).
    pub expert: usize,
    /// Its checkpoint's tokenizer.
    pub tokenizer: Tokenizer,
    /// Its checkpoint's embedding tables with their LayerNorm and positions.
    pub embeddings: Embeddings,
}

#[derive(Serialize, Deserialize)]
struct StoredMatrix {
    rows: usize,
    cols: usize,
    /// f32, little-endian (the checkpoint's own precision).
    data: Vec<u8>,
}

/// The tokenizer as stored: what it is rebuilt from.
#[derive(Serialize, Deserialize)]
enum StoredTokenizer {
    /// A Hugging Face `tokenizer.json`, whole.
    TokenizerJson(String),
    /// A WordPiece vocabulary (one token per line) and whether it lowercases and strips
    /// accents (uncased models).
    WordPiece { vocab: String, lowercase: bool },
}

/// [`Positions`] as stored.
#[derive(Serialize, Deserialize)]
enum StoredPositions {
    FromZero,
    AfterPadding { padding_idx: u32 },
}

/// One checkpoint's embedder as stored: its tokenizer and the tables its ids index.
#[derive(Serialize, Deserialize)]
struct StoredEmbedder {
    tokenizer: StoredTokenizer,
    word: StoredMatrix,
    position: StoredMatrix,
    token_type: StoredMatrix,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    eps: f64,
    positions: StoredPositions,
}

/// An expert with an input of its own, as stored.
#[derive(Serialize, Deserialize)]
struct StoredOwnInput {
    expert: u32,
    embedder: StoredEmbedder,
}

/// Format 3, after [`MAGIC`] and the version.
#[derive(Serialize, Deserialize)]
struct StoredBundle {
    summary: StoredEmbedder,
    own_inputs: Vec<StoredOwnInput>,
}

/// The format before [`MAGIC`], recognised only to refuse it by name.
#[derive(Deserialize)]
#[allow(dead_code)]
struct LegacyBundle {
    vocab: String,
    word: StoredMatrix,
    position: StoredMatrix,
    token_type: StoredMatrix,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    eps: f64,
}

/// How messages name expert `k`'s embedder.
fn whose(expert: usize) -> String {
    if expert == 0 {
        "the summary's".into()
    } else {
        format!("expert {expert}'s")
    }
}

/// Checks the expert indices of the embedders beside the summary's: at most one per expert
/// other than the summary, in increasing order, within a pool's experts.
fn check_own_experts(experts: &[usize]) -> Result<()> {
    if experts.len() >= MAX_EXPERTS {
        invalid!(
            "{} experts with inputs of their own: a pool holds at most {MAX_EXPERTS} experts, \
             the summary among them",
            experts.len()
        );
    }
    for (i, &k) in experts.iter().enumerate() {
        if k == 0 {
            invalid!(
                "expert 0 is the summary, whose embedder the bundle holds already: it is not an \
                 expert with an input of its own"
            );
        }
        if k >= MAX_EXPERTS {
            invalid!("expert {k} is beyond a pool's {MAX_EXPERTS} experts");
        }
        if let Some(&before) = i.checked_sub(1).and_then(|j| experts.get(j)) {
            if before == k {
                invalid!("expert {k} has two embedders of its own input");
            }
            if before > k {
                invalid!(
                    "the experts with inputs of their own are out of order: expert {k} after \
                     expert {before}"
                );
            }
        }
    }
    Ok(())
}

fn store_matrix(m: &Matrix) -> StoredMatrix {
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

fn restore_matrix(m: StoredMatrix, path: &Path, whose: &str, what: &str) -> Result<Matrix> {
    let path = path.display();
    if m.rows.checked_mul(m.cols).and_then(|n| n.checked_mul(4)) != Some(m.data.len()) {
        invalid!("{path}: {whose} {what} table does not match its shape");
    }
    if m.rows == 0 || m.cols == 0 {
        invalid!(
            "{path}: {whose} {what} table is empty ({} × {})",
            m.rows,
            m.cols
        );
    }
    let data: Vec<f64> = m
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect();
    if data.iter().any(|v| !v.is_finite()) {
        invalid!("{path}: {whose} {what} table holds NaN or infinity");
    }
    Ok(Matrix::new(m.rows, m.cols, data))
}

impl StoredEmbedder {
    /// The embedder of `model` with its checkpoint's `tokenizer`, for expert `expert` (0: the
    /// summary).
    fn store(model: &BertWeights, tokenizer: &Tokenizer, expert: usize) -> Result<Self> {
        let e = &model.embeddings;
        let whose = whose(expert);
        if tokenizer.vocab_size() > e.word.rows {
            invalid!(
                "{whose} tokenizer {} has ids up to {}, beyond the model's {} word embeddings",
                tokenizer.path().display(),
                tokenizer.vocab_size() - 1,
                e.word.rows
            );
        }
        let stored_tokenizer = match (tokenizer.tokenizer_json(), tokenizer.wordpiece()) {
            (Some(json), _) => StoredTokenizer::TokenizerJson(json.to_owned()),
            (None, Some(wordpiece)) => {
                if e.positions != Positions::FromZero {
                    invalid!(
                        "{whose} model_type {:?} needs its tokenizer.json in the client bundle; \
                         the WordPiece vocabulary {} is BERT's tokenizer ([CLS] and [SEP])",
                        model.config.model_type,
                        tokenizer.path().display()
                    );
                }
                StoredTokenizer::WordPiece {
                    vocab: wordpiece.vocab_text(),
                    lowercase: wordpiece.lowercase(),
                }
            }
            (None, None) => invalid!(
                "{whose} tokenizer {} has nothing to store",
                tokenizer.path().display()
            ),
        };
        Ok(StoredEmbedder {
            tokenizer: stored_tokenizer,
            word: store_matrix(&e.word),
            position: store_matrix(&e.position),
            token_type: store_matrix(&e.token_type),
            gamma: e.norm.gamma.clone(),
            beta: e.norm.beta.clone(),
            eps: e.norm.eps,
            positions: match e.positions {
                Positions::FromZero => StoredPositions::FromZero,
                Positions::AfterPadding { padding_idx } => {
                    StoredPositions::AfterPadding { padding_idx }
                }
            },
        })
    }

    /// Rebuilds and checks expert `expert`'s embedder (0: the summary's) read from `path`.
    fn restore(self, path: &Path, expert: usize) -> Result<(Tokenizer, Embeddings)> {
        let whose = whose(expert);
        let in_bundle = |source: Error| Error::BundleTokenizer {
            path: path.to_path_buf(),
            whose: whose.clone(),
            source: Box::new(source),
        };
        let tokenizer = match &self.tokenizer {
            StoredTokenizer::TokenizerJson(json) => {
                Tokenizer::from_tokenizer_json_text(json, path).map_err(in_bundle)?
            }
            StoredTokenizer::WordPiece { vocab, lowercase } => Tokenizer::from_wordpiece(
                WordPiece::from_vocab_text(vocab)
                    .map_err(in_bundle)?
                    .with_lowercase(*lowercase),
                path,
            ),
        };
        let (word, position, token_type) = (
            restore_matrix(self.word, path, &whose, "word")?,
            restore_matrix(self.position, path, &whose, "position")?,
            restore_matrix(self.token_type, path, &whose, "token type")?,
        );
        let shown = path.display();
        let h = word.cols;
        if position.cols != h
            || token_type.cols != h
            || self.gamma.len() != h
            || self.beta.len() != h
        {
            invalid!("{shown}: {whose} embedding tables and LayerNorm disagree in width");
        }
        if tokenizer.vocab_size() > word.rows {
            invalid!(
                "{shown}: {whose} tokenizer has ids up to {}, beyond its {} word embeddings",
                tokenizer.vocab_size() - 1,
                word.rows
            );
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            invalid!(
                "{shown}: {whose} LayerNorm epsilon {} is outside (0, 1)",
                self.eps
            );
        }
        if self.gamma.iter().chain(&self.beta).any(|v| !v.is_finite()) {
            invalid!("{shown}: {whose} LayerNorm gain or bias holds NaN or infinity");
        }
        let positions = match self.positions {
            StoredPositions::FromZero => Positions::FromZero,
            StoredPositions::AfterPadding { padding_idx } => {
                // At least one token must find its position row after the padding id's.
                if (padding_idx as usize).saturating_add(1) >= position.rows {
                    invalid!(
                        "{shown}: {whose} positions after padding id {padding_idx} need more \
                         than its {} position embeddings",
                        position.rows
                    );
                }
                Positions::AfterPadding { padding_idx }
            }
        };
        let embeddings = Embeddings {
            word,
            position,
            token_type,
            norm: LayerNorm {
                gamma: self.gamma,
                beta: self.beta,
                eps: self.eps,
            },
            positions,
        };
        Ok((tokenizer, embeddings))
    }
}

impl ClientBundle {
    /// Writes the bundle of a model whose experts all read its input (a single model, or a
    /// pool cut from one checkpoint): `model` with its checkpoint's `tokenizer` (from
    /// [`Tokenizer::from_dir`]: the `tokenizer.json` is stored whole; a `vocab.txt` fallback as
    /// its vocabulary and casing). BERT and MPNet models both have one.
    ///
    /// # Errors
    /// As [`save_pool`](Self::save_pool).
    pub fn save(model: &BertWeights, tokenizer: &Tokenizer, path: &Path) -> Result<()> {
        Self::save_pool(model, tokenizer, &[], path)
    }

    /// Writes the bundle of a pool: the summary's embedder (`model` with its checkpoint's
    /// `tokenizer`, as [`save`](Self::save)) and one per expert with its own input (expert
    /// index, model, tokenizer; in any order).
    ///
    /// # Errors
    /// If a tokenizer produces ids beyond its model's word embeddings, if an MPNet model comes
    /// with the WordPiece fallback (BERT's `[CLS]`/`[SEP]`, not its `<s>`/`</s>`), if an expert
    /// index in `own` is 0 (the summary), repeated or beyond a pool's 16 experts, or if the
    /// file cannot be written.
    pub fn save_pool(
        model: &BertWeights,
        tokenizer: &Tokenizer,
        own: &[(usize, &BertWeights, &Tokenizer)],
        path: &Path,
    ) -> Result<()> {
        let mut own: Vec<_> = own.to_vec();
        own.sort_by_key(|(k, _, _)| *k);
        check_own_experts(&own.iter().map(|(k, _, _)| *k).collect::<Vec<_>>())?;
        let own_inputs = own
            .iter()
            .map(|&(k, model, tokenizer)| {
                Ok(StoredOwnInput {
                    expert: u32::try_from(k).map_err(|e| Error::Parse {
                        what: format!("expert index {k}"),
                        source: Box::new(e),
                    })?,
                    embedder: StoredEmbedder::store(model, tokenizer, k)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let s = StoredBundle {
            summary: StoredEmbedder::store(model, tokenizer, 0)?,
            own_inputs,
        };
        let mut bytes = Vec::from(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let bytes = postcard::to_extend(&s, bytes).map_err(|source| Error::Postcard {
            what: format!("encoding {}", path.display()),
            source,
        })?;
        std::fs::write(path, bytes).map_err(Error::io("writing", path))
    }

    /// Reads and checks a bundle.
    ///
    /// # Errors
    /// [`Error::OldBundle`] for a bundle of the format before the magic,
    /// [`Error::BundleVersion`] for another version, [`Error::Postcard`] for a file that is not
    /// a bundle (one cut short among them), [`Error::BundleTokenizer`] for a tokenizer refused,
    /// and [`Error::Invalid`] for bytes after the bundle, expert indices that are 0, repeated,
    /// out of order or beyond a pool's experts, and tables that disagree in shape or hold
    /// values that are not finite.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
        let Some(rest) = bytes.strip_prefix(&MAGIC) else {
            return Err(match postcard::from_bytes::<LegacyBundle>(&bytes) {
                Ok(_) => Error::OldBundle {
                    path: path.to_path_buf(),
                },
                Err(source) => Error::Postcard {
                    what: format!("{} is not a client bundle", path.display()),
                    source,
                },
            });
        };
        let (version, body) = match rest {
            [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]), body),
            _ => invalid!(
                "{} is not a client bundle: it ends inside its header",
                path.display()
            ),
        };
        if version != FORMAT_VERSION {
            return Err(Error::BundleVersion {
                path: path.to_path_buf(),
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let (s, trailing): (StoredBundle, _) =
            postcard::take_from_bytes(body).map_err(|source| Error::Postcard {
                what: format!("{} is not a client bundle", path.display()),
                source,
            })?;
        if !trailing.is_empty() {
            invalid!(
                "{} is not a client bundle: bytes follow its end ({})",
                path.display(),
                trailing.len()
            );
        }
        let experts: Vec<usize> = s
            .own_inputs
            .iter()
            .map(|o| usize::try_from(o.expert).unwrap_or(usize::MAX))
            .collect();
        check_own_experts(&experts)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let (tokenizer, embeddings) = s.summary.restore(path, 0)?;
        let own_inputs = s
            .own_inputs
            .into_iter()
            .zip(experts)
            .map(|(o, expert)| {
                let (tokenizer, embeddings) = o.embedder.restore(path, expert)?;
                Ok(OwnInput {
                    expert,
                    tokenizer,
                    embeddings,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClientBundle {
            tokenizer,
            embeddings,
            own_inputs,
        })
    }

    /// The experts with inputs of their own, in increasing order.
    pub fn own_input_experts(&self) -> Vec<usize> {
        self.own_inputs.iter().map(|o| o.expert).collect()
    }

    /// Expert `expert`'s tokenizer and tables: its own when the bundle has them, else the
    /// summary's.
    fn embedder(&self, expert: usize) -> (&Tokenizer, &Embeddings) {
        match self.own_inputs.iter().find(|o| o.expert == expert) {
            Some(o) => (&o.tokenizer, &o.embeddings),
            None => (&self.tokenizer, &self.embeddings),
        }
    }

    /// The embedding tables as the device's flash-resident int8 table (format 1 of
    /// `securerouter_device::embedding`, written here because host does not depend on device;
    /// a test ties the two): each row quantised with its own scale, max |v| / 127.
    ///
    /// The device embeds token ids with BERT's positions (0, 1, 2, …) from one table, so an
    /// MPNet bundle, whose positions count after the padding id, is refused, and so is the
    /// bundle of a pool with experts that read inputs of their own.
    pub fn device_table(&self) -> Result<Vec<u8>> {
        if !self.own_inputs.is_empty() {
            invalid!(
                "the bundle holds the embedders of experts {:?}, which read inputs of their own: \
                 the device embeds with one table only (the summary's), so this pool has no \
                 device table",
                self.own_input_experts()
            );
        }
        let e = &self.embeddings;
        if let Positions::AfterPadding { padding_idx } = e.positions {
            invalid!(
                "the bundle is an MPNet model's (positions counted after padding id \
                 {padding_idx}): the device table holds BERT's embeddings only (positions from \
                 0), so MPNet models have no device table"
            );
        }
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

    /// Tokenises `text` with the summary's tokenizer (at most `max_len` tokens) and embeds it:
    /// rows of the summary's hidden size.
    pub fn embed_text(&self, text: &str, max_len: usize) -> Result<Matrix> {
        self.embed_text_for(0, text, max_len)
    }

    /// Tokenises the sentence pair `a`, `b` as the summary's tokenizer lays pairs out (with
    /// their type ids; at most `max_len` tokens in all) and embeds it: rows of the summary's
    /// hidden size.
    pub fn embed_pair(&self, a: &str, b: &str, max_len: usize) -> Result<Matrix> {
        self.embed_pair_for(0, a, b, max_len)
    }

    /// Expert `expert`'s embedded tokens of `text` (at most `max_len`): with its own tokenizer
    /// and tables when the bundle has them, else the summary's.
    pub fn embed_text_for(&self, expert: usize, text: &str, max_len: usize) -> Result<Matrix> {
        let (tokenizer, embeddings) = self.embedder(expert);
        let e = tokenizer.encode(text, max_len)?;
        embeddings.embed(&e.ids, &e.type_ids)
    }

    /// Expert `expert`'s embedded tokens of the sentence pair `a`, `b` (at most `max_len` in
    /// all), as [`embed_text_for`](Self::embed_text_for) chooses the embedder.
    pub fn embed_pair_for(
        &self,
        expert: usize,
        a: &str,
        b: &str,
        max_len: usize,
    ) -> Result<Matrix> {
        let (tokenizer, embeddings) = self.embedder(expert);
        let e = tokenizer.encode_pair(a, b, max_len)?;
        embeddings.embed(&e.ids, &e.type_ids)
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
        let tokenizer = Tokenizer::from_wordpiece(
            WordPiece::from_vocab_text(vocab).unwrap(),
            Path::new("vocab.txt"),
        );
        ClientBundle::save(&model, &tokenizer, &path).unwrap();
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
            tokenizer: Tokenizer::from_wordpiece(
                WordPiece::from_vocab_text("[PAD]\n[UNK]\n[CLS]\n[SEP]").unwrap(),
                Path::new("vocab.txt"),
            ),
            embeddings: Embeddings {
                norm: LayerNorm {
                    gamma: vec![gain, 1.0],
                    eps,
                    ..model.embeddings.norm.clone()
                },
                ..model.embeddings.clone()
            },
            own_inputs: Vec::new(),
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
