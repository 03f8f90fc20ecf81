//! Secure BERT classifiers against the f64 reference of the same graph: a random-weight
//! shape, and the real MiniLM-L6 (cut to two layers) on real sentences.

mod common;

use securerouter_circuits::Activation;
use securerouter_circuits::bert::{client_input, ring_layers, shape_of, share_layers};
use securerouter_circuits::memory::run_circuit;
use securerouter_core::prg::Seed;
use securerouter_ml::head::{argmax, reference_logits};
use securerouter_ml::{BertConfig, BertWeights, ClassifierHead, Linear, Matrix};

fn random_head(classes: usize, hidden: usize, seed: u64) -> ClassifierHead {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
    };
    ClassifierHead {
        linear: Linear {
            weight: Matrix::new(
                classes,
                hidden,
                (0..classes * hidden).map(|_| next()).collect(),
            ),
            bias: (0..classes).map(|_| next() * 0.1).collect(),
        },
    }
}

/// Secure logits for one tokenised sequence padded to `seq_len`.
fn secure_logits(
    model: &BertWeights,
    head: &ClassifierHead,
    ids: &[u32],
    seq_len: usize,
    session: u8,
) -> Vec<f64> {
    let shape = shape_of(model, head).unwrap();
    let shared = share_layers(
        &ring_layers(model, head).unwrap(),
        &Seed::from_bytes([5; 16]),
    )
    .unwrap();
    let types = vec![0; ids.len()];
    let embedded = model.embed(ids, &types).unwrap();
    let x = client_input(&embedded.data, shape.hidden, seq_len).unwrap();
    run_circuit(
        &shape,
        &[seq_len, shape.input_cols()],
        &x,
        &shared,
        &Seed::from_bytes([session; 16]),
    )
    .unwrap()
    .outputs
}

/// The random tiny BERT's config with activation `hidden_act`.
fn tiny_config(hidden_act: &str) -> BertConfig {
    BertConfig {
        vocab_size: 100,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        hidden_act: hidden_act.into(),
        max_position_embeddings: 32,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: "bert".into(),
        architectures: Vec::new(),
        position_embedding_type: "absolute".into(),
    }
}

/// A random tiny BERT with `hidden_act` on 10 tokens padded to 16, secure against its f64
/// reference: the largest logit difference (asserted below 0.05) and whether the labels agree.
fn tiny_bert_error(hidden_act: &str) -> f64 {
    let model = BertWeights::random(tiny_config(hidden_act), &Seed::from_bytes([9; 16])).unwrap();
    let head = random_head(3, 64, 1);
    let ids: Vec<u32> = (0..10).map(|i| (i * 7 + 3) % 100).collect();
    let want = reference_logits(&model, &head, &ids, &[0; 10]).unwrap();
    let got = secure_logits(&model, &head, &ids, 16, 1);
    let err = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("{hidden_act}: reference {want:?}\nsecure    {got:?}\nmax |error| {err}");
    assert!(err < 0.05, "{hidden_act}: max |logit error| {err}");
    assert_eq!(argmax(&want), argmax(&got), "{hidden_act}");
    err
}

#[test]
fn random_tiny_bert_matches_the_reference_with_padding() {
    tiny_bert_error("gelu");
}

/// A checkpoint with the tanh-approximated GeLU ("gelu_new", "gelu_pytorch_tanh") runs under
/// MPC with its own activation: its shape carries it, and the secure logits match the f64
/// reference, which computes gelu_tanh, within the exact GeLU's tolerance, with the same label.
#[test]
fn a_tanh_gelu_bert_matches_its_reference() {
    for act in ["gelu_new", "gelu_pytorch_tanh"] {
        let model = BertWeights::random(tiny_config(act), &Seed::from_bytes([9; 16])).unwrap();
        let shape = shape_of(&model, &random_head(3, 64, 1)).unwrap();
        assert_eq!(shape.activation, Activation::GeluTanh, "{act}");
    }
    let exact = BertWeights::random(tiny_config("gelu"), &Seed::from_bytes([9; 16])).unwrap();
    let shape = shape_of(&exact, &random_head(3, 64, 1)).unwrap();
    assert_eq!(shape.activation, Activation::Gelu);
    tiny_bert_error("gelu_new");
}

/// A config altered after loading to an activation that is not a GeLU is refused by name
/// before anything is deployed, rather than run with another activation.
#[test]
fn a_config_with_another_activation_is_refused() {
    let mut model = BertWeights::random(tiny_config("gelu"), &Seed::from_bytes([3; 16])).unwrap();
    model.config.hidden_act = "relu".into();
    let head = random_head(2, 64, 1);
    let e = shape_of(&model, &head).expect_err("refused").to_string();
    assert!(e.contains("\"relu\" is not supported"), "{e}");
    let e = ring_layers(&model, &head).expect_err("refused").to_string();
    assert!(e.contains("\"relu\" is not supported"), "{e}");
}

#[test]
fn minilm_cut_to_two_layers_classifies_real_sentences_like_the_reference() {
    let Some(real) = common::real_minilm(2, 32) else {
        return;
    };
    let (model, head, seq_len) = (&real.model, &real.head, real.seq_len);
    let mut worst = 0.0f64;
    for (i, s) in real.test.iter().take(3).enumerate() {
        let e = real.encode(&s.text);
        let want = reference_logits(model, head, &e.ids, &e.type_ids).unwrap();
        let got = secure_logits(model, head, &e.ids, seq_len, 10 + i as u8);
        worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(worst, f64::max);
        assert_eq!(
            argmax(&want),
            argmax(&got),
            "{:?}: {want:?} vs {got:?}",
            s.text
        );
    }
    println!("max |logit error| {worst}");
    assert!(worst < 0.1, "max |logit error| {worst}");
}

/// A batch of inputs of different lengths in one session: each input's logits match its own
/// f64 reference, in the rounds of one input, with each input costing what it costs alone
/// (bytes and keys grow with the batch, rounds do not).
#[test]
fn a_batch_of_sequences_runs_in_the_rounds_of_one() {
    let model = BertWeights::random(tiny_config("gelu"), &Seed::from_bytes([9; 16])).unwrap();
    let head = random_head(3, 64, 1);
    let shape = shape_of(&model, &head).unwrap();
    let shared = share_layers(
        &ring_layers(&model, &head).unwrap(),
        &Seed::from_bytes([5; 16]),
    )
    .unwrap();
    let seq_len = 16;
    let lengths = [10usize, 3, 16];
    let inputs: Vec<(Vec<u32>, Vec<f64>)> = lengths
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            let ids: Vec<u32> = (0..n as u32)
                .map(|i| (i * 7 + 3 + 11 * b as u32) % 100)
                .collect();
            let embedded = model.embed(&ids, &vec![0; n]).unwrap();
            let x = client_input(&embedded.data, shape.hidden, seq_len).unwrap();
            (ids, x)
        })
        .collect();
    let cols = shape.input_cols();
    let batch: Vec<f64> = inputs.iter().flat_map(|(_, x)| x.iter().copied()).collect();
    let run = run_circuit(
        &shape,
        &[lengths.len(), seq_len, cols],
        &batch,
        &shared,
        &Seed::from_bytes([2; 16]),
    )
    .unwrap();
    assert_eq!(run.outputs.len(), 3 * lengths.len());
    for (b, (ids, _)) in inputs.iter().enumerate() {
        let want = reference_logits(&model, &head, ids, &vec![0; ids.len()]).unwrap();
        let got = &run.outputs[3 * b..3 * (b + 1)];
        let err = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 0.05, "input {b}: {want:?} vs {got:?}");
        assert_eq!(argmax(&want), argmax(got), "input {b}");
    }
    let one = run_circuit(
        &shape,
        &[seq_len, cols],
        &inputs[0].1,
        &shared,
        &Seed::from_bytes([2; 16]),
    )
    .unwrap();
    for s in 0..2 {
        assert_eq!(run.traffic[s].rounds, one.traffic[s].rounds, "server {s}");
        // Three times one input's, less the odd bits that one input's packed openings round
        // up to a byte.
        let (three, batch) = (3 * one.traffic[s].bytes_sent, run.traffic[s].bytes_sent);
        assert!(
            batch <= three && batch + 64 > three,
            "server {s}: {batch} vs {three}"
        );
    }
    println!(
        "batch of 3: {:?} {:?}; one: {:?} {:?}",
        run.traffic, run.key_bytes, one.traffic, one.key_bytes
    );
    for s in 0..2 {
        assert!(run.key_bytes[s] <= 3 * one.key_bytes[s], "server {s}");
    }
    // The one-input batch [1, tokens, cols] is the single input, byte for byte.
    let single = run_circuit(
        &shape,
        &[1, seq_len, cols],
        &inputs[0].1,
        &shared,
        &Seed::from_bytes([2; 16]),
    )
    .unwrap();
    assert_eq!(single.outputs, one.outputs);
    assert_eq!(single.key_bytes, one.key_bytes);
}
