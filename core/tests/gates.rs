//! Every gate, run as dealer + two concurrent servers over the in-memory link, checked three
//! ways: correctness against the plaintext function (random and edge inputs), what each server
//! sees (opened values, the other's messages and its dealer streams: uniform, and alike for two
//! very different inputs), and the communication it uses (bytes, rounds and key bytes equal the
//! gate's formula).

mod common;

use common::*;
use securerouter_core::Error;
use securerouter_core::fss::{BitDpfCorrections, Corrections};
use securerouter_core::gate::memory::MemoryKeys;
use securerouter_core::gate::{
    self, KEY_CHUNK, LookupTable, Protocol, Tensor, WindowTable, drelu_key_bytes, packed_len,
    unpack,
};
use securerouter_core::prg::{AesCtr, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;

const L: BitWidth = BitWidth::FULL;

fn master(i: u64) -> Seed {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b[8..].copy_from_slice(b"gatetest");
    Seed::from_bytes(b)
}

/// One gate applied to the inputs.
#[derive(Clone)]
enum Gate {
    Identity,
    Truncate(u32),
    /// Truncation by f with the result in a (wider) ring.
    TruncateTo(u32, BitWidth),
    /// The local shift into Z_2^(width − f).
    ShiftDown(u32),
    /// Truncation of input 0 by f, deferred past DReLU of input 1 (reduced) when `drelu` is
    /// given, then resolved: [truncated, bit] or [truncated].
    TruncateLater(u32, Option<BitWidth>),
    Drelu(BitWidth),
    Relu(BitWidth),
    /// ReLU's two steps as [`gate::relu`] takes them, with the DReLU bit an output too (so a
    /// test can take that wire's mask off).
    ReluSteps(BitWidth),
    /// d from DReLU of input 0 (reduced), then select(d, input 1, input 2).
    Select(BitWidth),
    Mul,
    MatMul,
    Lookup(LookupTable),
    /// T(x) and T(x)·z for x the first input reduced to the table's input bits and z the
    /// second reduced to its output ring.
    LookupMul(LookupTable),
    /// [x ≥ 0] and a window table's T(x), x reduced to the width.
    DreluLookup(BitWidth, WindowTable),
    /// A window table's T(x) times a lookup's U(y): x the first input reduced to the width, y
    /// the second reduced to U's input bits.
    WindowTimesLookup(BitWidth, WindowTable, LookupTable),
    /// [x ≥ 0]·z − T(x) for x the first input reduced to the width, and z the second reduced
    /// to the table's ring and truncated by f bits, deferred.
    DreluSelectWindow(BitWidth, WindowTable, u32),
    LessThan(BitWidth),
    Argmax(BitWidth),
    Max(BitWidth),
    /// The maximum up to 2^drop per tournament level, comparing on `bits`.
    MaxWithin(BitWidth, u32),
    /// x·W + b with the session's weights.
    Linear,
    /// x ⊙ γ + β with the session's one-input layer.
    Affine,
    /// LayerNorm's end: input 0 ⊙ γ deferred past the product of inputs 0 and 1, then that
    /// scaled input times input 1 plus β: [product, scaled, scaled ⊙ input 1 + β].
    ScaleLaterThenShift,
    /// Local linear operations only: sum over the last axis of 3·transpose(x) + 5, minus x's
    /// first column.
    LocalLinear,
    /// select(d, a, b) with d given as a 1-bit input.
    SelectBit,
    /// Reveals input 0 to both servers; outputs the public wire it becomes.
    Reveal,
}

impl Circuit for Gate {
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: Vec<Tensor>,
        w: &[P::Weights],
    ) -> Result<Vec<Tensor>, Error> {
        Ok(match self {
            Gate::Identity => x,
            Gate::Truncate(f) => vec![p.truncate(&x[0], *f).await?],
            Gate::TruncateTo(f, out) => vec![p.truncate_to(&x[0], *f, *out).await?],
            Gate::ShiftDown(f) => vec![x[0].shift_down(*f)?],
            Gate::TruncateLater(f, drelu) => {
                let later = p.truncate_later(&x[0], *f, x[0].width()).await?;
                let bit = match drelu {
                    Some(n) => Some(p.drelu(&x[1].reduce(*n)?).await?),
                    None => None,
                };
                let mut out = vec![p.resolve(later).await?];
                out.extend(bit);
                out
            }
            Gate::Drelu(n) => vec![p.drelu(&x[0].reduce(*n)?).await?],
            Gate::Relu(n) => vec![gate::relu(p, &x[0], *n).await?],
            Gate::ReluSteps(n) => {
                let d = p.drelu(&x[0].reduce(*n)?).await?;
                let y = p.mul_bit(&d, &x[0]).await?;
                vec![d, y]
            }
            Gate::Select(n) => {
                let d = p.drelu(&x[0].reduce(*n)?).await?;
                vec![gate::select(p, &d, &x[1], &x[2]).await?]
            }
            Gate::Mul => vec![p.mul(&x[0], &x[1]).await?],
            Gate::MatMul => vec![p.matmul(&x[0], &x[1]).await?],
            Gate::Lookup(t) => vec![p.lookup(&x[0].reduce(t.in_bits())?, t).await?],
            Gate::LookupMul(t) => {
                let z = x[1].reduce(t.out_width())?;
                let (y, yz) = p.lookup_mul(&x[0].reduce(t.in_bits())?, t, &z).await?;
                vec![y, yz]
            }
            Gate::DreluLookup(n, t) => {
                let (d, y) = p.drelu_lookup(&x[0].reduce(*n)?, t).await?;
                vec![d, y]
            }
            Gate::WindowTimesLookup(n, t, u) => {
                let a = x[0].reduce(*n)?;
                let b = x[1].reduce(u.in_bits())?;
                vec![p.window_times_lookup((&a, t), (&b, u)).await?]
            }
            Gate::DreluSelectWindow(n, t, f) => {
                let out = t.out_width();
                let z = p.truncate_later(&x[1].reduce(out)?, *f, out).await?;
                vec![p.drelu_select_window(&x[0].reduce(*n)?, t, z).await?]
            }
            Gate::LessThan(n) => vec![gate::less_than(p, &x[0], &x[1], *n).await?],
            Gate::Argmax(n) => {
                let (m, onehot) = gate::argmax(p, &x[0], *n).await?;
                vec![m, onehot]
            }
            Gate::Max(n) => vec![gate::max(p, &x[0], *n).await?],
            Gate::MaxWithin(n, drop) => vec![gate::max_within(p, &x[0], *n, *drop).await?],
            Gate::Linear => vec![p.linear(&x[0], &w[0]).await?],
            Gate::Affine => vec![p.affine(&x[0], &w[0]).await?],
            Gate::ScaleLaterThenShift => {
                let later = p.scale_later(&x[0], &w[0]).await?;
                let z = p.mul(&x[0], &x[1]).await?;
                let scaled = p.resolve(later).await?;
                let y = p.mul_add_shift(&scaled, &x[1], &w[0]).await?;
                vec![z, scaled, y]
            }
            Gate::LocalLinear => {
                let t = x[0].transpose()?.scale(3);
                let t = p.add_public(&t, &[5])?;
                let s = t.sum_last_axis();
                let first = x[0].transpose()?.gather_last(&[0])?.reshape(s.shape())?;
                vec![s.sub(&first)?.neg()]
            }
            Gate::SelectBit => vec![gate::select(p, &x[0], &x[1], &x[2]).await?],
            Gate::Reveal => vec![p.reveal(&x[0]).await?],
        })
    }
}

fn run(g: &Gate, inputs: &[Input], seed: u64) -> Outcome {
    run_session(g, inputs, &Weights::none(), &master(seed)).unwrap()
}

fn signed(w: BitWidth, x: u64) -> i64 {
    w.to_signed(x)
}

/// Traffic of the input openings alone.
fn input_bytes(inputs: &[Input]) -> u64 {
    inputs
        .iter()
        .map(|i| packed_len(i.values.len(), i.width) as u64)
        .sum()
}

fn assert_traffic(o: &Outcome, inputs: &[Input], gate_bytes: u64, gate_rounds: u64) {
    for t in o.traffic {
        assert_eq!(t.bytes_sent, input_bytes(inputs) + gate_bytes, "bytes");
        assert_eq!(t.rounds, inputs.len() as u64 + gate_rounds, "rounds");
    }
}

// ---------------------------------------------------------------- input / output

#[test]
fn input_then_output_round_trips_and_costs_one_opening() {
    let mut r = rng(1);
    let mut values: Vec<u64> = (0..100).map(|_| r.next_u64()).collect();
    values.extend([0, u64::MAX, 1 << 63]);
    let inputs = [Input::new(&[values.len()], L, values.clone())];
    let o = run(&Gate::Identity, &inputs, 1);
    assert_eq!(o.outputs[0], values);
    assert_traffic(&o, &inputs, 0, 0);
    // The output mask is the only key material: one 64-bit correction per element, to P1.
    assert_eq!(o.keys.p1.len(), values.len() * 8);
    assert!(o.keys.shared.is_empty());
}

#[test]
fn reveal_gives_both_servers_the_value_and_costs_only_the_dealer_mask() {
    let mut r = rng(41);
    for width in [w(1), w(13), L] {
        let mut values: Vec<u64> = (0..77).map(|_| width.reduce(r.next_u64())).collect();
        values.extend([0, width.reduce(u64::MAX)]);
        let inputs = [Input::new(&[values.len()], width, values.clone())];
        let o = run(&Gate::Reveal, &inputs, 41);
        // The revealed wire is public (the servers hold the values, the mask is 0), so the
        // client's output equals the servers' values.
        assert_eq!(o.outputs[0], values);
        // Nothing passes between the servers beyond the input's opening; the dealer sends its
        // mask to both (packed at the wire's width) and the output mask to P1.
        assert_traffic(&o, &inputs, 0, 0);
        assert_eq!(o.keys.shared.len(), packed_len(values.len(), width));
        assert_eq!(o.keys.p1.len(), packed_len(values.len(), width));
    }
}

// ---------------------------------------------------------------- linear layers

fn layer(
    r: &mut securerouter_core::prg::AesCtr,
    k: usize,
    n: usize,
) -> (Weights, Vec<u64>, Vec<u64>) {
    let wv: Vec<u64> = (0..k * n).map(|_| r.next_u64()).collect();
    let bv: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
    let (d, s0, s1) = gate::share_weights(0, &wv, &bv, (k, n), &Seed::from_bytes([9; 16])).unwrap();
    let weights = Weights {
        dealer: vec![d],
        servers: [vec![s0], vec![s1]],
    };
    (weights, wv, bv)
}

/// Every way the two servers may take the linear layers' offline terms: precomputed before
/// the circuit, or computed as each layer runs.
const PRECOMPUTE: [[bool; 2]; 4] = [[true, true], [false, false], [true, false], [false, true]];

#[test]
fn linear_layer_with_secret_weights_is_exact_and_costs_one_opening() {
    let mut r = rng(20);
    let (m, k, n) = (5, 7, 3);
    let (weights, wv, bv) = layer(&mut r, k, n);
    // In the full ring and in narrower ones (the layer runs in its input's ring, the weights
    // taken modulo it: 52 bits is what the host's linear layers use).
    for (bits, precompute) in [64u32, 52, 37, 9].into_iter().zip(PRECOMPUTE) {
        let ring = BitWidth::new(bits).unwrap();
        let mut x: Vec<u64> = (0..2 * m * k).map(|_| ring.reduce(r.next_u64())).collect();
        x[..k].iter_mut().for_each(|v| *v = 0);
        let inputs = [Input::new(&[2, m, k], ring, x.clone())];
        let seed = master(20);
        let keys = deal_session(&Gate::Linear, &inputs, &weights, &seed).unwrap();
        let shares = client_shares(&inputs, &seed).unwrap();
        let o = serve_session_in(
            &Gate::Linear,
            &inputs,
            &shares,
            &weights,
            &seed,
            keys,
            precompute,
        )
        .unwrap();
        for row in 0..2 * m {
            for j in 0..n {
                let want = (0..k).fold(bv[j], |s, p| {
                    s.wrapping_add(x[row * k + p].wrapping_mul(wv[p * n + j]))
                });
                assert_eq!(o.outputs[0][row * n + j], ring.reduce(want), "{bits} bits");
            }
        }
        let bytes = packed_len(2 * m * n, ring);
        assert_traffic(&o, &inputs, bytes as u64, 1);
        // Online the layer reads no key: P1's stream holds only the output gate's mask share.
        assert_eq!(o.keys.p1.len(), bytes);
        assert!(o.keys.shared.is_empty());
        // Offline: one header (and the end record) to both, and P1 gets its shares of the input
        // mask (m·k) and of the mask's product with the weight mask (m·n).
        assert_eq!(o.keys.linear[0].len(), 2 * 9);
        assert_eq!(
            o.keys.linear[1].len(),
            2 * 9 + packed_len(2 * m * k, ring) + bytes
        );
    }
    // Shape errors are errors on both sides, not panics.
    let bad = [Input::new(&[m, k + 1], L, vec![0; m * (k + 1)])];
    assert!(run_session(&Gate::Linear, &bad, &weights, &master(21)).is_err());
}

#[test]
fn affine_map_with_secret_scale_and_shift_is_exact() {
    let mut r = rng(22);
    let (m, n) = (6, 4);
    let (weights, g, b) = layer(&mut r, 1, n);
    let x: Vec<u64> = (0..m * n).map(|_| r.next_u64()).collect();
    let inputs = [Input::new(&[m, n], L, x.clone())];
    let o = run_session(&Gate::Affine, &inputs, &weights, &master(22)).unwrap();
    for (i, &y) in o.outputs[0].iter().enumerate() {
        assert_eq!(y, x[i].wrapping_mul(g[i % n]).wrapping_add(b[i % n]));
    }
    assert_traffic(&o, &inputs, (m * n * 8) as u64, 1);
    // P1's shares of r_x and r_x ⊙ R_γ, then the output gate's mask share.
    assert_eq!(o.keys.p1.len(), 3 * m * n * 8);
}

/// γ's product deferred past another gate, and β added inside a product's opening: exact, in
/// the rounds of the two products alone and the bytes of three openings.
#[test]
fn a_deferred_scale_and_a_product_with_the_shift_are_exact() {
    let mut r = rng(23);
    let (m, n) = (5, 4);
    let (weights, g, b) = layer(&mut r, 1, n);
    // In the full ring and in a narrower one (LayerNorm's end runs in the linear ring).
    for width in [L, w(52)] {
        let x: Vec<u64> = (0..m * n).map(|_| width.reduce(r.next_u64())).collect();
        let y: Vec<u64> = (0..m * n).map(|_| width.reduce(r.next_u64())).collect();
        let inputs = [
            Input::new(&[m, n], width, x.clone()),
            Input::new(&[m, n], width, y.clone()),
        ];
        let o = run_session(&Gate::ScaleLaterThenShift, &inputs, &weights, &master(23)).unwrap();
        for i in 0..m * n {
            let scaled = width.mul(x[i], g[i % n]);
            assert_eq!(o.outputs[0][i], width.mul(x[i], y[i]));
            assert_eq!(o.outputs[1][i], scaled);
            let shifted = width.add(width.mul(scaled, y[i]), b[i % n]);
            assert_eq!(o.outputs[2][i], shifted, "{} bits", width.bits());
        }
        assert_traffic(&o, &inputs, 3 * packed_len(m * n, width) as u64, 2);
        // A shift whose layer does not fit the product is refused.
        let (wide, _, _) = layer(&mut r, 1, n + 1);
        assert!(run_session(&Gate::ScaleLaterThenShift, &inputs, &wide, &master(23)).is_err());
    }
}

#[test]
fn the_dealer_deals_the_same_keys_whatever_the_model() {
    // Two unrelated models deployed with the same deployment seed: the dealer's parts are the
    // same, and so is everything it sends the servers in a session; both models still compute
    // their own function.
    let mut r = rng(23);
    let (m, k, n) = (3, 6, 4);
    let models: Vec<(Vec<u64>, Vec<u64>)> = (0..2)
        .map(|_| {
            let wv = (0..k * n).map(|_| r.next_u64()).collect();
            let bv = (0..n).map(|_| r.next_u64()).collect();
            (wv, bv)
        })
        .collect();
    let deployed: Vec<Weights> = models
        .iter()
        .map(|(wv, bv)| {
            let (d, s0, s1) =
                gate::share_weights(7, wv, bv, (k, n), &Seed::from_bytes([4; 16])).unwrap();
            Weights {
                dealer: vec![d],
                servers: [vec![s0], vec![s1]],
            }
        })
        .collect();
    assert_eq!(deployed[0].dealer[0].mask(), deployed[1].dealer[0].mask());
    assert_ne!(
        deployed[0].servers[0][0].masked(),
        deployed[1].servers[0][0].masked()
    );
    let x: Vec<u64> = (0..m * k).map(|_| r.next_u64()).collect();
    let inputs = [Input::new(&[m, k], L, x.clone())];
    let keys: Vec<MemoryKeys> = deployed
        .iter()
        .map(|w| deal_session(&Gate::Linear, &inputs, w, &master(23)).unwrap())
        .collect();
    assert_eq!(keys[0], keys[1]);
    for (w, (wv, bv)) in deployed.iter().zip(&models) {
        let shares = client_shares(&inputs, &master(23)).unwrap();
        // Precomputing looks a layer up by its id (its place in the model), so a one-layer
        // model whose layer calls itself 7 fails cleanly...
        let precomputed = serve_session_in(
            &Gate::Linear,
            &inputs,
            &shares,
            w,
            &master(23),
            keys[0].clone(),
            [true, true],
        );
        assert!(matches!(precomputed, Err(Error::MalformedMessage(_))));
        // ... while computing as the layer runs matches the header against the layer itself.
        let o = serve_session_in(
            &Gate::Linear,
            &inputs,
            &shares,
            w,
            &master(23),
            keys[0].clone(),
            [false, false],
        )
        .unwrap();
        for row in 0..m {
            for j in 0..n {
                let want = (0..k).fold(bv[j], |s, p| {
                    s.wrapping_add(x[row * k + p].wrapping_mul(wv[p * n + j]))
                });
                assert_eq!(o.outputs[0][row * n + j], want);
            }
        }
    }
}

#[test]
fn local_linear_operations_follow_the_masks() {
    let mut r = rng(21);
    let (rows, cols) = (4, 6);
    let x: Vec<u64> = (0..rows * cols).map(|_| r.next_u64()).collect();
    let inputs = [Input::new(&[rows, cols], L, x.clone())];
    let o = run(&Gate::LocalLinear, &inputs, 21);
    for c in 0..cols {
        let s = (0..rows).fold(0u64, |s, i| {
            s.wrapping_add(x[i * cols + c].wrapping_mul(3).wrapping_add(5))
        });
        assert_eq!(o.outputs[0][c], x[c].wrapping_sub(s));
    }
    // Local: no communication beyond the input opening.
    assert_traffic(&o, &inputs, 0, 0);
}

// ---------------------------------------------------------------- truncation

#[test]
fn truncation_is_exact_up_to_one_ulp_including_edges() {
    let mut r = rng(2);
    for f in [1u32, 12, 16, 40] {
        let mut values = signed_values(&mut r, 500, 63, L);
        let edge = (1i64 << 62) - 1;
        values.extend([0, 1, u64::MAX, edge as u64, (-edge) as u64, (1u64 << f) - 1]);
        let inputs = [Input::new(&[values.len()], L, values.clone())];
        let o = run(&Gate::Truncate(f), &inputs, f as u64);
        for (&x, &y) in values.iter().zip(&o.outputs[0]) {
            let want = signed(L, x) >> f;
            let got = signed(L, y);
            assert!(
                got == want || got == want + 1,
                "x={} f={f} got={got}",
                signed(L, x)
            );
        }
        let n = values.len();
        assert_traffic(&o, &inputs, (n * 8) as u64, 1);
        // Key: msb(r) shared in Z_2^f, plus the output mask share (64 bits).
        assert_eq!(o.keys.p1.len(), packed_len(n, w(f)) + n * 8);
    }
}

/// A deferred truncation opens with the next gate's exchange: the same values, bytes and
/// keys as the two gates apart, one round fewer; with no gate after it, its own round.
#[test]
fn a_deferred_truncation_rides_with_the_next_opening() {
    let mut r = rng(29);
    let (f, n) = (12u32, w(20));
    let values = signed_values(&mut r, 300, 50, L);
    let signs: Vec<u64> = signed_values(&mut r, 300, 18, L);
    let count = values.len();
    let inputs = [
        Input::new(&[count], L, values.clone()),
        Input::new(&[count], L, signs.clone()),
    ];
    let o = run(&Gate::TruncateLater(f, Some(n)), &inputs, 5);
    for (i, &x) in values.iter().enumerate() {
        let (want, got) = (signed(L, x) >> f, signed(L, o.outputs[0][i]));
        assert!(
            got == want || got == want + 1,
            "x={} got={got}",
            signed(L, x)
        );
        assert_eq!(o.outputs[1][i], (signed(L, signs[i]) >= 0) as u64);
    }
    let bytes = count * 8 + packed_len(count, w(1));
    assert_traffic(&o, &inputs, bytes as u64, 1);
    let trunc = run(&Gate::Truncate(f), &inputs[..1], 5);
    let drelu = run(&Gate::Drelu(n), &inputs[1..], 5);
    assert_eq!(
        o.keys.shared.len() + o.keys.p1.len(),
        trunc.keys.shared.len()
            + trunc.keys.p1.len()
            + drelu.keys.shared.len()
            + drelu.keys.p1.len()
    );
    // Resolved at once, it opens alone: the truncation's own round.
    let alone = run(&Gate::TruncateLater(f, None), &inputs[..1], 5);
    assert_eq!(alone.outputs[0], trunc.outputs[0]);
    assert_traffic(&alone, &inputs[..1], (count * 8) as u64, 1);
}

#[test]
fn truncation_into_a_wider_ring_is_exact_up_to_one_ulp() {
    let mut r = rng(3);
    let narrow = w(32);
    for (f, out) in [(0u32, L), (1, L), (12, L), (12, w(48)), (20, w(40))] {
        let mut values = signed_values(&mut r, 500, 31, narrow);
        let edge = (1i64 << 30) - 1;
        values.extend([
            0,
            1,
            narrow.reduce(u64::MAX),
            edge as u64,
            narrow.reduce((-edge) as u64),
        ]);
        let inputs = [Input::new(&[values.len()], narrow, values.clone())];
        let o = run(&Gate::TruncateTo(f, out), &inputs, 40 + f as u64);
        for (&x, &y) in values.iter().zip(&o.outputs[0]) {
            let want = signed(narrow, x) >> f;
            let got = signed(out, y);
            assert!(
                got == want || got == want + 1,
                "x={} f={f} out={} got={got}",
                signed(narrow, x),
                out.bits()
            );
        }
        let n = values.len();
        assert_traffic(&o, &inputs, packed_len(n, out) as u64, 1);
        // Key: msb(r) shared in Z_2^(out − 32 + f), plus the output mask share.
        assert_eq!(
            o.keys.p1.len(),
            packed_len(n, w(out.bits() - 32 + f)) + packed_len(n, out)
        );
    }
}

#[test]
fn shift_down_is_local_and_exact_up_to_one_ulp() {
    let mut r = rng(4);
    for f in [1u32, 12, 38] {
        let mut values = signed_values(&mut r, 500, 63, L);
        values.extend([0, 1, u64::MAX, 1 << 62, (1u64 << f) - 1]);
        let inputs = [Input::new(&[values.len()], L, values.clone())];
        let o = run(&Gate::ShiftDown(f), &inputs, 50 + f as u64);
        let out = w(64 - f);
        for (&x, &y) in values.iter().zip(&o.outputs[0]) {
            let want = out.reduce((signed(L, x) >> f) as u64);
            assert!(
                y == want || y == out.add(want, 1),
                "x={} f={f} got={y}",
                signed(L, x)
            );
        }
        // No opening: only the inputs' and the output mask's costs.
        assert_traffic(&o, &inputs, 0, 0);
        assert_eq!(o.keys.p1.len(), packed_len(values.len(), out));
    }
}

#[test]
fn truncation_rejects_widths_it_cannot_serve() {
    let inputs = [Input::new(&[4], w(32), vec![1; 4])];
    for g in [
        Gate::TruncateTo(12, w(20)), // narrower than width − f: the local shift's job
        Gate::TruncateTo(0, w(32)),  // nothing to do
        Gate::TruncateTo(30, L),     // no room for the shift by 2^(width−2)
        Gate::ShiftDown(32),
    ] {
        assert!(matches!(
            run_session(&g, &inputs, &Weights::none(), &master(60)),
            Err(Error::ShapeMismatch(_))
        ));
    }
}

// ---------------------------------------------------------------- DReLU / comparison

#[test]
fn drelu_matches_sign_at_every_width_with_edges() {
    let mut r = rng(3);
    for n in [2u32, 8, 16, 37, 64] {
        let nw = w(n);
        let mut values = signed_values(&mut r, 300, n, L);
        let max = ((1i128 << (n - 1)) - 1) as i64;
        let min = (-(1i128 << (n - 1))) as i64;
        values.extend([
            0,
            1,
            L.reduce(-1i64 as u64),
            max as u64,
            L.reduce(min as u64),
        ]);
        let inputs = [Input::new(&[values.len()], L, values.clone())];
        let o = run(&Gate::Drelu(nw), &inputs, 100 + n as u64);
        for (&x, &d) in values.iter().zip(&o.outputs[0]) {
            assert_eq!(d, (signed(nw, x) >= 0) as u64, "n={n} x={}", signed(nw, x));
        }
        let count = values.len();
        assert_traffic(&o, &inputs, count.div_ceil(8) as u64, 1);
        assert_eq!(o.keys.shared.len(), count * drelu_key_bytes(nw));
        assert_eq!(
            drelu_key_bytes(nw),
            BitDpfCorrections::encoded_len(w(n - 1), w(1))
        );
        // A one-bit DPF on n − 1 bits: n − 8 levels of 16-byte seeds and two control bits,
        // a 2^min(n−1, 7)-bit leaf correction and the width byte.
        let levels = (n as usize - 1).saturating_sub(7);
        let leaf = (1usize << (n - 1).min(7)).div_ceil(8);
        assert_eq!(
            drelu_key_bytes(nw),
            1 + 16 * levels + (2 * levels).div_ceil(8) + leaf
        );
    }
}

/// Servers decode and evaluate keys in chunks of `KEY_CHUNK`: a gate over more elements than
/// two chunks (with a partial third) still matches plaintext element by element.
#[test]
fn comparisons_and_lookups_span_several_key_chunks() {
    let mut r = rng(33);
    let n = 2 * KEY_CHUNK + KEY_CHUNK / 2 + 1;
    let values = signed_values(&mut r, n, 20, L);
    let inputs = [Input::new(&[n], L, values.clone())];
    let o = run(&Gate::Drelu(w(21)), &inputs, 34);
    for (i, (&x, &d)) in values.iter().zip(&o.outputs[0]).enumerate() {
        assert_eq!(d, (signed(w(21), x) >= 0) as u64, "element {i}");
    }
    let inw = w(9);
    let entries: Vec<u64> = (0..1u64 << 9).map(|_| r.next_u64()).collect();
    let t = LookupTable::new(inw, L, entries.clone()).unwrap();
    let o = run(&Gate::Lookup(t), &inputs, 35);
    for (i, (&x, &y)) in values.iter().zip(&o.outputs[0]).enumerate() {
        assert_eq!(y, entries[inw.reduce(x) as usize], "element {i}");
    }
}

#[test]
fn less_than_compares_signed_values() {
    let mut r = rng(4);
    let mut a = signed_values(&mut r, 200, 30, L);
    let mut b = signed_values(&mut r, 200, 30, L);
    a.extend([5, 5, L.reduce(-3i64 as u64)]);
    b.extend([5, 6, 2]);
    let n = a.len();
    let inputs = [
        Input::new(&[n], L, a.clone()),
        Input::new(&[n], L, b.clone()),
    ];
    let o = run(&Gate::LessThan(w(32)), &inputs, 5);
    for i in 0..n {
        assert_eq!(
            o.outputs[0][i],
            (signed(L, a[i]) < signed(L, b[i])) as u64,
            "{} < {}",
            signed(L, a[i]),
            signed(L, b[i])
        );
    }
}

// ---------------------------------------------------------------- ReLU and select

#[test]
fn relu_is_exact_and_costs_two_rounds() {
    let mut r = rng(6);
    for cmp in [w(64), w(40)] {
        let mut values = signed_values(&mut r, 400, cmp.bits() - 1, L);
        values.extend([0, 1, L.reduce(-1i64 as u64)]);
        let n = values.len();
        let inputs = [Input::new(&[n], L, values.clone())];
        let o = run(&Gate::Relu(cmp), &inputs, 6 + cmp.bits() as u64);
        for (&x, &y) in values.iter().zip(&o.outputs[0]) {
            assert_eq!(signed(L, y), signed(L, x).max(0));
        }
        assert_traffic(&o, &inputs, (n.div_ceil(8) + n * 8) as u64, 2);
        // bit × value key: r_z, r_d and r_d·r_z (64-bit each) to P1, plus the output mask.
        assert_eq!(o.keys.p1.len(), 3 * n * 8 + n * 8);
        assert_eq!(o.keys.shared.len(), n * drelu_key_bytes(cmp));
    }
}

#[test]
fn select_picks_by_a_secret_bit() {
    let mut r = rng(7);
    let n = 300;
    let s = signed_values(&mut r, n, 20, L);
    let a: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
    let b: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
    let inputs = [
        Input::new(&[n], L, s.clone()),
        Input::new(&[n], L, a.clone()),
        Input::new(&[n], L, b.clone()),
    ];
    let o = run(&Gate::Select(w(24)), &inputs, 7);
    for i in 0..n {
        let want = if signed(L, s[i]) >= 0 { a[i] } else { b[i] };
        assert_eq!(o.outputs[0][i], want);
    }
}

// ---------------------------------------------------------------- products

#[test]
fn elementwise_product_is_exact() {
    let mut r = rng(8);
    let n = 257;
    let a: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
    let mut b: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
    b[0] = 0;
    let inputs = [
        Input::new(&[n], L, a.clone()),
        Input::new(&[n], L, b.clone()),
    ];
    let o = run(&Gate::Mul, &inputs, 8);
    for i in 0..n {
        assert_eq!(o.outputs[0][i], a[i].wrapping_mul(b[i]));
    }
    assert_traffic(&o, &inputs, (n * 8) as u64, 1);
    assert_eq!(o.keys.p1.len(), 2 * n * 8 + n * 8);
}

#[test]
fn secret_matmul_is_exact_for_a_batch() {
    let mut r = rng(9);
    let (batch, m, k, n) = (3, 4, 5, 6);
    let x: Vec<u64> = (0..batch * m * k).map(|_| r.next_u64()).collect();
    let y: Vec<u64> = (0..batch * k * n).map(|_| r.next_u64()).collect();
    let inputs = [
        Input::new(&[batch, m, k], L, x.clone()),
        Input::new(&[batch, k, n], L, y.clone()),
    ];
    let o = run(&Gate::MatMul, &inputs, 9);
    for t in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let want = (0..k).fold(0u64, |s, p| {
                    s.wrapping_add(x[t * m * k + i * k + p].wrapping_mul(y[t * k * n + p * n + j]))
                });
                assert_eq!(o.outputs[0][t * m * n + i * n + j], want);
            }
        }
    }
    assert_traffic(&o, &inputs, (batch * m * n * 8) as u64, 1);
    assert_eq!(
        o.keys.p1.len(),
        (batch * m * k + batch * k * n) * 8 + batch * m * n * 8
    );
}

// ---------------------------------------------------------------- lookup tables

#[test]
fn lookup_tables_of_8_and_12_bits_cover_every_input() {
    let mut r = rng(10);
    for bits in [8u32, 12] {
        let inw = w(bits);
        let out = w(bits + 8);
        let entries: Vec<u64> = (0..1u64 << bits)
            .map(|_| out.reduce(r.next_u64()))
            .collect();
        let t = LookupTable::new(inw, out, entries.clone()).unwrap();
        // Every input once for 8 bits; a spread plus edges for 12.
        let values: Vec<u64> = if bits == 8 {
            (0..256).collect()
        } else {
            let mut v: Vec<u64> = (0..200).map(|_| inw.reduce(r.next_u64())).collect();
            v.extend([0, 4095, 2048]);
            v
        };
        let n = values.len();
        // The input wire is 64-bit with high garbage; the gate reduces it first.
        let wide: Vec<u64> = values.iter().map(|&v| v | (r.next_u64() << bits)).collect();
        let inputs = [Input::new(&[n], L, wide)];
        let o = run(&Gate::Lookup(t), &inputs, 10 + bits as u64);
        for (&x, &y) in values.iter().zip(&o.outputs[0]) {
            assert_eq!(y, entries[x as usize]);
        }
        // Two openings of out bits each (s·T(x) + m, then T(x) + ρ).
        assert_traffic(&o, &inputs, 2 * packed_len(n, out) as u64, 2);
        // A one-bit DPF per element, 1 + 16(n−7) + ⌈(n−7)/4⌉ + 16 bytes, to both servers;
        // P1 gets only the output gate's mask shares.
        let key_len = BitDpfCorrections::encoded_len(inw, BitDpfCorrections::OUT_BITS);
        assert_eq!(key_len, if bits == 8 { 34 } else { 99 });
        assert_eq!(o.keys.shared.len(), n * key_len);
        assert_eq!(o.keys.p1.len(), packed_len(n, out));
    }
    assert!(LookupTable::new(w(17), w(8), vec![0; 1 << 17]).is_err());
    assert!(LookupTable::new(w(4), w(8), vec![0; 15]).is_err());
}

/// Narrow domains (one partial leaf block, n < 7), a single full leaf (n = 7), several leaves,
/// the largest table (n = 16), and one-bit outputs (where the sign s = ±1 is 1 mod 2).
#[test]
fn lookup_tables_of_small_and_large_domains_and_one_bit_outputs() {
    let mut r = rng(15);
    for (bits, out_bits) in [(1u32, 64u32), (3, 1), (6, 64), (7, 5), (9, 1), (16, 64)] {
        let (inw, out) = (w(bits), w(out_bits));
        let t =
            LookupTable::from_fn(inw, out, |i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7).unwrap();
        let max = inw.mask();
        let mut values: Vec<u64> = if bits <= 7 {
            (0..=max).collect()
        } else {
            (0..40).map(|_| r.next_u64() & max).collect()
        };
        values.extend([0, max, max / 2, max / 2 + 1]);
        let n = values.len();
        let inputs = [Input::new(&[n], L, values.clone())];
        let o = run(&Gate::Lookup(t.clone()), &inputs, 20 + bits as u64);
        for (&x, &y) in values.iter().zip(&o.outputs[0]) {
            assert_eq!(y, t.get(x), "n={bits} out={out_bits} x={x}");
        }
        assert_traffic(&o, &inputs, 2 * packed_len(n, out) as u64, 2);
        let key_len = BitDpfCorrections::encoded_len(inw, BitDpfCorrections::OUT_BITS);
        assert_eq!(o.keys.shared.len(), n * key_len);
    }
}

/// A lookup and its product with a wire take the lookup's two rounds: T(x)·z opens beside
/// T(x) + ρ, exact in the table's ring, for every input of an 8-bit table and one-bit,
/// narrow and full rings.
#[test]
fn a_lookup_and_its_product_with_a_value_open_together() {
    let mut r = rng(16);
    for out_bits in [1u32, 20, 64] {
        let (inw, out) = (w(8), w(out_bits));
        let t =
            LookupTable::from_fn(inw, out, |i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 3).unwrap();
        let mut values: Vec<u64> = (0..256).collect();
        values.extend((0..100).map(|_| r.next_u64() & 255));
        let n = values.len();
        let mut z: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
        z[..4].copy_from_slice(&[0, 1, u64::MAX, 1 << 63]);
        let inputs = [
            Input::new(&[n], L, values.clone()),
            Input::new(&[n], L, z.clone()),
        ];
        let o = run(&Gate::LookupMul(t.clone()), &inputs, 30 + out_bits as u64);
        for i in 0..n {
            let y = t.get(values[i]);
            assert_eq!(o.outputs[0][i], y, "out={out_bits} x={}: T(x)", values[i]);
            assert_eq!(
                o.outputs[1][i],
                out.mul(y, out.reduce(z[i])),
                "out={out_bits} x={} z={}: T(x)·z",
                values[i],
                z[i]
            );
        }
        // s·T(x) + m, then T(x) + ρ and T(x)·z + c' in one message.
        assert_traffic(&o, &inputs, 3 * packed_len(n, out) as u64, 2);
        // The lookup's key to both; to P1 its shares of s·r_z, s·m and s·m·r_z besides the
        // output gate's mask shares of both outputs.
        let alone = run(&Gate::Lookup(t), &inputs[..1], 31);
        assert_eq!(o.keys.shared.len(), alone.keys.shared.len());
        assert_eq!(o.keys.p1.len(), 5 * packed_len(n, out));
    }
    // z must have x's shape and lie in the table's ring.
    let t = LookupTable::from_fn(w(8), w(20), |i| i).unwrap();
    let inputs = [
        Input::new(&[4], L, vec![1, 2, 3, 4]),
        Input::new(&[3], L, vec![1, 2, 3]),
    ];
    assert!(run_session(&Gate::LookupMul(t), &inputs, &Weights::none(), &master(51)).is_err());
}

/// The CPU lookup kernel against its definition, computed from the keys' full-domain bits.
#[test]
fn lookup_kernel_matches_its_definition() {
    use securerouter_core::fss::{BitDpf, BitDpfKeys};
    use securerouter_core::gate::{CpuKernels, Kernels};
    let dpf = BitDpf::new();
    let kernels = CpuKernels::new();
    let mut r = rng(16);
    for (bits, out_bits) in [(2u32, 64u32), (6, 13), (8, 64), (11, 40)] {
        let (inw, out) = (w(bits), w(out_bits));
        let size = 1usize << bits;
        let table: Vec<u64> = (0..size).map(|_| out.reduce(r.next_u64())).collect();
        let keys: Vec<_> = (0..70)
            .map(|_| {
                let (k0, k1) = dpf.gen_keys(inw, inw.reduce(r.next_u64()), &mut r).unwrap();
                // One party per batch: P1's keys for some table sizes, P0's for others.
                if bits % 2 == 0 { k1 } else { k0 }
            })
            .collect();
        let mut xs: Vec<u64> = (0..70).map(|_| inw.reduce(r.next_u64())).collect();
        xs[0] = 0;
        xs[1] = inw.mask();
        let (mut dot, mut ones) = (vec![0u64; 70], vec![0u64; 70]);
        let batch = BitDpfKeys::from_keys(&keys).unwrap();
        kernels
            .dpf_lookup(&batch, &xs, &table, out, &mut dot, &mut ones)
            .unwrap();
        for i in 0..70 {
            let e = dpf.eval_full_domain(&keys[i]).unwrap();
            let (mut want_dot, mut want_ones) = (0u64, 0u64);
            for j in 0..size {
                if (e[j / 64] >> (j % 64)) & 1 == 1 {
                    want_dot = want_dot.wrapping_add(table[inw.sub(xs[i], j as u64) as usize]);
                    want_ones += 1;
                }
            }
            assert_eq!(dot[i], out.reduce(want_dot), "n={bits} key {i}");
            assert_eq!(ones[i], out.reduce(want_ones), "n={bits} key {i}");
        }
        // Errors, not panics: a table of the wrong size, an input outside Z_2^n, short outputs.
        assert!(matches!(
            kernels.dpf_lookup(&batch, &xs, &table[1..], out, &mut dot, &mut ones),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            kernels.dpf_lookup(&batch, &xs, &table, out, &mut dot[1..], &mut ones),
            Err(Error::LengthMismatch { .. })
        ));
        xs[5] = 1 << bits;
        assert_eq!(
            kernels.dpf_lookup(&batch, &xs, &table, out, &mut dot, &mut ones),
            Err(Error::ValueOutOfRange { bits })
        );
    }
}

// ---------------------------------------------------------------- sign and window table

/// Signed values of an n-bit wire with |v| < 2^(n−2): the window's edges, just outside it,
/// zero, the extremes, and a random spread.
fn window_inputs(r: &mut AesCtr, nw: BitWidth, window_bits: u32) -> Vec<i64> {
    let (half, max) = (1i64 << (window_bits - 1), (1i64 << (nw.bits() - 2)) - 1);
    let mut v: Vec<i64> = vec![0, -1, 1, -half, half - 1, -half - 1, half, max, -max];
    v.extend((0..200).map(|_| (r.next_u64() % (2 * half as u64 + 41)) as i64 - half - 20));
    v.extend((0..60).map(|_| nw.to_signed(nw.reduce(r.next_u64())) / 2));
    v
}

/// Signed values of an n-bit wire as a 64-bit wire with pseudorandom bits above the n (a gate
/// reduces its input first).
fn with_high_garbage(r: &mut AesCtr, values: &[i64], nw: BitWidth) -> Vec<u64> {
    values
        .iter()
        .map(|&v| nw.reduce(v as u64) | (r.next_u64() << nw.bits()))
        .collect()
}

#[test]
fn drelu_lookup_reads_the_sign_and_a_window_table_off_one_key() {
    let mut r = rng(17);
    for (bits, window_bits, out_bits) in [(9u32, 7u32, 64u32), (12, 10, 20), (22, 10, 64)] {
        let (nw, out) = (w(bits), w(out_bits));
        let t = WindowTable::from_fn(window_bits, out, |v| (v * v * 3 + v + 7) as u64).unwrap();
        let values = window_inputs(&mut r, nw, window_bits);
        let n = values.len();
        let inputs = [Input::new(&[n], L, with_high_garbage(&mut r, &values, nw))];
        let o = run(&Gate::DreluLookup(nw, t.clone()), &inputs, 40 + bits as u64);
        for (i, &v) in values.iter().enumerate() {
            assert_eq!(o.outputs[0][i], (v >= 0) as u64, "n={bits} v={v}: sign");
            assert_eq!(o.outputs[1][i], t.get(v), "n={bits} v={v}: table");
        }
        // Round 1: the bit and s·T(x) + m in one message; round 2: T(x) + ρ.
        let bytes = packed_len(n, w(1)) + 2 * packed_len(n, out);
        assert_traffic(&o, &inputs, bytes as u64, 2);
        // DReLU's key alone to both servers; P1 also gets its shares of the sign s (besides
        // the output gate's mask shares of both outputs).
        assert_eq!(o.keys.shared.len(), n * drelu_key_bytes(nw));
        let outputs = packed_len(n, w(1)) + packed_len(n, out);
        assert_eq!(o.keys.p1.len(), outputs + packed_len(n, out));
    }
    // A window must leave the DPF's domain a bit more than itself, and hold 7 to 16 bits.
    let t = WindowTable::from_fn(10, w(64), |v| v as u64).unwrap();
    let inputs = [Input::new(&[4], L, vec![1, 2, 3, 4])];
    for bits in [2u32, 11] {
        let g = Gate::DreluLookup(w(bits), t.clone());
        assert!(run_session(&g, &inputs, &Weights::none(), &master(49)).is_err());
    }
    assert!(WindowTable::from_fn(6, w(8), |_| 0).is_err());
    assert!(WindowTable::from_fn(17, w(8), |_| 0).is_err());
}

/// A window table's value times a lookup's in two rounds: both first openings in one message,
/// then the product, exact in the tables' ring; the sign is not opened. The shared keys are
/// the two gates' DPF keys.
#[test]
fn a_window_table_times_a_lookup_takes_two_rounds() {
    let mut r = rng(19);
    for out_bits in [32u32, 64] {
        let (nw, out) = (w(12), w(out_bits));
        let t = WindowTable::from_fn(7, out, |v| (v * v * 3 + v + 7) as u64).unwrap();
        let u = LookupTable::from_fn(w(8), out, |i| i * 1000 + 1).unwrap();
        let values = window_inputs(&mut r, nw, 7);
        let n = values.len();
        let wide: Vec<u64> = values.iter().map(|&v| nw.reduce(v as u64)).collect();
        let index: Vec<u64> = (0..n).map(|_| r.next_u64() & 0xff).collect();
        let inputs = [
            Input::new(&[n], L, wide.clone()),
            Input::new(&[n], L, index.clone()),
        ];
        let gate = Gate::WindowTimesLookup(nw, t.clone(), u.clone());
        let o = run(&gate, &inputs, 77);
        for (i, &v) in values.iter().enumerate() {
            let want = out.mul(t.get(v), u.get(index[i]));
            assert_eq!(o.outputs[0][i], want, "v={v} x={}", index[i]);
        }
        let bytes = 3 * packed_len(n, out);
        assert_traffic(&o, &inputs, bytes as u64, 2);
        let window = run(&Gate::DreluLookup(nw, t), &inputs[..1], 78);
        let lookup = run(&Gate::Lookup(u), &inputs[1..], 79);
        assert_eq!(
            o.keys.shared.len(),
            window.keys.shared.len() + lookup.keys.shared.len()
        );
        // To P1: shares of σ, σ·m_T, σ·m_U and σ·m_T·m_U, and the output gate's mask shares.
        assert_eq!(o.keys.p1.len(), 5 * packed_len(n, out));
    }
    // The inputs must share a shape and the tables a ring.
    let t = WindowTable::from_fn(7, w(32), |v| v as u64).unwrap();
    let inputs = [
        Input::new(&[4], L, vec![1, 2, 3, 4]),
        Input::new(&[4], L, vec![1, 2, 3, 4]),
    ];
    let u = LookupTable::from_fn(w(8), w(20), |i| i).unwrap();
    let g = Gate::WindowTimesLookup(w(12), t.clone(), u);
    assert!(run_session(&g, &inputs, &Weights::none(), &master(52)).is_err());
    let u = LookupTable::from_fn(w(8), w(32), |i| i).unwrap();
    let g = Gate::WindowTimesLookup(w(12), t, u);
    assert!(
        run_session(
            &g,
            &[inputs[0].clone(), Input::new(&[3], L, vec![1, 2, 3])],
            &Weights::none(),
            &master(53)
        )
        .is_err()
    );
}

/// [x ≥ 0]·z − T(x) from one key in two rounds: the sign's product with z (a deferred
/// truncation whose opening rides the first exchange) joins the table's second opening. It
/// equals the sign-and-window gate followed by a bit × value product, one round and one
/// opening fewer, with the same keys as those two gates.
#[test]
fn drelu_select_window_takes_the_table_from_the_selected_value_in_two_rounds() {
    let mut r = rng(23);
    let f = 5;
    for (bits, window_bits, out_bits) in [(9u32, 7u32, 64u32), (22, 10, 52), (12, 8, 20)] {
        let (nw, out) = (w(bits), w(out_bits));
        let t = WindowTable::from_fn(window_bits, out, |v| (v * v * 3 - v + 7) as u64).unwrap();
        let values = window_inputs(&mut r, nw, window_bits);
        let n = values.len();
        let wide = with_high_garbage(&mut r, &values, nw);
        // Values of z below 2^(out − 3) in magnitude, either sign.
        let z: Vec<i64> = (0..n)
            .map(|_| out.to_signed(out.reduce(r.next_u64())) / 4)
            .collect();
        let inputs = [
            Input::new(&[n], L, wide),
            Input::new(&[n], L, z.iter().map(|&z| z as u64).collect()),
        ];
        let gate = Gate::DreluSelectWindow(nw, t.clone(), f);
        let o = run(&gate, &inputs, 60 + bits as u64);
        for (i, &v) in values.iter().enumerate() {
            let got = o.outputs[0][i];
            let want = |carry: i64| {
                let selected = if v >= 0 { (z[i] >> f) + carry } else { 0 };
                out.sub(out.reduce(selected as u64), t.get(v))
            };
            assert!(
                got == want(0) || got == want(1),
                "n={bits} v={v} z={}: got {got}, want {}",
                z[i],
                want(0)
            );
        }
        // Round 1: the bit, s·T(x) + m and the deferred truncation; round 2: the sum.
        let bytes = packed_len(n, w(1)) + 3 * packed_len(n, out);
        assert_traffic(&o, &inputs, bytes as u64, 2);
        // The keys of the window gate, the truncation and a bit × value product, less the
        // window's and the truncation's output masks (the harness's output gate deals them),
        // plus this gate's one.
        let window = run(&Gate::DreluLookup(nw, t.clone()), &inputs[..1], 61);
        let narrow = [Input::new(&[n], out, vec![0; n])];
        let truncation = run(&Gate::TruncateLater(f, None), &narrow, 62);
        assert_eq!(
            o.keys.shared.len(),
            window.keys.shared.len() + truncation.keys.shared.len()
        );
        let (bit, value) = (packed_len(n, w(1)), packed_len(n, out));
        assert_eq!(
            o.keys.p1.len(),
            (window.keys.p1.len() - bit - value)
                + (truncation.keys.p1.len() - value)
                + 3 * value
                + value
        );
    }
    // z must have x's shape and lie in the table's ring.
    let t = WindowTable::from_fn(7, w(20), |v| v as u64).unwrap();
    let inputs = [
        Input::new(&[4], L, vec![1, 2, 3, 4]),
        Input::new(&[3], L, vec![1, 2, 3]),
    ];
    let g = Gate::DreluSelectWindow(w(12), t, 3);
    assert!(run_session(&g, &inputs, &Weights::none(), &master(50)).is_err());
}

/// The CPU kernel against its definition: the comparison's prefix parity (the two parties'
/// XOR to [α ≤ x]), and the window's dot product from the keys' full-domain bits.
#[test]
fn sign_window_kernel_matches_its_definition() {
    use securerouter_core::fss::{BitDpf, BitDpfKeys};
    use securerouter_core::gate::{CpuKernels, Kernels};
    let dpf = BitDpf::new();
    let kernels = CpuKernels::new();
    let mut r = rng(18);
    for (bits, window_bits, out_bits) in
        [(8u32, 7u32, 64u32), (12, 7, 13), (12, 11, 64), (16, 10, 40)]
    {
        let (inw, out) = (w(bits), w(out_bits));
        let size = 1usize << window_bits;
        let half = size as u64 / 2;
        let table: Vec<u64> = (0..size).map(|_| out.reduce(r.next_u64())).collect();
        let count = 150;
        let mut xs: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
        // The domain's ends and window-sized block boundaries on either side of x.
        xs[..6].copy_from_slice(&[
            0,
            inw.mask(),
            half - 1,
            half,
            size as u64,
            inw.mask() - half,
        ]);
        let mut alphas = Vec::with_capacity(count);
        let (mut keys0, mut keys1) = (Vec::new(), Vec::new());
        for (i, &x) in xs.iter().enumerate() {
            // Every other point inside x's window or just beside it, the rest anywhere.
            let alpha = if i % 2 == 0 {
                let v = r.next_u64() % (size as u64 + 4);
                inw.reduce(x.wrapping_add(half + 2).wrapping_sub(v))
            } else {
                inw.reduce(r.next_u64())
            };
            let (k0, k1) = dpf.gen_keys(inw, alpha, &mut r).unwrap();
            alphas.push(alpha);
            keys0.push(k0);
            keys1.push(k1);
        }
        let mut parities = Vec::new();
        for keys in [&keys0, &keys1] {
            let (mut parity, mut dot) = (vec![0u64; count], vec![0u64; count]);
            let batch = BitDpfKeys::from_keys(keys).unwrap();
            kernels
                .dpf_sign_window(&batch, &xs, &table, out, &mut parity, &mut dot)
                .unwrap();
            for i in 0..count {
                let e = dpf.eval_full_domain(&keys[i]).unwrap();
                let bit = |p: u64| (e[(p / 64) as usize] >> (p % 64)) & 1;
                let want_dot = (0..size as u64).fold(0u64, |acc, k| {
                    // v = k − H, position x − v.
                    let p = inw.reduce(xs[i].wrapping_sub(k).wrapping_add(half));
                    acc.wrapping_add(bit(p) * table[k as usize])
                });
                let at = format!("n={bits} w={window_bits} key {i}");
                assert_eq!(dot[i], out.reduce(want_dot), "{at}: dot");
                let want_parity = dpf.eval_prefix_parity(&keys[i], xs[i]).unwrap() as u64;
                assert_eq!(parity[i], want_parity, "{at}: parity");
            }
            parities.push(parity);
        }
        // The two parties' parities are XOR shares of the comparison.
        for i in 0..count {
            let want = (alphas[i] <= xs[i]) as u64;
            assert_eq!(
                parities[0][i] ^ parities[1][i],
                want,
                "n={bits} key {i}: [α ≤ x]"
            );
        }
        let batch = BitDpfKeys::from_keys(&keys0).unwrap();
        let (mut parity, mut dot) = (vec![0u64; count], vec![0u64; count]);
        // Errors, not panics: a table of no power-of-two size, an input outside Z_2^n, short
        // outputs.
        assert!(
            kernels
                .dpf_sign_window(&batch, &xs, &table[1..], out, &mut parity, &mut dot)
                .is_err()
        );
        assert!(matches!(
            kernels.dpf_sign_window(&batch, &xs, &table, out, &mut parity[1..], &mut dot),
            Err(Error::LengthMismatch { .. })
        ));
        xs[5] = 1 << bits;
        assert_eq!(
            kernels.dpf_sign_window(&batch, &xs, &table, out, &mut parity, &mut dot),
            Err(Error::ValueOutOfRange { bits })
        );
    }
    // Windows of fewer than 7 bits, or not narrower than the domain.
    let keys: Vec<_> = (0..3)
        .map(|_| dpf.gen_keys(w(10), 5, &mut r).unwrap().0)
        .collect();
    let batch = BitDpfKeys::from_keys(&keys).unwrap();
    let (mut parity, mut dot) = (vec![0u64; 3], vec![0u64; 3]);
    for size in [64usize, 1024, 2048] {
        let table = vec![1u64; size];
        let res = kernels.dpf_sign_window(&batch, &[1, 2, 3], &table, w(64), &mut parity, &mut dot);
        assert!(
            matches!(res, Err(Error::ShapeMismatch(_))),
            "window of {size}"
        );
    }
}

// ---------------------------------------------------------------- max and argmax

fn argmax_plain(row: &[i64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[test]
fn argmax_over_3_and_128_with_ties() {
    let mut r = rng(11);
    for k in [3usize, 128, 5] {
        let rows = 40;
        let mut values = signed_values(&mut r, rows * k, 20, L);
        // Ties: row 0 all equal; row 1 maximum at two places; row 2 maximum last.
        for j in 0..k {
            values[j] = 7;
            values[k + j] = L.reduce(-(j as i64) as u64);
            values[2 * k + j] = j as u64;
        }
        values[k + k - 1] = 0;
        let inputs = [Input::new(&[rows, k], L, values.clone())];
        let o = run(&Gate::Argmax(w(24)), &inputs, 11 + k as u64);
        for row in 0..rows {
            let plain: Vec<i64> = values[row * k..(row + 1) * k]
                .iter()
                .map(|&v| signed(L, v))
                .collect();
            let best = argmax_plain(&plain);
            assert_eq!(
                signed(L, o.outputs[0][row]),
                plain[best],
                "max of row {row}"
            );
            let onehot = &o.outputs[1][row * k..(row + 1) * k];
            for (j, &bit) in onehot.iter().enumerate() {
                assert_eq!(bit, (j == best) as u64, "row {row} k={k} index {j}");
            }
        }
        // Rounds: two per level of the tournament.
        let levels = (k as f64).log2().ceil() as u64;
        for t in o.traffic {
            assert_eq!(t.rounds, 1 + 2 * levels);
        }
        // Bytes: each level sends ⌈rows·pairs/8⌉ for DReLU and rows·pairs·(1+k)·8 for select.
        let (mut c, mut bytes) = (k, 0u64);
        while c > 1 {
            let pairs = c / 2;
            bytes += (rows * pairs).div_ceil(8) as u64 + (rows * pairs * (1 + k) * 8) as u64;
            c = pairs + c % 2;
        }
        assert_traffic(&o, &inputs, bytes, 2 * levels);
    }
}

#[test]
fn max_without_onehot() {
    let mut r = rng(12);
    let (rows, k) = (50, 7);
    let values = signed_values(&mut r, rows * k, 30, L);
    let inputs = [Input::new(&[rows, k], L, values.clone())];
    let o = run(&Gate::Max(w(32)), &inputs, 12);
    for row in 0..rows {
        let m = values[row * k..(row + 1) * k]
            .iter()
            .map(|&v| signed(L, v))
            .max()
            .unwrap();
        assert_eq!(signed(L, o.outputs[0][row]), m);
    }
}

#[test]
fn max_within_picks_an_element_near_the_maximum_with_shorter_keys() {
    let mut r = rng(13);
    let (rows, k, drop) = (400, 128, 8u32);
    let act = w(26);
    // Rows clustered within a few 2^drop of each other, so that coarse comparisons matter.
    let values: Vec<u64> = (0..rows * k)
        .map(|_| act.reduce(((r.next_u64() % 2048) as i64 - 1024 + (1 << 20)) as u64))
        .collect();
    let inputs = [Input::new(&[rows, k], act, values.clone())];
    let o = run(&Gate::MaxWithin(w(26 - drop), drop), &inputs, 13);
    let levels = 7; // ⌈log2 128⌉
    let mut inexact = 0;
    for row in 0..rows {
        let vals: Vec<i64> = values[row * k..(row + 1) * k]
            .iter()
            .map(|&v| signed(act, v))
            .collect();
        let m = *vals.iter().max().unwrap();
        let got = signed(act, o.outputs[0][row]);
        assert!(vals.contains(&got), "row {row}: {got} is not an element");
        assert!(
            got <= m && got >= m - levels * (1 << drop),
            "row {row}: {got} vs max {m}"
        );
        inexact += (got != m) as usize;
    }
    assert!(
        inexact > 0,
        "the coarse comparisons never erred: the test shows nothing"
    );
    // One DReLU key per comparison, on 26 − drop bits.
    assert_eq!(
        o.keys.shared.len(),
        rows * (k - 1) * drelu_key_bytes(w(26 - drop))
    );
    assert!(drelu_key_bytes(w(26 - drop)) < drelu_key_bytes(act));
}

// ---------------------------------------------------------------- what a server sees
//
// A server's view of a session is its seed, its dealer streams, and what the other server sends
// it. Each opening is one message each way: server b receives the other's share and adds its
// own, so both learn the opened value, the sum of the two messages. A leak in the opened value
// need not show in either message alone (the sender's share carries its own pseudorandomness
// whatever is opened), so the tests look at the sum and at each server's message.

/// One opened vector as both servers saw it.
struct Opening {
    width: BitWidth,
    /// `received[b]`: what server b received (the other's shares).
    received: [Vec<u64>; 2],
    /// The sum of the two: the opened value both servers learn.
    opened: Vec<u64>,
}

/// A session's whole transcript, input openings first, split into `parts` (count, width) in
/// the order the gates open them (a round that opens two vectors holds two parts). Each
/// server's messages must hold exactly these parts, byte for byte.
fn openings(o: &Outcome, parts: &[(usize, BitWidth)]) -> Vec<Opening> {
    let bytes = [Party::P0, Party::P1].map(|p| o.link.received(p).concat());
    let mut at = 0;
    let out = parts
        .iter()
        .map(|&(count, width)| {
            let len = packed_len(count, width);
            let received = [0, 1].map(|b| unpack(&bytes[b][at..at + len], count, width).unwrap());
            at += len;
            let opened = received[0]
                .iter()
                .zip(&received[1])
                .map(|(&x, &y)| width.add(x, y))
                .collect();
            Opening {
                width,
                received,
                opened,
            }
        })
        .collect();
    assert_eq!(at, bytes[0].len(), "P0's messages hold more than the parts");
    assert_eq!(at, bytes[1].len(), "P1's messages hold more than the parts");
    out
}

/// The parts the client's inputs open, then the gate's.
fn with_inputs(inputs: &[Input], gate: &[(usize, BitWidth)]) -> Vec<(usize, BitWidth)> {
    let ins = inputs.iter().map(|i| (i.values.len(), i.width));
    ins.chain(gate.iter().copied()).collect()
}

/// One session as the servers saw it: every opening, and the dealer's streams.
struct View {
    openings: Vec<Opening>,
    keys: MemoryKeys,
}

/// Sessions of `g` on inputs A and on inputs B with independent seeds (dealer, client and
/// servers): the two views share no masks, so each is a fresh sample of the view's distribution,
/// as comparing two distributions needs. `gate_parts` are the gate's openings (after inputs).
fn views(
    g: &Gate,
    weights: &Weights,
    inputs: [Vec<Input>; 2],
    seeds: [u64; 2],
    gate_parts: &[(usize, BitWidth)],
) -> [View; 2] {
    assert_ne!(
        seeds[0], seeds[1],
        "the two sessions need independent seeds"
    );
    [0, 1].map(|s| {
        let o = run_session(g, &inputs[s], weights, &master(seeds[s])).unwrap();
        View {
            openings: openings(&o, &with_inputs(&inputs[s], gate_parts)),
            keys: o.keys,
        }
    })
}

/// The statistic: is sample A uniform, is sample B uniform, are they alike.
fn statistic(a: &[u64], b: &[u64], width: BitWidth) -> [bool; 3] {
    let (ha, hb) = (
        OpenedHistograms::of(a, width),
        OpenedHistograms::of(b, width),
    );
    [ha.uniform_ok(), hb.uniform_ok(), ha.same_as(&hb)]
}

fn assert_passes(name: &str, a: &[u64], b: &[u64], width: BitWidth) {
    let [ua, ub, same] = statistic(a, b, width);
    assert!(ua, "{name}: not uniform for input A");
    assert!(ub, "{name}: not uniform for input B");
    assert!(same, "{name}: differs between inputs A and B");
}

/// Every opening of both sessions (the input openings too), each as the opened value and as
/// each server's received message; and each server's dealer stream: P1's own (value shares
/// under P0's pseudorandom ones: uniform bytes, alike for A and B) and the shared one (FSS
/// keys: alike for A and B).
fn assert_views_are_independent(name: &str, v: &[View; 2]) {
    assert_eq!(v[0].openings.len(), v[1].openings.len());
    for (i, (a, b)) in v[0].openings.iter().zip(&v[1].openings).enumerate() {
        let w = a.width;
        assert_passes(
            &format!("{name}, opening {i}: opened"),
            &a.opened,
            &b.opened,
            w,
        );
        for (s, who) in ["P0", "P1"].iter().enumerate() {
            let what = format!("{name}, opening {i}: received by {who}");
            assert_passes(&what, &a.received[s], &b.received[s], w);
        }
    }
    let bytes = |s: &[u8]| s.iter().map(|&x| x as u64).collect::<Vec<u64>>();
    let (ka, kb) = (&v[0].keys, &v[1].keys);
    assert_eq!(ka.p1.len(), kb.p1.len());
    assert_eq!(ka.shared.len(), kb.shared.len());
    // The linear streams: headers naming the layers (the same for any input), and on P1's the
    // value shares between them (uniform, alike for A and B).
    assert_eq!(ka.linear[0], kb.linear[0], "{name}: P0's linear stream");
    assert_eq!(ka.linear[1].len(), kb.linear[1].len());
    if ka.linear[1].len() > ka.linear[0].len() {
        let shares = |l: &[u8]| bytes(&l[9..l.len() - 9]);
        let what = format!("{name}: P1's linear stream");
        assert_passes(&what, &shares(&ka.linear[1]), &shares(&kb.linear[1]), w(8));
    }
    if !ka.p1.is_empty() {
        let what = format!("{name}: P1's dealer stream");
        assert_passes(&what, &bytes(&ka.p1), &bytes(&kb.p1), w(8));
    }
    // FSS keys hold structured bytes (control bits, lengths), so not uniform: only alike.
    let [_, _, same] = statistic(&bytes(&ka.shared), &bytes(&kb.shared), w(8));
    assert!(
        same,
        "{name}: the shared dealer stream differs between A and B"
    );
}

const A: u64 = 0;
const B: u64 = 0x3fff_ffff_ffff_fff0; // close to the largest allowed magnitude

fn constant(shape: &[usize], width: BitWidth, x: u64) -> Input {
    Input::new(shape, width, vec![x; shape.iter().product()])
}

/// A gate, its inputs A and B, and its openings after the inputs'.
type ViewCase = (&'static str, Gate, [Vec<Input>; 2], Vec<(usize, BitWidth)>);

/// What both servers see of every gate is uniform and the same for two very different inputs,
/// from sessions with independent seeds.
#[test]
fn both_servers_views_are_uniform_and_input_independent() {
    let n = 20_000;
    let one = |x: u64| vec![constant(&[n], L, x)];
    let none = Weights::none();
    let cases: Vec<ViewCase> = vec![
        // The input openings alone.
        ("input", Gate::Identity, [one(A), one(B)], vec![]),
        (
            "truncate",
            Gate::Truncate(12),
            [one(A), one(B)],
            vec![(n, L)],
        ),
        (
            "truncate into a wider ring",
            Gate::TruncateTo(12, L),
            [0, (1 << 29) + 5].map(|x| vec![constant(&[n], w(32), x)]),
            vec![(n, L)],
        ),
        (
            "drelu",
            Gate::Drelu(w(64)),
            [one(A), one(L.reduce(-5i64 as u64))],
            vec![(n, w(1))],
        ),
        // DReLU round, then the select round.
        (
            "relu",
            Gate::Relu(w(64)),
            [one(A), one(L.reduce(-5i64 as u64))],
            vec![(n, w(1)), (n, L)],
        ),
        // s·T(x) + m, then T(x) + ρ.
        (
            "lookup",
            Gate::Lookup(LookupTable::from_fn(w(8), w(16), |i| i * i).unwrap()),
            [one(3), one(250)],
            vec![(n, w(16)), (n, w(16))],
        ),
        // s·T(x) + m, then T(x) + ρ and T(x)·z + c' in one message.
        (
            "lookup_mul",
            Gate::LookupMul(LookupTable::from_fn(w(8), w(16), |i| i * i + 1).unwrap()),
            [(3, 5), (250, w(16).reduce(-9000i64 as u64))]
                .map(|(a, b)| vec![constant(&[n], L, a), constant(&[n], L, b)]),
            vec![(n, w(16)), (n, w(16)), (n, w(16))],
        ),
        // The bit and s·T(x) + m in one message, then T(x) + ρ; inputs inside the window (3)
        // and outside it (−200, a zero entry).
        (
            "drelu_lookup",
            Gate::DreluLookup(
                w(12),
                WindowTable::from_fn(7, w(16), |v| (v * v) as u64).unwrap(),
            ),
            [one(3), one(w(12).reduce(-200i64 as u64))],
            vec![(n, w(1)), (n, w(16)), (n, w(16))],
        ),
        // The deferred truncation, the bit and s·T(x) + m in one message, then the selected
        // value less the table's; inputs inside and outside the window.
        (
            "drelu_select_window",
            Gate::DreluSelectWindow(
                w(12),
                WindowTable::from_fn(7, w(16), |v| (v * v) as u64).unwrap(),
                4,
            ),
            [
                (3, 5),
                (w(12).reduce(-200i64 as u64), w(16).reduce(-9000i64 as u64)),
            ]
            .map(|(a, b)| vec![constant(&[n], L, a), constant(&[n], L, b)]),
            vec![(n, w(16)), (n, w(1)), (n, w(16)), (n, w(16))],
        ),
        // Both tables' first openings in one message, then their product.
        (
            "window_times_lookup",
            Gate::WindowTimesLookup(
                w(12),
                WindowTable::from_fn(7, w(16), |v| (v * v) as u64).unwrap(),
                LookupTable::from_fn(w(8), w(16), |i| i * i).unwrap(),
            ),
            [(3, 250), (w(12).reduce(-200i64 as u64), 3)]
                .map(|(a, b)| vec![constant(&[n], L, a), constant(&[n], L, b)]),
            vec![(n, w(16)), (n, w(16)), (n, w(16))],
        ),
        (
            "mul",
            Gate::Mul,
            [A, B].map(|x| vec![constant(&[n], L, x), constant(&[n], L, x / 3)]),
            vec![(n, L)],
        ),
        (
            "less_than",
            Gate::LessThan(w(64)),
            [A, B].map(|x| vec![constant(&[n], L, x), constant(&[n], L, x / 3)]),
            vec![(n, w(1))],
        ),
        (
            "matmul",
            Gate::MatMul,
            [A, B].map(|x| {
                vec![
                    constant(&[n / 5, 2, 2], L, x),
                    constant(&[n / 5, 2, 3], L, x / 5),
                ]
            }),
            vec![(n / 5 * 6, L)],
        ),
        (
            "select",
            Gate::SelectBit,
            [(0, A), (1, B)].map(|(bit, x)| {
                vec![
                    constant(&[n], w(1), bit),
                    constant(&[n], L, x),
                    constant(&[n], L, !x),
                ]
            }),
            vec![(n, L)],
        ),
        // Argmax over 3: DReLU bits, selected (value, one-hot) rows, twice.
        (
            "argmax",
            Gate::Argmax(w(64)),
            [[A, 1, 2], [B, 0, B / 2]].map(|v| {
                let values = (0..n / 5 * 3).map(|i| v[i % 3]).collect();
                vec![Input::new(&[n / 5, 3], L, values)]
            }),
            [(n / 5, w(1)), (n / 5 * 4, L)].repeat(2),
        ),
    ];
    for (i, (name, g, inputs, parts)) in cases.into_iter().enumerate() {
        let seeds = [700 + 2 * i as u64, 701 + 2 * i as u64];
        let v = views(&g, &none, inputs, seeds, &parts);
        assert_views_are_independent(name, &v);
    }
    // A linear layer with secret weights, on constant rows.
    let (weights, _, _) = layer(&mut rng(30), 4, 5);
    let inputs = [A, B].map(|x| vec![constant(&[n / 5, 4], L, x)]);
    let v = views(&Gate::Linear, &weights, inputs, [31, 32], &[(n, L)]);
    assert_views_are_independent("linear", &v);
    // An affine map (LayerNorm's γ and β), on constant rows.
    let (weights, _, _) = layer(&mut rng(33), 1, 5);
    let inputs = [A, B].map(|x| vec![constant(&[n / 5, 5], L, x)]);
    let v = views(&Gate::Affine, &weights, inputs, [34, 35], &[(n, L)]);
    assert_views_are_independent("affine", &v);
}

/// A leak control from real gate code: sessions of `g` on inputs A and B (independent seeds);
/// for each `(part, output)` in `unmask`, opening `part` with the dealer's mask for output wire
/// `output` taken off, entirely or all but its low bits.
struct Control {
    name: &'static str,
    gate: Gate,
    weights: Weights,
    inputs: [Vec<Input>; 2],
    parts: Vec<(usize, BitWidth)>,
    unmask: Vec<(usize, usize)>,
}

/// An opening of the two sessions with the dealer's mask taken off: the plaintext wire `plain`
/// and the mask `mask`, per session.
struct Unmasked {
    width: BitWidth,
    plain: [Vec<u64>; 2],
    mask: [Vec<u64>; 2],
}

impl Unmasked {
    /// The opening with its mask r replaced by r mod 2^keep (keep = 0: the plaintext; keep =
    /// width: the real opening).
    fn masked_on(&self, keep: u32) -> [Vec<u64>; 2] {
        let low = |r: u64| if keep >= 64 { r } else { r & ((1 << keep) - 1) };
        [0, 1].map(|s| {
            let (y, r) = (&self.plain[s], &self.mask[s]);
            y.iter()
                .zip(r)
                .map(|(&y, &r)| self.width.add(y, low(r)))
                .collect()
        })
    }
}

impl Control {
    /// Runs the two sessions and takes the dealer's masks off the openings in `unmask`.
    fn unmasked(&self, seeds: [u64; 2]) -> Vec<Unmasked> {
        let [a, b] = [0, 1].map(|s| {
            let (inputs, seed) = (&self.inputs[s], master(seeds[s]));
            let o = run_session(&self.gate, inputs, &self.weights, &seed).unwrap();
            let ops = openings(&o, &with_inputs(inputs, &self.parts));
            let masks = dealer_masks(&self.gate, inputs, &self.weights, &seed).unwrap();
            self.unmask
                .iter()
                .map(|&(part, out)| {
                    let (op, r) = (&ops[part], masks[out].data().to_vec());
                    let w = op.width;
                    assert_eq!(masks[out].width(), w);
                    let plain: Vec<u64> = op
                        .opened
                        .iter()
                        .zip(&r)
                        .map(|(&x, &r)| w.sub(x, r))
                        .collect();
                    // The mask taken off is the wire's: what is left is what the client gets.
                    assert_eq!(plain, o.outputs[out], "{}: not the wire's mask", self.name);
                    (w, plain, r)
                })
                .collect::<Vec<_>>()
        });
        a.into_iter()
            .zip(b)
            .map(|((width, pa, ra), (_, pb, rb))| Unmasked {
                width,
                plain: [pa, pb],
                mask: [ra, rb],
            })
            .collect()
    }
}

/// The view statistic catches a leak: the real openings of each gate family, with the dealer's
/// mask taken off (the plaintext wire), fail both uniformity and sameness across inputs; with
/// the mask kept on all but its top bit, or on only its low 8 bits, they still fail. The same
/// openings with the mask on pass (checked first), so the statistic can tell them apart at the
/// sample size the view test uses.
#[test]
fn the_view_test_detects_leaks_of_real_gates() {
    let n = 20_000;
    let one = |x: i64| vec![constant(&[n], L, L.reduce(x as u64))];
    let controls = [
        Control {
            name: "input",
            gate: Gate::Identity,
            weights: Weights::none(),
            inputs: [one(A as i64), one(B as i64)],
            parts: vec![],
            unmask: vec![(0, 0)],
        },
        Control {
            name: "truncate",
            gate: Gate::Truncate(12),
            weights: Weights::none(),
            inputs: [one(A as i64), one(B as i64)],
            parts: vec![(n, L)],
            unmask: vec![(1, 0)],
        },
        Control {
            name: "drelu",
            gate: Gate::Drelu(w(64)),
            weights: Weights::none(),
            inputs: [one(5), one(-5)],
            parts: vec![(n, w(1))],
            unmask: vec![(1, 0)],
        },
        Control {
            name: "relu",
            gate: Gate::ReluSteps(w(64)),
            weights: Weights::none(),
            inputs: [one(5), one(-5)],
            parts: vec![(n, w(1)), (n, L)],
            unmask: vec![(1, 0), (2, 1)],
        },
        // Round 2 only: round 1's mask m is the dealer's own, not a wire's.
        Control {
            name: "lookup",
            gate: Gate::Lookup(LookupTable::from_fn(w(8), w(16), |i| i * i).unwrap()),
            weights: Weights::none(),
            inputs: [one(3), one(250)],
            parts: vec![(n, w(16)), (n, w(16))],
            unmask: vec![(2, 0)],
        },
        Control {
            name: "drelu_lookup",
            gate: Gate::DreluLookup(
                w(12),
                WindowTable::from_fn(7, w(16), |v| (v * v) as u64).unwrap(),
            ),
            weights: Weights::none(),
            inputs: [one(3), one(-20)],
            parts: vec![(n, w(1)), (n, w(16)), (n, w(16))],
            unmask: vec![(1, 0), (3, 1)],
        },
        Control {
            name: "mul",
            gate: Gate::Mul,
            weights: Weights::none(),
            inputs: [3, B as i64].map(|x| {
                vec![
                    constant(&[n], L, x as u64),
                    constant(&[n], L, (x / 3) as u64),
                ]
            }),
            parts: vec![(n, L)],
            unmask: vec![(2, 0)],
        },
        Control {
            name: "linear",
            gate: Gate::Linear,
            weights: layer(&mut rng(30), 4, 5).0,
            inputs: [A, B].map(|x| vec![constant(&[n / 5, 4], L, x)]),
            parts: vec![(n, L)],
            unmask: vec![(1, 0)],
        },
    ];
    for (i, c) in controls.iter().enumerate() {
        let seeds = [900 + 2 * i as u64, 901 + 2 * i as u64];
        for u in c.unmasked(seeds) {
            let (name, w) = (c.name, u.width);
            // With the mask on, the statistic passes.
            let [a, b] = u.masked_on(w.bits());
            assert_passes(name, &a, &b, w);
            // Unmasked: the plaintext, rejected on every count.
            let [a, b] = u.masked_on(0);
            assert_eq!(statistic(&a, &b, w), [false; 3], "{name}: unmasked");
            // Partly masked: neither input's sample passes as uniform.
            if w.bits() < 16 {
                continue;
            }
            for (keep, what) in [(w.bits() - 1, "all but its top bit"), (8, "its low 8 bits")] {
                let [a, b] = u.masked_on(keep);
                let [ua, ub, _] = statistic(&a, &b, w);
                assert!(!ua && !ub, "{name}: masked on {what} passes");
            }
        }
    }
}

// ---------------------------------------------------------------- the dealer's streams

#[test]
fn p0_needs_only_its_seed_and_the_shared_fss_words() {
    // The harness gives P0 a reader with no P1 stream at all, so a gate that needed one on P0
    // would fail; and it checks that each server consumed exactly the bytes meant for it. Run
    // gates using every kind of key (P1 corrections, one-bit DPF comparison and lookup keys).
    let mut r = rng(13);
    let n = 64;
    let vals = signed_values(&mut r, n, 20, L);
    let inputs = [Input::new(&[n], L, vals.clone())];
    let t = LookupTable::from_fn(w(8), L, |i| i).unwrap();
    for g in [
        Gate::Relu(w(32)),
        Gate::Truncate(8),
        Gate::Lookup(t),
        Gate::Mul,
    ] {
        let inputs = if matches!(g, Gate::Mul) {
            vec![inputs[0].clone(), inputs[0].clone()]
        } else {
            inputs.to_vec()
        };
        let o = run(&g, &inputs, 13);
        assert!(!o.keys.p1.is_empty(), "P1 does receive corrections");
    }
}

#[test]
fn servers_that_disagree_on_the_circuit_fail_cleanly() {
    // P1 runs a different gate than P0 and the dealer: an error, not a hang or a panic.
    let mut r = rng(14);
    let n = 16;
    let vals = signed_values(&mut r, n, 20, L);
    let inputs = [Input::new(&[n], L, vals)];
    let seed = master(14);
    let mut dealer = securerouter_core::gate::DealerSide::new(
        &seed,
        securerouter_core::gate::memory::MemoryKeys::default(),
    );
    let x = dealer.input(&[n], L);
    block_on_ready(async {
        let d = dealer.drelu(&x).await.unwrap();
        dealer.output(&d).await.unwrap();
    });
    let keys = dealer.finish();
    let link = securerouter_core::gate::memory::MemoryLink::new();
    let (c0, c1) = link.endpoints();
    let p0 = async {
        let mut s = securerouter_core::gate::ServerSide::new(
            Party::P0,
            &securerouter_core::dealer::Dealer::party_seed(&seed, Party::P0),
            c0,
            keys.reader(Party::P0),
            securerouter_core::gate::CpuKernels::new(),
        );
        let x = s.input(&[n], L, &inputs[0].values).await?;
        s.drelu(&x).await
    };
    let p1 = async {
        let mut s = securerouter_core::gate::ServerSide::new(
            Party::P1,
            &securerouter_core::dealer::Dealer::party_seed(&seed, Party::P1),
            c1,
            keys.reader(Party::P1),
            securerouter_core::gate::CpuKernels::new(),
        );
        let x = s.input(&[n], L, &vec![0; n]).await?;
        s.truncate(&x, 4).await
    };
    let result = link.run(p0, p1);
    let failed = match result {
        Err(_) => true,
        Ok((a, b)) => a.is_err() || b.is_err(),
    };
    assert!(failed);
}
