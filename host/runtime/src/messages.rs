//! The messages of a session, carried as postcard inside the encrypted links, and the
//! per-session accounting.
//!
//! A session: the client picks a random id and sends each server a [`ClientHello`] (P0 gets a
//! 16-byte seed as its input share, P1 gets x − PRG(seed)). Each server asks the dealer for the
//! session's correlations ([`DealerRequest`]); the dealer answers with the server's seed and
//! streams key chunks ([`DealerChunk`]). P1 opens the P0–P1 link with a [`PeerHello`]. After the
//! circuit, each server sends the client a [`ServerReply`] with its output shares.
//!
//! The messages a client exchanges with the servers, and the names they carry, are
//! `securerouter-wire`'s ([`securerouter_wire::session`]), here with `Vec` containers; the
//! device client encodes and decodes the same bytes from its own containers. The dealer's
//! messages and the servers' accounting are the host's alone.

use crate::error::{Error, Result, invalid};
use bytes::Bytes;
/// The per-part figures of [`SessionStats::phases`] and [`SessionStats::stages`] are the
/// servers' own accounting ([`securerouter_circuits::profile`]), carried here as they are.
pub use securerouter_circuits::profile::{PhaseStats, add_phases};
use serde::{Deserialize, Serialize};

use securerouter_wire::CircuitKind;
pub use securerouter_wire::session::{PeerHello, WordsError};
pub use securerouter_wire::{MAX_ROWS, RowsError, SessionId, check_rows};

/// A server's input share ([`securerouter_wire::session::InputShare`] with P1's bytes in a
/// `Vec`).
pub type InputShare = securerouter_wire::session::InputShare<Vec<u8>>;

/// What a client sends each server first.
pub type ClientHello = securerouter_wire::session::ClientHello<Vec<u8>>;

/// What a server's listener can receive first: a [`ClientHello`] or a [`PeerHello`].
pub type Hello = securerouter_wire::session::Hello<Vec<u8>>;

/// P0's answer to a [`PeerHello`] once the client's hello for the same session is in and agrees:
/// only then does either server take the session's input or ask the dealer.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerReady {
    /// The session both servers now run.
    pub session: SessionId,
}

/// A server's request for a session's correlations.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DealerRequest {
    /// The query's session (a name only: the dealer draws each session's randomness fresh).
    pub session: SessionId,
    /// The circuit the client asked for: with `stage`, the query's plan
    /// ([`securerouter_circuits::QueryPlan`]) names what the dealer deals.
    pub query: CircuitKind,
    /// Which stage of the query (0: the first).
    pub stage: u8,
    /// Rows of the stage's input ([`ClientHello::rows`]).
    pub rows: u32,
    /// Inputs in the stage's batch ([`ClientHello::batch`]).
    pub batch: u32,
    /// 0 or 1.
    pub party: u8,
}

/// The dealer's stream to a server: the seed first, then key chunks, then `End`. The dealer
/// sends chunks of [`Bytes`] (one allocation queued to both servers); a server reads them in
/// place from the received message, as `DealerChunk<&[u8]>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DealerChunk<B = Bytes> {
    /// The server's 16-byte seed for the session.
    Seed([u8; 16]),
    /// Bytes of the P1-only stream.
    P1(B),
    /// Bytes of the stream both servers receive.
    Shared(B),
    /// Bytes of this server's linear stream (the linear layers' offline correlations).
    Linear(B),
    /// All keys sent.
    End,
    /// The dealer refuses the request.
    Refused(String),
}

/// Cost of one session as one server saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Bytes this server sent to the other server.
    pub online_bytes_sent: u64,
    /// Rounds with the other server.
    pub rounds: u64,
    /// Key bytes received from the dealer.
    pub key_bytes_received: u64,
    /// Wall time from the client's hello to the reply, in seconds.
    pub wall_s: f64,
    /// Time spent in the circuit (after setup), in seconds.
    pub online_s: f64,
    /// Seconds spent receiving the whole key stream before the online phase (0 unless the
    /// server prefetches keys).
    pub offline_s: f64,
    /// The server process's peak resident memory so far, in MiB (0 where unknown).
    pub peak_rss_mb: f64,
    /// Online cost per circuit part.
    pub phases: Vec<PhaseStats>,
    /// Online seconds spent in the kernels (matrix products, FSS evaluation; GPU copies
    /// included).
    pub kernel_s: f64,
    /// Online seconds spent exchanging messages with the other server (encryption, network,
    /// waiting for it).
    pub exchange_s: f64,
    /// Online seconds spent reading the dealer's keys (from the link or the prefetch spill).
    pub key_read_s: f64,
    /// CPU seconds the server process used during the online phase, all its threads together
    /// (and any session it served at the same time); 0 where unknown. Against `online_s` it
    /// says whether the server computed or waited.
    pub online_cpu_s: f64,
    /// The kernels this server ran on (e.g. "cpu", "cpu (avx2, 2 threads)" or "cuda: DEVICE").
    pub kernels: String,
    /// Online cost per stage (one circuit each: a routed query in reveal-route mode runs the
    /// router, then the chosen expert unless it is expert 0).
    pub stages: Vec<PhaseStats>,
}

impl SessionStats {
    /// Adds the costs of `later`, a further session of the same query at this server.
    pub fn follow_with(&mut self, later: SessionStats) {
        self.online_bytes_sent += later.online_bytes_sent;
        self.rounds += later.rounds;
        self.key_bytes_received += later.key_bytes_received;
        self.wall_s += later.wall_s;
        self.online_s += later.online_s;
        self.offline_s += later.offline_s;
        self.peak_rss_mb = self.peak_rss_mb.max(later.peak_rss_mb);
        securerouter_circuits::profile::add_phases(&mut self.phases, &later.phases);
        self.kernel_s += later.kernel_s;
        self.exchange_s += later.exchange_s;
        self.key_read_s += later.key_read_s;
        self.online_cpu_s += later.online_cpu_s;
        self.stages.extend(later.stages);
    }

    /// Adds the costs of `other`, a session of the same query that ran at the same time as
    /// this one (reveal-route's batched questions to several experts at once). Bytes, keys and
    /// the per-part and per-stage figures add up; rounds and times are the longer session's,
    /// which is what the query waits for (a sum would count overlapping rounds twice).
    pub fn alongside(&mut self, other: SessionStats) {
        self.online_bytes_sent += other.online_bytes_sent;
        self.key_bytes_received += other.key_bytes_received;
        self.rounds = self.rounds.max(other.rounds);
        self.wall_s = self.wall_s.max(other.wall_s);
        self.offline_s = self.offline_s.max(other.offline_s);
        self.peak_rss_mb = self.peak_rss_mb.max(other.peak_rss_mb);
        if other.online_s > self.online_s {
            // The longer session's online time and the breakdown that explains it.
            self.online_s = other.online_s;
            self.kernel_s = other.kernel_s;
            self.exchange_s = other.exchange_s;
            self.key_read_s = other.key_read_s;
            self.online_cpu_s = other.online_cpu_s;
        }
        add_phases(&mut self.phases, &other.phases);
        self.stages.extend(other.stages);
    }
}

/// The result of a session at one server: its output shares and what it cost.
pub type OutputShares =
    securerouter_wire::session::OutputShares<Vec<u8>, Vec<Vec<u64>>, SessionStats>;

/// A server's answer to the client: [`OutputShares`], or why the session failed.
pub type ServerReply = securerouter_wire::session::ServerReply<OutputShares, String>;

/// Encodes a message for a link.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(msg).map_err(|source| Error::Postcard {
        what: "encoding a session message".to_string(),
        source,
    })
}

/// Decodes a message from a link, naming what was expected when it is malformed.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    if bytes.is_empty() {
        invalid!("empty message where a {what} was expected");
    }
    postcard::from_bytes(bytes).map_err(|source| Error::Postcard {
        what: format!("malformed {what} ({} bytes)", bytes.len()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(online_s: f64, rounds: u64, bytes: u64) -> SessionStats {
        SessionStats {
            online_bytes_sent: bytes,
            rounds,
            key_bytes_received: 10 * bytes,
            wall_s: online_s + 1.0,
            online_s,
            kernel_s: online_s / 2.0,
            online_cpu_s: online_s,
            stages: vec![PhaseStats {
                name: "expert".into(),
                online_s,
                bytes_sent: bytes,
                rounds,
            }],
            ..SessionStats::default()
        }
    }

    /// A key chunk is its variant, its length and its bytes, one block (what servers of
    /// earlier builds read: the payloads were `serde_bytes` vectors).
    #[test]
    fn key_chunks_travel_as_one_block_of_bytes() {
        let bytes = encode(&DealerChunk::Shared(Bytes::from_static(&[4, 5, 6]))).unwrap();
        assert_eq!(bytes, [2, 3, 4, 5, 6]);
        let DealerChunk::Shared(back) = decode::<DealerChunk>(&bytes, "dealer chunk").unwrap()
        else {
            panic!("not a shared chunk")
        };
        assert_eq!(back[..], [4, 5, 6]);
        assert_eq!(encode(&DealerChunk::P1(Bytes::new())).unwrap(), [1, 0]);
        // Read in place, the payload is the message's own bytes.
        let long = vec![7u8; 300];
        let bytes = encode(&DealerChunk::Linear(Bytes::from(long.clone()))).unwrap();
        let Ok(DealerChunk::Linear(payload)) = postcard::from_bytes::<DealerChunk<&[u8]>>(&bytes)
        else {
            panic!("not a linear chunk")
        };
        assert_eq!(payload, long);
        assert_eq!(payload.as_ptr(), bytes[3..].as_ptr());
    }

    #[test]
    fn sessions_one_after_another_add_up_and_sessions_at_once_overlap() {
        let router = stats(0.1, 60, 1_000);
        let mut serial = router.clone();
        serial.follow_with(stats(0.5, 400, 50_000));
        assert_eq!(serial.rounds, 460);
        assert!((serial.online_s - 0.6).abs() < 1e-12);
        // Two experts asked at once: the query waits for the longer, but sends both's bytes.
        let mut experts = stats(0.5, 400, 50_000);
        experts.alongside(stats(0.2, 200, 30_000));
        assert_eq!(experts.rounds, 400);
        assert_eq!(experts.online_s, 0.5);
        assert_eq!(experts.kernel_s, 0.25);
        assert_eq!(experts.wall_s, 1.5);
        assert_eq!(experts.online_bytes_sent, 80_000);
        assert_eq!(experts.key_bytes_received, 800_000);
        assert_eq!(experts.stages.len(), 2);
        // The shorter one first: the longer's time and breakdown win all the same.
        let mut other_order = stats(0.2, 200, 30_000);
        other_order.alongside(stats(0.5, 400, 50_000));
        assert_eq!(other_order.rounds, 400);
        assert_eq!(other_order.online_s, 0.5);
        assert_eq!(other_order.kernel_s, 0.25);
        let mut batch = router;
        batch.follow_with(experts);
        assert_eq!(batch.rounds, 460);
        assert!((batch.online_s - 0.6).abs() < 1e-12);
        assert_eq!(batch.online_bytes_sent, 81_000);
    }

    #[test]
    fn input_words_travel_as_eight_little_endian_bytes() {
        let hello = Hello::Client(ClientHello {
            session: SessionId([3; 16]),
            circuit: CircuitKind::Bert,
            rows: 1,
            batch: 1,
            input: InputShare::words(&[1, u64::MAX]),
        });
        let bytes = encode(&hello).unwrap();
        let mut words = vec![1, 0, 0, 0, 0, 0, 0, 0];
        words.extend([0xff; 8]);
        // Hello::Client, session, Bert, rows, batch, Words, 16 bytes, the words.
        let mut want = vec![0];
        want.extend([3; 16]);
        want.extend([1, 1, 1, 1, 16]);
        want.extend(&words);
        assert_eq!(bytes, want);
        let Hello::Client(back) = decode::<Hello>(&bytes, "hello").unwrap() else {
            panic!("not a client hello")
        };
        assert_eq!(back.input.clone().into_words(2).unwrap(), [1, u64::MAX]);
        // Another size is refused, naming it.
        let err = format!("{:#}", back.input.into_words(3).unwrap_err());
        assert!(err.contains("16 bytes, 3 words need 24"), "{err}");
    }
}
