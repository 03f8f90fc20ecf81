//! Static X25519 keys: a party's [`Identity`] (the Noise static keypair) and the
//! [`PublicKey`] other parties pin or allow.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::NetError;

/// A party's static X25519 public key: what initiators pin and responders allow.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses 64 hex characters (surrounding whitespace ignored), as printed by `Display`.
    pub fn from_hex(text: &str) -> Result<Self, NetError> {
        let bytes = decode_key_hex(text).map_err(NetError::InvalidKey)?;
        Ok(Self(bytes))
    }

    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl FromStr for PublicKey {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        Self::from_hex(s)
    }
}

/// A party's static X25519 keypair, its long-term identity on every link.
///
/// `Debug` prints only the public key; the secret is overwritten when the value is dropped
/// (best effort: copies made by moves are not tracked).
pub struct Identity {
    secret: [u8; 32],
    public: PublicKey,
}

impl Identity {
    /// A fresh random identity from the operating system's RNG.
    ///
    /// # Panics
    /// If the operating system's random number generator fails (it does not on supported
    /// platforms).
    pub fn generate() -> Self {
        let mut rng = DefaultResolver
            .resolve_rng()
            .expect("snow's default resolver provides an OS RNG");
        let mut secret = [0u8; 32];
        rng.try_fill_bytes(&mut secret)
            .expect("the operating system's random number generator failed");
        Self::from_secret(secret)
    }

    /// The identity with this X25519 secret key (clamping happens inside X25519).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = derive_public(&secret);
        Self { secret, public }
    }

    /// The public half, to give to peers.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret key bytes: for the Noise handshake, and for handing a client's identity to
    /// a device (`securerouter_device::StaticKey::from_secret`).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Writes the secret key as 64 hex characters and a newline, in a file readable by the
    /// owner only from its creation (mode 0600; an existing file is replaced).
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        let mut text = hex::encode(self.secret);
        text.push('\n');
        crate::secret_file::write(path, text.as_bytes()).map_err(|e| NetError::KeyFile {
            path: path.to_path_buf(),
            problem: format!("cannot write: {e}"),
        })
    }

    /// Reads a key file written by [`save`](Self::save): 64 hex characters, surrounding
    /// whitespace ignored. A file that group or others may access is refused (unix).
    pub fn load(path: &Path) -> Result<Self, NetError> {
        let err = |problem: String| NetError::KeyFile {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = crate::secret_file::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err("no such file".into()),
            std::io::ErrorKind::PermissionDenied => err(e.to_string()),
            _ => err(format!("cannot read: {e}")),
        })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| err("not text (expected 64 hex characters)".into()))?;
        let secret = decode_key_hex(text).map_err(err)?;
        Ok(Self::from_secret(secret))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.secret = [0; 32];
        std::hint::black_box(&self.secret);
    }
}

/// The X25519 public key of `secret`, through snow's own implementation.
fn derive_public(secret: &[u8; 32]) -> PublicKey {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow's default resolver provides X25519");
    dh.set(secret);
    let mut public = [0u8; 32];
    public.copy_from_slice(dh.pubkey());
    PublicKey(public)
}

/// Decodes a 32-byte key from 64 hex characters, with a message that does not echo the text
/// (it may be a secret).
fn decode_key_hex(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars != 64 {
        return Err(format!(
            "expected 64 hex characters (a 32-byte X25519 key), found {chars}"
        ));
    }
    if let Some(pos) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "not hexadecimal: the character at position {pos} is not 0-9/a-f"
        ));
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|e| format!("not hexadecimal: {e}"))?;
    Ok(key)
}
