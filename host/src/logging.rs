//! Logging set-up: `tracing` events to stderr, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset, empty or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global `tracing` subscriber, writing to stderr (colours only on a terminal).
///
/// `RUST_LOG` is honoured when it parses; when it does not, the default filter is used and a
/// warning names the bad value. Calling this twice leaves the first subscriber in place.
pub fn init() {
    let (filter, bad) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some((spec, e))),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .is_ok();
    if installed && let Some((spec, e)) = bad {
        tracing::warn!("ignoring invalid RUST_LOG={spec:?} ({e}); using {DEFAULT_FILTER:?}");
    }
}
