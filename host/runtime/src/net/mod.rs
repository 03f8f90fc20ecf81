//! The encrypted, mutually authenticated links between SecureRouter's parties (client, P0, P1,
//! dealer), and core's gate [`Channel`](securerouter_core::gate::Channel) between P0 and P1 on
//! top of one ([`PeerChannel`]).
//!
//! # Handshake
//!
//! Every link starts with a Noise handshake, pattern `Noise_IK_25519_ChaChaPoly_BLAKE2s` or
//! `Noise_IK_25519_AESGCM_BLAKE2s` ([`LinkCipher`]: the initiator picks, AES-256-GCM where its
//! CPU has AES-NI; the responder reads message 1 under either and keeps the one that
//! authenticates, a distinct protocol name in the handshake hash each), with
//! the prologue [`PROLOGUE`] (`securerouter/3`). Each party has a static X25519 key
//! ([`Identity`]); the initiator knows ("pins") the responder's public key beforehand, and the
//! responder learns the initiator's from the first handshake message and accepts it only if it
//! is in its allow-list. Two messages:
//!
//! ```text
//! initiator -> responder   e, es, s, ss   (+ empty encrypted payload)
//! responder -> initiator   e, ee, se      (+ empty encrypted payload)
//! ```
//!
//! The responder checks the initiator's key right after message 1 and sends nothing to a peer
//! it does not know ([`NetError::UnknownPeer`]). The prologue is mixed into the handshake hash,
//! so peers speaking another protocol version fail the handshake instead of misreading
//! messages. The whole handshake must finish within [`LinkConfig::io_timeout`].
//!
//! # Wire format
//!
//! Every Noise message (handshake or transport) travels as a *frame*:
//!
//! ```text
//! frame   = len:u32 (big-endian) || noise_message[len]        16 <= len <= 65535
//! ```
//!
//! A logical message `m` (any length up to [`LinkConfig::max_message`]) is split into
//! transport chunks, each encrypted as one Noise transport message (16-byte tag):
//!
//! ```text
//! chunk 0 plaintext = total:u64 (big-endian, = |m|) || m[0 .. min(|m|, 65511)]
//! chunk i plaintext = the next min(remaining, 65519) bytes of m             (i >= 1)
//! ```
//!
//! The chunking is deterministic, so the receiver knows the exact size of every chunk and
//! rejects any other. An announced total above `max_message` is rejected
//! ([`NetError::FrameTooLarge`]) before anything is allocated for it, and the buffer for a
//! message grows only as its authenticated chunks arrive, so a peer cannot make the receiver
//! allocate more than it actually sent (plus at most 16 MiB, [`frame::PREALLOC_LIMIT`]). The
//! pure, I/O-free parsing and reassembly lives in [`frame`] and is fuzzed (`fuzz/`: the
//! `frame_decoder` and `host_link` targets).
//!
//! # Security properties
//!
//! - **Mutual authentication**: the responder is authenticated by its pinned static key (only
//!   its holder can complete `es`/`se`), the initiator by `ss`/`se` and the allow-list check.
//! - **Confidentiality and integrity**: ChaCha20-Poly1305 or AES-256-GCM on every chunk (both
//!   with 16-byte tags, so the framing is the same); the length prefix is
//!   not authenticated but is bounds-checked, and any change to it makes the next chunk fail.
//! - **Forward secrecy**: the transport keys come from the ephemeral-ephemeral DH (`ee`) as
//!   well as the static keys, so a later theft of static keys does not decrypt recorded
//!   traffic. (Message 1's payload, which we leave empty, is not forward secret in IK.)
//! - **Replay, reordering and deletion inside a stream**: Noise's implicit per-direction
//!   counters nonce every chunk, so a replayed, reordered, dropped or tampered chunk fails
//!   authentication ([`NetError::Decrypt`]); the link is unusable afterwards. Truncation at a
//!   message boundary shows up as [`NetError::Closed`], inside a message as
//!   [`NetError::Truncated`].
//! - **Robustness**: no input bytes cause a panic; every read has [`LinkConfig::io_timeout`].
//!
//! Not hidden: message sizes and timing (an observer sees frame lengths), and who talks to
//! whom.

mod addr;
mod channel;
pub mod frame;
mod identity;
mod link;

use std::path::PathBuf;
use std::time::Duration;

pub use addr::{BadServiceAddr, ServiceAddr};
pub use channel::PeerChannel;
pub use identity::{Identity, PublicKey};
pub use link::{LinkReader, LinkWriter, SecureLink};

/// The Noise protocol name of links encrypted with ChaCha20-Poly1305: every party speaks it
/// (the device does only this one); `securerouter-wire`'s.
pub use securerouter_wire::NOISE_PARAMS;

/// The Noise protocol name of links encrypted with AES-256-GCM, which hosts with AES-NI run
/// about four times as fast (the servers' links carry hundreds of megabytes a query).
pub const NOISE_PARAMS_AESGCM: &str = "Noise_IK_25519_AESGCM_BLAKE2s";

/// The AEAD of a link: the initiator picks it, a responder accepts either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkCipher {
    /// ChaCha20-Poly1305 ([`NOISE_PARAMS`]): fast without AES hardware.
    ChaChaPoly,
    /// AES-256-GCM ([`NOISE_PARAMS_AESGCM`]): fast with AES-NI and carry-less multiplication.
    AesGcm,
}

impl LinkCipher {
    /// AES-256-GCM where this CPU has AES-NI and carry-less multiplication, else
    /// ChaCha20-Poly1305.
    pub fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
        {
            return LinkCipher::AesGcm;
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
        {
            return LinkCipher::AesGcm;
        }
        LinkCipher::ChaChaPoly
    }

    /// The Noise protocol name of a link with this cipher.
    pub fn noise_params(self) -> &'static str {
        match self {
            LinkCipher::ChaChaPoly => NOISE_PARAMS,
            LinkCipher::AesGcm => NOISE_PARAMS_AESGCM,
        }
    }
}

/// Bound into every handshake: peers of another protocol or version fail the handshake
/// (`securerouter-wire`'s, which the device client binds too; `tests/tests/device_link.rs`
/// handshakes one with the other).
pub use securerouter_wire::PROLOGUE;

/// Limits of a link. The defaults fit model-sized messages on a LAN.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Largest logical message accepted (and sent), in bytes; default 256 MiB. Bounds the
    /// memory a peer can make us commit to a single message.
    pub max_message: usize,
    /// How long the handshake may take in total, and how long a read or write may wait
    /// without progress before failing with [`NetError::Timeout`]; default 30 s.
    pub io_timeout: Duration,
    /// The cipher this side asks for when it initiates a link; default [`LinkCipher::best`].
    /// (As responder, a party accepts either.)
    pub cipher: LinkCipher,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            max_message: 256 << 20,
            io_timeout: Duration::from_secs(30),
            cipher: LinkCipher::best(),
        }
    }
}

/// Everything that can go wrong on a link, with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The underlying stream failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the link was doing (e.g. "receiving from the peer").
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No progress within the configured timeout. After a receive timeout the link is still
    /// usable (nothing is lost); after a send or handshake timeout it is not.
    #[error("timed out after {after:?} while {what}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The peer closed the stream cleanly between two messages.
    #[error("the peer closed the connection")]
    Closed,
    /// The stream ended in the middle of a frame or of a multi-frame message.
    #[error("the connection ended in the middle of a message")]
    Truncated,
    /// A frame or message larger than allowed (the length was announced, not allocated).
    #[error("frame or message of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced or requested length.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// Bytes on the wire that break the framing rules (e.g. a frame shorter than the AEAD tag,
    /// a chunk of the wrong size).
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A transport chunk failed authentication: tampered, replayed, reordered, dropped, or
    /// encrypted under another key.
    #[error("a frame failed authentication (tampered, replayed, reordered or wrong key)")]
    Decrypt,
    /// The Noise handshake failed (wrong pinned key, other protocol version, peer gone, ...).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The initiator closed the connection before sending a byte: a readiness probe or a port
    /// scan, not a failed peer (services log it at debug level).
    #[error("the connection closed before the handshake began")]
    NoHandshake,
    /// The initiator authenticated with a static key that is not in the allow-list.
    #[error("peer {0} is not in the list of allowed keys")]
    UnknownPeer(PublicKey),
    /// A text that is not a valid public key.
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    /// A key file that cannot be read or written, or whose contents are not a key.
    #[error("key file {}: {problem}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An earlier error (or a cancelled send) left this direction of the link in an unknown
    /// state; it cannot be used any more.
    #[error("the link is unusable after an earlier error")]
    Broken,
}

impl From<frame::FrameError> for NetError {
    fn from(e: frame::FrameError) -> Self {
        match e {
            frame::FrameError::TooLarge { len, max } => NetError::FrameTooLarge { len, max },
            frame::FrameError::Malformed(what) => NetError::Malformed(what),
            frame::FrameError::Decrypt => NetError::Decrypt,
        }
    }
}

/// Whether a connection ended only because its initiator connected and closed without a byte
/// ([`NetError::NoHandshake`]): services answer such probes with a debug line, not a warning.
pub fn is_probe(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Net(NetError::NoHandshake))
}

/// Readies a connected or accepted TCP stream for a link: Nagle's algorithm off. A link
/// writes each message whole and then flushes, so holding a message's last small segment back
/// until the previous one is acknowledged only delays the round (2 to 3 ms a round on
/// loopback, a third of BERT-base's online phase).
pub fn tune_tcp(stream: &tokio::net::TcpStream) -> Result<(), NetError> {
    stream.set_nodelay(true).map_err(|source| NetError::Io {
        context: "turning off Nagle's algorithm",
        source,
    })
}
