//! A device's query to the two servers: `securerouter-wire`'s session messages (postcard, the
//! bytes the host client sends too) over two [`DeviceLink`]s.
//!
//! 1. P1 gets `Hello::Client` with its share, `x − PRG(seed)`, streamed row by row as it is
//!    made (8 little-endian bytes a word), so the device never holds the embedding;
//! 2. P0 gets `Hello::Client` with the 16-byte seed;
//! 3. each server answers with its output shares, which the device adds up.
//!
//! The device holds the messages without an allocator: it encodes its hellos from borrowed
//! bytes (P1's words follow a [`words_hello_header`]) and decodes a reply into fixed-capacity
//! vectors ([`Reply`]), leaving the servers' accounting unread. `tests/tests/device_link.rs`
//! decodes what the device sends with the host's types, and checks every message against
//! golden bytes.

use embedded_io_async::{Read, Write};
use heapless::{String, Vec};
use rand_core::CryptoRng;

use crate::link::{DeviceLink, LinkError};
use crate::log;
use crate::noise::StaticKey;
use crate::shares::{DeviceError, EmbeddingSource, ShareStreamer};
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;
use securerouter_wire::SessionId;
use securerouter_wire::session::{
    ClientHello, Hello, InputShare, OutputShares, ServerReply, WORDS_HELLO_HEADER_MAX,
    words_hello_header,
};

/// What to run (`securerouter-wire`'s `CircuitKind`, the name the host uses).
pub use securerouter_wire::CircuitKind as Circuit;
pub use securerouter_wire::RouteMode;

/// Most outputs a reply may carry (a routed query has two: logits and the one-hot route).
pub const MAX_OUTPUTS: usize = 4;
/// Most words per output.
pub const MAX_OUTPUT_WORDS: usize = 32;
/// Bytes of a reply the device keeps: enough for the output shares; the servers' accounting
/// that follows them is authenticated and dropped.
const REPLY_BUF: usize = 1024;

/// The part of a server's `OutputShares` a device reads, in fixed-capacity vectors; the
/// accounting after it is left unread.
pub type ReplyShares =
    OutputShares<Vec<u8, MAX_OUTPUTS>, Vec<Vec<u64, MAX_OUTPUT_WORDS>, MAX_OUTPUTS>, ()>;

/// A server's reply as the device decodes it (the failure reason borrowed from the buffer).
pub type Reply<'a> = ServerReply<ReplyShares, &'a str>;

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
        let mut session = SessionId([0; 16]);
        rng.fill_bytes(&mut session.0);
        let seed = Seed::random(rng);
        let rows = u32::try_from(source.rows()).map_err(|_| SessionError::TooLarge)?;
        let share_bytes = (source.rows() as u64) * (source.width() as u64) * 8;

        // P1 first: the long upload. P0 then gets its seed at once (a server that is first to
        // arrive waits for its peer).
        let link_err = |s| move |e| SessionError::Link(s, e);
        let mut p1 = DeviceLink::connect(to_p1, me, &servers.p1, random_key(rng))
            .await
            .map_err(link_err(Server::P1))?;
        let mut header = [0u8; WORDS_HELLO_HEADER_MAX];
        let header = words_hello_header(session, circuit, rows, 1, share_bytes, &mut header)
            .ok_or(SessionError::TooLarge)?;
        let mut msg = p1
            .start_message(header.len() as u64 + share_bytes)
            .map_err(link_err(Server::P1))?;
        msg.write(header).await.map_err(link_err(Server::P1))?;
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
        let bytes = seed_hello(session, circuit, rows, seed.as_bytes(), &mut buf)?;
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

/// P0's hello as the device sends it: `Hello::Client` with the seed as the input share,
/// encoded into `buf`.
///
/// # Errors
/// [`SessionError::TooLarge`] when `buf` cannot hold it (64 bytes always can).
pub fn seed_hello<'b>(
    session: SessionId,
    circuit: Circuit,
    rows: u32,
    seed: &[u8; 16],
    buf: &'b mut [u8],
) -> Result<&'b [u8], SessionError> {
    let hello = Hello::<&[u8]>::Client(ClientHello {
        session,
        circuit,
        rows,
        // A device sends one input a session.
        batch: 1,
        input: InputShare::Seed(*seed),
    });
    postcard::to_slice(&hello, buf)
        .map(|b| &*b)
        .map_err(|_| SessionError::TooLarge)
}

async fn read_reply<T: Read + Write>(
    link: &mut DeviceLink<T>,
    server: Server,
    buf: &mut [u8],
) -> Result<ReplyShares, SessionError> {
    let got = link
        .recv_into(buf)
        .await
        .map_err(|e| SessionError::Link(server, e))?;
    decode_reply(&buf[..got.kept], got.total, server)
}

/// A reply from `server` as the device reads it: `kept` is the start of a message of `total`
/// bytes (the rest did not fit the device's buffer). The output shares, or the server's
/// failure (a reason longer than the buffer keeps its start).
///
/// # Errors
/// [`SessionError::Failed`] for a server's failure report, [`SessionError::Reply`] for bytes
/// that are not a reply or hold more outputs than the device does.
pub fn decode_reply(kept: &[u8], total: u64, server: Server) -> Result<ReplyShares, SessionError> {
    match postcard::take_from_bytes::<Reply<'_>>(kept) {
        Ok((ServerReply::Ok(out), _accounting)) => Ok(out),
        Ok((ServerReply::Failed(why), _)) => Err(SessionError::Failed(server, cut(why))),
        // A failure reason longer than the buffer: keep its start.
        Err(_) if kept.first() == Some(&1) && total > kept.len() as u64 => {
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
        Err(_) if total > kept.len() as u64 => Err(SessionError::Reply(
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

fn combine(o0: ReplyShares, o1: ReplyShares) -> Result<Outputs, SessionError> {
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
