//! The initiator's side of `Noise_IK_25519_ChaChaPoly_BLAKE2s`, the handshake every
//! SecureRouter link starts with, without an allocator.
//!
//! The host speaks it through `snow`; this is the same protocol written out for a device, from
//! the Noise specification (revision 34): the symmetric state (§5.2), the IK pattern (§7.5)
//! with the prologue `securerouter/3`, and ChaChaPoly as §12.3 defines it (a 96-bit nonce of 4
//! zero bytes and the little-endian counter). The host tests check it against `snow` byte for
//! byte.
//!
//! The AEAD is streamed ([`ChunkCipher`]): a transport chunk of up to 65,519 bytes is sealed
//! or authenticated piece by piece, so a device never holds a whole chunk in RAM; a received
//! chunk's ciphertext is decrypted only after its tag has checked ([`Verified`]).

use blake2::{Blake2s256, Digest};
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use curve25519_dalek::montgomery::MontgomeryPoint;
use poly1305::Poly1305;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use subtle::ConstantTimeEq;

/// The Noise protocol name of every SecureRouter link (`securerouter-wire`'s, which the host
/// speaks too).
pub use securerouter_wire::NOISE_PARAMS as PROTOCOL_NAME;
/// Bound into every handshake (`securerouter-wire`'s, which the host binds too).
pub use securerouter_wire::PROLOGUE;
/// Bytes of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes of an X25519 public key.
pub const KEY_LEN: usize = 32;
/// The initiator's first message: `e`, encrypted `s`, and the tag of the empty payload.
pub const MESSAGE1_LEN: usize = KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN;
/// The responder's answer: `e` and the tag of the empty payload.
pub const MESSAGE2_LEN: usize = KEY_LEN + TAG_LEN;

const HASH_LEN: usize = 32;
const BLOCK_LEN: usize = 64;

/// Why a handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HandshakeError {
    /// The responder's message did not authenticate: it does not hold the pinned key, speaks
    /// another protocol version, or the message was altered.
    Decrypt,
    /// A Diffie–Hellman result was all zeros (a low-order public key).
    WeakKey,
}

/// A static X25519 key pair: the identity a device authenticates with.
#[derive(Clone)]
pub struct StaticKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl StaticKey {
    /// The key pair of a 32-byte secret (clamped as X25519 requires).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        StaticKey {
            public: MontgomeryPoint::mul_base_clamped(secret).to_bytes(),
            secret,
        }
    }

    /// The public key, which the servers list as an allowed client.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

impl core::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "StaticKey(public ")?;
        self.public.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

fn dh(secret: &[u8; 32], public: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    let shared = MontgomeryPoint(*public).mul_clamped(*secret).to_bytes();
    if bool::from(shared.ct_eq(&[0u8; 32])) {
        return Err(HandshakeError::WeakKey);
    }
    Ok(shared)
}

fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-BLAKE2s (RFC 2104) with a 32-byte key, over the concatenation of `parts`.
fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut ipad = [0x36u8; BLOCK_LEN];
    let mut opad = [0x5cu8; BLOCK_LEN];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Blake2s256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let inner: [u8; HASH_LEN] = inner.finalize().into();
    hash(&[&opad, &inner])
}

/// Noise's HKDF with two outputs.
fn hkdf2(chaining_key: &[u8; HASH_LEN], ikm: &[u8]) -> ([u8; HASH_LEN], [u8; HASH_LEN]) {
    let temp = hmac(chaining_key, &[ikm]);
    let first = hmac(&temp, &[&[1]]);
    let second = hmac(&temp, &[&first, &[2]]);
    (first, second)
}

/// ChaChaPoly's 96-bit nonce for counter `n`.
fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[4..].copy_from_slice(&n.to_le_bytes());
    out
}

/// ChaCha20-Poly1305 (RFC 8439) over one message, fed in pieces of any size: the keystream
/// continues across pieces and Poly1305 absorbs the ciphertext 16 bytes at a time.
pub struct ChunkCipher {
    stream: ChaCha20,
    mac: Poly1305,
    partial: [u8; 16],
    filled: usize,
    ad_len: u64,
    ct_len: u64,
}

impl ChunkCipher {
    /// Starts a message under `key` and nonce counter `n`, with associated data `ad`.
    pub fn new(key: &[u8; 32], n: u64, ad: &[u8]) -> Self {
        Self::with_nonce(key, &nonce(n), ad)
    }

    /// Starts a message under `key` and the 96-bit `nonce` (RFC 8439's).
    fn with_nonce(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8]) -> Self {
        let mut stream = ChaCha20::new(key.into(), nonce.into());
        // Block 0 of the keystream keys Poly1305; the message starts at block 1.
        let mut block0 = [0u8; 64];
        stream.apply_keystream(&mut block0);
        let mut poly_key = [0u8; 32];
        poly_key.copy_from_slice(&block0[..32]);
        let mut mac = Poly1305::new(&poly_key.into());
        mac.update_padded(ad);
        ChunkCipher {
            stream,
            mac,
            partial: [0; 16],
            filled: 0,
            ad_len: ad.len() as u64,
            ct_len: 0,
        }
    }

    /// Encrypts the next piece of plaintext in place.
    pub fn seal(&mut self, piece: &mut [u8]) {
        self.stream.apply_keystream(piece);
        self.absorb(piece);
    }

    /// Takes the next piece of a received message's ciphertext into the tag. Nothing is
    /// decrypted before [`ChunkCipher::verify`] has checked the whole message.
    pub fn authenticate(&mut self, piece: &[u8]) {
        self.absorb(piece);
    }

    fn absorb(&mut self, mut ct: &[u8]) {
        self.ct_len += ct.len() as u64;
        if self.filled > 0 {
            let take = ct.len().min(16 - self.filled);
            self.partial[self.filled..self.filled + take].copy_from_slice(&ct[..take]);
            self.filled += take;
            ct = &ct[take..];
            if self.filled < 16 {
                return;
            }
            self.mac.update_padded(&self.partial);
            self.filled = 0;
        }
        let whole = ct.len() - ct.len() % 16;
        self.mac.update_padded(&ct[..whole]);
        let rest = &ct[whole..];
        self.partial[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The tag of everything sealed or authenticated.
    pub fn tag(self) -> [u8; TAG_LEN] {
        self.finish().0
    }

    /// The tag, and the keystream where the message stopped.
    fn finish(mut self) -> ([u8; TAG_LEN], ChaCha20) {
        let filled = self.filled;
        self.mac.update_padded(&self.partial[..filled]);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&self.ad_len.to_le_bytes());
        lengths[8..].copy_from_slice(&self.ct_len.to_le_bytes());
        self.mac.update_padded(&lengths);
        (self.mac.finalize().into(), self.stream)
    }

    /// Checks `tag` against everything authenticated (compared in constant time) and, only if
    /// it matches, gives the keystream that decrypts that ciphertext: a forged message's
    /// plaintext is never produced.
    pub fn verify(self, tag: &[u8; TAG_LEN]) -> Option<Verified> {
        let (expected, stream) = self.finish();
        bool::from(expected.ct_eq(tag)).then_some(Verified { stream })
    }
}

/// The keystream of a message whose tag has been verified: decrypts its ciphertext, in the
/// order it was authenticated (a prefix of it is enough).
pub struct Verified {
    stream: ChaCha20,
}

impl Verified {
    /// Decrypts the next piece of the verified ciphertext in place.
    pub fn decrypt(&mut self, piece: &mut [u8]) {
        self.stream.apply_keystream(piece);
    }
}

/// One direction of an established link: its key and the next nonce.
pub struct CipherState {
    key: [u8; 32],
    n: u64,
}

impl CipherState {
    /// A cipher for the next transport message, which takes this direction's next nonce.
    /// `None` once the 2^64 − 1 nonces are used up (Noise forbids reuse).
    pub fn next_message(&mut self) -> Option<ChunkCipher> {
        if self.n == u64::MAX {
            return None;
        }
        let c = ChunkCipher::new(&self.key, self.n, &[]);
        self.n += 1;
        Some(c)
    }
}

/// Noise's symmetric state (chaining key, handshake hash and the current key).
struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    k: Option<[u8; 32]>,
    n: u64,
}

impl SymmetricState {
    fn new() -> Self {
        // The name is longer than HASHLEN, so h = HASH(name).
        let h = hash(&[PROTOCOL_NAME.as_bytes()]);
        SymmetricState {
            ck: h,
            h,
            k: None,
            n: 0,
        }
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash(&[&self.h, data]);
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    /// Encrypts `buf[..len - TAG_LEN]` in place and writes the tag after it; hashes the result.
    fn encrypt_and_hash(&mut self, buf: &mut [u8]) {
        if let Some(k) = &self.k {
            let (pt, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
            let mut c = ChunkCipher::new(k, self.n, &self.h);
            c.seal(pt);
            tag.copy_from_slice(&c.tag());
            self.n += 1;
        }
        self.mix_hash(buf);
    }

    /// Checks and decrypts `buf` (ciphertext then tag) in place; hashes the ciphertext.
    fn decrypt_and_hash(&mut self, buf: &mut [u8]) -> Result<(), HandshakeError> {
        let h_next = hash(&[&self.h, buf]);
        if let Some(k) = &self.k {
            let (ct, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
            let mut c = ChunkCipher::new(k, self.n, &self.h);
            c.authenticate(ct);
            let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| HandshakeError::Decrypt)?;
            c.verify(tag).ok_or(HandshakeError::Decrypt)?.decrypt(ct);
            self.n += 1;
        }
        self.h = h_next;
        Ok(())
    }

    fn split(&self) -> (CipherState, CipherState) {
        let (k1, k2) = hkdf2(&self.ck, &[]);
        (CipherState { key: k1, n: 0 }, CipherState { key: k2, n: 0 })
    }
}

/// An IK handshake in progress on the initiator's side: message 1 is written, message 2 is
/// awaited.
pub struct Initiator {
    sym: SymmetricState,
    s: [u8; 32],
    e: [u8; 32],
}

/// The two directions of an established link, initiator's view.
pub struct Transport {
    /// Initiator to responder.
    pub send: CipherState,
    /// Responder to initiator.
    pub recv: CipherState,
}

impl Initiator {
    /// Starts a handshake as `me` towards the responder whose static key is `responder`
    /// (pinned), with the fresh ephemeral secret `ephemeral`. Returns the state and message 1.
    pub fn start(
        me: &StaticKey,
        responder: &[u8; 32],
        ephemeral: [u8; 32],
    ) -> Result<(Self, [u8; MESSAGE1_LEN]), HandshakeError> {
        let mut sym = SymmetricState::new();
        sym.mix_hash(PROLOGUE);
        // Pre-message `<- s`.
        sym.mix_hash(responder);
        let mut msg = [0u8; MESSAGE1_LEN];
        // -> e, es, s, ss, payload (empty)
        let e_pub = MontgomeryPoint::mul_base_clamped(ephemeral).to_bytes();
        msg[..KEY_LEN].copy_from_slice(&e_pub);
        sym.mix_hash(&e_pub);
        sym.mix_key(&dh(&ephemeral, responder)?);
        let s_field = &mut msg[KEY_LEN..2 * KEY_LEN + TAG_LEN];
        s_field[..KEY_LEN].copy_from_slice(&me.public);
        sym.encrypt_and_hash(s_field);
        sym.mix_key(&dh(&me.secret, responder)?);
        sym.encrypt_and_hash(&mut msg[2 * KEY_LEN + TAG_LEN..]);
        Ok((
            Initiator {
                sym,
                s: me.secret,
                e: ephemeral,
            },
            msg,
        ))
    }

    /// Reads message 2 (`<- e, ee, se`, empty payload) and gives the transport keys.
    pub fn finish(mut self, message2: &[u8; MESSAGE2_LEN]) -> Result<Transport, HandshakeError> {
        let mut msg = *message2;
        let mut re = [0u8; KEY_LEN];
        re.copy_from_slice(&msg[..KEY_LEN]);
        self.sym.mix_hash(&re);
        self.sym.mix_key(&dh(&self.e, &re)?);
        self.sym.mix_key(&dh(&self.s, &re)?);
        self.sym.decrypt_and_hash(&mut msg[KEY_LEN..])?;
        let (send, recv) = self.sym.split();
        Ok(Transport { send, recv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 §2.8.2's AEAD test vector, fed in uneven pieces.
    #[test]
    fn chunk_cipher_matches_rfc8439_in_any_pieces() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce_bytes = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let ad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let text = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let want_tag = [
            0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a, 0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60,
            0x06, 0x91,
        ];
        let want_ct_start = [0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb];
        // The RFC's nonce is not a Noise nonce.
        let build = || ChunkCipher::with_nonce(&key, &nonce_bytes, &ad);
        for split in [1usize, 5, 16, 17, 40] {
            let mut buf = *text;
            let mut c = build();
            for piece in buf.chunks_mut(split) {
                c.seal(piece);
            }
            assert_eq!(buf[..8], want_ct_start);
            assert_eq!(c.tag(), want_tag, "pieces of {split}");
            let mut c = build();
            for piece in buf.chunks(split + 3) {
                c.authenticate(piece);
            }
            let mut plain = c.verify(&want_tag).unwrap();
            for piece in buf.chunks_mut(split + 2) {
                plain.decrypt(piece);
            }
            assert_eq!(&buf, text);
        }
    }

    #[test]
    fn a_wrong_tag_gives_no_keystream() {
        let key = [5u8; 32];
        let mut buf = *b"attack at dawn";
        let mut c = ChunkCipher::new(&key, 0, b"ad");
        c.seal(&mut buf);
        let tag = c.tag();
        for (i, bit) in [(0usize, 1u8), (15, 0x80)] {
            let mut bad = tag;
            bad[i] ^= bit;
            let mut c = ChunkCipher::new(&key, 0, b"ad");
            c.authenticate(&buf);
            assert!(c.verify(&bad).is_none());
        }
        let mut c = ChunkCipher::new(&key, 0, b"ad");
        c.authenticate(&buf);
        c.verify(&tag).unwrap().decrypt(&mut buf);
        assert_eq!(&buf, b"attack at dawn");
    }

    #[test]
    fn hmac_blake2s_matches_a_known_value() {
        // HMAC-BLAKE2s-256 of "" under a 32-byte zero key, cross-checked with Python's
        // hmac.new(bytes(32), b"", hashlib.blake2s).hexdigest().
        let got = hmac(&[0; 32], &[b""]);
        let want = "eaf4bb25938f4d20e72656bbbc7a9bf63c0c18537333c35bdb67db1402661acd";
        let mut hex = [0u8; 64];
        for (i, b) in got.iter().enumerate() {
            let d = b"0123456789abcdef";
            hex[2 * i] = d[(b >> 4) as usize];
            hex[2 * i + 1] = d[(b & 15) as usize];
        }
        assert_eq!(core::str::from_utf8(&hex).unwrap(), want);
    }

    #[test]
    fn a_low_order_key_is_refused() {
        let me = StaticKey::from_secret([7; 32]);
        assert_eq!(
            Initiator::start(&me, &[0; 32], [9; 32]).err(),
            Some(HandshakeError::WeakKey)
        );
    }
}
