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
pub trait KeySink {
    /// Appends bytes for P1 only.
    fn to_p1(&mut self, bytes: &[u8]);
    /// Appends bytes both servers receive.
    fn to_both(&mut self, bytes: &[u8]);
}

/// A server's view of the dealer's streams, consumed in gate order.
#[allow(async_fn_in_trait)]
pub trait KeySource {
    /// Fills `out` with the next bytes of the P1-only stream (an error on P0).
    async fn read_p1_stream(&mut self, out: &mut [u8]) -> Result<(), Error>;
    /// Fills `out` with the next bytes of the stream both servers receive.
    async fn read_shared_stream(&mut self, out: &mut [u8]) -> Result<(), Error>;
}

/// Bytes that `count` elements of `width` bits take when packed: ⌈count·width/8⌉.
pub const fn packed_len(count: usize, width: BitWidth) -> usize {
    (count * width.bits() as usize).div_ceil(8)
}

/// Packs elements of Z_2^width as a little-endian bit string, `width` bits each.
pub fn pack(values: &[u64], width: BitWidth) -> Vec<u8> {
    let w = width.bits();
    let mut out = vec![0u8; packed_len(values.len(), width)];
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    let mut pos = 0;
    for &v in values {
        acc |= (width.reduce(v) as u128) << bits;
        bits += w;
        while bits >= 8 {
            out[pos] = acc as u8;
            pos += 1;
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out[pos] = acc as u8;
    }
    out
}

/// Unpacks `count` elements of `width` bits; the length must be exact and padding bits zero.
pub fn unpack(bytes: &[u8], count: usize, width: BitWidth) -> Result<Vec<u64>, Error> {
    if bytes.len() != packed_len(count, width) {
        return Err(Error::LengthMismatch {
            expected: packed_len(count, width),
            got: bytes.len(),
        });
    }
    let w = width.bits();
    let mut out = Vec::with_capacity(count);
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    let mut it = bytes.iter();
    for _ in 0..count {
        while bits < w {
            // The exact-length check above guarantees enough bytes.
            acc |= (*it.next().unwrap_or(&0) as u128) << bits;
            bits += 8;
        }
        out.push(width.reduce(acc as u64));
        acc >>= w;
        bits -= w;
    }
    if acc != 0 {
        return Err(Error::MalformedMessage(
            "padding bits of packed elements are not zero",
        ));
    }
    Ok(out)
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
}
