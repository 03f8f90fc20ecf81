//! A pool under MPC, in memory, on the real MiniLM-L6 and real sentences: the encrypted
//! router against the plaintext router, and the routed query in both routing privacy modes.
//!
//! The test pool: expert 0 is MiniLM cut to 1 layer with a sentiment head (also the summary
//! encoder), expert 1 the same encoder with the head's sign flipped (so that picking it shows
//! in the logits), expert 2 another checkpoint: the tiny `MPNetForSequenceClassification`
//! fixture (hidden 32, its own vocabulary and embeddings, relative-attention bias, its own
//! pooler head cut to two classes), which reads an input of its own. The router head is built
//! so that the six sentences split over all three experts with wide margins.

mod common;

use securerouter_circuits::bert::{
    BertHead, SharedModel, checkpoint_ring_layers, checkpoint_shape_of, client_input, ring_layers,
    shape_of, share_layers,
};
use securerouter_circuits::memory::{MemoryRun, Served, run_circuit};
use securerouter_circuits::pool::route_of;
use securerouter_circuits::{
    AfterFirst, CircuitKind, ExpertInput, ModelSpec, PoolExpert, PoolShape, QueryPlan, RouteMode,
};
use securerouter_core::prg::Seed;
use securerouter_ml::head::{argmax, reference_logits};
use securerouter_ml::router::{PlainRouterHead, RouterHeadShape, router_features};
use securerouter_ml::{
    BertWeights, ClassifierHead, Encoding, SequenceClassificationHead, logits_of_checkpoint,
};
use std::path::Path;

const SENTENCES: usize = 6;

struct TestPool {
    real: common::RealMiniLm,
    mpnet: (BertWeights, SequenceClassificationHead),
    flipped: ClassifierHead,
    router: PlainRouterHead,
    spec: ModelSpec,
    shared: SharedModel,
}

impl TestPool {
    fn build() -> Option<TestPool> {
        let real = common::real_minilm(1, 32)?;
        let mpnet = tiny_mpnet();
        let mut flipped = real.head.clone();
        flipped.linear.weight.data.iter_mut().for_each(|w| *w = -*w);
        flipped.linear.bias.iter_mut().for_each(|b| *b = -*b);
        let features: Vec<Vec<f64>> = (0..SENTENCES)
            .map(|i| router_input(&real, &real.test[i].text))
            .collect();
        let router = splitting_router(&features);
        let spec = ModelSpec::Pool(PoolShape {
            summary: shape_of(&real.model, &real.head).unwrap(),
            router: router.shape,
            others: vec![
                PoolExpert::cut(shape_of(&real.model, &flipped).unwrap()),
                PoolExpert {
                    shape: checkpoint_shape_of(&mpnet.0, &mpnet.1).unwrap(),
                    head: BertHead::Checkpoint,
                    input: ExpertInput::Own,
                },
            ],
        });
        let mut layers = ring_layers(&real.model, &real.head).unwrap();
        layers.extend(securerouter_circuits::router_head::ring_layers(&router).unwrap());
        layers.extend(ring_layers(&real.model, &flipped).unwrap());
        layers.extend(checkpoint_ring_layers(&mpnet.0, &mpnet.1).unwrap());
        assert_eq!(
            layers.iter().map(|l| (l.k, l.n)).collect::<Vec<_>>(),
            spec.layer_shapes()
        );
        let shared = share_layers(&layers, &Seed::from_bytes([2; 16])).unwrap();
        Some(TestPool {
            real,
            mpnet,
            flipped,
            router,
            spec,
            shared,
        })
    }

    fn encode(&self, i: usize) -> Encoding {
        self.real.encode(&self.real.test[i].text)
    }

    /// The tiny MPNet's token ids for sentence `i`: MiniLM's ids folded into its vocabulary
    /// between `<s>` and `</s>` (never `<pad>`), so that each sentence gets its own input.
    fn mpnet_ids(&self, i: usize) -> Vec<u32> {
        let ids = self.encode(i).ids;
        let n = ids.len();
        (0..n)
            .map(|j| match j {
                0 => 0,
                j if j + 1 == n => 2,
                j => 3 + ids[j] % 97,
            })
            .collect()
    }

    /// Expert `k`'s input for sentence `i`, as the client embeds it for that expert.
    fn expert_input(&self, k: usize, i: usize) -> Vec<f64> {
        let seq_len = self.real.seq_len;
        if k == 2 {
            let ids = self.mpnet_ids(i);
            let embedded = self.mpnet.0.embed(&ids, &vec![0; ids.len()]).unwrap();
            return client_input(&embedded.data, 32, seq_len).unwrap();
        }
        let e = self.encode(i);
        let embedded = self.real.model.embed(&e.ids, &e.type_ids).unwrap();
        client_input(&embedded.data, 384, seq_len).unwrap()
    }

    fn pool(&self) -> &PoolShape {
        let ModelSpec::Pool(pool) = &self.spec else {
            unreachable!("the test model is a pool")
        };
        pool
    }

    /// Runs circuit `kind` on sentence `i`, with the inputs the client uploads for it.
    fn run(&self, kind: CircuitKind, i: usize) -> MemoryRun {
        let seq_len = self.real.seq_len;
        let inputs: Vec<Vec<f64>> = self
            .pool()
            .uploads(kind)
            .iter()
            .map(|&k| self.expert_input(k, i))
            .collect();
        let x = self.pool().circuit_input(kind, seq_len, &inputs).unwrap();
        let served = Served {
            spec: &self.spec,
            kind,
        };
        run_circuit(
            &served,
            &[seq_len, self.spec.input_cols(kind)],
            &x,
            &self.shared,
            &Seed::from_bytes([20 + i as u8; 16]),
        )
        .unwrap()
    }

    /// The plaintext router's scores and choice for sentence `i`.
    fn plain_route(&self, i: usize) -> (Vec<f64>, usize) {
        let scores = self
            .router
            .scores(&router_input(&self.real, &self.real.test[i].text));
        let k = argmax(&scores);
        (scores, k)
    }

    /// Expert `k`'s f64 reference logits on sentence `i`.
    fn expert_logits(&self, k: usize, i: usize) -> Vec<f64> {
        if k == 2 {
            let ids = self.mpnet_ids(i);
            let (model, head) = &self.mpnet;
            return logits_of_checkpoint(model, head, &ids, &vec![0; ids.len()]).unwrap();
        }
        let e = self.encode(i);
        let head = if k == 0 {
            &self.real.head
        } else {
            &self.flipped
        };
        reference_logits(&self.real.model, head, &e.ids, &e.type_ids).unwrap()
    }
}

/// The tiny MPNet fixture (`host/ml/tests/fixtures/mpnet/tiny`) with its classifier cut to
/// its first and last labels (negative, positive), the pool's two classes.
fn tiny_mpnet() -> (BertWeights, SequenceClassificationHead) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ml/tests/fixtures/mpnet/tiny");
    let (model, head) = BertWeights::load_with_head(&dir, None).unwrap();
    let head = head.expect("MPNetForSequenceClassification's head");
    let last = head.num_labels - 1;
    let head = head.select_labels(&[0, last]).unwrap();
    (model, head)
}

/// What the router reads for `text`: the summary encoder's pooled states and its margin.
fn router_input(summary: &common::RealMiniLm, text: &str) -> Vec<f64> {
    let pooled = summary.pooled(text);
    router_features(&pooled, &summary.head.logits(&pooled)).unwrap()
}

/// A router head (2 hidden units) that scores the projection p of the router's features on one
/// direction: expert 0 below the first threshold, expert 1 between, expert 2 above, with the
/// thresholds between the sentences' projections and every margin at least 1.
fn splitting_router(features: &[Vec<f64>]) -> PlainRouterHead {
    let width = features[0].len();
    let mut router = PlainRouterHead::random(
        RouterHeadShape {
            features: width,
            hidden: 2,
            experts: 3,
        },
        &Seed::from_bytes([8; 16]),
    );
    let u: Vec<f64> = router.w1.iter().step_by(2).copied().collect();
    let mut p: Vec<f64> = features
        .iter()
        .map(|f| f.iter().zip(&u).map(|(a, b)| a * b).sum())
        .collect();
    p.sort_by(f64::total_cmp);
    let (t1, t2) = ((p[1] + p[2]) / 2.0, (p[3] + p[4]) / 2.0);
    let gap = p.windows(2).map(|w| w[1] - w[0]).fold(f64::MAX, f64::min);
    assert!(gap > 1e-6, "two sentences project to the same point");
    let c = 2.0 / gap; // every projection ends at least 1 from a threshold
    // h = [ReLU(c·p), ReLU(−c·p)], so c·p = h0 − h1.
    router.w1 = u.iter().flat_map(|&v| [c * v, -c * v]).collect();
    router.b1 = vec![0.0, 0.0];
    // Scores: c·t1 − c·p, 0, c·p − c·t2.
    router.w2 = vec![-1.0, 0.0, 1.0, 1.0, 0.0, -1.0];
    router.b2 = vec![c * t1, 0.0, -c * t2];
    router
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < tol, "{what}: {got:?} vs {want:?}");
    }
}

/// The one-hot comes back decoded as fixed point: the chosen entry is the ring value 1.
fn decoded_onehot(values: &[f64]) -> usize {
    let unit = 1.0 / f64::from(1u32 << securerouter_circuits::FRAC_BITS);
    let words: Vec<u64> = values
        .iter()
        .map(|&v| {
            assert!(v == 0.0 || v == unit, "{values:?} is not one-hot");
            (v / unit) as u64
        })
        .collect();
    route_of(&words).unwrap()
}

#[test]
fn the_secure_router_picks_what_the_plaintext_router_picks() {
    let Some(pool) = TestPool::build() else {
        return;
    };
    let mut routes = [0usize; 3];
    for i in 0..SENTENCES {
        let run = pool.run(CircuitKind::Router, i);
        // The summary expert's 2 logits, 3 scores, the 3-way one-hot.
        assert_eq!(run.outputs.len(), 8);
        let (want_scores, want_route) = pool.plain_route(i);
        assert_close(&run.outputs[..2], &pool.expert_logits(0, i), 0.05, "logits");
        // The test router scales the projection up, and the fixed-point error with it; the
        // margin feature also carries the secure logits' error.
        let scale = want_scores.iter().fold(1.0f64, |m, s| m.max(s.abs()));
        assert_close(&run.outputs[2..5], &want_scores, 0.02 * scale, "scores");
        assert_eq!(decoded_onehot(&run.outputs[5..]), want_route);
        assert!(run.revealed.is_empty(), "the router alone reveals nothing");
        routes[want_route] += 1;
    }
    assert_eq!(routes, [2, 2, 2], "the test router splits the sentences");
}

#[test]
fn hide_route_returns_the_chosen_expert_with_the_same_transcript_whichever_wins() {
    let Some(pool) = TestPool::build() else {
        return;
    };
    let mut transcripts = Vec::new();
    for i in 0..SENTENCES {
        let run = pool.run(CircuitKind::Routed(RouteMode::Hide), i);
        let (_, route) = pool.plain_route(i);
        assert_eq!(run.outputs.len(), 5);
        assert_eq!(decoded_onehot(&run.outputs[2..]), route);
        assert_close(
            &run.outputs[..2],
            &pool.expert_logits(route, i),
            0.05,
            "the chosen expert's logits",
        );
        assert!(run.revealed.is_empty(), "hide-route reveals nothing");
        transcripts.push((route, run.traffic, run.key_bytes));
    }
    let (_, traffic, keys) = transcripts[0];
    for &(route, t, k) in &transcripts {
        assert_eq!(
            (t, k),
            (traffic, keys),
            "route {route} changed the transcript"
        );
    }
}

#[test]
fn reveal_route_opens_exactly_the_route_and_the_chosen_expert_runs_next() {
    let Some(pool) = TestPool::build() else {
        return;
    };
    let mut first_stage = Vec::new();
    for i in 0..SENTENCES {
        let (_, route) = pool.plain_route(i);
        let router = pool.run(CircuitKind::Router, i);
        let run = pool.run(CircuitKind::Routed(RouteMode::Reveal), i);
        // Both servers learn the route as three bits, and nothing else: the P0–P1 traffic is the
        // router's, and the only extra key material is the one packed byte of mask bits (the
        // router alone outputs its 3 scores instead: 24 bytes fewer for P1).
        let mut want = vec![0u64; 3];
        want[route] = 1;
        assert_eq!(run.revealed, want);
        assert_eq!(run.traffic, router.traffic);
        assert_eq!(run.key_bytes[0], router.key_bytes[0] + 1);
        assert_eq!(run.key_bytes[1], router.key_bytes[1] + 1 - 3 * 8);
        // Outputs: expert 0's logits (used when it wins) and the one-hot.
        assert_eq!(decoded_onehot(&run.outputs[2..]), route);
        assert_close(&run.outputs[..2], &pool.expert_logits(0, i), 0.05, "logits");
        // Then the chosen expert alone: the servers run expert 1 on the input they hold;
        // expert 2 reads an input of its own, so the servers answer with the route and the
        // client asks expert 2 with its input.
        let plan = QueryPlan::new(&pool.spec, CircuitKind::Routed(RouteMode::Reveal));
        let next = plan.after_first(Some(&run.revealed), 1).unwrap();
        match route {
            0 => assert_eq!(next, AfterFirst::Done),
            1 => assert!(matches!(next, AfterFirst::Stage(s) if s.kind == CircuitKind::Expert(1))),
            _ => assert_eq!(next, AfterFirst::ClientAsks(2)),
        }
        let expert = pool.run(CircuitKind::Expert(route as u8), i);
        assert_close(
            &expert.outputs,
            &pool.expert_logits(route, i),
            0.05,
            "the chosen expert's logits",
        );
        first_stage.push((run.traffic, run.key_bytes));
    }
    assert!(
        first_stage.iter().all(|s| *s == first_stage[0]),
        "the first stage does not depend on the route"
    );
}
