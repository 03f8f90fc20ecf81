//! Algebraic laws of the ring, the shares and the FSS schemes, as property tests.

use proptest::prelude::*;
use securerouter_core::fss::BitDpf;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_core::share::{SeededShareStream, reconstruct, split};

fn seed_strategy() -> impl Strategy<Value = Seed> {
    any::<[u8; 16]>().prop_map(Seed::from_bytes)
}

proptest! {
    #[test]
    fn split_then_reconstruct_round_trips(x in prop::collection::vec(any::<u64>(), 0..64), seed in seed_strategy()) {
        let mut rng = AesCtr::new(&seed, Domain(9));
        let (mut s0, mut s1, mut out) = (vec![0; x.len()], vec![0; x.len()], vec![0; x.len()]);
        split(&x, &mut rng, &mut s0, &mut s1).unwrap();
        reconstruct(&s0, &s1, &mut out).unwrap();
        prop_assert_eq!(out, x);
    }

    /// The seeded split is the plain split driven by the seed's input-share stream: so its
    /// shares have exactly the plain split's distribution, given a secure PRG.
    #[test]
    fn seeded_split_is_plain_split_on_the_seed_stream(x in prop::collection::vec(any::<u64>(), 1..64), seed in seed_strategy()) {
        let mut rng = AesCtr::new(&seed, Domain::INPUT_SHARE);
        let (mut p0, mut p1) = (vec![0; x.len()], vec![0; x.len()]);
        split(&x, &mut rng, &mut p0, &mut p1).unwrap();

        let mut s1 = vec![0; x.len()];
        SeededShareStream::new(&seed).split_row(&x, &mut s1).unwrap();
        let mut s0 = vec![0; x.len()];
        SeededShareStream::new(&seed).expand_row(&mut s0);
        prop_assert_eq!(&s0, &p0);
        prop_assert_eq!(&s1, &p1);
        let mut out = vec![0; x.len()];
        reconstruct(&s0, &s1, &mut out).unwrap();
        prop_assert_eq!(out, x);
    }

    #[test]
    fn fixed_point_error_is_at_most_one_ulp(f in 0u32..=40, width in 48u32..=64, unit in -1.0f64..1.0) {
        let fp = FixedPoint::new(f, BitWidth::new(width).unwrap()).unwrap();
        let x = unit * fp.max_abs() * 0.999;
        let back = fp.decode(fp.encode(x).unwrap());
        prop_assert!((back - x).abs() <= 1.0 / fp.scale(), "x={} back={} f={}", x, back, f);
    }

    #[test]
    fn fixed_point_never_wraps(f in 0u32..=20, width in 24u32..=64, mag in 1.0f64..1e30) {
        let fp = FixedPoint::new(f, BitWidth::new(width).unwrap()).unwrap();
        for x in [mag, -mag] {
            match fp.encode(x) {
                // Whatever encodes decodes to the same sign and within one ulp.
                Ok(v) => prop_assert!((fp.decode(v) - x).abs() <= 1.0 / fp.scale()),
                Err(_) => prop_assert!(x.abs() >= fp.max_abs() - 1.0 / fp.scale()),
            }
        }
    }

    #[test]
    fn reduction_is_a_ring_homomorphism(a in any::<u64>(), b in any::<u64>(), n in 1u32..=64) {
        let w = BitWidth::new(n).unwrap();
        prop_assert_eq!(w.reduce(a.wrapping_add(b)), w.add(w.reduce(a), w.reduce(b)));
        prop_assert_eq!(w.reduce(a.wrapping_mul(b)), w.mul(w.reduce(a), w.reduce(b)));
        prop_assert_eq!(w.reduce(a.wrapping_sub(b)), w.sub(w.reduce(a), w.reduce(b)));
        prop_assert_eq!(w.reduce(a.wrapping_neg()), w.neg(w.reduce(a)));
        // Reducing twice through a narrower width is reducing once.
        let m = BitWidth::new(n.div_ceil(2)).unwrap();
        prop_assert_eq!(m.reduce(w.reduce(a)), m.reduce(a));
    }

    #[cfg(feature = "dcf")]
    #[test]
    fn dcf_shares_reconstruct_the_comparison(n in 1u32..=64, l in 1u32..=64, a in any::<u64>(), x in any::<u64>(), b in any::<u64>(), seed in seed_strategy()) {
        let (inw, outw) = (BitWidth::new(n).unwrap(), BitWidth::new(l).unwrap());
        let (alpha, x, beta) = (inw.reduce(a), inw.reduce(x), outw.reduce(b));
        let dcf = securerouter_core::fss::Dcf::new();
        let mut rng = AesCtr::new(&seed, Domain(1));
        let (k0, k1) = dcf.gen_keys(inw, outw, alpha, beta, &mut rng).unwrap();
        for x in [x, alpha, alpha.saturating_sub(1)] {
            let got = outw.add(dcf.eval(&k0, x).unwrap(), dcf.eval(&k1, x).unwrap());
            prop_assert_eq!(got, if x < alpha { beta } else { 0 });
        }
    }

    #[cfg(feature = "dpf")]
    #[test]
    fn dpf_shares_reconstruct_the_point(n in 1u32..=64, l in 1u32..=64, a in any::<u64>(), x in any::<u64>(), b in any::<u64>(), seed in seed_strategy()) {
        let (inw, outw) = (BitWidth::new(n).unwrap(), BitWidth::new(l).unwrap());
        let (alpha, x, beta) = (inw.reduce(a), inw.reduce(x), outw.reduce(b));
        let dpf = securerouter_core::fss::Dpf::new();
        let mut rng = AesCtr::new(&seed, Domain(2));
        let (k0, k1) = dpf.gen_keys(inw, outw, alpha, beta, &mut rng).unwrap();
        for x in [x, alpha] {
            let got = outw.add(dpf.eval(&k0, x).unwrap(), dpf.eval(&k1, x).unwrap());
            prop_assert_eq!(got, if x == alpha { beta } else { 0 });
        }
    }

    #[test]
    fn bit_dpf_shares_xor_to_the_point(n in 1u32..=64, a in any::<u64>(), x in any::<u64>(), seed in seed_strategy()) {
        let inw = BitWidth::new(n).unwrap();
        let (alpha, x) = (inw.reduce(a), inw.reduce(x));
        let dpf = BitDpf::new();
        let mut rng = AesCtr::new(&seed, Domain(3));
        let (k0, k1) = dpf.gen_keys(inw, alpha, &mut rng).unwrap();
        for x in [x, alpha, alpha ^ 1] {
            let got = dpf.eval(&k0, x).unwrap() ^ dpf.eval(&k1, x).unwrap();
            prop_assert_eq!(got, x == alpha);
        }
    }
}
