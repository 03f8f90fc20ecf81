//! Fuzzes the pure wire-format decoder of the secure link (`securerouter_host::net::frame`).
//!
//! Input layout: 4 control bytes, then the payload.
//! - control[0..2]: `max_message` (little-endian u16, times 64: up to 4 MiB)
//! - control[2]: the size of the pieces the bytes are fed in (1 + 97·k)
//! - control[3]: bit 0 selects the mode, bits 1.. a repeat count for round trips (127: to
//!   ~150 KB, several chunks)
//!
//! Mode 0 feeds the payload as raw wire bytes: the decoder must consume bytes or fail with an
//! error (never panic), respect `max_message`, and stay failed once failed.
//! Mode 1 splits the payload into messages (repeated to reach multi-chunk sizes), encodes them
//! and decodes them in pieces: the messages must come back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securerouter_host::net::frame::{FrameDecoder, PlainCodec, encode_message};

fuzz_target!(|data: &[u8]| {
    let Some((control, payload)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([control[0], control[1]])) * 64;
    let piece = 1 + usize::from(control[2]) * 97;
    if control[3] & 1 == 0 {
        raw(payload, max, piece);
    } else {
        round_trip(payload, piece, usize::from(control[3] >> 1));
    }
});

fn raw(mut input: &[u8], max: usize, piece: usize) {
    let mut decoder = FrameDecoder::new(max);
    while !input.is_empty() {
        let take = piece.min(input.len());
        match decoder.decode(&input[..take], &mut PlainCodec) {
            Ok((used, message)) => {
                assert!(used <= take, "consumed more than given");
                assert!(used > 0, "no progress");
                if let Some(m) = message {
                    assert!(m.len() <= max, "message above max_message");
                }
                input = &input[used..];
            }
            Err(e) => {
                assert_eq!(
                    decoder.decode(input, &mut PlainCodec),
                    Err(e),
                    "not poisoned"
                );
                return;
            }
        }
    }
}

fn round_trip(payload: &[u8], piece: usize, repeat: usize) {
    // Messages are separated by 0xff bytes and repeated `1 + repeat` times; the largest
    // repeat value instead stretches the payload to ~150 KB (three chunks), so that multi-chunk
    // messages are covered while most runs stay small and fast.
    let copies = if repeat == 127 {
        (150_000 / payload.len().max(1)).max(1)
    } else {
        1 + repeat
    };
    let messages: Vec<Vec<u8>> = payload
        .split(|&b| b == 0xff)
        .map(|m| m.repeat(copies))
        .collect();
    let mut wire = Vec::new();
    for m in &messages {
        encode_message(m, &mut PlainCodec, &mut wire).expect("encoding cannot fail");
    }
    let max = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut decoder = FrameDecoder::new(max);
    // At most ~256 pieces, so that long messages do not slow the fuzzer down.
    let piece = piece.max(wire.len() / 256);
    let mut got = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let take = piece.min(rest.len());
        let (used, message) = decoder
            .decode(&rest[..take], &mut PlainCodec)
            .expect("a valid encoding decodes");
        got.extend(message);
        rest = &rest[used..];
    }
    assert!(decoder.is_idle());
    assert_eq!(got, messages);
}
