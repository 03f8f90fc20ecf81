//! A harness that runs a circuit the way a deployment does, in one process: the dealer runs it
//! on masks, the client secret-shares the inputs, P0 and P1 run it as two concurrent tasks over
//! an in-memory link, and the client recombines the output shares.
#![allow(dead_code)]

use securerouter_core::Error;
use securerouter_core::dealer::Dealer;
use securerouter_core::gate::memory::{MemoryKeys, MemoryLink};
use securerouter_core::gate::{
    CpuKernels, DealerSide, DealerWeights, Protocol, ServerSide, ServerWeights, Tensor, Traffic,
};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::{Party, split};

/// A computation written once for every role.
pub trait Circuit {
    /// Runs on `p` (dealer or server) from the input wires; returns the output wires.
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        inputs: Vec<Tensor>,
        weights: &[P::Weights],
    ) -> Result<Vec<Tensor>, Error>;
}

/// A plaintext input: shape, ring width and values.
#[derive(Clone)]
pub struct Input {
    pub shape: Vec<usize>,
    pub width: BitWidth,
    pub values: Vec<u64>,
}

impl Input {
    pub fn new(shape: &[usize], width: BitWidth, values: Vec<u64>) -> Self {
        Input {
            shape: shape.to_vec(),
            width,
            values,
        }
    }
}

/// What a session produced and what it cost.
pub struct Outcome {
    /// The outputs the client reconstructs.
    pub outputs: Vec<Vec<u64>>,
    /// Each output's ring width.
    pub output_widths: Vec<BitWidth>,
    /// Traffic each server sent to the other.
    pub traffic: [Traffic; 2],
    /// The dealer's streams.
    pub keys: MemoryKeys,
    /// The link, with what each server received.
    pub link: MemoryLink,
}

pub struct Weights {
    pub dealer: Vec<DealerWeights>,
    pub servers: [Vec<ServerWeights>; 2],
}

impl Weights {
    pub fn none() -> Self {
        Weights {
            dealer: vec![],
            servers: [vec![], vec![]],
        }
    }
}

/// Polls a future that never waits (the dealer's side) to completion.
pub fn block_on_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the dealer's side never waits"),
    }
}

/// The dealer's offline phase: runs the circuit on masks and returns its key streams.
pub fn deal_session<C: Circuit>(
    circuit: &C,
    inputs: &[Input],
    weights: &Weights,
    master: &Seed,
) -> Result<MemoryKeys, Error> {
    let mut dealer = DealerSide::new(master, MemoryKeys::default());
    let wires: Vec<Tensor> = inputs
        .iter()
        .map(|i| dealer.input(&i.shape, i.width))
        .collect();
    block_on_ready(async {
        let outs = circuit.run(&mut dealer, wires, &weights.dealer).await?;
        for o in &outs {
            dealer.output(o).await?;
        }
        Ok::<_, Error>(())
    })?;
    Ok(dealer.finish())
}

/// The client's additive shares of every input (fresh randomness from `master`).
pub fn client_shares(inputs: &[Input], master: &Seed) -> Result<[Vec<Vec<u64>>; 2], Error> {
    let mut client_rng = AesCtr::new(master, Domain(0xc11e));
    let mut shares: [Vec<Vec<u64>>; 2] = [vec![], vec![]];
    for i in inputs {
        let (mut s0, mut s1) = (vec![0; i.values.len()], vec![0; i.values.len()]);
        split(&i.values, &mut client_rng, &mut s0, &mut s1)?;
        shares[0].push(s0.iter().map(|&v| i.width.reduce(v)).collect());
        shares[1].push(s1.iter().map(|&v| i.width.reduce(v)).collect());
    }
    Ok(shares)
}

/// The online phase: P0 and P1 run the circuit concurrently over an in-memory link on the
/// dealer's `keys`; the client recombines the outputs. P0 precomputes its linear layers'
/// offline terms, P1 computes them as the layers run, so every gate test runs both ways.
pub fn serve_session<C: Circuit>(
    circuit: &C,
    inputs: &[Input],
    shares: &[Vec<Vec<u64>>; 2],
    weights: &Weights,
    master: &Seed,
    keys: MemoryKeys,
) -> Result<Outcome, Error> {
    serve_session_in(
        circuit,
        inputs,
        shares,
        weights,
        master,
        keys,
        [true, false],
    )
}

/// [`serve_session`], with each server's choice of precomputing its linear layers' offline
/// terms before the circuit (`precompute[b]`) or computing them as the layers run.
pub fn serve_session_in<C: Circuit>(
    circuit: &C,
    inputs: &[Input],
    shares: &[Vec<Vec<u64>>; 2],
    weights: &Weights,
    master: &Seed,
    keys: MemoryKeys,
    precompute: [bool; 2],
) -> Result<Outcome, Error> {
    let link = MemoryLink::new();
    let (c0, c1) = link.endpoints();
    let server = |party: Party, chan, my_shares: &Vec<Vec<u64>>, w: &[ServerWeights]| {
        let keys = &keys;
        let my_shares = my_shares.clone();
        let w = w.to_vec();
        async move {
            let seed = Dealer::party_seed(master, party);
            let mut s = ServerSide::new(party, &seed, chan, keys.reader(party), CpuKernels::new());
            if precompute[party.index() as usize] {
                s.precompute_linear(&w).await?;
            }
            let mut wires = Vec::new();
            for (i, sh) in inputs.iter().zip(&my_shares) {
                wires.push(s.input(&i.shape, i.width, sh).await?);
            }
            let outs = circuit.run(&mut s, wires, &w).await?;
            let mut out_shares = Vec::new();
            for o in &outs {
                out_shares.push((o.width(), s.output(o).await?));
            }
            let traffic = s.traffic();
            if !s.finish().await?.is_exhausted() {
                return Err(Error::ProtocolMisuse("server left dealer keys unread"));
            }
            Ok::<_, Error>((out_shares, traffic))
        }
    };
    let (r0, r1) = link.run(
        server(Party::P0, c0, &shares[0], &weights.servers[0]),
        server(Party::P1, c1, &shares[1], &weights.servers[1]),
    )?;
    let (o0, t0) = r0?;
    let (o1, t1) = r1?;
    let output_widths = o0.iter().map(|(w, _)| *w).collect();
    let outputs = o0
        .iter()
        .zip(&o1)
        .map(|((w, a), (_, b))| a.iter().zip(b).map(|(&x, &y)| w.add(x, y)).collect())
        .collect();
    Ok(Outcome {
        outputs,
        output_widths,
        traffic: [t0, t1],
        keys,
        link,
    })
}

/// The masks the dealer gives the wires `circuit` returns: its dealer side run again on the
/// session's seed (the dealer is a function of its seed and the circuit, never of the inputs),
/// so that a test can take a mask off an opened value.
pub fn dealer_masks<C: Circuit>(
    circuit: &C,
    inputs: &[Input],
    weights: &Weights,
    master: &Seed,
) -> Result<Vec<Tensor>, Error> {
    let mut dealer = DealerSide::new(master, MemoryKeys::default());
    let wires: Vec<Tensor> = inputs
        .iter()
        .map(|i| dealer.input(&i.shape, i.width))
        .collect();
    block_on_ready(circuit.run(&mut dealer, wires, &weights.dealer))
}

/// Dealer, client and both servers, in order.
pub fn run_session<C: Circuit>(
    circuit: &C,
    inputs: &[Input],
    weights: &Weights,
    master: &Seed,
) -> Result<Outcome, Error> {
    let keys = deal_session(circuit, inputs, weights, master)?;
    let shares = client_shares(inputs, master)?;
    serve_session(circuit, inputs, &shares, weights, master, keys)
}

pub fn rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes(*b"gate-tests-seed!"), Domain(tag))
}

pub fn w(bits: u32) -> BitWidth {
    BitWidth::new(bits).unwrap()
}

/// Uniform random signed values with |x| < 2^(bits−1), as ring elements of `width`.
pub fn signed_values(rng: &mut AesCtr, count: usize, bits: u32, width: BitWidth) -> Vec<u64> {
    (0..count)
        .map(|_| {
            let v = (rng.next_u64() >> (65 - bits)) as i64;
            let v = if rng.next_bit() { -v } else { v };
            width.reduce(v as u64)
        })
        .collect()
}

/// Largest chi-square statistic over byte positions of the unpacked opened elements against
/// the uniform distribution, and between two transcripts.
pub struct OpenedHistograms(Vec<Vec<u32>>);

impl OpenedHistograms {
    /// Histograms of `values` (elements of Z_2^width): one per whole byte, and one for the top
    /// width mod 8 bits, so that every bit of the element is looked at.
    pub fn of(values: &[u64], width: BitWidth) -> Self {
        let bits = width.bits();
        let mut hs: Vec<(u32, Vec<u32>)> = (0..bits / 8).map(|p| (8 * p, vec![0; 256])).collect();
        if !bits.is_multiple_of(8) {
            hs.push((bits - bits % 8, vec![0; 1 << (bits % 8)]));
        }
        for &v in values {
            for (shift, h) in hs.iter_mut() {
                let bins = h.len() as u64;
                h[((v >> *shift) % bins) as usize] += 1;
            }
        }
        OpenedHistograms(hs.into_iter().map(|(_, h)| h).collect())
    }

    fn critical(bins: usize) -> f64 {
        let df = (bins - 1) as f64;
        (df + 6.0 * (2.0 * df).sqrt()).max(16.0)
    }

    pub fn uniform_ok(&self) -> bool {
        self.0.iter().all(|h| {
            let n: u32 = h.iter().sum();
            let e = n as f64 / h.len() as f64;
            let chi: f64 = h.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
            chi < Self::critical(h.len())
        })
    }

    pub fn same_as(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| {
            let chi: f64 = a
                .iter()
                .zip(b)
                .filter(|(x, y)| **x + **y > 0)
                .map(|(&x, &y)| (x as f64 - y as f64).powi(2) / (x + y) as f64)
                .sum();
            chi < Self::critical(a.len())
        })
    }
}
