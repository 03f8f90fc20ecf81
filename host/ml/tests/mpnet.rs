//! MPNet against Hugging Face transformers' own outputs (`MPNetForSequenceClassification`,
//! `MPNetModel`), written by `fixtures/mpnet/make_expected.py`:
//!
//! - a tiny random MPNetForSequenceClassification saved by `save_pretrained` (`fixtures/mpnet/tiny`):
//!   last hidden states and logits for a sentence, a pair, a sequence with `<pad>` ids inside and
//!   one long enough to reach every relative-position bucket; PyTorch's buckets; the ids of its
//!   tokenizer;
//! - the real all-mpnet-base-v2 from the asset cache (`securerouter assets fetch --mpnet`): the
//!   ids of one sentence, the first values of its last hidden state and its mean-pooled
//!   embedding. Not fetched by default (CI included): without it the test prints `SKIPPED: ...`
//!   and passes.
//!
//! Hugging Face computed in float64 on the checkpoints' float32 weights, as the reference does.

use securerouter_ml::assets::{self, MPNET_BASE};
use securerouter_ml::mpnet::relative_position_bucket;
use securerouter_ml::{BertWeights, Matrix, ModelKind, Positions, Tokenizer, mean_pool};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The tolerance the brief of this reference sets against Hugging Face.
const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet")
}

fn tiny_dir() -> PathBuf {
    fixtures().join("tiny")
}

#[derive(Deserialize)]
struct TinyExpected {
    relative_positions_from: i64,
    buckets: Vec<usize>,
    cases: Vec<Case>,
    tokenizer: Vec<Encoded>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    ids: Vec<u32>,
    last_hidden_state: Vec<Vec<f64>>,
    logits: Vec<f64>,
}

#[derive(Deserialize)]
struct Encoded {
    a: String,
    b: Option<String>,
    ids: Vec<u32>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn tiny_mpnet_matches_hugging_face() {
    let expected: TinyExpected = read_json(&fixtures().join("tiny_expected.json"));
    let (model, head) = BertWeights::load_with_head(&tiny_dir(), None).unwrap();
    assert_eq!(model.config.kind().unwrap(), ModelKind::MPNet);
    assert!(model.relative_attention_bias.is_some());
    let head = head.expect("MPNetForSequenceClassification's head");
    assert_eq!(head.id2label, ["negative", "neutral", "positive"]);
    let (mut worst_hidden, mut worst_logits) = (0.0f64, 0.0f64);
    for case in &expected.cases {
        let hidden = model.forward(&case.ids, &vec![0; case.ids.len()]).unwrap();
        let want: Vec<f64> = case.last_hidden_state.concat();
        assert_eq!((hidden.rows, hidden.cols), (case.ids.len(), 32));
        let d = max_diff(&hidden.data, &want);
        let logits = head.logits(&hidden).unwrap();
        let dl = max_diff(&logits, &case.logits);
        println!(
            "{}: hidden states differ by {d:.2e}, logits by {dl:.2e}",
            case.name
        );
        assert!(d < TOLERANCE, "{}: hidden states differ by {d}", case.name);
        assert!(dl < TOLERANCE, "{}: logits differ by {dl}", case.name);
        worst_hidden = worst_hidden.max(d);
        worst_logits = worst_logits.max(dl);
    }
    println!(
        "tiny MPNet against transformers: max |Δ| hidden {worst_hidden:.2e}, logits {worst_logits:.2e}"
    );

    // The fixture tells MPNet from BERT's graph: without the relative-attention bias, or with
    // BERT's positions, the hidden states are far off.
    let long = expected.cases.iter().find(|c| c.name == "long").unwrap();
    let want: Vec<f64> = long.last_hidden_state.concat();
    let types = vec![0; long.ids.len()];
    let mut unbiased = model.clone();
    unbiased.relative_attention_bias = None;
    let d = max_diff(&unbiased.forward(&long.ids, &types).unwrap().data, &want);
    assert!(d > 0.1, "without the bias: {d}");
    let mut from_zero = model.clone();
    from_zero.embeddings.positions = Positions::FromZero;
    let d = max_diff(&from_zero.forward(&long.ids, &types).unwrap().data, &want);
    assert!(d > 0.1, "with BERT's positions: {d}");
}

#[test]
fn buckets_match_pytorch() {
    let expected: TinyExpected = read_json(&fixtures().join("tiny_expected.json"));
    for (k, &bucket) in expected.buckets.iter().enumerate() {
        let relative = expected.relative_positions_from + k as i64;
        assert_eq!(
            relative_position_bucket(relative),
            bucket,
            "relative {relative}"
        );
    }
    assert!(
        expected.buckets.len() > 2 * 128,
        "the long case reaches the last buckets"
    );
}

#[test]
fn the_tiny_tokenizer_matches_hugging_face() {
    let expected: TinyExpected = read_json(&fixtures().join("tiny_expected.json"));
    let tokenizer = Tokenizer::from_dir(&tiny_dir()).unwrap();
    for e in &expected.tokenizer {
        let got = match &e.b {
            None => tokenizer.encode(&e.a, 512).unwrap(),
            Some(b) => tokenizer.encode_pair(&e.a, b, 512).unwrap(),
        };
        assert_eq!(got.ids, e.ids, "{:?} / {:?}", e.a, e.b);
        assert!(got.type_ids.iter().all(|&t| t == 0), "{:?}", got.type_ids);
    }
    // Without its tokenizer.json, an MPNet folder is not tokenized as BERT.
    let dir = tiny_copy("vocab-only");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("vocab.txt"), "<s>\n<pad>\n</s>\n<unk>\n[UNK]\n").unwrap();
    let e = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model_type \"mpnet\" needs its tokenizer.json"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
    // `<s> A </s></s> B </s>`, cut longest first with the four special tokens kept.
    let pair = tokenizer
        .encode_pair("loved this movie , it was great", "never", 9)
        .unwrap();
    assert_eq!(pair.ids.len(), 9);
    assert_eq!(
        (pair.ids[0], pair.ids[5], pair.ids[6], pair.ids[8]),
        (0, 2, 2, 2)
    );
}

/// A copy of the tiny fixture in a fresh temporary folder, for tests that damage it.
fn tiny_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sr-mpnet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_dir().join(f), dir.join(f)).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut c: serde_json::Value = read_json(&path);
    edit(&mut c);
    std::fs::write(&path, c.to_string()).unwrap();
}

/// Rewrites the fixture's safetensors without the tensors `drop` selects.
fn drop_tensors(dir: &Path, drop: impl Fn(&str) -> bool) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !drop(name))
        .collect();
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&path, out).unwrap();
}

fn load_error(dir: &Path) -> String {
    let e = BertWeights::load_with_head(dir, None).unwrap_err();
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain += &format!(": {s}");
        source = s.source();
    }
    chain
}

#[test]
fn what_mpnet_does_not_support_is_refused_by_name() {
    let dir = tiny_copy("buckets");
    edit_config(&dir, |c| c["relative_attention_num_buckets"] = 64.into());
    let e = load_error(&dir);
    assert!(e.contains("relative_attention_num_buckets 64"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();

    let dir = tiny_copy("architecture");
    edit_config(&dir, |c| {
        c["architectures"] = serde_json::json!(["BertModel"])
    });
    let e = load_error(&dir);
    assert!(
        e.contains("architectures [\"BertModel\"] is not supported for model_type \"mpnet\""),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    let dir = tiny_copy("no-bias");
    drop_tensors(&dir, |n| n.contains("relative_attention_bias"));
    let e = load_error(&dir);
    assert!(
        e.contains("mpnet.encoder.relative_attention_bias.weight is missing"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    let dir = tiny_copy("no-head");
    drop_tensors(&dir, |n| n.starts_with("classifier.out_proj"));
    let e = load_error(&dir);
    assert!(
        e.contains("MPNetForSequenceClassification") && e.contains("classifier.out_proj.weight"),
        "{e}"
    );
    // Without the declaration, a checkpoint without a head is an encoder.
    edit_config(&dir, |c| {
        c["architectures"] = serde_json::json!(["MPNetModel"])
    });
    let (_, head) = BertWeights::load_with_head(&dir, None).unwrap();
    assert!(head.is_none());
    std::fs::remove_dir_all(dir).unwrap();

    let dir = tiny_copy("bias-shape");
    edit_config(&dir, |c| {
        c["num_attention_heads"] = 8.into();
    });
    let e = load_error(&dir);
    assert!(
        e.contains("relative_attention_bias.weight has shape [32, 4]"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mpnet_inputs_are_checked() {
    let model = BertWeights::load(&tiny_dir(), None).unwrap();
    // 160 positions, the first two taken by the padding id: 158 tokens, pads aside.
    assert_eq!(model.embeddings.max_tokens(), 158);
    let ids = vec![5u32; 158];
    assert!(model.embed(&ids, &vec![0; 158]).is_ok());
    let e = model.embed(&[5; 159], &[0; 159]).unwrap_err().to_string();
    assert!(
        e.contains("position id 160") && e.contains("158 tokens"),
        "{e}"
    );
    // A `<pad>` takes no position of its own.
    let mut padded = vec![5u32; 159];
    padded[3] = 1;
    assert!(model.embed(&padded, &vec![0; 159]).is_ok());
    // No token types: type 1 is refused.
    let e = model.embed(&[0, 5, 2], &[0, 1, 0]).unwrap_err().to_string();
    assert!(e.contains("type 1"), "{e}");
}

#[test]
fn mpnet_layers_save_under_their_own_names() {
    let model = BertWeights::load(&tiny_dir(), None).unwrap();
    let dir = tiny_copy("layers");
    let path = dir.join("top.safetensors");
    model.save_top_layers(1, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let names = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(
        names.contains(&"encoder.layer.1.attention.attn.q.weight".to_string()),
        "{names:?}"
    );
    let mut back = model.clone();
    back.layers[1] = back.layers[0].clone();
    back.load_top_layers(1, &path).unwrap();
    let ids = [0, 17, 42, 2];
    let d = back
        .forward(&ids, &[0; 4])
        .unwrap()
        .max_abs_diff(&model.forward(&ids, &[0; 4]).unwrap());
    assert_eq!(d, 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[derive(Deserialize)]
struct RealExpected {
    sentence: String,
    ids: Vec<u32>,
    float64: RealOutputs,
    float32: RealOutputs,
}

#[derive(Deserialize)]
struct RealOutputs {
    first_values: Vec<Vec<f64>>,
    mean_pooled: Vec<f64>,
}

#[test]
fn all_mpnet_base_v2_matches_hugging_face() {
    let cache = assets::cache_dir(None).unwrap();
    let dir = match MPNET_BASE.path(&cache) {
        Ok(dir) => dir,
        Err(e) => {
            println!("SKIPPED all_mpnet_base_v2_matches_hugging_face: {e}");
            return;
        }
    };
    let expected: RealExpected = read_json(&fixtures().join("all_mpnet_base_v2_expected.json"));
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let encoding = tokenizer.encode(&expected.sentence, 512).unwrap();
    assert_eq!(encoding.ids, expected.ids);
    assert!(encoding.type_ids.iter().all(|&t| t == 0));
    let pair = tokenizer
        .encode_pair("Hello world!", "A second sentence, here.", 512)
        .unwrap();
    // As Hugging Face's MPNetTokenizer gives it: `<s> A </s></s> B </s>`, type ids all zero.
    assert_eq!(
        pair.ids,
        [
            0, 7596, 2092, 1003, 2, 2, 1041, 2121, 6255, 1014, 2186, 1016, 2
        ]
    );
    assert!(pair.type_ids.iter().all(|&t| t == 0));

    let model = BertWeights::load(&dir, None).unwrap();
    assert_eq!(model.config.kind().unwrap(), ModelKind::MPNet);
    let n = expected.ids.len();
    let hidden: Matrix = model.forward(&expected.ids, &vec![0; n]).unwrap();
    let rows = [0, 1, n - 1];
    let ours_first: Vec<f64> = rows
        .iter()
        .flat_map(|&i| hidden.row(i)[..8].to_vec())
        .collect();
    let pooled = mean_pool(&hidden);
    for (label, want, tolerance) in [
        ("float64", &expected.float64, TOLERANCE),
        ("float32", &expected.float32, 1e-4),
    ] {
        let first = max_diff(&ours_first, &want.first_values.concat());
        let mean = max_diff(&pooled, &want.mean_pooled);
        println!(
            "all-mpnet-base-v2 against transformers in {label}: max |Δ| first values {first:.2e}, \
             mean-pooled embedding {mean:.2e}"
        );
        assert!(
            first < tolerance && mean < tolerance,
            "{label}: {first} {mean}"
        );
    }
}

/// A fine-tuned MPNet classifier is written as `MPNetForSequenceClassification` saves one: it
/// loads back (relative bias, positions and head included) computing what it computed, to f32
/// rounding, on every fixture case, with its labels.
#[test]
fn a_saved_mpnet_classifier_computes_what_it_computed() {
    let expected: TinyExpected = read_json(&fixtures().join("tiny_expected.json"));
    let (model, head) = BertWeights::load_with_head(&tiny_dir(), None).unwrap();
    let head = head.unwrap();
    let out = std::env::temp_dir().join(format!("securerouter-mpnet-save-{}", std::process::id()));
    securerouter_ml::pretrained::save_sequence_classifier(&out, &tiny_dir(), &model, &head)
        .unwrap();
    let loaded = BertWeights::load_with_head(&out, None);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let (back, back_head) = loaded.unwrap();
    let back_head = back_head.expect("the head");
    assert_eq!(config["architectures"][0], "MPNetForSequenceClassification");
    assert_eq!(back_head.id2label, head.id2label);
    assert_eq!(back.embeddings.positions, model.embeddings.positions);
    for case in &expected.cases {
        let types = vec![0; case.ids.len()];
        let want = head
            .logits(&model.forward(&case.ids, &types).unwrap())
            .unwrap();
        let got = back_head
            .logits(&back.forward(&case.ids, &types).unwrap())
            .unwrap();
        let d = max_diff(&got, &want);
        assert!(d < 1e-4, "{}: logits differ by {d}", case.name);
    }
}
