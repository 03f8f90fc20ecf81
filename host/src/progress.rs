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
        let bar = indicatif::ProgressBar::new(len as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:40} {bar:30} {pos}/{len} [{elapsed}<{eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(msg.into());
        let log = (!std::io::stderr().is_terminal()).then(|| {
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
