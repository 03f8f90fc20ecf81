//! The encrypted router circuit (summary encoder → pooled → its head's logits, router MLP
//! scores and secret one-hot choice) against the plaintext computation, on the real MiniLM-L6
//! cut to one layer and real sentences.

mod common;

use securerouter_core::prg::Seed;
use securerouter_host::circuit::{ModelSpec, PlainRouterHead, RouterHeadShape};
use securerouter_host::model::head::{argmax, reference_logits};

use securerouter_host::nn::bert::{client_input, ring_layers, shape_of, share_layers};
use securerouter_host::nn::memory::run_circuit;

#[test]
fn the_secure_router_picks_what_the_plaintext_router_picks() {
    let Some(real) = common::real_minilm(1, 32) else {
        return;
    };
    let (model, head, seq_len) = (&real.model, &real.head, real.seq_len);
    let router = PlainRouterHead::random(
        RouterHeadShape {
            features: 384,
            hidden: 32,
            experts: 3,
        },
        &Seed::from_bytes([8; 16]),
    );
    let spec = ModelSpec::Router {
        encoder: shape_of(model, head),
        head: router.shape,
    };
    let mut layers = ring_layers(model, head).unwrap();
    layers.extend(router.ring_layers().unwrap());
    let shared = share_layers(&layers, &Seed::from_bytes([2; 16])).unwrap();
    let mut routes = [0usize; 3];
    for (i, s) in real.test.iter().take(6).enumerate() {
        let e = real.encode(&s.text);
        let x = client_input(
            &model.embed(&e.ids, &e.type_ids).unwrap().data,
            384,
            seq_len,
        )
        .unwrap();
        let run = run_circuit(
            &spec,
            &[seq_len, spec.input_cols()],
            &x,
            &shared,
            &Seed::from_bytes([20 + i as u8; 16]),
        )
        .unwrap();
        // Outputs in order: the summary expert's 2 logits, 3 scores, the 3-way one-hot.
        assert_eq!(run.outputs.len(), 8);
        let (logits, rest) = run.outputs.split_at(2);
        let (scores, onehot) = rest.split_at(3);
        let want_logits = reference_logits(model, head, &e.ids, &e.type_ids).unwrap();
        let want_scores = router.scores(&real.pooled(&s.text));
        for (w, g) in want_logits
            .iter()
            .zip(logits)
            .chain(want_scores.iter().zip(scores))
        {
            assert!(
                (w - g).abs() < 0.05,
                "{want_logits:?} {want_scores:?} vs {run:?}"
            );
        }
        // The one-hot comes back decoded as fixed point: the chosen entry is the ring value 1
        // (one unit in the last place), the others 0.
        let unit = 1.0 / f64::from(1u32 << securerouter_host::circuit::FRAC_BITS);
        let ones: Vec<usize> = (0..3).filter(|&k| onehot[k] == unit).collect();
        assert!(
            ones.len() == 1 && onehot.iter().all(|&v| v == 0.0 || v == unit),
            "{onehot:?} is not one-hot"
        );
        let choice = ones[0];
        let mut sorted = want_scores.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted[2] - sorted[1] > 0.05 {
            assert_eq!(
                choice,
                argmax(&want_scores),
                "{want_scores:?} vs {scores:?}"
            );
        }
        routes[choice] += 1;
    }
    println!("routes {routes:?}");
}
