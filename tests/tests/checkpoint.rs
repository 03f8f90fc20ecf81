//! `securerouter bench checkpoint`: a `BertForSequenceClassification` folder in Hugging Face's
//! layout (F16 tensors, its own pooler and classifier, a `vocab.txt`) runs under MPC across
//! processes with its own head, and its labels and logits match the f64 reference of that
//! checkpoint: on random token ids, and on a sentence-pair task's dev examples in GLUE's layout
//! (MNLI), scored by the task's metric. An MPNet checkpoint, whose client has no bundle yet,
//! is refused.

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use securerouter_tests::binary;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const VOCAB: usize = 30;
const HIDDEN: usize = 16;
const HEADS: usize = 2;
const FFN: usize = 32;
const POSITIONS: usize = 16;
const LABELS: usize = 3;

/// SplitMix64, seeded: the same checkpoint on every run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, centre: f32, a: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        centre + ((z >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * a
    }
}

/// f32 to IEEE half, rounded to nearest (the values here are small and normal).
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    let mant = b & 0x7f_ffff;
    let mut h = u32::from(sign) | ((exp as u32) << 10) | (mant >> 13);
    if mant & 0x1fff > 0x1000 || (mant & 0x1fff == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    h as u16
}

/// Writes a one-layer `BertForSequenceClassification` with `LABELS` labels and the
/// feed-forward activation `hidden_act` into `dir`.
fn write_checkpoint(dir: &Path, hidden_act: &str) {
    let mut rng = Rng(7);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, shape: &[usize], centre: f32, a: f32| {
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| f16_bits(rng.uniform(centre, a)).to_le_bytes())
            .collect();
        tensors.push((name.to_string(), shape.to_vec(), bytes));
    };
    let (h, w) = (HIDDEN, 0.3);
    add(
        "bert.embeddings.word_embeddings.weight",
        &[VOCAB, h],
        0.0,
        1.0,
    );
    add(
        "bert.embeddings.position_embeddings.weight",
        &[POSITIONS, h],
        0.0,
        0.3,
    );
    add(
        "bert.embeddings.token_type_embeddings.weight",
        &[2, h],
        0.0,
        0.3,
    );
    add("bert.embeddings.LayerNorm.weight", &[h], 1.0, 0.1);
    add("bert.embeddings.LayerNorm.bias", &[h], 0.0, 0.1);
    let l = "bert.encoder.layer.0";
    for part in ["query", "key", "value"] {
        add(
            &format!("{l}.attention.self.{part}.weight"),
            &[h, h],
            0.0,
            w,
        );
        add(&format!("{l}.attention.self.{part}.bias"), &[h], 0.0, 0.05);
    }
    add(
        &format!("{l}.attention.output.dense.weight"),
        &[h, h],
        0.0,
        w,
    );
    add(&format!("{l}.attention.output.dense.bias"), &[h], 0.0, 0.05);
    add(
        &format!("{l}.attention.output.LayerNorm.weight"),
        &[h],
        1.0,
        0.1,
    );
    add(
        &format!("{l}.attention.output.LayerNorm.bias"),
        &[h],
        0.0,
        0.1,
    );
    add(&format!("{l}.intermediate.dense.weight"), &[FFN, h], 0.0, w);
    add(&format!("{l}.intermediate.dense.bias"), &[FFN], 0.0, 0.05);
    add(&format!("{l}.output.dense.weight"), &[h, FFN], 0.0, w);
    add(&format!("{l}.output.dense.bias"), &[h], 0.0, 0.05);
    add(&format!("{l}.output.LayerNorm.weight"), &[h], 1.0, 0.1);
    add(&format!("{l}.output.LayerNorm.bias"), &[h], 0.0, 0.1);
    add("bert.pooler.dense.weight", &[h, h], 0.0, 0.5);
    add("bert.pooler.dense.bias", &[h], 0.0, 0.1);
    add("classifier.weight", &[LABELS, h], 0.0, 1.0);
    add("classifier.bias", &[LABELS], 0.0, 0.1);
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F16, shape.clone(), bytes).expect("a tensor");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(&views, None, &dir.join("model.safetensors"))
        .expect("writing model.safetensors");
    let config = serde_json::json!({
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "num_hidden_layers": 1,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "hidden_act": hidden_act,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "id2label": {"0": "contradiction", "1": "entailment", "2": "neutral"},
        "label2id": {"contradiction": 0, "entailment": 1, "neutral": 2},
        "torch_dtype": "float16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("writing config.json");
    // Special tokens, then a few words the MNLI fixture uses (the rest read as [UNK]).
    let words = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "is", "was", "not", "man",
        "woman", "dog", "cat", "house", "he", "she", "they", "in", "on", "and", "of", "to", "it",
        "##s", ".", ",", "##ing", "##ed", "no",
    ];
    assert_eq!(words.len(), VOCAB);
    std::fs::write(dir.join("vocab.txt"), words.join("\n") + "\n").expect("writing vocab.txt");
}

/// Runs `securerouter bench checkpoint --model-dir DIR ARGS --json` to success; its JSON line.
fn bench_checkpoint(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(binary())
        .args(["bench", "checkpoint", "--model-dir"])
        .arg(dir)
        .args(args)
        .args(["--json", "--timeout", "120"])
        .output()
        .expect("running securerouter bench checkpoint");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().next().expect("a JSON line");
    println!("{line}");
    serde_json::from_str(line).expect("valid JSON")
}

#[test]
fn a_checkpoint_with_its_own_head_runs_under_mpc_like_its_reference() {
    let dir = std::env::temp_dir().join(format!("securerouter-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_checkpoint(&dir, "gelu");
    let random = bench_checkpoint(&dir, &["--seq", "8", "--queries", "4"]);
    let mnli = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/glue/MNLI");
    let task = bench_checkpoint(
        &dir,
        &[
            "--task",
            "mnli",
            "--data",
            mnli.to_str().unwrap(),
            "--seq",
            "16",
            "--queries",
            "5",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    for v in [&random, &task] {
        securerouter_tests::assert_labels_follow_the_reference(v, 0.05);
    }
    assert_eq!(random["queries"], 4, "{random}");
    assert!(random.get("metric").is_none(), "{random}");
    // MNLI's matched dev file holds 5 pairs; each is scored by accuracy, under MPC as in
    // plaintext (the labels agree, so the two accuracies do too).
    assert_eq!(task["queries"], 5, "{task}");
    assert_eq!(task["task"], "MNLI", "{task}");
    assert_eq!(task["metric"]["examples"], 5, "{task}");
    let accuracy = task["metric"]["accuracy"].as_f64().expect("an accuracy");
    assert!((0.0..=1.0).contains(&accuracy), "{task}");
    assert_eq!(task["metric"], task["reference_metric"], "{task}");
}

/// A checkpoint whose `hidden_act` is the tanh GeLU ("gelu_new") runs under MPC with its own
/// activation, carried by the model files to the dealer and both servers, and its labels and
/// logits match its f64 reference, which computes the tanh GeLU too.
#[test]
fn a_tanh_gelu_checkpoint_runs_under_mpc_like_its_reference() {
    let dir = std::env::temp_dir().join(format!(
        "securerouter-checkpoint-gelu-new-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_checkpoint(&dir, "gelu_new");
    let v = bench_checkpoint(&dir, &["--seq", "8", "--queries", "3"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(v["queries"], 3, "{v}");
    securerouter_tests::assert_labels_follow_the_reference(&v, 0.05);
}

/// A task whose labels do not fit the checkpoint's head is refused by name before anything
/// runs: STS-B is a regression, and this head has three outputs.
#[test]
fn a_task_that_does_not_fit_the_head_is_refused() {
    let dir = std::env::temp_dir().join(format!(
        "securerouter-checkpoint-stsb-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_checkpoint(&dir, "gelu");
    let stsb = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/glue/STS-B");
    let out = Command::new(binary())
        .args(["bench", "checkpoint", "--model-dir"])
        .arg(&dir)
        .args(["--task", "stsb", "--seq", "16", "--data"])
        .arg(&stsb)
        .output()
        .expect("running securerouter bench checkpoint");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is a regression") && stderr.contains("3 outputs"),
        "{stderr}"
    );
}

/// Runs `securerouter train expert ARGS` to success; its JSON report (the last line).
fn train_expert(args: &[&str]) -> serde_json::Value {
    let out = Command::new(binary())
        .args(["train", "expert"])
        .args(args)
        .output()
        .expect("running securerouter train expert");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "train expert failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

/// The `config.json` a classifier folder holds.
fn config_of(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("config.json")).expect("reading config.json");
    serde_json::from_str(&text).expect("config.json is JSON")
}

fn fixture(task: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/glue");
    dir.join(task).to_str().expect("a UTF-8 path").to_string()
}

/// A sentence-pair task end to end on GLUE's files: the real MiniLM-L6 checkpoint fine-tuned on
/// MRPC's training pairs (it fits all ten), written as a classifier folder with its labels,
/// then run under MPC on the dev pairs: the same labels as the f64 reference and as training's
/// own scoring, so the same accuracy and F1 all three ways.
#[test]
fn a_pair_task_trains_then_runs_under_mpc_scored_by_its_metric() {
    if !securerouter_tests::assets_present() {
        return;
    }
    let cache = securerouter_ml::assets::cache_dir(None).unwrap();
    let minilm = securerouter_ml::assets::MINILM_L6.path(&cache).unwrap();
    let out = securerouter_tests::temp_dir("mrpc-expert");
    let mrpc = fixture("MRPC");
    let (out_s, minilm_s) = (out.to_str().unwrap(), minilm.to_str().unwrap());
    let report = train_expert(&[
        "--model-dir",
        minilm_s,
        "--out",
        out_s,
        "--task",
        "mrpc",
        "--data",
        &mrpc,
        "--tune-top",
        "1",
        "--epochs",
        "20",
        "--seq",
        "32",
        "--force",
    ]);
    assert_eq!(report["task"], "MRPC", "{report}");
    // The experts' share of the 10 training pairs (the router's 3 left unseen), scored on the
    // 5 dev pairs.
    assert_eq!(
        (
            report["train_examples"].as_u64(),
            report["held_out_examples"].as_u64()
        ),
        (Some(7), Some(5))
    );
    assert_eq!(report["train_metric"]["accuracy"], 1.0, "{report}");
    let config = config_of(&out);
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"], serde_json::json!({"0": "0", "1": "1"}));
    assert!(
        out.join("tokenizer.json").is_file() && out.join("securerouter-training.json").is_file()
    );
    let secure = bench_checkpoint(
        &out,
        &[
            "--task",
            "mrpc",
            "--data",
            &mrpc,
            "--seq",
            "32",
            "--queries",
            "5",
        ],
    );
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(secure["label_agreement"], 1.0, "{secure}");
    assert!(
        secure["max_abs_logit_err"].as_f64().unwrap() < 0.05,
        "{secure}"
    );
    assert_eq!(secure["metric"], secure["reference_metric"], "{secure}");
    assert_eq!(
        secure["metric"], report["held_out_metric"],
        "{secure}\n{report}"
    );
}

/// A regression end to end: a `gelu_new` checkpoint whose head has three classes, trained on
/// STS-B's scores, gets a fresh one-output regression head (its labels cannot be kept), which
/// runs under MPC with its own activation within the usual error of the reference, scored by
/// Pearson and Spearman.
#[test]
fn a_regression_task_trains_a_one_output_head_that_runs_under_mpc() {
    let dir = securerouter_tests::temp_dir("stsb-source");
    write_checkpoint(&dir, "gelu_new");
    let out = securerouter_tests::temp_dir("stsb-expert");
    let stsb = fixture("STS-B");
    let report = train_expert(&[
        "--model-dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--task",
        "stsb",
        "--data",
        &stsb,
        "--tune-top",
        "1",
        "--epochs",
        "5",
        "--seq",
        "16",
        "--force",
    ]);
    assert_eq!(report["started_from_checkpoint_head"], false, "{report}");
    assert_eq!(report["labels"]["kind"], "score", "{report}");
    assert_eq!(
        report["held_out_metric"]["metric"], "pearson_spearman",
        "{report}"
    );
    let config = config_of(&out);
    assert_eq!(config["problem_type"], "regression", "{config}");
    let secure = bench_checkpoint(
        &out,
        &[
            "--task",
            "stsb",
            "--data",
            &stsb,
            "--seq",
            "16",
            "--queries",
            "5",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        secure["max_abs_logit_err"].as_f64().unwrap() < 0.05,
        "{secure}"
    );
    assert_eq!(secure["metric"]["metric"], "pearson_spearman", "{secure}");
    assert!(secure["metric"]["correlation"].is_number(), "{secure}");
}

/// `train expert` refuses, by name, what it cannot do: writing over its own checkpoint, more
/// tuned layers than the model has, a table column that is not there.
#[test]
fn train_expert_refuses_bad_requests_by_name() {
    let dir = securerouter_tests::temp_dir("refusals-source");
    write_checkpoint(&dir, "gelu");
    let out = securerouter_tests::temp_dir("refusals-out");
    let table =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/tables/reviews.csv");
    let (d, o, t) = (
        dir.to_str().unwrap(),
        out.to_str().unwrap(),
        table.to_str().unwrap(),
    );
    let mrpc = fixture("MRPC");
    for (args, expected) in [
        (
            vec![
                "--model-dir",
                d,
                "--out",
                d,
                "--task",
                "mrpc",
                "--data",
                &mrpc,
            ],
            "is the checkpoint folder itself",
        ),
        (
            vec![
                "--model-dir",
                d,
                "--out",
                o,
                "--task",
                "mrpc",
                "--data",
                &mrpc,
                "--tune-top",
                "2",
            ],
            "--tune-top 2 exceeds the 1 layers",
        ),
        (
            vec![
                "--model-dir",
                d,
                "--out",
                o,
                "--data",
                t,
                "--text-col",
                "text",
                "--label-col",
                "label",
            ],
            "no column \"text\"",
        ),
        (
            vec!["--model-dir", d, "--out", o, "--data", t],
            "--text-col",
        ),
    ] {
        let run = Command::new(binary())
            .args(["train", "expert"])
            .args(&args)
            .output()
            .expect("running securerouter train expert");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

/// A user's own table of five sentence pairs (JSON Lines, labels as numbers and as strings):
/// its label set is saved with the classifier, a fifth of it is held out by the fixed split, and
/// `bench checkpoint` runs that held-out pair under MPC.
#[test]
fn a_table_of_pairs_trains_with_its_label_set() {
    let dir = securerouter_tests::temp_dir("table-source");
    write_checkpoint(&dir, "gelu");
    let out = securerouter_tests::temp_dir("table-expert");
    let table =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/tables/pairs.jsonl");
    let report = train_expert(&[
        "--model-dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--data",
        table.to_str().unwrap(),
        "--text-col",
        "premise",
        "--text-pair-col",
        "hypothesis",
        "--label-col",
        "label",
        "--epochs",
        "2",
        "--seq",
        "16",
        "--force",
    ]);
    let config = config_of(&out);
    // The benchmark names the table as training did, so it scores the same held-out pair.
    let secure = bench_checkpoint(
        &out,
        &[
            "--data",
            table.to_str().unwrap(),
            "--text-col",
            "premise",
            "--text-pair-col",
            "hypothesis",
            "--label-col",
            "label",
            "--seq",
            "16",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(secure["task"], "pairs.jsonl", "{secure}");
    assert_eq!(secure["queries"], 1, "{secure}");
    assert_eq!(secure["label_agreement"], 1.0, "{secure}");
    assert_eq!(
        secure["metric"], report["held_out_metric"],
        "{secure}\n{report}"
    );
    assert_eq!(
        report["labels"]["names"],
        serde_json::json!(["0", "1", "2"]),
        "{report}"
    );
    assert_eq!(
        config["id2label"],
        serde_json::json!({"0": "0", "1": "1", "2": "2"}),
        "{config}"
    );
    let (train, held) = (
        report["train_examples"].as_u64(),
        report["held_out_examples"].as_u64(),
    );
    // 4 of the 5 rows train, 3 of them the experts' share; 1 is held out.
    assert_eq!((train, held), (Some(3), Some(1)), "{report}");
    assert_eq!(report["held_out_metric"]["metric"], "accuracy", "{report}");
}

/// An MPNet classifier (the tiny transformers-saved fixture, its relative-attention bias drawn
/// wide) runs under MPC across processes: the client embeds with MPNet's positions and its own
/// tokenizer, the servers add their shares of the bias, and labels and logits match the f64
/// reference, on random ids filling 48 positions and on a table's held-out sentences.
#[test]
fn an_mpnet_checkpoint_runs_under_mpc_like_its_reference() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/mpnet/tiny");
    let table =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/tables/reviews.csv");
    let random = bench_checkpoint(&tiny, &["--seq", "48", "--queries", "2"]);
    let sentences = bench_checkpoint(
        &tiny,
        &[
            "--data",
            table.to_str().unwrap(),
            "--text-col",
            "review",
            "--label-col",
            "label",
            "--held-out",
            "0.5",
            "--seq",
            "32",
            "--queries",
            "3",
        ],
    );
    for v in [&random, &sentences] {
        securerouter_tests::assert_labels_follow_the_reference(v, 0.05);
    }
    assert_eq!(sentences["queries"], 3, "{sentences}");
    assert_eq!(
        sentences["metric"], sentences["reference_metric"],
        "{sentences}"
    );
}

/// An MPNet classifier (the tiny transformers-saved fixture, labels negative, neutral, positive)
/// trained on a table with the same labels goes on from its own head, and is written back as
/// an `MPNetForSequenceClassification`.
#[test]
fn an_mpnet_classifier_trains_on_from_its_own_head() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/mpnet/tiny");
    let table =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/tables/reviews.csv");
    let out = securerouter_tests::temp_dir("mpnet-expert");
    let report = train_expert(&[
        "--model-dir",
        tiny.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--data",
        table.to_str().unwrap(),
        "--text-col",
        "review",
        "--label-col",
        "label",
        "--epochs",
        "2",
        "--seq",
        "32",
        "--force",
    ]);
    let config = config_of(&out);
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(report["started_from_checkpoint_head"], true, "{report}");
    assert_eq!(
        config["architectures"][0], "MPNetForSequenceClassification",
        "{config}"
    );
    assert_eq!(config["model_type"], "mpnet", "{config}");
}
