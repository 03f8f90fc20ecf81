//! DCF correctness (feature `dcf`): exhaustive on small domains, random at n = 64, batches, and
//! the key encoding.

use securerouter_core::Error;
use securerouter_core::fss::{Corrections, Dcf, DcfCorrections, DcfKey, DcfKeys, KeyBatch};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;

fn rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes([0x42; 16]), Domain(tag))
}

fn w(bits: u32) -> BitWidth {
    BitWidth::new(bits).unwrap()
}

/// For every n ≤ 8 (and n = 10 on a sample of α), every α and every x: the two DCF shares add
/// up to β·[x < α] in Z_2^l, at several output widths.
#[test]
fn dcf_exhaustive_small_domains() {
    let dcf = Dcf::new();
    let mut r = rng(1);
    for n in 1..=10u32 {
        let inw = w(n);
        let alphas: Vec<u64> = if n <= 8 {
            (0..1u64 << n).collect()
        } else {
            // Every x is still checked; α covers both ends and a spread of the middle.
            let max = (1u64 << n) - 1;
            let mut a = vec![0, 1, max - 1, max];
            a.extend((0..12).map(|_| r.next_u64() & max));
            a
        };
        for &out in &[1u32, 7, 32, 64] {
            let outw = w(out);
            for &alpha in &alphas {
                let beta = outw.reduce(r.next_u64()) | 1; // never 0, so a bug can't hide
                let (k0, k1) = dcf.gen_keys(inw, outw, alpha, beta, &mut r).unwrap();
                let f0 = dcf.eval_full_domain(&k0).unwrap();
                let f1 = dcf.eval_full_domain(&k1).unwrap();
                for x in 0..1u64 << n {
                    let want = if x < alpha { beta } else { 0 };
                    let got = outw.add(f0[x as usize], f1[x as usize]);
                    assert_eq!(got, want, "n={n} l={out} alpha={alpha} x={x}");
                    // Single-point evaluation agrees with the full-domain walk.
                    if x % 7 == 0 || x == alpha {
                        assert_eq!(dcf.eval(&k0, x).unwrap(), f0[x as usize]);
                        assert_eq!(dcf.eval(&k1, x).unwrap(), f1[x as usize]);
                    }
                }
            }
        }
    }
}

/// n = 64: random α and x, plus x at α-1, α, α+1 and the domain ends.
#[test]
fn dcf_random_64_bit() {
    let dcf = Dcf::new();
    let mut r = rng(3);
    let full = BitWidth::FULL;
    for round in 0..200 {
        let alpha = match round {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << 63,
            _ => r.next_u64(),
        };
        let beta = r.next_u64() | 1;
        let (c0, c1) = dcf.gen_keys(full, full, alpha, beta, &mut r).unwrap();
        let mut xs = vec![
            0,
            u64::MAX,
            alpha,
            alpha.wrapping_sub(1),
            alpha.wrapping_add(1),
        ];
        xs.extend((0..20).map(|_| r.next_u64()));
        for x in xs {
            let lt = dcf
                .eval(&c0, x)
                .unwrap()
                .wrapping_add(dcf.eval(&c1, x).unwrap());
            assert_eq!(lt, if x < alpha { beta } else { 0 }, "alpha={alpha} x={x}");
        }
    }
}

#[test]
fn out_of_range_inputs_are_errors() {
    let dcf = Dcf::new();
    let mut r = rng(4);
    assert_eq!(
        dcf.gen_keys(w(8), w(8), 256, 1, &mut r).err(),
        Some(Error::ValueOutOfRange { bits: 8 })
    );
    assert!(dcf.gen_keys(w(8), w(4), 3, 16, &mut r).is_err());
    let (k0, _) = dcf.gen_keys(w(8), w(8), 3, 1, &mut r).unwrap();
    assert_eq!(dcf.eval(&k0, 256), Err(Error::ValueOutOfRange { bits: 8 }));
    let (big, _) = dcf.gen_keys(w(21), w(8), 3, 1, &mut r).unwrap();
    assert_eq!(
        dcf.eval_full_domain(&big).err(),
        Some(Error::DomainTooLarge { bits: 21, max: 20 })
    );
}

#[test]
fn key_encoding_round_trips_with_exact_sizes() {
    let dcf = Dcf::new();
    let mut r = rng(5);
    for (n, l) in [(1, 1), (16, 64), (32, 64), (64, 64), (12, 20), (64, 1)] {
        let (k0, k1) = dcf.gen_keys(w(n), w(l), 1, 1, &mut r).unwrap();
        for k in [&k0, &k1] {
            let b = k.to_bytes();
            assert_eq!(b.len(), DcfKey::encoded_len(w(n), w(l)));
            assert_eq!(&DcfKey::from_bytes(&b).unwrap(), k);
            let via_postcard: DcfKey =
                postcard::from_bytes(&postcard::to_allocvec(k).unwrap()).unwrap();
            assert_eq!(&via_postcard, k);
        }
        let c = k0.corrections().to_bytes();
        assert_eq!(DcfCorrections::from_bytes(&c).unwrap(), *k0.corrections());
    }
    // A whole key: 17 + 2 + n·(16 + 8) + ⌈2n/8⌉ + 8 at l = 64; the shared corrections are all
    // but the 17 bytes of party and root.
    assert_eq!(DcfKey::encoded_len(w(16), BitWidth::FULL), 415);
    assert_eq!(DcfKey::encoded_len(w(32), BitWidth::FULL), 803);
    assert_eq!(DcfKey::encoded_len(w(64), BitWidth::FULL), 1579);
    for (n, shared) in [(16, 398), (32, 786), (64, 1562)] {
        assert_eq!(DcfCorrections::encoded_len(w(n), BitWidth::FULL), shared);
    }
}

#[test]
fn malformed_key_bytes_are_rejected() {
    let dcf = Dcf::new();
    let mut r = rng(6);
    let (k0, _) = dcf.gen_keys(w(12), w(20), 77, 5, &mut r).unwrap();
    let good = k0.to_bytes();
    // Every truncation fails, and so does any extension.
    for len in 0..good.len() {
        assert!(matches!(
            DcfKey::from_bytes(&good[..len]),
            Err(Error::MalformedKey(_))
        ));
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        DcfKey::from_bytes(&longer),
        Err(Error::MalformedKey("trailing bytes after the key"))
    );
    let corrupt = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        DcfKey::from_bytes(&b)
    };
    assert!(corrupt(0, 2).is_err(), "party byte 2");
    assert!(corrupt(17, 0).is_err(), "input width 0");
    assert!(corrupt(17, 65).is_err(), "input width 65");
    assert!(corrupt(18, 0).is_err(), "output width 0");
    // A changed input width changes the expected length.
    assert!(corrupt(17, 13).is_err());
    // Seed correction with its control bit set.
    assert!(corrupt(19, good[19] | 1).is_err());
    // A 20-bit value word with bits above bit 19 set (third byte of the first value word).
    let first_value = 19 + 12 * 16;
    assert!(corrupt(first_value + 2, 0xff).is_err());
    // Padding bits of the control bits (24 bits used of 24: none) — use n = 3 for padding.
    let (k3, _) = dcf.gen_keys(w(3), w(8), 5, 1, &mut r).unwrap();
    let mut b3 = k3.to_bytes();
    let ctl = 19 + 3 * 16 + 3;
    b3[ctl] |= 0x80;
    assert_eq!(
        DcfKey::from_bytes(&b3),
        Err(Error::MalformedKey(
            "padding of the control bits is not zero"
        ))
    );
    // postcard with garbage inside the byte string is a deserialisation error, not a panic.
    let mut pc = postcard::to_allocvec(&k0).unwrap();
    let last = pc.len() - 1;
    pc[last] = 0xff;
    assert!(postcard::from_bytes::<DcfKey>(&pc).is_err());
    assert!(postcard::from_bytes::<DcfKey>(&[0xff, 0xff, 0xff]).is_err());
}

#[test]
fn batched_dcf_evaluation_equals_single_evaluation() {
    let dcf = Dcf::new();
    let mut r = rng(7);
    // 300 key pairs: crosses the evaluation chunk of 128 and leaves a partial one.
    let n = w(40);
    let mut pairs = Vec::new();
    let mut xs = Vec::new();
    for _ in 0..300 {
        let alpha = n.reduce(r.next_u64());
        pairs.push(dcf.gen_keys(n, w(64), alpha, r.next_u64(), &mut r).unwrap());
        // Half the points at α or next to it, where the comparison flips.
        xs.push(match r.next_u64() % 4 {
            0 => alpha,
            1 => n.reduce(alpha.wrapping_sub(1)),
            _ => n.reduce(r.next_u64()),
        });
    }
    for party in [0, 1] {
        let keys: Vec<DcfKey> = pairs
            .iter()
            .map(|p| if party == 0 { p.0.clone() } else { p.1.clone() })
            .collect();
        let batch = DcfKeys::from_keys(&keys).unwrap();
        let mut batched = vec![0u64; keys.len()];
        dcf.eval_batch(&batch, &xs, &mut batched).unwrap();
        for i in 0..keys.len() {
            assert_eq!(batched[i], dcf.eval(&keys[i], xs[i]).unwrap(), "key {i}");
        }
        assert!(dcf.eval_batch(&batch, &xs[1..], &mut batched[1..]).is_err());
        let mut bad = xs.clone();
        bad[3] = u64::MAX; // out of Z_2^40
        assert_eq!(
            dcf.eval_batch(&batch, &bad, &mut batched),
            Err(Error::ValueOutOfRange { bits: 40 })
        );
    }
    // A batch holds one party and one pair of widths.
    let (a, b) = pairs[0].clone();
    assert!(matches!(
        DcfKeys::from_keys(&[a.clone(), b]),
        Err(Error::ShapeMismatch(_))
    ));
    let (other, _) = dcf.gen_keys(w(12), w(64), 5, 1, &mut r).unwrap();
    assert!(matches!(
        DcfKeys::from_keys(&[a, other]),
        Err(Error::ShapeMismatch(_))
    ));
    assert!(DcfKeys::from_keys(&[]).is_err());
}

/// The dealer's batched generation writes exactly the encodings of single generation, and a
/// server's batch decoding of them equals gathering the single keys.
#[test]
fn batched_dcf_generation_and_decoding_match_single_keys() {
    let dcf = Dcf::new();
    let mut r = rng(8);
    for (n, l, count) in [(31u32, 1u32, 300usize), (12, 64, 5), (1, 7, 3)] {
        let (inw, outw) = (w(n), w(l));
        let beta = outw.reduce(r.next_u64());
        let alphas: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
        let roots: Vec<[u128; 2]> = (0..count)
            .map(|_| {
                [
                    (r.next_u64() as u128) << 64 | r.next_u64() as u128,
                    (r.next_u64() as u128) << 64 | r.next_u64() as u128,
                ]
            })
            .collect();
        let mut encoded = Vec::new();
        dcf.gen_encoded(inw, outw, &alphas, beta, &roots, &mut encoded)
            .unwrap();
        let singles: Vec<DcfCorrections> = alphas
            .iter()
            .zip(&roots)
            .map(|(&a, &rt)| dcf.gen_corrections(inw, outw, a, beta, rt).unwrap())
            .collect();
        let concatenated: Vec<u8> = singles.iter().flat_map(|c| c.to_bytes()).collect();
        assert_eq!(encoded, concatenated, "n={n} l={l}");

        let p1_roots: Vec<u128> = roots.iter().map(|r| r[1]).collect();
        let decoded = DcfKeys::decode(Party::P1, &p1_roots, &encoded, inw, outw).unwrap();
        let keys: Vec<DcfKey> = singles
            .into_iter()
            .zip(&p1_roots)
            .map(|(c, &root)| DcfKey::new(Party::P1, root, c))
            .collect();
        assert_eq!(decoded, DcfKeys::from_keys(&keys).unwrap());

        // Malformed batches: short, long, or keys of another width.
        let len = DcfCorrections::encoded_len(inw, outw);
        assert!(matches!(
            DcfKeys::decode(Party::P1, &p1_roots, &encoded[1..], inw, outw),
            Err(Error::LengthMismatch { .. })
        ));
        let mut long = encoded.clone();
        long.push(0);
        assert!(DcfKeys::decode(Party::P1, &p1_roots, &long, inw, outw).is_err());
        if n > 1 {
            let narrower = w(n - 1);
            assert!(DcfKeys::decode(Party::P1, &p1_roots, &encoded, narrower, outw).is_err());
        }
        let mut flipped = encoded.clone();
        flipped[(count - 1) * len] ^= 0x40; // the last key's input width
        assert!(matches!(
            DcfKeys::decode(Party::P1, &p1_roots, &flipped, inw, outw),
            Err(Error::MalformedKey(_))
        ));
    }
}
