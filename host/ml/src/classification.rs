//! The sequence-classification head of a Hugging Face `BertForSequenceClassification`
//! checkpoint, and the f64 reference of its forward pass: logits = classifier(tanh(pooler(h)))
//! with h the last hidden state of the first token (`[CLS]`). Unlike [`crate::ClassifierHead`]
//! (fitted here on mean-pooled features), this head comes trained with the checkpoint, so a
//! fine-tuned classifier can be used as its authors published it.
//!
//! `MPNetForSequenceClassification`'s head computes the same: out_proj(tanh(dense(h))) on the
//! first token (`<s>`), with `classifier.dense` in the place of the pooler and
//! `classifier.out_proj` in that of the classifier.

use crate::checkpoint::{CheckpointFiles, TensorFile};
use crate::config::{BertConfig, ModelKind};
use crate::error::{Error, Result, invalid};
use crate::matrix::Matrix;
use crate::weights::{BertWeights, Linear};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What the head's outputs mean, from the config's `problem_type` (Hugging Face infers
/// regression when it is absent and there is one label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    /// One class per input: softmax over the logits.
    SingleLabelClassification,
    /// Independent classes: a sigmoid per logit.
    MultiLabelClassification,
    /// Real-valued outputs, used as they are.
    Regression,
}

/// The pooler and classifier on top of the encoder, with the labels of the outputs.
#[derive(Clone, Debug)]
pub struct SequenceClassificationHead {
    /// The pooler's dense layer, hidden × hidden (followed by tanh); MPNet's
    /// `classifier.dense`.
    pub pooler: Linear,
    /// The classifier, num_labels × hidden; MPNet's `classifier.out_proj`.
    pub classifier: Linear,
    /// Outputs of the classifier.
    pub num_labels: usize,
    /// The name of each output, from the config's `id2label` (Hugging Face's `LABEL_i` when
    /// it has none).
    pub id2label: Vec<String>,
    /// What the outputs mean.
    pub problem_type: ProblemType,
}

/// The fields of `config.json` that describe the head's outputs.
#[derive(Deserialize)]
struct LabelsConfig {
    #[serde(default)]
    id2label: BTreeMap<String, String>,
    num_labels: Option<usize>,
    problem_type: Option<String>,
}

impl LabelsConfig {
    fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(Error::io("reading the model config", path))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            what: format!("{}: id2label, num_labels or problem_type", path.display()),
            source,
        })
    }

    /// The labels in output order, and what they mean.
    fn labels(self) -> Result<(Vec<String>, ProblemType)> {
        let n = if self.id2label.is_empty() {
            // Hugging Face's default for a config that names no labels.
            self.num_labels.unwrap_or(2)
        } else {
            self.id2label.len()
        };
        if n == 0 {
            invalid!("num_labels is 0");
        }
        if let Some(k) = self.num_labels
            && k != n
        {
            invalid!("num_labels {k} disagrees with the {n} labels of id2label");
        }
        let mut labels = vec![None; n];
        for (key, label) in self.id2label {
            match key.parse::<usize>() {
                Ok(i) if i < n && labels[i].is_none() => labels[i] = Some(label),
                _ => invalid!("id2label key {key:?} is not one of 0..{n}"),
            }
        }
        let labels = labels
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.unwrap_or_else(|| format!("LABEL_{i}")))
            .collect();
        let problem = match self.problem_type.as_deref() {
            None if n == 1 => ProblemType::Regression,
            None | Some("single_label_classification") => ProblemType::SingleLabelClassification,
            Some("multi_label_classification") => ProblemType::MultiLabelClassification,
            Some("regression") => ProblemType::Regression,
            Some(other) => invalid!(
                "problem_type {other:?} is not one of \"regression\", \
                 \"single_label_classification\", \"multi_label_classification\""
            ),
        };
        Ok((labels, problem))
    }
}

impl SequenceClassificationHead {
    /// The head restricted to the outputs `keep`, in that order (e.g. a three-way sentiment
    /// head read as negative against positive).
    ///
    /// # Errors
    /// If `keep` is empty or names an output the head does not have.
    pub fn select_labels(&self, keep: &[usize]) -> Result<Self> {
        let w = &self.classifier.weight;
        if keep.is_empty() || keep.iter().any(|&r| r >= w.rows) {
            invalid!("outputs {keep:?} of a head with {} cannot be kept", w.rows);
        }
        let data = keep.iter().flat_map(|&r| w.row(r).to_vec()).collect();
        Ok(SequenceClassificationHead {
            pooler: self.pooler.clone(),
            classifier: Linear {
                weight: Matrix::new(keep.len(), w.cols, data),
                bias: keep.iter().map(|&r| self.classifier.bias[r]).collect(),
            },
            num_labels: keep.len(),
            id2label: keep
                .iter()
                .map(|&r| {
                    self.id2label
                        .get(r)
                        .cloned()
                        .unwrap_or_else(|| format!("LABEL_{r}"))
                })
                .collect(),
            problem_type: self.problem_type,
        })
    }

    /// The head in the checkpoint `f` (the pooler under the encoder's prefix, `classifier.*`
    /// at the top level, as `BertForSequenceClassification` saves them; MPNet's
    /// `classifier.dense` and `classifier.out_proj`), or `None` when it has no classifier. A
    /// config that declares `BertForSequenceClassification` (or
    /// `MPNetForSequenceClassification`) must come with one: a missing head would otherwise be
    /// random in Hugging Face and absent here.
    pub(crate) fn read(
        f: TensorFile<'_, '_>,
        config: &BertConfig,
        config_path: &Path,
    ) -> Result<Option<Self>> {
        let kind = config.kind()?;
        let (architecture, pooler_name, classifier_name) = match kind {
            ModelKind::Bert => (
                "BertForSequenceClassification",
                "pooler.dense",
                "classifier",
            ),
            ModelKind::MPNet => (
                "MPNetForSequenceClassification",
                "classifier.dense",
                "classifier.out_proj",
            ),
        };
        let declared = config.architectures.iter().any(|a| a == architecture);
        if !f.tensors.contains(&format!("{classifier_name}.weight")) {
            if declared {
                invalid!(
                    "architectures names {architecture} but the checkpoint has no \
                     {classifier_name}.weight"
                );
            }
            return Ok(None);
        }
        let (id2label, problem_type) = LabelsConfig::load(config_path)?
            .labels()
            .map_err(Error::in_file(config_path))?;
        let (h, n) = (config.hidden_size, id2label.len());
        let top = TensorFile { prefix: "", ..f };
        // BERT's pooler is part of the encoder (under its prefix); MPNet's dense layer is the
        // head's own.
        let pooler = match kind {
            ModelKind::Bert => f.linear(pooler_name, h, h)?,
            ModelKind::MPNet => top.linear(pooler_name, h, h)?,
        };
        let classifier = top.linear(classifier_name, n, h)?;
        Ok(Some(SequenceClassificationHead {
            pooler,
            classifier,
            num_labels: n,
            id2label,
            problem_type,
        }))
    }

    /// The pooler (`pooler.dense`, hidden × hidden) of the checkpoint in `dir`, which a bare
    /// `BertModel` saves too, or `None` when it has none: a head fine-tuned on a task starts
    /// from it, as transformers does.
    ///
    /// # Errors
    /// If the checkpoint cannot be read, or its pooler has another shape.
    pub fn load_pooler(dir: &Path, hidden: usize) -> Result<Option<Linear>> {
        let files = CheckpointFiles::open(dir)?;
        let tensors = files.tensors()?;
        for prefix in ["bert.", "mpnet.", ""] {
            if tensors.contains(&format!("{prefix}pooler.dense.weight")) {
                let f = TensorFile {
                    tensors: &tensors,
                    prefix,
                };
                return Ok(Some(f.linear("pooler.dense", hidden, hidden)?));
            }
        }
        Ok(None)
    }

    /// tanh(pooler(h)) for the first token's hidden state h: BERT's pooled output (MPNet's
    /// tanh(classifier.dense(h))).
    pub fn pooled(&self, hidden: &Matrix) -> Result<Vec<f64>> {
        let h = self.pooler.weight.cols;
        if hidden.rows == 0 || hidden.cols != h {
            invalid!(
                "hidden states of {} × {} do not fit a pooler of width {h}",
                hidden.rows,
                hidden.cols
            );
        }
        let cls = Matrix::new(1, h, hidden.row(0).to_vec());
        let mut pooled = self.pooler.apply(&cls).data;
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        Ok(pooled)
    }

    /// The outputs (logits, or values of a regression head) for a sequence's last hidden
    /// states.
    pub fn logits(&self, hidden: &Matrix) -> Result<Vec<f64>> {
        let pooled = self.pooled(hidden)?;
        Ok(self
            .classifier
            .apply(&Matrix::new(1, pooled.len(), pooled))
            .data)
    }
}

/// The f64 reference of a `BertForSequenceClassification` (or
/// `MPNetForSequenceClassification`) forward pass on one sequence: what Hugging Face returns
/// as `logits` (dropout off).
pub fn logits_of_checkpoint(
    model: &BertWeights,
    head: &SequenceClassificationHead,
    ids: &[u32],
    type_ids: &[u32],
) -> Result<Vec<f64>> {
    head.logits(&model.forward(ids, type_ids)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(json: &str) -> Result<(Vec<String>, ProblemType)> {
        serde_json::from_str::<LabelsConfig>(json).unwrap().labels()
    }

    #[test]
    fn labels_follow_hugging_face_defaults_and_refuse_gaps() {
        let (l, p) = labels(r#"{"id2label":{"1":"pos","0":"neg"}}"#).unwrap();
        assert_eq!(
            (l, p),
            (
                vec!["neg".into(), "pos".into()],
                ProblemType::SingleLabelClassification
            )
        );
        let (l, p) = labels(r#"{}"#).unwrap();
        assert_eq!(l, ["LABEL_0", "LABEL_1"]);
        assert_eq!(p, ProblemType::SingleLabelClassification);
        assert_eq!(
            labels(r#"{"num_labels":1}"#).unwrap().1,
            ProblemType::Regression
        );
        let p =
            labels(r#"{"id2label":{"0":"a","1":"b"},"problem_type":"multi_label_classification"}"#);
        assert_eq!(p.unwrap().1, ProblemType::MultiLabelClassification);
        let e = labels(r#"{"id2label":{"0":"a","2":"b"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("id2label key \"2\""), "{e}");
        let e = labels(r#"{"id2label":{"0":"a"},"num_labels":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_labels 3"), "{e}");
        let e = labels(r#"{"problem_type":"ranking"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("problem_type \"ranking\""), "{e}");
    }
}
