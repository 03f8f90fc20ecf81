//! Benchmarks of the core primitives the gates run: one-bit DPF comparison, sign window, key
//! decoding and full-domain evaluation, the lookup kernel, AES-CTR PRG throughput, and the
//! packing of opened elements. The optional DCF and arithmetic DPF have their own benches
//! (`benches/dcf.rs`, `benches/dpf.rs`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use securerouter_core::fss::{BitDpf, BitDpfKeys, KeyBatch};
use securerouter_core::gate::{CpuKernels, Kernels, pack, unpack};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use std::hint::black_box;

fn rng() -> AesCtr {
    AesCtr::new(&Seed::from_bytes([3; 16]), Domain(0))
}

/// P0's one-bit DPF keys of n bits at random points, batched, and random inputs.
fn p0_keys_and_inputs(dpf: &BitDpf, n: u32, count: usize) -> (BitDpfKeys, Vec<u64>) {
    let w = BitWidth::new(n).unwrap();
    let mut r = rng();
    let keys: Vec<_> = (0..count)
        .map(|_| dpf.gen_keys(w, w.reduce(r.next_u64()), &mut r).unwrap().0)
        .collect();
    let xs = (0..count).map(|_| w.reduce(r.next_u64())).collect();
    (BitDpfKeys::from_keys(&keys).unwrap(), xs)
}

/// SIGMA's comparison: the prefix parity of one-bit DPF keys at the widths DReLU uses (n − 1 for
/// 26- and 32-bit wires).
fn dpf_compare(c: &mut Criterion) {
    let dpf = BitDpf::new();
    let mut g = c.benchmark_group("dpf_compare_batch1024");
    for n in [16u32, 21, 25, 31] {
        let (keys, xs) = p0_keys_and_inputs(&dpf, n, 1024);
        let mut outv = vec![0u64; 1024];
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                dpf.eval_prefix_parity_batch(&keys, &xs, black_box(&mut outv))
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// GeLU's kernel: a 21-bit comparison and a window of 2^7 or 2^10 positions off one key each
/// (the comparison alone: `dpf_compare_batch1024/21`).
fn sign_window(c: &mut Criterion) {
    let dpf = BitDpf::new();
    let mut g = c.benchmark_group("sign_window_batch1024");
    let (keys, xs) = p0_keys_and_inputs(&dpf, 21, 1024);
    let mut parity = vec![0u64; 1024];
    g.throughput(Throughput::Elements(1024));
    for window_bits in [7u32, 10] {
        let mut bits = vec![0u64; 1024 << (window_bits - 6)];
        g.bench_with_input(
            BenchmarkId::new("n21_window", window_bits),
            &window_bits,
            |b, &wb| {
                b.iter(|| {
                    dpf.eval_sign_window_range(
                        &keys,
                        0..1024,
                        wb,
                        &xs,
                        &mut parity,
                        black_box(&mut bits),
                    )
                    .unwrap()
                })
            },
        );
    }
    g.finish();
}

/// The servers' path for comparison and lookup keys: 1024 encodings of one-bit DPF keys
/// decoded into the flat batch (at DReLU's 25 bits and a lookup's 8).
fn bit_dpf_decode(c: &mut Criterion) {
    let dpf = BitDpf::new();
    let mut g = c.benchmark_group("bit_dpf_decode_batch1024");
    for n in [8u32, 25] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let alphas: Vec<u64> = (0..1024).map(|_| w.reduce(r.next_u64())).collect();
        let roots: Vec<[u128; 2]> = (0..1024)
            .map(|_| [r.next_u64() as u128 & !1, r.next_u64() as u128 | 1])
            .collect();
        let (mut bytes, mut signs) = (Vec::new(), Vec::new());
        dpf.gen_encoded(w, &alphas, &roots, &mut bytes, &mut signs)
            .unwrap();
        let p0_roots: Vec<u128> = roots.iter().map(|r| r[0]).collect();
        let mut batch = BitDpfKeys::new(Party::P0, w, BitWidth::new(1).unwrap());
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, _| {
            b.iter(|| batch.decode_into(&p0_roots, black_box(&bytes)).unwrap())
        });
    }
    g.finish();
}

fn bit_dpf_full_domain(c: &mut Criterion) {
    let dpf = BitDpf::new();
    let mut g = c.benchmark_group("bit_dpf_full_domain");
    for n in [8u32, 12, 16] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let count = (1usize << 16 >> n).max(4);
        let keys: Vec<_> = (0..count)
            .map(|_| dpf.gen_keys(w, w.reduce(r.next_u64()), &mut r).unwrap().0)
            .collect();
        let keys = BitDpfKeys::from_keys(&keys).unwrap();
        let mut out = vec![0u64; count * BitDpf::full_domain_words(w)];
        g.throughput(Throughput::Elements((count as u64) << n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, k| {
            b.iter(|| dpf.eval_full_domain_batch(k, black_box(&mut out)).unwrap())
        });
    }
    g.finish();
}

/// The lookup gate's local work per element: full-domain bits and the masked dot product.
fn lookup_kernel(c: &mut Criterion) {
    let dpf = BitDpf::new();
    let kernels = CpuKernels::new();
    let mut g = c.benchmark_group("lookup_kernel");
    for (n, count) in [(8u32, 1000usize), (12, 100)] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let keys: Vec<_> = (0..count)
            .map(|_| dpf.gen_keys(w, w.reduce(r.next_u64()), &mut r).unwrap().0)
            .collect();
        let keys = BitDpfKeys::from_keys(&keys).unwrap();
        let xs: Vec<u64> = (0..count).map(|_| w.reduce(r.next_u64())).collect();
        let table: Vec<u64> = (0..1u64 << n).map(|i| i * 3).collect();
        let (mut dot, mut ones) = (vec![0u64; count], vec![0u64; count]);
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, k| {
            b.iter(|| {
                kernels
                    .dpf_lookup(k, &xs, &table, BitWidth::FULL, &mut dot, &mut ones)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn prg(c: &mut Criterion) {
    let mut g = c.benchmark_group("aes_ctr");
    let mut buf = vec![0u8; 1 << 20];
    let mut s = rng();
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("fill_1MiB", |b| b.iter(|| s.fill(black_box(&mut buf))));
    let mut words = vec![0u64; 1 << 17];
    g.bench_function("fill_u64_1MiB", |b| {
        b.iter(|| s.fill_u64(black_box(&mut words)))
    });
    g.finish();
}

/// Packing and unpacking the elements an opening sends (64 Ki of them) at a full, an odd and a
/// byte width.
fn packing(c: &mut Criterion) {
    let mut g = c.benchmark_group("pack");
    let mut r = rng();
    let values: Vec<u64> = (0..1 << 16).map(|_| r.next_u64()).collect();
    g.throughput(Throughput::Elements(values.len() as u64));
    for bits in [64u32, 37, 8] {
        let w = BitWidth::new(bits).unwrap();
        let packed = pack(&values, w);
        g.bench_with_input(BenchmarkId::new("pack", bits), &w, |b, &w| {
            b.iter(|| black_box(pack(black_box(&values), w)))
        });
        g.bench_with_input(BenchmarkId::new("unpack", bits), &w, |b, &w| {
            b.iter(|| black_box(unpack(black_box(&packed), values.len(), w).unwrap()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = dpf_compare, sign_window, bit_dpf_decode, bit_dpf_full_domain, lookup_kernel, prg, packing
}
criterion_main!(benches);
