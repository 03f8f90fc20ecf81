//! FSS keys and key batches from the dealer, and the packed openings the other server sends.

use securerouter_core::fss::{
    BitDpf, BitDpfCorrections, BitDpfKey, BitDpfKeys, Corrections, Dcf, DcfCorrections, DcfKey,
    DcfKeys, Dpf, DpfCorrections, DpfKey, FssKey, KeyBatch,
};
use securerouter_core::gate::{pack, unpack};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;

fn rng(k: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes([0x5a; 16]), Domain(k))
}

fn width(bits: u32) -> BitWidth {
    BitWidth::new(bits).expect("a width in 1..=64")
}

/// A value from the input's bytes, for evaluation points.
fn point(data: &[u8]) -> u64 {
    data.iter().fold(0x243f_6a88_85a3_08d3u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A decoded key re-encodes to exactly its input (the encoding is canonical) and evaluates
/// without panicking.
fn check_key<C: Corrections>(bytes: &[u8], eval: impl Fn(&FssKey<C>, u64)) -> bool {
    let Ok(key) = FssKey::<C>::from_bytes(bytes) else {
        return false;
    };
    assert_eq!(
        key.to_bytes(),
        bytes,
        "a decoded key re-encodes differently"
    );
    let c = key.corrections();
    assert_eq!(
        FssKey::<C>::encoded_len(c.in_bits(), c.out_bits()),
        bytes.len(),
        "encoded_len disagrees with the encoding"
    );
    // Through serde (postcard on the wire) the same bytes decode to the same key.
    let wire = postcard::to_allocvec(&key).expect("keys serialize");
    let back: FssKey<C> = postcard::from_bytes(&wire).expect("a serialized key deserializes");
    assert_eq!(back, key);
    let x = point(bytes) & c.in_bits().mask();
    eval(&key, x);
    true
}

fn check_corrections<C: Corrections>(bytes: &[u8]) -> bool {
    let Ok(c) = C::from_bytes(bytes) else {
        return false;
    };
    assert_eq!(
        c.to_bytes(),
        bytes,
        "decoded corrections re-encode differently"
    );
    assert_eq!(C::encoded_len(c.in_bits(), c.out_bits()), bytes.len());
    true
}

/// Input: a selector byte (scheme: DPF, DCF, one-bit DPF; key or bare corrections; through
/// postcard or not), then the encoding.
pub fn fss_key(data: &[u8]) -> bool {
    let Some((&sel, bytes)) = data.split_first() else {
        return false;
    };
    let small = |in_bits: BitWidth| in_bits.bits() <= 10;
    match (sel % 3, (sel / 3) % 3) {
        (0, 0) => check_key::<DpfCorrections>(bytes, |k: &DpfKey, x| {
            let dpf = Dpf::new();
            let y = dpf.eval(k, x).expect("in-range point");
            assert!(k.corrections().out_bits().contains(y));
            if small(k.corrections().in_bits()) {
                let all = dpf.eval_full_domain(k).expect("small domain");
                assert_eq!(all[x as usize], y, "full domain disagrees with eval");
            }
        }),
        (1, 0) => check_key::<DcfCorrections>(bytes, |k: &DcfKey, x| {
            let dcf = Dcf::new();
            let y = dcf.eval(k, x).expect("in-range point");
            assert!(k.corrections().out_bits().contains(y));
            if small(k.corrections().in_bits()) {
                let all = dcf.eval_full_domain(k).expect("small domain");
                assert_eq!(all[x as usize], y, "full domain disagrees with eval");
            }
        }),
        (2, 0) => check_key::<BitDpfCorrections>(bytes, |k: &BitDpfKey, x| {
            let dpf = BitDpf::new();
            let bit = dpf.eval(k, x).expect("in-range point");
            let _ = dpf.eval_prefix_parity(k, x).expect("in-range point");
            if small(k.corrections().in_bits()) {
                let all = dpf.eval_full_domain(k).expect("small domain");
                let got = (all[(x / 64) as usize] >> (x % 64)) & 1 == 1;
                assert_eq!(got, bit, "full domain disagrees with eval");
            }
        }),
        (0, 1) => check_corrections::<DpfCorrections>(bytes),
        (1, 1) => check_corrections::<DcfCorrections>(bytes),
        (2, 1) => check_corrections::<BitDpfCorrections>(bytes),
        // Through postcard: a byte-string length, then the key.
        (0, _) => postcard::from_bytes::<DpfKey>(bytes).is_ok(),
        (1, _) => postcard::from_bytes::<DcfKey>(bytes).is_ok(),
        _ => postcard::from_bytes::<BitDpfKey>(bytes).is_ok(),
    }
}

/// Valid keys and corrections of every scheme at several widths, in every selector's form.
pub fn fss_key_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = rng(1);
    let with = |sel: u8, bytes: &[u8]| [&[sel][..], bytes].concat();
    for (n, l) in [
        (1, 1),
        (3, 8),
        (8, 16),
        (10, 64),
        (16, 37),
        (33, 1),
        (64, 64),
    ] {
        let (n, l) = (width(n), width(l));
        let alpha = 5 & n.mask();
        let (k0, k1) = Dpf::new()
            .gen_keys(n, l, alpha, 7 & l.mask(), &mut r)
            .unwrap();
        out.push(with(0, &k0.to_bytes()));
        out.push(with(0, &k1.to_bytes()));
        out.push(with(3, &k0.corrections().to_bytes()));
        out.push(with(6, &postcard::to_allocvec(&k0).unwrap()));
        let (k0, _) = Dcf::new()
            .gen_keys(n, l, alpha, 3 & l.mask(), &mut r)
            .unwrap();
        out.push(with(1, &k0.to_bytes()));
        out.push(with(4, &k0.corrections().to_bytes()));
        out.push(with(7, &postcard::to_allocvec(&k0).unwrap()));
        let (_, k1) = BitDpf::new().gen_keys(n, alpha, &mut r).unwrap();
        out.push(with(2, &k1.to_bytes()));
        out.push(with(5, &k1.corrections().to_bytes()));
        out.push(with(8, &postcard::to_allocvec(&k1).unwrap()));
    }
    out
}

const BATCH_HEADER: usize = 4;

/// Input: scheme (DCF or one-bit DPF) and party, input width, output width, a count tweak;
/// then the concatenated corrections. A decoded batch must equal the keys decoded one by one.
pub fn fss_key_batch(data: &[u8]) -> bool {
    let Some((header, bytes)) = data.split_first_chunk::<BATCH_HEADER>() else {
        return false;
    };
    let party = if header[0] & 2 == 0 {
        Party::P0
    } else {
        Party::P1
    };
    let (Ok(n), Ok(l)) = (
        BitWidth::new(u32::from(header[1])),
        BitWidth::new(u32::from(header[2])),
    ) else {
        return false;
    };
    match header[0] & 1 {
        0 => check_batch::<DcfKeys>(party, n, l, header[3], bytes, |keys: &[DcfKey]| {
            DcfKeys::from_keys(keys)
        }),
        _ => check_batch::<BitDpfKeys>(party, n, l, header[3], bytes, |keys: &[BitDpfKey]| {
            BitDpfKeys::from_keys(keys)
        }),
    }
}

fn check_batch<B: KeyBatch + PartialEq + std::fmt::Debug>(
    party: Party,
    n: BitWidth,
    l: BitWidth,
    tweak: u8,
    bytes: &[u8],
    gather: impl Fn(&[FssKey<B::Corrections>]) -> Result<B, securerouter_core::Error>,
) -> bool {
    let len = B::Corrections::encoded_len(n, l);
    // Usually the count the bytes imply; now and then one off (must be refused).
    let count = (bytes.len() / len.max(1)).saturating_add(usize::from(tweak % 8 == 7));
    let roots: Vec<u128> = (0..count as u128)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834) & !1)
        .collect();
    let Ok(batch) = B::decode(party, &roots, bytes, n, l) else {
        return false;
    };
    assert_eq!(
        bytes.len(),
        count * len,
        "a batch of the wrong length decoded"
    );
    // The same keys one by one.
    let keys: Vec<FssKey<B::Corrections>> = bytes
        .chunks_exact(len.max(1))
        .zip(&roots)
        .map(|(c, &root)| {
            let c = B::Corrections::from_bytes(c).expect("a key of a decoded batch decodes");
            assert_eq!(c.in_bits(), n, "a key of another input width in the batch");
            FssKey::new(party, root, c)
        })
        .collect();
    if !keys.is_empty() {
        assert_eq!(gather(&keys).expect("keys of one batch gather"), batch);
    }
    // Decoding again into the same batch (memory reuse) gives the same batch.
    let mut again = B::new(party, n, l);
    again
        .decode_into(&roots, bytes)
        .expect("decodes the second time");
    again
        .decode_into(&roots, bytes)
        .expect("decodes into a used batch");
    assert_eq!(again, batch);
    true
}

/// Batches of real keys, as the dealer streams them.
pub fn fss_key_batch_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = rng(2);
    for (n, l, count) in [(8, 16, 3), (16, 64, 2), (1, 1, 4), (40, 12, 1), (12, 64, 5)] {
        let (n, l) = (width(n), width(l));
        for scheme in 0..2u8 {
            let mut seed = vec![scheme | (2 * (count as u8 & 1)), n.bits() as u8, 0, 0];
            seed[2] = if scheme == 0 { l.bits() as u8 } else { 1 };
            for i in 0..count {
                let alpha = (i * 37) & n.mask();
                if scheme == 0 {
                    let (k, _) = Dcf::new().gen_keys(n, l, alpha, 1, &mut r).unwrap();
                    seed.extend(k.corrections().to_bytes());
                } else {
                    let (k, _) = BitDpf::new().gen_keys(n, alpha, &mut r).unwrap();
                    seed.extend(k.corrections().to_bytes());
                }
            }
            out.push(seed);
        }
    }
    out
}

/// Input: the width, a count (u16, little-endian), then the packed bytes. What unpacks must be
/// in range and pack back to the same bytes.
pub fn open_unpack(data: &[u8]) -> bool {
    let Some((header, bytes)) = data.split_first_chunk::<3>() else {
        return false;
    };
    let w = width(u32::from(header[0] % 64) + 1);
    let mut accepted = false;
    // The count given, and the count the length implies.
    let implied = bytes.len() * 8 / w.bits() as usize;
    for count in [
        usize::from(u16::from_le_bytes([header[1], header[2]])),
        implied,
    ] {
        if let Ok(values) = unpack(bytes, count, w) {
            assert_eq!(values.len(), count);
            assert!(
                values.iter().all(|&v| w.contains(v)),
                "an element out of range"
            );
            assert_eq!(
                pack(&values, w),
                bytes,
                "unpacked elements pack differently"
            );
            accepted = true;
        }
    }
    accepted
}

/// Packed openings at every width.
pub fn open_unpack_seeds() -> Vec<Vec<u8>> {
    let mut r = rng(3);
    (1..=64u32)
        .map(|bits| {
            let w = width(bits);
            let count = (bits as usize * 7) % 41 + 1;
            let values: Vec<u64> = (0..count).map(|_| r.next_u64() & w.mask()).collect();
            let mut seed = vec![(bits - 1) as u8];
            seed.extend((count as u16).to_le_bytes());
            seed.extend(pack(&values, w));
            seed
        })
        .collect()
}
