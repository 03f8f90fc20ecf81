//! Files that hold secrets: static keys, the dealer's secret, model files (plaintext weights or
//! weight shares) and the servers' key spill files.
//!
//! They are created readable by their owner only (mode 0600) by the `open` call itself, so no
//! moment exists in which another user could open them, and they are refused on load when
//! group or others may access them (as ssh refuses such private keys): a secret others could
//! read may already be leaked, and running on it would hide that.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Creates `path`, which must not exist, for reading and writing with mode 0600.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes `bytes` to `path`, replacing any file there (see [`Replacement`]).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = Replacement::create(path)?;
    file.write_all(bytes)?;
    file.finish()
}

/// A secret file being written in pieces: into a new 0600 file beside `path`, renamed over
/// `path` by [`Replacement::finish`] once complete. A replaced file's looser mode is never
/// inherited, a reader that opened the old file never sees the new secret, and a crash or an
/// error leaves the old file (an unfinished replacement is removed when dropped).
pub struct Replacement {
    temp: PathBuf,
    path: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl Replacement {
    /// Starts replacing `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let temp = temp_beside(path)?;
        let file = create_new(&temp)?;
        Ok(Replacement {
            temp,
            path: path.to_path_buf(),
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes and syncs what was written and renames it over the path.
    pub fn finish(mut self) -> io::Result<()> {
        let Some(file) = self.file.take() else {
            return Err(io::Error::other("the replacement was already finished"));
        };
        let done = file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&self.temp, &self.path));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.temp);
        }
        done
    }
}

impl Write for Replacement {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the replacement was already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Opens `path` for reading, refusing it (`PermissionDenied`, naming the file and its mode)
/// when group or others have any access. The mode is read from the opened file, so it is the
/// file that is read.
pub fn open(path: &Path) -> io::Result<File> {
    let file = File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} holds a secret but has mode {mode:04o}, which lets group or others \
                     access it; refusing it (run `chmod 600` on it if it was not exposed)",
                    path.display()
                ),
            ));
        }
    }
    Ok(file)
}

/// Reads the whole of a secret file after [`open`]'s check.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A fresh name in `path`'s directory for the file that will replace it.
fn temp_beside(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(io::Error::other)?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.tmp", hex::encode(suffix)));
    Ok(path.with_file_name(temp))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("securerouter-secret-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secret_files_are_created_0600() {
        let dir = temp_dir("create");
        let spill = dir.join("spill");
        let file = create_new(&spill).unwrap();
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(
            create_new(&spill).is_err(),
            "create_new must not reuse a file"
        );
        let path = dir.join("secret");
        write(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap(), b"one");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replacing_a_readable_file_makes_it_private() {
        let dir = temp_dir("replace");
        let path = dir.join("secret");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap(), b"new");
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unfinished_replacement_leaves_the_old_file_alone() {
        let dir = temp_dir("unfinished");
        let path = dir.join("secret");
        write(&path, b"old").unwrap();
        let mut pending = Replacement::create(&path).unwrap();
        pending.write_all(b"half of the new").unwrap();
        drop(pending);
        assert_eq!(read(&path).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "the temp file is left"
        );
        let mut whole = Replacement::create(&path).unwrap();
        whole.write_all(b"new, in ").unwrap();
        whole.write_all(b"pieces").unwrap();
        whole.finish().unwrap();
        assert_eq!(read(&path).unwrap(), b"new, in pieces");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_secret_others_can_access_is_refused_with_its_name_and_mode() {
        let dir = temp_dir("refuse");
        let path = dir.join("secret");
        write(&path, b"x").unwrap();
        for loose in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            let e = read(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{loose:04o}")), "{text}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read(&path).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
