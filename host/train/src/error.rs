//! The crate's error type: one variant per kind of failure. Errors of the plaintext models
//! ([`securerouter_ml::Error`]), of candle and of the caller's cost measurement pass through
//! unchanged; the others name the problem, with any underlying error as their source.

use std::path::PathBuf;

/// What went wrong in training a pool's experts or its router.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading, checking or storing a model, data set or pool file failed.
    #[error(transparent)]
    Model(#[from] securerouter_ml::Error),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A candle variable could not be created from a model's weights.
    #[error("creating a candle variable")]
    CandleVariable(#[source] candle_core::Error),
    /// The caller's measurement of an expert's MPC cost ([`crate::pool::CostMeter`]) failed.
    #[error(transparent)]
    Measure(MeasureError),
    /// A file or directory could not be read, written or created: `action` says which.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. "reading" or "creating".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Progress could not be written to the output the caller gave.
    #[error("writing progress to the output")]
    Output(#[source] std::io::Error),
    /// The stored signals are malformed or lack a tensor, or could not be written.
    #[error("{what}")]
    Safetensors {
        /// What failed, e.g. "signals.safetensors is not a safetensors file".
        what: String,
        /// The safetensors error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A value refused: an option, inconsistent training data, or a malformed stored signal.
    /// The message names the value and why.
    #[error("{0}")]
    Invalid(String),
}

/// The error a [`crate::pool::CostMeter`] returns (an `anyhow::Error` converts into it with
/// `Into::into`, keeping its chain).
pub type MeasureError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with [`Error::Invalid`] of a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
