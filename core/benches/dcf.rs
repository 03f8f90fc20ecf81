//! Benchmarks of the DCF (feature `dcf`): key generation (single and batched), batch decoding
//! and evaluation per element at n = 16, 32, 64 with 64-bit outputs, beside
//! `dpf_compare_batch1024` in `benches/primitives.rs` for the one-bit DPF comparison the gates use.
//! Key sizes are printed alongside (they are exact, asserted in `tests/dcf.rs`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use securerouter_core::fss::{Dcf, DcfKey, DcfKeys, KeyBatch};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use std::hint::black_box;

fn rng() -> AesCtr {
    AesCtr::new(&Seed::from_bytes([3; 16]), Domain(0))
}

fn dcf(c: &mut Criterion) {
    let dcf = Dcf::new();
    let out = BitWidth::FULL;
    for n in [16u32, 32, 64] {
        eprintln!(
            "DCF key size n={n} l=64: {} bytes per party ({} bytes of shared corrections)",
            DcfKey::encoded_len(BitWidth::new(n).unwrap(), out),
            DcfKey::encoded_len(BitWidth::new(n).unwrap(), out) - 17
        );
    }
    let mut g = c.benchmark_group("dcf_gen");
    for n in [16u32, 32, 64] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, &w| {
            b.iter(|| {
                let alpha = w.reduce(r.next_u64());
                black_box(dcf.gen_keys(w, out, alpha, 1, &mut r).unwrap())
            })
        });
    }
    g.finish();

    // The dealer's path: many keys generated together and written as encodings.
    let mut g = c.benchmark_group("dcf_gen_batch1024");
    for n in [16u32, 32, 64] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let alphas: Vec<u64> = (0..1024).map(|_| w.reduce(r.next_u64())).collect();
        let roots: Vec<[u128; 2]> = (0..1024)
            .map(|_| [r.next_u64() as u128, r.next_u64() as u128])
            .collect();
        let mut bytes = Vec::new();
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, &w| {
            b.iter(|| {
                bytes.clear();
                dcf.gen_encoded(w, out, &alphas, 1, &roots, black_box(&mut bytes))
                    .unwrap()
            })
        });
    }
    g.finish();

    // The servers' path: a gate's 1024 encodings decoded into the flat batch.
    let mut g = c.benchmark_group("dcf_decode_batch1024");
    for n in [16u32, 32, 64] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let alphas: Vec<u64> = (0..1024).map(|_| w.reduce(r.next_u64())).collect();
        let roots: Vec<[u128; 2]> = (0..1024)
            .map(|_| [r.next_u64() as u128 & !1, r.next_u64() as u128 | 1])
            .collect();
        let mut bytes = Vec::new();
        dcf.gen_encoded(w, out, &alphas, 1, &roots, &mut bytes)
            .unwrap();
        let p0_roots: Vec<u128> = roots.iter().map(|r| r[0]).collect();
        let mut batch = DcfKeys::new(Party::P0, w, out);
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, _| {
            b.iter(|| batch.decode_into(&p0_roots, black_box(&bytes)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dcf_eval");
    for n in [16u32, 32, 64] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let (k0, _) = dcf
            .gen_keys(w, out, w.reduce(r.next_u64()), 1, &mut r)
            .unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, &w| {
            b.iter(|| black_box(dcf.eval(&k0, w.reduce(r.next_u64())).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dcf_eval_batch1024");
    for n in [16u32, 32, 64] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let keys: Vec<_> = (0..1024)
            .map(|_| {
                dcf.gen_keys(w, out, w.reduce(r.next_u64()), 1, &mut r)
                    .unwrap()
                    .0
            })
            .collect();
        let keys = DcfKeys::from_keys(&keys).unwrap();
        let xs: Vec<u64> = (0..1024).map(|_| w.reduce(r.next_u64())).collect();
        let mut outv = vec![0u64; 1024];
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, _| {
            b.iter(|| dcf.eval_batch(&keys, &xs, black_box(&mut outv)).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = dcf
}
criterion_main!(benches);
