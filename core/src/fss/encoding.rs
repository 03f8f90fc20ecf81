//! The byte layout shared by DPF and DCF keys, and a strict reader for it.
//!
//! Corrections: `in_bits u8 | out_bits u8 | n seed words (16 B, LE) | [n value words] |
//! control bits (2 per level, packed LSB first) | last word`, where value and last words take
//! ceil(l/8) bytes little-endian. One-bit DPF corrections (see `bit_dpf`): `in_bits u8 | ν seed
//! words | control bits | last block`, the last block taking ceil(2^k/8) bytes little-endian for
//! 2^k leaf bits. A key is `party u8 | root (16 B) | corrections`.
//! Every field is checked on decode: widths in range, words inside Z_2^l, unused bits zero, the
//! cleared low bit of seed words zero, and no trailing bytes. The encoding is thus canonical.

use crate::Error;
use crate::ring::BitWidth;
use crate::share::Party;
use alloc::vec::Vec;

/// Bytes of one output-group word of width `out`.
#[cfg(any(feature = "dcf", feature = "dpf"))]
pub(crate) const fn word_bytes(out: BitWidth) -> usize {
    out.bits().div_ceil(8) as usize
}

/// Bytes of the packed control bits of `levels` levels.
pub(crate) const fn control_bytes(levels: usize) -> usize {
    (2 * levels).div_ceil(8)
}

pub(crate) struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    #[cfg(any(feature = "dcf", feature = "dpf"))]
    pub fn word(&mut self, v: u64, out: BitWidth) {
        self.0
            .extend_from_slice(&v.to_le_bytes()[..word_bytes(out)]);
    }
    /// The low `bits` bits of `v` (1 ≤ bits ≤ 128) in ⌈bits/8⌉ bytes, little-endian.
    pub fn block(&mut self, v: u128, bits: u32) {
        self.0
            .extend_from_slice(&v.to_le_bytes()[..bits.div_ceil(8) as usize]);
    }
    /// Packs two control bits per level.
    pub fn control_bits(&mut self, bits: &[[bool; 2]]) {
        let start = self.0.len();
        self.0.resize(start + control_bytes(bits.len()), 0);
        for (i, pair) in bits.iter().enumerate() {
            for (j, &b) in pair.iter().enumerate() {
                let k = 2 * i + j;
                self.0[start + k / 8] |= (b as u8) << (k % 8);
            }
        }
    }
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if self.bytes.len() < n {
            return Err(Error::MalformedKey(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn party(&mut self) -> Result<Party, Error> {
        let b = self.take(1, "truncated before the party byte")?[0];
        Party::from_index(b).map_err(|_| Error::MalformedKey("party byte is neither 0 nor 1"))
    }

    pub fn width(&mut self, what: &'static str) -> Result<BitWidth, Error> {
        let b = self.take(1, what)?[0];
        BitWidth::new(b as u32).map_err(|_| Error::MalformedKey(what))
    }

    pub fn u128(&mut self, what: &'static str) -> Result<u128, Error> {
        let b = self.take(16, what)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(u128::from_le_bytes(a))
    }

    /// Appends `n` correction seeds to `out`, read in one piece: the low bit of each (the
    /// control-bit position) must be zero.
    pub fn seed_words_into(&mut self, n: usize, out: &mut Vec<u128>) -> Result<(), Error> {
        let b = self.take(16 * n, "truncated inside the seed corrections")?;
        let mut low_bits = 0u8;
        out.extend(b.chunks_exact(16).map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            low_bits |= a[0];
            u128::from_le_bytes(a)
        }));
        if low_bits & 1 != 0 {
            return Err(Error::MalformedKey(
                "seed correction has its control bit set",
            ));
        }
        Ok(())
    }

    /// Appends `n` words of width `width` (see [`Reader::word`]) to `out`, read in one piece.
    #[cfg(feature = "dcf")]
    pub fn words_into(
        &mut self,
        n: usize,
        width: BitWidth,
        out: &mut Vec<u64>,
        what: &'static str,
    ) -> Result<(), Error> {
        let wb = word_bytes(width);
        let b = self.take(wb * n, what)?;
        let mut high = 0u64;
        out.extend(b.chunks_exact(wb).map(|c| {
            let mut a = [0u8; 8];
            a[..wb].copy_from_slice(c);
            let v = u64::from_le_bytes(a);
            high |= v & !width.mask();
            v
        }));
        if high != 0 {
            return Err(Error::MalformedKey(
                "output word exceeds the output bit-width",
            ));
        }
        Ok(())
    }

    #[cfg(any(feature = "dcf", feature = "dpf"))]
    pub fn word(&mut self, out: BitWidth, what: &'static str) -> Result<u64, Error> {
        let b = self.take(word_bytes(out), what)?;
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        let v = u64::from_le_bytes(a);
        if !out.contains(v) {
            return Err(Error::MalformedKey(
                "output word exceeds the output bit-width",
            ));
        }
        Ok(v)
    }

    /// A block of `bits` bits (1 ≤ bits ≤ 128) written by [`Writer::block`]; bits above must be
    /// zero.
    pub fn block(&mut self, bits: u32, what: &'static str) -> Result<u128, Error> {
        let b = self.take(bits.div_ceil(8) as usize, what)?;
        // A whole block (the usual leaf of 2^7 bits) converts in place; a variable-length
        // copy is a call per key.
        let v = match <[u8; 16]>::try_from(b) {
            Ok(whole) => u128::from_le_bytes(whole),
            Err(_) => {
                let mut a = [0u8; 16];
                a[..b.len()].copy_from_slice(b);
                u128::from_le_bytes(a)
            }
        };
        if bits < 128 && v >> bits != 0 {
            return Err(Error::MalformedKey(
                "padding of the final block is not zero",
            ));
        }
        Ok(v)
    }

    #[cfg(feature = "dpf")]
    pub fn control_bits(&mut self, levels: usize) -> Result<Vec<[bool; 2]>, Error> {
        let mut out = Vec::with_capacity(levels);
        self.control_bits_into(levels, &mut out)?;
        Ok(out)
    }

    /// Appends the control bits of `levels` levels to `out` (batches decode without allocating
    /// per key).
    pub fn control_bits_into(
        &mut self,
        levels: usize,
        out: &mut Vec<[bool; 2]>,
    ) -> Result<(), Error> {
        let b = self.take(control_bytes(levels), "truncated inside the control bits")?;
        let used = 2 * levels;
        if !used.is_multiple_of(8) && b[b.len() - 1] >> (used % 8) != 0 {
            return Err(Error::MalformedKey(
                "padding of the control bits is not zero",
            ));
        }
        // Four levels a byte, two bits each (low bits first).
        let pairs = |byte: u8| {
            let bit = |k: u32| (byte >> k) & 1 == 1;
            [
                [bit(0), bit(1)],
                [bit(2), bit(3)],
                [bit(4), bit(5)],
                [bit(6), bit(7)],
            ]
        };
        out.reserve(levels);
        let (whole, rest) = (levels / 4, levels % 4);
        for &byte in &b[..whole] {
            out.extend_from_slice(&pairs(byte));
        }
        if rest > 0 {
            // Pushed one by one: a slice of variable length would be a copy call per key.
            for &pair in &pairs(b[whole])[..rest] {
                out.push(pair);
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::MalformedKey("trailing bytes after the key"))
        }
    }
}

/// serde support through the canonical byte encoding, so serde formats (postcard on the wire)
/// carry exactly the checked layout.
#[cfg(feature = "serde")]
pub(crate) fn deserialize_via_bytes<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&[u8]) -> Result<T, Error>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        parse: fn(&[u8]) -> Result<T, Error>,
    }
    impl<'de, T> serde::de::Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            let mut bytes = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                bytes.push(b);
            }
            (self.parse)(&bytes).map_err(serde::de::Error::custom)
        }
    }
    d.deserialize_bytes(V { expecting, parse })
}

/// Implements serde for a type with `to_bytes`/`from_bytes` through [`deserialize_via_bytes`].
#[cfg(feature = "serde")]
macro_rules! serde_via_bytes {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.to_bytes())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::encoding::deserialize_via_bytes(d, $expecting, <$ty>::from_bytes)
            }
        }
    };
}

#[cfg(feature = "serde")]
pub(crate) use serde_via_bytes;
