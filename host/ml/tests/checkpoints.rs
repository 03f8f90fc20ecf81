//! Checkpoint folders in Hugging Face's exact layout, written here with small seeded random
//! weights: half-precision and sharded checkpoints load to the values they hold, a
//! `BertForSequenceClassification` head gives candle-transformers' logits, the activation
//! follows `hidden_act`, and what is not supported is refused by name.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_transformers::models::bert::{BertModel, Config, HiddenAct};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use securerouter_ml::classification::ProblemType;
use securerouter_ml::{BertWeights, SequenceClassificationHead, logits_of_checkpoint};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const VOCAB: usize = 40;
const HIDDEN: usize = 16;
const HEADS: usize = 4;
const LAYERS: usize = 2;
const INTERMEDIATE: usize = 32;
const POSITIONS: usize = 16;

/// A tensor as written: name, shape, values.
type Named = (String, Vec<usize>, Vec<f32>);

/// SplitMix64: seeded, so every run writes the same checkpoints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform on centre ± a.
    fn uniform(&mut self, centre: f32, a: f32) -> f32 {
        centre + ((self.next() >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * a
    }
}

/// The encoder, pooler and (with `labels` > 0) classifier of a BERT checkpoint: the encoder
/// and pooler under `prefix`, the classifier at the top level, as Hugging Face names them.
/// Weights are spread wide enough (±0.4) that activations reach where the two GeLUs differ.
fn bert_tensors(seed: u64, prefix: &str, labels: usize) -> Vec<Named> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, centre: f32, a: f32| {
        let n = shape.iter().product();
        let values = (0..n).map(|_| rng.uniform(centre, a)).collect();
        out.push((name, shape, values));
    };
    let (h, i) = (HIDDEN, INTERMEDIATE);
    let e = format!("{prefix}embeddings");
    add(
        format!("{e}.word_embeddings.weight"),
        vec![VOCAB, h],
        0.0,
        1.0,
    );
    add(
        format!("{e}.position_embeddings.weight"),
        vec![POSITIONS, h],
        0.0,
        0.5,
    );
    add(
        format!("{e}.token_type_embeddings.weight"),
        vec![2, h],
        0.0,
        0.5,
    );
    let mut linears = Vec::new();
    let mut norms = vec![format!("{e}.LayerNorm")];
    for l in 0..LAYERS {
        let p = format!("{prefix}encoder.layer.{l}");
        for part in ["query", "key", "value"] {
            linears.push((format!("{p}.attention.self.{part}"), h, h));
        }
        linears.push((format!("{p}.attention.output.dense"), h, h));
        linears.push((format!("{p}.intermediate.dense"), i, h));
        linears.push((format!("{p}.output.dense"), h, i));
        norms.push(format!("{p}.attention.output.LayerNorm"));
        norms.push(format!("{p}.output.LayerNorm"));
    }
    linears.push((format!("{prefix}pooler.dense"), h, h));
    if labels > 0 {
        linears.push(("classifier".into(), labels, h));
    }
    for (name, rows, cols) in linears {
        add(format!("{name}.weight"), vec![rows, cols], 0.0, 0.4);
        add(format!("{name}.bias"), vec![rows], 0.0, 0.1);
    }
    for name in norms {
        add(format!("{name}.weight"), vec![h], 1.0, 0.2);
        add(format!("{name}.bias"), vec![h], 0.0, 0.1);
    }
    out
}

/// `config.json` as `save_pretrained` writes it for a BERT task model.
fn config_json(architecture: &str, hidden_act: &str, labels: &[&str]) -> serde_json::Value {
    let id2label: HashMap<String, &str> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), *l))
        .collect();
    let label2id: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    json!({
        "architectures": [architecture],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": null,
        "hidden_act": hidden_act,
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "id2label": id2label,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "label2id": label2id,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": POSITIONS,
        "model_type": "bert",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.44.2",
        "type_vocab_size": 2,
        "use_cache": true,
        "vocab_size": VOCAB
    })
}

/// IEEE binary16 bits of `x`, rounded to nearest, ties to even (|x| < 65504).
fn f16_bits(x: f32) -> u16 {
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    let a = f64::from(x.abs());
    assert!(a < 65504.0);
    if a < 2f64.powi(-14) {
        // Subnormal; 1024 rounds up into the smallest normal, whose bits it is.
        return sign | (a * 2f64.powi(24)).round_ties_even() as u16;
    }
    let mut exponent = (a.to_bits() >> 52) as i32 - 1023;
    let mut fraction = ((a / 2f64.powi(exponent) - 1.0) * 1024.0).round_ties_even() as u16;
    if fraction == 1024 {
        exponent += 1;
        fraction = 0;
    }
    sign | (((exponent + 15) as u16) << 10) | fraction
}

/// bfloat16 bits of `x`, rounded to nearest, ties to even (finite x).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F64 => values
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| f16_bits(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| bf16_bits(v).to_le_bytes())
            .collect(),
        Dtype::I64 => values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        other => panic!("no encoder for {other:?}"),
    }
}

/// A safetensors file of `tensors`, each in the dtype `dtype_of` gives its name.
fn safetensors_bytes(tensors: &[Named], dtype_of: impl Fn(&str) -> Dtype) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let dtype = dtype_of(name);
            (name.clone(), shape.clone(), dtype, encode(values, dtype))
        })
        .collect();
    let views = data.iter().map(|(name, shape, dtype, bytes)| {
        (
            name.clone(),
            TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
        )
    });
    let format = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(format)).unwrap()
}

/// A fresh, empty folder for one test's checkpoint.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sr-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `config.json` and `model.safetensors` (all tensors in `dtype`) into a fresh folder.
fn write_checkpoint(
    name: &str,
    config: &serde_json::Value,
    tensors: &[Named],
    dtype: Dtype,
) -> PathBuf {
    let dir = folder(name);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(tensors, |_| dtype),
    )
    .unwrap();
    dir
}

/// Every loaded number, in a fixed order, exactly (Debug prints f64 round-trip).
fn snapshot(model: &BertWeights, head: &Option<SequenceClassificationHead>) -> String {
    format!("{:?}{:?}{head:?}", model.embeddings, model.layers)
}

/// The values candle (the `half` crate) rounds `values` to in `dtype`.
fn candle_rounded(values: &[f32], dtype: DType) -> Vec<f32> {
    Tensor::new(values, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap()
}

#[test]
fn half_precision_checkpoints_load_the_rounded_values_exactly() {
    let config = config_json("BertForSequenceClassification", "gelu", &["a", "b", "c"]);
    let tensors = bert_tensors(1, "bert.", 3);
    let full = write_checkpoint("f32", &config, &tensors, Dtype::F32);
    let (f32_model, f32_head) = BertWeights::load_with_head(&full, None).unwrap();
    for (name, dtype, candle_dtype) in [
        ("f16", Dtype::F16, DType::F16),
        ("bf16", Dtype::BF16, DType::BF16),
    ] {
        // Written with the rounding above; expected as candle rounds, stored exactly as F64.
        let half = write_checkpoint(name, &config, &tensors, dtype);
        let rounded: Vec<Named> = tensors
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), candle_rounded(v, candle_dtype)))
            .collect();
        let expected = write_checkpoint(&format!("{name}-expected"), &config, &rounded, Dtype::F64);
        let (model, head) = BertWeights::load_with_head(&half, None).unwrap();
        let (want, want_head) = BertWeights::load_with_head(&expected, None).unwrap();
        assert_eq!(
            snapshot(&model, &head),
            snapshot(&want, &want_head),
            "{name}"
        );
        assert_ne!(
            snapshot(&model, &head),
            snapshot(&f32_model, &f32_head),
            "{name}"
        );
        let err = f32_model
            .embeddings
            .word
            .max_abs_diff(&model.embeddings.word);
        println!("{name}: largest rounding of a word embedding {err:.3e}");
        assert!(err > 0.0 && err < if dtype == Dtype::F16 { 1e-3 } else { 1e-2 });
        for dir in [half, expected] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    std::fs::remove_dir_all(full).unwrap();
}

/// Writes `tensors` as three shards and their index, the way `save_pretrained` splits a
/// large model, into a fresh folder with `config`.
fn write_sharded(name: &str, config: &serde_json::Value, tensors: &[Named]) -> PathBuf {
    let dir = folder(name);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let per_shard = tensors.len().div_ceil(3);
    let mut weight_map = serde_json::Map::new();
    let mut total = 0;
    for (s, chunk) in tensors.chunks(per_shard).enumerate() {
        let file = format!("model-{:05}-of-00003.safetensors", s + 1);
        for (n, _, v) in chunk {
            weight_map.insert(n.clone(), json!(file));
            total += 4 * v.len();
        }
        std::fs::write(dir.join(&file), safetensors_bytes(chunk, |_| Dtype::F32)).unwrap();
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    dir
}

/// Rewrites the sharded checkpoint's index with `edit` applied to its weight_map and returns
/// the error of loading it.
fn load_error_with_index(
    dir: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> String {
    let path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let original = index.clone();
    edit(index["weight_map"].as_object_mut().unwrap());
    std::fs::write(&path, index.to_string()).unwrap();
    let err = chain(&BertWeights::load_with_head(dir, None).unwrap_err());
    std::fs::write(&path, original.to_string()).unwrap();
    err
}

#[test]
fn sharded_checkpoints_load_like_one_file_and_refuse_a_bad_index() {
    let config = config_json("BertForSequenceClassification", "gelu", &["neg", "pos"]);
    let tensors = bert_tensors(2, "bert.", 2);
    let single = write_checkpoint("unsharded", &config, &tensors, Dtype::F32);
    let sharded = write_sharded("sharded", &config, &tensors);
    let (a, head_a) = BertWeights::load_with_head(&single, None).unwrap();
    let (b, head_b) = BertWeights::load_with_head(&sharded, None).unwrap();
    assert!(head_b.is_some());
    assert_eq!(snapshot(&a, &head_a), snapshot(&b, &head_b));
    // Cut to one layer: the same first layer.
    let cut = BertWeights::load(&sharded, Some(1)).unwrap();
    assert_eq!(format!("{:?}", cut.layers), format!("{:?}", &a.layers[..1]));

    let name = "bert.encoder.layer.1.output.dense.weight";
    let err = load_error_with_index(&sharded, |map| {
        map.remove(name);
    });
    assert!(err.contains(name) && err.contains("weight_map"), "{err}");
    for escape in [
        "../model-00001-of-00003.safetensors",
        "/tmp/model-00001-of-00003.safetensors",
    ] {
        let err = load_error_with_index(&sharded, |map| {
            map.insert(name.into(), json!(escape));
        });
        assert!(err.contains(&format!("{escape:?}")), "{err}");
    }
    let err = load_error_with_index(&sharded, |map| {
        map.insert(name.into(), json!("model-00004-of-00003.safetensors"));
    });
    assert!(err.contains("model-00004-of-00003.safetensors"), "{err}");
    // A tensor mapped to a shard that does not hold it names both.
    let err = load_error_with_index(&sharded, |map| {
        map.insert(name.into(), json!("model-00001-of-00003.safetensors"));
    });
    assert!(
        err.contains(name) && err.contains("model-00001-of-00003"),
        "{err}"
    );
    for dir in [single, sharded] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// candle-transformers' BERT on the checkpoint, then the pooler and classifier in candle ops:
/// (last hidden states, logits).
fn candle_logits(
    bytes: Vec<u8>,
    act: HiddenAct,
    labels: usize,
    ids: &[u32],
    types: &[u32],
) -> (Vec<f64>, Vec<f64>) {
    let device = Device::Cpu;
    let config = Config {
        vocab_size: VOCAB,
        hidden_size: HIDDEN,
        num_hidden_layers: LAYERS,
        num_attention_heads: HEADS,
        intermediate_size: INTERMEDIATE,
        hidden_act: act,
        max_position_embeddings: POSITIONS,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        ..Config::default()
    };
    let run = || -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)?;
        let model = BertModel::load(vb.pp("bert"), &config)?;
        let pooler = candle_nn::linear(HIDDEN, HIDDEN, vb.pp("bert.pooler.dense"))?;
        let classifier = candle_nn::linear(HIDDEN, labels, vb.pp("classifier"))?;
        let input = Tensor::new(ids, &device)?.unsqueeze(0)?;
        let types = Tensor::new(types, &device)?.unsqueeze(0)?;
        let hidden = model.forward(&input, &types, None)?;
        let cls = hidden.i((.., 0, ..))?;
        let logits = classifier.forward(&pooler.forward(&cls)?.tanh()?)?;
        let as_f64 = |t: Tensor| -> candle_core::Result<Vec<f64>> {
            Ok(t.flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect())
        };
        Ok((as_f64(hidden)?, as_f64(logits)?))
    };
    run().unwrap()
}

/// An error and its sources, as the binary prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn classification_heads_give_candles_logits() {
    // A sentence pair: [CLS] a b c [SEP] in segment 0, d e [SEP] in segment 1.
    let ids = [2, 11, 25, 7, 3, 30, 19, 3];
    let types = [0, 0, 0, 0, 0, 1, 1, 1];
    for (case, act, candle_act, labels, problem) in [
        (
            "3-labels",
            "gelu",
            HiddenAct::Gelu,
            &["negative", "neutral", "positive"][..],
            ProblemType::SingleLabelClassification,
        ),
        (
            "regression",
            "gelu",
            HiddenAct::Gelu,
            &["LABEL_0"][..],
            ProblemType::Regression,
        ),
        (
            "gelu-new",
            "gelu_new",
            HiddenAct::GeluApproximate,
            &["no", "yes"][..],
            ProblemType::SingleLabelClassification,
        ),
    ] {
        let mut tensors = bert_tensors(3, "bert.", labels.len());
        // Older checkpoints keep this int64 buffer; it is not a weight and is not read.
        tensors.push((
            "bert.embeddings.position_ids".into(),
            vec![1, POSITIONS],
            (0..POSITIONS).map(|p| p as f32).collect(),
        ));
        let config = config_json("BertForSequenceClassification", act, labels);
        let dir = folder(case);
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let dtype_of = |n: &str| {
            if n.ends_with("position_ids") {
                Dtype::I64
            } else {
                Dtype::F32
            }
        };
        let bytes = safetensors_bytes(&tensors, dtype_of);
        std::fs::write(dir.join("model.safetensors"), &bytes).unwrap();

        let (model, head) = BertWeights::load_with_head(&dir, None).unwrap();
        let head = head.expect("a classification head");
        assert_eq!(head.num_labels, labels.len());
        assert_eq!(head.id2label, labels);
        assert_eq!(head.problem_type, problem);
        let ours = logits_of_checkpoint(&model, &head, &ids, &types).unwrap();
        let hidden = model.forward(&ids, &types).unwrap();
        let (candle_hidden, theirs) = candle_logits(bytes, candle_act, labels.len(), &ids, &types);
        let (dh, dl) = (
            max_diff(&hidden.data, &candle_hidden),
            max_diff(&ours, &theirs),
        );
        println!("{case}: max |ours − candle| hidden {dh:.3e}, logits {dl:.3e}; logits {ours:?}");
        assert!(dh <= 1e-4 && dl <= 1e-4, "{case}: hidden {dh}, logits {dl}");
        if act == "gelu_new" {
            // The tanh GeLU matters at these activations: exact GeLU would miss candle by more
            // than the tolerance, and by far more than the reference does.
            let mut exact = model.clone();
            exact.config.hidden_act = "gelu".into();
            let other = exact.forward(&ids, &types).unwrap();
            let gap = max_diff(&other.data, &candle_hidden);
            println!("{case}: exact GeLU would differ from candle by {gap:.3e}");
            assert!(gap > 1e-4 && gap > 100.0 * dh, "{gap}");
        }
        // Without the head, the same encoder.
        let bare = BertWeights::load(&dir, None).unwrap();
        assert_eq!(format!("{:?}", bare.layers), format!("{:?}", model.layers));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_bare_encoder_has_no_head() {
    let config = config_json("BertModel", "gelu", &["LABEL_0", "LABEL_1"]);
    let dir = write_checkpoint("bare", &config, &bert_tensors(4, "", 0), Dtype::F32);
    let (_, head) = BertWeights::load_with_head(&dir, None).unwrap();
    assert!(head.is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unsupported_checkpoints_are_refused_by_name() {
    let tensors = bert_tensors(5, "bert.", 2);
    let base = config_json("BertForSequenceClassification", "gelu", &["a", "b"]);
    let error = |name: &str,
                 config: &serde_json::Value,
                 tensors: &[Named],
                 dtype_of: &dyn Fn(&str) -> Dtype| {
        let dir = folder(name);
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::write(
            dir.join("model.safetensors"),
            safetensors_bytes(tensors, dtype_of),
        )
        .unwrap();
        let err = chain(&BertWeights::load_with_head(&dir, None).unwrap_err());
        std::fs::remove_dir_all(dir).unwrap();
        err
    };
    let f32s = |_: &str| Dtype::F32;
    let with = |key: &str, value: serde_json::Value| {
        let mut c = base.clone();
        c[key] = value;
        c
    };
    let err = error(
        "roberta",
        &with("architectures", json!(["RobertaForMaskedLM"])),
        &tensors,
        &f32s,
    );
    assert!(
        err.contains("architectures [\"RobertaForMaskedLM\"] is not supported"),
        "{err}"
    );
    let err = error(
        "mpnet",
        &with("model_type", json!("mpnet")),
        &tensors,
        &f32s,
    );
    assert!(
        err.contains(
            "architectures [\"BertForSequenceClassification\"] is not supported for model_type \"mpnet\""
        ),
        "{err}"
    );
    let err = error(
        "roberta-type",
        &with("model_type", json!("roberta")),
        &tensors,
        &f32s,
    );
    assert!(
        err.contains("model_type \"roberta\" is not supported"),
        "{err}"
    );
    let err = error("relu", &with("hidden_act", json!("relu")), &tensors, &f32s);
    assert!(
        err.contains("hidden_act \"relu\" is not supported"),
        "{err}"
    );
    let err = error(
        "relative",
        &with("position_embedding_type", json!("relative_key")),
        &tensors,
        &f32s,
    );
    assert!(
        err.contains("position_embedding_type \"relative_key\""),
        "{err}"
    );

    let name = "bert.encoder.layer.0.attention.self.key.weight";
    let err = error("i64", &base, &tensors, &|n: &str| {
        if n == name { Dtype::I64 } else { Dtype::F32 }
    });
    assert!(err.contains(name) && err.contains("I64"), "{err}");

    // A declared classifier that is not there, and a classifier without its pooler.
    let headless: Vec<Named> = tensors
        .iter()
        .filter(|t| !t.0.starts_with("classifier"))
        .cloned()
        .collect();
    let err = error("headless", &base, &headless, &f32s);
    assert!(err.contains("classifier.weight"), "{err}");
    let poolerless: Vec<Named> = tensors
        .iter()
        .filter(|t| !t.0.contains("pooler"))
        .cloned()
        .collect();
    let err = error("poolerless", &base, &poolerless, &f32s);
    assert!(err.contains("bert.pooler.dense.weight is missing"), "{err}");
    // A classifier whose rows disagree with id2label.
    let err = error(
        "labels",
        &config_json("BertForSequenceClassification", "gelu", &["a", "b", "c"]),
        &tensors,
        &f32s,
    );
    assert!(err.contains("classifier.weight has shape [2, 16]"), "{err}");

    // PyTorch pickles are not read.
    let dir = folder("pickle");
    std::fs::write(dir.join("config.json"), base.to_string()).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"not read").unwrap();
    let err = chain(&BertWeights::load(&dir, None).unwrap_err());
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safetensors"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
