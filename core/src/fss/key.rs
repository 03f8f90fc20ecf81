//! An FSS key: one party's root seed and the correction words both keys of a pair share.
//! Written once for DPF and DCF; the schemes differ only in their corrections.

use super::encoding::{Reader, Writer};
use crate::Error;
use crate::ring::BitWidth;
use crate::share::Party;
use alloc::vec::Vec;

/// The shared correction words of an FSS scheme, with their canonical encoding.
pub trait Corrections: Clone + core::fmt::Debug + PartialEq + Eq + Sized {
    /// Encoded size in bytes for input width n and output width l.
    fn encoded_len(in_bits: BitWidth, out_bits: BitWidth) -> usize;
    /// Input bit-width n.
    fn in_bits(&self) -> BitWidth;
    /// Output bit-width l.
    fn out_bits(&self) -> BitWidth;
    /// The canonical byte encoding.
    fn to_bytes(&self) -> Vec<u8>;
    /// Decodes and checks the canonical encoding.
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error>;
}

/// Many keys of one scheme, one party and one pair of widths, decoded into flat arrays: a batch
/// allocates once per field, never per key (a server decodes ~10^5 keys per gate, and per-key
/// allocation once cost more than evaluating them).
pub trait KeyBatch: Sized {
    /// The scheme's shared corrections.
    type Corrections: Corrections;

    /// An empty batch of `party`'s keys with widths `in_bits` and `out_bits`.
    fn new(party: Party, in_bits: BitWidth, out_bits: BitWidth) -> Self;

    /// Replaces the batch's keys by `roots.len()` keys: key i has root `roots[i]` and the
    /// corrections of the i-th of the concatenated canonical encodings in `bytes`. Checks every
    /// field and that every key has the batch's widths. Reuses the batch's memory.
    fn decode_into(&mut self, roots: &[u128], bytes: &[u8]) -> Result<(), Error>;

    /// A new batch decoded as by [`KeyBatch::decode_into`].
    fn decode(
        party: Party,
        roots: &[u128],
        bytes: &[u8],
        in_bits: BitWidth,
        out_bits: BitWidth,
    ) -> Result<Self, Error> {
        let mut batch = Self::new(party, in_bits, out_bits);
        batch.decode_into(roots, bytes)?;
        Ok(batch)
    }
}

/// Splits `bytes` into `count` encodings of `len` bytes each, or says how they differ.
pub(crate) fn batch_chunks(
    bytes: &[u8],
    count: usize,
    len: usize,
) -> Result<core::slice::ChunksExact<'_, u8>, Error> {
    if bytes.len() != count * len {
        return Err(Error::LengthMismatch {
            expected: count * len,
            got: bytes.len(),
        });
    }
    Ok(bytes.chunks_exact(len.max(1)))
}

/// Bytes before the corrections in an encoded key: the party (1) and the root seed (16).
pub const KEY_HEADER_LEN: usize = 17;

/// One party's key: its root seed and the shared corrections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FssKey<C> {
    pub(crate) party: Party,
    pub(crate) root: u128,
    pub(crate) corrections: C,
}

impl<C: Corrections> FssKey<C> {
    /// Assembles a key from a party's root seed and the shared corrections.
    pub fn new(party: Party, root: u128, corrections: C) -> Self {
        FssKey {
            party,
            root,
            corrections,
        }
    }

    /// The party that holds this key.
    pub fn party(&self) -> Party {
        self.party
    }

    /// The shared corrections.
    pub fn corrections(&self) -> &C {
        &self.corrections
    }

    /// Encoded size in bytes for widths n and l.
    pub fn encoded_len(in_bits: BitWidth, out_bits: BitWidth) -> usize {
        KEY_HEADER_LEN + C::encoded_len(in_bits, out_bits)
    }

    /// The canonical byte encoding: party, root, corrections.
    pub fn to_bytes(&self) -> Vec<u8> {
        let c = &self.corrections;
        let mut v = Vec::with_capacity(Self::encoded_len(c.in_bits(), c.out_bits()));
        let mut w = Writer(&mut v);
        w.u8(self.party.index());
        w.u128(self.root);
        v.extend_from_slice(&c.to_bytes());
        v
    }

    /// Decodes and checks the canonical encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let header = bytes.get(..KEY_HEADER_LEN).ok_or(Error::MalformedKey(
            "truncated before the end of the key header",
        ))?;
        let mut r = Reader::new(header);
        let party = r.party()?;
        let root = r.u128("truncated inside the root seed")?;
        r.finish()?;
        let corrections = C::from_bytes(&bytes[KEY_HEADER_LEN..])?;
        Ok(FssKey {
            party,
            root,
            corrections,
        })
    }
}

#[cfg(feature = "serde")]
impl<C: Corrections> serde::Serialize for FssKey<C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

#[cfg(feature = "serde")]
impl<'de, C: Corrections> serde::Deserialize<'de> for FssKey<C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::encoding::deserialize_via_bytes(
            d,
            "an FSS key in its canonical byte encoding",
            Self::from_bytes,
        )
    }
}
