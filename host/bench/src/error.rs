//! The crate's error type: one variant per kind of failure. Errors of the services
//! ([`securerouter_runtime::Error`]), the plaintext models, the circuits and training pass
//! through unchanged; the others name the problem, with any underlying error as their source
//! (print the chain, as the binary does with anyhow's `{:#}`, to see it).

use std::path::PathBuf;

/// What went wrong in preparing, running or reporting a benchmark.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The deployment, the local cluster or a session under MPC failed (boxed: the services'
    /// errors are large, and every bench result carries this type).
    #[error(transparent)]
    Runtime(Box<securerouter_runtime::Error>),
    /// Loading or running a plaintext model, data set or asset failed.
    #[error(transparent)]
    Model(#[from] securerouter_ml::Error),
    /// A model's shapes or a query's outputs are refused by the circuits.
    #[error(transparent)]
    Circuit(#[from] securerouter_circuits::Error),
    /// Retraining the router failed.
    #[cfg(feature = "train")]
    #[error(transparent)]
    Train(#[from] securerouter_train::Error),
    /// A file or directory could not be read or created: `action` says which.
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
    /// The report could not be written to the output the caller gave.
    #[error("writing the report to the output")]
    Output(#[source] std::io::Error),
    /// A report line could not be written as JSON.
    #[error("encoding the report as JSON")]
    Json(#[source] serde_json::Error),
    /// The async runtime that runs the client could not be started.
    #[error("starting the async runtime")]
    AsyncRuntime(#[source] std::io::Error),
    /// The plot could not be drawn or written.
    #[error("drawing {}", path.display())]
    Plot {
        /// The plot's file.
        path: PathBuf,
        /// The plotting library's error, as text.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A value refused: an option given by the caller, or outputs the servers returned. The
    /// message names the value and why.
    #[error("{0}")]
    Invalid(String),
}

impl From<securerouter_runtime::Error> for Error {
    fn from(e: securerouter_runtime::Error) -> Self {
        Error::Runtime(Box::new(e))
    }
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] of `action` on `path`, for `map_err` (the path is copied only on
    /// error).
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Returns early with [`Error::Invalid`] of a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
