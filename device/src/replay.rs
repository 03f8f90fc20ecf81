//! [`Replay`]: a stream that plays back a peer's recorded bytes and counts what is written to
//! it, so the protocol can be measured and tested without a network (the example firmware's
//! whole-session figures, and the check that its recording still replays).

use core::cell::Cell;
use core::convert::Infallible;

/// Plays back `incoming`, then reports the end of the stream; counts written bytes in `sent`.
pub struct Replay<'a> {
    incoming: &'a [u8],
    sent: &'a Cell<usize>,
}

impl<'a> Replay<'a> {
    /// A stream that reads `incoming` and adds the length of every write to `sent`.
    pub fn new(incoming: &'a [u8], sent: &'a Cell<usize>) -> Self {
        Replay { incoming, sent }
    }
}

impl embedded_io_async::ErrorType for Replay<'_> {
    type Error = Infallible;
}

impl embedded_io_async::Read for Replay<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming = &self.incoming[n..];
        Ok(n)
    }
}

impl embedded_io_async::Write for Replay<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.sent.set(self.sent.get() + buf.len());
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
