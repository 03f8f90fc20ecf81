//! [`SecureLink`]: the Noise IK handshake and the framed, encrypted message stream after it,
//! whole or split into a [`LinkWriter`] and a [`LinkReader`] for concurrent use.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::frame::{self, FrameDecoder, FrameError, MessageEncoder, Opener, Sealer};
use super::{Identity, LinkCipher, LinkConfig, NetError, PROLOGUE, PublicKey};

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Bytes of frames gathered before one write to the stream (fewer system calls for large
/// messages, bounded memory).
const WRITE_BATCH: usize = 256 << 10;
/// Bytes read from the stream at a time.
const READ_BUF: usize = 64 << 10;

/// An authenticated, encrypted, message-oriented link to one peer over a byte stream `S`
/// (TCP by default). Messages arrive whole, in order, exactly once, or not at all (an error).
///
/// Built by [`connect`](Self::connect) (initiator) or [`accept`](Self::accept) (responder);
/// [`into_split`](Self::into_split) gives halves that two tasks can drive concurrently.
pub struct SecureLink<S = TcpStream> {
    /// Boxed so that a link is one pointer wide (cheap to move through channels and enums).
    halves: Box<(LinkWriter, LinkReader)>,
    cipher: LinkCipher,
    _stream: PhantomData<fn() -> S>,
}

/// The sending half of a [`SecureLink`].
pub struct LinkWriter {
    stream: BoxWrite,
    sealer: NoiseSealer,
    out: Vec<u8>,
    max_message: usize,
    io_timeout: Duration,
    /// Set while a send is in flight and left set when it fails or is cancelled: the stream
    /// may then hold part of a frame, and nothing more can be sent.
    broken: bool,
    peer: PublicKey,
}

/// The receiving half of a [`SecureLink`].
pub struct LinkReader {
    stream: BoxRead,
    opener: NoiseOpener,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    io_timeout: Duration,
    state: ReadState,
    peer: PublicKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    Open,
    /// The peer closed cleanly; every further receive says so again.
    Closed,
    Broken,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> SecureLink<S> {
    /// Runs the handshake as initiator over `stream`, authenticating the responder by its
    /// pinned key `responder`.
    ///
    /// # Errors
    /// [`NetError::Handshake`] when the responder does not hold `responder`'s secret, rejects
    /// our key, speaks another protocol version or hangs up; [`NetError::Timeout`] when the
    /// handshake takes longer than `cfg.io_timeout`.
    pub async fn connect(
        mut stream: S,
        me: &Identity,
        responder: &PublicKey,
        cfg: &LinkConfig,
    ) -> Result<Self, NetError> {
        let transport = with_timeout(
            cfg.io_timeout,
            "running the handshake (initiator)",
            initiator_handshake(&mut stream, me, responder, cfg.cipher),
        )
        .await?;
        debug!(peer = %responder, cipher = ?cfg.cipher, "secure link established (initiator)");
        Ok(Self::new(stream, transport, *responder, cfg, cfg.cipher))
    }

    /// Runs the handshake as responder over `stream`, accepting the initiator only if its
    /// static key is in `allowed`.
    ///
    /// # Errors
    /// [`NetError::UnknownPeer`] for a well-formed handshake from a key not in `allowed`
    /// (nothing is sent back); [`NetError::Handshake`] for a handshake that does not
    /// authenticate or parse; [`NetError::NoHandshake`] when the initiator closes before its
    /// first byte; [`NetError::Timeout`] after `cfg.io_timeout`.
    pub async fn accept(
        mut stream: S,
        me: &Identity,
        allowed: &[PublicKey],
        cfg: &LinkConfig,
    ) -> Result<Self, NetError> {
        let (transport, peer, cipher) = with_timeout(
            cfg.io_timeout,
            "running the handshake (responder)",
            responder_handshake(&mut stream, me, allowed),
        )
        .await?;
        debug!(%peer, ?cipher, "secure link established (responder)");
        Ok(Self::new(stream, transport, peer, cfg, cipher))
    }

    fn new(
        stream: S,
        transport: StatelessTransportState,
        peer: PublicKey,
        cfg: &LinkConfig,
        cipher: LinkCipher,
    ) -> Self {
        let transport = Arc::new(transport);
        let (read, write) = tokio::io::split(stream);
        let halves = (
            LinkWriter {
                stream: Box::new(write),
                sealer: NoiseSealer {
                    transport: Arc::clone(&transport),
                    nonce: 0,
                },
                out: Vec::new(),
                max_message: cfg.max_message,
                io_timeout: cfg.io_timeout,
                broken: false,
                peer,
            },
            LinkReader {
                stream: Box::new(read),
                opener: NoiseOpener {
                    transport,
                    nonce: 0,
                },
                decoder: FrameDecoder::new(cfg.max_message),
                buf: vec![0; READ_BUF].into_boxed_slice(),
                start: 0,
                end: 0,
                io_timeout: cfg.io_timeout,
                state: ReadState::Open,
                peer,
            },
        );
        Self {
            halves: Box::new(halves),
            cipher,
            _stream: PhantomData,
        }
    }
}

impl<S> SecureLink<S> {
    /// The peer's authenticated static key.
    pub fn peer(&self) -> PublicKey {
        self.halves.1.peer
    }

    /// The link's cipher (the initiator's choice).
    pub fn cipher(&self) -> LinkCipher {
        self.cipher
    }

    /// Sends one message; see [`LinkWriter::send`].
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        self.halves.0.send(message).await
    }

    /// Receives one message; see [`LinkReader::recv`].
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        self.halves.1.recv().await
    }

    /// Closes the sending direction; see [`LinkWriter::shutdown`].
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.halves.0.shutdown().await
    }

    /// Splits the link into halves that can be moved to different tasks and used at the same
    /// time (needed to send and receive large messages simultaneously without deadlock).
    pub fn into_split(self) -> (LinkWriter, LinkReader) {
        *self.halves
    }
}

impl<S> fmt::Debug for SecureLink<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureLink")
            .field("peer", &self.halves.1.peer)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl LinkWriter {
    /// Sends one message (any length up to `max_message`, empty included).
    ///
    /// Each write must make progress within `io_timeout`. A failed or cancelled send leaves
    /// the writer unusable ([`NetError::Broken`]), since part of a frame may be on the wire.
    ///
    /// # Errors
    /// [`NetError::FrameTooLarge`] (link still usable) when `message` exceeds `max_message`;
    /// [`NetError::Timeout`] or [`NetError::Io`] when the stream does not take the bytes.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        if self.broken {
            return Err(NetError::Broken);
        }
        if message.len() > self.max_message {
            return Err(NetError::FrameTooLarge {
                len: message.len(),
                max: self.max_message,
            });
        }
        self.broken = true;
        let mut encoder = MessageEncoder::new(message);
        while !encoder.is_done() {
            self.out.clear();
            while self.out.len() < WRITE_BATCH
                && encoder.next_frame(&mut self.sealer, &mut self.out)?
            {}
            let write = self.stream.write_all(&self.out);
            with_timeout(self.io_timeout, "sending to the peer", async {
                write.await.map_err(|source| NetError::Io {
                    context: "sending to the peer",
                    source,
                })
            })
            .await?;
        }
        let flush = self.stream.flush();
        with_timeout(self.io_timeout, "flushing to the peer", async {
            flush.await.map_err(|source| NetError::Io {
                context: "flushing to the peer",
                source,
            })
        })
        .await?;
        if self.out.capacity() > 2 * WRITE_BATCH {
            self.out = Vec::new();
        }
        self.broken = false;
        Ok(())
    }

    /// Closes the sending direction cleanly; the peer's next receive then reports
    /// [`NetError::Closed`]. No more messages can be sent.
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.broken = true;
        let shutdown = self.stream.shutdown();
        with_timeout(self.io_timeout, "closing the connection", async {
            shutdown.await.map_err(|source| NetError::Io {
                context: "closing the connection",
                source,
            })
        })
        .await
    }

    /// The peer's authenticated static key.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }
}

impl fmt::Debug for LinkWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkWriter")
            .field("peer", &self.peer)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl LinkReader {
    /// Receives the next message.
    ///
    /// Fails with [`NetError::Timeout`] when no bytes arrive for `io_timeout`; the reader
    /// stays usable then, and this future may also be dropped (e.g. in `select!`) without
    /// losing data. Every other error is final.
    ///
    /// # Errors
    /// [`NetError::Closed`] when the peer closed cleanly between messages,
    /// [`NetError::Truncated`] when it closed mid-message, [`NetError::Decrypt`] for a
    /// tampered, replayed or reordered frame, [`NetError::FrameTooLarge`] /
    /// [`NetError::Malformed`] for frames that break the format.
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        match self.state {
            ReadState::Open => {}
            ReadState::Closed => return Err(NetError::Closed),
            ReadState::Broken => return Err(NetError::Broken),
        }
        loop {
            if self.start < self.end {
                let input = &self.buf[self.start..self.end];
                match self.decoder.decode(input, &mut self.opener) {
                    Ok((used, message)) => {
                        self.start += used;
                        if let Some(message) = message {
                            return Ok(message);
                        }
                    }
                    Err(e) => {
                        self.state = ReadState::Broken;
                        let e = NetError::from(e);
                        warn!(peer = %self.peer, error = %e, "rejecting data from peer");
                        return Err(e);
                    }
                }
            }
            self.start = 0;
            self.end = 0;
            let read = tokio::time::timeout(self.io_timeout, self.stream.read(&mut self.buf)).await;
            match read {
                Err(_) => {
                    return Err(NetError::Timeout {
                        what: "receiving from the peer",
                        after: self.io_timeout,
                    });
                }
                Ok(Err(source)) => {
                    self.state = ReadState::Broken;
                    return Err(NetError::Io {
                        context: "receiving from the peer",
                        source,
                    });
                }
                Ok(Ok(0)) if self.decoder.is_idle() => {
                    self.state = ReadState::Closed;
                    return Err(NetError::Closed);
                }
                Ok(Ok(0)) => {
                    self.state = ReadState::Broken;
                    return Err(NetError::Truncated);
                }
                Ok(Ok(n)) => self.end = n,
            }
        }
    }

    /// The peer's authenticated static key.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }
}

impl fmt::Debug for LinkReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkReader")
            .field("peer", &self.peer)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Noise transport encryption for one direction, with our own nonce counter so the two
/// directions can live in different tasks (sharing the keys through an `Arc`).
struct NoiseSealer {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
}

impl Sealer for NoiseSealer {
    fn seal(&mut self, plaintext: &[u8], ciphertext: &mut [u8]) -> Result<usize, FrameError> {
        let n = self
            .transport
            .write_message(self.nonce, plaintext, ciphertext)
            .map_err(|_| FrameError::Malformed("cannot encrypt (nonces exhausted?)"))?;
        self.nonce += 1;
        Ok(n)
    }
}

/// Noise transport decryption for the other direction; the nonce advances only on success,
/// so a replayed, dropped or reordered frame can never authenticate.
struct NoiseOpener {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
}

impl Opener for NoiseOpener {
    fn open(&mut self, ciphertext: &[u8], plaintext: &mut [u8]) -> Result<usize, FrameError> {
        let n = self
            .transport
            .read_message(self.nonce, ciphertext, plaintext)
            .map_err(|_| FrameError::Decrypt)?;
        self.nonce += 1;
        Ok(n)
    }
}

/// Runs `fut` with a deadline, reporting `what` on timeout.
async fn with_timeout<T>(
    after: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(NetError::Timeout { what, after }))
}

fn builder(me: &Identity, cipher: LinkCipher) -> Result<snow::Builder<'_>, NetError> {
    let params: snow::params::NoiseParams = cipher
        .noise_params()
        .parse()
        .map_err(|e| NetError::Handshake(format!("bad Noise parameters: {e}")))?;
    snow::Builder::new(params)
        .local_private_key(me.secret())
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(|e| NetError::Handshake(format!("cannot set up Noise: {e}")))
}

async fn initiator_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    responder: &PublicKey,
    cipher: LinkCipher,
) -> Result<StatelessTransportState, NetError> {
    let mut hs = builder(me, cipher)?
        .remote_public_key(&responder.0)
        .and_then(|b| b.build_initiator())
        .map_err(|e| NetError::Handshake(format!("cannot start the handshake: {e}")))?;
    let mut msg = vec![0u8; frame::MAX_FRAME];
    let n = hs
        .write_message(&[], &mut msg)
        .map_err(|e| NetError::Handshake(format!("cannot write handshake message 1: {e}")))?;
    write_handshake_frame(stream, &msg[..n])
        .await
        .map_err(|e| in_handshake("sending handshake message 1", e))?;
    let reply = read_handshake_frame(stream)
        .await
        .map_err(|e| in_handshake("reading handshake message 2", e))?;
    hs.read_message(&reply, &mut msg).map_err(|e| {
        NetError::Handshake(format!(
            "responder's reply does not authenticate ({e}): it does not hold the pinned key"
        ))
    })?;
    if hs.get_remote_static() != Some(&responder.0[..]) {
        return Err(NetError::Handshake("responder key mismatch".into()));
    }
    hs.into_stateless_transport_mode()
        .map_err(|e| NetError::Handshake(format!("cannot finish the handshake: {e}")))
}

async fn responder_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    allowed: &[PublicKey],
) -> Result<(StatelessTransportState, PublicKey, LinkCipher), NetError> {
    let first = read_handshake_frame(stream).await.map_err(|e| match e {
        NetError::Closed => NetError::NoHandshake,
        e => in_handshake("reading handshake message 1", e),
    })?;
    let mut payload = vec![0u8; frame::MAX_FRAME];
    // The initiator's cipher: the one under which message 1 authenticates (its protocol name
    // is in the handshake hash, so it cannot authenticate under the other).
    let mut accepted = None;
    let mut failure = None;
    for cipher in [LinkCipher::AesGcm, LinkCipher::ChaChaPoly] {
        let mut hs = builder(me, cipher)?
            .build_responder()
            .map_err(|e| NetError::Handshake(format!("cannot start the handshake: {e}")))?;
        match hs.read_message(&first, &mut payload) {
            Ok(_) => {
                accepted = Some((hs, cipher));
                break;
            }
            Err(e) => failure = Some(e),
        }
    }
    let Some((mut hs, cipher)) = accepted else {
        let e = failure.map_or_else(String::new, |e| e.to_string());
        return Err(NetError::Handshake(format!(
            "initiator's first message does not authenticate ({e}): it expects another \
             responder key or protocol version, or is not a SecureRouter peer"
        )));
    };
    let peer = hs
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(PublicKey)
        .ok_or_else(|| NetError::Handshake("initiator sent no static key".into()))?;
    if !allowed.contains(&peer) {
        warn!(%peer, "rejecting a handshake from a key that is not allowed");
        return Err(NetError::UnknownPeer(peer));
    }
    let n = hs
        .write_message(&[], &mut payload)
        .map_err(|e| NetError::Handshake(format!("cannot write handshake message 2: {e}")))?;
    write_handshake_frame(stream, &payload[..n])
        .await
        .map_err(|e| in_handshake("sending handshake message 2", e))?;
    let transport = hs
        .into_stateless_transport_mode()
        .map_err(|e| NetError::Handshake(format!("cannot finish the handshake: {e}")))?;
    Ok((transport, peer, cipher))
}

/// Reports any failure during the handshake as [`NetError::Handshake`] (timeouts stay
/// timeouts): to the caller it means the same thing, the peer could not be authenticated.
fn in_handshake(step: &str, e: NetError) -> NetError {
    match e {
        NetError::Timeout { .. } | NetError::UnknownPeer(_) => e,
        NetError::Closed | NetError::Truncated => NetError::Handshake(format!(
            "{step}: the peer closed the connection (it may not allow our key, or expect \
             another responder key or protocol version)"
        )),
        e => NetError::Handshake(format!("{step}: {e}")),
    }
}

async fn read_handshake_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, NetError> {
    let mut prefix = [0u8; frame::LEN_PREFIX];
    read_exact(stream, &mut prefix, true).await?;
    let len = frame::parse_len(prefix)?;
    let mut body = vec![0u8; len];
    read_exact(stream, &mut body, false).await?;
    Ok(body)
}

/// Reads exactly `buf.len()` bytes; an immediate end of stream is `Closed` when `at_boundary`.
async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    at_boundary: bool,
) -> Result<(), NetError> {
    let mut have = 0;
    while have < buf.len() {
        let n = stream
            .read(&mut buf[have..])
            .await
            .map_err(|source| NetError::Io {
                context: "reading the handshake",
                source,
            })?;
        if n == 0 {
            return Err(if at_boundary && have == 0 {
                NetError::Closed
            } else {
                NetError::Truncated
            });
        }
        have += n;
    }
    Ok(())
}

async fn write_handshake_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    body: &[u8],
) -> Result<(), NetError> {
    let prefix = frame::encode_len(body.len()).ok_or(NetError::Handshake(
        "handshake message of invalid size".into(),
    ))?;
    let mut wire = Vec::with_capacity(frame::LEN_PREFIX + body.len());
    wire.extend_from_slice(&prefix);
    wire.extend_from_slice(body);
    let io = |source| NetError::Io {
        context: "sending the handshake",
        source,
    };
    stream.write_all(&wire).await.map_err(io)?;
    stream.flush().await.map_err(io)
}
