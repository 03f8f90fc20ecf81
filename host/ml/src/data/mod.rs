//! Labelled sentences for training and evaluating routers and experts, all offline.
//!
//! - [`rotten_tomatoes`]: the 10,605 Rotten Tomatoes review sentences of the VADER study
//!   (Hutto & Gilbert, ICWSM 2014; the pool SST-2 is drawn from), each with the mean score of at
//!   least 20 human raters in [-4, 4], from the pinned [`VADER`] asset. [`vader_snippets`] reads
//!   the study's other corpora (tweets, Amazon reviews, NYT editorials) the same way.
//! - [`glue_tsv`]: a single-sentence GLUE-style TSV file (header line, tab-separated columns)
//!   as [`LabelledSentence`]s.
//! - [`Task`] (in `glue`): the paper's eight GLUE tasks read from the files GLUE ships (no GLUE
//!   task ships offline; users bring their own copy), each as [`Example`]s (a sentence or a
//!   pair, a class or a score) with the task's [`LabelSet`] and metric.
//! - [`read_table`] (in `table`): a user's own data as CSV, TSV or JSON Lines, columns named by
//!   the caller, labels named, numbered or scores.
//! - [`TaskData`] (in `task_data`): a task split for training and held out, with its labels
//!   and metric, from a [`DataSource`] (GLUE files, a table, or the Rotten Tomatoes sentences).
//! - [`split`]: a deterministic train/test split, shuffled with AES-CTR from a fixed seed.
//!
//! Readers never panic on bad input: a malformed line is an error naming the file and line.

mod example;
mod glue;
mod table;
mod task_data;

pub use example::{Example, Label, LabelSet};
pub use glue::{Column, Dataset, Layout, Task};
pub use table::{
    Columns, Format, MAX_NUMBERED_CLASS, Table, parse_table, parse_table_with, read_table,
    read_table_with,
};
pub use task_data::{DataSource, ROTTEN_TOMATOES, TaskData};

use crate::error::{Error, Result, invalid};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use std::path::Path;

use crate::assets::VADER;

/// A sentence with a sentiment score and a binary label.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledSentence {
    /// The sentence, as in the source (surrounding whitespace trimmed).
    pub text: String,
    /// The sentiment score. For VADER data, the mean human rating in [-4, 4] (negative below
    /// zero); for GLUE data, which has no intensity, the label as a number.
    pub score: f64,
    /// The class: for VADER data 1 (positive) if `score > 0`, else 0 (negative); for GLUE data
    /// the label column.
    pub label: u8,
}

/// One of the human-rated corpora of the VADER study, each a `*_GroundTruth.txt` file of
/// tab-separated id, mean rating and text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaderCorpus {
    /// 10,605 Rotten Tomatoes review sentences (from Pang & Lee's movie reviews).
    MovieReviews,
    /// 4,200 tweets.
    Tweets,
    /// 3,708 sentences from Amazon product reviews (Hu & Liu).
    AmazonReviews,
    /// 5,190 sentences from New York Times editorials.
    NytEditorials,
}

impl VaderCorpus {
    /// The corpus's file name inside the [`VADER`] asset's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            VaderCorpus::MovieReviews => "movieReviewSnippets_GroundTruth.txt",
            VaderCorpus::Tweets => "tweets_GroundTruth.txt",
            VaderCorpus::AmazonReviews => "amazonReviewSnippets_GroundTruth.txt",
            VaderCorpus::NytEditorials => "nytEditorialSnippets_GroundTruth.txt",
        }
    }
}

/// The Rotten Tomatoes sentences of the VADER study, from the [`VADER`] asset in `cache`
/// (see [`vader_snippets`] for what is kept).
///
/// # Errors
/// If the asset is not in the cache (run `securerouter assets fetch`), or the file cannot be
/// read or has a malformed line.
pub fn rotten_tomatoes(cache: &Path) -> Result<Vec<LabelledSentence>> {
    vader_snippets(cache, VaderCorpus::MovieReviews)
}

/// The sentences of one VADER corpus, from the [`VADER`] asset in `cache`, in file order.
///
/// Sentences whose mean rating is exactly zero are dropped: they have no polarity, so no
/// binary label would be right (37 of the 10,605 Rotten Tomatoes sentences). All others are
/// kept, however weak their rating.
///
/// # Errors
/// If the asset is not in the cache (run `securerouter assets fetch`), or the file cannot be
/// read or has a malformed line.
pub fn vader_snippets(cache: &Path, corpus: VaderCorpus) -> Result<Vec<LabelledSentence>> {
    let path = VADER.path(cache)?.join(corpus.file_name());
    read_vader_ground_truth(&path)
}

/// Reads a VADER `*_GroundTruth.txt` file; see [`parse_vader_ground_truth`].
///
/// # Errors
/// If the file cannot be read or has a malformed line.
pub fn read_vader_ground_truth(path: &Path) -> Result<Vec<LabelledSentence>> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    parse_vader_ground_truth(&bytes, &path.display().to_string())
}

/// Parses the contents of a VADER `*_GroundTruth.txt` file: UTF-8 lines (LF or CRLF) of
/// `id<TAB>mean rating<TAB>text`, where the id is not empty (`17`, or `3_5` for review 3,
/// sentence 5) and the rating is a number in [-4, 4]. Blank lines are skipped; sentences rated exactly zero are dropped (see
/// [`vader_snippets`]). `source` names the input in errors.
///
/// # Errors
/// On the first malformed line, naming `source` and the line number (from 1): invalid UTF-8,
/// a missing field, an empty id, a rating that is not a finite number in [-4, 4], or empty text.
pub fn parse_vader_ground_truth(bytes: &[u8], source: &str) -> Result<Vec<LabelledSentence>> {
    let mut out = Vec::new();
    for (i, line) in lines(bytes, source) {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{source}, line {i}");
        let mut fields = line.splitn(3, '\t');
        let (Some(id), Some(score), Some(text)) = (fields.next(), fields.next(), fields.next())
        else {
            invalid!(
                "{}: expected 3 tab-separated fields (id, mean rating, text), found {}",
                at(),
                line.split('\t').count()
            );
        };
        if id.trim().is_empty() {
            invalid!("{}: the id is empty", at());
        }
        let score: f64 = score.trim().parse().map_err(|e| Error::Parse {
            what: format!("{}: rating {score:?} is not a number", at()),
            source: Box::new(e),
        })?;
        if !(-4.0..=4.0).contains(&score) {
            invalid!("{}: rating {score} is outside [-4, 4]", at());
        }
        let text = text.trim();
        if text.is_empty() {
            invalid!("{}: the text is empty", at());
        }
        if score == 0.0 {
            continue;
        }
        out.push(LabelledSentence {
            text: text.to_string(),
            score,
            label: u8::from(score > 0.0),
        });
    }
    Ok(out)
}

/// Reads a GLUE-style TSV file: a header line naming the columns, then one example per line,
/// fields separated by tabs with no quoting (as GLUE's SST-2 `train.tsv` and `dev.tsv`, with
/// `glue_tsv(path, "sentence", "label")`). See [`parse_glue_tsv`].
///
/// # Errors
/// If the file cannot be read, a column is missing from the header, or a line is malformed.
pub fn glue_tsv(
    path: &Path,
    text_column: &str,
    label_column: &str,
) -> Result<Vec<LabelledSentence>> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    parse_glue_tsv(
        &bytes,
        &path.display().to_string(),
        text_column,
        label_column,
    )
}

/// Parses GLUE-style TSV: a header line naming the columns, then lines with exactly as many
/// tab-separated fields as the header (UTF-8, LF or CRLF, blank lines skipped). The text comes
/// from `text_column`, the label from `label_column`, which must hold an integer class in
/// 0..=255; `score` is the label as a number. `source` names the input in errors. For GLUE's
/// own files (pairs, named labels, CoLA's headerless files) use [`Task::parse`].
///
/// # Errors
/// If the input is empty, a named column is missing from the header, or a line (named by
/// `source` and line number, from 1) has the wrong number of fields, invalid UTF-8, empty text
/// or a label that is not an integer in 0..=255.
pub fn parse_glue_tsv(
    bytes: &[u8],
    source: &str,
    text_column: &str,
    label_column: &str,
) -> Result<Vec<LabelledSentence>> {
    let mut lines = lines(bytes, source);
    let header = loop {
        match lines.next() {
            None => invalid!("{source} is empty: expected a header line"),
            Some((_, line)) => {
                let line = line?;
                if !line.trim().is_empty() {
                    break line;
                }
            }
        }
    };
    let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
    let find = |name: &str| {
        columns.iter().position(|c| *c == name).ok_or_else(|| {
            Error::Invalid(format!(
                "{source}: no column {name:?} in the header (columns: {columns:?})"
            ))
        })
    };
    let (text_at, label_at) = (find(text_column)?, find(label_column)?);
    let mut out = Vec::new();
    for (i, line) in lines {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != columns.len() {
            invalid!(
                "{source}, line {i}: expected {} tab-separated fields as in the header, found {}",
                columns.len(),
                fields.len()
            );
        }
        let text = fields[text_at].trim();
        if text.is_empty() {
            invalid!("{source}, line {i}: the {text_column:?} column is empty");
        }
        let raw = fields[label_at].trim();
        let label: u8 = raw.parse().map_err(|e| Error::Parse {
            what: format!("{source}, line {i}: label {raw:?} is not an integer class in 0..=255"),
            source: Box::new(e),
        })?;
        out.push(LabelledSentence {
            text: text.to_string(),
            score: f64::from(label),
            label,
        });
    }
    Ok(out)
}

/// Lines of `bytes` numbered from 1, without their `\n` or `\r\n`, each decoded as UTF-8 or an
/// error naming `source` and the line.
fn lines<'a>(
    bytes: &'a [u8],
    source: &'a str,
) -> impl Iterator<Item = (usize, Result<&'a str>)> + 'a {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(move |(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = std::str::from_utf8(line).map_err(|e| Error::Parse {
                what: format!("{source}, line {}: not valid UTF-8", i + 1),
                source: Box::new(e),
            });
            (i + 1, text)
        })
}

/// Prefixes an error's message with where it happened (`file, line 3`), for `map_err`.
fn located(at: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Invalid(message) => Error::Invalid(format!("{at}: {message}")),
        Error::Parse { what, source } => Error::Parse {
            what: format!("{at}: {what}"),
            source,
        },
        other => other,
    }
}

/// The fixed public seed of [`split`]'s shuffle, so every run and every machine draws the same
/// split. (It need not be secret: it only decides which examples are held out.)
pub const SPLIT_SEED: Seed = Seed::from_bytes(*b"SecureRouterData");

/// The AES-CTR stream domain of [`split`]'s shuffle.
pub const SPLIT_DOMAIN: Domain = Domain(0x4441_5441_5350_4c54); // "DATASPLT"

/// Splits `data` into `(train, test)` after a deterministic shuffle: a Fisher–Yates shuffle
/// driven by AES-CTR on `seed` (use [`SPLIT_SEED`] unless you want another split) and
/// [`SPLIT_DOMAIN`], with unbiased index draws. `test` holds `round(len * test_fraction)`
/// examples, `train` the rest; together they are a permutation of `data`. The same input, seed
/// and fraction give the same split on every machine.
///
/// # Errors
/// If `test_fraction` is not in [0, 1].
pub fn split<T>(mut data: Vec<T>, test_fraction: f64, seed: &Seed) -> Result<(Vec<T>, Vec<T>)> {
    if !(0.0..=1.0).contains(&test_fraction) {
        invalid!("the test fraction {test_fraction} is not in [0, 1]");
    }
    shuffle(&mut data, &mut AesCtr::new(seed, SPLIT_DOMAIN));
    // In [0, len] since the fraction is in [0, 1]; the cast saturates in any case.
    let n_test = ((data.len() as f64 * test_fraction).round() as usize).min(data.len());
    let train = data.split_off(n_test);
    Ok((train, data))
}

/// Fisher–Yates shuffle driven by `rng` (deterministic for a given seed and domain).
pub fn shuffle<T>(data: &mut [T], rng: &mut AesCtr) {
    for i in (1..data.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        data.swap(i, j);
    }
}

/// A uniform draw from [0, n), n > 0, by rejection (no modulo bias).
fn below(rng: &mut AesCtr, n: u64) -> u64 {
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}
