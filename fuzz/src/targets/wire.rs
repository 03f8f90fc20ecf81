//! Shared pieces of the link targets: fixed keys, scripted peer streams and the script format
//! that says what a peer sends after the handshake.
//!
//! A script is a sequence of items, each `kind u8 | len u16 (LE) | ...`:
//! - kind 0 mod 4: `payload[len]` sealed as one transport chunk, framed with its true length;
//! - kind 1: `prefix u32 (BE) | payload[len]`: a sealed chunk behind an arbitrary length prefix;
//! - kind 2: `bytes[len]` put on the wire as they are (unauthenticated garbage);
//! - kind 3: `repeat u8 | payload[len]`: a whole logical message (the payload repeated, up to
//!   ~200 KB, so several chunks) encoded as a sender does.
//!
//! A script of only kind-3 items is a valid stream: the receiver must get exactly its messages.

use securerouter_runtime::net::frame::{self, FrameError, Sealer};

/// The host's static secret in the link targets.
pub const HOST_SECRET: [u8; 32] = [0x11; 32];
/// The device's static secret.
pub const DEVICE_SECRET: [u8; 32] = [0x22; 32];
/// The device's ephemeral secret (fixed: its messages are then the same every run).
pub const DEVICE_EPHEMERAL: [u8; 32] = [0x33; 32];

/// Wire bytes built from a script.
pub struct Scripted {
    /// What the peer puts on the wire.
    pub wire: Vec<u8>,
    /// The logical messages, when the script holds only whole messages.
    pub messages: Option<Vec<Vec<u8>>>,
}

const MAX_MESSAGE_BYTES: usize = 200_000;

/// Builds the wire bytes of `script`, sealing chunks with `sealer`.
pub fn build(script: &[u8], sealer: &mut dyn Sealer) -> Scripted {
    let mut wire = Vec::new();
    let mut messages = Some(Vec::new());
    let mut rest = script;
    let mut body = vec![0u8; frame::MAX_FRAME];
    while let Some((&kind, tail)) = rest.split_first() {
        let take = |n: usize, from: &mut &[u8]| -> Vec<u8> {
            let n = n.min(from.len());
            let (a, b) = from.split_at(n);
            *from = b;
            a.to_vec()
        };
        rest = tail;
        let len = take(2, &mut rest);
        let len = usize::from(u16::from_le_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
        ]));
        match kind % 4 {
            0 | 1 => {
                let prefix = (kind % 4 == 1).then(|| {
                    let p = take(4, &mut rest);
                    let mut a = [0u8; 4];
                    a[..p.len()].copy_from_slice(&p);
                    a
                });
                let payload = take(len.min(frame::MAX_CHUNK_PLAINTEXT), &mut rest);
                let n = sealer
                    .seal(&payload, &mut body)
                    .expect("a chunk of at most MAX_CHUNK_PLAINTEXT seals");
                wire.extend(prefix.unwrap_or((n as u32).to_be_bytes()));
                wire.extend_from_slice(&body[..n]);
                messages = None;
            }
            2 => {
                wire.extend(take(len, &mut rest));
                messages = None;
            }
            _ => {
                let repeat = take(1, &mut rest).first().copied().unwrap_or(0);
                let payload = take(len, &mut rest);
                let copies =
                    (1 + usize::from(repeat)).min(MAX_MESSAGE_BYTES / payload.len().max(1));
                let message = payload.repeat(copies.max(1));
                frame::encode_message(&message, sealer, &mut wire).expect("a message encodes");
                if let Some(m) = messages.as_mut() {
                    m.push(message);
                }
            }
        }
    }
    Scripted { wire, messages }
}

/// A script item: a whole message (`repeat` extra copies of `payload`).
pub fn message_item(payload: &[u8], repeat: u8) -> Vec<u8> {
    let mut v = vec![3];
    v.extend((payload.len() as u16).to_le_bytes());
    v.push(repeat);
    v.extend_from_slice(payload);
    v
}

/// A script item: one sealed chunk with its true length.
pub fn chunk_item(plaintext: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend((plaintext.len() as u16).to_le_bytes());
    v.extend_from_slice(plaintext);
    v
}

/// A script item: bytes as they are.
pub fn raw_item(bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![2];
    v.extend((bytes.len() as u16).to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

/// Seals transport chunks with a device-side cipher (the device's own ChaCha20-Poly1305).
pub struct DeviceSealer(pub securerouter_device::noise::CipherState);

impl Sealer for DeviceSealer {
    fn seal(&mut self, plaintext: &[u8], ciphertext: &mut [u8]) -> Result<usize, FrameError> {
        let n = plaintext.len() + frame::TAG_LEN;
        let out = ciphertext
            .get_mut(..n)
            .ok_or(FrameError::Malformed("buffer too small"))?;
        let mut c = self
            .0
            .next_message()
            .ok_or(FrameError::Malformed("nonces exhausted"))?;
        let (body, tag) = out.split_at_mut(plaintext.len());
        body.copy_from_slice(plaintext);
        c.seal(body);
        tag.copy_from_slice(&c.tag());
        Ok(n)
    }
}

/// Seals transport chunks with `snow` (the host's Noise library).
pub struct SnowSealer(pub snow::TransportState);

impl Sealer for SnowSealer {
    fn seal(&mut self, plaintext: &[u8], ciphertext: &mut [u8]) -> Result<usize, FrameError> {
        self.0
            .write_message(plaintext, ciphertext)
            .map_err(|_| FrameError::Malformed("snow refused to seal"))
    }
}

/// One frame: the big-endian length and the body.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Where a scripted peer leaves the messages of its script (see [`Scripted::messages`]).
pub type Expected = std::sync::Arc<std::sync::Mutex<Option<Vec<Vec<u8>>>>>;

/// Builds wire bytes once the other side's first bytes are known (the peer's answer to the
/// handshake message it read).
pub type Respond = Box<dyn FnOnce(&[u8]) -> Vec<u8> + Send>;

/// A peer on the other end of a stream: it plays back `inbox`; when that runs out, it calls
/// `respond` once with everything written to it so far and plays back what that returns; then
/// the stream ends. Never blocks.
pub struct Peer {
    inbox: Vec<u8>,
    at: usize,
    written: Vec<u8>,
    respond: Option<Respond>,
}

impl Peer {
    /// A peer that sends `inbox`, then what `respond` makes of what it received.
    pub fn new(inbox: Vec<u8>, respond: Option<Respond>) -> Self {
        Peer {
            inbox,
            at: 0,
            written: Vec::new(),
            respond,
        }
    }

    /// Copies the next bytes into `buf`; 0 at the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        if self.at == self.inbox.len()
            && let Some(respond) = self.respond.take()
        {
            self.inbox = respond(&self.written);
            self.at = 0;
        }
        let n = buf.len().min(self.inbox.len() - self.at);
        buf[..n].copy_from_slice(&self.inbox[self.at..self.at + n]);
        self.at += n;
        n
    }

    /// Takes written bytes (the first few hundred are kept for `respond`).
    pub fn write(&mut self, buf: &[u8]) -> usize {
        if self.written.len() < 4096 {
            self.written.extend_from_slice(buf);
        }
        buf.len()
    }
}
