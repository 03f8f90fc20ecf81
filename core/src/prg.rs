//! Pseudorandom generators built on AES-128 (hardware AES where the CPU has it, through the
//! `aes` crate's runtime detection; the constant-time bitsliced software AES elsewhere).
//!
//! Two generators live here:
//! - [`AesCtr`]: AES-128 in counter mode keyed by a [`Seed`], with a [`Domain`] in the nonce
//!   half of the counter block, so one seed yields independent streams for different purposes
//!   (shares, dealer correlations, ...). It implements rand_core 0.10's `TryRng` and
//!   `TryCryptoRng` (so `Rng` and `CryptoRng`), but not `SeedableRng` (see [`AesCtr`]).
//! - [`Ggm`]: the length-doubling PRG of a GGM tree used by the FSS schemes, as fixed-key AES in
//!   Matyas–Meyer–Oseas mode, G_k(s) = AES_k(s) xor s, with one fixed public key per output
//!   part (left child, right child, values).

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use core::convert::Infallible;
use subtle::{Choice, ConstantTimeEq};

/// A 128-bit seed. `Debug` never prints the bytes.
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Seed([u8; 16]);

/// Compares all 16 bytes whatever they hold, through `subtle`, which combines the byte
/// comparisons without branches and hides the result from the optimiser until the end: the
/// time taken says nothing about where two seeds differ.
impl ConstantTimeEq for Seed {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

/// `==` on seeds is [`subtle::ConstantTimeEq`]: a derived comparison could stop at the first
/// differing byte and leak a secret seed's prefix through timing.
impl PartialEq for Seed {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Seed {}

impl core::fmt::Debug for Seed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Seed(<secret>)")
    }
}

impl Seed {
    /// Length of a seed in bytes.
    pub const LEN: usize = 16;

    /// A seed from raw bytes (which must be uniformly random and secret).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Seed(bytes)
    }

    /// The raw bytes of the seed.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Draws a fresh seed from a cryptographic RNG.
    pub fn random<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Seed(bytes)
    }

    /// Derives an independent child seed for `domain` and `index`.
    ///
    /// The child is AES_seed(domain || index | 2^63); counter-mode streams only use counters
    /// below 2^63, so derived seeds never coincide with stream blocks of the same seed.
    pub fn derive(&self, domain: Domain, index: u64) -> Seed {
        let cipher = Aes128::new(&self.0.into());
        let mut block = counter_block(domain, (index & !DERIVE_BIT) | DERIVE_BIT);
        cipher.encrypt_block(&mut block);
        Seed(block.into())
    }
}

impl Seed {
    /// A pseudorandom function on 16-byte inputs: AES_seed(input), e.g. a per-session seed from
    /// a long-term secret and a session id. The seed must be reserved for this use: no
    /// [`AesCtr`] stream or [`Seed::derive`] may use it too, since their blocks share the
    /// input space.
    pub fn prf(&self, input: &[u8; 16]) -> Seed {
        let cipher = Aes128::new(&self.0.into());
        let mut block: aes::Block = (*input).into();
        cipher.encrypt_block(&mut block);
        Seed(block.into())
    }
}

const DERIVE_BIT: u64 = 1 << 63;

/// A domain-separation tag: streams and derived seeds with different domains are independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Domain(pub u64);

impl Domain {
    /// P0's additive share of a client input, expanded from the client's seed.
    pub const INPUT_SHARE: Domain = Domain(0x5348_4152_455f_494e); // "SHARE_IN"
    /// The dealer's private randomness (masks it alone knows).
    pub const DEALER_PRIVATE: Domain = Domain(0x4445_414c_5f50_5256); // "DEAL_PRV"
    /// The stream the dealer shares with server P0.
    pub const DEALER_P0: Domain = Domain(0x4445_414c_5f50_3030); // "DEAL_P00"
    /// The stream the dealer shares with server P1.
    pub const DEALER_P1: Domain = Domain(0x4445_414c_5f50_3031); // "DEAL_P01"
    /// A model's weight mask and P1's share of it, expanded from the deployment seed.
    pub const WEIGHTS: Domain = Domain(0x5745_4947_4854_5331); // "WEIGHTS1"
    /// P0's shares of the linear layers' offline correlations, a stream of their own so that a
    /// server can expand them ahead of the online phase.
    pub const LINEAR: Domain = Domain(0x4c49_4e45_4152_5f30); // "LINEAR_0"
    /// Key derivation inside oblivious transfer.
    pub const OT: Domain = Domain(0x4f54_5f4b_4559_5330); // "OT_KEYS0"
}

fn counter_block(domain: Domain, counter: u64) -> aes::Block {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&domain.0.to_le_bytes());
    b[8..].copy_from_slice(&counter.to_le_bytes());
    b.into()
}

/// Blocks generated per AES call: enough to keep VAES pipelines (4 blocks per instruction)
/// full on x86-64; elsewhere 8, so that a constrained device's stream stays small (its
/// software AES gains nothing from longer batches).
#[cfg(target_arch = "x86_64")]
const CTR_BATCH: usize = 32;
#[cfg(not(target_arch = "x86_64"))]
const CTR_BATCH: usize = 8;

/// AES-128 in counter mode: block i of the stream is AES_seed(domain || i).
///
/// Deterministic for a given seed and domain, so two parties holding the same seed expand the
/// same stream; this is how P0's shares and P0's dealer correlations travel as a seed only.
///
/// It is built from a [`Seed`] only. It does not implement rand_core's `SeedableRng`, whose
/// provided `seed_from_u64` would key it with a 64-bit number expanded by a non-cryptographic
/// PCG: a generator anyone can brute-force, looking like a cryptographic one. Tests that want
/// a fixed stream name their seed's bytes (`Seed::from_bytes([7; 16])`).
///
/// ```compile_fail,E0599
/// use rand_core::SeedableRng;
/// let _ = securerouter_core::prg::AesCtr::seed_from_u64(7);
/// ```
pub struct AesCtr {
    cipher: Aes128,
    domain: Domain,
    next_counter: u64,
    buf: [aes::Block; CTR_BATCH],
    /// Bytes of `buf` already handed out.
    used: usize,
}

impl core::fmt::Debug for AesCtr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AesCtr")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl AesCtr {
    /// The stream of `seed` under `domain`.
    pub fn new(seed: &Seed, domain: Domain) -> Self {
        AesCtr {
            cipher: Aes128::new(&seed.0.into()),
            domain,
            next_counter: 0,
            buf: [aes::Block::default(); CTR_BATCH],
            used: CTR_BATCH * 16,
        }
    }

    fn refill(&mut self) {
        for (i, b) in self.buf.iter_mut().enumerate() {
            *b = counter_block(self.domain, self.next_counter + i as u64);
        }
        // 2^63 blocks is 2^67 bytes: no stream ever gets there, and derived seeds live above.
        self.next_counter += CTR_BATCH as u64;
        debug_assert!(self.next_counter < DERIVE_BIT);
        self.cipher.encrypt_blocks(&mut self.buf);
        self.used = 0;
    }

    /// Fills `dst` with the next bytes of the stream.
    pub fn fill(&mut self, mut dst: &mut [u8]) {
        while !dst.is_empty() {
            if self.used == CTR_BATCH * 16 {
                self.refill();
            }
            let bytes = aes::Block::slice_as_flattened(&self.buf);
            let n = (bytes.len() - self.used).min(dst.len());
            dst[..n].copy_from_slice(&bytes[self.used..self.used + n]);
            self.used += n;
            dst = &mut dst[n..];
        }
    }

    /// The next 64-bit word of the stream (little-endian bytes).
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// The next 128-bit block of the stream.
    pub fn next_u128(&mut self) -> u128 {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        u128::from_le_bytes(b)
    }

    /// The next bit of the stream (one byte consumed per bit).
    pub fn next_bit(&mut self) -> bool {
        let mut b = [0u8; 1];
        self.fill(&mut b);
        b[0] & 1 == 1
    }

    /// The next seed drawn from the stream.
    pub fn next_seed(&mut self) -> Seed {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        Seed(b)
    }

    /// Fills `out` with the next 128-bit blocks, in order: what as many
    /// [`AesCtr::next_u128`] calls give, without a copy call per block.
    pub fn fill_u128(&mut self, out: &mut [u128]) {
        let mut bytes = [0u8; CTR_BATCH * 16];
        for chunk in out.chunks_mut(CTR_BATCH) {
            let bytes = &mut bytes[..chunk.len() * 16];
            self.fill(bytes);
            for (o, b) in chunk.iter_mut().zip(bytes.chunks_exact(16)) {
                let mut block = [0u8; 16];
                block.copy_from_slice(b);
                *o = u128::from_le_bytes(block);
            }
        }
    }

    /// Fills `out` with uniform words (each word is the next 8 stream bytes, little-endian).
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        let mut bytes = [0u8; CTR_BATCH * 16];
        for chunk in out.chunks_mut(CTR_BATCH * 2) {
            let bytes = &mut bytes[..chunk.len() * 8];
            self.fill(bytes);
            for (o, b) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut word = [0u8; 8];
                word.copy_from_slice(b);
                *o = u64::from_le_bytes(word);
            }
        }
    }
}

impl rand_core::TryRng for AesCtr {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for AesCtr {}

/// One node's expansion in a GGM tree: two child seeds with their control bits, and two
/// pseudorandom words used as value shares by DCF.
#[cfg(feature = "dcf")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Expansion {
    /// Child seeds (left, right); the low bit is cleared (it became the control bit).
    pub seeds: [u128; 2],
    /// Control bits (left, right).
    pub bits: [bool; 2],
    /// Value words (left, right).
    pub values: [u64; 2],
}

/// The length-doubling PRG of the GGM tree behind the FSS schemes.
///
/// Child d ∈ {left, right} of seed s is MMO_{k_d}(s) = AES_{k_d}(s) xor s with a fixed public
/// key k_d; its low bit is the control bit t and is then cleared. The node's value words come
/// from MMO_{k_v}(s). Fixed-key AES in this mode is the standard instantiation (correlation-
/// robust hash in the ideal-cipher model), as in SIGMA, Orca and libfss.
pub struct Ggm {
    keys: [Aes128; 3],
}

impl core::fmt::Debug for Ggm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ggm")
    }
}

impl Default for Ggm {
    fn default() -> Self {
        Self::new()
    }
}

/// Public, fixed AES keys of the GGM PRG (nothing-up-my-sleeve: ASCII labels), in the order
/// left child, right child, value words. Public so that other backends (the GPU) use the same.
pub const GGM_KEYS: [[u8; 16]; 3] = [
    *b"SecureRouterGGML",
    *b"SecureRouterGGMR",
    *b"SecureRouterGGMV",
];

const LEFT: usize = 0;
const RIGHT: usize = 1;
const VALUE: usize = 2;

#[inline]
fn mmo(cipher: &Aes128, s: u128) -> u128 {
    let mut block: aes::Block = s.to_le_bytes().into();
    cipher.encrypt_block(&mut block);
    u128::from_le_bytes(block.into()) ^ s
}

#[inline]
fn split_control_bit(x: u128) -> (u128, bool) {
    (x & !1, x & 1 == 1)
}

impl Ggm {
    /// Schedules the three fixed keys.
    pub fn new() -> Self {
        Ggm {
            keys: [
                Aes128::new(&GGM_KEYS[0].into()),
                Aes128::new(&GGM_KEYS[1].into()),
                Aes128::new(&GGM_KEYS[2].into()),
            ],
        }
    }

    /// Both children and both value words of `seed` (what DCF key generation needs).
    #[cfg(feature = "dcf")]
    pub fn expand(&self, seed: u128) -> Expansion {
        let (l, tl) = split_control_bit(mmo(&self.keys[LEFT], seed));
        let (r, tr) = split_control_bit(mmo(&self.keys[RIGHT], seed));
        let v = mmo(&self.keys[VALUE], seed);
        Expansion {
            seeds: [l, r],
            bits: [tl, tr],
            values: [v as u64, (v >> 64) as u64],
        }
    }

    /// Both children without value words (DPF needs no values).
    pub fn children(&self, seed: u128) -> ([u128; 2], [bool; 2]) {
        let (l, tl) = split_control_bit(mmo(&self.keys[LEFT], seed));
        let (r, tr) = split_control_bit(mmo(&self.keys[RIGHT], seed));
        ([l, r], [tl, tr])
    }

    /// The child of `seed` in direction `right` and its control bit (one AES).
    #[inline]
    pub fn child(&self, seed: u128, right: bool) -> (u128, bool) {
        let key = if right { RIGHT } else { LEFT };
        split_control_bit(mmo(&self.keys[key], seed))
    }

    /// MMO under one fixed key for a batch of seeds: `out[i] = AES_k(seeds[i]) ⊕ seeds[i]`.
    /// Batches let AES-NI pipeline many blocks, several times faster than one at a time.
    fn mmo_batch(&self, key: usize, seeds: &[u128], out: &mut [u128]) {
        const CHUNK: usize = 128;
        let mut buf = [aes::Block::default(); CHUNK];
        for (src, dst) in seeds.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let blocks = &mut buf[..src.len()];
            // Through the array's public field: the `From` conversions are not inlined and
            // cost more than the AES itself.
            for (b, &s) in blocks.iter_mut().zip(src) {
                b.0 = s.to_le_bytes();
            }
            self.keys[key].encrypt_blocks(blocks);
            for ((d, b), &s) in dst.iter_mut().zip(blocks.iter()).zip(src) {
                *d = u128::from_le_bytes(b.0) ^ s;
            }
        }
    }

    /// [`Ggm::expand`] of every seed, through one batched AES pass per fixed key.
    #[cfg(feature = "dcf")]
    pub fn expand_batch(&self, seeds: &[u128], out: &mut [Expansion]) {
        const CHUNK: usize = 64;
        let (mut l, mut r, mut v) = ([0u128; CHUNK], [0u128; CHUNK], [0u128; CHUNK]);
        for (src, dst) in seeds.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let m = src.len();
            self.mmo_batch(LEFT, src, &mut l[..m]);
            self.mmo_batch(RIGHT, src, &mut r[..m]);
            self.mmo_batch(VALUE, src, &mut v[..m]);
            for (k, e) in dst.iter_mut().enumerate() {
                let (ls, lt) = split_control_bit(l[k]);
                let (rs, rt) = split_control_bit(r[k]);
                *e = Expansion {
                    seeds: [ls, rs],
                    bits: [lt, rt],
                    values: [v[k] as u64, (v[k] >> 64) as u64],
                };
            }
        }
    }

    /// Children of many seeds at once: `left[i]`, `right[i]` (control bits still in the low
    /// bit; split them with [`Ggm::split_control_bit`]).
    pub fn children_batch(&self, seeds: &[u128], left: &mut [u128], right: &mut [u128]) {
        self.mmo_batch(LEFT, seeds, left);
        self.mmo_batch(RIGHT, seeds, right);
    }

    /// Raw value blocks of many seeds (low half: left value, high half: right value).
    pub fn values_batch(&self, seeds: &[u128], out: &mut [u128]) {
        self.mmo_batch(VALUE, seeds, out);
    }

    /// Children in the given directions for many seeds: `out[i]` is child `right[i]` of
    /// `seeds[i]`, control bit still in the low bit. One batched AES pass per direction.
    pub fn child_batch(&self, seeds: &[u128], right: &[bool], out: &mut [u128]) {
        const CHUNK: usize = 128;
        let mut gathered = [0u128; CHUNK];
        let mut result = [0u128; CHUNK];
        let mut index = [0usize; CHUNK];
        for base in (0..seeds.len()).step_by(CHUNK) {
            let end = (base + CHUNK).min(seeds.len());
            for dir in [false, true] {
                let mut m = 0;
                for i in base..end {
                    if right[i] == dir {
                        gathered[m] = seeds[i];
                        index[m] = i;
                        m += 1;
                    }
                }
                let key = if dir { RIGHT } else { LEFT };
                self.mmo_batch(key, &gathered[..m], &mut result[..m]);
                for j in 0..m {
                    out[index[j]] = result[j];
                }
            }
        }
    }

    /// Splits a raw child block into (seed with the low bit cleared, control bit).
    #[inline]
    pub fn split_control_bit(block: u128) -> (u128, bool) {
        split_control_bit(block)
    }

    /// The value word of `seed` in direction `right` (one AES).
    #[cfg(feature = "dcf")]
    #[inline]
    pub fn value(&self, seed: u128, right: bool) -> u64 {
        let v = mmo(&self.keys[VALUE], seed);
        if right { (v >> 64) as u64 } else { v as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn ctr_is_deterministic_and_domain_separated() {
        let seed = Seed::from_bytes([7; 16]);
        let mut a = AesCtr::new(&seed, Domain::DEALER_P0);
        let mut b = AesCtr::new(&seed, Domain::DEALER_P0);
        let mut c = AesCtr::new(&seed, Domain::DEALER_P1);
        let xa: [u64; 40] = core::array::from_fn(|_| a.next_u64());
        let xb: [u64; 40] = core::array::from_fn(|_| b.next_u64());
        let xc: [u64; 40] = core::array::from_fn(|_| c.next_u64());
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn batched_reads_take_the_stream_in_order() {
        // fill_u64 and fill_u128 (across a refill, after an odd byte) read what the one-word
        // calls read.
        let seed = Seed::from_bytes([9; 16]);
        let (mut a, mut b) = (AesCtr::new(&seed, Domain(5)), AesCtr::new(&seed, Domain(5)));
        let _ = (a.next_bit(), b.next_bit());
        let mut words = [0u64; 3 * CTR_BATCH + 5];
        let mut blocks = [0u128; 2 * CTR_BATCH + 3];
        a.fill_u64(&mut words);
        a.fill_u128(&mut blocks);
        assert!(words.iter().all(|&w| w == b.next_u64()));
        assert!(blocks.iter().all(|&x| x == b.next_u128()));
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn ctr_matches_block_definition_across_odd_reads() {
        // Reading in odd-sized pieces gives the same bytes as the block definition.
        let seed = Seed::from_bytes(*b"0123456789abcdef");
        let mut s = AesCtr::new(&seed, Domain(3));
        let mut got = [0u8; 16 * 20];
        let mut off = 0;
        for step in [1usize, 3, 7, 16, 29, 64, 100].iter().cycle() {
            if off == got.len() {
                break;
            }
            let n = (*step).min(got.len() - off);
            s.fill_bytes(&mut got[off..off + n]);
            off += n;
        }
        let cipher = Aes128::new(&seed.0.into());
        for i in 0..20 {
            let mut b = counter_block(Domain(3), i as u64);
            cipher.encrypt_block(&mut b);
            assert_eq!(&got[i * 16..i * 16 + 16], &b[..]);
        }
    }

    #[test]
    fn seeds_compare_equal_exactly_when_every_byte_matches() {
        let a = Seed::from_bytes(*b"0123456789abcdef");
        assert_eq!(a, a.clone());
        assert!(bool::from(a.ct_eq(&a.clone())));
        for i in 0..Seed::LEN {
            for flip in [0x01, 0x80] {
                let mut bytes = *a.as_bytes();
                bytes[i] ^= flip;
                let b = Seed::from_bytes(bytes);
                assert_ne!(a, b, "byte {i}");
                assert!(!bool::from(a.ct_eq(&b)), "byte {i}");
            }
        }
    }

    #[test]
    fn derived_seeds_differ_by_domain_and_index() {
        let seed = Seed::from_bytes([1; 16]);
        let a = seed.derive(Domain(1), 0);
        assert_eq!(a, seed.derive(Domain(1), 0));
        assert_ne!(a, seed.derive(Domain(1), 1));
        assert_ne!(a, seed.derive(Domain(2), 0));
    }

    #[test]
    fn ggm_single_child_matches_children_and_batches() {
        let g = Ggm::new();
        let s = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        let (seeds, bits) = g.children(s);
        assert_eq!(g.child(s, false), (seeds[0], bits[0]));
        assert_eq!(g.child(s, true), (seeds[1], bits[1]));
        assert_eq!(seeds[0] & 1, 0);
        assert_ne!(seeds[0], seeds[1]);
        let (mut left, mut right, mut one) = ([0u128; 1], [0u128; 1], [0u128; 1]);
        g.children_batch(&[s], &mut left, &mut right);
        assert_eq!(Ggm::split_control_bit(left[0]), (seeds[0], bits[0]));
        assert_eq!(Ggm::split_control_bit(right[0]), (seeds[1], bits[1]));
        g.child_batch(&[s], &[true], &mut one);
        assert_eq!(one, right);
    }

    #[cfg(feature = "dcf")]
    #[test]
    fn ggm_expansion_matches_single_children_and_values() {
        let g = Ggm::new();
        let s = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        let e = g.expand(s);
        assert_eq!(g.children(s), (e.seeds, e.bits));
        assert_eq!(g.value(s, false), e.values[0]);
        assert_eq!(g.value(s, true), e.values[1]);
        let mut raw = [0u128; 1];
        g.values_batch(&[s], &mut raw);
        assert_eq!(raw[0], e.values[0] as u128 | (e.values[1] as u128) << 64);
        let mut batch = [Expansion::default(); 1];
        g.expand_batch(&[s], &mut batch);
        assert_eq!(
            (batch[0].seeds, batch[0].bits, batch[0].values),
            (e.seeds, e.bits, e.values)
        );
    }
}
