//! The crate's error type: one variant per kind of failure, each naming the problem (the file,
//! the peer, the value refused). An underlying error is the variant's source, not repeated in
//! its message: print the chain ([`Error::chain`], or the binary's anyhow `{:#}`) to see it.
//! Services send their peers, and log, the whole chain.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::messages::SessionId;
use crate::net::NetError;

/// What went wrong in a link, a service, a client, a deployment or a local cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be created, read, written, copied or deleted: `action`
    /// says which (e.g. "writing").
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. "reading" or "creating".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A directory holds no readable deployment description.
    #[error(
        "reading {} ({} holds no deployment: `securerouter deploy` writes a trained pool's, \
         one folder per role, and `securerouter keys` a router head's)",
        file.display(),
        dir.display()
    )]
    NoDeployment {
        /// The deployment directory.
        dir: PathBuf,
        /// Its `deployment.json`.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TCP connection could not be opened, or a local port found.
    #[error("{what}")]
    Tcp {
        /// What was being done, e.g. "connecting to P0 at 127.0.0.1:7001".
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A link failed (handshake, framing, decryption, the peer gone, a bad key).
    #[error(transparent)]
    Net(#[from] NetError),
    /// A link failed while doing what `what` says.
    #[error("{what}")]
    Link {
        /// What was being done, e.g. "handshake with P0".
        what: String,
        /// The link's error.
        #[source]
        source: NetError,
    },
    /// A connection that did not finish its handshake and first message in time.
    #[error(transparent)]
    HandshakeTimedOut(#[from] crate::service::HandshakeTimedOut),
    /// A peer did not do what was awaited within the time allowed.
    #[error("{what} within {after:?}")]
    Timeout {
        /// What did not happen, e.g. "P1 did not join session 0a1b…".
        what: String,
        /// The time allowed.
        after: Duration,
    },
    /// A session ran past a server's deadline.
    #[error("session {session} ran past its deadline of {after:?}")]
    Deadline {
        /// The session.
        session: SessionId,
        /// The deadline.
        after: Duration,
    },
    /// A request this service refuses (a session past a cap, a replayed or mismatched session,
    /// a key in the wrong place); the reason is sent to the peer.
    #[error("{0}")]
    Refused(String),
    /// The dealer refused a server's request, with the reason it sent.
    #[error("the dealer refused: {0}")]
    DealerRefused(String),
    /// A server reported that a client's session failed, with the reason it sent.
    #[error("P{party} reports: {why}")]
    ServerFailed {
        /// The server, 0 or 1.
        party: usize,
        /// The reason it sent.
        why: String,
    },
    /// A client's session failed at one server or both; each part is the error in full, "ok",
    /// or that the client stopped waiting for that server once the other had failed.
    #[error("session {session} failed: P0: {p0}; P1: {p1}")]
    SessionFailed {
        /// The session.
        session: SessionId,
        /// What P0's side gave.
        p0: String,
        /// What P1's side gave.
        p1: String,
    },
    /// An error of the gate engine (core's rings, fixed point, keys and channel).
    #[error(transparent)]
    Protocol(#[from] securerouter_core::Error),
    /// An error of the gate engine in a step named here.
    #[error("{what}")]
    ProtocolIn {
        /// The step, e.g. "computing the linear layers' offline terms".
        what: String,
        /// The gate engine's error.
        #[source]
        source: securerouter_core::Error,
    },
    /// An error of the circuits (a model's shapes, a query's plan).
    #[error(transparent)]
    Circuit(#[from] securerouter_circuits::Error),
    /// A model file's spec is refused by the circuits' checks.
    #[error("in {}", path.display())]
    InModelFile {
        /// The model file.
        path: PathBuf,
        /// What was refused.
        #[source]
        source: securerouter_circuits::Error,
    },
    /// An error of the plaintext side (models, bundles, assets).
    #[error(transparent)]
    Model(#[from] securerouter_ml::Error),
    /// A batch with a number of rows outside the allowed range.
    #[error(transparent)]
    Rows(#[from] securerouter_wire::RowsError),
    /// An input share that is not the words it should be.
    #[error(transparent)]
    Words(#[from] securerouter_wire::session::WordsError),
    /// A message or file could not be encoded or decoded (postcard).
    #[error("{what}")]
    Postcard {
        /// What failed, e.g. "malformed hello (3 bytes)".
        what: String,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },
    /// A JSON file is not what it should be, or a value could not be written as JSON.
    #[error("{what}")]
    Json {
        /// What failed, e.g. "/d/deployment.json is not a valid deployment file".
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A value refused: in a deployment or model file, a name or setting given by the caller,
    /// the client's input, or a peer's message. The message names the value and why.
    #[error("{0}")]
    Invalid(String),
    /// A key prefetch could not spill the dealer's stream to its temporary files.
    #[error("prefetching the dealer's keys")]
    Spill(#[source] std::io::Error),
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Random(#[source] getrandom::Error),
    /// A local cluster's child process could not be started or watched.
    #[error("{what}")]
    Process {
        /// What was being done, e.g. "starting the dealer process".
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A local cluster's service exited or did not listen in time.
    #[error("{0}")]
    NotStarted(String),
    /// A thread panicked holding a lock of this service.
    #[error("poisoned lock")]
    Poisoned,
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] of `action` on `path`, for `map_err` (the path is copied only on
    /// error).
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// An [`Error::Link`] saying what was being done, for `map_err`.
    pub(crate) fn link(what: impl fmt::Display) -> impl FnOnce(NetError) -> Self {
        move |source| Error::Link {
            what: what.to_string(),
            source,
        }
    }

    /// An [`Error::Tcp`] for connecting to `peer` at `addr`, for `map_err`.
    pub(crate) fn connect(
        peer: &str,
        addr: &crate::net::ServiceAddr,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let what = format!("connecting to {peer} at {addr}");
        move |source| Error::Tcp { what, source }
    }

    /// This error with its sources, "error: source: source" (as anyhow's `{:#}` prints it):
    /// what services send their peers and log.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// An error and its sources, displayed as "error: source: source" ([`Error::chain`]).
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + Send + Sync + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// Returns early with [`Error::Invalid`] of a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;

/// Returns early with [`Error::Refused`] of a formatted message.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;
