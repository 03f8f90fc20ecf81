//! The tokenizer of a Hugging Face checkpoint folder, whichever files it has.
//!
//! Users bring checkpoints tokenized in many ways (cased or uncased, their own special tokens,
//! sentence pairs), and the ids must be exactly those the model was trained with. So a folder's
//! `tokenizer.json` runs through Hugging Face's own `tokenizers` crate; a folder with only a
//! `vocab.txt` (older BERT checkpoints) falls back to this crate's [`WordPiece`], which
//! reproduces the BERT pipeline, cased or uncased. Either way the result is a plain
//! [`Encoding`], truncated as Hugging Face's `longest_first` strategy truncates, never padded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::tokenizer::{Encoding, WordPiece};
use tokenizers::{PostProcessor, TruncationParams, TruncationStrategy};

/// The file Hugging Face's `tokenizers` saves a whole tokenizer pipeline in.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// A WordPiece vocabulary, one token per line: the fallback when there is no `tokenizer.json`.
pub const VOCAB_TXT: &str = "vocab.txt";
/// Settings of the Python tokenizer; only `do_lower_case` matters for the `vocab.txt` fallback.
pub const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";

/// A checkpoint's tokenizer: Hugging Face's pipeline from `tokenizer.json`, or WordPiece from
/// `vocab.txt`.
#[derive(Debug)]
pub struct Tokenizer {
    backend: Backend,
    /// The file it was loaded from, for error messages.
    path: PathBuf,
}

#[derive(Debug)]
enum Backend {
    /// Behind a lock because `tokenizers` takes the truncation length as a setting of the
    /// tokenizer (`&mut`), and its truncation is only exactly Hugging Face's when that setting
    /// drives it: it also stops splitting each segment once it has `max_length` tokens.
    /// `json` is the `tokenizer.json` text it was built from, which a client bundle stores.
    HuggingFace {
        tokenizer: Box<Mutex<tokenizers::Tokenizer>>,
        json: Arc<str>,
    },
    WordPiece(WordPiece),
}

impl Clone for Tokenizer {
    fn clone(&self) -> Self {
        let backend = match &self.backend {
            Backend::HuggingFace { tokenizer, json } => {
                let tokenizer = tokenizer.lock().unwrap_or_else(PoisonError::into_inner);
                Backend::HuggingFace {
                    tokenizer: Box::new(Mutex::new(tokenizer.clone())),
                    json: Arc::clone(json),
                }
            }
            Backend::WordPiece(wordpiece) => Backend::WordPiece(wordpiece.clone()),
        };
        Self {
            backend,
            path: self.path.clone(),
        }
    }
}

impl Tokenizer {
    /// Loads the tokenizer of checkpoint folder `dir`: its `tokenizer.json` if there is one,
    /// else its `vocab.txt` (lowercasing unless `tokenizer_config.json` says
    /// `"do_lower_case": false`). The `vocab.txt` fallback is BERT's pipeline (`[CLS]`,
    /// `[SEP]`): a folder whose `config.json` says `"model_type": "mpnet"` needs its
    /// `tokenizer.json`.
    ///
    /// # Errors
    /// [`Error::NoTokenizer`] if the folder has neither file; otherwise the errors of
    /// [`Tokenizer::from_tokenizer_json`] or [`Tokenizer::from_vocab_txt`], or
    /// [`Error::Json`] for a malformed `tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join(TOKENIZER_JSON);
        if json.is_file() {
            return Self::from_tokenizer_json(&json);
        }
        let vocab = dir.join(VOCAB_TXT);
        if vocab.is_file() {
            refuse_non_bert_fallback(dir)?;
            let lowercase = do_lower_case(&dir.join(TOKENIZER_CONFIG_JSON))?;
            return Self::from_vocab_txt(&vocab, lowercase);
        }
        Err(Error::NoTokenizer {
            dir: dir.to_path_buf(),
        })
    }

    /// Loads a `tokenizer.json` with Hugging Face's `tokenizers`. Any truncation or padding it
    /// was saved with is dropped: [`Tokenizer::encode`] takes the length per call.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Tokenizer`], naming the file, if it
    /// cannot be parsed.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
        Self::build_json(json, path, "loading the tokenizer")
    }

    /// The tokenizer of a `tokenizer.json`'s text (`json`), as [`Tokenizer::from_tokenizer_json`]
    /// loads it from a file; `origin` names where the text came from (a client bundle) in
    /// error messages. The text may come from an untrusted file: a panic of `tokenizers` on
    /// it is caught and reported as an error.
    ///
    /// # Errors
    /// [`Error::Tokenizer`], naming `origin`, if `tokenizers` refuses the text.
    pub fn from_tokenizer_json_text(json: &str, origin: &Path) -> Result<Self> {
        Self::build_json(
            json.to_owned(),
            origin,
            "loading the tokenizer.json stored in",
        )
    }

    fn build_json(json: String, path: &Path, action: &'static str) -> Result<Self> {
        let error = |source: tokenizers::Error| Error::Tokenizer {
            action,
            path: path.to_path_buf(),
            source,
        };
        let parsed = std::panic::catch_unwind(|| json.parse::<tokenizers::Tokenizer>())
            .unwrap_or_else(|_| Err("the tokenizers crate panicked on this tokenizer.json".into()));
        let mut tokenizer = parsed.map_err(error)?;
        tokenizer.with_truncation(None).map_err(error)?;
        tokenizer.with_padding(None);
        Ok(Self {
            backend: Backend::HuggingFace {
                tokenizer: Box::new(Mutex::new(tokenizer)),
                json: json.into(),
            },
            path: path.to_path_buf(),
        })
    }

    /// A tokenizer of this crate's [`WordPiece`] (BERT's pipeline, cased or uncased as
    /// `wordpiece` says); `origin` names where its vocabulary came from in error messages.
    pub fn from_wordpiece(wordpiece: WordPiece, origin: &Path) -> Self {
        Self {
            backend: Backend::WordPiece(wordpiece),
            path: origin.to_path_buf(),
        }
    }

    /// Loads a `vocab.txt` as this crate's [`WordPiece`], lowercasing and stripping accents if
    /// `lowercase` (uncased models).
    ///
    /// # Errors
    /// Those of [`WordPiece::from_vocab_file`].
    pub fn from_vocab_txt(path: &Path, lowercase: bool) -> Result<Self> {
        let wordpiece = WordPiece::from_vocab_file(path)?.with_lowercase(lowercase);
        Ok(Self {
            backend: Backend::WordPiece(wordpiece),
            path: path.to_path_buf(),
        })
    }

    /// The file the tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hand-written WordPiece, when the tokenizer came from a `vocab.txt`.
    pub fn wordpiece(&self) -> Option<&WordPiece> {
        match &self.backend {
            Backend::WordPiece(wordpiece) => Some(wordpiece),
            Backend::HuggingFace { .. } => None,
        }
    }

    /// The `tokenizer.json` text, when the tokenizer came from one.
    pub fn tokenizer_json(&self) -> Option<&str> {
        match &self.backend {
            Backend::HuggingFace { json, .. } => Some(json),
            Backend::WordPiece(_) => None,
        }
    }

    /// One past the largest token id the tokenizer can produce (added tokens included): the
    /// word-embedding rows a model needs at least.
    pub fn vocab_size(&self) -> usize {
        match &self.backend {
            Backend::WordPiece(wordpiece) => wordpiece.vocab_size(),
            Backend::HuggingFace { tokenizer, .. } => {
                let tokenizer = tokenizer.lock().unwrap_or_else(PoisonError::into_inner);
                tokenizer
                    .get_vocab(true)
                    .values()
                    .max()
                    .map_or(0, |&id| id as usize + 1)
            }
        }
    }

    /// Encodes one sentence with the special tokens of the model (`[CLS] pieces [SEP]` for
    /// BERT, `<s> pieces </s>` for MPNet), at most `max_len` ids in all; the special tokens
    /// always stay.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if Hugging Face's pipeline fails on the text.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Encoding> {
        match &self.backend {
            Backend::WordPiece(wordpiece) => Ok(wordpiece.encode(text, max_len)),
            Backend::HuggingFace { tokenizer, .. } => {
                self.encode_hf(tokenizer, text, None, max_len)
            }
        }
    }

    /// Encodes a sentence pair (`[CLS] a [SEP] b [SEP]` for BERT, type ids 0 then 1;
    /// `<s> a </s></s> b </s>` for MPNet, type ids all 0, as its `tokenizer.json` says), at most
    /// `max_len` ids in all, cutting the longer segment first as Hugging Face's
    /// `longest_first` truncation does; the special tokens always stay.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if Hugging Face's pipeline fails on the text.
    pub fn encode_pair(&self, a: &str, b: &str, max_len: usize) -> Result<Encoding> {
        match &self.backend {
            Backend::WordPiece(wordpiece) => Ok(wordpiece.encode_pair(a, b, max_len)),
            Backend::HuggingFace { tokenizer, .. } => {
                self.encode_hf(tokenizer, a, Some(b), max_len)
            }
        }
    }

    /// Encodes one sentence, or a pair when `pair` is given ([`encode`](Self::encode),
    /// [`encode_pair`](Self::encode_pair)).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if Hugging Face's pipeline fails on the text.
    pub fn encode_input(&self, text: &str, pair: Option<&str>, max_len: usize) -> Result<Encoding> {
        match pair {
            Some(b) => self.encode_pair(text, b, max_len),
            None => self.encode(text, max_len),
        }
    }

    /// Hugging Face's own `encode`, with `longest_first` truncation to `max_len` (raised to
    /// the template's special tokens, which `tokenizers` cannot cut) and no padding.
    fn encode_hf(
        &self,
        tokenizer: &Mutex<tokenizers::Tokenizer>,
        a: &str,
        b: Option<&str>,
        max_len: usize,
    ) -> Result<Encoding> {
        let error = |source: tokenizers::Error| Error::Tokenizer {
            action: "encoding with the tokenizer",
            path: self.path.clone(),
            source,
        };
        // A panic elsewhere cannot leave the tokenizer half-changed: only the truncation
        // length is written, and it is set again below.
        let mut tokenizer = tokenizer.lock().unwrap_or_else(PoisonError::into_inner);
        let added = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(b.is_some()));
        let max_length = max_len.max(added);
        if tokenizer.get_truncation().map(|t| t.max_length) != Some(max_length) {
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length,
                    strategy: TruncationStrategy::LongestFirst,
                    ..TruncationParams::default()
                }))
                .map_err(error)?;
        }
        let encoding = match b {
            None => tokenizer.encode(a, true),
            Some(b) => tokenizer.encode((a, b), true),
        }
        .map_err(error)?;
        Ok(Encoding {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }
}

/// Refuses the `vocab.txt` fallback for a folder whose `config.json` names MPNet, whose special
/// tokens (`<s>`, `</s>`) and pair layout are not BERT's. A folder without a readable
/// `config.json` is left to the fallback.
fn refuse_non_bert_fallback(dir: &Path) -> Result<()> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let model_type = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|c| {
            c.get("model_type")
                .and_then(|t| t.as_str().map(String::from))
        });
    if model_type.as_deref() == Some(crate::mpnet::MODEL_TYPE) {
        return Err(Error::Invalid(format!(
            "{}: model_type \"mpnet\" needs its {TOKENIZER_JSON}; the {VOCAB_TXT} fallback is \
             BERT's tokenizer ([CLS] and [SEP], not <s> and </s>)",
            dir.display()
        )));
    }
    Ok(())
}

/// `do_lower_case` of a `tokenizer_config.json`; `true` (BERT's default) if the file or the key
/// is absent.
fn do_lower_case(path: &Path) -> Result<bool> {
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        what: format!("{} is not valid JSON", path.display()),
        source,
    })?;
    match config.get("do_lower_case") {
        None | Some(serde_json::Value::Null) => Ok(true),
        Some(serde_json::Value::Bool(lowercase)) => Ok(*lowercase),
        Some(other) => Err(Error::Invalid(format!(
            "{}: do_lower_case is {other}, expected true or false",
            path.display()
        ))),
    }
}
