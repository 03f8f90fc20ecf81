//! BERT's WordPiece tokenizer (uncased or cased), re-implemented in plain Rust.
//!
//! Client and servers must turn text into exactly the ids the experts were trained with. This
//! module re-implements, step by step, the Hugging Face pipeline that the `tokenizer.json` of
//! `sentence-transformers/all-MiniLM-L6-v2` (and every uncased BERT) specifies, so that a
//! checkpoint with only a `vocab.txt` still tokenizes as Hugging Face would, and the client can
//! tokenize without Hugging Face's crate ([`crate::hf_tokenizer::Tokenizer`] picks a checkpoint
//! folder's `tokenizer.json` when it has one, and this otherwise):
//!
//! 1. **Special tokens.** `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]` and `[MASK]` written verbatim in the
//!    input (case-sensitive, before normalisation, leftmost-longest) are single tokens, as the
//!    reference's `added_tokens` (`normalized: false`) make them.
//! 2. **`BertNormalizer`** (`clean_text`, `handle_chinese_chars`, `lowercase`; `strip_accents` is
//!    unset, so it follows `lowercase`): drop NUL, U+FFFD and control characters, map whitespace
//!    to `' '`, put spaces around CJK ideographs, NFD and drop non-spacing marks (Mn), lowercase.
//!    A cased vocabulary ([`WordPiece::with_lowercase`]`(false)`) skips the last two steps, as
//!    `strip_accents` follows `lowercase` there too.
//! 3. **`BertPreTokenizer`**: split on whitespace (dropped), then every punctuation character is
//!    a word of its own.
//! 4. **WordPiece**: greedy longest-match-first, `##` before continuation pieces; a word of more
//!    than 100 characters, or one that the vocabulary cannot cover, is a single `[UNK]`.
//! 5. **Template**: `[CLS] pieces [SEP]`, type ids all 0, truncation cuts the pieces; a pair is
//!    `[CLS] a [SEP] b [SEP]` with type ids 1 from `b` on, truncated like Hugging Face's
//!    `longest_first` ([`longest_first`]).
//!
//! The character classes are those of the reference's Rust implementation (not of Python's
//! `unicodedata`, which the original BERT code used):
//!
//! * whitespace: Rust's [`char::is_whitespace`] (the Unicode `White_Space` property: tab, LF,
//!   CR, space, Zs, U+2028/U+2029, ...);
//! * control: general category Cc, Cf or Co (private use), except tab, LF and CR;
//! * punctuation: every ASCII punctuation character (`$`, `+`, `^`, `|` included) plus general
//!   category P*;
//! * accents: general category Mn (not Mc or Me).
//!
//! The Cf, P* and Mn tables below are the reference's own (Unicode 8.0), merged into ranges.
//! Known deviation: NFD comes from `unicode-normalization` (Unicode 16) where the reference uses
//! `unicode-normalization-alignments` (Unicode 9), so a character whose canonical decomposition
//! or combining class was first assigned after Unicode 9 may in principle normalise differently.
//! `host/tests/tokenizer.rs` found no such case: every Unicode scalar value, alone and next to
//! letters, encodes exactly as the reference does with the MiniLM vocabulary.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result, invalid};
use unicode_normalization::UnicodeNormalization;

/// Prefix of word pieces that continue a word.
const CONTINUATION_PREFIX: &str = "##";
/// Longer words (in chars) become `[UNK]` without being split.
const MAX_INPUT_CHARS_PER_WORD: usize = 100;
/// Tokens matched verbatim in the input, when the vocabulary has them.
const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// A WordPiece vocabulary and BERT's tokenization pipeline around it.
///
/// Built once from `vocab.txt`; [`WordPiece::encode`] turns a sentence into the model's input
/// ids exactly as Hugging Face's `tokenizers` does for BERT models (uncased unless
/// [`WordPiece::with_lowercase`] says otherwise).
#[derive(Clone, Debug)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
    /// The [`SPECIAL_TOKENS`] present in the vocabulary, with their ids.
    specials: Vec<(String, u32)>,
    pad: u32,
    unk: u32,
    cls: u32,
    sep: u32,
    /// Lowercase and strip accents (uncased models); `false` keeps the text's case.
    lowercase: bool,
}

/// One encoded sentence or pair: what the BERT embedding layer takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids: `[CLS]`, the word pieces, `[SEP]` (then the second segment's pieces and
    /// `[SEP]` for a pair).
    pub ids: Vec<u32>,
    /// Segment (token type) ids, one per id: 0 for the first segment with `[CLS]` and its
    /// `[SEP]`, 1 for the second segment and its `[SEP]`.
    pub type_ids: Vec<u32>,
}

impl Encoding {
    /// How many positions the attention mask covers: all of them, since encodings are never
    /// padded (callers pad to their own shape and mask the rest).
    pub fn attention_len(&self) -> usize {
        self.ids.len()
    }
}

/// The lengths `(n1, n2)` two segments of `len1` and `len2` pieces are cut to so that together
/// they fit `budget`, exactly as Hugging Face's `longest_first` truncation computes them: the
/// shorter segment is kept whole if the longer one can absorb the cut, otherwise each gets half
/// the budget (the odd piece going to the longer one, or to the second on a tie).
pub fn longest_first(len1: usize, len2: usize, budget: usize) -> (usize, usize) {
    if len1 + len2 <= budget {
        return (len1, len2);
    }
    let swap = len1 > len2;
    let (mut n1, mut n2) = if swap { (len2, len1) } else { (len1, len2) };
    n2 = if n1 > budget {
        n1
    } else {
        n2.min(budget - n1).max(n1)
    };
    if n1 + n2 > budget {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
    }
    if swap {
        (n2.min(len1), n1.min(len2))
    } else {
        (n1.min(len1), n2.min(len2))
    }
}

/// A piece of the input between special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment<'t> {
    /// A special token written verbatim: its id.
    Special(u32),
    /// Ordinary text, still to be normalised and split.
    Text(&'t str),
}

impl WordPiece {
    /// Loads `vocab.txt` (one token per line, id = line number - 1).
    ///
    /// # Errors
    /// If the file cannot be read or is not UTF-8, or for the reasons of
    /// [`WordPiece::from_vocab_text`]; messages name the file and the line.
    pub fn from_vocab_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io("reading vocabulary", path))?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                invalid!("{} line {line}: not valid UTF-8", path.display());
            }
        };
        Self::parse(text, &path.display().to_string())
    }

    /// Builds the vocabulary from the text of a `vocab.txt`.
    ///
    /// Like the reference, trailing whitespace (and `\r`) is trimmed from each line.
    ///
    /// # Errors
    /// If the text has no tokens, an empty line, a token twice, or lacks one of `[PAD]`,
    /// `[UNK]`, `[CLS]`, `[SEP]`; messages name the line.
    pub fn from_vocab_text(text: &str) -> Result<Self> {
        Self::parse(text, "vocabulary")
    }

    fn parse(text: &str, source: &str) -> Result<Self> {
        let mut vocab = HashMap::new();
        let mut tokens = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let token = line.trim_end();
            if token.is_empty() {
                invalid!("{source} line {number}: empty token (expected one token per line)");
            }
            let id = u32::try_from(index).map_err(|e| Error::Parse {
                what: format!("{source} line {number}: too many tokens"),
                source: Box::new(e),
            })?;
            if let Some(first) = vocab.insert(token.to_owned(), id) {
                invalid!(
                    "{source} line {number}: token {token:?} already on line {}",
                    first + 1
                );
            }
            tokens.push(token.to_owned());
        }
        if tokens.is_empty() {
            invalid!("{source}: no tokens (expected one token per line)");
        }
        let required = |name: &str| {
            vocab.get(name).copied().ok_or_else(|| {
                Error::Invalid(format!("{source}: the special token {name} is missing"))
            })
        };
        let (pad, unk, cls, sep) = (
            required("[PAD]")?,
            required("[UNK]")?,
            required("[CLS]")?,
            required("[SEP]")?,
        );
        let specials = SPECIAL_TOKENS
            .iter()
            .filter_map(|&s| vocab.get(s).map(|&id| (s.to_owned(), id)))
            .collect();
        Ok(Self {
            vocab,
            tokens,
            specials,
            pad,
            unk,
            cls,
            sep,
            lowercase: true,
        })
    }

    /// The same vocabulary with lowercasing and accent stripping on (uncased models, the
    /// default) or off (cased models, `do_lower_case: false` in `tokenizer_config.json`).
    #[must_use]
    pub fn with_lowercase(mut self, lowercase: bool) -> Self {
        self.lowercase = lowercase;
        self
    }

    /// Whether text is lowercased and stripped of accents before the lookup.
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }

    /// The vocabulary as the text of a `vocab.txt` (one token per line, in id order), which
    /// [`WordPiece::from_vocab_text`] reads back into the same vocabulary.
    pub fn vocab_text(&self) -> String {
        self.tokens.join("\n")
    }

    /// Number of tokens, i.e. rows of the embedding table the ids index.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Encodes one sentence as `[CLS] pieces [SEP]`, at most `max_len` ids in all.
    ///
    /// Word pieces past `max_len - 2` are dropped; `[CLS]` and `[SEP]` always stay (a `max_len`
    /// below 2 counts as 2). There is no padding: callers pad to their own shape.
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let budget = max_len.max(2) - 2;
        let mut ids = vec![self.cls];
        self.pieces_into(text, budget, &mut ids);
        ids.push(self.sep);
        let type_ids = vec![0; ids.len()];
        Encoding { ids, type_ids }
    }

    /// Encodes a pair as `[CLS] a [SEP] b [SEP]`, at most `max_len` ids in all, with type ids 0
    /// up to the first `[SEP]` and 1 after it.
    ///
    /// The pieces are cut as Hugging Face's `longest_first` strategy cuts them (see
    /// [`longest_first`]); the three special tokens always stay (a `max_len` below 3 counts as
    /// 3). Like `tokenizers` (0.23), which segment is the longer is judged after each has been
    /// split only until its pieces reach `max_len` (whole words), so two long segments compare
    /// by those prefixes, not by their full lengths.
    pub fn encode_pair(&self, a: &str, b: &str, max_len: usize) -> Encoding {
        let max_len = max_len.max(3);
        let split = |text| {
            let mut ids = Vec::new();
            self.pieces_until(text, max_len, &mut ids);
            ids
        };
        let (a, b) = (split(a), split(b));
        let (n1, n2) = longest_first(a.len(), b.len(), max_len - 3);
        let mut ids = Vec::with_capacity(n1 + n2 + 3);
        ids.push(self.cls);
        ids.extend_from_slice(&a[..n1]);
        ids.push(self.sep);
        let first = ids.len();
        ids.extend_from_slice(&b[..n2]);
        ids.push(self.sep);
        let mut type_ids = vec![0; first];
        type_ids.resize(ids.len(), 1);
        Encoding { ids, type_ids }
    }

    /// The word-piece ids of `text`, without `[CLS]`/`[SEP]` and untruncated: for counting
    /// tokens or inspecting how a sentence is split.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.pieces_into(text, usize::MAX, &mut ids);
        ids
    }

    /// The token with id `id`, if there is one: for showing and debugging encodings.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of `token` (exact match, e.g. `"##ing"`), if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Id of `[PAD]`, which fills sequences up to a fixed length.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// Id of `[UNK]`, which stands for words the vocabulary cannot cover.
    pub fn unk_id(&self) -> u32 {
        self.unk
    }

    /// Id of `[CLS]`, the first token, whose output the classifier reads.
    pub fn cls_id(&self) -> u32 {
        self.cls
    }

    /// Id of `[SEP]`, the token that ends the sentence.
    pub fn sep_id(&self) -> u32 {
        self.sep
    }

    /// Appends the word pieces of `text` to `out`, at most `limit` of them.
    fn pieces_into(&self, text: &str, limit: usize, out: &mut Vec<u32>) {
        let end = out.len().saturating_add(limit);
        self.pieces_until(text, limit, out);
        out.truncate(end);
    }

    /// Appends the word pieces of `text` to `out`, word by word, until at least `limit` have
    /// been appended (the last word may go past it).
    fn pieces_until(&self, text: &str, limit: usize, out: &mut Vec<u32>) {
        let end = out.len().saturating_add(limit);
        for segment in self.split_specials(text) {
            if out.len() >= end {
                break;
            }
            match segment {
                Segment::Special(id) => out.push(id),
                Segment::Text(text) => {
                    let normalized = normalize(text, self.lowercase);
                    for word in pre_tokenize(&normalized) {
                        if out.len() >= end {
                            break;
                        }
                        self.word_into(word, out);
                    }
                }
            }
        }
    }

    /// Cuts `text` at the special tokens written in it (leftmost match first, the longest of
    /// those starting there).
    fn split_specials<'t>(&self, text: &'t str) -> Vec<Segment<'t>> {
        let mut segments = Vec::new();
        let (mut start, mut at) = (0, 0);
        while let Some(c) = text[at..].chars().next() {
            let rest = &text[at..];
            let found = self
                .specials
                .iter()
                .filter(|(s, _)| rest.starts_with(s.as_str()))
                .max_by_key(|(s, _)| s.len());
            match found {
                Some((s, id)) => {
                    if start < at {
                        segments.push(Segment::Text(&text[start..at]));
                    }
                    segments.push(Segment::Special(*id));
                    at += s.len();
                    start = at;
                }
                None => at += c.len_utf8(),
            }
        }
        if start < text.len() {
            segments.push(Segment::Text(&text[start..]));
        }
        segments
    }

    /// Appends the WordPiece ids of one pre-tokenized word (greedy longest match first), or a
    /// single `[UNK]` if the word is too long or cannot be covered.
    fn word_into(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > MAX_INPUT_CHARS_PER_WORD {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut candidate = String::with_capacity(word.len() + CONTINUATION_PREFIX.len());
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str(CONTINUATION_PREFIX);
                }
                candidate.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(candidate.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= word[start..end]
                    .chars()
                    .next_back()
                    .map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// `BertNormalizer` with clean text, Chinese characters, and (if `lowercase`) accent stripping
/// and lowercasing, in the reference's order.
fn normalize(text: &str, lowercase: bool) -> String {
    let cleaned = text
        .chars()
        .filter(|&c| !(c == '\0' || c == '\u{FFFD}' || is_control(c)))
        .map(|c| if is_whitespace(c) { ' ' } else { c })
        .flat_map(|c| {
            if is_chinese_char(c) {
                [Some(' '), Some(c), Some(' ')]
            } else {
                [Some(c), None, None]
            }
        })
        .flatten();
    if !lowercase {
        return cleaned.collect();
    }
    cleaned
        .nfd()
        .filter(|&c| !is_nonspacing_mark(c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `BertPreTokenizer`: words split at whitespace (dropped) and around punctuation (kept, one
/// character per word).
fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || is_punctuation(c) {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            if !c.is_whitespace() {
                words.push(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

/// Whitespace as the reference's clean-text step sees it: tab, LF, CR and `char::is_whitespace`.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Characters the clean-text step removes: Cc, Cf and Co (private use), but not tab, LF or CR
/// (those are whitespace).
fn is_control(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' => false,
        '\u{0}'..='\u{1F}' | '\u{7F}'..='\u{9F}' => true,
        '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}' => true,
        _ => in_table(c, FORMAT),
    }
}

/// Punctuation for the pre-tokenizer: all ASCII punctuation and general category P*.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || in_table(c, PUNCTUATION)
}

/// Non-spacing marks (Mn), which accent stripping removes after NFD.
fn is_nonspacing_mark(c: char) -> bool {
    in_table(c, NONSPACING_MARK)
}

/// CJK ideographs as BERT's `_is_chinese_char` defines them (not Hangul, Hiragana or Katakana).
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Whether `c` lies in one of the sorted, disjoint inclusive ranges of `table`.
fn in_table(c: char, table: &[(u32, u32)]) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                Ordering::Less
            } else if lo > c {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

// Generated from the `unicode_categories` 0.1.1 tables (Unicode 8.0 `UnicodeData.txt`): the
// exact sets the reference tokenizer tests, merged into inclusive ranges.

/// General category P* (Pc, Pd, Ps, Pe, Pi, Pf, Po).
#[rustfmt::skip]
const PUNCTUATION: &[(u32, u32)] = &[
    (0x0021, 0x0023), (0x0025, 0x002A), (0x002C, 0x002F), (0x003A, 0x003B),
    (0x003F, 0x0040), (0x005B, 0x005D), (0x005F, 0x005F), (0x007B, 0x007B),
    (0x007D, 0x007D), (0x00A1, 0x00A1), (0x00A7, 0x00A7), (0x00AB, 0x00AB),
    (0x00B6, 0x00B7), (0x00BB, 0x00BB), (0x00BF, 0x00BF), (0x037E, 0x037E),
    (0x0387, 0x0387), (0x055A, 0x055F), (0x0589, 0x058A), (0x05BE, 0x05BE),
    (0x05C0, 0x05C0), (0x05C3, 0x05C3), (0x05C6, 0x05C6), (0x05F3, 0x05F4),
    (0x0609, 0x060A), (0x060C, 0x060D), (0x061B, 0x061B), (0x061E, 0x061F),
    (0x066A, 0x066D), (0x06D4, 0x06D4), (0x0700, 0x070D), (0x07F7, 0x07F9),
    (0x0830, 0x083E), (0x085E, 0x085E), (0x0964, 0x0965), (0x0970, 0x0970),
    (0x0AF0, 0x0AF0), (0x0DF4, 0x0DF4), (0x0E4F, 0x0E4F), (0x0E5A, 0x0E5B),
    (0x0F04, 0x0F12), (0x0F14, 0x0F14), (0x0F3A, 0x0F3D), (0x0F85, 0x0F85),
    (0x0FD0, 0x0FD4), (0x0FD9, 0x0FDA), (0x104A, 0x104F), (0x10FB, 0x10FB),
    (0x1360, 0x1368), (0x1400, 0x1400), (0x166D, 0x166E), (0x169B, 0x169C),
    (0x16EB, 0x16ED), (0x1735, 0x1736), (0x17D4, 0x17D6), (0x17D8, 0x17DA),
    (0x1800, 0x180A), (0x1944, 0x1945), (0x1A1E, 0x1A1F), (0x1AA0, 0x1AA6),
    (0x1AA8, 0x1AAD), (0x1B5A, 0x1B60), (0x1BFC, 0x1BFF), (0x1C3B, 0x1C3F),
    (0x1C7E, 0x1C7F), (0x1CC0, 0x1CC7), (0x1CD3, 0x1CD3), (0x2010, 0x2027),
    (0x2030, 0x2043), (0x2045, 0x2051), (0x2053, 0x205E), (0x207D, 0x207E),
    (0x208D, 0x208E), (0x2308, 0x230B), (0x2329, 0x232A), (0x2768, 0x2775),
    (0x27C5, 0x27C6), (0x27E6, 0x27EF), (0x2983, 0x2998), (0x29D8, 0x29DB),
    (0x29FC, 0x29FD), (0x2CF9, 0x2CFC), (0x2CFE, 0x2CFF), (0x2D70, 0x2D70),
    (0x2E00, 0x2E2E), (0x2E30, 0x2E42), (0x3001, 0x3003), (0x3008, 0x3011),
    (0x3014, 0x301F), (0x3030, 0x3030), (0x303D, 0x303D), (0x30A0, 0x30A0),
    (0x30FB, 0x30FB), (0xA4FE, 0xA4FF), (0xA60D, 0xA60F), (0xA673, 0xA673),
    (0xA67E, 0xA67E), (0xA6F2, 0xA6F7), (0xA874, 0xA877), (0xA8CE, 0xA8CF),
    (0xA8F8, 0xA8FA), (0xA8FC, 0xA8FC), (0xA92E, 0xA92F), (0xA95F, 0xA95F),
    (0xA9C1, 0xA9CD), (0xA9DE, 0xA9DF), (0xAA5C, 0xAA5F), (0xAADE, 0xAADF),
    (0xAAF0, 0xAAF1), (0xABEB, 0xABEB), (0xFD3E, 0xFD3F), (0xFE10, 0xFE19),
    (0xFE30, 0xFE52), (0xFE54, 0xFE61), (0xFE63, 0xFE63), (0xFE68, 0xFE68),
    (0xFE6A, 0xFE6B), (0xFF01, 0xFF03), (0xFF05, 0xFF0A), (0xFF0C, 0xFF0F),
    (0xFF1A, 0xFF1B), (0xFF1F, 0xFF20), (0xFF3B, 0xFF3D), (0xFF3F, 0xFF3F),
    (0xFF5B, 0xFF5B), (0xFF5D, 0xFF5D), (0xFF5F, 0xFF65), (0x10100, 0x10102),
    (0x1039F, 0x1039F), (0x103D0, 0x103D0), (0x1056F, 0x1056F), (0x10857, 0x10857),
    (0x1091F, 0x1091F), (0x1093F, 0x1093F), (0x10A50, 0x10A58), (0x10A7F, 0x10A7F),
    (0x10AF0, 0x10AF6), (0x10B39, 0x10B3F), (0x10B99, 0x10B9C), (0x11047, 0x1104D),
    (0x110BB, 0x110BC), (0x110BE, 0x110C1), (0x11140, 0x11143), (0x11174, 0x11175),
    (0x111C5, 0x111C9), (0x111CD, 0x111CD), (0x111DB, 0x111DB), (0x111DD, 0x111DF),
    (0x11238, 0x1123D), (0x112A9, 0x112A9), (0x114C6, 0x114C6), (0x115C1, 0x115D7),
    (0x11641, 0x11643), (0x1173C, 0x1173E), (0x12470, 0x12474), (0x16A6E, 0x16A6F),
    (0x16AF5, 0x16AF5), (0x16B37, 0x16B3B), (0x16B44, 0x16B44), (0x1BC9F, 0x1BC9F),
    (0x1DA87, 0x1DA8B),
];

/// General category Cf (format characters: soft hyphen, zero-width joiners, BOM, tags...).
#[rustfmt::skip]
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
    (0x070F, 0x070F), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// General category Mn (non-spacing marks), the accents that `strip_accents` removes after NFD.
#[rustfmt::skip]
const NONSPACING_MARK: &[(u32, u32)] = &[
    (0x0300, 0x036F), (0x0483, 0x0487), (0x0591, 0x05BD), (0x05BF, 0x05BF),
    (0x05C1, 0x05C2), (0x05C4, 0x05C5), (0x05C7, 0x05C7), (0x0610, 0x061A),
    (0x064B, 0x065F), (0x0670, 0x0670), (0x06D6, 0x06DC), (0x06DF, 0x06E4),
    (0x06E7, 0x06E8), (0x06EA, 0x06ED), (0x0711, 0x0711), (0x0730, 0x074A),
    (0x07A6, 0x07B0), (0x07EB, 0x07F3), (0x0816, 0x0819), (0x081B, 0x0823),
    (0x0825, 0x0827), (0x0829, 0x082D), (0x0859, 0x085B), (0x08E3, 0x0902),
    (0x093A, 0x093A), (0x093C, 0x093C), (0x0941, 0x0948), (0x094D, 0x094D),
    (0x0951, 0x0957), (0x0962, 0x0963), (0x0981, 0x0981), (0x09BC, 0x09BC),
    (0x09C1, 0x09C4), (0x09CD, 0x09CD), (0x09E2, 0x09E3), (0x0A01, 0x0A02),
    (0x0A3C, 0x0A3C), (0x0A41, 0x0A42), (0x0A47, 0x0A48), (0x0A4B, 0x0A4D),
    (0x0A51, 0x0A51), (0x0A70, 0x0A71), (0x0A75, 0x0A75), (0x0A81, 0x0A82),
    (0x0ABC, 0x0ABC), (0x0AC1, 0x0AC5), (0x0AC7, 0x0AC8), (0x0ACD, 0x0ACD),
    (0x0AE2, 0x0AE3), (0x0B01, 0x0B01), (0x0B3C, 0x0B3C), (0x0B3F, 0x0B3F),
    (0x0B41, 0x0B44), (0x0B4D, 0x0B4D), (0x0B56, 0x0B56), (0x0B62, 0x0B63),
    (0x0B82, 0x0B82), (0x0BC0, 0x0BC0), (0x0BCD, 0x0BCD), (0x0C00, 0x0C00),
    (0x0C3E, 0x0C40), (0x0C46, 0x0C48), (0x0C4A, 0x0C4D), (0x0C55, 0x0C56),
    (0x0C62, 0x0C63), (0x0C81, 0x0C81), (0x0CBC, 0x0CBC), (0x0CBF, 0x0CBF),
    (0x0CC6, 0x0CC6), (0x0CCC, 0x0CCD), (0x0CE2, 0x0CE3), (0x0D01, 0x0D01),
    (0x0D41, 0x0D44), (0x0D4D, 0x0D4D), (0x0D62, 0x0D63), (0x0DCA, 0x0DCA),
    (0x0DD2, 0x0DD4), (0x0DD6, 0x0DD6), (0x0E31, 0x0E31), (0x0E34, 0x0E3A),
    (0x0E47, 0x0E4E), (0x0EB1, 0x0EB1), (0x0EB4, 0x0EB9), (0x0EBB, 0x0EBC),
    (0x0EC8, 0x0ECD), (0x0F18, 0x0F19), (0x0F35, 0x0F35), (0x0F37, 0x0F37),
    (0x0F39, 0x0F39), (0x0F71, 0x0F7E), (0x0F80, 0x0F84), (0x0F86, 0x0F87),
    (0x0F8D, 0x0F97), (0x0F99, 0x0FBC), (0x0FC6, 0x0FC6), (0x102D, 0x1030),
    (0x1032, 0x1037), (0x1039, 0x103A), (0x103D, 0x103E), (0x1058, 0x1059),
    (0x105E, 0x1060), (0x1071, 0x1074), (0x1082, 0x1082), (0x1085, 0x1086),
    (0x108D, 0x108D), (0x109D, 0x109D), (0x135D, 0x135F), (0x1712, 0x1714),
    (0x1732, 0x1734), (0x1752, 0x1753), (0x1772, 0x1773), (0x17B4, 0x17B5),
    (0x17B7, 0x17BD), (0x17C6, 0x17C6), (0x17C9, 0x17D3), (0x17DD, 0x17DD),
    (0x180B, 0x180D), (0x18A9, 0x18A9), (0x1920, 0x1922), (0x1927, 0x1928),
    (0x1932, 0x1932), (0x1939, 0x193B), (0x1A17, 0x1A18), (0x1A1B, 0x1A1B),
    (0x1A56, 0x1A56), (0x1A58, 0x1A5E), (0x1A60, 0x1A60), (0x1A62, 0x1A62),
    (0x1A65, 0x1A6C), (0x1A73, 0x1A7C), (0x1A7F, 0x1A7F), (0x1AB0, 0x1ABD),
    (0x1B00, 0x1B03), (0x1B34, 0x1B34), (0x1B36, 0x1B3A), (0x1B3C, 0x1B3C),
    (0x1B42, 0x1B42), (0x1B6B, 0x1B73), (0x1B80, 0x1B81), (0x1BA2, 0x1BA5),
    (0x1BA8, 0x1BA9), (0x1BAB, 0x1BAD), (0x1BE6, 0x1BE6), (0x1BE8, 0x1BE9),
    (0x1BED, 0x1BED), (0x1BEF, 0x1BF1), (0x1C2C, 0x1C33), (0x1C36, 0x1C37),
    (0x1CD0, 0x1CD2), (0x1CD4, 0x1CE0), (0x1CE2, 0x1CE8), (0x1CED, 0x1CED),
    (0x1CF4, 0x1CF4), (0x1CF8, 0x1CF9), (0x1DC0, 0x1DF5), (0x1DFC, 0x1DFF),
    (0x20D0, 0x20DC), (0x20E1, 0x20E1), (0x20E5, 0x20F0), (0x2CEF, 0x2CF1),
    (0x2D7F, 0x2D7F), (0x2DE0, 0x2DFF), (0x302A, 0x302D), (0x3099, 0x309A),
    (0xA66F, 0xA66F), (0xA674, 0xA67D), (0xA69E, 0xA69F), (0xA6F0, 0xA6F1),
    (0xA802, 0xA802), (0xA806, 0xA806), (0xA80B, 0xA80B), (0xA825, 0xA826),
    (0xA8C4, 0xA8C4), (0xA8E0, 0xA8F1), (0xA926, 0xA92D), (0xA947, 0xA951),
    (0xA980, 0xA982), (0xA9B3, 0xA9B3), (0xA9B6, 0xA9B9), (0xA9BC, 0xA9BC),
    (0xA9E5, 0xA9E5), (0xAA29, 0xAA2E), (0xAA31, 0xAA32), (0xAA35, 0xAA36),
    (0xAA43, 0xAA43), (0xAA4C, 0xAA4C), (0xAA7C, 0xAA7C), (0xAAB0, 0xAAB0),
    (0xAAB2, 0xAAB4), (0xAAB7, 0xAAB8), (0xAABE, 0xAABF), (0xAAC1, 0xAAC1),
    (0xAAEC, 0xAAED), (0xAAF6, 0xAAF6), (0xABE5, 0xABE5), (0xABE8, 0xABE8),
    (0xABED, 0xABED), (0xFB1E, 0xFB1E), (0xFE00, 0xFE0F), (0xFE20, 0xFE2F),
    (0x101FD, 0x101FD), (0x102E0, 0x102E0), (0x10376, 0x1037A), (0x10A01, 0x10A03),
    (0x10A05, 0x10A06), (0x10A0C, 0x10A0F), (0x10A38, 0x10A3A), (0x10A3F, 0x10A3F),
    (0x10AE5, 0x10AE6), (0x11001, 0x11001), (0x11038, 0x11046), (0x1107F, 0x11081),
    (0x110B3, 0x110B6), (0x110B9, 0x110BA), (0x11100, 0x11102), (0x11127, 0x1112B),
    (0x1112D, 0x11134), (0x11173, 0x11173), (0x11180, 0x11181), (0x111B6, 0x111BE),
    (0x111CA, 0x111CC), (0x1122F, 0x11231), (0x11234, 0x11234), (0x11236, 0x11237),
    (0x112DF, 0x112DF), (0x112E3, 0x112EA), (0x11300, 0x11301), (0x1133C, 0x1133C),
    (0x11340, 0x11340), (0x11366, 0x1136C), (0x11370, 0x11374), (0x114B3, 0x114B8),
    (0x114BA, 0x114BA), (0x114BF, 0x114C0), (0x114C2, 0x114C3), (0x115B2, 0x115B5),
    (0x115BC, 0x115BD), (0x115BF, 0x115C0), (0x115DC, 0x115DD), (0x11633, 0x1163A),
    (0x1163D, 0x1163D), (0x1163F, 0x11640), (0x116AB, 0x116AB), (0x116AD, 0x116AD),
    (0x116B0, 0x116B5), (0x116B7, 0x116B7), (0x1171D, 0x1171F), (0x11722, 0x11725),
    (0x11727, 0x1172B), (0x16AF0, 0x16AF4), (0x16B30, 0x16B36), (0x16F8F, 0x16F92),
    (0x1BC9D, 0x1BC9E), (0x1D167, 0x1D169), (0x1D17B, 0x1D182), (0x1D185, 0x1D18B),
    (0x1D1AA, 0x1D1AD), (0x1D242, 0x1D244), (0x1DA00, 0x1DA36), (0x1DA3B, 0x1DA6C),
    (0x1DA75, 0x1DA75), (0x1DA84, 0x1DA84), (0x1DA9B, 0x1DA9F), (0x1DAA1, 0x1DAAF),
    (0x1E8D0, 0x1E8D6), (0xE0100, 0xE01EF),
];

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\nworld\n!\n'\ndon\nt\n##s\n中\n";

    fn tiny() -> WordPiece {
        WordPiece::from_vocab_text(TINY).unwrap()
    }

    #[test]
    fn tables_are_sorted_and_disjoint() {
        for table in [PUNCTUATION, FORMAT, NONSPACING_MARK] {
            for w in table.windows(2) {
                assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
            }
        }
    }

    #[test]
    fn punctuation() {
        for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡§«»¿–—‘’“”…、。「」！，？·".chars()
        {
            assert!(is_punctuation(c), "{c:?}");
        }
        for c in "aZ09 €£©°±×÷™😀中\u{3000}".chars() {
            assert!(!is_punctuation(c), "{c:?}");
        }
    }

    #[test]
    fn control_and_whitespace() {
        for c in [
            '\0', '\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{ad}', '\u{200b}', '\u{200d}',
        ] {
            assert!(is_control(c), "{c:?}");
        }
        for c in [
            '\u{feff}',
            '\u{e000}',
            '\u{e45e}',
            '\u{f8ff}',
            '\u{e0041}',
            '\u{10fffd}',
        ] {
            assert!(is_control(c), "{c:?}");
        }
        // Tab, LF, CR are whitespace.
        for c in ['\t', '\n', '\r', ' ', 'a', '\u{fffe}', '😀'] {
            assert!(!is_control(c), "{c:?}");
        }
        for c in [
            '\t', '\n', '\r', ' ', '\u{a0}', '\u{2003}', '\u{2028}', '\u{3000}',
        ] {
            assert!(is_whitespace(c), "{c:?}");
        }
        assert!(!is_whitespace('\u{200b}') && !is_whitespace('x'));
    }

    #[test]
    fn chinese_and_marks() {
        assert!(
            is_chinese_char('中') && is_chinese_char('\u{20000}') && is_chinese_char('\u{f900}')
        );
        assert!(!is_chinese_char('あ') && !is_chinese_char('한') && !is_chinese_char('a'));
        assert!(is_nonspacing_mark('\u{301}') && is_nonspacing_mark('\u{308}'));
        // Devanagari vowel sign AA is Mc: kept, unlike `is_combining_mark`.
        assert!(!is_nonspacing_mark('\u{93e}') && !is_nonspacing_mark('e'));
    }

    fn normalize_uncased(text: &str) -> String {
        normalize(text, true)
    }

    #[test]
    fn cased_normalizer_keeps_case_and_accents() {
        assert_eq!(normalize("Héllo\tWÖRLD中", false), "Héllo WÖRLD 中 ");
    }

    #[test]
    fn longest_first_matches_hugging_face() {
        // The cases of `tokenizers`' own test (budget 7): short 2, medium 4, long 7 (or more).
        for (len1, len2, want) in [
            (0, 0, (0, 0)),
            (0, 7, (0, 7)),
            (2, 7, (2, 5)),
            (4, 4, (3, 4)),
            (4, 9, (3, 4)),
            (9, 2, (5, 2)),
            (9, 4, (4, 3)),
            (9, 9, (3, 4)),
            (4, 2, (4, 2)),
        ] {
            assert_eq!(longest_first(len1, len2, 7), want, "{len1} {len2}");
        }
        assert_eq!(longest_first(5, 5, 0), (0, 0));
    }

    #[test]
    fn encode_pair_types_and_truncation() {
        let wp = tiny();
        let e = wp.encode_pair("unaffable", "hello", 16);
        assert_eq!(e.ids, [2, 5, 6, 7, 3, 8, 3]);
        assert_eq!(e.type_ids, [0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(e.attention_len(), 7);
        let e = wp.encode_pair("unaffable", "hello", 5);
        assert_eq!(e.ids, [2, 5, 3, 8, 3]);
        assert_eq!(wp.encode_pair("unaffable", "hello", 0).ids, [2, 3, 3]);
    }

    #[test]
    fn normalizer() {
        assert_eq!(normalize_uncased("Héllo\tWÖRLD\r\n"), "hello world  ");
        assert_eq!(
            normalize_uncased("Ångström naïve CAFÉ"),
            "angstrom naive cafe"
        );
        assert_eq!(normalize_uncased("中文ok"), " 中  文 ok");
        assert_eq!(normalize_uncased("a\0b\u{fffd}c\u{200b}d\u{7}e"), "abcde");
        assert_eq!(normalize_uncased("İ"), "i");
        assert_eq!(normalize_uncased(""), "");
    }

    #[test]
    fn pre_tokenizer() {
        assert_eq!(
            pre_tokenize("don't  stop!!  state-of-the-art "),
            [
                "don", "'", "t", "stop", "!", "!", "state", "-", "of", "-", "the", "-", "art"
            ]
        );
        assert_eq!(pre_tokenize("  "), Vec::<&str>::new());
        assert_eq!(pre_tokenize("a$b"), ["a", "$", "b"]);
    }

    #[test]
    fn wordpiece_greedy_longest_match() {
        let wp = tiny();
        let ids = |t: &str| wp.tokenize(t);
        assert_eq!(ids("unaffable"), [5, 6, 7]);
        assert_eq!(ids("Hello, world!"), [8, 1, 9, 10]); // "," is not in the vocabulary
        assert_eq!(ids("unx hello"), [1, 8]); // a word that cannot be covered is one [UNK]
        assert_eq!(ids(&"un".repeat(51)), [1]); // 102 chars: [UNK] without trying
        assert_eq!(ids("don't"), [12, 11, 13]);
        assert_eq!(ids("中"), [15]);
    }

    #[test]
    fn special_tokens_in_text() {
        let wp = tiny();
        assert_eq!(wp.tokenize("hello[SEP]world [MASK]"), [8, 3, 9, 4]);
        // Case-sensitive and verbatim only.
        assert_eq!(wp.tokenize("[sep]"), [1, 1, 1]);
        let segments = wp.split_specials("[CLS][SEP");
        assert_eq!(segments, [Segment::Special(2), Segment::Text("[SEP")]);
    }

    #[test]
    fn encode_and_truncate() {
        let wp = tiny();
        let e = wp.encode("unaffable hello", 16);
        assert_eq!(e.ids, [2, 5, 6, 7, 8, 3]);
        assert_eq!(e.type_ids, [0; 6]);
        assert_eq!(wp.encode("unaffable hello", 4).ids, [2, 5, 6, 3]);
        assert_eq!(wp.encode("unaffable", 0).ids, [2, 3]);
        assert_eq!(wp.encode("", 8).ids, [2, 3]);
    }

    #[test]
    fn vocabulary_lookups() {
        let wp = tiny();
        assert_eq!(wp.vocab_size(), 16);
        assert_eq!(wp.token(6), Some("##aff"));
        assert_eq!(wp.token(16), None);
        assert_eq!(wp.id("##able"), Some(7));
        assert_eq!(wp.id("able"), None);
        assert_eq!(
            (wp.pad_id(), wp.unk_id(), wp.cls_id(), wp.sep_id()),
            (0, 1, 2, 3)
        );
        // CRLF and trailing spaces are trimmed.
        let crlf = WordPiece::from_vocab_text("[PAD]\r\n[UNK] \r\n[CLS]\r\n[SEP]\r\n").unwrap();
        assert_eq!(crlf.id("[UNK]"), Some(1));
    }
}
