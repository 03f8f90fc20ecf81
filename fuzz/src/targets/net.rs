//! The host's links: the pure frame decoder, and a whole `SecureLink` (Noise handshake parsing
//! as responder and initiator, then framed transport messages) over a scripted peer.

use super::wire::{
    self, DEVICE_EPHEMERAL, DEVICE_SECRET, DeviceSealer, HOST_SECRET, Peer, Respond, SnowSealer,
    chunk_item, framed, message_item, raw_item,
};
use securerouter_device::noise::{Initiator, MESSAGE2_LEN, StaticKey};
use securerouter_runtime::net::frame::{FrameDecoder, PlainCodec, encode_message};
use securerouter_runtime::net::{
    Identity, LinkCipher, LinkConfig, NetError, PROLOGUE, PublicKey, SecureLink,
};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The frame decoder (`net::frame`) with a stand-in cipher.
///
/// Input layout: 4 control bytes, then the payload.
/// - `control[0..2]`: `max_message` (little-endian u16, times 64: up to 4 MiB)
/// - `control[2]`: the size of the pieces the bytes are fed in (1 + 97·k)
/// - `control[3]`: bit 0 selects the mode, bits 1.. a repeat count for round trips (127: to
///   ~150 KB, several chunks)
///
/// Mode 0 feeds the payload as raw wire bytes: the decoder must consume bytes or fail with an
/// error (never panic), respect `max_message`, and stay failed once failed.
/// Mode 1 splits the payload into messages (repeated to reach multi-chunk sizes), encodes them
/// and decodes them in pieces: the messages must come back exactly.
pub fn frame_decoder(data: &[u8]) -> bool {
    let Some((control, payload)) = data.split_first_chunk::<4>() else {
        return false;
    };
    let max = usize::from(u16::from_le_bytes([control[0], control[1]])) * 64;
    let piece = 1 + usize::from(control[2]) * 97;
    if control[3] & 1 == 0 {
        frame_raw(payload, max, piece)
    } else {
        frame_round_trip(payload, piece, usize::from(control[3] >> 1));
        true
    }
}

fn frame_raw(mut input: &[u8], max: usize, piece: usize) -> bool {
    let mut decoder = FrameDecoder::new(max);
    let mut messages = 0;
    while !input.is_empty() {
        let take = piece.min(input.len());
        match decoder.decode(&input[..take], &mut PlainCodec) {
            Ok((used, message)) => {
                assert!(used <= take, "consumed more than given");
                assert!(used > 0, "no progress");
                if let Some(m) = message {
                    assert!(m.len() <= max, "message above max_message");
                    messages += 1;
                }
                input = &input[used..];
            }
            Err(e) => {
                assert_eq!(
                    decoder.decode(input, &mut PlainCodec),
                    Err(e),
                    "not poisoned"
                );
                return messages > 0;
            }
        }
    }
    true
}

fn frame_round_trip(payload: &[u8], piece: usize, repeat: usize) {
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

/// Raw streams and round trips, several chunk sizes and maxima.
pub fn frame_decoder_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (max, piece, mode) in [
        (1000u16, 0u8, 1u8),
        (4, 3, 3),
        (65535, 255, 255),
        (16, 1, 0),
    ] {
        let mut seed = max.to_le_bytes().to_vec();
        seed.extend([piece, mode]);
        if mode & 1 == 1 {
            seed.extend(b"first message\xffsecond\xff\xffthird after an empty one");
        } else {
            let mut wire = Vec::new();
            for m in [&b"hello"[..], &[], &[7; 300]] {
                encode_message(m, &mut PlainCodec, &mut wire).unwrap();
            }
            seed.extend(wire);
        }
        out.push(seed);
    }
    out
}

/// A tokio stream over a [`Peer`].
struct TokioPeer(Peer);

impl AsyncRead for TokioPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.0.read(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TokioPeer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(self.0.write(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

fn config(cipher: LinkCipher) -> LinkConfig {
    LinkConfig {
        io_timeout: Duration::from_secs(30),
        cipher,
        ..LinkConfig::default()
    }
}

/// Receives until the link fails; returns the messages and the error.
async fn drain(mut link: SecureLink<TokioPeer>) -> (Vec<Vec<u8>>, NetError) {
    let mut got = Vec::new();
    loop {
        match link.recv().await {
            Ok(m) => got.push(m),
            Err(e) => return (got, e),
        }
    }
}

/// The device's handshake message 1 to the host (fixed keys, so the same every run).
fn message1() -> (Initiator, Vec<u8>) {
    let me = StaticKey::from_secret(DEVICE_SECRET);
    let host = Identity::from_secret(HOST_SECRET).public();
    let (initiator, m1) =
        Initiator::start(&me, &host.0, DEVICE_EPHEMERAL).expect("fixed keys are not weak");
    (initiator, framed(&m1))
}

/// A host `SecureLink` over bytes from a peer.
///
/// Input: a mode byte, then:
/// - mode 0: the whole stream the initiator sends a responding host (handshake message 1
///   included): garbage after a valid message 1 cannot authenticate, so this reaches the
///   handshake parser and the first frame;
/// - mode 1: a script ([`wire`]) of what an authenticated initiator (the device's Noise code,
///   with fixed keys) sends after a real handshake: chunks of any size and content, sealed
///   under the link's keys, so every check after authentication is reached;
/// - mode 2: the same for a host that connects, to a `snow` responder (ChaCha20-Poly1305 or
///   AES-256-GCM, by the mode byte's bit 2);
/// - mode 3: the responder's whole answer to a connecting host, as raw bytes.
///
/// A script of whole messages must arrive exactly.
pub fn host_link(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    RUNTIME.with(|rt| rt.block_on(host_link_async(mode, rest)))
}

async fn host_link_async(mode: u8, rest: &[u8]) -> bool {
    let me = Identity::from_secret(HOST_SECRET);
    let device = PublicKey(StaticKey::from_secret(DEVICE_SECRET).public());
    let cipher = if mode & 4 == 0 {
        LinkCipher::ChaChaPoly
    } else {
        LinkCipher::AesGcm
    };
    let expected = Arc::new(Mutex::new(None));
    let link = match mode % 4 {
        0 => {
            let peer = TokioPeer(Peer::new(rest.to_vec(), None));
            SecureLink::accept(peer, &me, &[device], &config(cipher)).await
        }
        1 => {
            let (initiator, m1) = message1();
            let script = rest.to_vec();
            let expected = Arc::clone(&expected);
            let respond: Respond = Box::new(move |written: &[u8]| {
                let m2 = written
                    .get(4..4 + MESSAGE2_LEN)
                    .filter(|_| written[..4] == (MESSAGE2_LEN as u32).to_be_bytes())
                    .expect("the host's handshake answer is one 48-byte frame");
                let transport = initiator
                    .finish(m2.try_into().expect("48 bytes"))
                    .expect("the host's answer authenticates");
                let s = wire::build(&script, &mut DeviceSealer(transport.send));
                *expected.lock().unwrap() = s.messages;
                s.wire
            });
            let peer = TokioPeer(Peer::new(m1, Some(respond)));
            let link = SecureLink::accept(peer, &me, &[device], &config(cipher)).await;
            assert!(
                link.is_ok(),
                "a valid handshake from an allowed key is refused"
            );
            link
        }
        2 => {
            let script = rest.to_vec();
            let expected = Arc::clone(&expected);
            let respond: Respond = Box::new(move |written: &[u8]| {
                let params = cipher
                    .noise_params()
                    .parse()
                    .expect("valid Noise parameters");
                let mut hs = snow::Builder::new(params)
                    .local_private_key(&DEVICE_SECRET)
                    .and_then(|b| b.prologue(PROLOGUE))
                    .and_then(|b| b.build_responder())
                    .expect("a snow responder");
                let mut buf = vec![0u8; 65535];
                hs.read_message(written.get(4..).unwrap_or_default(), &mut buf)
                    .expect("the host's message 1 authenticates");
                let n = hs.write_message(&[], &mut buf).expect("message 2");
                let mut out = framed(&buf[..n]);
                let transport = hs.into_transport_mode().expect("handshake done");
                let s = wire::build(&script, &mut SnowSealer(transport));
                *expected.lock().unwrap() = s.messages;
                out.extend(s.wire);
                out
            });
            let peer = TokioPeer(Peer::new(Vec::new(), Some(respond)));
            let link = SecureLink::connect(peer, &me, &device, &config(cipher)).await;
            assert!(
                link.is_ok(),
                "a valid answer from the pinned responder is refused"
            );
            link
        }
        _ => {
            let peer = TokioPeer(Peer::new(rest.to_vec(), None));
            SecureLink::connect(peer, &me, &device, &config(cipher)).await
        }
    };
    let Ok(link) = link else {
        return false;
    };
    let (got, err) = drain(link).await;
    if let Some(want) = expected.lock().unwrap().take() {
        assert_eq!(got, want, "a valid stream's messages did not arrive");
        assert!(
            matches!(err, NetError::Closed),
            "a valid stream ended with {err}"
        );
    }
    true
}

/// A valid message 1 with frames after it; authenticated scripts of whole messages (one of
/// several chunks), single chunks and raw bytes; and answers to a connecting host.
pub fn host_link_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (_, m1) = message1();
    let mut raw = vec![0];
    raw.extend(&m1);
    raw.extend(framed(&[0x5a; 40]));
    out.push(raw);
    let scripts = [
        [
            message_item(b"hello", 0),
            message_item(&[], 0),
            message_item(&[1, 2, 3], 9),
        ]
        .concat(),
        message_item(&[0xab; 1000], 99),
        {
            // A first chunk announcing 70,000 bytes, then one continuation chunk.
            let mut first = 70_000u64.to_be_bytes().to_vec();
            first.extend(vec![0x11; 65_511]);
            [chunk_item(&first), chunk_item(&[0x22; 70_000 - 65_511])].concat()
        },
        [chunk_item(&5u64.to_be_bytes()), raw_item(&[0; 20])].concat(),
    ];
    for s in &scripts {
        out.push([vec![1], s.clone()].concat());
    }
    for s in scripts {
        out.push([vec![2], s.clone()].concat());
        out.push([vec![6], s].concat());
    }
    out
}
