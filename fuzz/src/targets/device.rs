//! The device client's decoders: its link (handshake answer and framed transport messages,
//! opened as they stream), a whole query's reply decoding, and the flash embedding table.

use super::wire::{
    self, DEVICE_EPHEMERAL, DEVICE_SECRET, Expected, Peer, Respond, SnowSealer, chunk_item, framed,
    message_item, raw_item,
};
use core::convert::Infallible;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_device::embedding::{EmbeddingTable, TokenEmbedder};
use securerouter_device::link::DeviceLink;
use securerouter_device::noise::StaticKey;
use securerouter_device::session::{Circuit, Server, ServerKeys, SessionError};
use securerouter_device::{EmbeddingSource, FixedPointRows, query};
use securerouter_runtime::messages::{OutputShares, ServerReply, SessionStats, encode};
use securerouter_runtime::net::{NOISE_PARAMS, PROLOGUE};
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Static secrets of the servers a device talks to.
const P0_SECRET: [u8; 32] = [0x44; 32];
const P1_SECRET: [u8; 32] = [0x55; 32];
/// The servers' ephemeral secret in precomputed streams.
const SERVER_EPHEMERAL: [u8; 32] = [0x66; 32];

/// Runs a device future to completion. Every stream here is always ready, so a future that
/// returns `Pending` would wait forever: that is a bug, reported as a panic.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a device future waits on a stream that is always ready"),
    }
}

/// An `embedded_io_async` stream over a [`Peer`].
struct DevicePeer(Peer);

impl embedded_io_async::ErrorType for DevicePeer {
    type Error = Infallible;
}

impl embedded_io_async::Read for DevicePeer {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        Ok(self.0.read(buf))
    }
}

impl embedded_io_async::Write for DevicePeer {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        Ok(self.0.write(buf))
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// A server (snow, as the host runs it) answering the device's handshake, then sending what
/// `script` says ([`wire`]); the script's messages go to `expected`.
fn server(
    secret: [u8; 32],
    ephemeral: Option<[u8; 32]>,
    script: Vec<u8>,
    expected: Option<Expected>,
) -> Respond {
    Box::new(move |written: &[u8]| {
        let params = NOISE_PARAMS.parse().expect("valid Noise parameters");
        let b = snow::Builder::new(params);
        let b = match &ephemeral {
            Some(e) => b.fixed_ephemeral_key_for_testing_only(e),
            None => b,
        };
        let mut hs = b
            .local_private_key(&secret)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
            .expect("a snow responder");
        let mut buf = vec![0u8; 65535];
        let m1 = written
            .get(4..4 + 96)
            .expect("the device's message 1 frame");
        hs.read_message(m1, &mut buf)
            .expect("the device's message 1 authenticates");
        let n = hs.write_message(&[], &mut buf).expect("message 2");
        let mut out = framed(&buf[..n]);
        let transport = hs.into_transport_mode().expect("handshake done");
        let s = wire::build(&script, &mut SnowSealer(transport));
        if let Some(e) = expected {
            *e.lock().unwrap() = s.messages;
        }
        out.extend(s.wire);
        out
    })
}

fn device_key() -> StaticKey {
    StaticKey::from_secret(DEVICE_SECRET)
}

const BUFFERS: [usize; 7] = [0, 1, 7, 64, 255, 1024, 70_000];

/// The device's link: `DeviceLink::connect`, then `recv_into` until the stream fails.
///
/// Input: a mode byte, a receive-buffer size selector, then:
/// - mode 0: the server's whole stream (handshake message 2 included) as raw bytes;
/// - mode 1: a script ([`wire`]) of what an authenticated server sends after a real handshake
///   (sealed with `snow`, as the host does), so every check after authentication is reached.
///   A script of whole messages must arrive exactly (their first bytes, as many as the buffer
///   holds, and their lengths).
pub fn device_link(data: &[u8]) -> bool {
    let Some((&[mode, size], rest)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let server_key = StaticKey::from_secret(P0_SECRET).public();
    let expected = std::sync::Arc::new(std::sync::Mutex::new(None));
    let peer = if mode % 2 == 0 {
        Peer::new(rest.to_vec(), None)
    } else {
        let respond = server(
            P0_SECRET,
            None,
            rest.to_vec(),
            Some(std::sync::Arc::clone(&expected)),
        );
        Peer::new(Vec::new(), Some(respond))
    };
    let mut buf = vec![0u8; BUFFERS[usize::from(size) % BUFFERS.len()]];
    block_on(async {
        let link = DeviceLink::connect(
            DevicePeer(peer),
            &device_key(),
            &server_key,
            DEVICE_EPHEMERAL,
        )
        .await;
        let Ok(mut link) = link else {
            assert!(mode % 2 == 0, "a real server's answer is refused");
            return false;
        };
        let mut got = Vec::new();
        let err = loop {
            match link.recv_into(&mut buf).await {
                Ok(r) => {
                    assert_eq!(r.kept as u64, r.total.min(buf.len() as u64));
                    got.push((r.total, buf[..r.kept].to_vec()));
                }
                Err(e) => break e,
            }
        };
        if let Some(want) = expected.lock().unwrap().take() {
            let want: Vec<(u64, Vec<u8>)> = want
                .iter()
                .map(|m| (m.len() as u64, m[..m.len().min(buf.len())].to_vec()))
                .collect();
            assert_eq!(got, want, "a valid stream's messages did not arrive");
            assert_eq!(
                err,
                securerouter_device::LinkError::Closed,
                "a valid stream ended badly"
            );
        }
        true
    })
}

/// The server's whole stream for a script, precomputed with fixed keys (mode 0's seeds).
fn precomputed_stream(script: &[u8]) -> Vec<u8> {
    let key = StaticKey::from_secret(P0_SECRET).public();
    let (_, m1) =
        securerouter_device::noise::Initiator::start(&device_key(), &key, DEVICE_EPHEMERAL)
            .expect("fixed keys are not weak");
    server(P0_SECRET, Some(SERVER_EPHEMERAL), script.to_vec(), None)(&framed(&m1))
}

fn link_scripts() -> Vec<Vec<u8>> {
    vec![
        [
            message_item(b"hello", 0),
            message_item(&[], 0),
            message_item(&[9; 300], 4),
        ]
        .concat(),
        message_item(&[0xcd; 1000], 99),
        {
            let mut first = 70_000u64.to_be_bytes().to_vec();
            first.extend(vec![0x11; 65_511]);
            [chunk_item(&first), chunk_item(&[0x22; 70_000 - 65_511])].concat()
        },
        [chunk_item(&3u64.to_be_bytes()), raw_item(&[1, 2, 3])].concat(),
    ]
}

/// Valid streams (precomputed) and scripts, with several buffer sizes.
pub fn device_link_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, s) in link_scripts().into_iter().enumerate() {
        let size = i as u8 * 2;
        out.push([vec![0, size], precomputed_stream(&s)].concat());
        out.push([vec![1, size + 1], s].concat());
    }
    out
}

const REPLY_BUF: usize = 1024;

/// What the device must make of a server's reply, when the host's decoder says it is
/// well-formed and small enough for the device: its outputs, or its failure.
enum Verdict {
    Outputs(OutputShares),
    Failed(String),
    Unknown,
}

fn verdict(reply: Option<&Vec<u8>>) -> Verdict {
    let Some(bytes) = reply.filter(|r| r.len() <= REPLY_BUF) else {
        return Verdict::Unknown;
    };
    match securerouter_runtime::messages::decode::<ServerReply>(bytes, "reply") {
        Ok(ServerReply::Ok(o))
            if o.widths.len() == o.shares.len()
                && o.widths.len() <= 4
                && o.shares.iter().all(|s| s.len() <= 32)
                && o.widths.iter().all(|&w| (1..=64).contains(&w)) =>
        {
            Verdict::Outputs(o)
        }
        Ok(ServerReply::Failed(why)) => Verdict::Failed(why),
        _ => Verdict::Unknown,
    }
}

fn cut(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() + c.len_utf8() > 96 {
            break;
        }
        out.push(c);
    }
    out
}

/// A whole device query (`session::query`) against two servers (snow, as the host runs it),
/// with the servers' replies from the input: the device's reply decoding (postcard into
/// fixed-capacity buffers, a 1 KiB window of the reply) and the combination of the two.
///
/// Input: a mode byte, P0's part's length (u16, LE), P0's part, P1's part. Mode 0: each part
/// is one reply message's bytes; mode 1: each part is a script ([`wire`]). Where the host's
/// decoder reads both replies as well-formed and within the device's limits, the device must
/// return exactly the sum of the shares, or the first server's failure.
pub fn device_session(data: &[u8]) -> bool {
    let Some((&[mode, l0, l1], rest)) = data.split_first_chunk::<3>() else {
        return false;
    };
    let split = usize::from(u16::from_le_bytes([l0, l1])).min(rest.len());
    let (part0, part1) = rest.split_at(split);
    let scripted = mode % 2 == 1;
    let script = |part: &[u8]| {
        if scripted {
            part.to_vec()
        } else {
            message_item(part, 0)
        }
    };
    let e0 = std::sync::Arc::new(std::sync::Mutex::new(None));
    let e1 = std::sync::Arc::new(std::sync::Mutex::new(None));
    let to_p0 = Peer::new(
        Vec::new(),
        Some(server(P0_SECRET, None, script(part0), Some(e0.clone()))),
    );
    let to_p1 = Peer::new(
        Vec::new(),
        Some(server(P1_SECRET, None, script(part1), Some(e1.clone()))),
    );
    let servers = ServerKeys {
        p0: StaticKey::from_secret(P0_SECRET).public(),
        p1: StaticKey::from_secret(P1_SECRET).public(),
    };
    let x = [0.5f32, -1.25, 3.0, 0.0, 2.5, -0.75, 1.0, 8.0];
    let fp = FixedPoint::new(12, BitWidth::FULL).expect("a format");
    let source = FixedPointRows::new(&x, 4, fp).expect("two rows of four");
    assert_eq!(source.rows(), 2);
    let mut rng = AesCtr::new(&Seed::from_bytes([0x77; 16]), Domain(0));
    let result = block_on(query::<_, _, _, _, 8>(
        DevicePeer(to_p0),
        DevicePeer(to_p1),
        &device_key(),
        &servers,
        Circuit::Bert,
        source,
        &mut rng,
    ));
    // Only a reply that is one whole message has a verdict.
    let first = |e: &std::sync::Mutex<Option<Vec<Vec<u8>>>>| {
        e.lock()
            .unwrap()
            .take()
            .filter(|m| m.len() == 1)
            .and_then(|mut m| m.pop())
    };
    let (r0, r1) = (first(&e0), first(&e1));
    match (verdict(r0.as_ref()), &result) {
        (Verdict::Failed(why), r) => {
            assert_eq!(
                r,
                &Err(SessionError::Failed(
                    Server::P0,
                    cut(&why).as_str().try_into().unwrap()
                ))
            );
        }
        (Verdict::Outputs(o0), r) => match verdict(r1.as_ref()) {
            Verdict::Failed(why) => {
                assert_eq!(
                    r,
                    &Err(SessionError::Failed(
                        Server::P1,
                        cut(&why).as_str().try_into().unwrap()
                    ))
                );
            }
            Verdict::Outputs(o1)
                if o0.widths == o1.widths
                    && o0
                        .shares
                        .iter()
                        .zip(&o1.shares)
                        .all(|(a, b)| a.len() == b.len()) =>
            {
                let out = r.as_ref().expect("well-formed replies are accepted");
                assert_eq!(out.widths[..], o0.widths[..]);
                for ((a, b), (got, &w)) in o0
                    .shares
                    .iter()
                    .zip(&o1.shares)
                    .zip(out.values.iter().zip(&o0.widths))
                {
                    let w = BitWidth::new(u32::from(w)).expect("checked");
                    let want: Vec<u64> = a.iter().zip(b).map(|(&x, &y)| w.add(x, y)).collect();
                    assert_eq!(got[..], want[..], "the device added the shares wrongly");
                }
            }
            _ => {}
        },
        (Verdict::Unknown, _) => {}
    }
    if let Ok(out) = &result {
        assert_eq!(out.widths.len(), out.values.len());
    }
    result.is_ok()
}

/// Replies as the host encodes them: outputs of several shapes, with the accounting after.
pub fn device_session_seeds() -> Vec<Vec<u8>> {
    let reply = |widths: Vec<u8>, shares: Vec<Vec<u64>>, big_stats: bool| {
        let mut stats = SessionStats {
            kernels: "cpu".into(),
            ..SessionStats::default()
        };
        if big_stats {
            // Accounting that does not fit the device's buffer (it is dropped).
            stats.kernels = "x".repeat(2000);
        }
        encode(&ServerReply::Ok(OutputShares {
            widths,
            shares,
            stats,
        }))
        .unwrap()
    };
    let seed = |mode: u8, r0: &[u8], r1: &[u8]| {
        let mut v = vec![mode];
        v.extend((r0.len() as u16).to_le_bytes());
        v.extend_from_slice(r0);
        v.extend_from_slice(r1);
        v
    };
    let mut out = Vec::new();
    for (widths, shares) in [
        (vec![64], vec![vec![1, 2, 3]]),
        (vec![64, 1], vec![vec![u64::MAX, 5], vec![0, 1, 0]]),
        (
            vec![16, 37, 64, 8],
            vec![vec![9; 32], vec![1], vec![], vec![255; 4]],
        ),
    ] {
        let r0 = reply(widths.clone(), shares.clone(), false);
        let r1 = reply(widths.clone(), shares.clone(), true);
        out.push(seed(0, &r0, &r1));
        out.push(seed(1, &message_item(&r0, 0), &message_item(&r1, 0)));
    }
    out
}

/// The flash embedding table (`EmbeddingTable::parse`) and the rows it embeds.
///
/// Input: token count, sequence length, then the table. Token ids come from the table's last
/// bytes (some out of range, which must be refused).
pub fn device_embedding(data: &[u8]) -> bool {
    let Some((&[tokens, seq], bytes)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let Ok(table) = EmbeddingTable::parse(bytes) else {
        return false;
    };
    let n = usize::from(tokens % 16);
    let ids: Vec<u32> = bytes
        .iter()
        .rev()
        .take(n)
        .map(|&b| u32::from(b) % (table.vocab_size() as u32 + 1))
        .collect();
    let types: Vec<u32> = ids.iter().map(|&i| i % 2).collect();
    let fp = FixedPoint::new(12, BitWidth::FULL).expect("a format");
    let seq_len = usize::from(seq % 16);
    if let Ok(mut e) = TokenEmbedder::new(table, &ids, &types, seq_len, fp) {
        assert_eq!(e.width(), table.hidden() + 2);
        let mut row = vec![0u64; e.width()];
        for r in 0..e.rows() {
            let _ = e.read_row(r, &mut row);
        }
        assert!(e.read_row(e.rows(), &mut row).is_err());
    }
    true
}

/// Tables the host writes from client bundles.
pub fn device_embedding_seeds() -> Vec<Vec<u8>> {
    super::files::bundles()
        .iter()
        .filter_map(|(_, b)| b.device_table().ok())
        .enumerate()
        .map(|(i, t)| [vec![3 + i as u8, 5 + i as u8], t].concat())
        .collect()
}
