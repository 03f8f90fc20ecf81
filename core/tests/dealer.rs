//! The dealer's seed-compressed correlations reconstruct to valid correlations, and each server
//! rebuilds its part from its own seed plus (for P1 only) the dealer's corrections. The optional
//! correlations (features `triples`, `dcf`, `dpf`) join the mixed session when enabled.

use securerouter_core::Error;
use securerouter_core::dealer::{Dealer, PartyCorrelations};
use securerouter_core::fss::BitDpf;
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;

fn setup() -> (Dealer, PartyCorrelations, PartyCorrelations) {
    let master = Seed::from_bytes(*b"dealer-master-01");
    let p0 = PartyCorrelations::new(Party::P0, &Dealer::party_seed(&master, Party::P0));
    let p1 = PartyCorrelations::new(Party::P1, &Dealer::party_seed(&master, Party::P1));
    (Dealer::new(&master), p0, p1)
}

#[test]
fn a_session_of_mixed_correlations_reconstructs() {
    let (mut dealer, mut p0, mut p1) = setup();
    let w12 = BitWidth::new(12).unwrap();

    // Masks: r = share0 + share1, nothing sent.
    let mut r = [0u64; 9];
    dealer.masks(&mut r);
    let (mut r0, mut r1) = ([0u64; 9], [0u64; 9]);
    p0.mask_shares(&mut r0);
    p1.mask_shares(&mut r1);
    for i in 0..9 {
        assert_eq!(r0[i].wrapping_add(r1[i]), r[i]);
    }
    assert_ne!(r0, r1);

    // Chosen values: P0's share from its stream, P1's sent.
    let v: Vec<u64> = (0..7).map(|i| w12.reduce(i * 1000 + 17)).collect();
    let sent = dealer.share_values(&v, w12);
    let v0 = p0.value_shares(7, w12, None).unwrap();
    let v1 = p1.value_shares(7, w12, Some(&sent)).unwrap();
    for i in 0..7 {
        assert_eq!(w12.add(v0[i], v1[i]), v[i]);
    }

    // Pseudorandom pairs in Z_2^12: nothing sent.
    let mut pr = [0u64; 5];
    dealer.pseudorandom_pair(&mut pr, w12);
    let (mut pr0, mut pr1) = ([0u64; 5], [0u64; 5]);
    p0.pseudorandom_shares(&mut pr0, w12);
    p1.pseudorandom_shares(&mut pr1, w12);
    for i in 0..5 {
        assert_eq!(w12.add(pr0[i], pr1[i]), pr[i]);
    }

    // Beaver triples: only P1's c-shares travel.
    #[cfg(feature = "triples")]
    {
        let c1 = dealer.beaver_triples(50);
        let t0 = p0.beaver_triples(50, None).unwrap();
        let t1 = p1.beaver_triples(50, Some(&c1)).unwrap();
        for i in 0..50 {
            let a = t0.a[i].wrapping_add(t1.a[i]);
            let b = t0.b[i].wrapping_add(t1.b[i]);
            assert_eq!(t0.c[i].wrapping_add(t1.c[i]), a.wrapping_mul(b));
        }
    }

    // DCF with a dealer-private α.
    #[cfg(feature = "dcf")]
    {
        let dcf = securerouter_core::fss::Dcf::new();
        let alpha = w12.reduce(dealer.private_u64());
        let corr = dealer.dcf(w12, BitWidth::FULL, alpha, 1).unwrap();
        let k0 = p0.fss_key(corr.clone());
        let k1 = p1.fss_key(corr);
        for x in [0, alpha, alpha.saturating_sub(1), 4095, 1234] {
            let v = dcf
                .eval(&k0, x)
                .unwrap()
                .wrapping_add(dcf.eval(&k1, x).unwrap());
            assert_eq!(v, (x < alpha) as u64);
        }
    }

    // A matrix triple (3×4)·(4×2).
    #[cfg(feature = "triples")]
    {
        let (m, k, n) = (3, 4, 2);
        let cm = dealer.matrix_triple(m, k, n);
        assert_eq!(cm.len(), m * n);
        let a = p0.matrix_triple(m, k, n, None).unwrap();
        let b = p1.matrix_triple(m, k, n, Some(&cm)).unwrap();
        let add = |x: &[u64], y: &[u64]| -> Vec<u64> {
            x.iter().zip(y).map(|(p, q)| p.wrapping_add(*q)).collect()
        };
        let (am, bm, cmat) = (add(&a.a, &b.a), add(&a.b, &b.b), add(&a.c, &b.c));
        for i in 0..m {
            for j in 0..n {
                let want = (0..k).fold(0u64, |s, p| {
                    s.wrapping_add(am[i * k + p].wrapping_mul(bm[p * n + j]))
                });
                assert_eq!(cmat[i * n + j], want);
            }
        }
    }

    // An arithmetic DPF.
    #[cfg(feature = "dpf")]
    {
        let dpf = securerouter_core::fss::Dpf::new();
        let corr = dealer.dpf(w12, BitWidth::FULL, 77, 5).unwrap();
        let f0 = dpf.eval_full_domain(&p0.fss_key(corr.clone())).unwrap();
        let f1 = dpf.eval_full_domain(&p1.fss_key(corr)).unwrap();
        for x in 0..4096usize {
            assert_eq!(f0[x].wrapping_add(f1[x]), if x == 77 { 5 } else { 0 });
        }
    }

    // A one-bit DPF after everything else (the streams stayed in step): the bit the dealer
    // keeps is P1's output at α.
    let (corr, p1_at_alpha) = dealer.bit_dpf(w12, 1234).unwrap();
    let bits = BitDpf::new();
    let e0 = bits.eval_full_domain(&p0.fss_key(corr.clone())).unwrap();
    let e1 = bits.eval_full_domain(&p1.fss_key(corr)).unwrap();
    for x in 0..4096usize {
        let (b0, b1) = ((e0[x / 64] >> (x % 64)) & 1, (e1[x / 64] >> (x % 64)) & 1);
        assert_eq!(b0 ^ b1, (x == 1234) as u64);
        if x == 1234 {
            assert_eq!(b1 == 1, p1_at_alpha);
        }
    }
}

#[test]
fn misuse_is_an_error() {
    let (mut dealer, mut p0, mut p1) = setup();
    let w8 = BitWidth::new(8).unwrap();
    let c = dealer.share_values(&[1, 2, 3, 4], w8);
    assert!(matches!(
        p0.value_shares(4, w8, Some(&c)),
        Err(Error::ProtocolMisuse(_))
    ));
    assert!(matches!(
        p1.value_shares(4, w8, None),
        Err(Error::ProtocolMisuse(_))
    ));
    assert_eq!(
        p1.linear_value_shares(4, w8, Some(&c[..3])),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 3
        })
    );
}

#[cfg(feature = "triples")]
#[test]
fn triples_misuse_is_an_error() {
    let (mut dealer, mut p0, mut p1) = setup();
    let c1 = dealer.beaver_triples(4);
    assert!(matches!(
        p0.beaver_triples(4, Some(&c1)),
        Err(Error::ProtocolMisuse(_))
    ));
    assert!(matches!(
        p1.beaver_triples(4, None),
        Err(Error::ProtocolMisuse(_))
    ));
    assert_eq!(
        p1.beaver_triples(4, Some(&c1[..3])),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 3
        })
    );
}

#[test]
fn party_seeds_differ_and_sessions_differ() {
    let m1 = Seed::from_bytes([1; 16]);
    let m2 = Seed::from_bytes([2; 16]);
    assert_ne!(
        Dealer::party_seed(&m1, Party::P0),
        Dealer::party_seed(&m1, Party::P1)
    );
    assert_ne!(
        Dealer::party_seed(&m1, Party::P0),
        Dealer::party_seed(&m2, Party::P0)
    );
    let (mut a, mut b) = (Dealer::new(&m1), Dealer::new(&m2));
    let (mut ra, mut rb) = ([0u64; 3], [0u64; 3]);
    a.masks(&mut ra);
    b.masks(&mut rb);
    assert_ne!(ra, rb);
}
