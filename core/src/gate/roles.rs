//! The two roles a circuit runs in: [`DealerSide`] (works on masks, writes keys) and
//! [`ServerSide`] (works on masked values, reads keys, talks to the other server), with the
//! few primitives every gate is built from. Each primitive has a dealer half and a server half
//! that consume the seed streams in the same order.

use super::channel::{Channel, KeySink, KeySource, Traffic, pack, packed_len, unpack};
use super::kernels::{CpuKernels, Kernels};
use super::linear::{LINEAR_END, LINEAR_HEADER_LEN, LinearHeader, ServerWeights, offline_term};
use super::tensor::Tensor;
use crate::Error;
use crate::dealer::{Dealer, PartyCorrelations};
use crate::fss::{Corrections, KeyBatch};
use crate::prg::Seed;
use crate::ring::BitWidth;
use crate::share::Party;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

/// Keys a server decodes and evaluates at a time: a few MB of key bytes, reused across chunks.
pub const KEY_CHUNK: usize = 4096;

/// The dealer running a circuit: tensors hold masks; every gate appends its keys to the sink.
pub struct DealerSide<S: KeySink> {
    dealer: Dealer,
    sink: S,
    /// Its local math: the products of masks with the weights' masks and of masks with masks,
    /// which dominate its time on wide layers (the host passes its SIMD, threaded kernels).
    kernels: Box<dyn Kernels + Send>,
}

impl<S: KeySink> DealerSide<S> {
    /// The dealer of one session from its master seed, writing into `sink`, its products on
    /// the portable [`CpuKernels`].
    pub fn new(master: &Seed, sink: S) -> Self {
        Self::with_kernels(master, sink, Box::new(CpuKernels::default()))
    }

    /// [`DealerSide::new`] with its products on `kernels` (whose results every backend must
    /// match bit for bit, so the keys are the same).
    pub fn with_kernels(master: &Seed, sink: S, kernels: Box<dyn Kernels + Send>) -> Self {
        DealerSide {
            dealer: Dealer::new(master),
            sink,
            kernels,
        }
    }

    /// The dealer's local math.
    pub(crate) fn kernels(&self) -> &dyn Kernels {
        self.kernels.as_ref()
    }

    /// The keys written so far.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Ends the session: closes the linear stream and returns the sink.
    pub fn finish(mut self) -> S {
        self.sink.to_linear(&LINEAR_END, &[]);
        self.sink
    }

    /// The client's input enters: a fresh mask whose shares both servers draw from their
    /// seeds, so the input opening needs no key material.
    pub fn input(&mut self, shape: &[usize], width: BitWidth) -> Tensor {
        let r = self.pair(shape.iter().product(), width);
        Tensor::from_parts(shape, width, r)
    }

    /// v = s0 + s1 with s_b from party b's stream: both shares free.
    pub(crate) fn pair(&mut self, count: usize, width: BitWidth) -> Vec<u64> {
        let mut v = vec![0u64; count];
        self.dealer.pseudorandom_pair(&mut v, width);
        v
    }

    /// Shares chosen values: P0 draws, P1 receives v − s0 (packed, `width` bits each).
    pub(crate) fn share(&mut self, values: &[u64], width: BitWidth) {
        let corrections = self.dealer.share_values(values, width);
        self.sink.to_p1(&pack(&corrections, width));
    }

    /// A linear layer's offline correlation: `header` to both servers' linear streams, then
    /// shares of its input mask and of the mask's product with the weight mask (P0's from its
    /// linear stream, P1's as corrections).
    pub(crate) fn linear_correlation(
        &mut self,
        header: &[u8],
        mask: &[u64],
        product: &[u64],
        width: BitWidth,
    ) {
        let mut p1 = pack(&self.dealer.share_linear_values(mask, width), width);
        p1.extend_from_slice(&pack(
            &self.dealer.share_linear_values(product, width),
            width,
        ));
        self.sink.to_linear(header, &p1);
    }

    /// Bytes both servers receive as they are (e.g. a mask being revealed).
    pub(crate) fn send_to_both(&mut self, bytes: &[u8]) {
        self.sink.to_both(bytes);
    }

    /// One one-bit DPF key pair per point α, generated together; the corrections go to both
    /// servers. Returns P1's bit at each α (the dealer's secret).
    pub(crate) fn bit_dpf_keys(
        &mut self,
        in_bits: BitWidth,
        alphas: &[u64],
    ) -> Result<Vec<bool>, Error> {
        let mut bytes = Vec::new();
        let mut p1_at_alpha = Vec::with_capacity(alphas.len());
        for alphas in alphas.chunks(KEY_CHUNK) {
            bytes.clear();
            self.dealer
                .bit_dpf_batch(in_bits, alphas, &mut bytes, &mut p1_at_alpha)?;
            self.sink.to_both(&bytes);
        }
        Ok(p1_at_alpha)
    }
}

/// A server running a circuit: tensors hold masked values.
pub struct ServerSide<C, K, X> {
    party: Party,
    correlations: PartyCorrelations,
    channel: C,
    keys: K,
    kernels: X,
    /// The linear layers' offline terms in the order the circuit runs them, after
    /// [`ServerSide::precompute_linear`]; `None` while they are computed as the layers run.
    precomputed: Option<VecDeque<(LinearHeader, Vec<u64>)>>,
    /// Openings deferred to the next exchange ([`ServerSide::defer_open`]).
    riders: Riders,
}

/// Openings that wait for the next exchange of any gate, so that they cost no round of their
/// own: this server's shares of each (by ticket, in the order deferred) and the values of those
/// opened but not yet taken. Both servers run the same circuit, so their queues agree.
#[derive(Default)]
struct Riders {
    next: usize,
    waiting: Vec<(usize, Vec<u64>, BitWidth)>,
    opened: Vec<(usize, Vec<u64>)>,
}

impl<C: Channel, K: KeySource, X: Kernels> ServerSide<C, K, X> {
    /// Server `party` of a session: `seed` is what the dealer gave it, `channel` the link to
    /// the other server, `keys` the dealer's streams, `kernels` its local math.
    pub fn new(party: Party, seed: &Seed, channel: C, keys: K, kernels: X) -> Self {
        ServerSide {
            party,
            correlations: PartyCorrelations::new(party, seed),
            channel,
            keys,
            kernels,
            precomputed: None,
            riders: Riders::default(),
        }
    }

    /// Which server this is.
    pub fn party(&self) -> Party {
        self.party
    }

    /// Bytes and rounds sent to the other server so far.
    pub fn traffic(&self) -> Traffic {
        self.channel.traffic()
    }

    /// The link to the other server, for an adapter's own messages outside the protocol (e.g.
    /// a barrier that starts both servers' clocks together).
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.channel
    }

    /// The dealer's streams (to check they were consumed exactly).
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// Ends the session: checks that every linear correlation the dealer dealt was used, and
    /// returns the dealer's stream (e.g. to check it is at its end).
    pub async fn finish(mut self) -> Result<K, Error> {
        let unused = match self.precomputed.take() {
            Some(terms) => !terms.is_empty(),
            None => self.read_linear_header().await?.is_some(),
        };
        if unused {
            return Err(Error::MalformedMessage(
                "the dealer dealt more linear layers than the circuit ran",
            ));
        }
        Ok(self.keys)
    }

    /// Reads the whole linear stream ahead and computes every linear layer's offline term
    /// (see `share_weights`), so that online each layer costs one matmul. Call it once, before
    /// the circuit, when the session's keys are at hand (otherwise the terms are computed as
    /// the layers run). `weights` is the model's layers, indexed by their ids. Returns the
    /// layers precomputed.
    pub async fn precompute_linear(&mut self, weights: &[ServerWeights]) -> Result<usize, Error> {
        if self.precomputed.is_some() {
            return Err(Error::ProtocolMisuse("linear layers precomputed twice"));
        }
        let mut terms = VecDeque::new();
        while let Some(header) = self.read_linear_header().await? {
            let w = weights
                .get(header.layer as usize)
                .filter(|w| w.id() == header.layer)
                .ok_or(Error::MalformedMessage(
                    "the dealer named a linear layer the model lacks",
                ))?;
            let term = self.compute_linear_term(&header, w).await?;
            terms.push_back((header, term));
        }
        let count = terms.len();
        self.precomputed = Some(terms);
        Ok(count)
    }

    /// The offline term of the linear layer the circuit runs now (whose header must be
    /// `expected`): precomputed, or computed from the linear stream.
    pub(crate) async fn linear_term(
        &mut self,
        expected: &LinearHeader,
        w: &ServerWeights,
    ) -> Result<Vec<u64>, Error> {
        let mismatch = Error::MalformedMessage(
            "the dealer's linear stream disagrees with the circuit's linear layers",
        );
        if let Some(terms) = &mut self.precomputed {
            return match terms.pop_front() {
                Some((header, term)) if header == *expected => Ok(term),
                _ => Err(mismatch),
            };
        }
        match self.read_linear_header().await? {
            Some(header) if header == *expected => self.compute_linear_term(&header, w).await,
            _ => Err(mismatch),
        }
    }

    async fn read_linear_header(&mut self) -> Result<Option<LinearHeader>, Error> {
        let mut b = [0u8; LINEAR_HEADER_LEN];
        self.keys.read_linear_stream(&mut b).await?;
        LinearHeader::decode(&b)
    }

    /// Reads this server's shares of a layer's input mask and masked product (P0 expands
    /// them, P1 reads corrections) and computes its offline term.
    async fn compute_linear_term(
        &mut self,
        header: &LinearHeader,
        w: &ServerWeights,
    ) -> Result<Vec<u64>, Error> {
        let width = header.width;
        let inputs = header.rows * w.inputs();
        let outputs = header.rows * w.outputs();
        let (mask, product) = match self.party {
            Party::P0 => (
                self.correlations.linear_value_shares(inputs, width, None)?,
                self.correlations
                    .linear_value_shares(outputs, width, None)?,
            ),
            Party::P1 => {
                let split = packed_len(inputs, width);
                let mut bytes = vec![0u8; split + packed_len(outputs, width)];
                self.keys.read_linear_stream(&mut bytes).await?;
                let a = unpack(&bytes[..split], inputs, width)?;
                let b = unpack(&bytes[split..], outputs, width)?;
                (
                    self.correlations
                        .linear_value_shares(inputs, width, Some(&a))?,
                    self.correlations
                        .linear_value_shares(outputs, width, Some(&b))?,
                )
            }
        };
        offline_term(&self.kernels, w, header, &mask, &product)
    }

    pub(crate) fn kernels(&self) -> &X {
        &self.kernels
    }

    pub(crate) fn is_p0(&self) -> bool {
        self.party == Party::P0
    }

    /// The client's input enters: `share` is this server's additive share (Z_2^width) of the
    /// input; adding its share of the dealer's mask and opening gives the masked input.
    pub async fn input(
        &mut self,
        shape: &[usize],
        width: BitWidth,
        share: &[u64],
    ) -> Result<Tensor, Error> {
        let n: usize = shape.iter().product();
        if share.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                got: share.len(),
            });
        }
        let r = self.pair(n, width);
        let mine: Vec<u64> = share
            .iter()
            .zip(&r)
            .map(|(&x, &m)| width.add(x, m))
            .collect();
        Tensor::new(shape, width, self.open(&mine, width).await?)
    }

    /// This server's share of a [`DealerSide::pair`] value.
    pub(crate) fn pair(&mut self, count: usize, width: BitWidth) -> Vec<u64> {
        let mut v = vec![0u64; count];
        self.correlations.pseudorandom_shares(&mut v, width);
        v
    }

    /// This server's share of a [`DealerSide::share`] value.
    pub(crate) async fn share(&mut self, count: usize, width: BitWidth) -> Result<Vec<u64>, Error> {
        match self.party {
            Party::P0 => self.correlations.value_shares(count, width, None),
            Party::P1 => {
                let mut bytes = vec![0u8; packed_len(count, width)];
                self.keys.read_p1_stream(&mut bytes).await?;
                let c = unpack(&bytes, count, width)?;
                self.correlations.value_shares(count, width, Some(&c))
            }
        }
    }

    /// Reads bytes the dealer sent both servers ([`DealerSide::send_to_both`]).
    pub(crate) async fn read_shared(&mut self, out: &mut [u8]) -> Result<(), Error> {
        self.keys.read_shared_stream(out).await
    }

    /// Streams `count` FSS keys of one scheme from the shared stream, each with this server's
    /// root from its seed, through `each` in batches of at most [`KEY_CHUNK`] keys:
    /// `each(kernels, batch, range)` gets the keys for elements `range`. Chunks keep the key
    /// bytes in bounded, reused buffers (a gate's keys can take hundreds of MB).
    pub(crate) async fn with_fss_keys<B: KeyBatch>(
        &mut self,
        count: usize,
        in_bits: BitWidth,
        out_bits: BitWidth,
        mut each: impl FnMut(&X, &B, core::ops::Range<usize>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let len = B::Corrections::encoded_len(in_bits, out_bits);
        let mut bytes = vec![0u8; len * count.min(KEY_CHUNK)];
        let mut roots = Vec::with_capacity(count.min(KEY_CHUNK));
        let mut batch = B::new(self.party, in_bits, out_bits);
        for start in (0..count).step_by(KEY_CHUNK) {
            let end = (start + KEY_CHUNK).min(count);
            let bytes = &mut bytes[..len * (end - start)];
            self.keys.read_shared_stream(bytes).await?;
            roots.resize(end - start, 0);
            self.correlations.fss_roots(&mut roots);
            batch.decode_into(&roots, bytes)?;
            each(&self.kernels, &batch, start..end)?;
        }
        Ok(())
    }

    /// Opens additive shares: one round, ⌈count·width/8⌉ bytes each way.
    pub(crate) async fn open(&mut self, mine: &[u64], width: BitWidth) -> Result<Vec<u64>, Error> {
        let [opened] = self.open_many([(mine, width)]).await?;
        Ok(opened)
    }

    /// Queues this server's shares `mine` of a value to open with the next exchange of any gate
    /// ([`ServerSide::take_opened`] gets it): a gate whose result is not needed at once saves
    /// its round.
    pub(crate) fn defer_open(&mut self, mine: Vec<u64>, width: BitWidth) -> usize {
        let ticket = self.riders.next;
        self.riders.next += 1;
        self.riders.waiting.push((ticket, mine, width));
        ticket
    }

    /// The value deferred under `ticket`, opened with a later exchange or, if none came, now
    /// (one round).
    pub(crate) async fn take_opened(&mut self, ticket: usize) -> Result<Vec<u64>, Error> {
        if self.riders.waiting.iter().any(|(t, ..)| *t == ticket) {
            self.open_many([]).await?;
        }
        let at = self
            .riders
            .opened
            .iter()
            .position(|(t, _)| *t == ticket)
            .ok_or(Error::ProtocolMisuse("a deferred opening taken twice"))?;
        Ok(self.riders.opened.swap_remove(at).1)
    }

    /// Opens two vectors of additive shares, of two widths, in one round (each packed apart:
    /// ⌈count·width/8⌉ bytes per vector each way).
    pub(crate) async fn open_two(
        &mut self,
        a: (&[u64], BitWidth),
        b: (&[u64], BitWidth),
    ) -> Result<(Vec<u64>, Vec<u64>), Error> {
        let [a, b] = self.open_many([a, b]).await?;
        Ok((a, b))
    }

    /// Opens N vectors of additive shares, each of its own width, in one round (each packed
    /// apart), e.g. the openings of gates that run side by side.
    pub(crate) async fn open_many<const N: usize>(
        &mut self,
        parts: [(&[u64], BitWidth); N],
    ) -> Result<[Vec<u64>; N], Error> {
        // Deferred openings ride first, in the order they were deferred.
        let riders = core::mem::take(&mut self.riders.waiting);
        let mut send = Vec::new();
        let mut rider_ends = Vec::with_capacity(riders.len());
        for (_, mine, width) in &riders {
            send.extend_from_slice(&pack(mine, *width));
            rider_ends.push(send.len());
        }
        let mut ends = [0usize; N];
        for (end, &(mine, width)) in ends.iter_mut().zip(&parts) {
            send.extend_from_slice(&pack(mine, width));
            *end = send.len();
        }
        let mut recv = vec![0u8; send.len()];
        self.channel.exchange(&send, &mut recv).await?;
        let mut start = 0;
        for ((ticket, mine, width), end) in riders.into_iter().zip(rider_ends) {
            let opened = add_to_theirs(&recv[start..end], &mine, width)?;
            self.riders.opened.push((ticket, opened));
            start = end;
        }
        let mut opened = [(); N].map(|()| Vec::new());
        for ((o, &end), &(mine, width)) in opened.iter_mut().zip(&ends).zip(&parts) {
            *o = add_to_theirs(&recv[start..end], mine, width)?;
            start = end;
        }
        Ok(opened)
    }
}

fn add_to_theirs(theirs: &[u8], mine: &[u64], width: BitWidth) -> Result<Vec<u64>, Error> {
    let mut opened = unpack(theirs, mine.len(), width)?;
    for (o, &a) in opened.iter_mut().zip(mine) {
        *o = width.add(*o, a);
    }
    Ok(opened)
}
