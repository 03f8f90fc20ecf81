//! The dealer: input-independent correlated randomness for the two servers, seed-compressed.
//!
//! From one master seed the dealer derives four AES-CTR streams: its private stream, a stream
//! it shares with P0 and one it shares with P1 (each server receives its seed once, see
//! [`Dealer::party_seed`]), and P0's stream for the linear layers' correlations (from P0's
//! seed, so that P0 can expand them ahead of the gates). Whatever can be pseudorandom for a server is drawn from that
//! server's stream, so it costs no communication; only values fixed by the other shares are
//! sent, and always to P1:
//!
//! | correlation | P0 gets | P1 gets |
//! |---|---|---|
//! | mask r with shares | its share, from its stream | its share, from its stream |
//! | chosen values v (e.g. masks of earlier wires) | its share, from its stream | v minus P0's share, sent |
//! | one-bit DPF key pair | root seed from its stream | root seed from its stream |
//! | a linear layer's shares of r_x and r_x·R_W | from its separate linear stream | sent (on the linear stream) |
//! | DPF or DCF key pair (features `dpf`, `dcf`) | root seed from its stream | root seed from its stream |
//! | Beaver triple (a, b, c = ab) (feature `triples`) | a0, b0, c0 from its stream | a1, b1 from its stream; c1 sent |
//! | matrix triple (A, B, C = AB) (feature `triples`) | A0, B0, C0 from its stream | A1, B1 from its stream; C1 sent |
//!
//! The gate engine uses the first four rows; the rest are optional features that no gate uses.
//!
//! FSS correction words are shared by both keys and must reach both servers. P1 holds them
//! anyway, so a runtime may deliver them to P0 directly or relay them through P1 without
//! either learning more; with the relay, the dealer's traffic to P0 is one seed.
//!
//! Servers replay the same sequence of calls on a [`PartyCorrelations`] built from their seed;
//! the order of calls is the protocol and both sides must follow it exactly.

use crate::Error;
use crate::fss::{BitDpf, BitDpfCorrections, Corrections, FssKey};
#[cfg(feature = "dcf")]
use crate::fss::{Dcf, DcfCorrections};
#[cfg(feature = "dpf")]
use crate::fss::{Dpf, DpfCorrections};
use crate::prg::{AesCtr, Domain, Seed};
use crate::ring::BitWidth;
use crate::share::Party;
use alloc::vec;
use alloc::vec::Vec;

/// The dealer's side: generates every correlation from a master seed.
pub struct Dealer {
    private: AesCtr,
    to_p0: AesCtr,
    to_p1: AesCtr,
    /// P0's stream for the linear layers' correlations (see [`Dealer::share_linear_values`]).
    linear_p0: AesCtr,
    bit_dpf: BitDpf,
    #[cfg(feature = "dpf")]
    dpf: Dpf,
    #[cfg(feature = "dcf")]
    dcf: Dcf,
}

impl core::fmt::Debug for Dealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Dealer(<secret>)")
    }
}

impl Dealer {
    /// The dealer for one session, from its master seed.
    pub fn new(master: &Seed) -> Self {
        Dealer {
            private: AesCtr::new(
                &master.derive(Domain::DEALER_PRIVATE, 0),
                Domain::DEALER_PRIVATE,
            ),
            to_p0: AesCtr::new(&Self::party_seed(master, Party::P0), Domain::DEALER_P0),
            to_p1: AesCtr::new(&Self::party_seed(master, Party::P1), Domain::DEALER_P1),
            linear_p0: AesCtr::new(&Self::party_seed(master, Party::P0), Domain::LINEAR),
            bit_dpf: BitDpf::new(),
            #[cfg(feature = "dpf")]
            dpf: Dpf::new(),
            #[cfg(feature = "dcf")]
            dcf: Dcf::new(),
        }
    }

    /// The seed the dealer hands `party` once per session (over an encrypted link).
    pub fn party_seed(master: &Seed, party: Party) -> Seed {
        match party {
            Party::P0 => master.derive(Domain::DEALER_P0, 0),
            Party::P1 => master.derive(Domain::DEALER_P1, 0),
        }
    }

    /// A uniformly random element of Z_2^64 only the dealer knows (e.g. an FSS key's α).
    pub fn private_u64(&mut self) -> u64 {
        self.private.next_u64()
    }

    /// Random masks r with both shares pseudorandom: r = PRG_P0 + PRG_P1. Writes r to `out`;
    /// nothing needs to be sent.
    pub fn masks(&mut self, out: &mut [u64]) {
        for r in out.iter_mut() {
            *r = self.to_p0.next_u64().wrapping_add(self.to_p1.next_u64());
        }
    }

    /// Values v in Z_2^width whose shares are both pseudorandom (v = PRG_P0 + PRG_P1): the
    /// dealer learns v, the servers draw their shares with
    /// [`PartyCorrelations::pseudorandom_shares`]; nothing is sent.
    pub fn pseudorandom_pair(&mut self, out: &mut [u64], width: BitWidth) {
        self.masks(out);
        out.iter_mut().for_each(|v| *v = width.reduce(*v));
    }

    /// Shares chosen values v in Z_2^width: P0's share is PRG_P0, P1's share v - PRG_P0 is
    /// returned (the correction to send to P1). Servers call
    /// [`PartyCorrelations::value_shares`].
    pub fn share_values(&mut self, v: &[u64], width: BitWidth) -> Vec<u64> {
        v.iter()
            .map(|&x| width.sub(x, self.to_p0.next_u64()))
            .collect()
    }

    /// [`Dealer::share_values`] on P0's separate linear stream: the linear layers' offline
    /// correlations, which a server expands ahead of the gates that use them. Servers call
    /// [`PartyCorrelations::linear_value_shares`].
    pub fn share_linear_values(&mut self, v: &[u64], width: BitWidth) -> Vec<u64> {
        v.iter()
            .map(|&x| width.sub(x, self.linear_p0.next_u64()))
            .collect()
    }

    /// One-bit DPF key pairs for the points α, generated together (see [`Dealer::bit_dpf`] for
    /// one; the roots are drawn in the same order). Appends the concatenated encodings of the
    /// corrections, which must reach both servers, to `out`, and P1's bit at each α (which stays
    /// with the dealer) to `p1_at_alpha`.
    pub fn bit_dpf_batch(
        &mut self,
        in_bits: BitWidth,
        alphas: &[u64],
        out: &mut Vec<u8>,
        p1_at_alpha: &mut Vec<bool>,
    ) -> Result<(), Error> {
        let roots: Vec<[u128; 2]> = alphas
            .iter()
            .map(|_| [self.to_p0.next_u128(), self.to_p1.next_u128()])
            .collect();
        self.bit_dpf
            .gen_encoded(in_bits, alphas, &roots, out, p1_at_alpha)
    }

    /// A one-bit DPF key pair for the point α (see [`BitDpf::gen_corrections`]); the roots come
    /// from the party streams, the returned corrections must reach both servers, and the
    /// returned bit (P1's output at α) stays with the dealer.
    pub fn bit_dpf(
        &mut self,
        in_bits: BitWidth,
        alpha: u64,
    ) -> Result<(BitDpfCorrections, bool), Error> {
        let roots = [self.to_p0.next_u128(), self.to_p1.next_u128()];
        self.bit_dpf.gen_corrections(in_bits, alpha, roots)
    }
}

#[cfg(feature = "dpf")]
impl Dealer {
    /// A DPF key pair for β at α (widths as in [`Dpf::gen_corrections`]); the roots come from
    /// the party streams, the returned corrections must reach both servers.
    pub fn dpf(
        &mut self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alpha: u64,
        beta: u64,
    ) -> Result<DpfCorrections, Error> {
        let roots = [self.to_p0.next_u128(), self.to_p1.next_u128()];
        self.dpf
            .gen_corrections(in_bits, out_bits, alpha, beta, roots)
    }
}

#[cfg(feature = "dcf")]
impl Dealer {
    /// A DCF key pair for β if x < α, else 0; the roots come from the party streams, the returned
    /// corrections must reach both servers.
    pub fn dcf(
        &mut self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alpha: u64,
        beta: u64,
    ) -> Result<DcfCorrections, Error> {
        let roots = [self.to_p0.next_u128(), self.to_p1.next_u128()];
        self.dcf
            .gen_corrections(in_bits, out_bits, alpha, beta, roots)
    }

    /// DCF key pairs for β if x < α, one per α, generated together (much faster than one
    /// [`Dealer::dcf`] call each); the roots come from the party streams in the same order as
    /// that many [`Dealer::dcf`] calls would draw them. Appends the concatenated canonical
    /// encodings of the corrections, which must reach both servers, to `out`.
    pub fn dcf_batch(
        &mut self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alphas: &[u64],
        beta: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let roots: Vec<[u128; 2]> = alphas
            .iter()
            .map(|_| [self.to_p0.next_u128(), self.to_p1.next_u128()])
            .collect();
        self.dcf
            .gen_encoded(in_bits, out_bits, alphas, beta, &roots, out)
    }
}

#[cfg(feature = "triples")]
impl Dealer {
    /// `count` Beaver triples; returns P1's c-shares, the only data to send.
    pub fn beaver_triples(&mut self, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| {
                let (a0, b0, c0) = (
                    self.to_p0.next_u64(),
                    self.to_p0.next_u64(),
                    self.to_p0.next_u64(),
                );
                let (a1, b1) = (self.to_p1.next_u64(), self.to_p1.next_u64());
                a0.wrapping_add(a1)
                    .wrapping_mul(b0.wrapping_add(b1))
                    .wrapping_sub(c0)
            })
            .collect()
    }

    /// A matrix triple of shape (m×k)·(k×n); returns P1's C-share (m·n words), the only data to
    /// send. Costs m·k + k·n + m·n words of stream per party instead of m·k·n Beaver triples.
    pub fn matrix_triple(&mut self, m: usize, k: usize, n: usize) -> Vec<u64> {
        let mut a = vec![0u64; m * k];
        let mut b = vec![0u64; k * n];
        let mut c0 = vec![0u64; m * n];
        self.to_p0.fill_u64(&mut a);
        self.to_p0.fill_u64(&mut b);
        self.to_p0.fill_u64(&mut c0);
        add_stream(&mut self.to_p1, &mut a);
        add_stream(&mut self.to_p1, &mut b);
        let mut c1 = vec![0u64; m * n];
        crate::ring::matmul(&a, &b, m, k, n, &mut c1);
        for (x, c) in c1.iter_mut().zip(&c0) {
            *x = x.wrapping_sub(*c);
        }
        c1
    }
}

#[cfg(feature = "triples")]
fn add_stream(stream: &mut AesCtr, xs: &mut [u64]) {
    for x in xs.iter_mut() {
        *x = x.wrapping_add(stream.next_u64());
    }
}

/// A server's side: expands its correlations from the seed the dealer gave it, in the same
/// order as the dealer's calls, combining them with the corrections it receives.
pub struct PartyCorrelations {
    party: Party,
    stream: AesCtr,
    linear: AesCtr,
}

impl core::fmt::Debug for PartyCorrelations {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PartyCorrelations")
            .field("party", &self.party)
            .finish_non_exhaustive()
    }
}

impl PartyCorrelations {
    /// `party`'s expander from the seed the dealer sent it.
    pub fn new(party: Party, seed: &Seed) -> Self {
        let domain = match party {
            Party::P0 => Domain::DEALER_P0,
            Party::P1 => Domain::DEALER_P1,
        };
        PartyCorrelations {
            party,
            stream: AesCtr::new(seed, domain),
            linear: AesCtr::new(seed, Domain::LINEAR),
        }
    }

    /// Which server this is.
    pub fn party(&self) -> Party {
        self.party
    }

    /// This party's shares of the masks of [`Dealer::masks`].
    pub fn mask_shares(&mut self, out: &mut [u64]) {
        self.stream.fill_u64(out);
    }

    /// This party's shares of [`Dealer::pseudorandom_pair`] values, in Z_2^width.
    pub fn pseudorandom_shares(&mut self, out: &mut [u64], width: BitWidth) {
        self.stream.fill_u64(out);
        out.iter_mut().for_each(|v| *v = width.reduce(*v));
    }

    /// This party's shares of [`Dealer::share_values`] values in Z_2^width: P0 draws `count`
    /// words from its stream (passing `None`), P1 passes the correction it received.
    pub fn value_shares(
        &mut self,
        count: usize,
        width: BitWidth,
        p1_correction: Option<&[u64]>,
    ) -> Result<Vec<u64>, Error> {
        let correction = self.expect_correction(p1_correction, count)?;
        Ok(shares_from(&mut self.stream, correction, count, width))
    }

    /// This party's shares of [`Dealer::share_linear_values`] values, as
    /// [`PartyCorrelations::value_shares`] does for [`Dealer::share_values`].
    pub fn linear_value_shares(
        &mut self,
        count: usize,
        width: BitWidth,
        p1_correction: Option<&[u64]>,
    ) -> Result<Vec<u64>, Error> {
        let correction = self.expect_correction(p1_correction, count)?;
        Ok(shares_from(&mut self.linear, correction, count, width))
    }

    /// This party's FSS key: its root from the stream, the shared corrections as received.
    pub fn fss_key<C: Corrections>(&mut self, corrections: C) -> FssKey<C> {
        FssKey::new(self.party, self.fss_root(), corrections)
    }

    /// The root of this party's next FSS key (what [`PartyCorrelations::fss_key`] uses).
    pub fn fss_root(&mut self) -> u128 {
        self.stream.next_u128()
    }

    /// The roots of this party's next `out.len()` keys, in order (as many
    /// [`PartyCorrelations::fss_root`] calls).
    pub fn fss_roots(&mut self, out: &mut [u128]) {
        self.stream.fill_u128(out);
    }

    /// P1 must bring exactly `len` words from the dealer; P0 must bring none.
    fn expect_correction<'a>(
        &self,
        correction: Option<&'a [u64]>,
        len: usize,
    ) -> Result<Option<&'a [u64]>, Error> {
        match (self.party, correction) {
            (Party::P0, None) => Ok(None),
            (Party::P0, Some(_)) => Err(Error::ProtocolMisuse(
                "P0 expands its shares from its seed and takes no correction",
            )),
            (Party::P1, None) => Err(Error::ProtocolMisuse(
                "P1 needs the dealer's correction for this correlation",
            )),
            (Party::P1, Some(c)) if c.len() != len => Err(Error::LengthMismatch {
                expected: len,
                got: c.len(),
            }),
            (Party::P1, Some(c)) => Ok(Some(c)),
        }
    }
}

/// Beaver triples held by one party: a, b, c with (a0 + a1)(b0 + b1) = c0 + c1 element-wise.
#[cfg(feature = "triples")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaverShares {
    /// Share of a.
    pub a: Vec<u64>,
    /// Share of b.
    pub b: Vec<u64>,
    /// Share of c = a·b.
    pub c: Vec<u64>,
}

/// A matrix triple held by one party: A (m×k), B (k×n), C = A·B (m×n), all row-major shares.
#[cfg(feature = "triples")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixTripleShares {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Share of A.
    pub a: Vec<u64>,
    /// Share of B.
    pub b: Vec<u64>,
    /// Share of C.
    pub c: Vec<u64>,
}

#[cfg(feature = "triples")]
impl PartyCorrelations {
    /// This party's Beaver triples. P0 passes `None`; P1 passes the c-shares it received,
    /// whose length must be `count`.
    pub fn beaver_triples(
        &mut self,
        count: usize,
        p1_c: Option<&[u64]>,
    ) -> Result<BeaverShares, Error> {
        let c_from_dealer = self.expect_correction(p1_c, count)?;
        let mut a = Vec::with_capacity(count);
        let mut b = Vec::with_capacity(count);
        let mut c = Vec::with_capacity(count);
        for _ in 0..count {
            a.push(self.stream.next_u64());
            b.push(self.stream.next_u64());
            if c_from_dealer.is_none() {
                c.push(self.stream.next_u64());
            }
        }
        if let Some(c1) = c_from_dealer {
            c.extend_from_slice(c1);
        }
        Ok(BeaverShares { a, b, c })
    }

    /// This party's shares of a matrix triple of shape (m×k)·(k×n). P0 passes `None`; P1 passes
    /// the C-share it received (m·n words).
    pub fn matrix_triple(
        &mut self,
        m: usize,
        k: usize,
        n: usize,
        p1_c: Option<&[u64]>,
    ) -> Result<MatrixTripleShares, Error> {
        let c_from_dealer = self.expect_correction(p1_c, m * n)?;
        let mut a = vec![0u64; m * k];
        let mut b = vec![0u64; k * n];
        self.stream.fill_u64(&mut a);
        self.stream.fill_u64(&mut b);
        let c = match c_from_dealer {
            Some(c1) => c1.to_vec(),
            None => {
                let mut c0 = vec![0u64; m * n];
                self.stream.fill_u64(&mut c0);
                c0
            }
        };
        Ok(MatrixTripleShares { m, k, n, a, b, c })
    }
}

/// A party's shares of values the dealer shared: P1's are the correction it received, P0's
/// are drawn from `stream`, in Z_2^width.
fn shares_from(
    stream: &mut AesCtr,
    correction: Option<&[u64]>,
    count: usize,
    width: BitWidth,
) -> Vec<u64> {
    match correction {
        Some(c) => c.to_vec(),
        None => {
            let mut v = vec![0u64; count];
            stream.fill_u64(&mut v);
            v.iter_mut().for_each(|x| *x = width.reduce(*x));
            v
        }
    }
}
