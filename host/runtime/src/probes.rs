//! The operators' endpoint of a service (`--metrics ADDR`): plain HTTP/1.1 `GET` on a listener
//! of its own, meant for a private interface. `/metrics` gives the service's counters in
//! Prometheus' text format, `/healthz` answers 200 while the process serves (liveness) and
//! `/readyz` 200 while it takes new sessions, 503 once it drains (readiness, for a load
//! balancer). Anything else is 404 (405 for another method); a request must arrive whole
//! within [`REQUEST_TIMEOUT`] and [`MAX_REQUEST`] bytes, and at most [`MAX_CONNECTIONS`] are
//! served at once, so the endpoint cannot be used to tie up the service.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info};

/// Longest request head read.
pub const MAX_REQUEST: usize = 8192;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Probe connections served at once; more are closed.
pub const MAX_CONNECTIONS: usize = 32;

/// What a service shows on its probes.
pub trait Probed: Send + Sync + 'static {
    /// The metrics, in Prometheus' text format.
    fn metrics_text(&self) -> String;
    /// Whether it takes new sessions (false once it drains).
    fn ready(&self) -> bool;
}

/// Serves the probes of `service` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, service: Arc<dyn Probed>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics and health probes listening");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = answer(stream, service.as_ref()).await {
                debug!(%addr, "probe request: {e}");
            }
        });
    }
}

/// Reads one request and answers it.
async fn answer(mut stream: TcpStream, service: &dyn Probed) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request too slow"))??;
    let (status, body) = respond(&head, service);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head, up to the blank line (or [`MAX_REQUEST`] bytes, or the end).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The status line and body for a request head.
fn respond(head: &[u8], service: &dyn Probed) -> (&'static str, String) {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return ("400 Bad Request", "not an HTTP/1.x request line\n".into());
    }
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET\n".into());
    }
    match path {
        "/metrics" => ("200 OK", service.metrics_text()),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" if service.ready() => ("200 OK", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "draining\n".into()),
        _ => ("404 Not Found", "/metrics, /healthz or /readyz\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fake(AtomicBool);

    impl Probed for Fake {
        fn metrics_text(&self) -> String {
            "securerouter_x{role=\"p0\"} 1\n".into()
        }
        fn ready(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn probes_answer_metrics_health_and_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Fake(AtomicBool::new(true)));
        tokio::spawn(serve(listener, fake.clone()));
        let metrics = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(
            metrics.ends_with("securerouter_x{role=\"p0\"} 1\n"),
            "{metrics}"
        );
        assert!(
            get(addr, b"GET /healthz HTTP/1.0\r\n\r\n")
                .await
                .contains("200 OK")
        );
        assert!(
            get(addr, b"GET /readyz HTTP/1.1\r\n\r\n")
                .await
                .contains("200 OK")
        );
        fake.0.store(false, Ordering::Relaxed);
        let draining = get(addr, b"GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
        assert!(
            get(addr, b"GET /nope HTTP/1.1\r\n\r\n")
                .await
                .contains("404")
        );
        assert!(
            get(addr, b"POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .contains("405")
        );
        assert!(get(addr, b"garbage\r\n\r\n").await.contains("400"));
        // A client that sends nothing and closes gets nothing, and the endpoint goes on.
        drop(TcpStream::connect(addr).await.unwrap());
        assert!(
            get(addr, b"GET /healthz HTTP/1.1\r\n\r\n")
                .await
                .contains("200 OK")
        );
    }
}
