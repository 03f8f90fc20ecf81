//! [`DeviceLink`]: the links' encrypted format (`securerouter-wire`'s [`frame`], which the
//! host's links speak too) over any `embedded_io_async` stream: embassy-net's `TcpSocket` on a
//! device, a tokio stream in host tests.
//!
//! ```text
//! frame   = len:u32 (big-endian) || noise_message[len]        16 <= len <= 65535
//! chunk 0 plaintext = total:u64 (big-endian) || m[0 .. min(|m|, 65511)]
//! chunk i plaintext = the next min(remaining, 65519) bytes of m             (i >= 1)
//! ```
//!
//! Messages are sealed and opened as they stream: sending needs a 256-byte scratch buffer,
//! and receiving keeps only as much of a message as the caller's buffer holds (the rest is
//! authenticated and dropped), so RAM stays at a few hundred bytes whatever the message size.
//! A received chunk's ciphertext waits in the caller's buffer until the chunk's tag checks,
//! and only then is decrypted there.

use embedded_io_async::{ErrorKind, Read, Write};
use securerouter_wire::frame::{self, LEN_PREFIX, TOTAL_LEN};

use crate::noise::{
    ChunkCipher, CipherState, HandshakeError, Initiator, MESSAGE1_LEN, MESSAGE2_LEN, StaticKey,
    TAG_LEN, Transport, Verified,
};

pub use securerouter_wire::frame::{FIRST_CHUNK_DATA, MAX_FRAME};
/// Plaintext bytes of a full transport chunk.
pub const CHUNK_PLAINTEXT: usize = frame::MAX_CHUNK_PLAINTEXT;
/// Largest message a device accepts (announced totals above it are refused).
pub const MAX_MESSAGE: u64 = 256 << 20;

const SCRATCH: usize = 256;

/// Everything that can go wrong on a device's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LinkError {
    /// The stream failed.
    Io(ErrorKind),
    /// The peer closed the stream between two messages.
    Closed,
    /// The stream ended inside a frame or a message.
    Truncated,
    /// A frame or message breaks the framing rules (what is wrong is named).
    Malformed(&'static str),
    /// A message announced more than [`MAX_MESSAGE`] bytes.
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// A chunk failed authentication: tampered, replayed, reordered or under another key.
    Decrypt,
    /// The handshake failed.
    Handshake(HandshakeError),
    /// A message was sent with more or fewer bytes than announced.
    LengthMismatch {
        /// Bytes announced.
        announced: u64,
        /// Bytes written.
        written: u64,
    },
    /// An earlier error left the link in an unknown state.
    Broken,
    /// The 2^64 − 1 nonces of one direction are used up.
    NoncesExhausted,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkError::Io(kind) => write!(f, "I/O error: {kind:?}"),
            LinkError::Closed => write!(f, "the peer closed the connection"),
            LinkError::Truncated => write!(f, "the connection ended in the middle of a message"),
            LinkError::Malformed(what) => write!(f, "malformed frame: {what}"),
            LinkError::TooLarge { len } => {
                write!(f, "a message of {len} bytes exceeds {MAX_MESSAGE}")
            }
            LinkError::Decrypt => write!(
                f,
                "a frame failed authentication (tampered, replayed, reordered or wrong key)"
            ),
            LinkError::Handshake(HandshakeError::Decrypt) => write!(
                f,
                "handshake failed: the server does not hold the pinned key or speaks another version"
            ),
            LinkError::Handshake(HandshakeError::WeakKey) => {
                write!(f, "handshake failed: a low-order public key")
            }
            LinkError::LengthMismatch { announced, written } => write!(
                f,
                "a message announced {announced} bytes but {written} were written"
            ),
            LinkError::Broken => write!(f, "the link is unusable after an earlier error"),
            LinkError::NoncesExhausted => write!(f, "the link's nonces are used up"),
        }
    }
}

impl core::error::Error for LinkError {}

fn io_error<E: embedded_io_async::Error>(e: E) -> LinkError {
    LinkError::Io(e.kind())
}

/// Reads exactly `buf.len()` bytes; the stream's end before that is [`LinkError::Truncated`].
async fn read_exact<T: Read>(stream: &mut T, mut buf: &mut [u8]) -> Result<(), LinkError> {
    while !buf.is_empty() {
        match stream.read(buf).await.map_err(io_error)? {
            0 => return Err(LinkError::Truncated),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

/// Reads a frame's length; the stream's end before its first byte is [`LinkError::Closed`].
async fn read_frame_len<T: Read>(stream: &mut T, at_boundary: bool) -> Result<usize, LinkError> {
    let mut len = [0u8; LEN_PREFIX];
    let first = stream.read(&mut len).await.map_err(io_error)?;
    match first {
        0 if at_boundary => return Err(LinkError::Closed),
        0 => return Err(LinkError::Truncated),
        _ => read_exact(stream, &mut len[first..]).await?,
    }
    frame::parse_len(len).map_err(|_| LinkError::Malformed("frame length outside 16..=65535"))
}

/// The cipher of a direction's next message.
fn next_cipher(direction: &mut CipherState) -> Result<ChunkCipher, LinkError> {
    direction.next_message().ok_or(LinkError::NoncesExhausted)
}

/// An authenticated, encrypted link from a device (the initiator) to a server.
pub struct DeviceLink<T> {
    io: T,
    transport: Transport,
    broken: bool,
}

/// How much of a received message the caller's buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The message's length.
    pub total: u64,
    /// Bytes of it at the start of the buffer (`min(total, buffer length)`).
    pub kept: usize,
}

impl<T: Read + Write> DeviceLink<T> {
    /// Runs the IK handshake as `me` over `io` towards the server whose static key is
    /// `server` (pinned); `ephemeral` must be 32 fresh random bytes.
    pub async fn connect(
        mut io: T,
        me: &StaticKey,
        server: &[u8; 32],
        ephemeral: [u8; 32],
    ) -> Result<Self, LinkError> {
        let (initiator, message1) =
            Initiator::start(me, server, ephemeral).map_err(LinkError::Handshake)?;
        io.write_all(&(MESSAGE1_LEN as u32).to_be_bytes())
            .await
            .map_err(io_error)?;
        io.write_all(&message1).await.map_err(io_error)?;
        io.flush().await.map_err(io_error)?;
        let len = match read_frame_len(&mut io, true).await {
            // A server that does not know the device hangs up without answering.
            Err(LinkError::Closed) => {
                return Err(LinkError::Handshake(HandshakeError::Decrypt));
            }
            other => other?,
        };
        if len != MESSAGE2_LEN {
            return Err(LinkError::Malformed(
                "the handshake answer has the wrong length",
            ));
        }
        let mut message2 = [0u8; MESSAGE2_LEN];
        read_exact(&mut io, &mut message2).await?;
        let transport = initiator.finish(&message2).map_err(LinkError::Handshake)?;
        crate::log::debug!("link: handshake done");
        Ok(DeviceLink {
            io,
            transport,
            broken: false,
        })
    }

    /// Sends a message held in memory.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), LinkError> {
        let mut w = self.start_message(message.len() as u64)?;
        w.write(message).await?;
        w.finish().await
    }

    /// Starts streaming a message of exactly `total` bytes: write them with
    /// [`MessageWriter::write`] in pieces of any size, then call [`MessageWriter::finish`].
    pub fn start_message(&mut self, total: u64) -> Result<MessageWriter<'_, T>, LinkError> {
        if self.broken {
            return Err(LinkError::Broken);
        }
        if total > MAX_MESSAGE {
            return Err(LinkError::TooLarge { len: total });
        }
        // Cleared by `finish`: a message abandoned halfway leaves part of a frame on the wire.
        self.broken = true;
        Ok(MessageWriter {
            link: self,
            total,
            written: 0,
            chunk: None,
            chunk_left: 0,
            started: false,
            scratch: [0; SCRATCH],
        })
    }

    /// Receives the next message, keeping its first `buf.len()` bytes in `buf`; the rest is
    /// authenticated and dropped. Nothing is returned before every chunk has authenticated.
    ///
    /// On an error, every byte of `buf` the message reached is zeroed: a message that fails
    /// leaves none of its bytes behind, not even the chunks that authenticated before it failed.
    /// (A receive that is cancelled leaves ciphertext, or plaintext of authenticated chunks.)
    pub async fn recv_into(&mut self, buf: &mut [u8]) -> Result<Received, LinkError> {
        if self.broken {
            return Err(LinkError::Broken);
        }
        self.broken = true;
        let mut kept = 0;
        match self.recv_chunks(buf, &mut kept).await {
            Ok(total) => {
                self.broken = false;
                Ok(Received { total, kept })
            }
            Err(e) => {
                buf[..kept].fill(0);
                Err(e)
            }
        }
    }

    /// Receives a message's chunks into `buf[*kept..]`, advancing `kept` as bytes are written
    /// (ciphertext first, decrypted in place once its chunk's tag checks); gives the total.
    async fn recv_chunks(&mut self, buf: &mut [u8], kept: &mut usize) -> Result<u64, LinkError> {
        // Chunk 0: the total, then the first bytes.
        let len = read_frame_len(&mut self.io, true).await?;
        if len < TAG_LEN + TOTAL_LEN {
            return Err(LinkError::Malformed("first chunk shorter than its header"));
        }
        let mut cipher = next_cipher(&mut self.transport.recv)?;
        let mut header = [0u8; TOTAL_LEN];
        read_exact(&mut self.io, &mut header).await?;
        cipher.authenticate(&header);
        let data = len - TAG_LEN - TOTAL_LEN;
        let start = *kept;
        self.read_data(&mut cipher, data, buf, kept).await?;
        {
            let mut plain = self.check_tag(cipher).await?;
            plain.decrypt(&mut header);
            plain.decrypt(&mut buf[start..*kept]);
        }
        // Authenticated from here on.
        let total = u64::from_be_bytes(header);
        if total > MAX_MESSAGE {
            return Err(LinkError::TooLarge { len: total });
        }
        if data as u64 != total.min(FIRST_CHUNK_DATA as u64) {
            return Err(LinkError::Malformed("first chunk of the wrong size"));
        }
        let mut remaining = total - data as u64;
        while remaining > 0 {
            let len = read_frame_len(&mut self.io, false).await?;
            let want = remaining.min(CHUNK_PLAINTEXT as u64) as usize;
            if len != want + TAG_LEN {
                return Err(LinkError::Malformed("chunk of the wrong size"));
            }
            let mut cipher = next_cipher(&mut self.transport.recv)?;
            let start = *kept;
            self.read_data(&mut cipher, want, buf, kept).await?;
            self.check_tag(cipher)
                .await?
                .decrypt(&mut buf[start..*kept]);
            remaining -= want as u64;
        }
        Ok(total)
    }

    /// Reads a chunk's `n` ciphertext bytes and authenticates them: those that fit go to
    /// `buf[*kept..]` as they are (still encrypted), the others are dropped.
    async fn read_data(
        &mut self,
        cipher: &mut ChunkCipher,
        mut n: usize,
        buf: &mut [u8],
        kept: &mut usize,
    ) -> Result<(), LinkError> {
        let into_buf = n.min(buf.len() - *kept);
        let start = *kept;
        // Counted before the read: a failed read may have filled part of the piece.
        *kept += into_buf;
        let piece = &mut buf[start..*kept];
        read_exact(&mut self.io, piece).await?;
        cipher.authenticate(piece);
        n -= into_buf;
        let mut drop = [0u8; 64];
        while n > 0 {
            let take = n.min(drop.len());
            read_exact(&mut self.io, &mut drop[..take]).await?;
            cipher.authenticate(&drop[..take]);
            n -= take;
        }
        Ok(())
    }

    /// Reads a chunk's tag and checks it: the chunk's keystream if it matches.
    async fn check_tag(&mut self, cipher: ChunkCipher) -> Result<Verified, LinkError> {
        let mut tag = [0u8; TAG_LEN];
        read_exact(&mut self.io, &mut tag).await?;
        cipher.verify(&tag).ok_or(LinkError::Decrypt)
    }
}

/// A message being streamed onto a [`DeviceLink`]; see [`DeviceLink::start_message`].
pub struct MessageWriter<'a, T> {
    link: &'a mut DeviceLink<T>,
    total: u64,
    written: u64,
    chunk: Option<ChunkCipher>,
    /// Plaintext bytes the open chunk still takes.
    chunk_left: usize,
    started: bool,
    scratch: [u8; SCRATCH],
}

impl<T: Read + Write> MessageWriter<'_, T> {
    /// Appends `data` to the message.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), LinkError> {
        if self.written + data.len() as u64 > self.total {
            return Err(LinkError::LengthMismatch {
                announced: self.total,
                written: self.written + data.len() as u64,
            });
        }
        while !data.is_empty() {
            if self.chunk_left == 0 {
                self.next_chunk().await?;
            }
            let take = data.len().min(self.chunk_left).min(SCRATCH);
            self.scratch[..take].copy_from_slice(&data[..take]);
            self.seal_and_write(take).await?;
            self.chunk_left -= take;
            self.written += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    /// Ends the message; every announced byte must have been written.
    pub async fn finish(mut self) -> Result<(), LinkError> {
        if self.written != self.total {
            return Err(LinkError::LengthMismatch {
                announced: self.total,
                written: self.written,
            });
        }
        if !self.started {
            // An empty message is one chunk holding just the total.
            self.next_chunk().await?;
        }
        self.close_chunk().await?;
        self.link.io.flush().await.map_err(io_error)?;
        self.link.broken = false;
        Ok(())
    }

    /// Closes the open chunk (if any) and opens the next one: its frame length, and for the
    /// first chunk the sealed total.
    async fn next_chunk(&mut self) -> Result<(), LinkError> {
        self.close_chunk().await?;
        let remaining = self.total - self.written;
        let plaintext = if self.started {
            remaining.min(CHUNK_PLAINTEXT as u64) as usize
        } else {
            TOTAL_LEN + remaining.min(FIRST_CHUNK_DATA as u64) as usize
        };
        let frame_len = frame::encode_len(plaintext + TAG_LEN)
            .ok_or(LinkError::Malformed("a chunk outside the frame's limits"))?;
        self.link.io.write_all(&frame_len).await.map_err(io_error)?;
        self.chunk = Some(next_cipher(&mut self.link.transport.send)?);
        self.chunk_left = plaintext;
        if !self.started {
            self.started = true;
            self.scratch[..TOTAL_LEN].copy_from_slice(&self.total.to_be_bytes());
            self.seal_and_write(TOTAL_LEN).await?;
            self.chunk_left -= TOTAL_LEN;
        }
        Ok(())
    }

    async fn seal_and_write(&mut self, n: usize) -> Result<(), LinkError> {
        let piece = &mut self.scratch[..n];
        if let Some(c) = self.chunk.as_mut() {
            c.seal(piece);
        }
        self.link.io.write_all(piece).await.map_err(io_error)
    }

    async fn close_chunk(&mut self) -> Result<(), LinkError> {
        if let Some(c) = self.chunk.take() {
            self.link.io.write_all(&c.tag()).await.map_err(io_error)?;
        }
        Ok(())
    }
}
