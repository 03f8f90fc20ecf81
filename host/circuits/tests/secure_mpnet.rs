//! MPNet checkpoints under MPC: the tiny `MPNetForSequenceClassification` fixture saved by
//! transformers (`host/ml/tests/fixtures/mpnet/tiny`, relative-bias table of std 2) against the
//! f64 reference on a sequence long enough for many buckets; the bias is what makes the
//! difference; it costs no round, byte or key byte; and it reaches the servers in shares and
//! the dealer not at all.

use securerouter_circuits::bert::{
    BertHead, RELATIVE_BUCKETS, RingLayer, SharedModel, checkpoint_ring_layers,
    checkpoint_shape_of, client_input, relative_bias_index, share_layers,
};
use securerouter_circuits::memory::{MemoryRun, Served, run_circuit};
use securerouter_circuits::{CircuitKind, ModelSpec};
use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_ml::head::argmax;
use securerouter_ml::mpnet::relative_position_bucket;
use securerouter_ml::{BertWeights, SequenceClassificationHead, logits_of_checkpoint};
use std::path::Path;

fn tiny() -> (BertWeights, SequenceClassificationHead) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ml/tests/fixtures/mpnet/tiny");
    let (model, head) = BertWeights::load_with_head(&dir, None).unwrap();
    (model, head.expect("MPNetForSequenceClassification's head"))
}

/// `<s>`, `len − 2` tokens of the tiny vocabulary (never `<pad>` = 1), `</s>`.
fn sentence(len: usize) -> Vec<u32> {
    let mut ids = vec![0];
    ids.extend((0..len - 2).map(|i| 3 + ((i * 37 + 11) % 97) as u32));
    ids.push(2);
    ids
}

/// One secure run of the model's circuit on `ids` padded to `seq_len`.
fn run(
    model: &BertWeights,
    spec: &ModelSpec,
    shared: &SharedModel,
    ids: &[u32],
    seq_len: usize,
) -> MemoryRun {
    let types = vec![0; ids.len()];
    let embedded = model.embed(ids, &types).unwrap();
    let x = client_input(&embedded.data, model.config.hidden_size, seq_len).unwrap();
    run_circuit(
        &Served {
            spec,
            kind: CircuitKind::Bert,
        },
        &[seq_len, spec.input_cols(CircuitKind::Bert)],
        &x,
        shared,
        &Seed::from_bytes([1; 16]),
    )
    .unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The tiny MPNet's secure logits match the f64 reference on 44 tokens padded to 48 (relative
/// distances up to 47: 23 of the 32 buckets), labels included; the same circuit with the
/// table's shares zeroed (BERT's graph on MPNet's weights) is far off, so the bias is applied.
#[test]
fn tiny_mpnet_checkpoint_matches_the_reference_and_needs_its_bias() {
    let (model, head) = tiny();
    let shape = checkpoint_shape_of(&model, &head).unwrap();
    assert_eq!(shape.relative_buckets, RELATIVE_BUCKETS);
    let spec = ModelSpec::BertCheckpoint(shape);
    let layers = checkpoint_ring_layers(&model, &head).unwrap();
    let shapes: Vec<_> = layers.iter().map(|l| (l.k, l.n)).collect();
    assert_eq!(shapes, spec.layer_shapes());
    assert_eq!(shapes, shape.layer_shapes_for(BertHead::Checkpoint));
    assert_eq!(shapes[0], (0, RELATIVE_BUCKETS * shape.heads));

    let (len, seq_len) = (44, 48);
    let buckets: std::collections::BTreeSet<usize> = (0..seq_len as i64)
        .flat_map(|i| (0..seq_len as i64).map(move |j| relative_position_bucket(j - i)))
        .collect();
    assert!(buckets.len() >= 20, "{} buckets", buckets.len());

    let ids = sentence(len);
    let want = logits_of_checkpoint(&model, &head, &ids, &vec![0; len]).unwrap();
    let shared = share_layers(&layers, &Seed::from_bytes([5; 16])).unwrap();
    let got = run(&model, &spec, &shared, &ids, seq_len).outputs;
    let err = max_diff(&want, &got);
    println!("reference {want:?}\nsecure    {got:?}\nmax |logit error| {err:.2e}");
    assert!(err < 0.05, "max |logit error| {err}");
    assert_eq!(argmax(&want), argmax(&got));

    // Without the bias: the same circuit and shares elsewhere, the table's values zero.
    let mut unbiased = layers.clone();
    unbiased[0].bias = vec![0; unbiased[0].n];
    let shared = share_layers(&unbiased, &Seed::from_bytes([5; 16])).unwrap();
    let off = run(&model, &spec, &shared, &ids, seq_len).outputs;
    let far = max_diff(&want, &off);
    let mut plain = model.clone();
    plain.relative_attention_bias = None;
    let bert_graph = logits_of_checkpoint(&plain, &head, &ids, &vec![0; len]).unwrap();
    println!("without the bias {off:?} (max |error| {far:.2e}); BERT's graph {bert_graph:?}");
    assert!(
        max_diff(&bert_graph, &off) < 0.05,
        "the unbiased circuit is BERT's graph"
    );
    assert!(far > 10.0 * err.max(0.01), "without the bias: {far}");
}

/// Runs `spec` once on fixed random layers: the costs depend on the shape alone.
fn costs(spec: &ModelSpec, seq_len: usize) -> MemoryRun {
    let layers: Vec<RingLayer> = spec
        .layer_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (k, n))| RingLayer {
            k,
            n,
            w: (0..k * n).map(|j| ((i * 31 + j * 7) % 64) as u64).collect(),
            bias: (0..n).map(|j| ((i + j) % 5) as u64 * 4096).collect(),
        })
        .collect();
    let shared = share_layers(&layers, &Seed::from_bytes([4; 16])).unwrap();
    let hidden = spec.input_cols(CircuitKind::Bert) - 2;
    let embedded: Vec<f64> = (0..seq_len * hidden)
        .map(|i| (i % 5) as f64 * 0.1)
        .collect();
    let x = client_input(&embedded, hidden, seq_len).unwrap();
    run_circuit(
        &Served {
            spec,
            kind: CircuitKind::Bert,
        },
        &[seq_len, spec.input_cols(CircuitKind::Bert)],
        &x,
        &shared,
        &Seed::from_bytes([5; 16]),
    )
    .unwrap()
}

/// MPNet's bias costs nothing online: the same rounds, bytes and dealer key bytes as the same
/// shape without it, for both heads.
#[test]
fn the_relative_bias_costs_no_round_byte_or_key() {
    let (model, head) = tiny();
    let mpnet = checkpoint_shape_of(&model, &head).unwrap();
    let bert = securerouter_circuits::BertShape {
        relative_buckets: 0,
        ..mpnet
    };
    for (with, without) in [
        (
            ModelSpec::BertCheckpoint(mpnet),
            ModelSpec::BertCheckpoint(bert),
        ),
        (ModelSpec::Bert(mpnet), ModelSpec::Bert(bert)),
    ] {
        assert_eq!(with.layer_shapes().len(), without.layer_shapes().len() + 1);
        let (a, b) = (costs(&with, 40), costs(&without, 40));
        println!("{:?} {:?}", a.traffic, a.key_bytes);
        assert_eq!(a.traffic, b.traffic, "rounds and bytes");
        assert_eq!(a.key_bytes, b.key_bytes, "dealer key bytes");
        assert!(
            max_diff(&a.outputs, &b.outputs) > 0.0,
            "the bias is applied"
        );
    }
}

/// The table reaches the servers as additive shares, each alone unlike the table and fresh per
/// deployment; the dealer's part of it is empty.
#[test]
fn the_bias_table_is_shared_between_the_servers_and_hidden_from_the_dealer() {
    let (model, head) = tiny();
    let layers = checkpoint_ring_layers(&model, &head).unwrap();
    let table = &layers[0];
    let fp = FixedPoint::new(24, BitWidth::FULL).unwrap();
    let encoded: Vec<u64> = model
        .relative_attention_bias
        .as_ref()
        .unwrap()
        .table()
        .data
        .iter()
        .map(|&v| fp.encode(v).unwrap())
        .collect();
    assert_eq!(table.bias, encoded, "the table at the product's scale 2^24");
    assert!(table.w.is_empty());

    let a = share_layers(&layers, &Seed::from_bytes([5; 16])).unwrap();
    let b = share_layers(&layers, &Seed::from_bytes([6; 16])).unwrap();
    let share = |m: &SharedModel, p: usize| m.servers[p][0].parts().1.to_vec();
    for m in [&a, &b] {
        let (s0, s1) = (share(m, 0), share(m, 1));
        assert_eq!(m.servers[0][0].inputs(), 0);
        for s in [&s0, &s1] {
            assert_eq!(s.len(), encoded.len());
            let equal = s.iter().zip(&encoded).filter(|(x, y)| x == y).count();
            assert_eq!(equal, 0, "a share holds values of the table");
        }
        let sum: Vec<u64> = s0
            .iter()
            .zip(&s1)
            .map(|(x, y)| x.wrapping_add(*y))
            .collect();
        assert_eq!(sum, encoded);
        assert!(m.servers[0][0].masked().is_empty());
        assert!(
            m.dealer[0].mask().is_empty(),
            "the dealer holds nothing of it"
        );
        assert_eq!(
            (m.dealer[0].inputs(), m.dealer[0].outputs()),
            (0, encoded.len())
        );
    }
    assert_ne!(share(&a, 0), share(&b, 0), "fresh per deployment");
    assert_ne!(share(&a, 1), share(&b, 1), "fresh per deployment");
}

/// The public index expands the table by bucket(j − i) in the scores' [heads, n, n] order.
#[test]
fn the_bias_index_follows_the_reference_expansion() {
    let (model, _) = tiny();
    let bias = model.relative_attention_bias.as_ref().unwrap();
    let heads = bias.heads();
    let n = 40;
    let index = relative_bias_index(heads, n).unwrap();
    let expanded: Vec<f64> = index
        .iter()
        .map(|&i| bias.table().data[i as usize])
        .collect();
    assert_eq!(expanded, bias.scores_bias(n));
}

/// A model whose relative bias does not fit the circuit is refused by name before deploying.
#[test]
fn unsupported_relative_biases_are_refused() {
    let (model, head) = tiny();
    let mut big = model.clone();
    let mut table = big
        .relative_attention_bias
        .as_ref()
        .unwrap()
        .table()
        .clone();
    table.data[3] = 100.0;
    big.relative_attention_bias =
        Some(securerouter_ml::mpnet::RelativeAttentionBias::new(table).unwrap());
    let e = checkpoint_ring_layers(&big, &head).unwrap_err().to_string();
    assert!(e.contains("relative attention bias reaches"), "{e}");

    let mut none = model.clone();
    none.relative_attention_bias = None;
    let e = checkpoint_ring_layers(&none, &head)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no relative attention bias"), "{e}");

    let mut other = model;
    other.config.model_type = "roberta".into();
    let e = checkpoint_ring_layers(&other, &head)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model_type \"roberta\" is not supported"), "{e}");
}

/// A linear layer out × inp with weights uniform in (−scale, scale) and small biases.
fn random_linear(out: usize, inp: usize, scale: f64, seed: u64) -> securerouter_ml::Linear {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
    };
    securerouter_ml::Linear {
        weight: securerouter_ml::Matrix::new(
            out,
            inp,
            (0..out * inp).map(|_| next() * scale).collect(),
        ),
        bias: (0..out).map(|_| next() * 0.1).collect(),
    }
}

/// A random MPNet of 64 hidden units, 4 heads and 2 layers with its own head: secure logits
/// within 0.05 of the reference on 50 tokens padded to 64, same label.
#[test]
fn random_mpnet_with_its_own_head_matches_the_reference() {
    let config = securerouter_ml::BertConfig {
        vocab_size: 100,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        hidden_act: "gelu".into(),
        max_position_embeddings: 80,
        type_vocab_size: 1,
        layer_norm_eps: 1e-5,
        model_type: "mpnet".into(),
        architectures: vec!["MPNetForSequenceClassification".into()],
        position_embedding_type: "absolute".into(),
    };
    let model = BertWeights::random(config, &Seed::from_bytes([9; 16])).unwrap();
    let head = SequenceClassificationHead {
        pooler: random_linear(64, 64, 0.25, 1),
        classifier: random_linear(3, 64, 1.0, 2),
        num_labels: 3,
        id2label: vec!["a".into(), "b".into(), "c".into()],
        problem_type: securerouter_ml::classification::ProblemType::SingleLabelClassification,
    };
    let ids = sentence(50);
    let want = logits_of_checkpoint(&model, &head, &ids, &[0; 50]).unwrap();
    let shape = checkpoint_shape_of(&model, &head).unwrap();
    let spec = ModelSpec::BertCheckpoint(shape);
    let layers = checkpoint_ring_layers(&model, &head).unwrap();
    let shared = share_layers(&layers, &Seed::from_bytes([5; 16])).unwrap();
    let got = run(&model, &spec, &shared, &ids, 64).outputs;
    let err = max_diff(&want, &got);
    println!("reference {want:?}\nsecure    {got:?}\nmax |logit error| {err:.2e}");
    assert!(err < 0.05, "max |logit error| {err}");
    assert_eq!(argmax(&want), argmax(&got));
}
