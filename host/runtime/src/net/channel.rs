//! [`PeerChannel`]: core's gate [`Channel`] between P0 and P1 over a [`SecureLink`].

use securerouter_core::Error;
use securerouter_core::gate::{Channel, Traffic};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::{LinkReader, LinkWriter, NetError, PublicKey, SecureLink};

/// The P0–P1 link as the gate engine sees it: each [`exchange`](Channel::exchange) sends one
/// message and receives one, concurrently.
///
/// Built from a whole [`SecureLink`] ([`new`](Self::new)) or from its halves
/// ([`from_halves`](Self::from_halves)). Sending and receiving run at the same time, so two
/// servers that both send megabytes in the same round cannot deadlock on full TCP buffers.
/// Link errors are logged (with `tracing::warn!`) and reported as
/// [`Error::ChannelClosed`], since core's errors carry static text only.
#[derive(Debug)]
pub struct PeerChannel {
    writer: LinkWriter,
    reader: LinkReader,
    traffic: Traffic,
    /// Seconds spent in exchanges: encrypting, sending, and waiting for the other server.
    exchange_s: f64,
}

impl PeerChannel {
    /// Wraps an established link to the other server.
    pub fn new<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(link: SecureLink<S>) -> Self {
        let (writer, reader) = link.into_split();
        Self::from_halves(writer, reader)
    }

    /// Wraps the two halves of an established link to the other server.
    pub fn from_halves(writer: LinkWriter, reader: LinkReader) -> Self {
        Self {
            writer,
            reader,
            traffic: Traffic::default(),
            exchange_s: 0.0,
        }
    }

    /// The other server's authenticated static key.
    pub fn peer(&self) -> PublicKey {
        self.reader.peer()
    }

    /// Waits until the other server reaches its barrier too: a one-byte exchange outside the
    /// counted traffic (benchmarks start the online clocks together with it).
    pub async fn barrier(&mut self) -> Result<(), NetError> {
        let (sent, got) = tokio::join!(self.writer.send(b"ready"), self.reader.recv());
        sent?;
        match got? {
            m if m == b"ready" => Ok(()),
            _ => Err(NetError::Malformed("expected the other server's barrier")),
        }
    }

    /// Seconds spent in exchanges so far (encryption, the network, and waiting for the other
    /// server to reach the same round).
    pub fn exchange_seconds(&self) -> f64 {
        self.exchange_s
    }

    /// Gives the halves back (e.g. to close the link).
    pub fn into_halves(self) -> (LinkWriter, LinkReader) {
        (self.writer, self.reader)
    }
}

impl Channel for PeerChannel {
    /// Sends `send` and receives the peer's message of the same length, concurrently. Counts
    /// `send.len()` bytes and one round once the send has completed.
    async fn exchange(&mut self, send: &[u8], recv: &mut [u8]) -> Result<(), Error> {
        if send.len() != recv.len() {
            return Err(Error::LengthMismatch {
                expected: send.len(),
                got: recv.len(),
            });
        }
        let start = std::time::Instant::now();
        let Self {
            writer,
            reader,
            traffic,
            exchange_s,
        } = self;
        let sending = async {
            writer.send(send).await?;
            traffic.bytes_sent += send.len() as u64;
            traffic.rounds += 1;
            Ok::<_, NetError>(())
        };
        // On the first error the other half is dropped: the link is unusable anyway.
        let joined = tokio::try_join!(sending, reader.recv());
        *exchange_s += start.elapsed().as_secs_f64();
        let ((), message) = joined.map_err(|e| to_core(&e))?;
        if message.len() != recv.len() {
            warn!(
                expected = recv.len(),
                got = message.len(),
                "peer sent a message of the wrong length"
            );
            return Err(Error::LengthMismatch {
                expected: recv.len(),
                got: message.len(),
            });
        }
        recv.copy_from_slice(&message);
        Ok(())
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}

/// Logs a link error in full and maps it to core's static-text error.
fn to_core(e: &NetError) -> Error {
    warn!(error = %e, "link to the other server failed");
    Error::ChannelClosed(match e {
        NetError::Closed => "the other server closed the link",
        NetError::Truncated => "the link to the other server ended mid-message",
        NetError::Timeout { .. } => "the other server did not respond in time",
        NetError::Decrypt => "a message from the other server failed authentication",
        NetError::FrameTooLarge { .. } => "a message to or from the other server is too large",
        NetError::Malformed(_) => "the other server sent a malformed frame",
        NetError::Io { .. } => "I/O error on the link to the other server",
        NetError::Broken => "the link to the other server is unusable after an earlier error",
        _ => "the link to the other server failed",
    })
}
