//! A deterministic byte mutator in the style of libFuzzer's and AFL's: bit flips, random and
//! "interesting" bytes and integers, inserts, deletes, duplications, splices with other inputs,
//! and tweaks of length fields (fixed-width integers of either endianness and postcard's
//! varints). Everything derives from one 64-bit seed, so a run can be repeated exactly.

/// SplitMix64: a small, fast, seedable generator (not for cryptography).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Values that often sit on a decoder's boundaries.
const INTERESTING: [u64; 20] = [
    0,
    1,
    2,
    7,
    8,
    15,
    16,
    17,
    63,
    64,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// The longest input the mutator makes.
pub const MAX_LEN: usize = 1 << 20;

/// Applies one to four random mutations to `data`; `pool` supplies splice partners.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, data, pool);
    }
    data.truncate(MAX_LEN);
}

fn interesting(rng: &mut Rng) -> u64 {
    let v = INTERESTING[rng.below(INTERESTING.len())];
    match rng.below(4) {
        0 => v.wrapping_sub(1),
        1 => v.wrapping_add(1),
        _ => v,
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(13) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // A random byte.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next_u64() as u8;
        }
        // An interesting byte.
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = interesting(rng) as u8;
        }
        // Add or subtract a little from a byte.
        3 if len > 0 => {
            let i = rng.below(len);
            let d = 1 + rng.below(16) as u8;
            data[i] = if rng.one_in(2) {
                data[i].wrapping_add(d)
            } else {
                data[i].wrapping_sub(d)
            };
        }
        // Insert random bytes.
        4 => {
            let i = rng.below(len + 1);
            let most = if rng.one_in(8) { 512 } else { 8 };
            let n = 1 + rng.below(most);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(i..i, bytes);
        }
        // Delete a range.
        5 if len > 0 => {
            let i = rng.below(len);
            let most = if rng.one_in(4) { len } else { 16 };
            let n = 1 + rng.below((len - i).min(most));
            data.drain(i..i + n);
        }
        // Duplicate a range (repeated fields, longer payloads).
        6 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let copy = data[i..i + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, copy);
        }
        // Splice: a prefix of this input and a suffix of another, or a block of it inserted.
        7 if !pool.is_empty() => {
            let other = &pool[rng.below(pool.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            if rng.one_in(2) {
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            } else {
                let n = rng.below(other.len() - from + 1).min(256);
                data.splice(cut..cut, other[from..from + n].iter().copied());
            }
        }
        // Overwrite an integer field (1, 2, 4 or 8 bytes, either endianness).
        8 if len > 0 => {
            let width = [1usize, 2, 4, 8][rng.below(4)].min(len);
            let i = rng.below(len - width + 1);
            let v = interesting(rng);
            put_int(&mut data[i..i + width], v, rng.one_in(2));
        }
        // Tweak an integer field (a length) by a small amount.
        9 if len > 0 => {
            let width = [1usize, 2, 4, 8][rng.below(4)].min(len);
            let i = rng.below(len - width + 1);
            let big = rng.one_in(2);
            let v = get_int(&data[i..i + width], big);
            let d = 1 + rng.below(32) as u64;
            let v = if rng.one_in(2) {
                v.wrapping_add(d)
            } else {
                v.wrapping_sub(d)
            };
            put_int(&mut data[i..i + width], v, big);
        }
        // Replace a postcard varint (a length or count) with another value.
        10 if len > 0 => {
            let i = rng.below(len);
            let old = varint_len(&data[i..]);
            let v = if rng.one_in(2) {
                interesting(rng)
            } else {
                // Near the old value, when it parses.
                let (old_v, _) = read_varint(&data[i..]);
                old_v.wrapping_add(rng.below(9) as u64).wrapping_sub(4)
            };
            let new = write_varint(v);
            data.splice(i..i + old, new);
        }
        // Truncate.
        11 if len > 0 => {
            let n = rng.below(len);
            data.truncate(n);
        }
        // Append random bytes.
        _ => {
            let n = 1 + rng.below(32);
            data.extend((0..n).map(|_| rng.next_u64() as u8));
        }
    }
}

fn put_int(field: &mut [u8], v: u64, big_endian: bool) {
    let n = field.len();
    if big_endian {
        field.copy_from_slice(&v.to_be_bytes()[8 - n..]);
    } else {
        field.copy_from_slice(&v.to_le_bytes()[..n]);
    }
}

fn get_int(field: &[u8], big_endian: bool) -> u64 {
    let mut a = [0u8; 8];
    if big_endian {
        a[8 - field.len()..].copy_from_slice(field);
        u64::from_be_bytes(a)
    } else {
        a[..field.len()].copy_from_slice(field);
        u64::from_le_bytes(a)
    }
}

/// Bytes of the varint at the start of `bytes` (at most 10; 1 when it does not end).
fn varint_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(10)
        .position(|&b| b < 0x80)
        .map_or(1, |i| i + 1)
}

fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (v, i + 1);
        }
    }
    (v, 1)
}

/// Postcard's (LEB128) varint of `v`.
pub fn write_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_mutants() {
        let pool = vec![b"hello world".to_vec(), vec![0xff; 40]];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|i| {
                    let mut d = pool[i % 2].clone();
                    mutate(&mut rng, &mut d, &pool);
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn mutants_differ_from_their_input_and_vary_in_length() {
        let mut rng = Rng::new(1);
        let seed = (0u8..64).collect::<Vec<u8>>();
        let (mut changed, mut lengths) = (0, std::collections::BTreeSet::new());
        for _ in 0..1000 {
            let mut d = seed.clone();
            mutate(&mut rng, &mut d, std::slice::from_ref(&seed));
            changed += usize::from(d != seed);
            lengths.insert(d.len());
        }
        assert!(changed > 900, "{changed}");
        assert!(lengths.len() > 20, "{lengths:?}");
    }

    #[test]
    fn varints_are_postcards() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(write_varint(v), postcard::to_allocvec(&v).unwrap());
            assert_eq!(read_varint(&write_varint(v)), (v, write_varint(v).len()));
        }
    }
}
