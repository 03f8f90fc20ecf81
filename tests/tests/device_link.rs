//! The device's link and session protocol (`securerouter-device`, no_std) against the host's
//! (snow's Noise, the host's framing and session types), over tokio streams through
//! `embedded-io-adapters`: every message size both ways, tampered and truncated frames as
//! error values, a whole query against servers that decode it with the host's types, and
//! every session message the device sends or reads against the host's encoding and golden
//! bytes (both build on `securerouter-wire`).

use embedded_io_adapters::tokio_1::FromTokio;
use securerouter_circuits::CircuitKind;
use securerouter_circuits::pool::RouteMode as HostRouteMode;
use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_core::share::SeededShareStream;
use securerouter_device::link::{DeviceLink, LinkError, Received};
use securerouter_device::noise::{HandshakeError, StaticKey};
use securerouter_device::replay::Replay;
use securerouter_device::session::{
    Circuit, RouteMode, Server, ServerKeys, SessionError, decode_reply, seed_hello,
};
use securerouter_device::wire::SessionId;
use securerouter_device::wire::session::words_hello_header;
use securerouter_device::{FixedPointRows, query};
use securerouter_runtime::messages::{
    ClientHello, Hello, InputShare, OutputShares, PhaseStats, ServerReply, SessionStats, decode,
    encode,
};
use securerouter_runtime::net::{Identity, LinkConfig, PublicKey, SecureLink};
use securerouter_tests::test_rng;
use std::cell::Cell;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

type Device = DeviceLink<FromTokio<DuplexStream>>;

const SERVER_SECRET: [u8; 32] = [1; 32];
const DEVICE_SECRET: [u8; 32] = [2; 32];

/// Sizes around every chunk boundary (65,511 bytes in the first chunk, 65,519 in the others).
const SIZES: [usize; 9] = [
    0,
    1,
    65_510,
    65_511,
    65_512,
    65_511 + 65_519,
    65_511 + 65_519 + 1,
    65_511 + 2 * 65_519 + 7,
    300_000,
];

fn pattern(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ tag)
        .collect()
}

fn device_key() -> StaticKey {
    StaticKey::from_secret(DEVICE_SECRET)
}

fn allowed() -> [PublicKey; 1] {
    [PublicKey(device_key().public())]
}

/// A device link and a host link, handshaken over an in-memory stream.
async fn pair() -> (Device, SecureLink<DuplexStream>) {
    let server = Identity::from_secret(SERVER_SECRET);
    let (me, pinned, allowed) = (device_key(), server.public(), allowed());
    let cfg = LinkConfig::default();
    let (a, b) = duplex(1 << 16);
    let (d, h) = tokio::join!(
        DeviceLink::connect(FromTokio::new(a), &me, pinned.as_bytes(), [3; 32]),
        SecureLink::accept(b, &server, &allowed, &cfg)
    );
    (d.unwrap(), h.unwrap())
}

async fn device_send(d: &mut Device, m: &[u8], piece: usize) -> Result<(), LinkError> {
    let mut w = d.start_message(m.len() as u64)?;
    for p in m.chunks(piece) {
        w.write(p).await?;
    }
    w.finish().await
}

#[tokio::test]
async fn device_and_host_links_carry_every_message_size_both_ways() {
    let (mut device, mut host) = pair().await;
    let mut big = vec![0u8; 400_000];
    for (i, &n) in SIZES.iter().enumerate() {
        let m = pattern(n, i as u8);
        // Host to device, whole.
        let (sent, got) = tokio::join!(host.send(&m), device.recv_into(&mut big));
        sent.unwrap();
        assert_eq!(
            got.unwrap(),
            Received {
                total: n as u64,
                kept: n
            }
        );
        assert_eq!(big[..n], m[..], "host to device, {n} bytes");
        // Host to device, into a small buffer: the start is kept, the rest authenticated.
        let mut small = [0u8; 100];
        let (sent, got) = tokio::join!(host.send(&m), device.recv_into(&mut small));
        sent.unwrap();
        let kept = n.min(100);
        assert_eq!(
            got.unwrap(),
            Received {
                total: n as u64,
                kept
            }
        );
        assert_eq!(small[..kept], m[..kept]);
        // Device to host, streamed in uneven pieces.
        let (sent, got) = tokio::join!(device_send(&mut device, &m, 777), host.recv());
        sent.unwrap();
        assert_eq!(got.unwrap(), m, "device to host, {n} bytes");
    }
    // Whole-message sends work too.
    let (sent, got) = tokio::join!(device.send(b"hello"), host.recv());
    sent.unwrap();
    assert_eq!(got.unwrap(), b"hello");
}

#[tokio::test]
async fn a_message_of_the_wrong_length_is_an_error_and_breaks_the_link() {
    let (mut device, _host) = pair().await;
    let mut w = device.start_message(10).unwrap();
    assert_eq!(
        w.write(&[0; 11]).await,
        Err(LinkError::LengthMismatch {
            announced: 10,
            written: 11
        })
    );
    w.write(&[0; 4]).await.unwrap();
    assert_eq!(
        w.finish().await,
        Err(LinkError::LengthMismatch {
            announced: 10,
            written: 4
        })
    );
    // Part of a frame is on the wire: nothing more can be sent.
    assert!(matches!(device.start_message(1), Err(LinkError::Broken)));
}

#[tokio::test]
async fn a_wrong_pinned_key_fails_the_handshake() {
    let server = Identity::from_secret(SERVER_SECRET);
    let (me, wrong, allowed) = (
        device_key(),
        Identity::from_secret([9; 32]).public(),
        allowed(),
    );
    let cfg = LinkConfig::default();
    let (a, b) = duplex(1 << 16);
    let (d, h) = tokio::join!(
        DeviceLink::connect(FromTokio::new(a), &me, wrong.as_bytes(), [3; 32]),
        async {
            let r = SecureLink::accept(b, &server, &allowed, &cfg).await;
            // The host hangs up on a handshake it cannot read.
            drop(r);
        }
    );
    let () = h;
    assert_eq!(d.err(), Some(LinkError::Handshake(HandshakeError::Decrypt)));
}

/// Bytes of the handshake answer on the wire (length prefix and message 2).
const HANDSHAKE2: usize = 4 + 48;

/// What the device's receive buffer holds before each receive.
const SENTINEL: u8 = 0xa5;

/// The host sends `messages` and closes; `edit` rewrites the host-to-device byte stream
/// before the device sees it. Returns the device's handshake result and what each receive
/// gave, up to the first error. Checks that a failed receive leaves no byte of its message in
/// the buffer (only the sentinel, or zeros where the message reached).
async fn through_a_tamperer(
    messages: &[Vec<u8>],
    edit: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<Result<Vec<u8>, LinkError>>, LinkError> {
    let server = Identity::from_secret(SERVER_SECRET);
    let (dev_end, mut relay_dev) = duplex(1 << 20);
    let (mut relay_host, host_end) = duplex(1 << 20);
    let host = async {
        let mut link = SecureLink::accept(host_end, &server, &allowed(), &LinkConfig::default())
            .await
            .unwrap();
        for m in messages {
            link.send(m).await.unwrap();
        }
        link.shutdown().await.unwrap();
    };
    let relay = async {
        // Device to host: message 1 of the handshake, passed on as it is.
        let mut m1 = [0u8; 4 + 96];
        relay_dev.read_exact(&mut m1).await.unwrap();
        relay_host.write_all(&m1).await.unwrap();
        // Host to device: everything, edited.
        let mut stream = Vec::new();
        relay_host.read_to_end(&mut stream).await.unwrap();
        edit(&mut stream);
        relay_dev.write_all(&stream).await.unwrap();
        relay_dev.shutdown().await.unwrap();
    };
    let device = async {
        let mut link = DeviceLink::connect(
            FromTokio::new(dev_end),
            &device_key(),
            server.public().as_bytes(),
            [3; 32],
        )
        .await?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 300_000];
        loop {
            buf.fill(SENTINEL);
            match link.recv_into(&mut buf).await {
                Ok(r) => got.push(Ok(buf[..r.kept].to_vec())),
                Err(e) => {
                    let left = buf.iter().position(|&b| b != SENTINEL && b != 0);
                    assert_eq!(left, None, "{e:?} left message bytes in the buffer");
                    got.push(Err(e));
                    return Ok(got);
                }
            }
        }
    };
    let ((), (), result) = tokio::join!(host, relay, device);
    result
}

/// Length on the wire of the frame that starts at `at`.
fn frame_len(stream: &[u8], at: usize) -> usize {
    4 + u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize
}

#[tokio::test]
async fn tampered_truncated_and_replayed_frames_are_error_values() {
    let m1 = pattern(1000, 1);
    let m2 = pattern(1000, 2);
    let both = [m1.clone(), m2.clone()];
    let big = [pattern(150_000, 3)];
    let first = HANDSHAKE2;

    // Untouched: both messages, then the clean close.
    let got = through_a_tamperer(&both, |_| {}).await.unwrap();
    assert_eq!(
        got,
        [Ok(m1.clone()), Ok(m2.clone()), Err(LinkError::Closed)]
    );

    // A flipped bit in a message's ciphertext, in its tag, or in its sealed length header.
    for offset in [4 + 8 + 10, 4 + 8 + 1000 + 15, 4 + 3] {
        let got = through_a_tamperer(&both, |s| s[first + offset] ^= 1)
            .await
            .unwrap();
        assert_eq!(got, [Err(LinkError::Decrypt)], "byte {offset} flipped");
    }

    // A flipped bit in the handshake answer.
    let got = through_a_tamperer(&both, |s| s[10] ^= 0x80).await;
    assert_eq!(got, Err(LinkError::Handshake(HandshakeError::Decrypt)));

    // Cut inside a frame, or inside the handshake answer.
    let got = through_a_tamperer(&both, |s| s.truncate(first + 500))
        .await
        .unwrap();
    assert_eq!(got, [Err(LinkError::Truncated)]);
    let got = through_a_tamperer(&both, |s| s.truncate(20)).await;
    assert_eq!(got, Err(LinkError::Truncated));

    // Cut inside the second chunk of a large message, and right after its first chunk.
    let got = through_a_tamperer(&big, |s| {
        let end = first + frame_len(s, first) + 1000;
        s.truncate(end)
    })
    .await
    .unwrap();
    assert_eq!(got, [Err(LinkError::Truncated)]);
    let got = through_a_tamperer(&big, |s| {
        let end = first + frame_len(s, first);
        s.truncate(end)
    })
    .await
    .unwrap();
    assert_eq!(got, [Err(LinkError::Truncated)]);

    // Cut between messages: the first arrives, then the link reports the close.
    let got = through_a_tamperer(&both, |s| {
        let end = first + frame_len(s, first);
        s.truncate(end)
    })
    .await
    .unwrap();
    assert_eq!(got, [Ok(m1.clone()), Err(LinkError::Closed)]);

    // A replayed frame, and two frames swapped.
    let got = through_a_tamperer(&both, |s| {
        let f1 = s[first..first + frame_len(s, first)].to_vec();
        s.splice(first..first, f1);
    })
    .await
    .unwrap();
    assert_eq!(got, [Ok(m1.clone()), Err(LinkError::Decrypt)]);
    let got = through_a_tamperer(&both, |s| {
        let n = frame_len(s, first);
        let f1: Vec<u8> = s.drain(first..first + n).collect();
        s.extend(f1);
    })
    .await
    .unwrap();
    assert_eq!(got, [Err(LinkError::Decrypt)]);

    // Frame lengths outside the rules: too long, shorter than a tag, shorter than chunk 0's
    // header, and a continuation chunk of the wrong size.
    for (len, want) in [
        (70_000u32, "frame length outside 16..=65535"),
        (8, "frame length outside 16..=65535"),
        (20, "first chunk shorter than its header"),
    ] {
        let got = through_a_tamperer(&both, |s| {
            s[first..first + 4].copy_from_slice(&len.to_be_bytes())
        })
        .await
        .unwrap();
        assert_eq!(got, [Err(LinkError::Malformed(want))], "length {len}");
    }
    let got = through_a_tamperer(&big, |s| {
        let second = first + frame_len(s, first);
        s[second..second + 4].copy_from_slice(&1000u32.to_be_bytes());
    })
    .await
    .unwrap();
    assert_eq!(got, [Err(LinkError::Malformed("chunk of the wrong size"))]);
}

#[tokio::test]
async fn a_failed_receive_leaves_none_of_the_message_in_the_buffer() {
    // `through_a_tamperer` checks the buffer after each failed receive.
    let first = HANDSHAKE2;
    let small = [pattern(1000, 4)];
    let big = [pattern(150_000, 5)];
    // A flipped bit in a one-chunk message's ciphertext: its other bytes would decrypt fine.
    let got = through_a_tamperer(&small, |s| s[first + 4 + 8 + 500] ^= 1)
        .await
        .unwrap();
    assert_eq!(got, [Err(LinkError::Decrypt)]);
    // A flipped bit in the last byte of the second chunk's tag: the whole chunk arrived
    // before the failure, and the first chunk had authenticated.
    let got = through_a_tamperer(&big, |s| {
        let second = first + frame_len(s, first);
        let last_tag_byte = second + frame_len(s, second) - 1;
        s[last_tag_byte] ^= 1;
    })
    .await
    .unwrap();
    assert_eq!(got, [Err(LinkError::Decrypt)]);
    // A cut inside the second chunk (the first chunk's authenticated bytes must go too) is
    // `tampered_truncated_and_replayed_frames_are_error_values`' case, through the same checks.
}

/// A server for one query, with the host's link and session types: decodes the device's
/// hello, checks it, and answers with `reply(hello)`.
async fn fake_server(
    stream: DuplexStream,
    secret: [u8; 32],
    reply: impl FnOnce(Hello) -> Vec<u8>,
) -> Hello {
    let id = Identity::from_secret(secret);
    let mut link = SecureLink::accept(stream, &id, &allowed(), &LinkConfig::default())
        .await
        .unwrap();
    let hello: Hello = decode(&link.recv().await.unwrap(), "hello").unwrap();
    link.send(&reply(hello.clone())).await.unwrap();
    hello
}

fn stats() -> SessionStats {
    // Long accounting, as a real server sends: the device drops it unread.
    let phase = |i: usize| PhaseStats {
        name: format!("layer {i} softmax"),
        online_s: 0.5,
        bytes_sent: 1 << 20,
        rounds: 7,
    };
    SessionStats {
        phases: (0..40).map(phase).collect(),
        stages: (0..40).map(phase).collect(),
        kernels: "cpu".into(),
        ..SessionStats::default()
    }
}

fn ok_reply(widths: Vec<u8>, shares: Vec<Vec<u64>>) -> Vec<u8> {
    encode(&ServerReply::Ok(OutputShares {
        widths,
        shares,
        stats: stats(),
    }))
    .unwrap()
}

#[tokio::test]
async fn a_device_query_is_the_host_clients_wire_format() {
    const P0: [u8; 32] = [4; 32];
    const P1: [u8; 32] = [5; 32];
    let keys = ServerKeys {
        p0: *Identity::from_secret(P0).public().as_bytes(),
        p1: *Identity::from_secret(P1).public().as_bytes(),
    };
    let (rows, width) = (128usize, 386usize);
    let x: Vec<f32> = (0..rows * width)
        .map(|i| ((i * 7919) % 2000) as f32 / 100.0 - 10.0)
        .collect();
    let fp = FixedPoint::new(12, BitWidth::FULL).unwrap();
    // Output shares of logits [-1.5, 2.25] and route one-hot [0, 0, 1].
    let logits = [fp.encode(-1.5).unwrap(), fp.encode(2.25).unwrap()];
    let route = [0u64, 0, 1];
    let mask = [0x1234_5678_9abc_def0u64, 77, 5, 6, 7];
    let (a0, a1) = (duplex(1 << 16), duplex(1 << 16));
    let p0_reply = {
        let m = mask;
        move |_: Hello| ok_reply(vec![64, 64], vec![m[..2].to_vec(), m[2..].to_vec()])
    };
    let p1_reply = move |_: Hello| {
        let s0: Vec<u64> = logits
            .iter()
            .zip(&mask)
            .map(|(v, m)| v.wrapping_sub(*m))
            .collect();
        let s1: Vec<u64> = route
            .iter()
            .zip(&mask[2..])
            .map(|(v, m)| v.wrapping_sub(*m))
            .collect();
        ok_reply(vec![64, 64], vec![s0, s1])
    };
    let mut rng = test_rng(7);
    let source = FixedPointRows::new(&x, width, fp).unwrap();
    let me = device_key();
    let (out, h0, h1) = tokio::join!(
        query::<_, _, _, _, 386>(
            FromTokio::new(a0.0),
            FromTokio::new(a1.0),
            &me,
            &keys,
            Circuit::Routed(RouteMode::Hide),
            source,
            &mut rng,
        ),
        fake_server(a0.1, P0, p0_reply),
        fake_server(a1.1, P1, p1_reply),
    );
    let out = out.unwrap();
    assert_eq!(out.label().unwrap(), 1);
    assert_eq!(out.route().unwrap(), 2);
    assert_eq!(out.values[0][..], logits);

    // The hellos decode with the host's types: same session and circuit, P0 a seed, P1 words
    // that with the seed's expansion give the encoded input.
    let (Hello::Client(h0), Hello::Client(h1)) = (h0, h1) else {
        panic!("not client hellos")
    };
    assert_eq!(h0.session, h1.session);
    assert_eq!(h0.circuit, CircuitKind::Routed(HostRouteMode::Hide));
    assert_eq!(h1.circuit, h0.circuit);
    assert_eq!((h0.rows, h1.rows), (rows as u32, rows as u32));
    let securerouter_runtime::messages::InputShare::Seed(seed) = h0.input else {
        panic!("P0 got no seed")
    };
    let words = h1.input.into_words(rows * width).unwrap();
    let mut s0 = vec![0u64; rows * width];
    SeededShareStream::new(&Seed::from_bytes(seed)).expand_row(&mut s0);
    for (i, (a, b)) in s0.iter().zip(&words).enumerate() {
        assert_eq!(
            a.wrapping_add(*b),
            fp.encode(x[i] as f64).unwrap(),
            "word {i}"
        );
    }
}

#[tokio::test]
async fn server_failures_and_bad_replies_are_error_values() {
    const P0: [u8; 32] = [4; 32];
    const P1: [u8; 32] = [5; 32];
    let keys = ServerKeys {
        p0: *Identity::from_secret(P0).public().as_bytes(),
        p1: *Identity::from_secret(P1).public().as_bytes(),
    };
    let x = [0.5f32; 8];
    let fp = FixedPoint::new(12, BitWidth::FULL).unwrap();
    let run = |r0: Vec<u8>, r1: Vec<u8>| async move {
        let (a0, a1) = (duplex(1 << 16), duplex(1 << 16));
        let mut rng = test_rng(8);
        let me = device_key();
        let (out, _, _) = tokio::join!(
            query::<_, _, _, _, 8>(
                FromTokio::new(a0.0),
                FromTokio::new(a1.0),
                &me,
                &keys,
                Circuit::Bert,
                FixedPointRows::new(&x, 8, fp).unwrap(),
                &mut rng,
            ),
            fake_server(a0.1, P0, |_| r0),
            fake_server(a1.1, P1, |_| r1),
        );
        out
    };
    let good = ok_reply(vec![64], vec![vec![1, 2]]);
    let long_reason = "the dealer refused: ".to_string() + &"x".repeat(5000);
    let failed = |why: &str| encode(&ServerReply::Failed(why.into())).unwrap();

    let err = run(failed("no such circuit"), good.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SessionError::Failed(Server::P0, "no such circuit".try_into().unwrap())
    );
    // A reason longer than the reply buffer keeps its start.
    let SessionError::Failed(Server::P1, why) =
        run(good.clone(), failed(&long_reason)).await.unwrap_err()
    else {
        panic!("not a failure report")
    };
    assert!(why.starts_with("the dealer refused: xxx"), "{why}");
    // Not a reply, more outputs than the device holds, outputs that do not fit together.
    let err = run(vec![9, 9, 9], good.clone()).await.unwrap_err();
    assert_eq!(err, SessionError::Reply(Server::P0, "not a server reply"));
    let wide = ok_reply(vec![64], vec![vec![1; 100]]);
    let err = run(good.clone(), wide).await.unwrap_err();
    assert!(matches!(err, SessionError::Reply(Server::P1, _)), "{err:?}");
    let other = ok_reply(vec![64], vec![vec![1, 2, 3]]);
    let err = run(good.clone(), other).await.unwrap_err();
    assert_eq!(err, SessionError::Mismatch("different output lengths"));
    // And a good pair adds up.
    let out = run(good.clone(), good).await.unwrap();
    assert_eq!(out.values[0][..], [2, 4]);
}

const SESSION: SessionId = SessionId([0x11; 16]);

/// The wire format itself is pinned by golden bytes in `core/wire/tests/golden.rs`; this checks
/// that the device's encoders and readers give and take the host's bytes.
#[test]
fn the_devices_session_messages_are_the_hosts() {
    // P0's hello: the device's encoding is the host's; the host reads it.
    let mut buf = [0u8; 64];
    let circuit = Circuit::Routed(RouteMode::Hide);
    let device = seed_hello(SESSION, circuit, 3, &[0x22; 16], &mut buf).unwrap();
    let host = Hello::Client(ClientHello {
        session: SESSION,
        circuit: CircuitKind::Routed(HostRouteMode::Hide),
        rows: 3,
        batch: 1,
        input: InputShare::Seed([0x22; 16]),
    });
    assert_eq!(encode(&host).unwrap(), device);
    let Hello::Client(back) = decode::<Hello>(device, "hello").unwrap() else {
        panic!("not a client hello")
    };
    assert_eq!(
        (back.session, back.circuit, back.rows),
        (SESSION, circuit, 3)
    );
    assert!(matches!(back.input, InputShare::Seed([0x22, ..])));

    // P1's hello as the device streams it: the header, then the words as it makes them.
    let words = [1u64, u64::MAX];
    let mut device = words_hello_header(SESSION, Circuit::Expert(5), 1, 1, 16, &mut buf)
        .unwrap()
        .to_vec();
    for w in words {
        device.extend(w.to_le_bytes());
    }
    let host = Hello::Client(ClientHello {
        session: SESSION,
        circuit: CircuitKind::Expert(5),
        rows: 1,
        batch: 1,
        input: InputShare::words(&words),
    });
    assert_eq!(encode(&host).unwrap(), device);
    let Hello::Client(back) = decode::<Hello>(&device, "hello").unwrap() else {
        panic!("not a client hello")
    };
    assert_eq!(back.input.into_words(2).unwrap(), words);

    // Replies: the device reads the shares of the host's encoding and leaves the accounting
    // unread.
    let ok = encode(&ServerReply::Ok(OutputShares {
        widths: vec![64, 1],
        shares: vec![vec![5, u64::MAX], vec![0, 1]],
        stats: SessionStats::default(),
    }))
    .unwrap();
    let read = decode_reply(&ok, ok.len() as u64, Server::P0).unwrap();
    assert_eq!(read.widths[..], [64, 1]);
    assert_eq!(read.shares.len(), 2);
    assert_eq!(
        (&read.shares[0][..], &read.shares[1][..]),
        (&[5, u64::MAX][..], &[0, 1][..])
    );
    // A reply with long accounting, of which the device keeps only the start.
    let long = ok_reply(vec![64], vec![vec![7; 3]]);
    let read = decode_reply(&long[..64], long.len() as u64, Server::P1).unwrap();
    assert_eq!(read.shares[0][..], [7, 7, 7]);

    let failed = encode(&ServerReply::Failed("no such circuit".into())).unwrap();
    assert_eq!(
        decode_reply(&failed, failed.len() as u64, Server::P1),
        Err(SessionError::Failed(
            Server::P1,
            "no such circuit".try_into().unwrap()
        ))
    );
}

/// The firmware (`device/firmware`) runs a whole query on the emulated Cortex-M4 against this
/// recording of two servers' side of a session: with the device's key and random generator
/// fixed, what the servers send does not depend on the device's input, so the recording
/// replays for any embedding. This checks that the recording still replays against the
/// current protocol; `SECUREROUTER_WRITE_TRANSCRIPT=1` records it afresh.
const TRANSCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../device/firmware/transcript.bin"
);
const TRANSCRIPT_MAGIC: &[u8; 8] = b"SRTRANS1";
const TRANSCRIPT_DEVICE_SECRET: [u8; 32] = *b"firmware device static secret!!!";
const TRANSCRIPT_RNG_SEED: [u8; 16] = *b"firmware rng 001";
const TRANSCRIPT_LOGITS: [u64; 2] = [0xffff_ffff_ffff_f800, 0x1800]; // -0.5, 1.5 at 12 bits
const TRANSCRIPT_ROUTE: [u64; 3] = [0, 1, 0];

/// Copies both ways between `device` and `server` until both close; returns what the server
/// sent.
async fn recording_relay(device: DuplexStream, server: DuplexStream) -> Vec<u8> {
    let (mut dr, mut dw) = tokio::io::split(device);
    let (mut sr, mut sw) = tokio::io::split(server);
    let up = async {
        tokio::io::copy(&mut dr, &mut sw).await.unwrap();
        sw.shutdown().await.unwrap();
    };
    let down = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = sr.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            // The device may be gone already; the recording is what matters.
            let _ = dw.write_all(&buf[..n]).await;
        }
        let _ = dw.shutdown().await;
        seen
    };
    let ((), seen) = tokio::join!(up, down);
    seen
}

fn transcript_keys() -> ([u8; 32], [u8; 32]) {
    (
        *Identity::from_secret([4; 32]).public().as_bytes(),
        *Identity::from_secret([5; 32]).public().as_bytes(),
    )
}

async fn record_transcript() -> Vec<u8> {
    let (p0, p1) = transcript_keys();
    let keys = ServerKeys { p0, p1 };
    let me = StaticKey::from_secret(TRANSCRIPT_DEVICE_SECRET);
    let allowed = [PublicKey(me.public())];
    let server = |stream: DuplexStream, secret: [u8; 32], shares: Vec<u64>| async move {
        let id = Identity::from_secret(secret);
        let mut link = SecureLink::accept(stream, &id, &allowed, &LinkConfig::default())
            .await
            .unwrap();
        let _hello: Hello = decode(&link.recv().await.unwrap(), "hello").unwrap();
        let reply = encode(&ServerReply::Ok(OutputShares {
            widths: vec![64, 64],
            shares: vec![shares[..2].to_vec(), shares[2..].to_vec()],
            stats: SessionStats::default(),
        }))
        .unwrap();
        link.send(&reply).await.unwrap();
    };
    // P0 sends a random-looking mask, P1 the values minus it.
    let mask = [0x0123_4567_89ab_cdefu64, 99, 7, 8, 9];
    let values: Vec<u64> = TRANSCRIPT_LOGITS
        .iter()
        .chain(&TRANSCRIPT_ROUTE)
        .copied()
        .collect();
    let s1: Vec<u64> = values
        .iter()
        .zip(&mask)
        .map(|(v, m)| v.wrapping_sub(*m))
        .collect();
    let ((d0, r0), (s0_end, r0b)) = (duplex(1 << 16), duplex(1 << 16));
    let ((d1, r1), (s1_end, r1b)) = (duplex(1 << 16), duplex(1 << 16));
    let x = [0.25f32; 4 * 8];
    let fp = FixedPoint::new(12, BitWidth::FULL).unwrap();
    let mut rng = securerouter_core::prg::AesCtr::new(
        &Seed::from_bytes(TRANSCRIPT_RNG_SEED),
        securerouter_core::prg::Domain(0),
    );
    let (out, (), (), seen0, seen1) = tokio::join!(
        query::<_, _, _, _, 8>(
            FromTokio::new(d0),
            FromTokio::new(d1),
            &me,
            &keys,
            Circuit::Routed(RouteMode::Reveal),
            FixedPointRows::new(&x, 8, fp).unwrap(),
            &mut rng,
        ),
        server(s0_end, [4; 32], mask.to_vec()),
        server(s1_end, [5; 32], s1),
        recording_relay(r0, r0b),
        recording_relay(r1, r1b),
    );
    let out = out.unwrap();
    assert_eq!(out.values[0][..], TRANSCRIPT_LOGITS);
    let mut file = TRANSCRIPT_MAGIC.to_vec();
    file.extend(TRANSCRIPT_DEVICE_SECRET);
    file.extend(TRANSCRIPT_RNG_SEED);
    file.extend(p0);
    file.extend(p1);
    for v in values {
        file.extend(v.to_le_bytes());
    }
    for seen in [seen0, seen1] {
        file.extend((seen.len() as u32).to_le_bytes());
        file.extend(seen);
    }
    file
}

#[tokio::test]
async fn the_firmwares_recorded_servers_still_replay() {
    if std::env::var_os("SECUREROUTER_WRITE_TRANSCRIPT").is_some() {
        std::fs::write(TRANSCRIPT, record_transcript().await).unwrap();
    }
    let file = std::fs::read(TRANSCRIPT).expect("device/firmware/transcript.bin");
    assert_eq!(&file[..8], TRANSCRIPT_MAGIC);
    let (p0, p1) = transcript_keys();
    assert_eq!(file[8..40], TRANSCRIPT_DEVICE_SECRET);
    assert_eq!(file[40..56], TRANSCRIPT_RNG_SEED);
    assert_eq!((&file[56..88], &file[88..120]), (&p0[..], &p1[..]));
    let mut at = 120 + 5 * 8;
    let mut stream = || {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        let s = &file[at + 4..at + 4 + len];
        at += 4 + len;
        s
    };
    let (in0, in1) = (stream(), stream());
    // Replays for an input of another size than the recording's (a BERT-base-sized one).
    let x = vec![-1.75f32; 16 * 770];
    let fp = FixedPoint::new(12, BitWidth::FULL).unwrap();
    let mut rng = securerouter_core::prg::AesCtr::new(
        &Seed::from_bytes(TRANSCRIPT_RNG_SEED),
        securerouter_core::prg::Domain(0),
    );
    let (sent0, sent1) = (Cell::new(0), Cell::new(0));
    let out = query::<_, _, _, _, 770>(
        Replay::new(in0, &sent0),
        Replay::new(in1, &sent1),
        &StaticKey::from_secret(TRANSCRIPT_DEVICE_SECRET),
        &ServerKeys { p0, p1 },
        Circuit::Routed(RouteMode::Reveal),
        FixedPointRows::new(&x, 770, fp).unwrap(),
        &mut rng,
    )
    .await
    .expect("the recording no longer replays: record it again (SECUREROUTER_WRITE_TRANSCRIPT=1)");
    assert_eq!(out.values[0][..], TRANSCRIPT_LOGITS);
    assert_eq!(out.route().unwrap(), 1);
    assert_eq!(out.label().unwrap(), 1);
    // P1 got the share and a few hundred bytes of handshake, hello and framing.
    let share = 16 * 770 * 8;
    assert!(
        sent1.get() > share && sent1.get() < share + 1024,
        "{}",
        sent1.get()
    );
    assert!(sent0.get() < 256, "{}", sent0.get());
}
