//! Online cost of the gates: both servers run over the in-memory link on one thread, with the
//! dealer's keys generated before the timed part. Each benchmark also prints, per element, the
//! bytes each server sends online, the rounds, and the key bytes (to P1 only / to both).
//! Input openings and output shares are included in the time, excluded from the per-element
//! gate figures.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use securerouter_core::Error;
use securerouter_core::gate::{
    self, LookupTable, Protocol, Tensor, WindowTable, packed_len, share_weights,
};
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;

const L: BitWidth = BitWidth::FULL;

enum G {
    Drelu(u32),
    Relu,
    Select,
    Lookup(LookupTable),
    /// DReLU and a window table on one key, on `bits`-bit inputs.
    DreluLookup(u32, WindowTable),
    /// [x ≥ 0]·z − T(x) on `bits`-bit inputs x, z = y truncated by `f` bits into the table's
    /// ring (GeLU's gate).
    DreluSelectWindow(u32, WindowTable, u32),
    /// T(x)·U(y), x on `bits` bits (the softmax's exponential).
    WindowTimesLookup(u32, WindowTable, LookupTable),
    /// T(x) and T(x)·z (the reciprocal's table and its Newton product).
    LookupMul(LookupTable),
    Linear,
    Argmax,
}

impl Circuit for G {
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: Vec<Tensor>,
        w: &[P::Weights],
    ) -> Result<Vec<Tensor>, Error> {
        let cmp = BitWidth::new(64)?;
        Ok(match self {
            G::Drelu(n) => vec![p.drelu(&x[0].reduce(BitWidth::new(*n)?)?).await?],
            G::Relu => vec![gate::relu(p, &x[0], cmp).await?],
            G::Select => vec![gate::select(p, &x[0], &x[1], &x[2]).await?],
            G::Lookup(t) => vec![p.lookup(&x[0].reduce(t.in_bits())?, t).await?],
            G::DreluLookup(n, t) => {
                let (d, y) = p.drelu_lookup(&x[0].reduce(BitWidth::new(*n)?)?, t).await?;
                vec![d, y]
            }
            G::DreluSelectWindow(n, t, f) => {
                let out = t.out_width();
                let z = p.truncate_later(&x[1].reduce(out)?, *f, out).await?;
                vec![
                    p.drelu_select_window(&x[0].reduce(BitWidth::new(*n)?)?, t, z)
                        .await?,
                ]
            }
            G::WindowTimesLookup(n, t, u) => {
                let a = x[0].reduce(BitWidth::new(*n)?)?;
                let b = x[1].reduce(u.in_bits())?;
                vec![p.window_times_lookup((&a, t), (&b, u)).await?]
            }
            G::LookupMul(t) => {
                let z = x[1].reduce(t.out_width())?;
                let (y, yz) = p.lookup_mul(&x[0].reduce(t.in_bits())?, t, &z).await?;
                vec![y, yz]
            }
            G::Linear => vec![p.linear(&x[0], &w[0]).await?],
            G::Argmax => {
                let (_, onehot) = gate::argmax(p, &x[0], BitWidth::new(32)?).await?;
                vec![onehot]
            }
        })
    }
}

fn bench_gate(
    c: &mut Criterion,
    name: &str,
    g: &G,
    inputs: &[Input],
    weights: &Weights,
    elements: usize,
) {
    let master = Seed::from_bytes(*b"gate-bench-seed!");
    let keys = deal_session(g, inputs, weights, &master).unwrap();
    let shares = client_shares(inputs, &master).unwrap();
    let o = serve_session(g, inputs, &shares, weights, &master, keys.clone()).unwrap();
    let input_bytes: usize = inputs
        .iter()
        .map(|i| packed_len(i.values.len(), i.width))
        .sum();
    // The output gate's mask shares to P1: packed at each output's width.
    let out_mask_bytes: usize = o
        .outputs
        .iter()
        .zip(&o.output_widths)
        .map(|(v, &w)| packed_len(v.len(), w))
        .sum();
    let t = o.traffic[0];
    eprintln!(
        "{name}: {elements} elements; online per server {:.3} B/element, {} rounds; keys {:.1} B/element to P1, {:.1} B/element to both",
        (t.bytes_sent as usize - input_bytes) as f64 / elements as f64,
        t.rounds - inputs.len() as u64,
        // The P1-only stream and P1's linear stream (the linear layers' offline shares).
        ((keys.p1.len() + keys.linear[1].len()).saturating_sub(out_mask_bytes)) as f64
            / elements as f64,
        keys.shared.len() as f64 / elements as f64,
    );
    c.bench_function(name, |b| {
        b.iter_batched(
            || keys.clone(),
            |k| serve_session(g, inputs, &shares, weights, &master, k).unwrap(),
            BatchSize::LargeInput,
        )
    });
}

fn gates(c: &mut Criterion) {
    let mut r = rng(99);
    let n = 10_000;
    let x = |r: &mut securerouter_core::prg::AesCtr, count| signed_values(r, count, 40, L);
    let none = Weights::none();

    for bits in [64u32, 32] {
        let inputs = [Input::new(&[n], L, x(&mut r, n))];
        bench_gate(
            c,
            &format!("drelu{bits}_x10k"),
            &G::Drelu(bits),
            &inputs,
            &none,
            n,
        );
    }
    let inputs = [Input::new(&[n], L, x(&mut r, n))];
    bench_gate(c, "relu64_x10k", &G::Relu, &inputs, &none, n);

    let bits: Vec<u64> = (0..n).map(|_| r.next_u64() & 1).collect();
    let inputs = [
        Input::new(&[n], BitWidth::new(1).unwrap(), bits),
        Input::new(&[n], L, x(&mut r, n)),
        Input::new(&[n], L, x(&mut r, n)),
    ];
    bench_gate(c, "select64_x10k", &G::Select, &inputs, &none, n);

    for (bits, count) in [(8u32, 1000usize), (12, 100)] {
        let w = BitWidth::new(bits).unwrap();
        let t = LookupTable::from_fn(w, L, |i| i * 3).unwrap();
        let inputs = [Input::new(&[count], L, x(&mut r, count))];
        bench_gate(
            c,
            &format!("lookup{bits}_x{count}"),
            &G::Lookup(t),
            &inputs,
            &none,
            count,
        );
    }

    // GeLU's: the sign of a 22-bit input and a 2^10-entry table on one key.
    let count = 1000;
    let t = WindowTable::from_fn(10, L, |v| (v * v) as u64).unwrap();
    let inputs = [Input::new(&[count], L, signed_values(&mut r, count, 12, L))];
    bench_gate(
        c,
        "drelu_lookup22_window10_x1000",
        &G::DreluLookup(22, t),
        &inputs,
        &none,
        count,
    );

    // GeLU's fused gate: the sign of a 22-bit input selects its value truncated by 12 bits
    // into a 41-bit ring, less a 2^10-entry table.
    let gelu_ring = BitWidth::new(41).unwrap();
    let t = WindowTable::from_fn(10, gelu_ring, |v| v.unsigned_abs()).unwrap();
    let inputs = [
        Input::new(&[count], L, signed_values(&mut r, count, 12, L)),
        Input::new(&[count], L, signed_values(&mut r, count, 30, L)),
    ];
    bench_gate(
        c,
        "drelu_select_window22_window10_x1000",
        &G::DreluSelectWindow(22, t, 12),
        &inputs,
        &none,
        count,
    );

    // The softmax's exponential: a 2^7-entry window table on a 16-bit input times a 2^8-entry
    // table, in a 32-bit ring.
    let ring32 = BitWidth::new(32).unwrap();
    let t = WindowTable::from_fn(7, ring32, |v| (v + 64) as u64).unwrap();
    let u = LookupTable::from_fn(BitWidth::new(8).unwrap(), ring32, |i| i + 1).unwrap();
    let inputs = [
        Input::new(&[count], L, signed_values(&mut r, count, 8, L)),
        Input::new(&[count], L, x(&mut r, count)),
    ];
    bench_gate(
        c,
        "window7_times_lookup8_x1000",
        &G::WindowTimesLookup(16, t, u),
        &inputs,
        &none,
        count,
    );

    // The reciprocal's: a 2^13-entry table and its product with a 32-bit value.
    let t = LookupTable::from_fn(BitWidth::new(13).unwrap(), ring32, |i| i * 7).unwrap();
    let inputs = [
        Input::new(&[count], L, x(&mut r, count)),
        Input::new(&[count], L, x(&mut r, count)),
    ];
    bench_gate(
        c,
        "lookup13_mul_x1000",
        &G::LookupMul(t),
        &inputs,
        &none,
        count,
    );

    let (m, k, nn) = (128, 768, 768);
    let wv: Vec<u64> = (0..k * nn).map(|_| r.next_u64()).collect();
    let bv: Vec<u64> = (0..nn).map(|_| r.next_u64()).collect();
    let (d, s0, s1) = share_weights(0, &wv, &bv, (k, nn), &Seed::from_bytes([5; 16])).unwrap();
    let weights = Weights {
        dealer: vec![d],
        servers: [vec![s0], vec![s1]],
    };
    let inputs = [Input::new(
        &[m, k],
        L,
        (0..m * k).map(|_| r.next_u64()).collect(),
    )];
    bench_gate(
        c,
        "linear_128x768x768",
        &G::Linear,
        &inputs,
        &weights,
        m * nn,
    );

    for k in [3usize, 128] {
        let inputs = [Input::new(&[1, k], L, signed_values(&mut r, k, 30, L))];
        bench_gate(c, &format!("argmax{k}"), &G::Argmax, &inputs, &none, k);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(4));
    targets = gates
}
criterion_main!(benches);
