//! The router head under MPC: a 2-layer MLP with ReLU followed by a secure argmax over 3
//! scores, on 1,000 random inputs in one batch, against the plaintext computation in f64.

mod common;

use common::*;
use securerouter_core::Error;
use securerouter_core::gate::{self, Protocol, Tensor, share_weights};
use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};

const D: usize = 16;
const H: usize = 32;
const K: usize = 3;
const N: usize = 1000;
const F: u32 = 12;

struct RouterHead;

impl Circuit for RouterHead {
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: Vec<Tensor>,
        w: &[P::Weights],
    ) -> Result<Vec<Tensor>, Error> {
        let cmp = BitWidth::new(40)?;
        let h = p.linear(&x[0], &w[0]).await?;
        let h = p.truncate(&h, F).await?;
        let h = gate::relu(p, &h, cmp).await?;
        let s = p.linear(&h, &w[1]).await?;
        let s = p.truncate(&s, F).await?;
        let (_, onehot) = gate::argmax(p, &s, cmp).await?;
        Ok(vec![s, onehot])
    }
}

#[test]
fn router_head_picks_the_same_expert_as_plaintext_on_1000_inputs() {
    let mut r = rng(42);
    let fp = FixedPoint::new(F, BitWidth::FULL).unwrap();
    let fp2 = FixedPoint::new(2 * F, BitWidth::FULL).unwrap();
    let uniform = |r: &mut securerouter_core::prg::AesCtr, scale: f64| {
        (r.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * scale
    };
    let w1: Vec<f64> = (0..D * H).map(|_| uniform(&mut r, 0.5)).collect();
    let b1: Vec<f64> = (0..H).map(|_| uniform(&mut r, 0.2)).collect();
    let w2: Vec<f64> = (0..H * K).map(|_| uniform(&mut r, 0.5)).collect();
    let b2: Vec<f64> = (0..K).map(|_| uniform(&mut r, 0.2)).collect();
    let x: Vec<f64> = (0..N * D).map(|_| uniform(&mut r, 2.0)).collect();

    let enc = |f: FixedPoint, v: &[f64]| -> Vec<u64> {
        v.iter().map(|&a| f.encode(a).unwrap()).collect()
    };
    let (d1, s1a, s1b) = share_weights(
        0,
        &enc(fp, &w1),
        &enc(fp2, &b1),
        (D, H),
        &Seed::from_bytes([1; 16]),
    )
    .unwrap();
    let (d2, s2a, s2b) = share_weights(
        1,
        &enc(fp, &w2),
        &enc(fp2, &b2),
        (H, K),
        &Seed::from_bytes([2; 16]),
    )
    .unwrap();
    let weights = Weights {
        dealer: vec![d1, d2],
        servers: [vec![s1a, s2a], vec![s1b, s2b]],
    };
    let inputs = [Input::new(&[N, D], BitWidth::FULL, enc(fp, &x))];
    let o = run_session(
        &RouterHead,
        &inputs,
        &weights,
        &Seed::from_bytes(*b"router-head-test"),
    )
    .unwrap();

    let (mut agree, mut close_calls) = (0, 0);
    for i in 0..N {
        let xi = &x[i * D..(i + 1) * D];
        let h: Vec<f64> = (0..H)
            .map(|j| (b1[j] + (0..D).map(|p| xi[p] * w1[p * H + j]).sum::<f64>()).max(0.0))
            .collect();
        let s: Vec<f64> = (0..K)
            .map(|j| b2[j] + (0..H).map(|p| h[p] * w2[p * K + j]).sum::<f64>())
            .collect();
        let best = (0..K).fold(0, |b, j| if s[j] > s[b] { j } else { b });
        // Secure scores track the plaintext ones to fixed-point precision.
        for (j, &plain) in s.iter().enumerate() {
            let secure = fp.decode(o.outputs[0][i * K + j]);
            assert!(
                (secure - plain).abs() < 0.02,
                "input {i} score {j}: {secure} vs {plain}"
            );
        }
        let onehot = &o.outputs[1][i * K..(i + 1) * K];
        assert_eq!(
            onehot.iter().sum::<u64>(),
            1,
            "one-hot of input {i}: {onehot:?}"
        );
        let chosen = onehot.iter().position(|&b| b == 1).unwrap();
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if chosen == best {
            agree += 1;
        } else {
            // Only a near-tie within fixed-point error may go either way.
            assert!(
                sorted[0] - sorted[1] < 0.02,
                "input {i}: chose {chosen}, plaintext {best}, scores {s:?}"
            );
            close_calls += 1;
        }
    }
    println!("router head: {agree}/{N} agree with plaintext, {close_calls} near-ties differ");
    assert!(agree >= N - 5, "{agree} of {N}");
}
