//! A link model you can run: a user-space TCP relay that delays and paces what it forwards, so
//! that services on one machine talk as over a LAN or a WAN without kernel netem.
//!
//! A [`LinkModel`] is a round-trip time and a rate (`lan`: 1 ms, 1 Gbit/s; `wan`: 40 ms,
//! 200 Mbit/s; or `rtt=40ms,rate=200mbit`). A [`Relay`] listens on a local port and, for each
//! connection it accepts, opens one to its target and forwards both directions through the
//! model, each direction on its own:
//!
//! - **delay**: a byte leaves no earlier than rtt/2 after the relay read it;
//! - **rate**: a direction's bytes leave no faster than the rate. The relay keeps a "link free
//!   at" clock per direction: a segment read at `t` starts on the link at
//!   `max(t, free_at)`, occupies it for `len * 8 / rate`, and leaves once it is wholly on the
//!   link plus rtt/2 (store and forward). Reads are at most [`SEGMENT`] bytes, so pacing is
//!   smooth; a message of `n` bytes thus arrives `n * 8 / rate + rtt / 2` after it was sent,
//!   as on a real link.
//!
//! A close (EOF) is forwarded like a byte, after the bytes queued before it (a half-close:
//! `shutdown` of the other side's write half); a read error is forwarded after the queued bytes
//! too, as a reset of the other side; a failed write (its receiver gone) resets both sides at
//! once.
//!
//! # What it does not model
//!
//! The kernel acknowledges each side's bytes at once (both legs are loopback), so TCP's own
//! windows, slow start and losses never see the modelled path; the relay's buffer stands in for
//! the path's bandwidth-delay product. Memory is bounded: each direction holds at most
//! [`Relay::segments_per_direction`] segments of at most [`SEGMENT`] bytes (about twice the
//! one-way bandwidth-delay product plus 1 MiB, capped at 16 MiB); when its writer falls
//! behind, its reader waits (backpressure), so an unlimited rate with a long delay moves at
//! most 16 MiB per rtt/2. Opening a connection costs no round trip (a real TCP handshake costs
//! one); services that keep their links open do not notice.
//!
//! # Timing
//!
//! Tokio's timer rounds every deadline up to a whole millisecond (a sleep ends 1 to 1.6 ms
//! late on our 2-core VM), which would turn a LAN's 1 ms round trip into 3 ms or more. The
//! relay's waits instead go through one timer thread of its own (started on first use, idle
//! when nothing waits) that sleeps on a condition variable to the earliest deadline; the OS
//! wakes it about 0.1 ms late there (50 µs of it the default timer slack). Delays are never
//! shorter than the model's, and on that VM a round trip through the relay measures about
//! 0.3 ms over the setting at 1 ms, 0.5 to 0.8 ms over at 20 ms (the wake-ups of the threads
//! that sat idle); a bulk transfer's rate is within about 1 % of the setting, since pacing
//! follows the ideal clock and a late wake-up only sends more at once.

use crate::error::{Error, Result, invalid};
use crate::net::ServiceAddr;
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

/// The most bytes the relay reads (and paces) as one segment.
pub const SEGMENT: usize = 16 * 1024;

/// The longest round trip a [`LinkModel`] parses.
const MAX_RTT: Duration = Duration::from_secs(60);

/// Round trip and rate of an emulated link, the same both ways.
///
/// Parses from `lan`, `wan`, `loopback` (or `none`) and `rtt=40ms,rate=200mbit` (rtt in `us`,
/// `ms` or `s`; rate in `bit`, `kbit`, `mbit` or `gbit`, decimal prefixes, per second; either
/// key may be left out, meaning no delay or no rate limit; keys in any order; numbers may have
/// a fraction, e.g. `0.5ms`; names and units in any case). [`Display`](fmt::Display) prints the
/// preset's name, or the keys that are set in the largest unit that keeps the number at least
/// 1 (e.g. `rtt=1.5ms,rate=200mbit`); that text parses back to the same model.
///
/// As JSON (serde), it is `{"link": "wan", "rtt_ms": 40.0, "rate_mbit_s": 200.0}`: `link` is
/// the printed form, `rate_mbit_s` is `null` for no rate limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "LinkModelJson")]
pub struct LinkModel {
    /// Round-trip time: each direction delays its bytes by half of it.
    pub rtt: Duration,
    /// Rate of each direction in bits per second; 0 means no limit.
    pub rate_bits_per_s: u64,
}

impl LinkModel {
    /// No relay: loopback as it is (no delay, no rate limit).
    pub const LOOPBACK: LinkModel = LinkModel {
        rtt: Duration::ZERO,
        rate_bits_per_s: 0,
    };
    /// A LAN: 1 ms round trip, 1 Gbit/s.
    pub const LAN: LinkModel = LinkModel {
        rtt: Duration::from_millis(1),
        rate_bits_per_s: 1_000_000_000,
    };
    /// A WAN: 40 ms round trip, 200 Mbit/s.
    pub const WAN: LinkModel = LinkModel {
        rtt: Duration::from_millis(40),
        rate_bits_per_s: 200_000_000,
    };

    /// Whether this is plain loopback (no delay, no limit), where no relay is needed.
    pub fn is_loopback(&self) -> bool {
        *self == Self::LOOPBACK
    }

    /// How long `bytes` occupy the link at its rate (zero with no limit).
    pub fn transmit_time(&self, bytes: usize) -> Duration {
        if self.rate_bits_per_s == 0 {
            return Duration::ZERO;
        }
        let nanos = bytes as u128 * 8 * 1_000_000_000 / u128::from(self.rate_bits_per_s);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Units of a round trip, in nanoseconds, largest first.
const RTT_UNITS: [(&str, u64); 3] = [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)];
/// Units of a rate, in bits per second, largest first.
const RATE_UNITS: [(&str, u64); 4] = [
    ("gbit", 1_000_000_000),
    ("mbit", 1_000_000),
    ("kbit", 1_000),
    ("bit", 1),
];

impl FromStr for LinkModel {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        const FORMS: &str = "lan, wan, loopback, none, or keys like rtt=40ms,rate=200mbit";
        match text.to_ascii_lowercase().as_str() {
            "lan" => return Ok(Self::LAN),
            "wan" => return Ok(Self::WAN),
            "loopback" | "none" => return Ok(Self::LOOPBACK),
            "" => invalid!("an empty link model ({FORMS})"),
            _ => {}
        }
        let (mut rtt, mut rate) = (None, None);
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                if part.is_empty() {
                    invalid!("{text:?}: an empty part between commas");
                }
                invalid!("{part:?}: not a link model ({FORMS})");
            };
            match key.to_ascii_lowercase().as_str() {
                "rtt" => {
                    if rtt.is_some() {
                        invalid!("{part}: rtt given twice");
                    }
                    let Some(nanos) = parse_scaled(value, &RTT_UNITS) else {
                        invalid!("{part}: not a duration like 40ms (units: us, ms, s)");
                    };
                    let d = Duration::from_nanos(nanos);
                    if d > MAX_RTT {
                        invalid!("{part}: a round trip of at most 60s");
                    }
                    rtt = Some(d);
                }
                "rate" => {
                    if rate.is_some() {
                        invalid!("{part}: rate given twice");
                    }
                    let Some(bits) = parse_scaled(value, &RATE_UNITS) else {
                        invalid!("{part}: not a rate like 200mbit (units: bit, kbit, mbit, gbit)");
                    };
                    if bits == 0 {
                        invalid!("{part}: a rate must be above 0 (leave rate out for no limit)");
                    }
                    rate = Some(bits);
                }
                _ => invalid!("{part}: unknown key {key:?} (keys: rtt, rate)"),
            }
        }
        Ok(LinkModel {
            rtt: rtt.unwrap_or(Duration::ZERO),
            rate_bits_per_s: rate.unwrap_or(0),
        })
    }
}

/// Parses a decimal number and one of `units` (name, scale: a power of ten), e.g. `1.5ms`,
/// into whole base units; `None` when it is not one, overflows, or is finer than a base unit.
fn parse_scaled(text: &str, units: &[(&str, u64)]) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.to_ascii_lowercase();
    let &(_, scale) = units.iter().find(|(name, _)| *name == unit)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole = if whole.is_empty() {
        0
    } else {
        whole.parse::<u64>().ok()?
    };
    // The fraction's digits beyond the scale's must be zeros.
    let places = scale.ilog10() as usize;
    let (kept, rest) = fraction.split_at(fraction.len().min(places));
    if rest.bytes().any(|b| b != b'0') {
        return None;
    }
    let fraction = if kept.is_empty() {
        0
    } else {
        kept.parse::<u64>().ok()? * 10u64.pow((places - kept.len()) as u32)
    };
    whole.checked_mul(scale)?.checked_add(fraction)
}

/// Writes `value` (in base units) in the largest of `units` that keeps it at least 1, as an
/// exact decimal.
fn write_scaled(f: &mut fmt::Formatter<'_>, value: u128, units: &[(&str, u64)]) -> fmt::Result {
    let Some(&(name, scale)) = units
        .iter()
        .find(|&&(_, scale)| value >= u128::from(scale))
        .or(units.last())
    else {
        return write!(f, "{value}");
    };
    let scale = u128::from(scale);
    let (whole, rest) = (value / scale, value % scale);
    if rest == 0 {
        return write!(f, "{whole}{name}");
    }
    let places = scale.ilog10() as usize;
    let fraction = format!("{rest:0places$}");
    write!(f, "{whole}.{}{name}", fraction.trim_end_matches('0'))
}

impl fmt::Display for LinkModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LAN => return f.write_str("lan"),
            Self::WAN => return f.write_str("wan"),
            Self::LOOPBACK => return f.write_str("loopback"),
            _ => {}
        }
        if !self.rtt.is_zero() {
            f.write_str("rtt=")?;
            write_scaled(f, self.rtt.as_nanos(), &RTT_UNITS)?;
        }
        if self.rate_bits_per_s != 0 {
            f.write_str(if self.rtt.is_zero() {
                "rate="
            } else {
                ",rate="
            })?;
            write_scaled(f, u128::from(self.rate_bits_per_s), &RATE_UNITS)?;
        }
        Ok(())
    }
}

/// A [`LinkModel`] as it sits in a JSON report.
#[derive(Serialize)]
struct LinkModelJson {
    /// The printed form, e.g. `wan` or `rtt=10ms`.
    link: String,
    /// The round trip in milliseconds.
    rtt_ms: f64,
    /// The rate in Mbit/s; `None` (null) for no limit.
    rate_mbit_s: Option<f64>,
}

impl From<LinkModel> for LinkModelJson {
    fn from(m: LinkModel) -> Self {
        LinkModelJson {
            link: m.to_string(),
            rtt_ms: m.rtt.as_secs_f64() * 1e3,
            rate_mbit_s: (m.rate_bits_per_s != 0).then(|| m.rate_bits_per_s as f64 / 1e6),
        }
    }
}

/// A running relay: accepts TCP connections on [`Relay::addr`] and forwards each to its target
/// through a [`LinkModel`]. Dropping it (or [`Relay::stop`]) stops accepting and ends the
/// connections it forwards.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    target: ServiceAddr,
    model: LinkModel,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `listen` (usually `127.0.0.1:0`) and forwards each accepted connection to
    /// `target` (an address, or a host name resolved at each connection) through `model`.
    /// Needs a tokio runtime with I/O and time enabled.
    ///
    /// # Errors
    /// [`Error::Tcp`] when `listen` cannot be bound.
    pub async fn start(
        listen: SocketAddr,
        target: impl Into<ServiceAddr>,
        model: LinkModel,
    ) -> Result<Relay> {
        let tcp = |what: String| move |source| Error::Tcp { what, source };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(tcp(format!("relay listening on {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(tcp(format!("relay's address (listening on {listen})")))?;
        let target = target.into();
        let task = tokio::spawn(accept_loop(listener, target.clone(), model));
        Ok(Relay {
            addr,
            target,
            model,
            task: Some(task),
        })
    }

    /// The address the relay listens on: connect here to reach the target through the link.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> &ServiceAddr {
        &self.target
    }

    /// The link model it applies.
    pub fn model(&self) -> LinkModel {
        self.model
    }

    /// How many segments (of at most [`SEGMENT`] bytes) each direction of a connection holds
    /// under `model`: twice the one-way bandwidth-delay product plus 64 (1 MiB), at most 1024
    /// (16 MiB), which an unlimited rate takes.
    pub fn segments_per_direction(model: LinkModel) -> usize {
        const MIN: usize = 64;
        const MAX: usize = 1024;
        if model.rate_bits_per_s == 0 {
            return if model.rtt.is_zero() { MIN } else { MAX };
        }
        let bytes = model.rate_bits_per_s as f64 / 8.0 * (model.rtt.as_secs_f64() / 2.0);
        let segments = (bytes / SEGMENT as f64).ceil();
        if segments >= MAX as f64 {
            MAX
        } else {
            (2 * segments as usize + MIN).min(MAX)
        }
    }

    /// Stops accepting and ends the connections it forwards (both sides see the sockets
    /// close); returns once the listening socket is closed.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Cancelled (or, had it panicked, the panic): either way it has ended.
            let _ended = task.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Accepts connections until aborted; each is forwarded on a task of a [`JoinSet`], which
/// aborts them all when this loop is dropped.
async fn accept_loop(listener: TcpListener, target: ServiceAddr, model: LinkModel) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(forward(stream, peer, target.clone(), model));
                }
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: the
                    // loop goes on after a short pause.
                    warn!("relay to {target}: accepting a connection failed: {e}; going on");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended
                    && e.is_panic()
                {
                    warn!("relay to {target}: a connection's task panicked: {e}");
                }
            }
        }
    }
}

/// Forwards one accepted connection to `target` until both directions have closed, or one
/// fails (then both sockets are reset).
async fn forward(mut client: TcpStream, peer: SocketAddr, target: ServiceAddr, model: LinkModel) {
    let connected = match target.resolve().await {
        Ok(addr) => TcpStream::connect(addr).await,
        Err(e) => Err(e),
    };
    let mut server = match connected {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, "relay: connecting to {target} failed: {e}; resetting the client");
            reset(&client);
            return;
        }
    };
    for s in [&client, &server] {
        if let Err(e) = s.set_nodelay(true) {
            debug!(%peer, "relay: turning off Nagle's algorithm failed: {e}");
        }
    }
    let capacity = Relay::segments_per_direction(model);
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let ended = tokio::try_join!(
        direction(client_read, server_write, model, capacity),
        direction(server_read, client_write, model, capacity),
    );
    if let Err(e) = ended {
        debug!(%peer, "relay to {target}: {e}; resetting both sides");
        reset(&client);
        reset(&server);
    }
}

/// Makes the socket's close send a reset rather than a FIN.
fn reset(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        debug!("relay: setting SO_LINGER to 0 failed: {e}");
    }
}

/// What a direction's reader hands its writer, to be done at `due`.
struct Segment {
    due: Instant,
    what: Carried,
}

/// A segment's content.
enum Carried {
    /// Bytes to write.
    Bytes(Vec<u8>),
    /// The source closed its side: shut down the destination's write half.
    Eof,
    /// Reading the source failed: reset the connection.
    Failed(std::io::Error),
}

/// One direction of a connection: reads `from`, schedules each segment by the link model, and
/// writes it to `to` when due. Ends after forwarding an EOF; fails after forwarding a read
/// error, or when a write fails.
async fn direction(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    model: LinkModel,
    capacity: usize,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Segment>(capacity);
    let one_way = model.rtt / 2;
    let read = async move {
        let mut buf = vec![0u8; SEGMENT];
        let mut free_at = Instant::now();
        loop {
            let read = from.read(&mut buf).await;
            let arrival = Instant::now();
            let start = arrival.max(free_at);
            let (what, last) = match read {
                Ok(0) => (Carried::Eof, true),
                Ok(n) => (Carried::Bytes(buf[..n].to_vec()), false),
                Err(e) => (Carried::Failed(e), true),
            };
            if let Carried::Bytes(bytes) = &what {
                free_at = start + model.transmit_time(bytes.len());
            }
            let due = free_at.max(start) + one_way;
            if tx.send(Segment { due, what }).await.is_err() {
                // The writer failed; its error ends the connection.
                return Ok(());
            }
            if last {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let write = async move {
        while let Some(segment) = rx.recv().await {
            timer::sleep_until(segment.due).await;
            match segment.what {
                Carried::Bytes(bytes) => to.write_all(&bytes).await?,
                Carried::Eof => return to.shutdown().await,
                Carried::Failed(e) => return Err(e),
            }
        }
        Ok(())
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// The relay's precise sleep: one thread for the process sleeps to the earliest deadline any
/// relay waits for and wakes the tasks that are due. Tokio's timer would round each deadline
/// up to the next millisecond.
mod timer {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
    use std::task::{Context, Poll, Waker};
    use std::time::Instant;

    /// The tasks waiting, by deadline (and a number that tells equal deadlines apart).
    struct Waiting {
        by_deadline: BTreeMap<(Instant, u64), Waker>,
        next_id: u64,
    }

    static WAITING: Mutex<Waiting> = Mutex::new(Waiting {
        by_deadline: BTreeMap::new(),
        next_id: 0,
    });
    /// Signalled when a deadline earlier than all others is added.
    static EARLIER: Condvar = Condvar::new();
    /// Whether the timer thread started (once per process).
    static STARTED: OnceLock<bool> = OnceLock::new();

    fn waiting() -> MutexGuard<'static, Waiting> {
        WAITING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sleeps are registered (for tests).
    #[cfg(test)]
    pub(super) fn waiting_now() -> usize {
        waiting().by_deadline.len()
    }

    /// Waits until `deadline`, to within the OS's sleep precision; with tokio's timer if the
    /// timer thread could not be started.
    pub(super) async fn sleep_until(deadline: Instant) {
        if Instant::now() >= deadline {
            return;
        }
        let started = *STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("relay-timer".into())
                .spawn(run)
                .map_err(|e| tracing::warn!("relay: no timer thread ({e}); using tokio's timer"))
                .is_ok()
        });
        if started {
            Sleep {
                deadline,
                key: None,
            }
            .await;
        } else {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// The timer thread: wakes the tasks that are due, then sleeps to the next deadline.
    fn run() {
        let mut due = Vec::new();
        let mut w = waiting();
        loop {
            let now = Instant::now();
            while let Some(first) = w.by_deadline.first_entry() {
                if first.key().0 > now {
                    break;
                }
                due.push(first.remove());
            }
            if !due.is_empty() {
                drop(w);
                due.drain(..).for_each(Waker::wake);
                w = waiting();
                continue;
            }
            w = match w.by_deadline.first_key_value().map(|(&(d, _), _)| d) {
                Some(next) => {
                    let wait = next.saturating_duration_since(now);
                    match EARLIER.wait_timeout(w, wait) {
                        Ok((w, _)) => w,
                        Err(poisoned) => poisoned.into_inner().0,
                    }
                }
                None => EARLIER.wait(w).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// A task's wait for a deadline, registered with the timer thread while pending.
    struct Sleep {
        deadline: Instant,
        key: Option<(Instant, u64)>,
    }

    impl Future for Sleep {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if Instant::now() >= self.deadline {
                return Poll::Ready(());
            }
            let mut w = waiting();
            if let Some(key) = self.key
                && let Some(waker) = w.by_deadline.get_mut(&key)
            {
                // Still registered: only the waker may have changed.
                waker.clone_from(cx.waker());
                return Poll::Pending;
            }
            let key = (self.deadline, w.next_id);
            w.next_id += 1;
            let earliest = w
                .by_deadline
                .first_key_value()
                .is_none_or(|(k, _)| key < *k);
            w.by_deadline.insert(key, cx.waker().clone());
            drop(w);
            self.key = Some(key);
            if earliest {
                EARLIER.notify_one();
            }
            Poll::Pending
        }
    }

    impl Drop for Sleep {
        fn drop(&mut self) {
            if let Some(key) = self.key {
                waiting().by_deadline.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_keys_parse() {
        for (text, want) in [
            ("lan", LinkModel::LAN),
            ("WAN", LinkModel::WAN),
            ("loopback", LinkModel::LOOPBACK),
            ("none", LinkModel::LOOPBACK),
            (
                "rtt=40ms,rate=200mbit",
                LinkModel {
                    rtt: Duration::from_millis(40),
                    rate_bits_per_s: 200_000_000,
                },
            ),
            (
                "rate=1.5Gbit,rtt=250us",
                LinkModel {
                    rtt: Duration::from_micros(250),
                    rate_bits_per_s: 1_500_000_000,
                },
            ),
            (
                "rtt=2s",
                LinkModel {
                    rtt: Duration::from_secs(2),
                    rate_bits_per_s: 0,
                },
            ),
            (
                "rate=64kbit",
                LinkModel {
                    rtt: Duration::ZERO,
                    rate_bits_per_s: 64_000,
                },
            ),
            (
                "rate=300bit,rtt=.5ms",
                LinkModel {
                    rtt: Duration::from_micros(500),
                    rate_bits_per_s: 300,
                },
            ),
            ("rtt=0ms", LinkModel::LOOPBACK),
        ] {
            let got: LinkModel = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        for (text, printed) in [
            ("lan", "lan"),
            ("rtt=1ms,rate=1gbit", "lan"),
            ("rtt=40000us,rate=200000kbit", "wan"),
            ("none", "loopback"),
            ("rate=200mbit,rtt=10ms", "rtt=10ms,rate=200mbit"),
            ("rtt=1500us", "rtt=1.5ms"),
            ("rtt=0.25us", "rtt=0.25us"),
            ("rtt=60s,rate=1.25gbit", "rtt=60s,rate=1.25gbit"),
            ("rate=999bit", "rate=999bit"),
            ("rate=1000bit", "rate=1kbit"),
        ] {
            let model: LinkModel = text.parse().unwrap();
            assert_eq!(model.to_string(), printed, "{text}");
            assert_eq!(printed.parse::<LinkModel>().unwrap(), model, "{printed}");
        }
        // Any model prints as text that parses back to it.
        let odd = LinkModel {
            rtt: Duration::from_nanos(1_234_567),
            rate_bits_per_s: 123_456_789,
        };
        assert_eq!(odd.to_string(), "rtt=1.234567ms,rate=123.456789mbit");
        assert_eq!(odd.to_string().parse::<LinkModel>().unwrap(), odd);
    }

    #[test]
    fn bad_link_models_are_named() {
        for (text, want) in [
            ("rtt=40ms,rate=fast", "rate=fast: not a rate like 200mbit"),
            ("rate=200", "rate=200: not a rate like 200mbit"),
            ("rate=200mb", "rate=200mb: not a rate like 200mbit"),
            ("rate=0mbit", "rate=0mbit: a rate must be above 0"),
            ("rtt=40", "rtt=40: not a duration like 40ms"),
            ("rtt=ms", "rtt=ms: not a duration"),
            ("rtt=1.2.3ms", "rtt=1.2.3ms: not a duration"),
            ("rtt=-1ms", "rtt=-1ms: not a duration"),
            ("rtt=0.1ns", "rtt=0.1ns: not a duration"),
            ("rtt=0.0000001ms", "rtt=0.0000001ms: not a duration"),
            ("rtt=99999999999999999999s", "not a duration"),
            ("rtt=61s", "rtt=61s: a round trip of at most 60s"),
            ("rtt=1ms,rtt=2ms", "rtt=2ms: rtt given twice"),
            ("rate=1mbit,rate=1mbit", "rate given twice"),
            ("delay=3ms", "delay=3ms: unknown key \"delay\""),
            ("rtt=1ms,", "an empty part"),
            ("", "an empty link model"),
            ("satellite", "\"satellite\": not a link model (lan, wan"),
            ("lan,rtt=2ms", "\"lan\": not a link model"),
            (" rtt=1ms", "unknown key \" rtt\""),
        ] {
            let e = text.parse::<LinkModel>().unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{text}: {e:?}");
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn link_models_serialize_for_reports() {
        let json = serde_json::to_value(LinkModel::WAN).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"link": "wan", "rtt_ms": 40.0, "rate_mbit_s": 200.0})
        );
        let json = serde_json::to_value("rtt=0.5ms".parse::<LinkModel>().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"link": "rtt=500us", "rtt_ms": 0.5, "rate_mbit_s": null})
        );
    }

    #[test]
    fn transmit_times_and_buffers_follow_the_model() {
        assert_eq!(LinkModel::LOOPBACK.transmit_time(1 << 20), Duration::ZERO);
        // 16 KiB at 1 Gbit/s: 131.072 µs.
        assert_eq!(
            LinkModel::LAN.transmit_time(SEGMENT),
            Duration::from_nanos(131_072)
        );
        assert!(LinkModel::LOOPBACK.is_loopback() && !LinkModel::LAN.is_loopback());
        // LAN: 62.5 kB one way, 4 segments; WAN: 500 kB, 31 segments.
        assert_eq!(Relay::segments_per_direction(LinkModel::LAN), 72);
        assert_eq!(Relay::segments_per_direction(LinkModel::WAN), 126);
        assert_eq!(Relay::segments_per_direction(LinkModel::LOOPBACK), 64);
        let unlimited: LinkModel = "rtt=10ms".parse().unwrap();
        assert_eq!(Relay::segments_per_direction(unlimited), 1024);
        let fat: LinkModel = "rtt=60s,rate=100gbit".parse().unwrap();
        assert_eq!(Relay::segments_per_direction(fat), 1024);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_relay_timer_wakes_each_sleeper_at_its_deadline() {
        // Sleepers with deadlines in every order, some dropped while waiting: each that is
        // awaited wakes, never early. (How close to the deadline is checked, one test at a
        // time, by the round trips in tests/relay.rs.)
        let start = Instant::now();
        let mut sleepers = JoinSet::new();
        for i in 0..40u64 {
            let deadline = start + Duration::from_micros(200 + (i * 7919) % 3000);
            let sleep = timer::sleep_until(deadline);
            if i % 5 == 0 {
                // Registered, then cancelled: must not linger or wake anything.
                sleepers.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_micros(100), sleep).await;
                    None
                });
            } else {
                sleepers.spawn(async move {
                    sleep.await;
                    Some(Instant::now().checked_duration_since(deadline))
                });
            }
        }
        let mut woken = 0;
        while let Some(ended) = sleepers.join_next().await {
            if let Some(late) = ended.unwrap() {
                assert!(late.is_some(), "a sleeper woke before its deadline");
                woken += 1;
            }
        }
        assert_eq!(woken, 32);
        timer::sleep_until(Instant::now() + Duration::from_micros(100)).await;
        assert_eq!(
            timer::waiting_now(),
            0,
            "cancelled sleeps are still registered"
        );
    }
}
