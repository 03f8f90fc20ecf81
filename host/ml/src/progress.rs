//! Progress of long work. On a terminal it is an indicatif bar; without one (CI, `nohup`, a
//! pipe) indicatif draws nothing, so the same progress goes to the log instead, a line at most
//! every [`LOG_EVERY`] and one at the end: an hour-long benchmark still shows it is alive and
//! how far it got.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two progress lines in the log.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// A counted piece of long work (`len` steps) with a message.
pub struct Progress {
    bar: indicatif::ProgressBar,
    /// When stderr is no terminal: the start and the time of the last log line.
    log: Option<Mutex<(Instant, Instant)>>,
}

impl Progress {
    /// A bar of `len` steps showing `msg`.
    pub fn new(len: usize, msg: impl Into<String>) -> Self {
        Self::logging(len, msg, !std::io::stderr().is_terminal())
    }

    /// A bar that also logs its progress when `log` is set.
    fn logging(len: usize, msg: impl Into<String>, log: bool) -> Self {
        let bar = indicatif::ProgressBar::new(len as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:40} {bar:30} {pos}/{len} [{elapsed}<{eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(msg.into());
        let log = log.then(|| {
            let now = Instant::now();
            Mutex::new((now, now))
        });
        Progress { bar, log }
    }

    /// Replaces the message (for example with running figures).
    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.log_if_due(false);
    }

    /// Removes the bar (and logs the final count when there is no terminal).
    pub fn finish_and_clear(&self) {
        self.log_if_due(true);
        self.bar.finish_and_clear();
    }

    fn log_if_due(&self, last: bool) {
        let Some(log) = &self.log else { return };
        let Ok(mut times) = log.lock() else { return };
        let (start, ref mut logged) = *times;
        let now = Instant::now();
        if !last && now.duration_since(*logged) < LOG_EVERY {
            return;
        }
        *logged = now;
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let elapsed = now.duration_since(start).as_secs_f64();
        let left = if pos > 0 && pos < len {
            format!(
                ", about {:.0} s left",
                elapsed * (len - pos) as f64 / pos as f64
            )
        } else {
            String::new()
        };
        tracing::info!(
            "{}: {pos}/{len} after {elapsed:.0} s{left}",
            self.bar.message()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A log sink the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_terminal_progress_goes_to_the_log() {
        let sink = Captured::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let p = Progress::logging(3, "queries", true);
            p.inc(1);
            p.set_message("queries (1 right)");
            p.inc(1);
            // Within LOG_EVERY of the start nothing is logged until the end.
            assert!(sink.0.lock().unwrap().is_empty());
            p.finish_and_clear();
            let quiet = Progress::logging(3, "on a terminal", false);
            quiet.inc(3);
            quiet.finish_and_clear();
        });
        let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("queries (1 right): 2/3 after 0 s"), "{log}");
        assert_eq!(log.lines().count(), 1, "{log}");
    }
}
