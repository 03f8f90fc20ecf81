//! Arithmetic DPF correctness (feature `dpf`): exhaustive on small domains, random at n = 64,
//! and the key encoding.

use securerouter_core::fss::{Corrections, Dpf, DpfCorrections, DpfKey};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;

fn rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes([0x42; 16]), Domain(tag))
}

fn w(bits: u32) -> BitWidth {
    BitWidth::new(bits).unwrap()
}

/// For every n ≤ 8 (and n = 10 on a sample of α), every α and every x: the two DPF shares add
/// up to β·[x = α] in Z_2^l, at several output widths.
#[test]
fn dpf_exhaustive_small_domains() {
    let dpf = Dpf::new();
    let mut r = rng(2);
    for n in 1..=10u32 {
        let inw = w(n);
        let alphas: Vec<u64> = if n <= 8 {
            (0..1u64 << n).collect()
        } else {
            let max = (1u64 << n) - 1;
            let mut a = vec![0, max];
            a.extend((0..12).map(|_| r.next_u64() & max));
            a
        };
        for &out in &[1u32, 16, 64] {
            let outw = w(out);
            for &alpha in &alphas {
                let beta = outw.reduce(r.next_u64()) | 1;
                let (k0, k1) = dpf.gen_keys(inw, outw, alpha, beta, &mut r).unwrap();
                let f0 = dpf.eval_full_domain(&k0).unwrap();
                let f1 = dpf.eval_full_domain(&k1).unwrap();
                for x in 0..1u64 << n {
                    let want = if x == alpha { beta } else { 0 };
                    assert_eq!(outw.add(f0[x as usize], f1[x as usize]), want);
                    if x % 5 == 0 || x == alpha {
                        assert_eq!(dpf.eval(&k0, x).unwrap(), f0[x as usize]);
                        assert_eq!(dpf.eval(&k1, x).unwrap(), f1[x as usize]);
                    }
                }
            }
        }
    }
}

/// n = 64: random α and x, plus x at α-1, α, α+1 and the domain ends.
#[test]
fn dpf_random_64_bit() {
    let dpf = Dpf::new();
    let mut r = rng(9);
    let full = BitWidth::FULL;
    for round in 0..200 {
        let alpha = match round {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << 63,
            _ => r.next_u64(),
        };
        let beta = r.next_u64() | 1;
        let (p0, p1) = dpf.gen_keys(full, full, alpha, beta, &mut r).unwrap();
        let mut xs = vec![
            0,
            u64::MAX,
            alpha,
            alpha.wrapping_sub(1),
            alpha.wrapping_add(1),
        ];
        xs.extend((0..20).map(|_| r.next_u64()));
        for x in xs {
            let eq = dpf
                .eval(&p0, x)
                .unwrap()
                .wrapping_add(dpf.eval(&p1, x).unwrap());
            assert_eq!(eq, if x == alpha { beta } else { 0 }, "alpha={alpha} x={x}");
        }
    }
}

#[test]
fn key_encoding_round_trips_with_exact_sizes() {
    let dpf = Dpf::new();
    let mut r = rng(5);
    for (n, l) in [(1, 1), (16, 64), (32, 64), (64, 64), (12, 20), (64, 1)] {
        let (p0, p1) = dpf.gen_keys(w(n), w(l), 0, 1, &mut r).unwrap();
        for k in [&p0, &p1] {
            let b = k.to_bytes();
            assert_eq!(b.len(), DpfKey::encoded_len(w(n), w(l)));
            assert_eq!(&DpfKey::from_bytes(&b).unwrap(), k);
            let via_postcard: DpfKey =
                postcard::from_bytes(&postcard::to_allocvec(k).unwrap()).unwrap();
            assert_eq!(&via_postcard, k);
        }
        let c = p0.corrections().to_bytes();
        assert_eq!(DpfCorrections::from_bytes(&c).unwrap(), *p0.corrections());
    }
    // 17 + 2 + 16n + ⌈2n/8⌉ + ⌈l/8⌉.
    assert_eq!(
        DpfKey::encoded_len(w(16), BitWidth::FULL),
        17 + 2 + 256 + 4 + 8
    );
    assert_eq!(DpfKey::encoded_len(w(64), w(1)), 17 + 2 + 1024 + 16 + 1);
}
