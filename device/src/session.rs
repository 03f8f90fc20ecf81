//! A device's query to the two servers: the host's session messages (postcard, the same bytes
//! the host client sends) over two [`DeviceLink`]s.
//!
//! 1. P1 gets `Hello::Client` with its share, `x − PRG(seed)`, streamed row by row as it is
//!    made (8 little-endian bytes a word), so the device never holds the embedding;
//! 2. P0 gets `Hello::Client` with the 16-byte seed;
//! 3. each server answers with its output shares, which the device adds up.
//!
//! The wire types below mirror the host's `session` module field for field and variant for
//! variant; `tests/tests/device_link.rs` checks that both encode to the same bytes.

use embedded_io_async::{Read, Write};
use heapless::{String, Vec};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::link::{DeviceLink, LinkError};
use crate::log;
use crate::noise::StaticKey;
use crate::shares::{DeviceError, EmbeddingSource, ShareStreamer};
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;

/// Most outputs a reply may carry (a routed query has two: logits and the one-hot route).
pub const MAX_OUTPUTS: usize = 4;
/// Most words per output.
pub const MAX_OUTPUT_WORDS: usize = 32;
/// Bytes of a reply the device keeps: enough for the output shares; the servers' accounting
/// that follows them is authenticated and dropped.
const REPLY_BUF: usize = 1024;

/// What to run: the host's `CircuitKind`, variant for variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Circuit {
    /// The router head alone on feature vectors.
    RouterHead,
    /// One BERT classifier.
    Bert,
    /// A pool's encrypted router alone.
    Router,
    /// A routed query through a pool.
    Routed(RouteMode),
    /// One expert of a pool alone.
    Expert(u8),
}

/// The host's `RouteMode`, variant for variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteMode {
    /// The route index is opened to the servers.
    Reveal,
    /// Every expert runs; the route stays hidden from the servers.
    Hide,
}

#[derive(Serialize)]
enum Hello<'a> {
    Client(ClientHello<'a>),
}

#[derive(Serialize)]
struct ClientHello<'a> {
    session: [u8; 16],
    circuit: Circuit,
    rows: u32,
    input: InputShare<'a>,
}

#[derive(Serialize)]
enum InputShare<'a> {
    Seed([u8; 16]),
    /// Little-endian words; serialized as a length and the bytes, like the host's.
    Words(&'a [u8]),
}

// No allocator to box the large variant; one reply is decoded at a time.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
enum ServerReply<'a> {
    Ok(OutputShares),
    Failed(&'a str),
}

/// The part of the host's `OutputShares` a device reads; the accounting after it is dropped.
#[derive(Deserialize)]
struct OutputShares {
    widths: Vec<u8, MAX_OUTPUTS>,
    shares: Vec<Vec<u64, MAX_OUTPUT_WORDS>, MAX_OUTPUTS>,
}

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Server {
    /// P0 (gets the seed).
    P0,
    /// P1 (gets the streamed share).
    P1,
}

/// Why a query failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SessionError {
    /// The link to a server failed.
    Link(Server, LinkError),
    /// A server's reply is not a reply (what is wrong is named).
    Reply(Server, &'static str),
    /// A server reports that the session failed, with its reason (cut to 96 bytes).
    Failed(Server, String<96>),
    /// The two servers' outputs do not fit together.
    Mismatch(&'static str),
    /// The embedding could not be shared.
    Device(DeviceError),
    /// The query is larger than the session format allows.
    TooLarge,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::Link(s, e) => write!(f, "link to {s:?}: {e}"),
            SessionError::Reply(s, what) => write!(f, "malformed reply from {s:?}: {what}"),
            SessionError::Failed(s, why) => write!(f, "{s:?} reports: {why}"),
            SessionError::Mismatch(what) => write!(f, "the servers' outputs disagree: {what}"),
            SessionError::Device(e) => write!(f, "{e}"),
            SessionError::TooLarge => write!(f, "the query is too large"),
        }
    }
}

impl core::error::Error for SessionError {}

/// The reconstructed outputs of a query, in the circuit's output order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outputs {
    /// Each output's ring width in bits.
    pub widths: Vec<u8, MAX_OUTPUTS>,
    /// Each output's values (ring elements).
    pub values: Vec<Vec<u64, MAX_OUTPUT_WORDS>, MAX_OUTPUTS>,
}

impl Outputs {
    /// The chosen expert of a routed query: the index of the single 1 in its one-hot output
    /// (output 1).
    pub fn route(&self) -> Result<usize, SessionError> {
        let onehot = self
            .values
            .get(1)
            .ok_or(SessionError::Mismatch("no route output"))?;
        let mut ones = onehot.iter().enumerate().filter(|&(_, &b)| b == 1);
        match (ones.next(), ones.next()) {
            (Some((j, _)), None) if onehot.iter().all(|&b| b <= 1) => Ok(j),
            _ => Err(SessionError::Mismatch("the route is not one-hot")),
        }
    }

    /// The index of the largest logit (output 0), read as signed fixed point.
    pub fn label(&self) -> Result<usize, SessionError> {
        let logits = self
            .values
            .first()
            .filter(|l| !l.is_empty())
            .ok_or(SessionError::Mismatch("no logits"))?;
        let mut best = 0;
        for (j, &v) in logits.iter().enumerate() {
            if (v as i64) > (logits[best] as i64) {
                best = j;
            }
        }
        Ok(best)
    }
}

/// The servers of a deployment, by their pinned static keys.
#[derive(Clone, Copy, Debug)]
pub struct ServerKeys {
    /// P0's public key.
    pub p0: [u8; 32],
    /// P1's public key.
    pub p1: [u8; 32],
}

/// Runs one query: shares `source`'s rows (its width is the circuit's input width, its rows
/// the batch) between the servers over `to_p0` and `to_p1` (connected streams), then adds up
/// their output shares. `W` is the widest row the device buffers, in words.
pub async fn query<T0, T1, S, R, const W: usize>(
    to_p0: T0,
    to_p1: T1,
    me: &StaticKey,
    servers: &ServerKeys,
    circuit: Circuit,
    source: S,
    rng: &mut R,
) -> Result<Outputs, SessionError>
where
    T0: Read + Write,
    T1: Read + Write,
    S: EmbeddingSource,
    R: CryptoRng + ?Sized,
{
    log::debug!(
        "query {}: {} rows of {} words",
        circuit,
        source.rows(),
        source.width()
    );
    let result = async {
        let mut session = [0u8; 16];
        rng.fill_bytes(&mut session);
        let seed = Seed::random(rng);
        let rows = u32::try_from(source.rows()).map_err(|_| SessionError::TooLarge)?;
        let share_bytes = (source.rows() as u64) * (source.width() as u64) * 8;
        let hello = |input| {
            Hello::Client(ClientHello {
                session,
                circuit,
                rows,
                input,
            })
        };

        // P1 first: the long upload. P0 then gets its seed at once (a server that is first to
        // arrive waits for its peer).
        let link_err = |s| move |e| SessionError::Link(s, e);
        let mut p1 = DeviceLink::connect(to_p1, me, &servers.p1, random_key(rng))
            .await
            .map_err(link_err(Server::P1))?;
        // The header is the message with no words, whose trailing length (one zero byte) is then
        // replaced by the real length's varint; the words follow.
        let mut header = [0u8; 64];
        let empty = postcard::to_slice(&hello(InputShare::Words(&[])), &mut header)
            .map_err(|_| SessionError::TooLarge)?
            .len();
        let mut len_varint = [0u8; 10];
        let len_varint = varint(share_bytes, &mut len_varint);
        let head_len = empty - 1 + len_varint.len();
        if head_len > header.len() {
            return Err(SessionError::TooLarge);
        }
        header[empty - 1..head_len].copy_from_slice(len_varint);
        let mut msg = p1
            .start_message(head_len as u64 + share_bytes)
            .map_err(link_err(Server::P1))?;
        msg.write(&header[..head_len])
            .await
            .map_err(link_err(Server::P1))?;
        let mut streamer =
            ShareStreamer::<S, W>::new(source, &seed).map_err(SessionError::Device)?;
        while let Some(row) = streamer.next_p1_row() {
            let row = row.map_err(SessionError::Device)?;
            let mut bytes = [0u8; 256];
            for words in row.chunks(bytes.len() / 8) {
                for (b, w) in bytes.chunks_exact_mut(8).zip(words) {
                    b.copy_from_slice(&w.to_le_bytes());
                }
                msg.write(&bytes[..words.len() * 8])
                    .await
                    .map_err(link_err(Server::P1))?;
            }
        }
        msg.finish().await.map_err(link_err(Server::P1))?;
        log::debug!("query: {} share bytes sent to P1", share_bytes);

        let mut p0 = DeviceLink::connect(to_p0, me, &servers.p0, random_key(rng))
            .await
            .map_err(link_err(Server::P0))?;
        let mut buf = [0u8; 64];
        let bytes = postcard::to_slice(&hello(InputShare::Seed(*seed.as_bytes())), &mut buf)
            .map_err(|_| SessionError::TooLarge)?;
        p0.send(bytes).await.map_err(link_err(Server::P0))?;
        log::debug!("query: seed sent to P0; waiting for the replies");

        let mut reply = [0u8; REPLY_BUF];
        let o0 = read_reply(&mut p0, Server::P0, &mut reply).await?;
        let o1 = read_reply(&mut p1, Server::P1, &mut reply).await?;
        combine(o0, o1)
    }
    .await;
    match &result {
        Ok(out) => log::debug!("query: {} outputs", out.values.len()),
        Err(e) => log::warning!("query failed: {}", e),
    }
    result
}

fn random_key<R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; 32] {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    k
}

/// Postcard's unsigned varint (LEB128) of `v`.
fn varint(mut v: u64, out: &mut [u8; 10]) -> &[u8] {
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

async fn read_reply<T: Read + Write>(
    link: &mut DeviceLink<T>,
    server: Server,
    buf: &mut [u8],
) -> Result<OutputShares, SessionError> {
    let got = link
        .recv_into(buf)
        .await
        .map_err(|e| SessionError::Link(server, e))?;
    let kept = &buf[..got.kept];
    match postcard::take_from_bytes::<ServerReply<'_>>(kept) {
        Ok((ServerReply::Ok(out), _accounting)) => Ok(out),
        Ok((ServerReply::Failed(why), _)) => Err(SessionError::Failed(server, cut(why))),
        // A failure reason longer than the buffer: keep its start.
        Err(_) if kept.first() == Some(&1) && got.total > got.kept as u64 => {
            let start = kept.get(1..).unwrap_or_default();
            let text = start
                .iter()
                .position(|&b| b < 0x80)
                .map_or(start, |i| &start[i + 1..]);
            let valid = match core::str::from_utf8(text) {
                Ok(s) => s,
                Err(e) => core::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default(),
            };
            Err(SessionError::Failed(server, cut(valid)))
        }
        Err(_) if got.total > got.kept as u64 => Err(SessionError::Reply(
            server,
            "more outputs than the device holds",
        )),
        Err(_) => Err(SessionError::Reply(server, "not a server reply")),
    }
}

/// The first 96 bytes of `text`, cut at a character boundary.
fn cut(text: &str) -> String<96> {
    let mut out = String::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

fn combine(o0: OutputShares, o1: OutputShares) -> Result<Outputs, SessionError> {
    if o0.widths != o1.widths || o0.shares.len() != o1.shares.len() {
        return Err(SessionError::Mismatch("different output shapes"));
    }
    if o0.widths.len() != o0.shares.len() {
        return Err(SessionError::Mismatch("a width per output"));
    }
    let mut values = Vec::new();
    for ((a, b), &w) in o0.shares.iter().zip(&o1.shares).zip(&o0.widths) {
        if a.len() != b.len() {
            return Err(SessionError::Mismatch("different output lengths"));
        }
        let width = BitWidth::new(u32::from(w)).map_err(|_| SessionError::Mismatch("a width"))?;
        let sum: Vec<u64, MAX_OUTPUT_WORDS> =
            a.iter().zip(b).map(|(&x, &y)| width.add(x, y)).collect();
        // Capacity equals the inputs' capacity, so nothing is dropped.
        values
            .push(sum)
            .map_err(|_| SessionError::Mismatch("too many outputs"))?;
    }
    Ok(Outputs {
        widths: o0.widths,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_postcards() {
        for v in [0u64, 1, 127, 128, 300, 786_432, u64::MAX] {
            let mut want = [0u8; 16];
            let want = postcard::to_slice(&v, &mut want).unwrap();
            let mut got = [0u8; 10];
            assert_eq!(varint(v, &mut got), &*want, "{v}");
        }
    }

    #[test]
    fn routes_must_be_one_hot() {
        let out = |onehot: &[u64]| Outputs {
            widths: Vec::from_slice(&[64, 64]).unwrap(),
            values: Vec::from_slice(&[
                Vec::from_slice(&[5, u64::MAX]).unwrap(),
                Vec::from_slice(onehot).unwrap(),
            ])
            .unwrap(),
        };
        assert_eq!(out(&[0, 1, 0]).route(), Ok(1));
        assert!(out(&[0, 1, 1]).route().is_err());
        assert!(out(&[0, 0, 0]).route().is_err());
        assert!(out(&[2, 0, 0]).route().is_err());
        // Negative logits are negative: 5 beats -1.
        assert_eq!(out(&[1, 0, 0]).label(), Ok(0));
    }
}
