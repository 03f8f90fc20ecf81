//! What the gates need from the outside world, as two small traits the adapters implement:
//! [`Channel`] (the P0–P1 link) and [`KeySource`] / [`KeySink`] (the dealer's streams), plus
//! the exact bit-packing of ring elements on both.

use crate::Error;
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes and rounds a party has sent on its link to the other server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Payload bytes sent (framing and encryption overhead are the adapter's and not counted).
    pub bytes_sent: u64,
    /// Communication rounds: exchanges in which both servers send and then receive.
    pub rounds: u64,
}

/// The link between P0 and P1.
///
/// One call to [`Channel::exchange`] is one round: both servers send the same number of bytes
/// simultaneously and receive the other's. Implementations count bytes and rounds.
#[allow(async_fn_in_trait)] // adapters pick their executor; Send bounds are theirs to add
pub trait Channel {
    /// Sends `send` to the other server and fills `recv` (same length) with what it sent.
    async fn exchange(&mut self, send: &[u8], recv: &mut [u8]) -> Result<(), Error>;

    /// Traffic sent so far.
    fn traffic(&self) -> Traffic;
}

/// A borrowed link is a link: consecutive stages of one session share it.
impl<C: Channel> Channel for &mut C {
    async fn exchange(&mut self, send: &[u8], recv: &mut [u8]) -> Result<(), Error> {
        (**self).exchange(send, recv).await
    }

    fn traffic(&self) -> Traffic {
        (**self).traffic()
    }
}

/// The dealer's output for one session: correction words only P1 receives, and FSS
/// correction words both servers need. P0's own material is its seed alone; the shared words
/// are common to both keys of a pair, so P1 learns nothing from them that it lacks, and a
/// runtime may deliver them to P0 directly (the host does) or relay them through P1.
///
/// The linear layers' correlations travel in a third stream of their own, so that a server
/// holding the whole session's keys can read them ahead of the gates and do its offline
/// products before the online phase ([`crate::gate::ServerSide::precompute_linear`]).
pub trait KeySink {
    /// Appends bytes for P1 only.
    fn to_p1(&mut self, bytes: &[u8]);
    /// Appends bytes both servers receive.
    fn to_both(&mut self, bytes: &[u8]);
    /// Appends `both` to both servers' linear streams, then `p1_only` to P1's.
    fn to_linear(&mut self, both: &[u8], p1_only: &[u8]);
}

/// A server's view of the dealer's streams, consumed in gate order.
#[allow(async_fn_in_trait)]
pub trait KeySource {
    /// Fills `out` with the next bytes of the P1-only stream (an error on P0).
    async fn read_p1_stream(&mut self, out: &mut [u8]) -> Result<(), Error>;
    /// Fills `out` with the next bytes of the stream both servers receive.
    async fn read_shared_stream(&mut self, out: &mut [u8]) -> Result<(), Error>;
    /// Fills `out` with the next bytes of this server's linear stream.
    async fn read_linear_stream(&mut self, out: &mut [u8]) -> Result<(), Error>;
}

/// Bytes that `count` elements of `width` bits take when packed: ⌈count·width/8⌉.
pub const fn packed_len(count: usize, width: BitWidth) -> usize {
    (count * width.bits() as usize).div_ceil(8)
}

/// Packs elements of Z_2^width as a little-endian bit string, `width` bits each.
pub fn pack(values: &[u64], width: BitWidth) -> Vec<u8> {
    let w = width.bits();
    if matches!(w, 8 | 16 | 32 | 64) {
        // Whole bytes per element: each element's low bytes, in order (fixed-size chunks, so
        // the copy vectorises).
        let size = w as usize / 8;
        let mut out = vec![0u8; values.len() * size];
        match size {
            1 => out.iter_mut().zip(values).for_each(|(o, &v)| *o = v as u8),
            2 => put_low_bytes::<2>(&mut out, values),
            4 => put_low_bytes::<4>(&mut out, values),
            _ => put_low_bytes::<8>(&mut out, values),
        }
        return out;
    }
    let mut out = vec![0u8; packed_len(values.len(), width)];
    // Whole 8-byte words leave the accumulator at once (an element is at most 64 bits, so
    // fewer than 128 are ever pending).
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    let mut pos = 0;
    for &v in values {
        acc |= (width.reduce(v) as u128) << bits;
        bits += w;
        if bits >= 64 {
            out[pos..pos + 8].copy_from_slice(&(acc as u64).to_le_bytes());
            pos += 8;
            acc >>= 64;
            bits -= 64;
        }
    }
    let rest = bits.div_ceil(8) as usize;
    out[pos..pos + rest].copy_from_slice(&acc.to_le_bytes()[..rest]);
    out
}

/// Writes each value's `N` low bytes, little-endian, into consecutive `N`-byte chunks.
fn put_low_bytes<const N: usize>(out: &mut [u8], values: &[u64]) {
    for (chunk, &v) in out.chunks_exact_mut(N).zip(values) {
        chunk.copy_from_slice(&v.to_le_bytes()[..N]);
    }
}

/// Reads consecutive little-endian `N`-byte chunks as elements.
fn get_low_bytes<const N: usize>(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word[..N].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect()
}

/// The element of `mask`'s width at bit `bit` of `bytes`, read through the little-endian
/// window of `N` bytes (8 or 16) at its first byte.
fn read_bits<const N: usize>(bytes: &[u8], bit: usize, mask: u64) -> u64 {
    let at = bit / 8;
    let window = if N == 8 {
        // An element of at most 57 bits starting at any bit of its first byte lies in 8 bytes.
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[at..at + 8]);
        u128::from(u64::from_le_bytes(a))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&bytes[at..at + 16]);
        u128::from_le_bytes(a)
    };
    (window >> (bit % 8)) as u64 & mask
}

/// `count` elements of `w` bits through windows of `N` bytes: those whose window fits read it
/// in place, the last few read a zero-padded copy of the final bytes.
fn unpack_bits<const N: usize>(bytes: &[u8], count: usize, w: usize, mask: u64) -> Vec<u64> {
    let len = bytes.len();
    // Element i fits while ⌊i·w/8⌋ + N ≤ len.
    let fits = match len.checked_sub(N) {
        Some(last) => ((8 * last + 7) / w + 1).min(count),
        None => 0,
    };
    let mut out: Vec<u64> = (0..fits)
        .map(|i| read_bits::<N>(bytes, i * w, mask))
        .collect();
    if fits < count {
        let start = fits * w / 8;
        let mut tail = [0u8; 32];
        tail[..len - start].copy_from_slice(&bytes[start..]);
        out.extend((fits..count).map(|j| read_bits::<N>(&tail, j * w - 8 * start, mask)));
    }
    out
}

/// Unpacks `count` elements of `width` bits; the length must be exact and padding bits zero.
pub fn unpack(bytes: &[u8], count: usize, width: BitWidth) -> Result<Vec<u64>, Error> {
    let len = packed_len(count, width);
    if bytes.len() != len {
        return Err(Error::LengthMismatch {
            expected: len,
            got: bytes.len(),
        });
    }
    let (w, mask) = (width.bits() as usize, width.mask());
    let used = count * w;
    if !used.is_multiple_of(8) && bytes[len - 1] >> (used % 8) != 0 {
        return Err(Error::MalformedMessage(
            "padding bits of packed elements are not zero",
        ));
    }
    if matches!(w, 8 | 16 | 32 | 64) {
        // Whole bytes per element (no padding to check).
        return Ok(match w {
            8 => bytes.iter().map(|&b| u64::from(b)).collect(),
            16 => get_low_bytes::<2>(bytes),
            32 => get_low_bytes::<4>(bytes),
            _ => get_low_bytes::<8>(bytes),
        });
    }
    Ok(if w <= 57 {
        unpack_bits::<8>(bytes, count, w, mask)
    } else {
        unpack_bits::<16>(bytes, count, w, mask)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_at_every_width() {
        for w in 1..=64 {
            let width = BitWidth::new(w).unwrap();
            let values: Vec<u64> = (0..37u64)
                .map(|i| width.reduce(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            let p = pack(&values, width);
            assert_eq!(p.len(), (37 * w as usize).div_ceil(8));
            assert_eq!(unpack(&p, 37, width).unwrap(), values);
            assert!(unpack(&p[1..], 37, width).is_err());
        }
        let one = BitWidth::new(1).unwrap();
        assert_eq!(pack(&[1, 0, 1], one), [0b101]);
        assert!(unpack(&[0b1101], 3, one).is_err());
    }

    /// Bit `k` of a packed string, read one bit at a time: the layout's definition.
    fn bit(bytes: &[u8], k: usize) -> u64 {
        u64::from(bytes[k / 8] >> (k % 8) & 1)
    }

    #[test]
    fn packing_matches_the_bit_layout_at_every_width_and_length() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for w in 1..=64u32 {
            let width = BitWidth::new(w).unwrap();
            for count in [0usize, 1, 2, 3, 7, 8, 15, 16, 17, 31, 64, 129, 300] {
                let values: Vec<u64> = (0..count)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        x
                    })
                    .collect();
                let p = pack(&values, width);
                for (i, &v) in values.iter().enumerate() {
                    let got = (0..w as usize)
                        .map(|b| bit(&p, i * w as usize + b) << b)
                        .sum::<u64>();
                    assert_eq!(got, width.reduce(v), "width {w}, element {i} of {count}");
                }
                let back = unpack(&p, count, width).unwrap();
                assert!(
                    back.iter()
                        .zip(&values)
                        .all(|(&b, &v)| b == width.reduce(v))
                );
                assert_eq!(back.len(), count);
                let used = count * w as usize;
                if !used.is_multiple_of(8) {
                    let mut bad = p.clone();
                    *bad.last_mut().unwrap() |= 0x80;
                    assert!(unpack(&bad, count, width).is_err(), "width {w}, {count}");
                }
            }
        }
    }
}
