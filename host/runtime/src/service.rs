//! What every listening service (the dealer, P0, P1) shares against untrusted networks and
//! clients: an accept loop that no accept error ends, a cap on open connections, a deadline
//! for the unauthenticated part of a connection, and caps on the work in flight.
//!
//! A connection costs a task and a socket until its handshake and first message are in; past
//! [`ServiceLimits::handshake_timeout`] it is closed, so idle or half-open connections hold a
//! slot only briefly, and past [`ServiceLimits::max_connections`] new ones are closed at once.

use crate::error::{Error, Result, invalid};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

/// Caps and deadlines of a service. The defaults suit a 2-core host serving a few dozen
/// concurrent sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Connections open at once, handshakes included; more are closed on arrival.
    pub max_connections: usize,
    /// Sessions in flight at a server, or key generations in flight at the dealer.
    pub max_sessions: usize,
    /// Sessions in flight per client key at a server.
    pub max_sessions_per_client: usize,
    /// From accepting a connection to its first message (handshake included).
    pub handshake_timeout: Duration,
    /// A whole session at a server (pairing, keys, online phase, reply).
    pub session_timeout: Duration,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_connections: 4096,
            max_sessions: 64,
            max_sessions_per_client: 32,
            handshake_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(600),
        }
    }
}

impl ServiceLimits {
    /// Checks the settings (from the command line) for values that would stop the service.
    ///
    /// # Errors
    /// A zero cap or deadline, named.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("--max-connections", self.max_connections),
            ("--max-sessions", self.max_sessions),
            ("--max-sessions-per-client", self.max_sessions_per_client),
        ] {
            if v == 0 {
                invalid!("{name} must be at least 1");
            }
        }
        if self.handshake_timeout.is_zero() || self.session_timeout.is_zero() {
            invalid!("deadlines must be at least one second");
        }
        Ok(())
    }
}

/// Raises this process's open-file limit to its hard limit: each connection is a descriptor,
/// and the usual soft limit (1024) is below [`ServiceLimits::max_connections`]. Logs what it got.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => debug!(open_files = n, "open-file limit"),
        Err(e) => warn!("could not raise the open-file limit: {e}"),
    }
}

/// Accepts connections on `listener` forever, handing each to `handle` on its own task with a
/// connection slot. An accept error (out of descriptors, a connection reset before it was
/// accepted) is logged and the loop goes on after a short pause; a connection beyond the cap
/// is closed at once.
pub async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    max_connections: usize,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections));
    let turned_away = AtomicU64::new(0);
    let failed_accepts = AtomicU64::new(0);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, max_connections, "{name} listening");
    }
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                let n = failed_accepts.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        failed_accepts = n,
                        "{name}: accepting a connection failed: {e}; going on"
                    );
                }
                // Out of descriptors stays so until some close: do not spin meanwhile.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(handle(stream, addr, permit));
            }
            Err(_) => {
                drop(stream);
                let n = turned_away.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(%addr, turned_away = n, "{name}: {max_connections} connections open; closing new ones");
                }
            }
        }
    }
}

/// A connection that did not finish its handshake and first message in time.
#[derive(Debug, thiserror::Error)]
#[error("{what} took longer than {limit:?}")]
pub struct HandshakeTimedOut {
    what: String,
    limit: Duration,
}

/// Runs `step` (a handshake and the first message) within `limit`.
///
/// # Errors
/// `step`'s error, or [`HandshakeTimedOut`].
pub async fn within<T>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, step)
        .await
        .map_err(|_| HandshakeTimedOut {
            what: what.to_string(),
            limit,
        })?
}

/// Whether a connection failed before anyone authenticated on it (a probe that sent nothing,
/// or an idle connection closed at the handshake deadline): services log such failures at
/// debug level, since a flood of them is not worth a warning each.
pub fn is_unauthenticated_noise(e: &Error) -> bool {
    crate::net::is_probe(e) || matches!(e, Error::HandshakeTimedOut(_))
}

/// A service that drains before it exits: it stops taking new sessions, lets those in flight
/// finish, and says when nothing is left.
pub trait Drain: Send + Sync + 'static {
    /// Stops taking new sessions (for good).
    fn start_draining(&self);
    /// Whether nothing is in flight.
    fn is_idle(&self) -> bool;
    /// How long it must stay idle before it may exit: the dealer waits a little for the later
    /// stages of queries under way, which the servers ask for after their first.
    fn quiet(&self) -> Duration {
        Duration::ZERO
    }
}

/// How often a draining service looks whether it is idle.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Runs `serving` (the service's accept loop, on a task of its own) until `stop` resolves, then
/// drains `service` while the loop goes on (P0 still pairs with P1 for sessions in flight):
/// returns once the service has been idle for its quiet time.
///
/// # Errors
/// When sessions are still in flight `deadline` after `stop`.
pub async fn serve_then_drain<S: Drain + ?Sized>(
    service: &S,
    serving: impl Future<Output = ()> + Send + 'static,
    stop: impl Future<Output = ()>,
    deadline: Duration,
) -> Result<()> {
    let task = tokio::spawn(serving);
    stop.await;
    service.start_draining();
    let started = tokio::time::Instant::now();
    let mut idle_since: Option<tokio::time::Instant> = None;
    let drained = loop {
        let now = tokio::time::Instant::now();
        if service.is_idle() {
            let since = *idle_since.get_or_insert(now);
            if now - since >= service.quiet() {
                break true;
            }
        } else {
            idle_since = None;
        }
        if now - started >= deadline {
            break false;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    };
    task.abort();
    if !drained {
        invalid!(
            "sessions were still in flight {} s after the stop signal (--drain-timeout)",
            deadline.as_secs()
        );
    }
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "drained: nothing in flight; exiting"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// A service with `in_flight` sessions that never change unless the test says.
    #[derive(Default)]
    struct Fake {
        draining: AtomicBool,
        in_flight: AtomicUsize,
    }

    impl Drain for Fake {
        fn start_draining(&self) {
            self.draining.store(true, Ordering::SeqCst);
        }
        fn is_idle(&self) -> bool {
            self.in_flight.load(Ordering::SeqCst) == 0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn draining_waits_for_sessions_in_flight_and_gives_up_at_the_deadline() {
        let fake = Arc::new(Fake::default());
        fake.in_flight.store(1, Ordering::SeqCst);
        let later = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            later.in_flight.store(0, Ordering::SeqCst);
        });
        let started = tokio::time::Instant::now();
        serve_then_drain(
            fake.as_ref(),
            std::future::pending(),
            async {},
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(fake.draining.load(Ordering::SeqCst));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(4),
            "{took:?}"
        );

        let stuck = Fake::default();
        stuck.in_flight.store(2, Ordering::SeqCst);
        let e = serve_then_drain(
            &stuck,
            std::future::pending(),
            async {},
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("still in flight"), "{e}");
    }
}
