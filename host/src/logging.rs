//! Logging set-up: `tracing` events to stderr, as text or one JSON object per line
//! (`--log-format json`, for log collectors), filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset, empty or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per event: timestamp, level, target, fields (the message among them).
    Json,
}

/// Installs the global `tracing` subscriber, writing to stderr in `format`.
///
/// `RUST_LOG` is honoured when it parses; when it does not, the default filter is used and a
/// warning names the bad value. Calling this twice leaves the first subscriber in place.
pub fn init(format: LogFormat) {
    let (filter, bad) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some((spec, e))),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
            .is_ok(),
        LogFormat::Json => builder.json().try_init().is_ok(),
    };
    if installed && let Some((spec, e)) = bad {
        tracing::warn!("ignoring invalid RUST_LOG={spec:?} ({e}); using {DEFAULT_FILTER:?}");
    }
}
