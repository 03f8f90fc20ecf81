//! The links' wire format without I/O or cryptography: length prefixes, bounds checks, and
//! (with `alloc`) chunking and reassembly of logical messages.
//!
//! Every Noise message (handshake or transport) travels as a *frame*; a logical message `m`
//! is split into transport chunks, each encrypted as one Noise transport message (16-byte
//! tag):
//!
//! ```text
//! frame   = len:u32 (big-endian) || noise_message[len]        16 <= len <= 65535
//! chunk 0 plaintext = total:u64 (big-endian, = |m|) || m[0 .. min(|m|, 65511)]
//! chunk i plaintext = the next min(remaining, 65519) bytes of m             (i >= 1)
//! ```
//!
//! The chunking is deterministic, so the receiver knows the exact size of every chunk and
//! rejects any other. The host's links run `FrameDecoder` and `MessageEncoder` (with
//! `alloc`); the device's link streams the same frames without an allocator, from the
//! constants and [`parse_len`]/[`encode_len`] here.
//!
//! Everything here is pure and deterministic so that it can be unit-tested and fuzzed; a
//! link drives it with bytes from the socket and a Noise [`Opener`]/[`Sealer`]. Any input
//! bytes give either progress or a [`FrameError`], never a panic, and memory use is bounded
//! by the data actually received (plus at most [`PREALLOC_LIMIT`] per message).

#[cfg(feature = "alloc")]
use alloc::vec::Vec;
use core::fmt;

/// Bytes of the big-endian length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Largest frame body: the Noise maximum message length.
pub const MAX_FRAME: usize = 65535;
/// The AEAD tag every encrypted frame carries; no valid frame is shorter.
pub const TAG_LEN: usize = 16;
/// Smallest frame body accepted.
pub const MIN_FRAME: usize = TAG_LEN;
/// Largest plaintext in one transport chunk.
pub const MAX_CHUNK_PLAINTEXT: usize = MAX_FRAME - TAG_LEN;
/// Bytes of the total-length header at the start of a message's first chunk.
pub const TOTAL_LEN: usize = 8;
/// Message bytes carried by the first chunk at most.
pub const FIRST_CHUNK_DATA: usize = MAX_CHUNK_PLAINTEXT - TOTAL_LEN;
/// Capacity reserved up front for a message at most; larger messages grow as chunks arrive,
/// so an announced (but unsent) total costs little memory. 16 MiB holds every opening of a
/// BERT-base layer (GeLU's is 3 MB) in one allocation: growing from 1 MiB copied each such
/// message once more.
pub const PREALLOC_LIMIT: usize = 16 << 20;

/// A violation of the wire format, or a chunk that failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A frame length above [`MAX_FRAME`], or a message total above the configured maximum.
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame or chunk whose size breaks the format.
    Malformed(&'static str),
    /// The [`Opener`] rejected a frame.
    Decrypt,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "length {len} exceeds the limit {max}")
            }
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
            FrameError::Decrypt => write!(f, "frame failed authentication"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Decrypts one frame body (a Noise transport message) into its plaintext chunk.
pub trait Opener {
    /// Writes the plaintext of `ciphertext` into `plaintext` (at least `ciphertext.len() - 16`
    /// bytes long) and returns its length; [`FrameError::Decrypt`] when it does not
    /// authenticate. Must advance its nonce only on success.
    fn open(&mut self, ciphertext: &[u8], plaintext: &mut [u8]) -> Result<usize, FrameError>;
}

/// Encrypts one plaintext chunk into a frame body.
pub trait Sealer {
    /// Writes the ciphertext of `plaintext` (at most [`MAX_CHUNK_PLAINTEXT`] bytes) into
    /// `ciphertext` (at least `plaintext.len() + 16` bytes) and returns its length.
    fn seal(&mut self, plaintext: &[u8], ciphertext: &mut [u8]) -> Result<usize, FrameError>;
}

/// A stand-in cipher for tests and fuzzing: the "ciphertext" is the plaintext followed by 16
/// zero bytes, and opening fails unless those bytes are zero. No security whatsoever.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainCodec;

impl Opener for PlainCodec {
    fn open(&mut self, ciphertext: &[u8], plaintext: &mut [u8]) -> Result<usize, FrameError> {
        let n = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(FrameError::Decrypt)?;
        let (body, tag) = ciphertext.split_at(n);
        if tag.iter().any(|&b| b != 0) {
            return Err(FrameError::Decrypt);
        }
        plaintext
            .get_mut(..n)
            .ok_or(FrameError::Malformed("plaintext buffer too small"))?
            .copy_from_slice(body);
        Ok(n)
    }
}

impl Sealer for PlainCodec {
    fn seal(&mut self, plaintext: &[u8], ciphertext: &mut [u8]) -> Result<usize, FrameError> {
        let n = plaintext.len() + TAG_LEN;
        let out = ciphertext
            .get_mut(..n)
            .ok_or(FrameError::Malformed("ciphertext buffer too small"))?;
        out[..plaintext.len()].copy_from_slice(plaintext);
        out[plaintext.len()..].fill(0);
        Ok(n)
    }
}

/// Parses a frame's length prefix and checks `MIN_FRAME <= len <= MAX_FRAME`.
pub fn parse_len(prefix: [u8; LEN_PREFIX]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        })
    } else if len < MIN_FRAME {
        Err(FrameError::Malformed(
            "frame shorter than the 16-byte authentication tag",
        ))
    } else {
        Ok(len)
    }
}

/// Encodes a frame's length prefix; `None` when `len` is not a valid frame length.
pub fn encode_len(len: usize) -> Option<[u8; LEN_PREFIX]> {
    if (MIN_FRAME..=MAX_FRAME).contains(&len) {
        u32::try_from(len).ok().map(u32::to_be_bytes)
    } else {
        None
    }
}

#[cfg(feature = "alloc")]
/// Reassembles logical messages from decrypted chunks, checking every chunk's exact size.
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    /// The message being assembled and its announced total, between its first and last chunk.
    partial: Option<(Vec<u8>, usize)>,
}

#[cfg(feature = "alloc")]
impl Reassembler {
    /// A reassembler that rejects messages longer than `max_message`.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
        }
    }

    /// Whether no message is half assembled (a clean point for the stream to end).
    pub fn is_idle(&self) -> bool {
        self.partial.is_none()
    }

    /// The exact plaintext size of the next chunk, when it is a continuation chunk (a first
    /// chunk's size depends on the total it announces).
    pub fn expected_continuation(&self) -> Option<usize> {
        self.partial
            .as_ref()
            .map(|(m, total)| (total - m.len()).min(MAX_CHUNK_PLAINTEXT))
    }

    /// Takes one decrypted chunk; returns the message when this chunk completes it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        match self.partial.take() {
            None => {
                let (header, data) =
                    chunk
                        .split_first_chunk::<TOTAL_LEN>()
                        .ok_or(FrameError::Malformed(
                            "first chunk shorter than its 8-byte total length",
                        ))?;
                let total = u64::from_be_bytes(*header);
                let total = match usize::try_from(total) {
                    Ok(t) if t <= self.max_message => t,
                    _ => {
                        return Err(FrameError::TooLarge {
                            len: usize::try_from(total).unwrap_or(usize::MAX),
                            max: self.max_message,
                        });
                    }
                };
                if data.len() != total.min(FIRST_CHUNK_DATA) {
                    return Err(FrameError::Malformed(
                        "first chunk size does not match the announced total",
                    ));
                }
                if data.len() == total {
                    return Ok(Some(data.to_vec()));
                }
                let mut message = Vec::with_capacity(total.min(PREALLOC_LIMIT));
                message.extend_from_slice(data);
                self.partial = Some((message, total));
                Ok(None)
            }
            Some((mut message, total)) => {
                let remaining = total - message.len();
                if chunk.len() != remaining.min(MAX_CHUNK_PLAINTEXT) {
                    return Err(FrameError::Malformed(
                        "continuation chunk of the wrong size",
                    ));
                }
                if message.capacity() - message.len() < chunk.len() {
                    // Double, but never beyond the announced total.
                    let grow = message.capacity().max(chunk.len()).min(remaining);
                    message.reserve_exact(grow);
                }
                message.extend_from_slice(chunk);
                if message.len() == total {
                    Ok(Some(message))
                } else {
                    self.partial = Some((message, total));
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(feature = "alloc")]
/// Turns a byte stream into logical messages: splits frames at their length prefixes, opens
/// each with an [`Opener`] and reassembles the chunks. Feed it bytes in pieces of any size.
///
/// After an error the decoder is poisoned and keeps failing: a stream that broke the format
/// or failed authentication once cannot be trusted to be in sync again.
#[derive(Debug)]
pub struct FrameDecoder {
    prefix: [u8; LEN_PREFIX],
    prefix_have: usize,
    /// Length of the frame body being read, once its prefix is complete.
    body_len: Option<usize>,
    body: Vec<u8>,
    plaintext: Vec<u8>,
    reassembler: Reassembler,
    failed: Option<FrameError>,
}

#[cfg(feature = "alloc")]
impl FrameDecoder {
    /// A decoder for messages of at most `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            prefix: [0; LEN_PREFIX],
            prefix_have: 0,
            body_len: None,
            body: Vec::new(),
            plaintext: Vec::new(),
            reassembler: Reassembler::new(max_message),
            failed: None,
        }
    }

    /// Whether the decoder sits between two messages (no partial prefix, frame or message):
    /// the stream may end here cleanly.
    pub fn is_idle(&self) -> bool {
        self.prefix_have == 0 && self.body_len.is_none() && self.reassembler.is_idle()
    }

    /// Consumes bytes from `input` until a message completes or the input runs out. Returns
    /// how many bytes were consumed and the completed message, if any; the rest of `input`
    /// belongs to later messages.
    pub fn decode<O: Opener + ?Sized>(
        &mut self,
        input: &[u8],
        opener: &mut O,
    ) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.decode_inner(input, opener);
        if let Err(e) = result {
            self.failed = Some(e);
        }
        result
    }

    /// Decodes every complete message in `input` (a convenience for tests and fuzzing).
    pub fn decode_all<O: Opener + ?Sized>(
        &mut self,
        mut input: &[u8],
        opener: &mut O,
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (used, message) = self.decode(input, opener)?;
            input = &input[used..];
            out.extend(message);
        }
        Ok(out)
    }

    fn decode_inner<O: Opener + ?Sized>(
        &mut self,
        input: &[u8],
        opener: &mut O,
    ) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.body_len {
                None => {
                    let take = (LEN_PREFIX - self.prefix_have).min(rest.len());
                    self.prefix[self.prefix_have..self.prefix_have + take]
                        .copy_from_slice(&rest[..take]);
                    self.prefix_have += take;
                    used += take;
                    if self.prefix_have < LEN_PREFIX {
                        return Ok((used, None));
                    }
                    let len = parse_len(self.prefix)?;
                    self.check_frame_len(len)?;
                    self.prefix_have = 0;
                    self.body_len = Some(len);
                    self.body.clear();
                    self.body.reserve_exact(len);
                }
                Some(len) => {
                    let take = (len - self.body.len()).min(rest.len());
                    self.body.extend_from_slice(&rest[..take]);
                    used += take;
                    if self.body.len() < len {
                        return Ok((used, None));
                    }
                    self.body_len = None;
                    // Grows to the largest chunk seen so far (at most MAX_CHUNK_PLAINTEXT).
                    let need = len.saturating_sub(TAG_LEN);
                    if self.plaintext.len() < need {
                        self.plaintext.resize(need, 0);
                    }
                    let n = opener.open(&self.body, &mut self.plaintext)?;
                    let chunk = self
                        .plaintext
                        .get(..n)
                        .ok_or(FrameError::Malformed("opener returned a bad length"))?;
                    if let Some(message) = self.reassembler.push(chunk)? {
                        return Ok((used, Some(message)));
                    }
                }
            }
        }
    }

    /// Rejects a frame length that cannot hold the next chunk, before reading its body.
    fn check_frame_len(&self, len: usize) -> Result<(), FrameError> {
        match self.reassembler.expected_continuation() {
            Some(n) if len != n + TAG_LEN => Err(FrameError::Malformed(
                "continuation frame of the wrong size",
            )),
            None if len < TOTAL_LEN + TAG_LEN => Err(FrameError::Malformed(
                "first frame too short for the 8-byte total length",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(feature = "alloc")]
/// Cuts one logical message into sealed frames, one at a time.
#[derive(Debug)]
pub struct MessageEncoder<'a> {
    message: &'a [u8],
    /// Bytes of `message` already encoded; `None` before the first chunk.
    offset: Option<usize>,
}

#[cfg(feature = "alloc")]
impl<'a> MessageEncoder<'a> {
    /// An encoder for `message`.
    pub fn new(message: &'a [u8]) -> Self {
        Self {
            message,
            offset: None,
        }
    }

    /// Whether every frame of the message has been produced.
    pub fn is_done(&self) -> bool {
        self.offset == Some(self.message.len())
    }

    /// Appends the next frame (length prefix and sealed chunk) to `out`; `false` once the
    /// message is complete (nothing is appended then).
    pub fn next_frame<S: Sealer + ?Sized>(
        &mut self,
        sealer: &mut S,
        out: &mut Vec<u8>,
    ) -> Result<bool, FrameError> {
        let start = out.len();
        let (plain_len, new_offset) = match self.offset {
            None => {
                let data = self.message.len().min(FIRST_CHUNK_DATA);
                (TOTAL_LEN + data, data)
            }
            Some(off) if off == self.message.len() => return Ok(false),
            Some(off) => {
                let data = (self.message.len() - off).min(MAX_CHUNK_PLAINTEXT);
                (data, off + data)
            }
        };
        out.resize(start + LEN_PREFIX + plain_len + TAG_LEN, 0);
        let body = &mut out[start + LEN_PREFIX..];
        let sealed = match self.offset {
            None => {
                let mut first = Vec::with_capacity(plain_len);
                first.extend_from_slice(&(self.message.len() as u64).to_be_bytes());
                first.extend_from_slice(&self.message[..new_offset]);
                sealer.seal(&first, body)
            }
            Some(off) => sealer.seal(&self.message[off..new_offset], body),
        };
        let n = match sealed {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        let Some(prefix) = encode_len(n).filter(|_| n <= plain_len + TAG_LEN) else {
            out.truncate(start);
            return Err(FrameError::Malformed("sealer returned a bad length"));
        };
        out[start..start + LEN_PREFIX].copy_from_slice(&prefix);
        out.truncate(start + LEN_PREFIX + n);
        self.offset = Some(new_offset);
        Ok(true)
    }
}

#[cfg(feature = "alloc")]
/// Encodes a whole message into `out` (a convenience for tests and fuzzing).
pub fn encode_message<S: Sealer + ?Sized>(
    message: &[u8],
    sealer: &mut S,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut encoder = MessageEncoder::new(message);
    while encoder.next_frame(sealer, out)? {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};

    fn encode(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(message, &mut PlainCodec, &mut out).unwrap();
        out
    }

    #[test]
    fn frame_counts_and_sizes_are_exact() {
        // Empty: one frame with the 8-byte total and the tag.
        assert_eq!(encode(&[]).len(), LEN_PREFIX + TOTAL_LEN + TAG_LEN);
        // Exactly one full first chunk.
        let one = vec![7u8; FIRST_CHUNK_DATA];
        assert_eq!(encode(&one).len(), LEN_PREFIX + MAX_FRAME);
        // One byte more takes a continuation frame of one byte.
        let two = vec![7u8; FIRST_CHUNK_DATA + 1];
        assert_eq!(
            encode(&two).len(),
            LEN_PREFIX + MAX_FRAME + LEN_PREFIX + 1 + TAG_LEN
        );
    }

    #[test]
    fn round_trips_byte_by_byte_and_whole() {
        for len in [0, 1, 100, FIRST_CHUNK_DATA, FIRST_CHUNK_DATA + 1, 300_000] {
            let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let wire = encode(&message);
            let mut d = FrameDecoder::new(1 << 20);
            assert_eq!(
                d.decode_all(&wire, &mut PlainCodec).unwrap(),
                vec![message.clone()]
            );
            assert!(d.is_idle());
            if len <= 100 {
                let mut d = FrameDecoder::new(1 << 20);
                let mut got = Vec::new();
                for b in &wire {
                    let (used, m) = d.decode(core::slice::from_ref(b), &mut PlainCodec).unwrap();
                    assert_eq!(used, 1);
                    got.extend(m);
                }
                assert_eq!(got, vec![message]);
            }
        }
    }

    #[test]
    fn rejects_bad_lengths_before_reading_bodies() {
        let mut d = FrameDecoder::new(1000);
        assert_eq!(
            d.decode(&[0xff; 4], &mut PlainCodec),
            Err(FrameError::TooLarge {
                len: 0xffff_ffff,
                max: MAX_FRAME
            })
        );
        // Poisoned afterwards.
        assert!(d.decode(&[0, 0, 0, 24], &mut PlainCodec).is_err());
        let mut d = FrameDecoder::new(1000);
        assert!(matches!(
            d.decode(&[0, 0, 0, 15], &mut PlainCodec),
            Err(FrameError::Malformed(_))
        ));
        // A total above the maximum.
        let wire = encode(&[1u8; 1001]);
        let mut d = FrameDecoder::new(1000);
        assert_eq!(
            d.decode_all(&wire, &mut PlainCodec),
            Err(FrameError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
        // A total of u64::MAX.
        let mut r = Reassembler::new(usize::MAX);
        assert!(matches!(
            r.push(&u64::MAX.to_be_bytes()),
            Err(FrameError::TooLarge { .. }) | Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_huge_announced_total_reserves_little() {
        let mut r = Reassembler::new(usize::MAX / 2);
        let mut chunk = (1u64 << 40).to_be_bytes().to_vec();
        chunk.extend(vec![0u8; FIRST_CHUNK_DATA]);
        assert_eq!(r.push(&chunk), Ok(None));
        let cap = r.partial.as_ref().map(|(m, _)| m.capacity()).unwrap();
        assert!(cap <= PREALLOC_LIMIT);
    }

    #[test]
    fn wrong_chunk_sizes_and_tags_are_rejected() {
        let mut wire = encode(&[5u8; 10]);
        let last = wire.len() - 1;
        wire[last] = 1; // the stand-in tag
        assert_eq!(
            FrameDecoder::new(100).decode_all(&wire, &mut PlainCodec),
            Err(FrameError::Decrypt)
        );
        // A first chunk claiming 20 bytes but carrying 10.
        let mut plain = 20u64.to_be_bytes().to_vec();
        plain.extend([0u8; 10]);
        let mut frame = encode_len(plain.len() + TAG_LEN).unwrap().to_vec();
        frame.extend(&plain);
        frame.extend([0u8; TAG_LEN]);
        assert!(matches!(
            FrameDecoder::new(100).decode_all(&frame, &mut PlainCodec),
            Err(FrameError::Malformed(_))
        ));
    }
}
