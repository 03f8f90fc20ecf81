//! What the commands that run a service or a client share: the async runtime, link settings,
//! listening, the caps against floods, the supervisor's pipe, and the operators' side: the
//! metrics and health probes, and draining on SIGTERM or SIGINT.

use anyhow::Context;
use clap::Args;
use securerouter_runtime::net::{LinkConfig, ServiceAddr};
use securerouter_runtime::probes::{self, Probed};
use securerouter_runtime::service::ServiceLimits;
use securerouter_runtime::service::{Drain, serve_then_drain};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A service's caps and deadlines against floods of connections and sessions
/// ([`ServiceLimits`]).
#[derive(Debug, Args, PartialEq, Eq, Clone)]
pub struct LimitArgs {
    /// Connections open at once, handshakes included; more are closed on arrival.
    #[arg(long, default_value_t = ServiceLimits::default().max_connections)]
    pub max_connections: usize,
    /// Sessions in flight (at the dealer: key generations in flight); more are refused.
    #[arg(long, default_value_t = ServiceLimits::default().max_sessions)]
    pub max_sessions: usize,
    /// Sessions in flight per client key (servers only).
    #[arg(long, default_value_t = ServiceLimits::default().max_sessions_per_client)]
    pub max_sessions_per_client: usize,
    /// Seconds from accepting a connection to its first message, handshake included.
    #[arg(long, default_value_t = ServiceLimits::default().handshake_timeout.as_secs())]
    pub handshake_timeout: u64,
    /// Seconds a whole session may take at a server.
    #[arg(long, default_value_t = ServiceLimits::default().session_timeout.as_secs())]
    pub session_timeout: u64,
}

impl LimitArgs {
    /// The limits these options say.
    pub fn limits(&self) -> ServiceLimits {
        ServiceLimits {
            max_connections: self.max_connections,
            max_sessions: self.max_sessions,
            max_sessions_per_client: self.max_sessions_per_client,
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            session_timeout: Duration::from_secs(self.session_timeout),
        }
    }
}

/// Runs a service; with `watch`, only until standard input reaches its end or fails (the
/// supervisor that holds the pipe has gone), then returns, ending the process.
pub async fn until_stdin_closes(
    watch: bool,
    service: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    if !watch {
        return service.await;
    }
    let closed = async {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        served = service => served,
        () = closed => {
            tracing::warn!("standard input closed (the supervising process ended): exiting");
            Ok(())
        }
    }
}

/// A multi-threaded async runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Link settings with `timeout_s` seconds of silence allowed.
pub fn link_config(timeout_s: u64) -> LinkConfig {
    LinkConfig {
        io_timeout: Duration::from_secs(timeout_s.max(1)),
        ..LinkConfig::default()
    }
}

/// Where a service listens: `--listen`, else the address the deployment advertises for it.
#[derive(Debug, Args, PartialEq, Eq, Clone)]
pub struct ListenArgs {
    /// The local address to listen on (e.g. 0.0.0.0:7101 in a container or behind NAT), when
    /// it is not the address the deployment advertises to the other roles.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

impl ListenArgs {
    /// Listens on `--listen`, else on `advertised` (a host name resolved first), saying which
    /// address failed.
    pub async fn bind(&self, advertised: &ServiceAddr) -> anyhow::Result<TcpListener> {
        let addr = match self.listen {
            Some(a) => a,
            None => advertised.resolve().await.with_context(|| {
                format!("resolving {advertised}, the address the deployment advertises")
            })?,
        };
        TcpListener::bind(addr).await.with_context(|| {
            format!(
                "listening on {addr}{}",
                if self.listen.is_some() {
                    String::new()
                } else {
                    format!(" ({advertised}; --listen names another local address)")
                }
            )
        })
    }
}

/// The operators' side of a service: probes, and how long it may drain.
#[derive(Debug, Args, PartialEq, Eq, Clone)]
pub struct OpsArgs {
    /// Serve /metrics (Prometheus text), /healthz and /readyz over plain HTTP on this address
    /// (a private interface: the counters are the operator's).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, refuse new sessions, let those in flight finish for at most this
    /// many seconds, then exit (0 once drained, 1 when sessions were still in flight).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub drain_timeout: u64,
}

/// Runs `service` with `serving` (its accept loop), its probes on `--metrics`, until SIGTERM or
/// SIGINT; then drains it.
pub async fn serve_until_stopped<S: Drain + Probed>(
    service: Arc<S>,
    serving: impl std::future::Future<Output = ()> + Send + 'static,
    ops: &OpsArgs,
) -> anyhow::Result<()> {
    if let Some(addr) = ops.metrics {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for probes on {addr} (--metrics)"))?;
        tokio::spawn(probes::serve(listener, service.clone()));
    }
    serve_then_drain(
        service.as_ref(),
        serving,
        stop_signal(),
        Duration::from_secs(ops.drain_timeout),
    )
    .await?;
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = |kind: SignalKind, name: &'static str| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
                tracing::info!("{name} received");
            }
            Err(e) => {
                tracing::warn!("cannot watch for {name}: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = wait(SignalKind::terminate(), "SIGTERM") => {}
        () = wait(SignalKind::interrupt(), "SIGINT") => {}
    }
}
