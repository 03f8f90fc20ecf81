//! Benchmarks of the arithmetic DPF (feature `dpf`): full-domain evaluation at n = 8, 12, 16
//! with 64-bit outputs.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use securerouter_core::fss::Dpf;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use std::hint::black_box;

fn rng() -> AesCtr {
    AesCtr::new(&Seed::from_bytes([3; 16]), Domain(0))
}

fn dpf_full_domain(c: &mut Criterion) {
    let dpf = Dpf::new();
    let mut g = c.benchmark_group("dpf_full_domain");
    for n in [8u32, 12, 16] {
        let w = BitWidth::new(n).unwrap();
        let mut r = rng();
        let (k0, _) = dpf.gen_keys(w, BitWidth::FULL, 5, 1, &mut r).unwrap();
        g.throughput(Throughput::Elements(1 << n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &k0, |b, k| {
            b.iter(|| black_box(dpf.eval_full_domain(k).unwrap()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = dpf_full_domain
}
criterion_main!(benches);
