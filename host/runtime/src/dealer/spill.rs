//! Spill files: a prefetched key stream on disk, private from creation and unlinked.

use securerouter_core::Error;

/// One stream of a prefetched session, in an unlinked temporary file (so memory stays bounded
/// however large the keys are, and nothing is left on disk). Read unbuffered: gates read whole
/// key chunks (hundreds of KB), and a buffer would copy each of them twice.
pub(super) struct Spill {
    pub(super) file: std::fs::File,
    pub(super) remaining: u64,
}

impl Spill {
    pub(super) fn create() -> std::io::Result<std::fs::File> {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(std::io::Error::other)?;
        let path = std::env::temp_dir().join(format!("securerouter-keys-{}", hex::encode(name)));
        // 0600 from creation: the keys never sit readable by others, even before the unlink.
        let file = crate::secret_file::create_new(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }

    pub(super) fn take(&mut self, out: &mut [u8]) -> Result<(), Error> {
        use std::io::Read;
        if (out.len() as u64) > self.remaining {
            return Err(Error::ChannelClosed("the dealer's stream ended early"));
        }
        self.file
            .read_exact(out)
            .map_err(|_| Error::ChannelClosed("reading prefetched keys failed"))?;
        self.remaining -= out.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn key_spill_files_are_private_from_creation() {
        use std::os::unix::fs::PermissionsExt;
        let file = Spill::create().unwrap();
        let mode = file.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
