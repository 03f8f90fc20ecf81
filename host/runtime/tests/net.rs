//! The secure link layer end to end: handshakes, framing, attacks on the wire, timeouts, the
//! P0–P1 gate channel, key files, and the pure frame decoder on random input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use securerouter_core::Error as CoreError;
use securerouter_core::gate::{Channel, Traffic};
use securerouter_runtime::net::frame::{self, FrameDecoder, FrameError, PlainCodec};
use securerouter_runtime::net::{
    Identity, LinkCipher, LinkConfig, NOISE_PARAMS, NOISE_PARAMS_AESGCM, NetError, PROLOGUE,
    PeerChannel, PublicKey, SecureLink,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Largest single allocation made while `TRACKING` is set on the allocating thread.
struct TrackingAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

/// Polls `F` with allocation tracking on, and reports the largest allocation it made. Only
/// meaningful on a current-thread runtime with a single tracked future at a time.
struct Tracked<F>(Pin<Box<F>>, usize);

impl<F: Future> Future for Tracked<F> {
    type Output = (F::Output, usize);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        LARGEST.store(0, Ordering::Relaxed);
        TRACKING.with(|t| t.set(true));
        let r = self.0.as_mut().poll(cx);
        TRACKING.with(|t| t.set(false));
        let largest = LARGEST.load(Ordering::Relaxed);
        self.1 = self.1.max(largest);
        r.map(|out| (out, self.1))
    }
}

fn tracked<F: Future>(f: F) -> Tracked<F> {
    Tracked(Box::pin(f), 0)
}

/// Deterministic xorshift RNG (tests must be reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn cfg() -> LinkConfig {
    LinkConfig {
        io_timeout: Duration::from_secs(20),
        ..LinkConfig::default()
    }
}

fn short(ms: u64) -> LinkConfig {
    LinkConfig {
        io_timeout: Duration::from_millis(ms),
        ..LinkConfig::default()
    }
}

/// Handshakes client and server over `client_io`/`server_io`, both must succeed.
async fn establish<A, B>(
    client_io: A,
    server_io: B,
    client_cfg: &LinkConfig,
    server_cfg: &LinkConfig,
) -> (SecureLink<A>, SecureLink<B>)
where
    A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_id = Identity::generate();
    let server_id = Identity::generate();
    let allowed = [client_id.public()];
    let server_pub = server_id.public();
    let (c, s) = tokio::join!(
        SecureLink::connect(client_io, &client_id, &server_pub, client_cfg),
        SecureLink::accept(server_io, &server_id, &allowed, server_cfg),
    );
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.peer(), server_id.public());
    assert_eq!(s.peer(), client_id.public());
    (c, s)
}

async fn duplex_pair(
    client_cfg: &LinkConfig,
    server_cfg: &LinkConfig,
) -> (SecureLink<DuplexStream>, SecureLink<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    establish(a, b, client_cfg, server_cfg).await
}

async fn tcp_streams() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

async fn tcp_pair() -> (SecureLink, SecureLink) {
    let (c, s) = tcp_streams().await;
    for stream in [&c, &s] {
        securerouter_runtime::net::tune_tcp(stream).unwrap();
    }
    establish(c, s, &cfg(), &cfg()).await
}

/// Services ready every TCP stream with `tune_tcp`: Nagle's algorithm off, so a round's last
/// small segment is not held back for an acknowledgement.
#[tokio::test]
async fn tuned_tcp_streams_send_without_delay() {
    let (c, s) = tcp_streams().await;
    assert!(
        !c.nodelay().unwrap() && !s.nodelay().unwrap(),
        "the default has Nagle on"
    );
    for stream in [&c, &s] {
        securerouter_runtime::net::tune_tcp(stream).unwrap();
        assert!(stream.nodelay().unwrap());
    }
}

/// What the relay does with the client's `index`-th frame (0 is handshake message 1).
type Policy = Box<dyn FnMut(usize, Vec<u8>) -> Relay + Send>;

enum Relay {
    /// Write these bytes to the server (several frames, a part of one, or nothing).
    Write(Vec<u8>),
    /// Write these bytes, then close the client-to-server direction.
    WriteAndClose(Vec<u8>),
}

/// Client ⇄ relay ⇄ server, where the relay applies `policy` to the client's frames and
/// passes the server's bytes through unchanged.
async fn relayed_pair(policy: Policy) -> (SecureLink<DuplexStream>, SecureLink<DuplexStream>) {
    relayed_pair_with(policy, &cfg()).await
}

async fn relayed_pair_with(
    mut policy: Policy,
    server_cfg: &LinkConfig,
) -> (SecureLink<DuplexStream>, SecureLink<DuplexStream>) {
    let (client_io, relay_c) = tokio::io::duplex(1 << 20);
    let (server_io, relay_s) = tokio::io::duplex(1 << 20);
    let (mut from_client, mut to_client) = tokio::io::split(relay_c);
    let (mut from_server, mut to_server) = tokio::io::split(relay_s);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    tokio::spawn(async move {
        for index in 0.. {
            let mut prefix = [0u8; 4];
            if from_client.read_exact(&mut prefix).await.is_err() {
                let _ = to_server.shutdown().await;
                return;
            }
            let mut frame = prefix.to_vec();
            frame.resize(4 + u32::from_be_bytes(prefix) as usize, 0);
            if from_client.read_exact(&mut frame[4..]).await.is_err() {
                return;
            }
            match policy(index, frame) {
                Relay::Write(bytes) => {
                    if to_server.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Relay::WriteAndClose(bytes) => {
                    let _ = to_server.write_all(&bytes).await;
                    let _ = to_server.shutdown().await;
                    // Keep reading so the client's writes do not block.
                    let _ = tokio::io::copy(&mut from_client, &mut tokio::io::sink()).await;
                    return;
                }
            }
        }
    });
    establish(client_io, server_io, &cfg(), server_cfg).await
}

/// A stream wrapper that copies every byte read and written into shared buffers.
struct Recorder<S> {
    inner: S,
    read: Arc<Mutex<Vec<u8>>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.read
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.written.lock().unwrap().extend_from_slice(&data[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Tape = Arc<Mutex<Vec<u8>>>;

fn recorder<S>(inner: S) -> (Recorder<S>, Tape, Tape) {
    let read = Tape::default();
    let written = Tape::default();
    let rec = Recorder {
        inner,
        read: Arc::clone(&read),
        written: Arc::clone(&written),
    };
    (rec, read, written)
}

/// An identity's X25519 secret key, read back from its saved file (hex), for a plain snow peer.
fn secret_key(id: &Identity, name: &str) -> [u8; 32] {
    let path = temp_path(name);
    id.save(&path).unwrap();
    let mut secret = [0u8; 32];
    hex::decode_to_slice(std::fs::read_to_string(&path).unwrap().trim(), &mut secret).unwrap();
    std::fs::remove_file(&path).unwrap();
    secret
}

fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "securerouter-net-{}-{n}-{name}",
        std::process::id()
    ))
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[tokio::test]
async fn small_empty_and_large_messages_round_trip_both_ways() {
    let (mut c, mut s) = duplex_pair(&cfg(), &cfg()).await;
    let large = pattern(5 << 20, 3); // 5 MiB: 81 chunks
    for message in [b"hello".to_vec(), Vec::new(), large.clone(), vec![0x42]] {
        let (sent, got) = tokio::join!(c.send(&message), s.recv());
        sent.unwrap();
        assert_eq!(got.unwrap(), message);
        let (sent, got) = tokio::join!(s.send(&message), c.recv());
        sent.unwrap();
        assert_eq!(got.unwrap(), message);
    }
}

/// Each initiator picks its cipher and one responder accepts both: ChaCha20-Poly1305 (what
/// the device speaks) and AES-256-GCM; both sides report the initiator's choice.
#[tokio::test]
async fn responder_accepts_either_cipher_and_both_carry_messages() {
    for cipher in [LinkCipher::ChaChaPoly, LinkCipher::AesGcm] {
        let client_cfg = LinkConfig { cipher, ..cfg() };
        // The responder's own preference does not matter.
        for server_cipher in [LinkCipher::ChaChaPoly, LinkCipher::AesGcm] {
            let server_cfg = LinkConfig {
                cipher: server_cipher,
                ..cfg()
            };
            let (mut c, mut s) = duplex_pair(&client_cfg, &server_cfg).await;
            assert_eq!((c.cipher(), s.cipher()), (cipher, cipher));
            let message = pattern(200_000, 9);
            let (sent, got) = tokio::join!(c.send(&message), s.recv());
            sent.unwrap();
            assert_eq!(got.unwrap(), message);
            let (sent, got) = tokio::join!(s.send(&message), c.recv());
            sent.unwrap();
            assert_eq!(got.unwrap(), message);
        }
    }
    assert_eq!(LinkCipher::AesGcm.noise_params(), NOISE_PARAMS_AESGCM);
    assert_eq!(LinkCipher::ChaChaPoly.noise_params(), NOISE_PARAMS);
}

#[tokio::test]
async fn chunk_boundaries_round_trip() {
    let (mut c, mut s) = duplex_pair(&cfg(), &cfg()).await;
    let sizes = [
        frame::FIRST_CHUNK_DATA - 1,
        frame::FIRST_CHUNK_DATA,
        frame::FIRST_CHUNK_DATA + 1,
        frame::FIRST_CHUNK_DATA + frame::MAX_CHUNK_PLAINTEXT,
        frame::FIRST_CHUNK_DATA + frame::MAX_CHUNK_PLAINTEXT + 1,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        let message = pattern(len, i as u8);
        let (sent, got) = tokio::join!(c.send(&message), s.recv());
        sent.unwrap();
        assert_eq!(got.unwrap(), message, "length {len}");
    }
}

#[tokio::test]
async fn split_halves_send_and_receive_concurrently_over_tcp() {
    let (c, s) = tcp_pair().await;
    let (mut cw, mut cr) = c.into_split();
    let (mut sw, mut sr) = s.into_split();
    let a = pattern(5 << 20, 1);
    let b = pattern(5 << 20, 2);
    let (a2, b2) = (a.clone(), b.clone());
    // Both sides send 5 MiB before either reads: only works because the halves are independent.
    let tasks = [
        tokio::spawn(async move { cw.send(&a2).await.map(|()| Vec::new()) }),
        tokio::spawn(async move { sw.send(&b2).await.map(|()| Vec::new()) }),
        tokio::spawn(async move { sr.recv().await }),
        tokio::spawn(async move { cr.recv().await }),
    ];
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("no deadlock")
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(out[2], a);
    assert_eq!(out[3], b);
}

#[tokio::test]
async fn many_messages_arrive_in_order() {
    let (mut c, mut s) = duplex_pair(&cfg(), &cfg()).await;
    let sender = tokio::spawn(async move {
        for i in 0..500u32 {
            c.send(&pattern(i as usize * 37, i as u8)).await.unwrap();
        }
        c
    });
    for i in 0..500u32 {
        assert_eq!(s.recv().await.unwrap(), pattern(i as usize * 37, i as u8));
    }
    drop(sender.await.unwrap());
    assert!(matches!(s.recv().await, Err(NetError::Closed)));
}

#[tokio::test]
async fn message_above_own_maximum_is_refused_locally_and_link_stays_usable() {
    let small = LinkConfig {
        max_message: 1000,
        ..cfg()
    };
    let (mut c, mut s) = duplex_pair(&small, &cfg()).await;
    match c.send(&[0u8; 1001]).await {
        Err(NetError::FrameTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    c.send(&[1u8; 1000]).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), vec![1u8; 1000]);
}

#[tokio::test]
async fn clean_close_is_closed_every_time() {
    let (mut c, mut s) = duplex_pair(&cfg(), &cfg()).await;
    c.send(b"last").await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(s.recv().await.unwrap(), b"last");
    assert!(matches!(s.recv().await, Err(NetError::Closed)));
    assert!(matches!(s.recv().await, Err(NetError::Closed)));
    assert!(matches!(c.send(b"more").await, Err(NetError::Broken)));
}

#[tokio::test]
async fn link_futures_are_send_so_they_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let (a, b) = tokio::io::duplex(1024);
    let id = Identity::generate();
    let (key, cfg) = (id.public(), cfg());
    assert_send(&SecureLink::connect(a, &id, &key, &cfg));
    assert_send(&SecureLink::accept(b, &id, &[key], &cfg));
    let (mut c, s) = duplex_pair(&cfg, &cfg).await;
    assert_send(&c.send(b""));
    assert_send(&c.recv());
    let mut channel = PeerChannel::new(s);
    let mut buf = [0u8; 0];
    assert_send(&channel.exchange(&[], &mut buf));
}

// ---------------------------------------------------------------------------------------------
// PeerChannel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_channel_exchanges_8_mib_each_way_without_deadlock() {
    let (c, s) = tcp_pair().await;
    let mut p0 = PeerChannel::new(c);
    let mut p1 = PeerChannel::new(s);
    let big0 = pattern(8 << 20, 10);
    let big1 = pattern(8 << 20, 11);
    let (b0, b1) = (big0.clone(), big1.clone());
    let run0 = tokio::spawn(async move {
        let mut got = vec![0u8; b0.len()];
        p0.exchange(&b0, &mut got).await.unwrap();
        let mut small = [0u8; 3];
        p0.exchange(&[1, 2, 3], &mut small).await.unwrap();
        p0.exchange(&[], &mut []).await.unwrap();
        (got, small, p0.traffic())
    });
    let run1 = tokio::spawn(async move {
        let mut got = vec![0u8; b1.len()];
        p1.exchange(&b1, &mut got).await.unwrap();
        let mut small = [0u8; 3];
        p1.exchange(&[4, 5, 6], &mut small).await.unwrap();
        p1.exchange(&[], &mut []).await.unwrap();
        (got, small, p1.traffic())
    });
    let limit = Duration::from_secs(120);
    let (got0, small0, t0) = tokio::time::timeout(limit, run0).await.unwrap().unwrap();
    let (got1, small1, t1) = tokio::time::timeout(limit, run1).await.unwrap().unwrap();
    assert!(got0 == big1 && got1 == big0);
    assert_eq!((small0, small1), ([4, 5, 6], [1, 2, 3]));
    let expected = Traffic {
        bytes_sent: (8 << 20) + 3,
        rounds: 3,
    };
    assert_eq!((t0, t1), (expected, expected));
}

#[tokio::test]
async fn peer_channel_reports_length_mismatch_and_closed_peer() {
    let (c, s) = duplex_pair(&cfg(), &cfg()).await;
    let mut p0 = PeerChannel::new(c);
    let mut p1 = PeerChannel::new(s);
    let mut r0 = [0u8; 4];
    let mut r1 = [0u8; 5];
    let (e0, e1) = tokio::join!(p0.exchange(&[1; 4], &mut r0), p1.exchange(&[2; 5], &mut r1));
    assert_eq!(
        e0,
        Err(CoreError::LengthMismatch {
            expected: 4,
            got: 5
        })
    );
    assert_eq!(
        e1,
        Err(CoreError::LengthMismatch {
            expected: 5,
            got: 4
        })
    );
    // Send and receive buffers of different lengths are refused before any I/O.
    assert_eq!(
        p0.exchange(&[0; 2], &mut [0; 3]).await,
        Err(CoreError::LengthMismatch {
            expected: 2,
            got: 3
        })
    );
    drop(p1);
    assert!(matches!(
        p0.exchange(&[1; 4], &mut r0).await,
        Err(CoreError::ChannelClosed(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Attacks on the wire

#[tokio::test]
async fn tampered_ciphertext_is_a_decrypt_error() {
    let policy: Policy = Box::new(|i, mut frame| {
        if i == 1 {
            let last = frame.len() - 20;
            frame[last] ^= 0x01;
        }
        Relay::Write(frame)
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(b"transfer 100 to alice").await.unwrap();
    assert!(matches!(s.recv().await, Err(NetError::Decrypt)));
    // The reader is dead afterwards.
    assert!(matches!(s.recv().await, Err(NetError::Broken)));
}

#[tokio::test]
async fn replayed_frame_is_a_decrypt_error() {
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let tape = Arc::clone(&recorded);
    let policy: Policy = Box::new(move |i, frame| {
        if i == 1 {
            *tape.lock().unwrap() = frame.clone();
            Relay::Write(frame)
        } else if i == 2 {
            // Swallow the real second message and inject the recorded first one again.
            Relay::Write(tape.lock().unwrap().clone())
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(b"share #1").await.unwrap();
    c.send(b"share #2").await.unwrap();
    assert_eq!(s.recv().await.unwrap(), b"share #1");
    assert!(matches!(s.recv().await, Err(NetError::Decrypt)));
    assert!(!recorded.lock().unwrap().is_empty());
}

#[tokio::test]
async fn reordered_frames_are_a_decrypt_error() {
    let mut held = None;
    let policy: Policy = Box::new(move |i, frame| match i {
        1 => {
            held = Some(frame);
            Relay::Write(Vec::new())
        }
        2 => {
            let mut both = frame;
            both.extend(held.take().unwrap());
            Relay::Write(both)
        }
        _ => Relay::Write(frame),
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(b"first").await.unwrap();
    c.send(b"secnd").await.unwrap();
    assert!(matches!(s.recv().await, Err(NetError::Decrypt)));
}

#[tokio::test]
async fn dropped_frame_inside_a_message_is_rejected() {
    // The second chunk of a multi-chunk message disappears: the third arrives in its place.
    let policy: Policy = Box::new(|i, frame| {
        if i == 2 {
            Relay::Write(Vec::new())
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(&pattern(3 * frame::MAX_CHUNK_PLAINTEXT, 0))
        .await
        .unwrap();
    assert!(matches!(
        s.recv().await,
        Err(NetError::Decrypt | NetError::Malformed(_))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn huge_length_prefix_is_too_large_without_allocating() {
    let policy: Policy = Box::new(|i, frame| {
        if i == 1 {
            let mut evil = vec![0xff, 0xff, 0xff, 0xff];
            evil.extend(&frame[4..]);
            Relay::Write(evil)
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(b"hi").await.unwrap();
    // The tracker itself works.
    let (_, seen) = tracked(async { std::hint::black_box(vec![1u8; 300 << 10]) }).await;
    assert!(seen >= 300 << 10);
    let (result, largest) = tracked(s.recv()).await;
    match result {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert_eq!((len, max), (0xffff_ffff, frame::MAX_FRAME));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert!(largest < 128 << 10, "largest allocation {largest} bytes");
}

#[tokio::test(flavor = "current_thread")]
async fn announced_total_above_max_message_is_too_large_without_allocating() {
    let receiver = LinkConfig {
        max_message: 1 << 20,
        ..cfg()
    };
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let (mut c, mut s) = establish(client_io, server_io, &cfg(), &receiver).await;
    let big = pattern(2 << 20, 0);
    let sender = tokio::spawn(async move {
        // The receiver stops reading after the first chunk; ignore the send's outcome.
        let _ = c.send(&big).await;
        c
    });
    let (result, largest) = tracked(s.recv()).await;
    match result {
        Err(NetError::FrameTooLarge { len, max }) => assert_eq!((len, max), (2 << 20, 1 << 20)),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert!(largest < 128 << 10, "largest allocation {largest} bytes");
    drop(s);
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn frame_shorter_than_a_tag_is_malformed() {
    let policy: Policy = Box::new(|i, frame| {
        if i == 1 {
            Relay::Write(vec![0, 0, 0, 15])
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(b"x").await.unwrap();
    assert!(matches!(s.recv().await, Err(NetError::Malformed(_))));
}

#[tokio::test]
async fn stream_cut_inside_a_frame_is_truncated() {
    let policy: Policy = Box::new(|i, frame| {
        if i == 1 {
            Relay::WriteAndClose(frame[..frame.len() / 2].to_vec())
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(b"a message cut in half").await.unwrap();
    assert!(matches!(s.recv().await, Err(NetError::Truncated)));
}

#[tokio::test]
async fn stream_cut_between_chunks_of_a_message_is_truncated() {
    let policy: Policy = Box::new(|i, frame| {
        if i == 1 {
            Relay::WriteAndClose(frame) // the whole first chunk, then nothing
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair(policy).await;
    c.send(&pattern(200_000, 9)).await.unwrap();
    assert!(matches!(s.recv().await, Err(NetError::Truncated)));
}

#[tokio::test]
async fn silent_peer_times_out_and_the_link_survives() {
    let (mut c, mut s) = duplex_pair(&cfg(), &short(200)).await;
    let start = Instant::now();
    match s.recv().await {
        Err(NetError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // Nothing was lost: the next message still arrives.
    c.send(b"late but fine").await.unwrap();
    assert_eq!(s.recv().await.unwrap(), b"late but fine");
}

#[tokio::test]
async fn a_peer_stalling_mid_message_times_out() {
    let policy: Policy = Box::new(|i, frame| {
        if i == 1 {
            Relay::Write(frame[..10].to_vec()) // then never the rest
        } else {
            Relay::Write(frame)
        }
    });
    let (mut c, mut s) = relayed_pair_with(policy, &short(200)).await;
    c.send(b"stalled").await.unwrap();
    assert!(matches!(s.recv().await, Err(NetError::Timeout { .. })));
}

#[tokio::test]
async fn passive_observer_sees_no_share_values() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let shares: Vec<u64> = (0..1000).map(|_| rng.next()).collect();
    let plaintext: Vec<u8> = shares.iter().flat_map(|v| v.to_le_bytes()).collect();

    let (a, b) = tokio::io::duplex(1 << 20);
    let (a, read, written) = recorder(a);
    let (mut c, mut s) = establish(a, b, &cfg(), &cfg()).await;
    c.send(&plaintext).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), plaintext);
    s.send(&plaintext).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), plaintext);

    let mut captured = written.lock().unwrap().clone();
    captured.extend(read.lock().unwrap().iter());
    assert!(captured.len() > 2 * plaintext.len());
    let set: HashSet<u64> = shares.iter().copied().collect();
    let leaked = captured
        .windows(8)
        .filter(|w| set.contains(&u64::from_le_bytes((*w).try_into().unwrap())))
        .count();
    assert_eq!(leaked, 0, "share values visible on the wire");
    assert!(!captured.windows(16).any(|w| w == &plaintext[..16]));
    assert!(
        captured.windows(plaintext.len()).all(|w| w != plaintext),
        "plaintext on the wire"
    );
}

// ---------------------------------------------------------------------------------------------
// Handshake failures

#[tokio::test]
async fn wrong_pinned_responder_key_fails_on_both_sides() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let client = Identity::generate();
    let server = Identity::generate();
    let impostor = Identity::generate();
    let (impostor, allowed, cfg) = (impostor.public(), [client.public()], cfg());
    let (c, s) = tokio::join!(
        SecureLink::connect(a, &client, &impostor, &cfg),
        // On failure `accept` drops `b`: the client sees the connection close.
        SecureLink::accept(b, &server, &allowed, &cfg),
    );
    assert!(matches!(c, Err(NetError::Handshake(_))), "{c:?}");
    assert!(matches!(s, Err(NetError::Handshake(_))), "{s:?}");
}

#[tokio::test]
async fn initiator_not_allowed_is_unknown_peer_and_gets_no_reply() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (b, _, server_wrote) = recorder(b);
    let client = Identity::generate();
    let server = Identity::generate();
    let someone_else = Identity::generate().public();
    let (server_pub, allowed, cfg) = (server.public(), [someone_else], cfg());
    let (c, s) = tokio::join!(
        SecureLink::connect(a, &client, &server_pub, &cfg),
        SecureLink::accept(b, &server, &allowed, &cfg),
    );
    match s {
        Err(NetError::UnknownPeer(k)) => assert_eq!(k, client.public()),
        other => panic!("expected UnknownPeer, got {other:?}"),
    }
    assert!(matches!(c, Err(NetError::Handshake(_))), "{c:?}");
    assert!(server_wrote.lock().unwrap().is_empty());
}

#[tokio::test]
async fn prologue_mismatch_fails_the_handshake() {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let client = Identity::generate();
    let server = Identity::generate();
    let server_pub = server.public();
    let client_pub = client.public();
    let accept = tokio::spawn(async move {
        SecureLink::accept(b, &server, &[client_pub], &cfg())
            .await
            .map(|_| ())
    });
    assert_ne!(PROLOGUE, b"securerouter/1");
    let client_secret = secret_key(&client, "prologue.key");
    let mut hs = snow::Builder::new("Noise_IK_25519_ChaChaPoly_BLAKE2s".parse().unwrap())
        .local_private_key(&client_secret)
        .unwrap()
        .remote_public_key(&server_pub.0)
        .unwrap()
        .prologue(b"securerouter/1")
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut msg = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut msg).unwrap();
    a.write_all(&(n as u32).to_be_bytes()).await.unwrap();
    a.write_all(&msg[..n]).await.unwrap();
    let result = accept.await.unwrap();
    assert!(matches!(result, Err(NetError::Handshake(_))), "{result:?}");
    // And the responder said nothing.
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// A plain Noise `IK_25519_AESGCM_BLAKE2s` initiator (snow, nothing of ours) completes the
/// handshake with a SecureLink responder, which then opens its AES-256-GCM transport message:
/// the link really speaks the standard protocol of that name.
#[tokio::test]
async fn standard_aesgcm_initiator_interoperates() {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let (client, server) = (Identity::generate(), Identity::generate());
    let (server_pub, client_pub) = (server.public(), client.public());
    let accept = tokio::spawn(async move {
        let mut link = SecureLink::accept(b, &server, &[client_pub], &cfg()).await?;
        let cipher = link.cipher();
        link.recv().await.map(|m| (cipher, m))
    });
    let client_secret = secret_key(&client, "aesgcm.key");
    let mut hs = snow::Builder::new(NOISE_PARAMS_AESGCM.parse().unwrap())
        .local_private_key(&client_secret)
        .unwrap()
        .remote_public_key(&server_pub.0)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut msg = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut msg).unwrap();
    a.write_all(&(n as u32).to_be_bytes()).await.unwrap();
    a.write_all(&msg[..n]).await.unwrap();
    let mut len = [0u8; 4];
    a.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    a.read_exact(&mut reply).await.unwrap();
    hs.read_message(&reply, &mut msg).unwrap();
    let mut transport = hs.into_transport_mode().unwrap();
    // One message in one chunk: its total length (u64, big-endian), then the bytes.
    let mut plain = 5u64.to_be_bytes().to_vec();
    plain.extend_from_slice(b"hello");
    let n = transport.write_message(&plain, &mut msg).unwrap();
    a.write_all(&(n as u32).to_be_bytes()).await.unwrap();
    a.write_all(&msg[..n]).await.unwrap();
    let (cipher, got) = accept.await.unwrap().unwrap();
    assert_eq!(cipher, LinkCipher::AesGcm);
    assert_eq!(got, b"hello");
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_is_an_error_not_a_panic() {
    let mut rng = Rng(42);
    let server = Identity::generate();
    let client = Identity::generate();
    let mut inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(),
        vec![],
        vec![0, 0, 0],
        vec![0, 0, 0, 0],
        vec![0, 0, 0, 96],
        vec![0xff; 64],
    ];
    for _ in 0..100 {
        let len = rng.below(300);
        inputs.push(rng.bytes(len));
    }
    for _ in 0..100 {
        // Well-framed garbage of a plausible size.
        let len = 16 + rng.below(200);
        let mut framed = (len as u32).to_be_bytes().to_vec();
        framed.extend(rng.bytes(len));
        inputs.push(framed);
    }
    for garbage in inputs {
        // To a responder.
        let (mut a, b) = tokio::io::duplex(1 << 16);
        a.write_all(&garbage).await.unwrap();
        a.shutdown().await.unwrap();
        let r = SecureLink::accept(b, &server, &[client.public()], &short(500)).await;
        assert!(r.is_err());
        // To an initiator, as the responder's reply.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let replier = tokio::spawn(async move {
            let mut first = [0u8; 4 + 96];
            let _ = b.read_exact(&mut first).await;
            let _ = b.write_all(&garbage).await;
            let _ = b.shutdown().await;
            b
        });
        let r = SecureLink::connect(a, &client, &server.public(), &short(500)).await;
        assert!(r.is_err());
        drop(replier.await.unwrap());
    }
}

#[tokio::test]
async fn a_connection_closed_before_a_byte_is_a_probe_not_a_failed_handshake() {
    let server = Identity::generate();
    let client = Identity::generate();
    let (mut a, b) = tokio::io::duplex(1 << 16);
    a.shutdown().await.unwrap();
    let r = SecureLink::accept(b, &server, &[client.public()], &short(500)).await;
    assert!(matches!(r, Err(NetError::NoHandshake)), "{:?}", r.err());
    assert!(securerouter_runtime::net::is_probe(
        &securerouter_runtime::Error::from(r.err().unwrap())
    ));
    // One byte and then nothing is a broken handshake, not a probe.
    let (mut a, b) = tokio::io::duplex(1 << 16);
    a.write_all(&[0]).await.unwrap();
    a.shutdown().await.unwrap();
    let r = SecureLink::accept(b, &server, &[client.public()], &short(500)).await;
    assert!(matches!(r, Err(NetError::Handshake(_))), "{:?}", r.err());
    assert!(!securerouter_runtime::net::is_probe(
        &securerouter_runtime::Error::from(r.err().unwrap())
    ));
}

#[tokio::test]
async fn silent_peer_times_out_the_handshake() {
    let (_a, b) = tokio::io::duplex(1 << 16);
    let server = Identity::generate();
    let start = Instant::now();
    let r = SecureLink::accept(b, &server, &[], &short(200)).await;
    assert!(matches!(r, Err(NetError::Timeout { .. })), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn identity_save_load_round_trip() {
    let id = Identity::generate();
    let path = temp_path("id.key");
    id.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = Identity::load(&path).unwrap();
    assert_eq!(loaded.public(), id.public());
    // Debug shows the public key only.
    let debug = format!("{id:?}");
    assert!(debug.contains(&id.public().to_hex()));
    assert!(!debug.contains(text.trim()));
    // Saving over an existing file works (and keeps it private).
    Identity::generate().save(&path).unwrap();
    assert_ne!(Identity::load(&path).unwrap().public(), id.public());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn identity_load_errors_name_the_file_and_the_problem() {
    let missing = temp_path("missing.key");
    let short = temp_path("short.key");
    write_private(&short, &"a".repeat(63));
    let nonhex = temp_path("nonhex.key");
    write_private(&nonhex, &"g".repeat(64));
    for (path, needle) in [
        (&missing, "no such file"),
        (&short, "found 63"),
        (&nonhex, "not hexadecimal"),
    ] {
        match Identity::load(path) {
            Err(e @ NetError::KeyFile { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains(needle), "{text}");
            }
            other => panic!("expected KeyFile for {}, got {other:?}", path.display()),
        }
    }
    std::fs::remove_file(&short).unwrap();
    std::fs::remove_file(&nonhex).unwrap();
}

/// Writes a file only its owner may access, as key files must be.
fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[cfg(unix)]
#[test]
fn identity_load_refuses_a_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let path = temp_path("exposed.key");
    Identity::generate().save(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    match Identity::load(&path) {
        Err(e @ NetError::KeyFile { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("mode 0644"), "{text}");
        }
        other => panic!("expected KeyFile, got {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn public_key_hex_round_trip_and_errors() {
    let k = Identity::generate().public();
    assert_eq!(PublicKey::from_hex(&k.to_hex()).unwrap(), k);
    assert_eq!(k.to_string(), k.to_hex());
    assert_eq!(format!(" {k}\n").parse::<PublicKey>().unwrap(), k);
    assert!(matches!(
        PublicKey::from_hex(&"0".repeat(63)),
        Err(NetError::InvalidKey(_))
    ));
    assert!(matches!(
        PublicKey::from_hex(&"z".repeat(64)),
        Err(NetError::InvalidKey(_))
    ));
    // A known X25519 vector (RFC 7748, section 6.1): Alice's keys.
    let secret =
        hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
    let id = Identity::from_secret(secret.try_into().unwrap());
    assert_eq!(
        id.public().to_hex(),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
}

// ---------------------------------------------------------------------------------------------
// The pure frame decoder on random input

#[test]
fn frame_decoder_never_panics_on_random_bytes() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for round in 0..3000 {
        let len = rng.below(if round % 10 == 0 { 200_000 } else { 300 });
        let mut input = rng.bytes(len);
        // Bias towards plausible prefixes so bodies and chunks get exercised.
        if len >= 4 && round % 2 == 0 {
            let frame_len = rng.below(frame::MAX_FRAME + 100) as u32;
            input[..4].copy_from_slice(&frame_len.to_be_bytes());
        }
        let max = rng.below(1 << 20);
        let mut d = FrameDecoder::new(max);
        let mut rest = &input[..];
        while !rest.is_empty() {
            let piece = 1 + rng.below(rest.len());
            match d.decode(&rest[..piece], &mut PlainCodec) {
                Ok((used, m)) => {
                    assert!(used <= piece);
                    if let Some(m) = m {
                        assert!(m.len() <= max);
                    }
                    rest = &rest[used..];
                }
                Err(e) => {
                    assert!(matches!(
                        e,
                        FrameError::TooLarge { .. }
                            | FrameError::Malformed(_)
                            | FrameError::Decrypt
                    ));
                    // Poisoned: the same error again.
                    assert_eq!(d.decode(rest, &mut PlainCodec).unwrap_err(), e);
                    break;
                }
            }
        }
    }
}

#[test]
fn frame_encoding_round_trips_in_random_pieces_and_mutations_never_panic() {
    let mut rng = Rng(7);
    for round in 0..300 {
        let count = 1 + rng.below(4);
        let messages: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let len = if round % 5 == 0 {
                    rng.below(200_000)
                } else {
                    rng.below(100)
                };
                rng.bytes(len)
            })
            .collect();
        let mut wire = Vec::new();
        for m in &messages {
            frame::encode_message(m, &mut PlainCodec, &mut wire).unwrap();
        }
        // Whole, in random pieces.
        let mut d = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let piece = 1 + rng.below(rest.len().min(70_000));
            let (used, m) = d.decode(&rest[..piece], &mut PlainCodec).unwrap();
            got.extend(m);
            rest = &rest[used..];
        }
        assert_eq!(got, messages);
        assert!(d.is_idle());
        // Mutated: any outcome but a panic; a flipped bit never yields the same messages.
        let mut bad = wire.clone();
        let at = rng.below(bad.len());
        bad[at] ^= 1 << rng.below(8);
        if let Ok(out) = FrameDecoder::new(1 << 20).decode_all(&bad, &mut PlainCodec) {
            assert_ne!(out, messages);
        }
        // Cut short: never reports all messages.
        let cut = rng.below(wire.len());
        let mut d = FrameDecoder::new(1 << 20);
        let out = d.decode_all(&wire[..cut], &mut PlainCodec).unwrap();
        assert!(out.len() < messages.len());
    }
}
