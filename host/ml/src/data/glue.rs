//! The eight GLUE tasks of the SecureRouter paper, read from the files GLUE ships.
//!
//! Each task knows its files' exact layout (columns looked up by header name where GLUE has a
//! header, by position in CoLA's headerless files), its label set in the order of GLUE's
//! reference processors (so class numbers match models fine-tuned elsewhere), and the metric
//! the paper reports. GLUE files are tab-separated with no quoting: a `"` is an ordinary
//! character, and a text never holds a tab.

use super::example::{Example, Label, LabelSet, list};
use super::{lines, located};
use crate::error::{Error, Result, invalid};
use crate::metrics::{Metric, Scores};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A GLUE task of the paper's evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// Stanford Sentiment Treebank, binary: `sentence\tlabel`, labels 0/1.
    Sst2,
    /// Corpus of Linguistic Acceptability: headerless `source, label, original label, sentence`.
    Cola,
    /// Microsoft Research Paraphrase Corpus: `Quality\t#1 ID\t#2 ID\t#1 String\t#2 String`.
    Mrpc,
    /// Quora Question Pairs: `id qid1 qid2 question1 question2 is_duplicate`.
    Qqp,
    /// Question NLI: `index question sentence label`, labels entailment/not_entailment.
    Qnli,
    /// Recognizing Textual Entailment: `index sentence1 sentence2 label`, named labels.
    Rte,
    /// Multi-Genre NLI: `sentence1`, `sentence2` and `gold_label` (the last column) of many.
    Mnli,
    /// Semantic Textual Similarity Benchmark: `sentence1`, `sentence2`, `score` in [0, 5].
    Stsb,
}

/// Where a field is: a column named in the file's header, or a position (from 0) in a
/// headerless file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// The column with this header name.
    Named(&'static str),
    /// The column at this position, from 0.
    At(usize),
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Named(name) => write!(f, "{name:?} column"),
            Column::At(k) => write!(f, "column {}", k + 1),
        }
    }
}

/// The layout of a task's labelled files (`train.tsv`, `dev.tsv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The number of fields of a headerless file; `None` if the first line is a header that
    /// sets the number of fields.
    pub headerless_fields: Option<usize>,
    /// The sentence, or the first of a pair.
    pub text: Column,
    /// The second sentence of a pair task.
    pub text_pair: Option<Column>,
    /// The gold label.
    pub label: Column,
}

/// A GLUE task's labelled data, as [`Task::load`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The training examples (`train.tsv`).
    pub train: Vec<Example>,
    /// The dev examples (`dev.tsv`; MNLI's `dev_matched.tsv`), on which GLUE results are
    /// reported since the test labels are private.
    pub dev: Vec<Example>,
    /// MNLI's mismatched dev examples (`dev_mismatched.tsv`), if the folder has them.
    pub dev_mismatched: Option<Vec<Example>>,
    /// The task's labels.
    pub labels: LabelSet,
}

impl Task {
    /// The eight tasks, in the order of the GLUE paper.
    pub const ALL: [Task; 8] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Qqp,
        Task::Stsb,
        Task::Mnli,
        Task::Qnli,
        Task::Rte,
    ];

    /// The task's name as GLUE spells it (and names its folder): `SST-2`, `CoLA`, `STS-B`, ...
    pub fn name(self) -> &'static str {
        match self {
            Task::Sst2 => "SST-2",
            Task::Cola => "CoLA",
            Task::Mrpc => "MRPC",
            Task::Qqp => "QQP",
            Task::Qnli => "QNLI",
            Task::Rte => "RTE",
            Task::Mnli => "MNLI",
            Task::Stsb => "STS-B",
        }
    }

    /// The layout of the task's labelled files.
    pub fn layout(self) -> Layout {
        use Column::{At, Named};
        let (text, text_pair, label) = match self {
            Task::Sst2 => (Named("sentence"), None, Named("label")),
            // source, label, original label ("*" if unacceptable), sentence.
            Task::Cola => (At(3), None, At(1)),
            Task::Mrpc => (
                Named("#1 String"),
                Some(Named("#2 String")),
                Named("Quality"),
            ),
            Task::Qqp => (
                Named("question1"),
                Some(Named("question2")),
                Named("is_duplicate"),
            ),
            Task::Qnli => (Named("question"), Some(Named("sentence")), Named("label")),
            Task::Rte | Task::Stsb | Task::Mnli => {
                let label = match self {
                    Task::Rte => "label",
                    Task::Stsb => "score",
                    _ => "gold_label",
                };
                (Named("sentence1"), Some(Named("sentence2")), Named(label))
            }
        };
        Layout {
            headerless_fields: (self == Task::Cola).then_some(4),
            text,
            text_pair,
            label,
        }
    }

    /// The label names in class order, as GLUE's reference processors order them (so class
    /// numbers match models fine-tuned with them); empty for STS-B, a regression.
    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            Task::Sst2 | Task::Cola | Task::Mrpc | Task::Qqp => &["0", "1"],
            Task::Qnli | Task::Rte => &["entailment", "not_entailment"],
            Task::Mnli => &["contradiction", "entailment", "neutral"],
            Task::Stsb => &[],
        }
    }

    /// The task's label set: its classes, or a score for STS-B.
    pub fn labels(self) -> LabelSet {
        if self.is_regression() {
            LabelSet::Score
        } else {
            LabelSet::Classes {
                names: self.label_names().iter().map(|s| s.to_string()).collect(),
            }
        }
    }

    /// Whether the task is a regression (STS-B's similarity score).
    pub fn is_regression(self) -> bool {
        self == Task::Stsb
    }

    /// Whether an example is a sentence pair.
    pub fn is_pair(self) -> bool {
        self.layout().text_pair.is_some()
    }

    /// The metric the paper reports for the task.
    pub fn metric(self) -> Metric {
        match self {
            Task::Mrpc | Task::Qqp => Metric::AccuracyAndF1,
            Task::Cola => Metric::Matthews,
            Task::Stsb => Metric::PearsonSpearman,
            Task::Sst2 | Task::Qnli | Task::Rte | Task::Mnli => Metric::Accuracy,
        }
    }

    /// Scores `predictions` against `gold` with the task's [`metric`](Task::metric).
    ///
    /// # Errors
    /// As [`Metric::score`]: lengths differ, no examples, or a label of the wrong kind.
    pub fn score(self, predictions: &[Label], gold: &[Label]) -> Result<Scores> {
        self.metric().score(predictions, gold)
    }

    /// The dev file's name: `dev.tsv`, or MNLI's `dev_matched.tsv`.
    pub fn dev_file(self) -> &'static str {
        if self == Task::Mnli {
            "dev_matched.tsv"
        } else {
            "dev.tsv"
        }
    }

    /// Loads the task's labelled data from `path`: a GLUE task folder (`train.tsv` and
    /// [`dev_file`](Task::dev_file), and for MNLI `dev_mismatched.tsv` if present), or one
    /// file, which goes to `dev` if its name starts with `dev` and to `train` otherwise.
    ///
    /// # Errors
    /// If a file cannot be read or is refused by [`Task::parse`].
    pub fn load(self, path: &Path) -> Result<Dataset> {
        let mut data = Dataset {
            train: Vec::new(),
            dev: Vec::new(),
            dev_mismatched: None,
            labels: self.labels(),
        };
        if path.is_dir() {
            data.train = self.read_file(&path.join("train.tsv"))?;
            data.dev = self.read_file(&path.join(self.dev_file()))?;
            let mismatched = path.join("dev_mismatched.tsv");
            if self == Task::Mnli && mismatched.exists() {
                data.dev_mismatched = Some(self.read_file(&mismatched)?);
            }
        } else {
            let examples = self.read_file(path)?;
            let is_dev = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dev"));
            if is_dev {
                data.dev = examples;
            } else {
                data.train = examples;
            }
        }
        Ok(data)
    }

    /// Reads one labelled file of the task; see [`Task::parse`].
    ///
    /// # Errors
    /// If the file cannot be read or is refused by [`Task::parse`].
    pub fn read_file(self, path: &Path) -> Result<Vec<Example>> {
        let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
        self.parse(&bytes, &path.display().to_string())
    }

    /// Parses a labelled file of the task in GLUE's layout: UTF-8 lines (LF or CRLF, a leading
    /// byte-order mark ignored, blank lines skipped) of tab-separated fields, as many on each
    /// line as in the header (or [`Layout::headerless_fields`]). Texts are trimmed; labels
    /// must be in the task's [`labels`](Task::labels). `source` names the input in errors.
    ///
    /// # Errors
    /// Naming `source` and the line (from 1): an empty input or one without examples, a
    /// missing column (listing the header's), a wrong number of fields, invalid UTF-8, an
    /// empty text, or a label that does not parse or is not in the label set.
    pub fn parse(self, bytes: &[u8], source: &str) -> Result<Vec<Example>> {
        let layout = self.layout();
        let mut lines = lines(bytes, source).filter(|(_, line)| match line {
            Ok(l) => !l.trim().is_empty(),
            Err(_) => true,
        });
        // The header's column names, or `None` for a headerless file.
        let header: Option<Vec<String>> = match layout.headerless_fields {
            Some(_) => None,
            None => {
                let Some((_, header)) = lines.next() else {
                    invalid!("{source} is empty: expected a header line")
                };
                Some(header?.split('\t').map(|c| c.trim().to_string()).collect())
            }
        };
        let n_fields = match (&header, layout.headerless_fields) {
            (Some(columns), _) => columns.len(),
            (None, n) => n.unwrap_or(0),
        };
        let find = |c: Column| -> Result<usize> {
            let found = match (c, &header) {
                (Column::Named(name), Some(columns)) => columns.iter().position(|h| h == name),
                (Column::Named(_), None) => None,
                (Column::At(k), _) => (k < n_fields).then_some(k),
            };
            match (found, &header) {
                (Some(k), _) => Ok(k),
                (None, Some(columns)) => invalid!(
                    "{source}: no {c} in the header (columns: {}); is this {}'s file?",
                    list(columns),
                    self.name()
                ),
                (None, None) => invalid!("{source}: no {c} in a file of {n_fields} columns"),
            }
        };
        let text_at = find(layout.text)?;
        let pair_at = layout.text_pair.map(&find).transpose()?;
        let label_at = find(layout.label)?;
        let labels = self.labels();
        let mut out = Vec::new();
        for (i, line) in lines {
            let at = format!("{source}, line {i}");
            let fields: Vec<&str> = line?.split('\t').collect();
            if fields.len() != n_fields {
                let hint = if layout.headerless_fields.is_some() {
                    format!(" ({}'s train and dev files have no header)", self.name())
                } else {
                    " as in the header".into()
                };
                invalid!(
                    "{at}: expected {n_fields} tab-separated fields{hint}, found {}",
                    fields.len()
                );
            }
            let field = |k: usize, column: Column| -> Result<String> {
                match fields.get(k).map(|f| f.trim()) {
                    Some(f) if !f.is_empty() => Ok(f.to_string()),
                    _ => invalid!("{at}: the {column} is empty"),
                }
            };
            let text = field(text_at, layout.text)?;
            let text_pair = match (pair_at, layout.text_pair) {
                (Some(k), Some(column)) => Some(field(k, column)?),
                _ => None,
            };
            let raw = field(label_at, layout.label)?;
            let label = labels.label(&raw).map_err(|e| match e {
                Error::Invalid(_) if !labels.is_regression() => Error::Invalid(format!(
                    "{at}: label {raw:?} is not one of {}'s labels {}",
                    self.name(),
                    list(labels.names())
                )),
                e => located(&at)(e),
            })?;
            if let Label::Score(s) = label
                && !(0.0..=5.0).contains(&s)
            {
                invalid!("{at}: score {s} is outside {}'s range [0, 5]", self.name());
            }
            out.push(Example {
                text,
                text_pair,
                label,
            });
        }
        if out.is_empty() {
            invalid!("{source} has no examples");
        }
        Ok(out)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = Error;

    /// A task by name, case-insensitive, with or without `-`/`_`: `sst2`, `SST-2`, `sts_b`.
    fn from_str(s: &str) -> Result<Self> {
        let key: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        for task in Task::ALL {
            let name: String = task.name().replace('-', "").to_ascii_lowercase();
            if key == name {
                return Ok(task);
            }
        }
        let names: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
        invalid!("unknown GLUE task {s:?} (tasks: {})", names.join(", "))
    }
}
