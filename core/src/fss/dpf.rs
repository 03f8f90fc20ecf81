//! Distributed point functions (Boyle–Gilboa–Ishai, CCS 2016, Fig. 1 for a general group),
//! behind the `dpf` feature: no gate uses them (lookups use [`super::bit_dpf`]).
//!
//! Both parties walk the same GGM tree from their root seeds along the bits of x. Off the
//! path to α the correction words make their seeds and control bits equal, so their outputs
//! cancel; on the path the control bits differ and the final correction turns the difference
//! into β.

use super::encoding::{Reader, Writer, control_bytes, word_bytes};
use super::key::{Corrections, FssKey};
use super::tree::{Path, expand_level, gen_path, random_u128, walk};
use super::{check_full_domain, check_in_ring, cond_neg, convert};
use crate::Error;
use crate::prg::Ggm;
use crate::ring::BitWidth;
use crate::share::Party;

/// One party's DPF key: its root seed and the shared corrections.
pub type DpfKey = FssKey<DpfCorrections>;
use alloc::vec;
use alloc::vec::Vec;

/// The part of a DPF key pair that both keys share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpfCorrections {
    in_bits: BitWidth,
    out_bits: BitWidth,
    seeds: Vec<u128>,
    controls: Vec<[bool; 2]>,
    last: u64,
}

impl DpfCorrections {
    /// Appends the canonical encoding (see `encoding`).
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.in_bits.bits() as u8);
        w.u8(self.out_bits.bits() as u8);
        for &s in &self.seeds {
            w.u128(s);
        }
        w.control_bits(&self.controls);
        w.word(self.last, self.out_bits);
    }

    /// Parses the canonical encoding, checking every field.
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let in_bits = r.width("input bit-width must be in 1..=64")?;
        let out_bits = r.width("output bit-width must be in 1..=64")?;
        let n = in_bits.bits() as usize;
        let mut seeds = Vec::with_capacity(n);
        r.seed_words_into(n, &mut seeds)?;
        let controls = r.control_bits(n)?;
        let last = r.word(out_bits, "truncated before the final correction")?;
        Ok(DpfCorrections {
            in_bits,
            out_bits,
            seeds,
            controls,
            last,
        })
    }
}

#[cfg(feature = "serde")]
super::encoding::serde_via_bytes!(
    DpfCorrections,
    "DPF corrections in their canonical encoding"
);

impl Corrections for DpfCorrections {
    fn in_bits(&self) -> BitWidth {
        self.in_bits
    }

    /// Output bit-width l.
    fn out_bits(&self) -> BitWidth {
        self.out_bits
    }

    /// Encoded size in bytes for widths n and l.
    fn encoded_len(in_bits: BitWidth, out_bits: BitWidth) -> usize {
        let n = in_bits.bits() as usize;
        2 + 16 * n + control_bytes(n) + word_bytes(out_bits)
    }

    /// The canonical byte encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::encoded_len(self.in_bits, self.out_bits));
        self.write(&mut Writer(&mut v));
        v
    }

    /// Decodes and checks the canonical encoding.
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let c = Self::read(&mut r)?;
        r.finish()?;
        Ok(c)
    }
}

/// The DPF scheme: holds the GGM PRG's key schedules; create once, use for many keys.
#[derive(Debug, Default)]
pub struct Dpf {
    ggm: Ggm,
}

impl Dpf {
    /// A DPF scheme instance.
    pub fn new() -> Self {
        Dpf { ggm: Ggm::new() }
    }

    /// Key generation for f(x) = β if x = α else 0, from the two parties' root seeds.
    ///
    /// α must be in Z_2^n and β in Z_2^l. Roots must be independent uniform seeds; the dealer
    /// draws them from the streams it shares with each party. Runs without branching on α.
    pub fn gen_corrections(
        &self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alpha: u64,
        beta: u64,
        roots: [u128; 2],
    ) -> Result<DpfCorrections, Error> {
        check_in_ring(alpha, in_bits)?;
        check_in_ring(beta, out_bits)?;
        let Path {
            seeds,
            controls,
            s,
            t,
        } = gen_path(&self.ggm, in_bits.bits(), alpha, roots);
        let diff = beta
            .wrapping_sub(convert(s[0], out_bits))
            .wrapping_add(convert(s[1], out_bits));
        let last = out_bits.reduce(cond_neg(diff, t[1]));
        Ok(DpfCorrections {
            in_bits,
            out_bits,
            seeds,
            controls,
            last,
        })
    }

    /// Key generation with fresh root seeds from `rng`; returns (P0's key, P1's key).
    pub fn gen_keys<R: rand_core::CryptoRng + ?Sized>(
        &self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alpha: u64,
        beta: u64,
        rng: &mut R,
    ) -> Result<(DpfKey, DpfKey), Error> {
        let roots = [random_u128(rng), random_u128(rng)];
        let c = self.gen_corrections(in_bits, out_bits, alpha, beta, roots)?;
        Ok((
            DpfKey::new(Party::P0, roots[0], c.clone()),
            DpfKey::new(Party::P1, roots[1], c),
        ))
    }

    /// This party's share of f(x), for x in Z_2^n.
    pub fn eval(&self, key: &DpfKey, x: u64) -> Result<u64, Error> {
        let c = &key.corrections;
        check_in_ring(x, c.in_bits)?;
        let (s, t) = walk(&self.ggm, key, &c.seeds, &c.controls, x, c.in_bits.bits());
        Ok(leaf_output(key, s, t))
    }

    /// This party's shares of f(x) for every x in Z_2^n, in order of x (n ≤ 20).
    pub fn eval_full_domain(&self, key: &DpfKey) -> Result<Vec<u64>, Error> {
        let c = &key.corrections;
        let size = check_full_domain(c.in_bits)?;
        // Level by level, all nodes of a level through one batched AES pass per direction.
        let mut seeds = Vec::with_capacity(size);
        let mut bits = Vec::with_capacity(size);
        seeds.push(key.root);
        bits.push(key.party == Party::P1);
        let (mut left, mut right) = (vec![0u128; size / 2], vec![0u128; size / 2]);
        let (mut next_seeds, mut next_bits) = (Vec::with_capacity(size), Vec::with_capacity(size));
        for i in 0..c.in_bits.bits() as usize {
            let width = seeds.len();
            expand_level(
                &self.ggm,
                &seeds,
                &bits,
                |_| (c.seeds[i], c.controls[i]),
                (&mut left[..width], &mut right[..width]),
                (&mut next_seeds, &mut next_bits),
            );
            core::mem::swap(&mut seeds, &mut next_seeds);
            core::mem::swap(&mut bits, &mut next_bits);
        }
        Ok(seeds
            .iter()
            .zip(&bits)
            .map(|(&s, &t)| leaf_output(key, s, t))
            .collect())
    }
}

/// (-1)^b · (Convert(s) + t · CW_{n+1}) in Z_2^l.
fn leaf_output(key: &DpfKey, s: u128, t: bool) -> u64 {
    let c = &key.corrections;
    let v = convert(s, c.out_bits).wrapping_add(c.last & super::mask64(t));
    c.out_bits.reduce(cond_neg(v, key.party == Party::P1))
}
