//! Additive secret sharing over Z_2^64: x = x_0 + x_1 (mod 2^64).
//!
//! Either share alone is uniformly distributed whatever x is, so a single server learns nothing.
//! The *seeded* split makes P0's share the output of a PRG on a 16-byte seed: the client sends
//! P0 only the seed and P1 only x - PRG(seed), halving its upload. All APIs work on slices and
//! need no allocator, so a microcontroller can stream an embedding through them row by row.

use crate::Error;
use crate::prg::{AesCtr, Domain, Seed};

/// One of the two computing servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Party {
    /// Server 0: receives seeds wherever the protocol allows.
    P0,
    /// Server 1: receives the explicit corrections.
    P1,
}

impl Party {
    /// 0 for P0, 1 for P1.
    pub const fn index(self) -> u8 {
        match self {
            Party::P0 => 0,
            Party::P1 => 1,
        }
    }

    /// The party with index 0 or 1; other bytes are rejected.
    pub const fn from_index(i: u8) -> Result<Self, Error> {
        match i {
            0 => Ok(Party::P0),
            1 => Ok(Party::P1),
            _ => Err(Error::MalformedMessage("party index is neither 0 nor 1")),
        }
    }

    /// The other server.
    pub const fn other(self) -> Party {
        match self {
            Party::P0 => Party::P1,
            Party::P1 => Party::P0,
        }
    }
}

fn check_len(expected: usize, got: usize) -> Result<(), Error> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::LengthMismatch { expected, got })
    }
}

/// Splits `x` into two uniform shares with fresh randomness from `rng`.
pub fn split<R: rand_core::CryptoRng + ?Sized>(
    x: &[u64],
    rng: &mut R,
    share0: &mut [u64],
    share1: &mut [u64],
) -> Result<(), Error> {
    check_len(x.len(), share0.len())?;
    check_len(x.len(), share1.len())?;
    for ((&v, s0), s1) in x.iter().zip(share0.iter_mut()).zip(share1.iter_mut()) {
        *s0 = rng.next_u64();
        *s1 = v.wrapping_sub(*s0);
    }
    Ok(())
}

/// Recombines two shares: out = share0 + share1.
pub fn reconstruct(share0: &[u64], share1: &[u64], out: &mut [u64]) -> Result<(), Error> {
    check_len(share0.len(), share1.len())?;
    check_len(share0.len(), out.len())?;
    for ((o, &a), &b) in out.iter_mut().zip(share0).zip(share1) {
        *o = a.wrapping_add(b);
    }
    Ok(())
}

/// Adds the other party's share into `acc` in place: acc += other.
pub fn reconstruct_in_place(acc: &mut [u64], other: &[u64]) -> Result<(), Error> {
    check_len(acc.len(), other.len())?;
    for (a, &b) in acc.iter_mut().zip(other) {
        *a = a.wrapping_add(b);
    }
    Ok(())
}

/// The seeded split as a stream: P0's share is the AES-CTR stream of a seed
/// (domain [`Domain::INPUT_SHARE`]), P1's share is x minus that stream.
///
/// The client runs [`SeededShareStream::split_row`] and P0 runs
/// [`SeededShareStream::expand_row`] on the same seed; rows must be consumed in the same order
/// and sizes may differ between the two sides, since the stream is one continuous sequence of
/// words.
pub struct SeededShareStream {
    prg: AesCtr,
}

impl core::fmt::Debug for SeededShareStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SeededShareStream")
    }
}

impl SeededShareStream {
    /// The stream for `seed`; the seed must be fresh, uniformly random and known only to the
    /// client and P0.
    pub fn new(seed: &Seed) -> Self {
        SeededShareStream {
            prg: AesCtr::new(seed, Domain::INPUT_SHARE),
        }
    }

    /// Client side: writes P1's share x - PRG of the next `x.len()` words into `share1`.
    pub fn split_row(&mut self, x: &[u64], share1: &mut [u64]) -> Result<(), Error> {
        check_len(x.len(), share1.len())?;
        for (s1, &v) in share1.iter_mut().zip(x) {
            *s1 = v.wrapping_sub(self.prg.next_u64());
        }
        Ok(())
    }

    /// Client side, in place: turns `row` (plaintext) into P1's share, so a device needs one
    /// buffer per row and no second copy.
    pub fn split_row_in_place(&mut self, row: &mut [u64]) {
        for v in row.iter_mut() {
            *v = v.wrapping_sub(self.prg.next_u64());
        }
    }

    /// P0 side: writes P0's share (the next `share0.len()` PRG words) into `share0`.
    pub fn expand_row(&mut self, share0: &mut [u64]) {
        self.prg.fill_u64(share0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_split_reconstructs_across_row_sizes() {
        let seed = Seed::from_bytes([9; 16]);
        let x: [u64; 10] = core::array::from_fn(|i| (i as u64).wrapping_mul(0x9e37_79b9) ^ 5);
        let mut s1 = [0u64; 10];
        let mut client = SeededShareStream::new(&seed);
        client.split_row(&x[..3], &mut s1[..3]).unwrap();
        let mut rest = [0u64; 7];
        rest.copy_from_slice(&x[3..]);
        client.split_row_in_place(&mut rest);
        s1[3..].copy_from_slice(&rest);

        let mut s0 = [0u64; 10];
        let mut p0 = SeededShareStream::new(&seed);
        p0.expand_row(&mut s0[..6]);
        p0.expand_row(&mut s0[6..]);
        let mut out = [0u64; 10];
        reconstruct(&s0, &s1, &mut out).unwrap();
        assert_eq!(out, x);
    }

    #[test]
    fn length_mismatches_are_errors() {
        let mut a = [0u64; 2];
        assert_eq!(
            reconstruct(&[1, 2], &[3], &mut a),
            Err(Error::LengthMismatch {
                expected: 2,
                got: 1
            })
        );
        let mut s = SeededShareStream::new(&Seed::from_bytes([0; 16]));
        assert!(s.split_row(&[1, 2, 3], &mut a).is_err());
        assert_eq!(Party::from_index(1), Ok(Party::P1));
        assert!(Party::from_index(2).is_err());
    }
}
