//! A device streams a BERT-tiny-shaped embedding (128 tokens × 128) as seeded shares; the
//! server side (core, as P0 and P1 run it) reconstructs exactly the fixed-point input, and the
//! upload is one share plus a 16-byte seed.

use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_core::share::{SeededShareStream, reconstruct_in_place};
use securerouter_device::{FixedPointRows, ShareStreamer};
use securerouter_tests::test_rng;

const TOKENS: usize = 128;
const HIDDEN: usize = 128;

#[test]
fn device_stream_reconstructs_on_the_servers() {
    let mut rng = test_rng(1);
    let embedding: Vec<f32> = (0..TOKENS * HIDDEN)
        .map(|_| (rng.next_u64() % 20_000) as f32 / 1000.0 - 10.0)
        .collect();
    let format = FixedPoint::new(12, BitWidth::FULL).unwrap();
    let seed = Seed::random(&mut rng);

    // Device: streams P1's rows; P0 gets only the seed.
    let rows = FixedPointRows::new(&embedding, HIDDEN, format).unwrap();
    let mut device = ShareStreamer::<_, HIDDEN>::new(rows, &seed).unwrap();
    let mut to_p1: Vec<u64> = Vec::new();
    while let Some(row) = device.next_p1_row() {
        to_p1.extend_from_slice(row.unwrap());
    }
    let upload_bytes = Seed::LEN + to_p1.len() * 8;
    assert_eq!(upload_bytes, 16 + TOKENS * HIDDEN * 8);

    // P0 expands its share from the seed (in one go: row boundaries don't matter).
    let mut x = vec![0u64; TOKENS * HIDDEN];
    SeededShareStream::new(&seed).expand_row(&mut x);
    // P1's share alone is not the input.
    let encoded: Vec<u64> = embedding
        .iter()
        .map(|&v| format.encode(v as f64).unwrap())
        .collect();
    let equal = to_p1.iter().zip(&encoded).filter(|(a, b)| a == b).count();
    assert!(equal < 4, "{equal} of P1's words equal the plaintext");

    reconstruct_in_place(&mut x, &to_p1).unwrap();
    assert_eq!(x, encoded);
}
