//! Cost budgets: a circuit's bytes, rounds and key bytes per server follow from its shape
//! alone (not from weights, inputs or seeds), so each is held here to a committed figure. A
//! change that costs more fails; one that costs less fails too, until its budget is lowered to
//! the new figure, so that the table below always states the current costs.

use securerouter_circuits::bert::{BertShape, RingLayer, client_input, share_layers};
use securerouter_circuits::memory::{Served, run_circuit};
use securerouter_circuits::{Activation, CircuitKind, ModelSpec, PoolExpert, PoolShape};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_ml::router::{RouterHeadShape, router_features};

/// The costs of one query, per server.
#[derive(Debug, PartialEq, Eq)]
struct Costs {
    /// Rounds between the servers (the input opening included).
    rounds: u64,
    /// Bytes each server sends the other.
    bytes_sent: u64,
    /// Key bytes from the dealer: P0's, P1's.
    key_bytes: [u64; 2],
}

/// Runs `kind` of a model of `spec` once in memory, on random weights and input.
fn measure(spec: &ModelSpec, kind: CircuitKind, rows: usize) -> Costs {
    let mut r = AesCtr::new(&Seed::from_bytes([3; 16]), Domain(1));
    let mut small = || (r.next_u64() % 512).wrapping_sub(256);
    let layers: Vec<RingLayer> = spec
        .layer_shapes()
        .into_iter()
        .map(|(k, n)| RingLayer {
            k,
            n,
            w: (0..k * n).map(|_| small()).collect(),
            bias: (0..n).map(|_| small()).collect(),
        })
        .collect();
    let model = share_layers(&layers, &Seed::from_bytes([4; 16])).unwrap();
    let cols = spec.input_cols(kind);
    let input = match spec {
        ModelSpec::RouterHead(_) => (0..rows * cols).map(|i| (i % 7) as f64 * 0.1).collect(),
        _ => {
            let hidden = cols - 2;
            let embedded: Vec<f64> = (0..rows * hidden).map(|i| (i % 5) as f64 * 0.1).collect();
            client_input(&embedded, hidden, rows).unwrap()
        }
    };
    let run = run_circuit(
        &Served { spec, kind },
        &[rows, cols],
        &input,
        &model,
        &Seed::from_bytes([5; 16]),
    )
    .unwrap();
    let [t0, t1] = run.traffic;
    assert_eq!(t0, t1, "both servers send alike");
    Costs {
        rounds: t0.rounds,
        bytes_sent: t0.bytes_sent,
        key_bytes: run.key_bytes.map(|b| b as u64),
    }
}

fn minilm(layers: usize) -> BertShape {
    BertShape {
        layers,
        hidden: 384,
        heads: 12,
        ffn: 1536,
        classes: 2,
        activation: Activation::Gelu,
        relative_buckets: 0,
    }
}

/// Holds `got` to `budget`, naming what moved.
fn check(name: &str, got: Costs, budget: Costs) {
    assert!(
        got == budget,
        "{name}: the costs moved from the budget {budget:?} to {got:?}; a rise is a \
         regression, a fall must lower the budget in host/circuits/tests/cost_budgets.rs"
    );
}

#[test]
fn bert_tiny_shape_at_128_tokens_stays_within_budget() {
    let shape = BertShape {
        layers: 2,
        hidden: 128,
        heads: 2,
        ffn: 512,
        classes: 2,
        activation: Activation::Gelu,
        relative_buckets: 0,
    };
    let got = measure(&ModelSpec::Bert(shape), CircuitKind::Bert, 128);
    check(
        "BERT-tiny shape, 128 tokens",
        got,
        Costs {
            rounds: 107,
            bytes_sent: 9_904_349,
            key_bytes: [63_774_298, 78_168_957],
        },
    );
}

#[test]
fn minilm_l6_at_128_tokens_stays_within_budget() {
    let got = measure(&ModelSpec::Bert(minilm(6)), CircuitKind::Bert, 128);
    check(
        "MiniLM-L6, 128 tokens",
        got,
        Costs {
            rounds: 311,
            bytes_sent: 108_215_773,
            key_bytes: [740_748_522, 898_514_061],
        },
    );
}

#[test]
fn the_pools_router_stage_at_64_tokens_stays_within_budget() {
    // The default pool: MiniLM-L6 cut to 1, 3 and 6 layers, the first also the summary
    // encoder, a router head of 32 hidden units over the summary's features.
    let features = router_features(&[0.0; 384], &[0.0; 2]).unwrap().len();
    let spec = ModelSpec::Pool(PoolShape {
        summary: minilm(1),
        router: RouterHeadShape {
            features,
            hidden: 32,
            experts: 3,
        },
        others: vec![PoolExpert::cut(minilm(3)), PoolExpert::cut(minilm(6))],
    });
    let got = measure(&spec, CircuitKind::Router, 64);
    check(
        "the pool's router stage, 64 tokens",
        got,
        Costs {
            rounds: 66,
            bytes_sent: 7_413_612,
            key_bytes: [44_004_019, 54_607_267],
        },
    );
}
