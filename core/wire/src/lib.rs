//! # securerouter-wire
//!
//! SecureRouter's wire format: everything two parties must agree on byte for byte, in one
//! `no_std` crate that the host (`securerouter-host`: servers, dealer, client) and the device
//! client (`securerouter-device`, no allocator) both build on.
//!
//! - [`SessionId`], and the id of a later stage of a session ([`SessionId::stage`]);
//! - the circuits as named on the wire ([`CircuitKind`], [`RouteMode`]) and the bound on a
//!   session's batch ([`MAX_ROWS`], [`check_rows`]);
//! - [`session`]: the messages between a client and the servers (`Hello`, `ClientHello`,
//!   `InputShare`, `PeerHello`, `ServerReply`, `OutputShares`), postcard-encoded. They are
//!   generic over their containers: a device encodes from borrowed slices and decodes into
//!   fixed-capacity vectors, the host uses `Vec`s, and both give the same bytes;
//! - [`frame`]: the links' framing (length prefixes, chunk sizes) and, with `alloc`, its
//!   sans-I/O chunking and reassembly;
//! - the links' Noise protocol name and prologue ([`NOISE_PARAMS`], [`PROLOGUE`]).
//!
//! Nothing here does I/O or cryptography: the host's links (snow over tokio) and the device's
//! (its own allocator-free Noise over `embedded-io-async`) carry these bytes. The messages only
//! the host's parties exchange (the dealer's, the servers' accounting) are the host's
//! `session` module's.
//!
//! Features: `alloc` (owned messages, the frame reassembler), `std`, `getrandom`
//! (`SessionId::random`), `clap` (`--route` parses a [`RouteMode`]) and `defmt` (firmware
//! logging; never in host builds).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod frame;
pub mod session;

use core::fmt;
use serde::{Deserialize, Serialize};

/// The Noise protocol name of the links every party speaks (the host may also offer an
/// AES-GCM variant; the device speaks only this one).
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Bound into every handshake: peers of another protocol or version fail the handshake.
/// Version 3: a session carries a batch of inputs (`batch` beside `rows` in the hellos).
pub const PROLOGUE: &[u8] = b"securerouter/3";

/// A session id: 16 random bytes chosen by the client (a later stage of a session runs
/// under an id derived from it, [`SessionId::stage`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id from the operating system's randomness.
    ///
    /// # Panics
    /// When the operating system's random source fails.
    #[cfg(feature = "getrandom")]
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the operating system's random source failed");
        SessionId(b)
    }

    /// The id of stage `k` of this session (the dealer deals it once, like any session):
    /// the first 16 bytes of SHA-256("securerouter session stage" || id || k).
    pub fn stage(&self, k: u8) -> SessionId {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"securerouter session stage");
        h.update(self.0);
        h.update([k]);
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        SessionId(id)
    }
}

/// The first six bytes in hex, enough to tell sessions apart in logs.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0[..6].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A circuit known to the services, named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CircuitKind {
    /// Router head: features → hidden (ReLU) → expert scores → secure argmax.
    RouterHead,
    /// A BERT classifier: embedded tokens → encoder layers → pooled → logits.
    Bert,
    /// A pool's encrypted router alone: embedded tokens → the summary encoder (the pool's
    /// cheapest expert) → pooled → that expert's logits, and the router head's scores and
    /// secret one-hot choice.
    Router,
    /// A routed query through a pool: the router, then the chosen expert, in a routing
    /// privacy mode. Outputs the chosen expert's logits and the one-hot route.
    Routed(RouteMode),
    /// One expert of a pool alone (0 is the summary encoder with its head): its logits.
    Expert(u8),
}

impl fmt::Display for CircuitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CircuitKind::RouterHead => write!(f, "router-head"),
            CircuitKind::Bert => write!(f, "bert"),
            CircuitKind::Router => write!(f, "router"),
            CircuitKind::Routed(mode) => write!(f, "routed ({})", mode.name()),
            CircuitKind::Expert(k) => write!(f, "expert {k}"),
        }
    }
}

/// How a routed query treats the route (`--route`). The client always learns the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteMode {
    /// The route index is opened to both servers and to the dealer (it deals keys for the
    /// chosen expert only), and the chosen expert's size shows in time and traffic; inputs,
    /// scores and outputs stay hidden. Fastest: the router plus one expert.
    #[cfg_attr(feature = "clap", value(name = "reveal-route"))]
    Reveal,
    /// The route stays hidden from the servers and the dealer: every expert runs and an
    /// oblivious select picks the chosen one's output, so time and traffic do not depend on
    /// the route. Costs the sum of the experts.
    #[cfg_attr(feature = "clap", value(name = "hide-route"))]
    Hide,
}

impl RouteMode {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            RouteMode::Reveal => "reveal-route",
            RouteMode::Hide => "hide-route",
        }
    }
}

/// The largest batch of queries one session may carry (bounds every allocation it causes).
pub const MAX_ROWS: u32 = 4096;

/// A batch size outside 1..=[`MAX_ROWS`] ([`check_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowsError(pub u32);

impl fmt::Display for RowsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows is outside 1..={MAX_ROWS}", self.0)
    }
}

impl core::error::Error for RowsError {}

/// Checks a batch size from the wire: 1 ≤ rows ≤ [`MAX_ROWS`].
///
/// # Errors
/// [`RowsError`] for any other size.
pub fn check_rows(rows: u32) -> Result<usize, RowsError> {
    if rows == 0 || rows > MAX_ROWS {
        return Err(RowsError(rows));
    }
    Ok(rows as usize)
}
