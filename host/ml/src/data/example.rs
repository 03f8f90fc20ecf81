//! Labelled examples of any task (one sentence or a pair, a class or a score) and the label
//! set that maps a data set's label names to class numbers.
//!
//! The label set is saved with a model: the class numbers a classifier predicts mean nothing
//! without the names they were trained from, and a data set read later (a dev file, a user's
//! new data) must map its names to the same numbers.

use crate::error::{Error, Result, invalid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// One labelled example: a sentence (or a sentence pair) and its gold label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The sentence, or the first sentence of a pair (surrounding whitespace trimmed).
    pub text: String,
    /// The second sentence of a pair task (MRPC, QNLI, MNLI, ...), `None` for single sentences.
    pub text_pair: Option<String>,
    /// The gold label.
    pub label: Label,
}

/// A gold or predicted label: a class number of a [`LabelSet`], or a real score (regression).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// A class, numbered as in the data set's [`LabelSet`].
    Class(u32),
    /// A real-valued score, e.g. STS-B's similarity in [0, 5].
    Score(f64),
}

impl Label {
    /// The class number, if a class.
    pub fn class(self) -> Option<u32> {
        match self {
            Label::Class(c) => Some(c),
            Label::Score(_) => None,
        }
    }

    /// The score, if a score.
    pub fn score(self) -> Option<f64> {
        match self {
            Label::Score(s) => Some(s),
            Label::Class(_) => None,
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Class(c) => write!(f, "class {c}"),
            Label::Score(s) => write!(f, "score {s}"),
        }
    }
}

/// What a data set's labels are: named classes (class `i` is `names[i]`), or a real score.
///
/// The order of the names is the class numbering, so it must be deterministic: a GLUE task's
/// order as GLUE's processors define it ([`Task::labels`](super::Task::labels)), sorted unique
/// names for a user's named labels, `"0"`, `"1"`, ... for numeric labels (class `k` is the
/// label `k` as given). Never the order of first appearance, which changes with a shuffle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LabelSet {
    /// Named classes; class `i` is `names[i]`. Build with [`LabelSet::classes`], which checks
    /// the names are distinct and not empty.
    Classes {
        /// The class names in class order.
        names: Vec<String>,
    },
    /// A real-valued score (regression): there are no classes.
    Score,
}

impl LabelSet {
    /// Named classes in the given order.
    ///
    /// # Errors
    /// If there are no names, a name is empty (or only whitespace), or a name repeats.
    pub fn classes<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        Self::check_names(&names)?;
        Ok(LabelSet::Classes { names })
    }

    /// Named classes in sorted (byte) order, each name once, whatever order they come in.
    ///
    /// # Errors
    /// If there are no names, or a name is empty.
    pub fn sorted<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: BTreeSet<String> = names.into_iter().map(Into::into).collect();
        Self::classes(names)
    }

    /// Classes `0..n` named by their numbers (`"0"`, `"1"`, ...), for data labelled by number.
    ///
    /// # Errors
    /// If `n` is zero.
    pub fn numbered(n: u32) -> Result<Self> {
        Self::classes((0..n).map(|k| k.to_string()))
    }

    fn check_names(names: &[String]) -> Result<()> {
        if names.is_empty() {
            invalid!("a label set needs at least one class");
        }
        if u32::try_from(names.len()).is_err() {
            invalid!("a label set of {} classes is too large", names.len());
        }
        let mut seen = BTreeSet::new();
        for name in names {
            if name.trim().is_empty() {
                invalid!("a class name is empty (label set {})", list(names));
            }
            if !seen.insert(name.as_str()) {
                invalid!(
                    "class {name:?} appears twice in the label set {}",
                    list(names)
                );
            }
        }
        Ok(())
    }

    /// Whether the labels are scores (regression) rather than classes.
    pub fn is_regression(&self) -> bool {
        matches!(self, LabelSet::Score)
    }

    /// The class names in class order (empty for a score).
    pub fn names(&self) -> &[String] {
        match self {
            LabelSet::Classes { names } => names,
            LabelSet::Score => &[],
        }
    }

    /// The number of classes (0 for a score).
    pub fn len(&self) -> usize {
        self.names().len()
    }

    /// Whether there are no classes (a score).
    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }

    /// The class number of the label `name`.
    ///
    /// # Errors
    /// If `name` is not in the set (the message names it and lists the set), or the set is a
    /// score.
    pub fn class(&self, name: &str) -> Result<u32> {
        match self {
            LabelSet::Score => invalid!("label {name:?} is a class, but the labels are scores"),
            LabelSet::Classes { names } => match names.iter().position(|n| n == name) {
                // The position fits: the set's size was checked against u32 when built.
                Some(k) => Ok(k as u32),
                None => invalid!("label {name:?} is not in the label set {}", list(names)),
            },
        }
    }

    /// The name of class `class`, e.g. to print a prediction.
    ///
    /// # Errors
    /// If there is no such class, or the set is a score.
    pub fn name(&self, class: u32) -> Result<&str> {
        match self {
            LabelSet::Score => invalid!("class {class} predicted, but the labels are scores"),
            LabelSet::Classes { names } => match names.get(class as usize) {
                Some(n) => Ok(n),
                None => invalid!(
                    "class {class} is not in the label set of {} classes {}",
                    names.len(),
                    list(names)
                ),
            },
        }
    }

    /// The label of a field's text: its class by name, or for a score set the number.
    ///
    /// # Errors
    /// As [`LabelSet::class`]; for a score set, if the text is not a finite number.
    pub fn label(&self, text: &str) -> Result<Label> {
        match self {
            LabelSet::Classes { .. } => self.class(text).map(Label::Class),
            LabelSet::Score => parse_score(text).map(Label::Score),
        }
    }

    /// Checks that `label` belongs to this set: a class number in range, or a score.
    ///
    /// # Errors
    /// If a class is out of range or the kind (class or score) does not match the set.
    pub fn check(&self, label: Label) -> Result<()> {
        match (self, label) {
            (LabelSet::Classes { .. }, Label::Class(c)) => self.name(c).map(|_| ()),
            (LabelSet::Score, Label::Score(_)) => Ok(()),
            (LabelSet::Classes { .. }, Label::Score(s)) => {
                invalid!(
                    "score {s} given, but the labels are classes {}",
                    list(self.names())
                )
            }
            (LabelSet::Score, Label::Class(c)) => {
                invalid!("class {c} given, but the labels are scores")
            }
        }
    }

    /// Writes the set as JSON (`{"kind":"classes","names":[...]}` or `{"kind":"score"}`).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            what: "writing a label set".into(),
            source,
        })?;
        std::fs::write(path, json + "\n").map_err(Error::io("writing", path))
    }

    /// Reads a set written by [`LabelSet::save`], with the same checks as
    /// [`LabelSet::classes`].
    ///
    /// # Errors
    /// If the file cannot be read, is not a label set, or its names are refused.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
        let set: LabelSet = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("{} is not a label set", path.display()),
            source,
        })?;
        if let LabelSet::Classes { names } = &set {
            Self::check_names(names).map_err(Error::in_file(path))?;
        }
        Ok(set)
    }
}

/// A finite number, or an error naming the text.
pub(crate) fn parse_score(text: &str) -> Result<f64> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => invalid!("score {text:?} is not a finite number"),
        Err(e) => Err(Error::Parse {
            what: format!("score {text:?} is not a number"),
            source: Box::new(e),
        }),
    }
}

/// `(a, b, c)`, names quoted, for messages.
pub(crate) fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("({})", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_saved_as_tagged_json() {
        let set = LabelSet::classes(["b", "a"]).unwrap();
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"kind":"classes","names":["b","a"]}"#
        );
        assert_eq!(
            serde_json::to_string(&LabelSet::Score).unwrap(),
            r#"{"kind":"score"}"#
        );
        assert_eq!(
            serde_json::to_string(&Label::Class(2)).unwrap(),
            r#"{"class":2}"#
        );
    }

    #[test]
    fn parse_score_refuses_non_finite() {
        assert_eq!(parse_score(" 4.5 ").unwrap(), 4.5);
        assert!(parse_score("inf").is_err());
        assert!(parse_score("x").is_err());
    }
}
