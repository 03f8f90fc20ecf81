//! What a service counts for its operators, in Prometheus' text format (served by
//! [`crate::probes`]): sessions started, finished and failed by reason, online and offline
//! seconds as histograms, bytes and rounds at a server; key generations, pending ones and key
//! bytes at the dealer; whether the service drains. Counters only grow while the process lives.

use crate::error::Error;
use crate::messages::SessionStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the time histograms' buckets: from a tiny expert on loopback to a
/// base-size model on a slow link.
pub const SECONDS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// Why a session (or a key generation) failed, as the `reason` label says it.
pub fn failure_reason(e: &Error) -> &'static str {
    match e {
        Error::Refused(_) => "refused",
        Error::Deadline { .. } | Error::Timeout { .. } | Error::HandshakeTimedOut(_) => "timeout",
        Error::DealerRefused(_) => "dealer",
        Error::Tcp { .. } | Error::Net(_) | Error::Link { .. } => "link",
        Error::Protocol(_)
        | Error::ProtocolIn { .. }
        | Error::Circuit(_)
        | Error::Rows(_)
        | Error::Words(_)
        | Error::Postcard { .. }
        | Error::Invalid(_) => "protocol",
        _ => "internal",
    }
}

/// A histogram of seconds with [`SECONDS_BUCKETS`].
#[derive(Default)]
struct Histogram {
    /// Observations at most each bound (not cumulative; summed when rendered).
    counts: [AtomicU64; SECONDS_BUCKETS.len()],
    /// All observations, the `+Inf` bucket.
    count: AtomicU64,
    /// Their sum, in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        let s = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        if let Some(i) = SECONDS_BUCKETS.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((s * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, role: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, c) in SECONDS_BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{role=\"{role}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{role=\"{role}\",le=\"+Inf\"}} {count}\n\
             {name}_sum{{role=\"{role}\"}} {sum}\n{name}_count{{role=\"{role}\"}} {count}"
        );
    }
}

fn counter(out: &mut String, name: &str, help: &str, role: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{role=\"{role}\"}} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, role: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{role=\"{role}\"}} {value}"
    );
}

fn failures(
    out: &mut String,
    name: &str,
    help: &str,
    role: &str,
    by: &Mutex<BTreeMap<&'static str, u64>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    let by = by.lock().map(|m| m.clone()).unwrap_or_default();
    for reason in [
        "refused", "timeout", "dealer", "link", "protocol", "internal",
    ] {
        let n = by.get(reason).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{role=\"{role}\",reason=\"{reason}\"}} {n}");
    }
}

fn count_failure(by: &Mutex<BTreeMap<&'static str, u64>>, e: &Error) {
    if let Ok(mut m) = by.lock() {
        *m.entry(failure_reason(e)).or_insert(0) += 1;
    }
}

/// A server's sessions.
#[derive(Default)]
pub struct ServerMetrics {
    started: AtomicU64,
    finished: AtomicU64,
    failed: Mutex<BTreeMap<&'static str, u64>>,
    online_s: Histogram,
    offline_s: Histogram,
    online_bytes: AtomicU64,
    key_bytes: AtomicU64,
    rounds: AtomicU64,
}

impl ServerMetrics {
    /// A session was admitted.
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A session finished with `stats`.
    pub fn finished(&self, stats: &SessionStats) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.online_s.observe(stats.online_s);
        self.offline_s.observe(stats.offline_s);
        self.online_bytes
            .fetch_add(stats.online_bytes_sent, Ordering::Relaxed);
        self.key_bytes
            .fetch_add(stats.key_bytes_received, Ordering::Relaxed);
        self.rounds.fetch_add(stats.rounds, Ordering::Relaxed);
    }

    /// A session failed (or was refused) with `e`.
    pub fn failed(&self, e: &Error) {
        count_failure(&self.failed, e);
    }

    /// The metrics in Prometheus' text format, for server `role` (`p0`, `p1`).
    pub fn render(&self, role: &str, in_flight: u64, draining: bool) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "securerouter_sessions_started_total",
            "Client sessions admitted.",
            role,
            get(&self.started),
        );
        counter(
            &mut out,
            "securerouter_sessions_finished_total",
            "Client sessions answered.",
            role,
            get(&self.finished),
        );
        failures(
            &mut out,
            "securerouter_sessions_failed_total",
            "Client sessions that failed or were refused, by reason.",
            role,
            &self.failed,
        );
        gauge(
            &mut out,
            "securerouter_sessions_in_flight",
            "Client sessions admitted and not yet answered.",
            role,
            in_flight,
        );
        self.online_s.render(
            &mut out,
            "securerouter_online_seconds",
            "Online seconds of each answered session at this server.",
            role,
        );
        self.offline_s.render(
            &mut out,
            "securerouter_offline_seconds",
            "Seconds this server waited for each answered session's keys before its online phase.",
            role,
        );
        counter(
            &mut out,
            "securerouter_online_bytes_sent_total",
            "Bytes sent to the other server online.",
            role,
            get(&self.online_bytes),
        );
        counter(
            &mut out,
            "securerouter_key_bytes_received_total",
            "Key bytes received from the dealer.",
            role,
            get(&self.key_bytes),
        );
        counter(
            &mut out,
            "securerouter_rounds_total",
            "Rounds with the other server.",
            role,
            get(&self.rounds),
        );
        gauge(
            &mut out,
            "securerouter_draining",
            "1 while the service drains before it exits.",
            role,
            u64::from(draining),
        );
        out
    }
}

/// The dealer's key generations.
#[derive(Default)]
pub struct DealerMetrics {
    finished: AtomicU64,
    failed: Mutex<BTreeMap<&'static str, u64>>,
    key_bytes: AtomicU64,
}

impl DealerMetrics {
    /// A server's key stream was sent whole: `bytes` of it.
    pub fn streamed(&self, bytes: u64) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.key_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A server's request failed (or was refused) with `e`.
    pub fn failed(&self, e: &Error) {
        count_failure(&self.failed, e);
    }

    /// The metrics in Prometheus' text format: `generations` started so far, `pending` of
    /// them in flight, `waiting` requests for the other server's.
    pub fn render(&self, generations: u64, pending: u64, waiting: u64, draining: bool) -> String {
        let role = "dealer";
        let mut out = String::new();
        counter(
            &mut out,
            "securerouter_key_generations_total",
            "Key generations started (one per session stage both servers asked for).",
            role,
            generations,
        );
        gauge(
            &mut out,
            "securerouter_key_generations_pending",
            "Key generations in flight.",
            role,
            pending,
        );
        gauge(
            &mut out,
            "securerouter_key_requests_waiting",
            "Server requests waiting for the other server's.",
            role,
            waiting,
        );
        counter(
            &mut out,
            "securerouter_key_streams_finished_total",
            "Key streams sent whole to a server.",
            role,
            self.finished.load(Ordering::Relaxed),
        );
        failures(
            &mut out,
            "securerouter_key_requests_failed_total",
            "Server requests that failed or were refused, by reason.",
            role,
            &self.failed,
        );
        counter(
            &mut out,
            "securerouter_key_bytes_sent_total",
            "Key bytes streamed to the servers.",
            role,
            self.key_bytes.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "securerouter_draining",
            "1 while the service drains before it exits.",
            role,
            u64::from(draining),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `line` starts with.
    fn sample(text: &str, line: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no sample {line} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn server_counts_render_as_prometheus_text() {
        let m = ServerMetrics::default();
        for online_s in [0.02, 0.3, 400.0] {
            m.started();
            m.finished(&SessionStats {
                online_s,
                offline_s: 0.5,
                online_bytes_sent: 10,
                rounds: 3,
                key_bytes_received: 100,
                ..SessionStats::default()
            });
        }
        m.failed(&Error::Refused("busy".into()));
        m.failed(&Error::Invalid("bad".into()));
        let t = m.render("p0", 2, true);
        assert_eq!(
            sample(&t, "securerouter_sessions_started_total{role=\"p0\"}"),
            3.0
        );
        assert_eq!(
            sample(&t, "securerouter_sessions_finished_total{role=\"p0\"}"),
            3.0
        );
        let failed = "securerouter_sessions_failed_total{role=\"p0\",reason=";
        assert_eq!(sample(&t, &format!("{failed}\"refused\"}}")), 1.0);
        assert_eq!(sample(&t, &format!("{failed}\"protocol\"}}")), 1.0);
        assert_eq!(sample(&t, &format!("{failed}\"timeout\"}}")), 0.0);
        let bucket = "securerouter_online_seconds_bucket{role=\"p0\",le=";
        assert_eq!(sample(&t, &format!("{bucket}\"0.025\"}}")), 1.0);
        assert_eq!(sample(&t, &format!("{bucket}\"0.5\"}}")), 2.0);
        assert_eq!(sample(&t, &format!("{bucket}\"120\"}}")), 2.0);
        assert_eq!(sample(&t, &format!("{bucket}\"+Inf\"}}")), 3.0);
        assert!((sample(&t, "securerouter_online_seconds_sum{role=\"p0\"}") - 400.32).abs() < 1e-6);
        assert_eq!(
            sample(&t, "securerouter_online_bytes_sent_total{role=\"p0\"}"),
            30.0
        );
        assert_eq!(sample(&t, "securerouter_rounds_total{role=\"p0\"}"), 9.0);
        assert_eq!(
            sample(&t, "securerouter_sessions_in_flight{role=\"p0\"}"),
            2.0
        );
        assert_eq!(sample(&t, "securerouter_draining{role=\"p0\"}"), 1.0);
        // Every sample line is `name{labels} value`, after its HELP and TYPE.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn dealer_counts_render_as_prometheus_text() {
        let m = DealerMetrics::default();
        m.streamed(1000);
        m.streamed(24);
        m.failed(&Error::Timeout {
            what: "the other server".into(),
            after: std::time::Duration::from_secs(1),
        });
        let t = m.render(5, 1, 2, false);
        assert_eq!(
            sample(&t, "securerouter_key_generations_total{role=\"dealer\"}"),
            5.0
        );
        assert_eq!(
            sample(&t, "securerouter_key_generations_pending{role=\"dealer\"}"),
            1.0
        );
        assert_eq!(
            sample(&t, "securerouter_key_requests_waiting{role=\"dealer\"}"),
            2.0
        );
        assert_eq!(
            sample(&t, "securerouter_key_bytes_sent_total{role=\"dealer\"}"),
            1024.0
        );
        assert_eq!(
            sample(
                &t,
                "securerouter_key_requests_failed_total{role=\"dealer\",reason=\"timeout\"}"
            ),
            1.0
        );
        assert_eq!(sample(&t, "securerouter_draining{role=\"dealer\"}"), 0.0);
    }
}
