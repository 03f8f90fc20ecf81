//! One-bit DPF correctness (the FSS scheme of every comparison and lookup): exhaustive on small
//! domains, random at n = 64, prefix parity as comparison, batches, and the key encoding.

use securerouter_core::Error;
use securerouter_core::fss::{
    BitDpf, BitDpfCorrections, BitDpfKey, BitDpfKeys, Corrections, KeyBatch,
};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;

fn rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes([0x42; 16]), Domain(tag))
}

fn w(bits: u32) -> BitWidth {
    BitWidth::new(bits).unwrap()
}

/// The dealer's batched one-bit DPF generation writes exactly the encodings (and P1's bits at
/// α) of single generation, at every split of leaf bits and tree levels.
#[test]
fn batched_bit_dpf_generation_matches_single_keys() {
    let dpf = BitDpf::new();
    let mut r = rng(24);
    for (n, count) in [(3u32, 4usize), (7, 3), (8, 300), (12, 5), (16, 2)] {
        let inw = w(n);
        let alphas: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
        let roots: Vec<[u128; 2]> = (0..count)
            .map(|_| [r.next_u64() as u128 * 3, r.next_u64() as u128 * 5])
            .collect();
        let (mut encoded, mut bits) = (Vec::new(), Vec::new());
        dpf.gen_encoded(inw, &alphas, &roots, &mut encoded, &mut bits)
            .unwrap();
        let (mut want, mut want_bits) = (Vec::new(), Vec::new());
        for (&a, &rt) in alphas.iter().zip(&roots) {
            let (c, bit) = dpf.gen_corrections(inw, a, rt).unwrap();
            want.extend(c.to_bytes());
            want_bits.push(bit);
        }
        assert_eq!(encoded, want, "n={n}");
        assert_eq!(bits, want_bits, "n={n}");
    }
    let (mut out, mut bits) = (Vec::new(), Vec::new());
    assert!(
        dpf.gen_encoded(w(8), &[1, 2], &[[1, 2]], &mut out, &mut bits)
            .is_err()
    );
    assert!(
        dpf.gen_encoded(w(8), &[256], &[[1, 2]], &mut out, &mut bits)
            .is_err()
    );
}

fn bit(words: &[u64], x: u64) -> bool {
    (words[(x / 64) as usize] >> (x % 64)) & 1 == 1
}

fn roots(r: &mut AesCtr) -> [u128; 2] {
    [
        (r.next_u64() as u128) << 64 | r.next_u64() as u128,
        (r.next_u64() as u128) << 64 | r.next_u64() as u128,
    ]
}

/// For every n ≤ 8, every α and every x (n = 9..=11 and 14 on sampled α, every x): the XOR of the
/// two full-domain evaluations is the indicator of α, each equals the single-point evaluation,
/// and the bit key generation reports is P1's evaluation at α. n = 7 has a single leaf, n < 7
/// a leaf narrower than a block.
#[test]
fn bit_dpf_exhaustive_small_domains() {
    let dpf = BitDpf::new();
    let mut r = rng(20);
    for n in (1..=11u32).chain([14]) {
        let inw = w(n);
        let max = (1u64 << n) - 1;
        let alphas: Vec<u64> = if n <= 8 {
            (0..=max).collect()
        } else {
            let mut a = vec![0, 1, 127, 128, max - 1, max];
            a.extend((0..6).map(|_| r.next_u64() & max));
            a
        };
        for &alpha in &alphas {
            let rt = roots(&mut r);
            let (c, p1_at_alpha) = dpf.gen_corrections(inw, alpha, rt).unwrap();
            let k0 = BitDpfKey::new(securerouter_core::share::Party::P0, rt[0], c.clone());
            let k1 = BitDpfKey::new(securerouter_core::share::Party::P1, rt[1], c);
            let f0 = dpf.eval_full_domain(&k0).unwrap();
            let f1 = dpf.eval_full_domain(&k1).unwrap();
            assert_eq!(f0.len(), BitDpf::full_domain_words(inw));
            for x in 0..=max {
                assert_eq!(
                    bit(&f0, x) ^ bit(&f1, x),
                    x == alpha,
                    "n={n} alpha={alpha} x={x}"
                );
                if n <= 8 || x % 7 == 0 || x == alpha {
                    assert_eq!(dpf.eval(&k0, x).unwrap(), bit(&f0, x));
                    assert_eq!(dpf.eval(&k1, x).unwrap(), bit(&f1, x));
                }
            }
            assert_eq!(p1_at_alpha, bit(&f1, alpha));
            // Padding bits of a narrow domain stay zero.
            if n < 6 {
                assert_eq!(f0[0] >> (1u64 << n), 0);
                assert_eq!(f1[0] >> (1u64 << n), 0);
            }
        }
    }
}

/// The bit P1 holds at α is the lookup gate's secret sign: both values occur, about equally.
#[test]
fn bit_dpf_p1_bit_at_alpha_is_balanced() {
    let dpf = BitDpf::new();
    let mut r = rng(21);
    let ones = (0..2000)
        .filter(|_| {
            let rt = roots(&mut r);
            dpf.gen_corrections(w(9), r.next_u64() & 511, rt).unwrap().1
        })
        .count();
    assert!((850..1150).contains(&ones), "{ones} of 2000");
}

#[test]
fn bit_dpf_random_64_bit() {
    let dpf = BitDpf::new();
    let mut r = rng(22);
    for round in 0..200 {
        let alpha = match round {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << 63,
            _ => r.next_u64(),
        };
        let (k0, k1) = dpf.gen_keys(BitWidth::FULL, alpha, &mut r).unwrap();
        let mut xs = vec![
            0,
            u64::MAX,
            alpha,
            alpha.wrapping_sub(1),
            alpha.wrapping_add(1),
            alpha ^ 64,
            alpha ^ 128,
        ];
        xs.extend((0..10).map(|_| r.next_u64()));
        for x in xs {
            let got = dpf.eval(&k0, x).unwrap() ^ dpf.eval(&k1, x).unwrap();
            assert_eq!(got, x == alpha, "alpha={alpha} x={x}");
        }
    }
}

/// The prefix parity of a one-bit DPF key pair (SIGMA's comparison): for every n ≤ 8, every α
/// and every x (n = 9..=11, 14 and 25 on sampled α and x), the XOR of the two parties' bits is
/// [α ≤ x]; the batch evaluation (with chunks crossing 256 keys, both parties) equals the single
/// one, and inputs outside Z_2^n or mismatched lengths are errors.
#[test]
fn bit_dpf_prefix_parity_is_comparison() {
    let dpf = BitDpf::new();
    let mut r = rng(25);
    for n in (1..=11u32).chain([14, 25]) {
        let inw = w(n);
        let max = (1u64 << n) - 1;
        let sample = |r: &mut AesCtr| -> Vec<u64> {
            if n <= 8 {
                (0..=max).collect()
            } else {
                let mut a = vec![0, 1, 127, 128, max - 1, max];
                a.extend((0..10).map(|_| r.next_u64() & max));
                a
            }
        };
        for alpha in sample(&mut r) {
            let rt = roots(&mut r);
            let (c, _) = dpf.gen_corrections(inw, alpha, rt).unwrap();
            let k0 = BitDpfKey::new(Party::P0, rt[0], c.clone());
            let k1 = BitDpfKey::new(Party::P1, rt[1], c);
            let mut xs = sample(&mut r);
            xs.extend([alpha, alpha.saturating_sub(1), (alpha + 1).min(max)]);
            for x in xs {
                let got = dpf.eval_prefix_parity(&k0, x).unwrap()
                    ^ dpf.eval_prefix_parity(&k1, x).unwrap();
                assert_eq!(got, alpha <= x, "n={n} alpha={alpha} x={x}");
            }
        }
    }
    for (n, count) in [(4u32, 7usize), (8, 300), (25, 600)] {
        let inw = w(n);
        for party in [Party::P0, Party::P1] {
            let keys: Vec<BitDpfKey> = (0..count)
                .map(|_| {
                    let (k0, k1) = dpf.gen_keys(inw, inw.reduce(r.next_u64()), &mut r).unwrap();
                    if party == Party::P0 { k0 } else { k1 }
                })
                .collect();
            let xs: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
            let batch = BitDpfKeys::from_keys(&keys).unwrap();
            let mut out = vec![7u64; count];
            dpf.eval_prefix_parity_batch(&batch, &xs, &mut out).unwrap();
            for (i, (k, &x)) in keys.iter().zip(&xs).enumerate() {
                let want = dpf.eval_prefix_parity(k, x).unwrap() as u64;
                assert_eq!(out[i], want, "n={n} key {i}");
            }
            assert!(matches!(
                dpf.eval_prefix_parity_batch(&batch, &xs[1..], &mut out[1..]),
                Err(Error::LengthMismatch { .. })
            ));
            let mut bad = xs.clone();
            bad[count / 2] = max_plus_one(n);
            assert!(matches!(
                dpf.eval_prefix_parity_batch(&batch, &bad, &mut out),
                Err(Error::ValueOutOfRange { .. })
            ));
            assert!(dpf.eval_prefix_parity(&keys[0], max_plus_one(n)).is_err());
            // A part of the batch gives the whole batch's bits for its keys; ranges outside
            // the batch, reversed, or of another length than the inputs are errors.
            let part = count / 3..count;
            let mut some = vec![7u64; part.len()];
            dpf.eval_prefix_parity_range(&batch, part.clone(), &xs[part.clone()], &mut some)
                .unwrap();
            assert_eq!(some, out[part.clone()], "n={n} keys {part:?}");
            let reversed = core::ops::Range { start: 2, end: 1 };
            for (range, len) in [(count - 1..count + 1, 2), (reversed, 1), (0..2, 3)] {
                let mut o = vec![0u64; len];
                assert!(matches!(
                    dpf.eval_prefix_parity_range(&batch, range, &xs[..len], &mut o),
                    Err(Error::LengthMismatch { .. })
                ));
            }
        }
    }
}

fn max_plus_one(n: u32) -> u64 {
    1u64 << n
}

#[test]
fn batched_bit_dpf_full_domain_equals_single() {
    let dpf = BitDpf::new();
    let mut r = rng(23);
    // Key counts that cross the grouping (256 leaves per batch) and leave a partial group.
    for (n, count) in [(3u32, 5usize), (7, 300), (8, 300), (12, 21), (16, 3)] {
        let inw = w(n);
        let keys: Vec<BitDpfKey> = (0..count)
            .map(|_| {
                let (k0, k1) = dpf.gen_keys(inw, inw.reduce(r.next_u64()), &mut r).unwrap();
                // A batch is one party's: P0's for even n, P1's for odd.
                if n % 2 == 0 { k0 } else { k1 }
            })
            .collect();
        let words = BitDpf::full_domain_words(inw);
        let mut out = vec![0u64; count * words];
        let batch = BitDpfKeys::from_keys(&keys).unwrap();
        dpf.eval_full_domain_batch(&batch, &mut out).unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                out[i * words..(i + 1) * words],
                dpf.eval_full_domain(k).unwrap()[..],
                "n={n} key {i}"
            );
        }
        assert!(matches!(
            dpf.eval_full_domain_batch(&batch, &mut out[1..]),
            Err(Error::LengthMismatch { .. })
        ));
        // A range of the batch equals the same keys' slice of the whole.
        let (lo, hi) = (count / 3, count - count / 4);
        let mut part = vec![0u64; (hi - lo) * words];
        dpf.eval_full_domain_range(&batch, lo..hi, &mut part)
            .unwrap();
        assert_eq!(part[..], out[lo * words..hi * words]);
        assert!(
            dpf.eval_full_domain_range(&batch, lo..count + 1, &mut part)
                .is_err()
        );
        // The servers' decoding of the encoded corrections gives the same batch.
        let roots: Vec<u128> = (0..count).map(|_| r.next_u64() as u128).collect();
        let singles: Vec<BitDpfKey> = roots
            .iter()
            .map(|&root| {
                let alpha = inw.reduce(r.next_u64());
                let (c, _) = dpf
                    .gen_corrections(inw, alpha, [root, r.next_u64() as u128])
                    .unwrap();
                BitDpfKey::new(Party::P0, root, c)
            })
            .collect();
        let encoded: Vec<u8> = singles
            .iter()
            .flat_map(|k| k.corrections().to_bytes())
            .collect();
        let one = BitDpfCorrections::OUT_BITS;
        assert_eq!(
            BitDpfKeys::decode(Party::P0, &roots, &encoded, inw, one).unwrap(),
            BitDpfKeys::from_keys(&singles).unwrap()
        );
        assert!(BitDpfKeys::decode(Party::P0, &roots, &encoded[1..], inw, one).is_err());
        assert!(BitDpfKeys::decode(Party::P0, &roots, &encoded, inw, w(2)).is_err());
    }
    let (a, _) = dpf.gen_keys(w(8), 1, &mut r).unwrap();
    let (b, _) = dpf.gen_keys(w(9), 1, &mut r).unwrap();
    assert!(matches!(
        BitDpfKeys::from_keys(&[a, b]),
        Err(Error::ShapeMismatch(_))
    ));
    let (big, _) = dpf.gen_keys(w(21), 3, &mut r).unwrap();
    assert_eq!(
        dpf.eval_full_domain(&big).err(),
        Some(Error::DomainTooLarge { bits: 21, max: 20 })
    );
    assert_eq!(
        dpf.gen_keys(w(8), 256, &mut r).err(),
        Some(Error::ValueOutOfRange { bits: 8 })
    );
    let (k, _) = dpf.gen_keys(w(8), 3, &mut r).unwrap();
    assert_eq!(dpf.eval(&k, 256), Err(Error::ValueOutOfRange { bits: 8 }));
    assert_eq!(BitDpf::full_domain_words(w(3)), 1);
    assert_eq!(BitDpf::full_domain_words(w(12)), 64);
    assert_eq!(BitDpf::full_domain_words(BitWidth::FULL), usize::MAX);
}

#[test]
fn bit_dpf_key_encoding_round_trips_with_exact_sizes() {
    let dpf = BitDpf::new();
    let mut r = rng(24);
    // 1 + 16ν + ⌈2ν/8⌉ + ⌈2^k/8⌉ with k = min(n, 7), ν = n − k.
    for (n, len) in [
        (1u32, 2usize),
        (2, 2),
        (3, 2),
        (6, 9),
        (7, 17),
        (8, 34),
        (9, 50),
        (12, 99),
        (16, 164),
        (25, 310),
        (31, 407),
        (64, 1 + 16 * 57 + 15 + 16),
    ] {
        let one = BitDpfCorrections::OUT_BITS;
        assert_eq!(BitDpfCorrections::encoded_len(w(n), one), len, "n={n}");
        let (k0, k1) = dpf
            .gen_keys(w(n), w(n).reduce(r.next_u64()), &mut r)
            .unwrap();
        for k in [&k0, &k1] {
            let b = k.to_bytes();
            assert_eq!(b.len(), BitDpfKey::encoded_len(w(n), one));
            assert_eq!(&BitDpfKey::from_bytes(&b).unwrap(), k);
            let via_postcard: BitDpfKey =
                postcard::from_bytes(&postcard::to_allocvec(k).unwrap()).unwrap();
            assert_eq!(&via_postcard, k);
        }
        let c = k0.corrections();
        assert_eq!(c.in_bits(), w(n));
        assert_eq!(c.out_bits(), one);
        assert_eq!(BitDpfCorrections::from_bytes(&c.to_bytes()).unwrap(), *c);
    }
}

#[test]
fn malformed_bit_dpf_key_bytes_are_rejected() {
    let dpf = BitDpf::new();
    let mut r = rng(25);
    let (k0, _) = dpf.gen_keys(w(10), 77, &mut r).unwrap();
    let good = k0.corrections().to_bytes();
    for len in 0..good.len() {
        assert!(matches!(
            BitDpfCorrections::from_bytes(&good[..len]),
            Err(Error::MalformedKey(_))
        ));
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        BitDpfCorrections::from_bytes(&longer),
        Err(Error::MalformedKey("trailing bytes after the key"))
    );
    let corrupt = |bytes: &[u8], i: usize, v: u8| {
        let mut b = bytes.to_vec();
        b[i] = v;
        BitDpfCorrections::from_bytes(&b)
    };
    assert!(corrupt(&good, 0, 0).is_err(), "input width 0");
    assert!(corrupt(&good, 0, 65).is_err(), "input width 65");
    assert!(
        corrupt(&good, 0, 11).is_err(),
        "input width changes the length"
    );
    assert!(
        corrupt(&good, 1, good[1] | 1).is_err(),
        "seed with its control bit set"
    );
    // n = 10: 3 levels, 6 control bits in one byte; the top two are padding.
    let ctl = 1 + 3 * 16;
    assert_eq!(
        corrupt(&good, ctl, good[ctl] | 0x80),
        Err(Error::MalformedKey(
            "padding of the control bits is not zero"
        ))
    );
    // n = 2: a 4-bit final block in one byte; the top four bits are padding.
    let (k2, _) = dpf.gen_keys(w(2), 1, &mut r).unwrap();
    let b2 = k2.corrections().to_bytes();
    assert_eq!(b2.len(), 2);
    assert_eq!(
        corrupt(&b2, 1, b2[1] | 0x10),
        Err(Error::MalformedKey(
            "padding of the final block is not zero"
        ))
    );
    assert!(postcard::from_bytes::<BitDpfKey>(&[0xff, 0xff, 0xff]).is_err());
}
