//! The secure non-linear layers (GeLU, tanh, softmax, 1/√v, LayerNorm) against exact f64 math, on
//! random and edge inputs, through the dealer and both servers in one process.

use securerouter_circuits::Activation;
use securerouter_circuits::Stage;
use securerouter_circuits::bert::{RingLayer, SharedModel, share_layers};
use securerouter_circuits::layers;
use securerouter_circuits::memory::{Circuit, run_circuit};
use securerouter_core::Error;
use securerouter_core::gate::{Protocol, Tensor};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_ml::reference::{gelu, gelu_tanh};

enum Nonlinear {
    Gelu(Activation),
    Tanh,
    Softmax,
    /// The softmax left at scale 2^(2·FRAC).
    SoftmaxTripleScale,
    Rsqrt,
    LayerNorm,
}

impl Circuit for Nonlinear {
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: &Tensor,
        w: &[P::Weights],
    ) -> Result<Stage, Error> {
        let y = match self {
            // As a linear layer gives it: at scale 2^(2·FRAC), in the linear layers' ring.
            Nonlinear::Gelu(act) => {
                let y = x
                    .scale(1 << layers::FRAC)
                    .reduce(BitWidth::new(layers::LINEAR_BITS)?)?;
                // Its result lies in the linear ring; widened here for the 64-bit output.
                let g = layers::gelu_of_product(p, &y, *act).await?;
                p.truncate_to(&g, 0, BitWidth::FULL).await
            }
            Nonlinear::Tanh => layers::tanh(p, x).await,
            Nonlinear::Softmax => layers::softmax(p, x).await,
            Nonlinear::SoftmaxTripleScale => layers::softmax_triple_scale(p, x).await,
            Nonlinear::Rsqrt => layers::rsqrt(p, x).await,
            Nonlinear::LayerNorm => layers::layer_norm(p, x, &w[0]).await,
        };
        Ok(vec![y?].into())
    }
}

fn rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes(*b"secure-layers-t!"), Domain(tag))
}

fn uniform(r: &mut AesCtr, lo: f64, hi: f64) -> f64 {
    lo + (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
}

fn no_weights() -> SharedModel {
    share_layers(&[], &Seed::from_bytes([1; 16])).unwrap()
}

fn run(layer: &Nonlinear, shape: &[usize], x: &[f64], model: &SharedModel) -> Vec<f64> {
    run_circuit(layer, shape, x, model, &Seed::from_bytes([7; 16]))
        .unwrap()
        .outputs
}

/// GeLU's inputs: random, then edge cases either side of 0, of the table's window and of the
/// DPF's domain.
fn gelu_inputs() -> Vec<f64> {
    let mut r = rng(1);
    let mut x: Vec<f64> = (0..2000).map(|_| uniform(&mut r, -6.0, 6.0)).collect();
    x.extend([
        0.0, -0.0001, 0.0001, 3.99, 4.0, 4.01, -4.0, -4.01, -3.99, 100.0, -100.0, 4000.0, -4000.0,
        4096.0, -4096.0, 8191.0, -8191.0,
    ]);
    // Small negatives, where the sign is read off x shifted down by 5 bits.
    x.extend((1..=40).map(|i| -(i as f64) / 4096.0));
    // Either side of the table's window, and far outside it where the DPF's domain wraps.
    for edge in [-4.0, 4.0, 4.0 - 8192.0, 8188.0] {
        x.extend((-8..8).map(|i| edge + i as f64 / 1024.0));
    }
    x
}

/// Secure GeLU with activation `act` on [`gelu_inputs`]: the largest error against `f`.
fn gelu_error(act: Activation, f: fn(f64) -> f64) -> f64 {
    let x = gelu_inputs();
    let y = run(&Nonlinear::Gelu(act), &[x.len()], &x, &no_weights());
    x.iter()
        .zip(&y)
        .map(|(&a, &b)| (f(a) - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn gelu_matches_erf_gelu() {
    let worst = gelu_error(Activation::Gelu, gelu);
    eprintln!("GeLU: max |error| {worst:.2e}");
    assert!(worst < 4e-3, "max |error| {worst}");
}

#[test]
fn tanh_gelu_matches_f64_gelu_tanh() {
    let worst = gelu_error(Activation::GeluTanh, gelu_tanh);
    eprintln!("tanh GeLU: max |error| {worst:.2e}");
    assert!(worst < 4e-3, "max |error| {worst}");
}

#[test]
fn tanh_matches_f64_tanh() {
    let mut r = rng(8);
    let mut x: Vec<f64> = (0..2000).map(|_| uniform(&mut r, -10.0, 10.0)).collect();
    x.extend([
        0.0, -0.0001, 0.0001, 7.99, 8.0, 8.01, -8.0, -8.01, -7.99, 100.0, -100.0, 4000.0, -4000.0,
        8191.0, -8191.0,
    ]);
    // Small values either side of 0, where the sign is read off x shifted down by 4 bits.
    x.extend((-40..=40).map(|i| i as f64 / 4096.0));
    // Either side of the table's window, and far outside it where the DPF's domain wraps.
    for edge in [-8.0, 8.0, 8.0 - 8192.0, 8184.0] {
        x.extend((-8..8).map(|i| edge + i as f64 / 1024.0));
    }
    let y = run(&Nonlinear::Tanh, &[x.len()], &x, &no_weights());
    let worst = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| (a.tanh() - b).abs())
        .fold(0.0, f64::max);
    eprintln!("tanh: max |error| {worst:.2e}");
    assert!(worst < 7e-3, "max |error| {worst}");
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_matches_exact_rows_including_padding() {
    let mut r = rng(2);
    for n in [1usize, 5, 16, 128, 512] {
        let rows = 6;
        let mut x: Vec<f64> = (0..rows * n)
            .map(|_| uniform(&mut r, -10.0, 10.0))
            .collect();
        // Row 1 is constant; row 2 has padded columns (bias −256) after the first; row 3 is
        // clustered within the max tree's coarse comparisons (1/16 at n = 128); row 4 spans
        // nearly the whole range (distances to the maximum up to 8000, where the exponential's
        // window lookup reads its input past the quarter of its ring) with entries on either
        // side of the exponential's clip at distance 16.
        x[n..2 * n].iter_mut().for_each(|v| *v = 1.5);
        x[2 * n + 1..3 * n].iter_mut().for_each(|v| *v -= 256.0);
        x[3 * n..4 * n]
            .iter_mut()
            .for_each(|v| *v = 3.0 + *v / 200.0);
        let far = [
            4000.0, -4000.0, 3984.1, 3983.9, 3992.0, -3000.0, 100.0, 3999.0,
        ];
        for (j, v) in x[4 * n..5 * n].iter_mut().enumerate() {
            *v = far[j % far.len()] - (j / far.len()) as f64 / 64.0;
        }
        let y = run(&Nonlinear::Softmax, &[rows, n], &x, &no_weights());
        // Read at scale 2^FRAC, the triple-scale result is 2^(2·FRAC) times the probabilities.
        let unit = (1u64 << (2 * layers::FRAC)) as f64;
        let wide = run(
            &Nonlinear::SoftmaxTripleScale,
            &[rows, n],
            &x,
            &no_weights(),
        );
        let mut worst = [0f64; 2];
        for i in 0..rows {
            let want = softmax(&x[i * n..(i + 1) * n]);
            for (j, w) in want.iter().enumerate() {
                for (k, got) in [y[i * n + j], wide[i * n + j] / unit]
                    .into_iter()
                    .enumerate()
                {
                    worst[k] = worst[k].max((got - w).abs());
                    assert!(
                        (got - w).abs() < 3e-3,
                        "n={n} row {i} col {j}: {got} vs {w} (triple scale: {})",
                        k == 1
                    );
                }
            }
        }
        eprintln!(
            "softmax over {n}: max |error| {:.2e}, at triple scale {:.2e}",
            worst[0], worst[1]
        );
    }
}

#[test]
fn rsqrt_holds_relative_precision_over_its_range() {
    let mut r = rng(3);
    let mut v: Vec<f64> = (0..500)
        .map(|_| 2f64.powf(uniform(&mut r, -11.0, 17.9)))
        .collect();
    v.extend([1.0, 2.0, 0.5, 4096.0, 65536.0, 0.01]);
    let y = run(&Nonlinear::Rsqrt, &[v.len()], &v, &no_weights());
    let q = (1u64 << layers::FRAC) as f64;
    for (a, b) in v.iter().zip(&y) {
        // Against the input as the fixed-point encoding holds it.
        let want = 1.0 / ((a * q).round() / q).sqrt();
        // Relative error of the table and products, plus the output's own rounding unit.
        assert!(
            (b - want).abs() < 6e-3 * want + 2.0 / q,
            "1/sqrt({a}) = {want}, got {b}"
        );
    }
}

#[test]
fn layer_norm_matches_exact_with_secret_scale_and_shift() {
    // A power-of-two width and BERT-base's, whose 1/h and √h are not exact in fixed point.
    for (seed, h) in [(4, 64), (5, 768)] {
        let mut r = rng(seed);
        let rows = 8;
        let gamma: Vec<f64> = (0..h).map(|_| uniform(&mut r, 0.5, 1.5)).collect();
        let beta: Vec<f64> = (0..h).map(|_| uniform(&mut r, -0.5, 0.5)).collect();
        let q = |v: f64, f: u32| (v * (1u64 << f) as f64).round() as i64 as u64;
        let layer = RingLayer {
            k: 1,
            n: h,
            w: gamma.iter().map(|&g| q(g, 12)).collect(),
            bias: beta.iter().map(|&b| q(b, 36)).collect(),
        };
        let model = share_layers(&[layer], &Seed::from_bytes([3; 16])).unwrap();
        let mut x = Vec::new();
        for i in 0..rows {
            // Rows of very different spread, from 0.05 to 40.
            let spread = [0.05, 0.3, 1.0, 3.0, 10.0, 40.0, 0.1, 2.0][i];
            let offset = uniform(&mut r, -5.0, 5.0);
            x.extend((0..h).map(|_| offset + uniform(&mut r, -spread, spread)));
        }
        let y = run(&Nonlinear::LayerNorm, &[rows, h], &x, &model);
        let mut worst = 0f64;
        for i in 0..rows {
            let row = &x[i * h..(i + 1) * h];
            let mean = row.iter().sum::<f64>() / h as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            for j in 0..h {
                let want = (row[j] - mean) / var.sqrt() * gamma[j] + beta[j];
                let got = y[i * h + j];
                worst = worst.max((got - want).abs());
                assert!(
                    (got - want).abs() < 1.5e-2,
                    "h {h}, row {i} col {j}: {got} vs {want}"
                );
            }
        }
        eprintln!("LayerNorm over {h}: max |error| {worst:.2e}");
    }
}
