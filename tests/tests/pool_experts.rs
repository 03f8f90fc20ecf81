//! A pool whose experts come from different checkpoints, served by dealer, P0 and P1 as
//! processes: the summary is MiniLM-L6 cut to 1 layer (hidden 384) with a mean-pooled head,
//! expert 1 the same encoder with its head's sign flipped (it reads the summary's input),
//! expert 2 the tiny `MPNetForSequenceClassification` fixture (hidden 32, its own vocabulary,
//! embeddings and pooler head), which reads an input of its own. The router head is built to
//! choose one expert whatever the input, so each route is checked on real sentences.
//!
//! In reveal-route a route to expert 2 ends the first session with the route alone and the
//! client uploads expert 2's input in a second; in hide-route the client uploads both inputs
//! at once and learns the chosen expert's logits. Either way the logits are the plaintext
//! expert's.

use securerouter_circuits::bert::{
    BertHead, checkpoint_ring_layers, checkpoint_shape_of, client_input, ring_layers, shape_of,
};
use securerouter_circuits::{
    CircuitKind, ExpertInput, ModelSpec, PoolExpert, PoolShape, RouteMode,
};
use securerouter_core::prg::Seed;
use securerouter_ml::head::reference_logits;
use securerouter_ml::router::{PlainRouterHead, RouterHeadShape, router_feature_count};
use securerouter_ml::{
    BertWeights, ClassifierHead, Linear, Matrix, SequenceClassificationHead, WordPiece, assets,
    data, logits_of_checkpoint,
};
use securerouter_runtime::deployment::DeploymentDir;
use securerouter_runtime::local_cluster::{LocalCluster, ServerFlags};
use securerouter_tests::{assets_present, binary};
use std::path::Path;

const SEQ_LEN: usize = 24;
const SENTENCES: usize = 2;

/// The three experts and the tokenizer of the summary's checkpoint.
struct Experts {
    minilm: BertWeights,
    tok: WordPiece,
    head: ClassifierHead,
    flipped: ClassifierHead,
    mpnet: (BertWeights, SequenceClassificationHead),
}

impl Experts {
    fn load() -> Experts {
        let cache = assets::cache_dir(None).unwrap();
        let dir = assets::MINILM_L6.path(&cache).unwrap();
        let minilm = BertWeights::load(&dir, Some(1)).unwrap();
        let tok = WordPiece::from_vocab_file(&dir.join("vocab.txt")).unwrap();
        // A fixed head of small weights: the test checks the circuit, not the accuracy.
        let weight: Vec<f64> = (0..2 * 384)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 400.0)
            .collect();
        let head = ClassifierHead {
            linear: Linear {
                weight: Matrix::new(2, 384, weight),
                bias: vec![0.1, -0.1],
            },
        };
        let mut flipped = head.clone();
        flipped.linear.weight.data.iter_mut().for_each(|w| *w = -*w);
        flipped.linear.bias.iter_mut().for_each(|b| *b = -*b);
        Experts {
            minilm,
            tok,
            head,
            flipped,
            mpnet: tiny_mpnet(),
        }
    }

    /// The pool whose router always chooses `route`.
    fn pool(&self, route: usize) -> (ModelSpec, Vec<securerouter_circuits::bert::RingLayer>) {
        let shape = RouterHeadShape {
            features: router_feature_count(384),
            hidden: 2,
            experts: 3,
        };
        let mut router = PlainRouterHead::random(shape, &Seed::from_bytes([3; 16]));
        router.w2.iter_mut().for_each(|w| *w = 0.0);
        router.b2 = (0..3).map(|k| if k == route { 4.0 } else { 0.0 }).collect();
        let (mpnet, mpnet_head) = &self.mpnet;
        let spec = ModelSpec::Pool(PoolShape {
            summary: shape_of(&self.minilm, &self.head).unwrap(),
            router: shape,
            others: vec![
                PoolExpert::cut(shape_of(&self.minilm, &self.flipped).unwrap()),
                PoolExpert {
                    shape: checkpoint_shape_of(mpnet, mpnet_head).unwrap(),
                    head: BertHead::Checkpoint,
                    input: ExpertInput::Own,
                },
            ],
        });
        let mut layers = ring_layers(&self.minilm, &self.head).unwrap();
        layers.extend(securerouter_circuits::router_head::ring_layers(&router).unwrap());
        layers.extend(ring_layers(&self.minilm, &self.flipped).unwrap());
        layers.extend(checkpoint_ring_layers(mpnet, mpnet_head).unwrap());
        (spec, layers)
    }

    /// MiniLM's ids of `text`, and the tiny MPNet's: MiniLM's folded into its vocabulary
    /// between `<s>` and `</s>`.
    fn ids(&self, text: &str) -> (Vec<u32>, Vec<u32>) {
        let ids = self.tok.encode(text, SEQ_LEN).ids;
        let n = ids.len();
        let folded = (0..n)
            .map(|j| match j {
                0 => 0,
                j if j + 1 == n => 2,
                j => 3 + ids[j] % 97,
            })
            .collect();
        (ids, folded)
    }

    /// Expert `k`'s padded input for `text`, as the client embeds it for that expert.
    fn input(&self, k: usize, text: &str) -> Vec<f64> {
        let (ids, folded) = self.ids(text);
        let (model, ids) = if k == 2 {
            (&self.mpnet.0, folded)
        } else {
            (&self.minilm, ids)
        };
        let embedded = model.embed(&ids, &vec![0; ids.len()]).unwrap();
        client_input(&embedded.data, embedded.cols, SEQ_LEN).unwrap()
    }

    /// Expert `k`'s plaintext logits on `text`.
    fn logits(&self, k: usize, text: &str) -> Vec<f64> {
        let (ids, folded) = self.ids(text);
        match k {
            2 => {
                let types = vec![0; folded.len()];
                logits_of_checkpoint(&self.mpnet.0, &self.mpnet.1, &folded, &types).unwrap()
            }
            _ => {
                let head = if k == 0 { &self.head } else { &self.flipped };
                reference_logits(&self.minilm, head, &ids, &vec![0; ids.len()]).unwrap()
            }
        }
    }
}

/// The tiny MPNet fixture with its classifier cut to its first and last labels (negative,
/// positive), the pool's two classes.
fn tiny_mpnet() -> (BertWeights, SequenceClassificationHead) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/mpnet/tiny");
    let (model, head) = BertWeights::load_with_head(&dir, None).unwrap();
    let head = head.expect("MPNetForSequenceClassification's head");
    let last = head.num_labels - 1;
    let head = head.select_labels(&[0, last]).unwrap();
    (model, head)
}

#[test]
fn experts_of_other_checkpoints_answer_with_their_own_inputs_under_mpc() {
    if !assets_present() {
        return;
    }
    let experts = Experts::load();
    let cache = assets::cache_dir(None).unwrap();
    let (_, held_out) = data::split(
        data::rotten_tomatoes(&cache).unwrap(),
        0.2,
        &data::SPLIT_SEED,
    )
    .unwrap();
    let texts: Vec<&str> = held_out[..SENTENCES]
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for route in [1, 2] {
        let (spec, layers) = experts.pool(route);
        let ModelSpec::Pool(shape) = spec.clone() else {
            unreachable!()
        };
        let dir = LocalCluster::fresh_dir("pool-experts");
        let deployment = DeploymentDir::create_with(
            &dir,
            LocalCluster::free_addrs().unwrap(),
            &spec,
            &layers,
            true,
        )
        .unwrap();
        let cluster =
            LocalCluster::start_with(&binary(), deployment, 120, ServerFlags::default()).unwrap();
        let client = cluster.client().unwrap();
        // (mode, rounds, bytes) of each single query, for the batch below.
        let mut single = Vec::new();
        for text in &texts {
            let want = experts.logits(route, text);
            let mut asked = Vec::new();
            for mode in [RouteMode::Reveal, RouteMode::Hide] {
                let answer = runtime
                    .block_on(
                        client.ask_pool(&shape, CircuitKind::Routed(mode), SEQ_LEN, |k| {
                            asked.push((mode, k));
                            Ok(experts.input(k, text))
                        }),
                    )
                    .unwrap();
                assert_eq!(answer.route, route, "{mode:?}");
                for (got, want) in answer.logits.iter().zip(&want) {
                    assert!(
                        (got - want).abs() < 0.05,
                        "{mode:?}: {:?} vs {want:?}",
                        answer.logits
                    );
                }
                let stats = answer.outputs.worst_server();
                let stages: Vec<&str> = stats.stages.iter().map(|s| s.name.as_str()).collect();
                println!(
                    "route {route}, {mode:?}: {:?} via {stages:?}",
                    answer.logits
                );
                // Reveal-route: expert 1 runs as the session's second stage; expert 2 as a
                // second session, which the answer's costs include.
                let want_stages = match mode {
                    RouteMode::Reveal => 2,
                    RouteMode::Hide => 1,
                };
                assert_eq!(stages.len(), want_stages, "{stages:?}");
                single.push((mode, stats.rounds, stats.online_bytes_sent));
                assert_eq!(
                    answer.outputs.session.contains('+'),
                    mode == RouteMode::Reveal && route == 2
                );
            }
            // The client embeds for expert 2 only when it must: after the route names it in
            // reveal-route, with the summary's input in hide-route.
            let want_asked = match route {
                2 => vec![
                    (RouteMode::Reveal, 0),
                    (RouteMode::Reveal, 2),
                    (RouteMode::Hide, 0),
                    (RouteMode::Hide, 2),
                ],
                _ => vec![
                    (RouteMode::Reveal, 0),
                    (RouteMode::Hide, 0),
                    (RouteMode::Hide, 2),
                ],
            };
            assert_eq!(asked, want_asked);
        }
        // The sentences as one batch: the router once for all, then (reveal-route) the chosen
        // expert once for all; each answer the plaintext expert's, in one query's rounds.
        for mode in [RouteMode::Reveal, RouteMode::Hide] {
            let batch = runtime
                .block_on(client.ask_pool_batch(
                    &shape,
                    CircuitKind::Routed(mode),
                    SEQ_LEN,
                    texts.len(),
                    |k, b| Ok(experts.input(k, texts[b])),
                ))
                .unwrap();
            assert_eq!(batch.answers.len(), texts.len());
            for (answer, text) in batch.answers.iter().zip(&texts) {
                assert_eq!(answer.route, route, "{mode:?}");
                let want = experts.logits(route, text);
                for (got, want) in answer.logits.iter().zip(&want) {
                    assert!((got - want).abs() < 0.05, "{mode:?}: {:?}", answer.logits);
                }
            }
            let stats = batch.outputs.worst_server();
            let (rounds, bytes): (Vec<u64>, Vec<u64>) = single
                .iter()
                .filter(|s| s.0 == mode)
                .map(|s| (s.1, s.2))
                .unzip();
            println!(
                "route {route}, {mode:?}, batch of {}: {} rounds, {} bytes; alone {rounds:?}, {bytes:?}",
                texts.len(),
                stats.rounds,
                stats.online_bytes_sent
            );
            assert!(rounds.iter().all(|&r| r == stats.rounds), "{mode:?}");
            assert!(
                stats.online_bytes_sent <= bytes.iter().sum::<u64>(),
                "{mode:?}"
            );
            assert!(
                stats.online_bytes_sent > bytes.iter().sum::<u64>() * 9 / 10,
                "{mode:?}"
            );
        }
        // What the router's session of a batch gives the client in reveal-route: every route,
        // and no summary logits for inputs routed elsewhere (here all of them).
        let kind = CircuitKind::Routed(RouteMode::Reveal);
        let x: Vec<f64> = texts
            .iter()
            .flat_map(|t| {
                shape
                    .circuit_input(kind, SEQ_LEN, &[experts.input(0, t)])
                    .unwrap()
            })
            .collect();
        let raw = runtime
            .block_on(client.run_batch(kind, shape.input_cols(kind), texts.len(), &x))
            .unwrap();
        let [logits, onehot] = raw.outputs.as_slice() else {
            panic!("{} outputs", raw.outputs.len())
        };
        assert_eq!(logits.len(), 2 * texts.len());
        assert!(logits.iter().all(|&v| v == 0), "{logits:?}");
        for row in onehot.chunks(3) {
            assert_eq!(securerouter_circuits::pool::route_of(row).unwrap(), route);
        }
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
