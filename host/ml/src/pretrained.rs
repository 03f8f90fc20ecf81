//! A fine-tuned classifier written as Hugging Face's `save_pretrained` writes a
//! `BertForSequenceClassification` (or `MPNetForSequenceClassification`): `config.json` (the
//! source checkpoint's, with the layers kept, the architecture and the label set as
//! `id2label` / `label2id`), `model.safetensors` (F32: the encoder under `bert.` or `mpnet.`,
//! the head under the family's names) and the source's tokenizer files. The folder loads here
//! (`bench checkpoint`, [`BertWeights::load_with_head`]) and in transformers alike, its label
//! names with it.

use crate::checkpoint::{NamedTensor, SINGLE_FILE, write_f32_safetensors};
use crate::classification::{ProblemType, SequenceClassificationHead};
use crate::config::ModelKind;
use crate::error::{Error, Result, invalid};
use crate::weights::BertWeights;
use std::path::Path;

/// The tokenizer files a checkpoint folder may hold, copied along when present.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Writes `model` with `head` into the folder `out` (created if needed) as a
/// `BertForSequenceClassification` checkpoint, its config derived from `source`'s
/// `config.json` and its tokenizer files copied from `source`.
///
/// # Errors
/// If the head does not fit the model, `source`'s config is not a JSON object, or a file
/// cannot be read or written.
pub fn save_sequence_classifier(
    out: &Path,
    source: &Path,
    model: &BertWeights,
    head: &SequenceClassificationHead,
) -> Result<()> {
    let h = model.config.hidden_size;
    let n = head.num_labels;
    if head.pooler.weight.rows != h
        || head.pooler.weight.cols != h
        || head.classifier.weight.rows != n
        || head.classifier.weight.cols != h
        || head.id2label.len() != n
    {
        invalid!(
            "a head with pooler {}×{}, classifier {}×{} and {} labels does not fit a model of \
             hidden size {h} with {n} outputs",
            head.pooler.weight.rows,
            head.pooler.weight.cols,
            head.classifier.weight.rows,
            head.classifier.weight.cols,
            head.id2label.len()
        );
    }
    if head.problem_type == ProblemType::Regression && n != 1 {
        invalid!("a regression head has one output, not {n}");
    }
    let kind = model.config.kind()?;
    std::fs::create_dir_all(out).map_err(Error::io("creating", out))?;
    let config = classifier_config(&source.join("config.json"), kind, model, head)?;
    let config_path = out.join("config.json");
    let text = serde_json::to_string_pretty(&config).map_err(|source| Error::Json {
        what: format!("encoding {}", config_path.display()),
        source,
    })?;
    std::fs::write(&config_path, text + "\n").map_err(Error::io("writing", &config_path))?;
    write_f32_safetensors(
        &out.join(SINGLE_FILE),
        &classifier_tensors(kind, model, head)?,
    )?;
    for name in TOKENIZER_FILES {
        let from = source.join(name);
        if from.is_file() {
            let to = out.join(name);
            std::fs::copy(&from, &to).map_err(Error::io("copying the tokenizer file", &from))?;
        }
    }
    Ok(())
}

/// The source's config with the kept layers, the architecture and the head's labels.
fn classifier_config(
    path: &Path,
    kind: ModelKind,
    model: &BertWeights,
    head: &SequenceClassificationHead,
) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io("reading the model config", path))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| Error::Json {
            what: format!("{} is not JSON", path.display()),
            source,
        })?;
    let Some(fields) = config.as_object_mut() else {
        invalid!("{} is not a JSON object", path.display());
    };
    let id2label: serde_json::Map<String, serde_json::Value> = head
        .id2label
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone().into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = head
        .id2label
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.into()))
        .collect();
    let problem = match head.problem_type {
        ProblemType::Regression => "regression",
        ProblemType::SingleLabelClassification => "single_label_classification",
        ProblemType::MultiLabelClassification => "multi_label_classification",
    };
    // Transformers derives the number of labels from id2label; a stale count would disagree.
    fields.remove("num_labels");
    fields.insert(
        "architectures".into(),
        serde_json::json!([match kind {
            ModelKind::Bert => "BertForSequenceClassification",
            ModelKind::MPNet => "MPNetForSequenceClassification",
        }]),
    );
    fields.insert("num_hidden_layers".into(), model.layers.len().into());
    fields.insert("id2label".into(), id2label.into());
    fields.insert("label2id".into(), label2id.into());
    fields.insert("problem_type".into(), problem.into());
    Ok(config)
}

/// Every tensor of the classifier under the names its family's `…ForSequenceClassification`
/// saves.
fn classifier_tensors<'a>(
    kind: ModelKind,
    model: &'a BertWeights,
    head: &'a SequenceClassificationHead,
) -> Result<Vec<NamedTensor<'a>>> {
    let e = &model.embeddings;
    let matrix =
        |name: &str, m: &'a crate::Matrix| (name.to_string(), vec![m.rows, m.cols], &m.data[..]);
    let vector = |name: &str, v: &'a [f64]| (name.to_string(), vec![v.len()], v);
    let (prefix, head_names) = match kind {
        ModelKind::Bert => ("bert.", ["bert.pooler.dense", "classifier"]),
        ModelKind::MPNet => ("mpnet.", ["classifier.dense", "classifier.out_proj"]),
    };
    let mut tensors = vec![
        matrix(
            &format!("{prefix}embeddings.word_embeddings.weight"),
            &e.word,
        ),
        matrix(
            &format!("{prefix}embeddings.position_embeddings.weight"),
            &e.position,
        ),
        vector(
            &format!("{prefix}embeddings.LayerNorm.weight"),
            &e.norm.gamma,
        ),
        vector(&format!("{prefix}embeddings.LayerNorm.bias"), &e.norm.beta),
    ];
    match (kind, &model.relative_attention_bias) {
        (ModelKind::Bert, _) => tensors.push(matrix(
            "bert.embeddings.token_type_embeddings.weight",
            &e.token_type,
        )),
        (ModelKind::MPNet, Some(bias)) => tensors.push(matrix(
            &format!("mpnet.{}", crate::mpnet::BIAS_TENSOR),
            bias.table(),
        )),
        (ModelKind::MPNet, None) => invalid!("an MPNet model without its relative attention bias"),
    }
    for (i, layer) in model.layers.iter().enumerate() {
        tensors.extend(
            layer
                .named_tensors(kind, i)
                .into_iter()
                .map(|(name, shape, v)| (format!("{prefix}{name}"), shape, v)),
        );
    }
    for (name, l) in head_names.into_iter().zip([&head.pooler, &head.classifier]) {
        tensors.push(matrix(&format!("{name}.weight"), &l.weight));
        tensors.push(vector(&format!("{name}.bias"), &l.bias));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Matrix;
    use crate::config::BertConfig;
    use crate::weights::Linear;
    use securerouter_core::prg::Seed;

    fn source(dir: &Path) -> BertWeights {
        let config = serde_json::json!({
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 12,
            "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 16, "hidden_act": "gelu", "max_position_embeddings": 10,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "num_labels": 5, "pad_token_id": 0
        });
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n").unwrap();
        let c: BertConfig = serde_json::from_value(config).unwrap();
        let mut w = BertWeights::random(c, &Seed::from_bytes([4; 16])).unwrap();
        w.layers.truncate(1);
        w.config.num_hidden_layers = 1;
        w
    }

    fn linear(out: usize, inp: usize, v: f64) -> Linear {
        Linear {
            weight: Matrix::new(out, inp, (0..out * inp).map(|i| v * i as f64).collect()),
            bias: (0..out).map(|i| v + i as f64).collect(),
        }
    }

    /// What is written loads back as the same model (to f32 rounding), labels and all, with
    /// the source's other config fields and its tokenizer; a head that does not fit is refused.
    #[test]
    fn a_saved_classifier_loads_back_with_its_labels() {
        let root =
            std::env::temp_dir().join(format!("securerouter-pretrained-{}", std::process::id()));
        let (src, out) = (root.join("src"), root.join("out"));
        let model = source(&src);
        let head = SequenceClassificationHead {
            pooler: linear(8, 8, 0.01),
            classifier: linear(3, 8, -0.02),
            num_labels: 3,
            id2label: vec![
                "contradiction".into(),
                "entailment".into(),
                "neutral".into(),
            ],
            problem_type: ProblemType::SingleLabelClassification,
        };
        save_sequence_classifier(&out, &src, &model, &head).unwrap();
        let (back, back_head) = BertWeights::load_with_head(&out, None).unwrap();
        let back_head = back_head.expect("a head");
        assert_eq!(back.layers.len(), 1);
        assert_eq!(back_head.id2label, head.id2label);
        assert_eq!(back_head.problem_type, head.problem_type);
        let close = |a: &Matrix, b: &Matrix| a.max_abs_diff(b) < 1e-6;
        assert!(close(&back.embeddings.word, &model.embeddings.word));
        assert!(close(
            &back.layers[0].ffn_out.weight,
            &model.layers[0].ffn_out.weight
        ));
        assert!(close(&back_head.classifier.weight, &head.classifier.weight));
        assert!(close(&back_head.pooler.weight, &head.pooler.weight));
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["pad_token_id"], 0);
        assert!(config.get("num_labels").is_none(), "{config}");
        assert_eq!(config["label2id"]["neutral"], 2);
        assert!(out.join("vocab.txt").is_file());

        let regression = SequenceClassificationHead {
            problem_type: ProblemType::Regression,
            ..head.clone()
        };
        let e = save_sequence_classifier(&out, &src, &model, &regression).unwrap_err();
        assert!(e.to_string().contains("one output, not 3"), "{e}");
        let narrow = SequenceClassificationHead {
            pooler: linear(4, 4, 0.1),
            ..head
        };
        let e = save_sequence_classifier(&out, &src, &model, &narrow).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
