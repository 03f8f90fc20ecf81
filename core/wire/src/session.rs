//! The messages between a client and the servers, carried as postcard inside the encrypted
//! links.
//!
//! A session: the client picks a random [`SessionId`] and sends each server a
//! [`Hello::Client`] (P0 gets a 16-byte seed as its input share, P1 gets x − PRG(seed)); P1
//! opens the P0–P1 link with a [`Hello::Peer`]. After the circuit, each server sends the
//! client a [`ServerReply`] with its output shares.
//!
//! The containers are type parameters, so that each side holds the messages its own way while
//! the bytes stay the same:
//!
//! | message | host (`alloc`) | device (no allocator) |
//! |---|---|---|
//! | [`InputShare`]`<B>`, [`ClientHello`]`<B>`, [`Hello`]`<B>` | `B = Vec<u8>` | `B = &[u8]` (encoded; P1's words are streamed after [`words_hello_header`]) |
//! | [`OutputShares`]`<W, S, T>` | `Vec<u8>`, `Vec<Vec<u64>>`, the servers' accounting | fixed-capacity vectors and `T = ()`: decoding stops before the accounting |
//! | [`ServerReply`]`<O, F>` | `F = String` | `F = &str` |

use crate::{CircuitKind, SessionId};
use core::fmt;
use serde::{Deserialize, Serialize};

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// A server's input share; `B` holds P1's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "B: serde_bytes::Serialize",
    deserialize = "B: serde_bytes::Deserialize<'de>"
))]
pub enum InputShare<B> {
    /// P0: the seed of the client's seeded split.
    Seed([u8; 16]),
    /// P1: x − PRG(seed), 8 little-endian bytes per input element: a streaming client (the
    /// device) knows the message's length before it has made the words, and random words take
    /// 8 bytes instead of postcard's 10-byte varints. On the wire: a varint length, the bytes.
    Words(#[serde(with = "serde_bytes")] B),
}

/// Why an input share is not the words a session expects (`InputShare::into_words`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordsError {
    /// The share is a seed.
    Seed,
    /// The share holds another number of bytes.
    Length {
        /// Bytes in the share.
        bytes: usize,
        /// Words expected.
        expected: usize,
    },
}

impl fmt::Display for WordsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WordsError::Seed => write!(f, "expected the input share as words, got a seed"),
            WordsError::Length { bytes, expected } => write!(
                f,
                "the input share has {bytes} bytes, {expected} words need {}",
                expected * 8
            ),
        }
    }
}

impl core::error::Error for WordsError {}

#[cfg(feature = "alloc")]
impl InputShare<Vec<u8>> {
    /// P1's share as it travels.
    pub fn words(words: &[u64]) -> Self {
        InputShare::Words(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    /// The words of a [`InputShare::Words`] share of `expected` words.
    ///
    /// # Errors
    /// When the share is a seed or holds another number of words (the count is named).
    pub fn into_words(self, expected: usize) -> Result<Vec<u64>, WordsError> {
        let bytes = match self {
            InputShare::Words(b) => b,
            InputShare::Seed(_) => return Err(WordsError::Seed),
        };
        if bytes.len() != expected * 8 {
            return Err(WordsError::Length {
                bytes: bytes.len(),
                expected,
            });
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|b| {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                u64::from_le_bytes(w)
            })
            .collect())
    }
}

/// What a client sends each server first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "B: serde_bytes::Serialize",
    deserialize = "B: serde_bytes::Deserialize<'de>"
))]
pub struct ClientHello<B> {
    /// The session.
    pub session: SessionId,
    /// What to run.
    pub circuit: CircuitKind,
    /// Rows of the input: a BERT or pool input's tokens (of every input in the batch), the
    /// router head's queries.
    pub rows: u32,
    /// Inputs in the batch, whose rows split `rows` equally (1 for the router head, whose
    /// queries are its rows).
    pub batch: u32,
    /// This server's share of the input.
    pub input: InputShare<B>,
}

/// The first message P1 sends P0 on the link it opens for a session, with what the client
/// asked P1 to run (P0 refuses a session whose two hellos disagree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    /// The session this link serves.
    pub session: SessionId,
    /// What will run.
    pub circuit: CircuitKind,
    /// Rows of the input ([`ClientHello::rows`]).
    pub rows: u32,
    /// Inputs in the batch ([`ClientHello::batch`]).
    pub batch: u32,
}

/// What a server's listener can receive first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "B: serde_bytes::Serialize",
    deserialize = "B: serde_bytes::Deserialize<'de>"
))]
pub enum Hello<B> {
    /// From a client.
    Client(ClientHello<B>),
    /// From the other server.
    Peer(PeerHello),
}

/// The result of a session at one server, per output wire. The accounting comes last, so a
/// reader that does not want it decodes with `T = ()` and leaves its bytes unread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputShares<W, S, T> {
    /// Bit-width of each output (`W`: a sequence of `u8`).
    pub widths: W,
    /// This server's additive shares of each output (`S`: a sequence of sequences of `u64`).
    pub shares: S,
    /// What it cost (the host's `SessionStats`).
    pub stats: T,
}

/// A server's answer to the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerReply<O, F> {
    /// Output shares.
    Ok(O),
    /// The session failed; the reason (`F`: a string), for the operator.
    Failed(F),
}

/// Most bytes of a [`words_hello_header`].
pub const WORDS_HELLO_HEADER_MAX: usize = 64;

/// The start of an encoded `Hello::Client` whose input share is [`InputShare::Words`] of
/// `len` bytes: everything before the words, which follow it as they are. A client that
/// streams its share writes this header and then the words as it makes them. `None` when
/// `buf` is too small ([`WORDS_HELLO_HEADER_MAX`] bytes always suffice).
pub fn words_hello_header(
    session: SessionId,
    circuit: CircuitKind,
    rows: u32,
    batch: u32,
    len: u64,
    buf: &mut [u8],
) -> Option<&[u8]> {
    let hello = Hello::Client(ClientHello {
        session,
        circuit,
        rows,
        batch,
        input: InputShare::Words(&[][..]),
    });
    // The message with no words ends in their length, a varint 0 (one byte); the real
    // length's varint takes its place.
    let empty = postcard::to_slice(&hello, buf).ok()?.len();
    let mut varint = [0u8; 10];
    let varint = encode_varint(len, &mut varint);
    let head = empty - 1 + varint.len();
    buf.get_mut(empty - 1..head)?.copy_from_slice(varint);
    Some(&buf[..head])
}

/// Postcard's unsigned varint (LEB128) of `v`.
fn encode_varint(mut v: u64, out: &mut [u8; 10]) -> &[u8] {
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out[n] = byte;
            return &out[..=n];
        }
        out[n] = byte | 0x80;
        n += 1;
    }
}
