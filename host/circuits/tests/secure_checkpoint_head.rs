//! A `BertForSequenceClassification` checkpoint under MPC with its own head (first token,
//! pooler and tanh, classifier) against Hugging Face's forward pass in f64, on a sentence pair.

use securerouter_circuits::bert::{
    BertHead, checkpoint_ring_layers, checkpoint_shape_of, client_input, share_layers,
};
use securerouter_circuits::memory::{Served, run_circuit};
use securerouter_circuits::{CircuitKind, ModelSpec};
use securerouter_core::prg::Seed;
use securerouter_ml::classification::ProblemType;
use securerouter_ml::head::argmax;
use securerouter_ml::{
    BertConfig, BertWeights, Linear, Matrix, SequenceClassificationHead, logits_of_checkpoint,
};

/// A linear layer out × inp with weights uniform in (−scale, scale) and small biases.
fn random_linear(out: usize, inp: usize, scale: f64, seed: u64) -> Linear {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
    };
    Linear {
        weight: Matrix::new(out, inp, (0..out * inp).map(|_| next() * scale).collect()),
        bias: (0..out).map(|_| next() * 0.1).collect(),
    }
}

#[test]
fn random_bert_with_its_own_head_matches_the_checkpoint_reference_on_a_pair() {
    let config = BertConfig {
        vocab_size: 100,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        hidden_act: "gelu".into(),
        max_position_embeddings: 32,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: "bert".into(),
        architectures: vec!["BertForSequenceClassification".into()],
        position_embedding_type: "absolute".into(),
    };
    let model = BertWeights::random(config, &Seed::from_bytes([9; 16])).unwrap();
    // Pooler entries of ±1/4 give pre-activations of about ±1 on LayerNorm outputs: tanh is
    // read both on its slope and where it saturates.
    let head = SequenceClassificationHead {
        pooler: random_linear(64, 64, 0.25, 1),
        classifier: random_linear(3, 64, 1.0, 2),
        num_labels: 3,
        id2label: vec![
            "entailment".into(),
            "neutral".into(),
            "contradiction".into(),
        ],
        problem_type: ProblemType::SingleLabelClassification,
    };
    // [CLS] a b c [SEP] d e f g [SEP]: token types 0 for the first segment, 1 for the second.
    let ids: Vec<u32> = vec![2, 17, 45, 9, 3, 61, 8, 33, 70, 3];
    let types: Vec<u32> = [0; 5].into_iter().chain([1; 5]).collect();
    let want = logits_of_checkpoint(&model, &head, &ids, &types).unwrap();

    let shape = checkpoint_shape_of(&model, &head).unwrap();
    let spec = ModelSpec::BertCheckpoint(shape);
    let layers = checkpoint_ring_layers(&model, &head).unwrap();
    let shapes: Vec<_> = layers.iter().map(|l| (l.k, l.n)).collect();
    assert_eq!(
        shapes,
        spec.layer_shapes(),
        "model files and the dealer agree"
    );
    assert_eq!(shapes, shape.layer_shapes_for(BertHead::Checkpoint));
    assert_eq!(
        shapes.len(),
        shape.layer_shapes().len() + 1,
        "one more layer"
    );
    let shared = share_layers(&layers, &Seed::from_bytes([5; 16])).unwrap();
    let seq_len = 16;
    let embedded = model.embed(&ids, &types).unwrap();
    let x = client_input(&embedded.data, shape.hidden, seq_len).unwrap();
    let got = run_circuit(
        &Served {
            spec: &spec,
            kind: CircuitKind::Bert,
        },
        &[seq_len, shape.input_cols()],
        &x,
        &shared,
        &Seed::from_bytes([1; 16]),
    )
    .unwrap()
    .outputs;
    let err = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("reference {want:?}\nsecure    {got:?}\nmax |logit error| {err:.2e}");
    assert_eq!(got.len(), 3);
    assert!(err < 0.05, "max |logit error| {err}");
    assert_eq!(argmax(&want), argmax(&got));
}

/// A head that does not fit the encoder is refused before anything is shared.
#[test]
fn a_head_of_the_wrong_width_is_refused() {
    let config = BertConfig {
        vocab_size: 20,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        hidden_act: "gelu".into(),
        max_position_embeddings: 8,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: "bert".into(),
        architectures: Vec::new(),
        position_embedding_type: "absolute".into(),
    };
    let model = BertWeights::random(config, &Seed::from_bytes([3; 16])).unwrap();
    let head = SequenceClassificationHead {
        pooler: random_linear(16, 16, 0.25, 1),
        classifier: random_linear(2, 16, 1.0, 2),
        num_labels: 2,
        id2label: vec!["a".into(), "b".into()],
        problem_type: ProblemType::SingleLabelClassification,
    };
    let e = checkpoint_ring_layers(&model, &head)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("does not fit hidden size 8"), "{e}");
}
