//! Statistical tests that what one server holds does not depend on the secret.
//!
//! Each test draws many samples for two very different secrets and compares byte histograms:
//! against the uniform distribution and against each other (two-sample chi-square). All
//! randomness comes from fixed seeds, so the tests are deterministic. Thresholds sit at a
//! p-value of about 1e-4 for 255 degrees of freedom (chi-square > 360); each test also runs a
//! deliberately leaky variant as a control and asserts that it is caught.

use securerouter_core::fss::{BitDpf, Corrections};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::{SeededShareStream, split};

const SAMPLES: usize = 20_000;
/// Chi-square critical value for 255 degrees of freedom at p ≈ 1e-4.
const CRITICAL: f64 = 360.0;

/// Histograms of each of the 8 byte positions of a u64.
struct ByteHistograms([[u32; 256]; 8]);

impl ByteHistograms {
    fn of(values: impl Iterator<Item = u64>) -> Self {
        let mut h = [[0u32; 256]; 8];
        for v in values {
            for (pos, byte) in v.to_le_bytes().iter().enumerate() {
                h[pos][*byte as usize] += 1;
            }
        }
        ByteHistograms(h)
    }

    /// Largest chi-square against uniform over the 8 positions.
    fn max_chi2_uniform(&self) -> f64 {
        self.0
            .iter()
            .map(|h| {
                let n: u32 = h.iter().sum();
                let e = n as f64 / 256.0;
                h.iter().map(|&o| (o as f64 - e).powi(2) / e).sum::<f64>()
            })
            .fold(0.0, f64::max)
    }

    /// Largest two-sample chi-square (equal sample sizes) over the 8 positions.
    fn max_chi2_against(&self, other: &Self) -> f64 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .filter(|(x, y)| **x + **y > 0)
                    .map(|(&x, &y)| (x as f64 - y as f64).powi(2) / (x + y) as f64)
                    .sum::<f64>()
            })
            .fold(0.0, f64::max)
    }
}

fn rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes(*b"stat-tests-seed!"), Domain(tag))
}

const SECRET_A: u64 = 0;
const SECRET_B: u64 = 0xdead_beef_0bad_f00d;

#[test]
fn a_single_seeded_share_is_independent_of_the_secret() {
    let mut seeds = rng(1);
    let mut p1_share = |x: u64| {
        let mut s = [0u64];
        SeededShareStream::new(&seeds.next_seed())
            .split_row(&[x], &mut s)
            .unwrap();
        s[0]
    };
    let a = ByteHistograms::of((0..SAMPLES).map(|_| p1_share(SECRET_A)));
    let b = ByteHistograms::of((0..SAMPLES).map(|_| p1_share(SECRET_B)));
    assert!(a.max_chi2_uniform() < CRITICAL, "{}", a.max_chi2_uniform());
    assert!(b.max_chi2_uniform() < CRITICAL, "{}", b.max_chi2_uniform());
    assert!(
        a.max_chi2_against(&b) < CRITICAL,
        "{}",
        a.max_chi2_against(&b)
    );

    // Control: a share masked with only 32 random bits leaks the secret's high bytes.
    let mut r = rng(2);
    let leaky = |x: u64, r: &mut AesCtr| x.wrapping_sub(r.next_u64() >> 32);
    let la = ByteHistograms::of((0..SAMPLES).map(|_| leaky(SECRET_A, &mut r)));
    let lb = ByteHistograms::of((0..SAMPLES).map(|_| leaky(SECRET_B, &mut r)));
    assert!(la.max_chi2_against(&lb) > 10.0 * CRITICAL);
}

/// The seeded split and the plain split (fresh randomness) give P1 the same distribution.
#[test]
fn seeded_and_plain_split_have_the_same_distribution() {
    let mut seeds = rng(3);
    let seeded = ByteHistograms::of((0..SAMPLES).map(|_| {
        let mut s = [0u64];
        SeededShareStream::new(&seeds.next_seed())
            .split_row(&[SECRET_B], &mut s)
            .unwrap();
        s[0]
    }));
    let mut fresh = rng(4);
    let plain = ByteHistograms::of((0..SAMPLES).map(|_| {
        let (mut s0, mut s1) = ([0u64], [0u64]);
        split(&[SECRET_B], &mut fresh, &mut s0, &mut s1).unwrap();
        s1[0]
    }));
    assert!(seeded.max_chi2_against(&plain) < CRITICAL);
}

/// One DCF key's evaluations (what a server computes) look the same for very different α.
#[cfg(feature = "dcf")]
#[test]
fn a_single_dcf_keys_evaluation_is_independent_of_alpha() {
    let dcf = securerouter_core::fss::Dcf::new();
    let n = BitWidth::FULL;
    let mut r = rng(5);
    let x = 1u64 << 62;
    let mut p1_output = |alpha: u64| {
        let (_, k1) = dcf.gen_keys(n, n, alpha, 1, &mut r).unwrap();
        dcf.eval(&k1, x).unwrap()
    };
    // α = 0 makes f(x) = 0 everywhere; α = 2^64 - 1 makes f(x) = 1 at x.
    let a = ByteHistograms::of((0..SAMPLES).map(|_| p1_output(0)));
    let b = ByteHistograms::of((0..SAMPLES).map(|_| p1_output(u64::MAX)));
    assert!(a.max_chi2_uniform() < CRITICAL, "{}", a.max_chi2_uniform());
    assert!(b.max_chi2_uniform() < CRITICAL, "{}", b.max_chi2_uniform());
    assert!(a.max_chi2_against(&b) < CRITICAL);

    // Control: reconstructing (both keys) does depend on α, and the statistic sees it.
    let mut r = rng(6);
    let mut both = |alpha: u64| {
        let (k0, k1) = dcf.gen_keys(n, n, alpha, 1, &mut r).unwrap();
        dcf.eval(&k0, x)
            .unwrap()
            .wrapping_add(dcf.eval(&k1, x).unwrap())
    };
    let ca = ByteHistograms::of((0..2000).map(|_| both(0)));
    let cb = ByteHistograms::of((0..2000).map(|_| both(u64::MAX)));
    assert!(ca.max_chi2_against(&cb) > 10.0 * CRITICAL);
}

/// One server's comparison bits (the prefix parity of its one-bit DPF key, what DReLU opens
/// after masking) look the same for very different α: 64 evaluations at one x per sample are
/// packed into a word, so the byte histograms see the bits of many keys.
#[test]
fn a_single_comparison_keys_evaluation_is_independent_of_alpha() {
    let dpf = BitDpf::new();
    let n = BitWidth::new(25).unwrap();
    let x = 1u64 << 23;
    let sample = |r: &mut AesCtr, alpha: u64, both: bool| -> u64 {
        (0..64).fold(0u64, |word, i| {
            let (k0, k1) = dpf.gen_keys(n, alpha, r).unwrap();
            let mut bit = dpf.eval_prefix_parity(&k1, x).unwrap();
            if both {
                bit ^= dpf.eval_prefix_parity(&k0, x).unwrap();
            }
            word | (bit as u64) << i
        })
    };
    // α = 0 makes [α ≤ x] = 1; α = 2^25 − 1 makes it 0.
    let mut r = rng(9);
    let a = ByteHistograms::of((0..SAMPLES / 8).map(|_| sample(&mut r, 0, false)));
    let b = ByteHistograms::of((0..SAMPLES / 8).map(|_| sample(&mut r, (1 << 25) - 1, false)));
    assert!(a.max_chi2_uniform() < CRITICAL, "{}", a.max_chi2_uniform());
    assert!(b.max_chi2_uniform() < CRITICAL, "{}", b.max_chi2_uniform());
    assert!(a.max_chi2_against(&b) < CRITICAL);
    // Control: both servers' bits together reveal the comparison, and the statistic sees it.
    let ca = ByteHistograms::of((0..2000).map(|_| sample(&mut r, 0, true)));
    let cb = ByteHistograms::of((0..2000).map(|_| sample(&mut r, (1 << 25) - 1, true)));
    assert!(ca.max_chi2_against(&cb) > 10.0 * CRITICAL);
}

/// A single key's correction words (what the dealer sends) look the same for very different α.
#[cfg(all(feature = "dcf", feature = "dpf"))]
#[test]
fn dcf_and_dpf_key_bytes_are_independent_of_alpha() {
    let dcf = securerouter_core::fss::Dcf::new();
    let dpf = securerouter_core::fss::Dpf::new();
    let n = BitWidth::FULL;
    let mut r = rng(7);
    // Sample the first value correction and the final correction of the DCF (uniform words),
    // and the final correction of the DPF.
    let mut sample = |alpha: u64| {
        let (k0, _) = dcf.gen_keys(n, n, alpha, 1, &mut r).unwrap();
        let (p0, _) = dpf.gen_keys(n, n, alpha, 1, &mut r).unwrap();
        let kb = k0.to_bytes();
        let pb = p0.to_bytes();
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
        let values_at = 19 + 64 * 16;
        [
            word(&kb[values_at..values_at + 8]),
            word(&kb[kb.len() - 8..]),
            word(&pb[pb.len() - 8..]),
        ]
    };
    let a: Vec<[u64; 3]> = (0..SAMPLES / 2).map(|_| sample(0)).collect();
    let b: Vec<[u64; 3]> = (0..SAMPLES / 2).map(|_| sample(u64::MAX - 12345)).collect();
    for i in 0..3 {
        let ha = ByteHistograms::of(a.iter().map(|s| s[i]));
        let hb = ByteHistograms::of(b.iter().map(|s| s[i]));
        assert!(
            ha.max_chi2_uniform() < CRITICAL,
            "word {i}: {}",
            ha.max_chi2_uniform()
        );
        assert!(ha.max_chi2_against(&hb) < CRITICAL, "word {i}");
    }
}

/// One-bit DPF corrections (what the lookup gate's dealer sends): the first seed correction and
/// the final 128-bit block, which carries α's low bits, look the same for very different α; a
/// control without P1's conversion in the final block is caught.
#[test]
fn bit_dpf_key_bytes_are_independent_of_alpha() {
    let dpf = BitDpf::new();
    let n = BitWidth::new(12).unwrap();
    let mut r = rng(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    let mut sample = |alpha: u64| {
        let (k0, _) = dpf.gen_keys(n, alpha, &mut r).unwrap();
        let b = k0.corrections().to_bytes();
        let end = b.len();
        [
            // Seed correction bytes 1..=8 (byte 0 holds the cleared control-bit position).
            word(&b[2..10]),
            word(&b[end - 16..end - 8]),
            word(&b[end - 8..]),
        ]
    };
    let a: Vec<[u64; 3]> = (0..SAMPLES / 2).map(|_| sample(0)).collect();
    let b: Vec<[u64; 3]> = (0..SAMPLES / 2).map(|_| sample(4095)).collect();
    for i in 0..3 {
        let ha = ByteHistograms::of(a.iter().map(|s| s[i]));
        let hb = ByteHistograms::of(b.iter().map(|s| s[i]));
        assert!(ha.max_chi2_uniform() < CRITICAL, "word {i}");
        assert!(ha.max_chi2_against(&hb) < CRITICAL, "word {i}");
    }
    // Leaky control: the final block's α bit without the pseudorandom conversions.
    let leak = |alpha: u64| 1u64 << (alpha % 64);
    let ha = ByteHistograms::of((0..2000).map(|_| leak(0)));
    let hb = ByteHistograms::of((0..2000).map(|_| leak(63)));
    assert!(ha.max_chi2_against(&hb) > 10.0 * CRITICAL);
}
