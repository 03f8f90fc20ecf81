//! Oblivious transfer (OT): small message-passing traits for 1-of-2, 1-of-N and correlated OT,
//! and a real base OT that implements them. Behind the `ot` feature: no gate uses it.
//!
//! Nothing here does I/O. Each party is a state machine; its methods take the peer's message
//! and fill the caller's buffers with the next one, which the caller moves over whatever
//! channel it has. All APIs work on slices and fixed-size arrays, so no allocator is needed.
//!
//! # Rounds
//!
//! Every OT flavour here has the same three moves:
//!
//! 1. sender → receiver: the sender's opening message (`first_message`);
//! 2. receiver → sender: one response per OT, computed from the choice bits (`respond`);
//! 3. sender → receiver: the ciphertexts (`encrypt` / `send`), which the receiver opens
//!    (`decrypt` / `receive`) with the secret per-OT state it kept from step 2.
//!
//! The receiver's per-OT state is stored by the caller (`&mut [State]`), again so that no
//! allocation is needed. A protocol whose first move is the receiver's (e.g. an IKNP or silent
//! OT extension) uses `()` as the opening message, so an extension can implement the same
//! traits later. Steps 2 and 3 may repeat any number of times after one step 1; both parties
//! must process the batches in the same order, since every OT gets the next index of a running
//! counter and the keys depend on it.
//!
//! # Base OT: Chou–Orlandi over Ristretto255
//!
//! "The Simplest Protocol for Oblivious Transfer" (Chou, Orlandi, Latincrypt 2015), batch form,
//! with G the Ristretto255 base point and H = SHA-256 with a domain label:
//!
//! - Sender draws a ≠ 0 and sends A = aG.
//! - Receiver, for OT i with choice c_i, draws b_i and sends B_i = b_i·G + c_i·A (the addition
//!   is selected in constant time); its key is k_i = H(i, A, B_i, b_i·A).
//! - Sender computes k_i^0 = H(i, A, B_i, a·B_i) and k_i^1 = H(i, A, B_i, a·(B_i − A)) and sends
//!   e_i^j = m_i^j ⊕ KDF(k_i^j), where KDF(k) is SHA-256(label, k, counter) blocks cut to the
//!   message length. The receiver outputs e_i^{c_i} ⊕ KDF(k_i), and k_i = k_i^{c_i}.
//!
//! Assumptions: semi-honest (honest-but-curious) parties, H a random oracle, and the
//! (computational) Diffie–Hellman assumption in the Ristretto255 group. B_i is a uniform group
//! element whatever c_i is, so the sender learns nothing about c_i (perfectly); the receiver
//! cannot compute a·(B_i − c̄_i·A)-style keys for the other message without solving CDH. The
//! claim of UC security against *active* adversaries in the original paper is known not to hold
//! in general; nothing here relies on it. Keys are bound to the index i and to A (fresh per
//! session), so different OTs and different sessions never share a pad.
//!
//! Points are checked on arrival: a byte string that is not a canonical Ristretto encoding, or
//! that encodes the identity, is rejected with [`Error::MalformedMessage`]; wrong counts give
//! [`Error::LengthMismatch`].
//!
//! # Built on it
//!
//! - [`NaorPinkasSender`] / [`NaorPinkasReceiver`]: 1-of-N OT (2 ≤ N ≤ [`MAX_N`]) from
//!   ℓ = ⌈log2 N⌉ base OTs, in the style of Naor–Pinkas: the sender draws key pairs
//!   (K_j^0, K_j^1), transfers them with ℓ 1-of-2 OTs, and encrypts message i under
//!   H(N, i, K_0^{i_0}, …, K_{ℓ−1}^{i_{ℓ−1}}) where i_j is bit j of i. The receiver with choice c
//!   holds exactly one key of each pair, hence only the key of message c.
//! - [`BaseCotSender`] / [`BaseCotReceiver`]: correlated OT with a global Δ: the sender draws
//!   x_i and transfers (x_i, x_i ⊕ Δ). This costs public-key operations per OT; an OT extension
//!   (IKNP, or a silent-OT PCG) can implement [`CotSender`] / [`CotReceiver`] later for bulk use.
//!
//! Secrets (the sender's a, the receivers' keys, Δ) are not printed by `Debug`. They are not
//! zeroized on drop (the crate does not depend on `zeroize`).

use crate::Error;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Bytes of a compressed Ristretto point: the size of every group element on the wire.
pub const POINT_LEN: usize = 32;

/// A 128-bit block: the message size of correlated OT and of the 1-of-N transfer keys.
pub type Block = [u8; 16];

/// The largest N supported by 1-of-N OT (messages are indexed by one byte).
pub const MAX_N: usize = 256;

/// The most base OTs one 1-of-N OT uses: ⌈log2 [`MAX_N`]⌉.
pub const MAX_CHOICE_BITS: usize = 8;

// Domain labels for H. Each is used with fixed-length inputs only, and none is a prefix of
// another, so the hash inputs of different uses never collide.
const KEY_LABEL: &[u8] = b"SecureRouter/ot/co15-key/v1";
const PAD_LABEL: &[u8] = b"SecureRouter/ot/pad/v1";
const ONE_OF_N_LABEL: &[u8] = b"SecureRouter/ot/1-of-n/v1";

// ---------------------------------------------------------------------------------------------
// Traits
// ---------------------------------------------------------------------------------------------

/// The sender of batches of 1-of-2 OTs: for each OT it holds a pair (m^0, m^1) of `L`-byte
/// messages and must not learn which one the receiver gets.
pub trait OtSender {
    /// The sender's opening message (`()` for a protocol in which the receiver speaks first).
    type Setup;
    /// The receiver's message for one OT.
    type Response: Copy + Default;

    /// The opening message; the same for every batch of this session.
    fn first_message(&self) -> Self::Setup;

    /// Encrypts `messages[i] = [m_i^0, m_i^1]` against `responses[i]` into `ciphertexts[i]`, so
    /// that the receiver can open m_i^{c_i} and nothing about m_i^{1−c_i}.
    ///
    /// All three slices must have the same length. On error `ciphertexts` is zeroed and the
    /// session state is unchanged.
    fn encrypt<const L: usize>(
        &mut self,
        responses: &[Self::Response],
        messages: &[[[u8; L]; 2]],
        ciphertexts: &mut [[[u8; L]; 2]],
    ) -> Result<(), Error>;
}

/// The receiver of batches of 1-of-2 OTs: it has one choice bit per OT and learns only the
/// chosen message.
pub trait OtReceiver {
    /// The receiver's message for one OT.
    type Response: Copy + Default;
    /// The receiver's secret state for one OT, kept by the caller between
    /// [`respond`](OtReceiver::respond) and [`decrypt`](OtReceiver::decrypt).
    type State: Copy + Default;

    /// Commits to `choices` (one per OT), filling `responses` (to send) and `states` (to keep).
    /// All three slices must have the same length.
    fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        choices: &[bool],
        responses: &mut [Self::Response],
        states: &mut [Self::State],
    ) -> Result<(), Error>;

    /// Opens the chosen message of each OT from the sender's `ciphertexts`, into `out`.
    fn decrypt<const L: usize>(
        &self,
        states: &[Self::State],
        ciphertexts: &[[[u8; L]; 2]],
        out: &mut [[u8; L]],
    ) -> Result<(), Error>;
}

/// The sender of 1-of-N OT: it holds N messages of `L` bytes and must not learn the index the
/// receiver picks.
pub trait OneOfNSender {
    /// The sender's opening message.
    type Setup;
    /// The receiver's message for one 1-of-N OT.
    type Request;
    /// The fixed-size part of the sender's reply that accompanies the N ciphertexts.
    type Header;

    /// The opening message; the same for every 1-of-N OT of this session.
    fn first_message(&self) -> Self::Setup;

    /// Encrypts the N = `messages.len()` messages against `request` into `ciphertexts` (same
    /// length) and returns the header to send with them.
    fn encrypt<R: CryptoRng + ?Sized, const L: usize>(
        &mut self,
        rng: &mut R,
        request: &Self::Request,
        messages: &[[u8; L]],
        ciphertexts: &mut [[u8; L]],
    ) -> Result<Self::Header, Error>;
}

/// The receiver of 1-of-N OT: it picks one index below N and learns only that message.
pub trait OneOfNReceiver {
    /// The receiver's message for one 1-of-N OT.
    type Request;
    /// The fixed-size part of the sender's reply that accompanies the N ciphertexts.
    type Header;
    /// The receiver's secret state for one 1-of-N OT, kept between respond and decrypt.
    type State;

    /// Commits to `choice` among `n` messages; `choice >= n` is an error.
    fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        choice: usize,
        n: usize,
    ) -> Result<(Self::Request, Self::State), Error>;

    /// Opens message `choice` from the sender's header and its `n` ciphertexts.
    fn decrypt<const L: usize>(
        &self,
        state: &Self::State,
        header: &Self::Header,
        ciphertexts: &[[u8; L]],
    ) -> Result<[u8; L], Error>;
}

/// The sender of correlated OT: with a global secret Δ, OT i gives the sender a random x_i and
/// the receiver (choice c_i) x_i ⊕ c_i·Δ.
pub trait CotSender {
    /// The sender's opening message (`()` for a protocol in which the receiver speaks first).
    type Setup;
    /// The receiver's message for one OT.
    type Response: Copy + Default;
    /// The sender's reply for one OT (`()` for a protocol that needs none).
    type Reply: Copy + Default;

    /// The opening message; the same for every batch of this session.
    fn first_message(&self) -> Self::Setup;

    /// The global correlation Δ.
    fn delta(&self) -> Block;

    /// Runs one batch: writes the sender's outputs x_i into `x` and the replies to send into
    /// `replies`. All slices must have the length of `responses`.
    fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        responses: &[Self::Response],
        x: &mut [Block],
        replies: &mut [Self::Reply],
    ) -> Result<(), Error>;
}

/// The receiver of correlated OT: with choice c_i it learns x_i ⊕ c_i·Δ and nothing about Δ.
pub trait CotReceiver {
    /// The receiver's message for one OT.
    type Response: Copy + Default;
    /// The receiver's secret state for one OT, kept between respond and receive.
    type State: Copy + Default;
    /// The sender's reply for one OT.
    type Reply: Copy + Default;

    /// Commits to `choices`, filling `responses` (to send) and `states` (to keep).
    fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        choices: &[bool],
        responses: &mut [Self::Response],
        states: &mut [Self::State],
    ) -> Result<(), Error>;

    /// Writes x_i ⊕ c_i·Δ for each OT into `out`.
    fn receive(
        &self,
        states: &[Self::State],
        replies: &[Self::Reply],
        out: &mut [Block],
    ) -> Result<(), Error>;
}

// ---------------------------------------------------------------------------------------------
// Wire messages of the base OT
// ---------------------------------------------------------------------------------------------

/// The base-OT sender's opening message A = aG, as the 32-byte compressed point.
///
/// Only the length is checked on parsing; the point itself is validated by
/// [`ChouOrlandiReceiver::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SenderSetup([u8; POINT_LEN]);

impl SenderSetup {
    /// Parses the message from the wire (exactly [`POINT_LEN`] bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        parse_point_bytes(bytes).map(SenderSetup)
    }

    /// The bytes to put on the wire.
    pub const fn to_bytes(&self) -> [u8; POINT_LEN] {
        self.0
    }
}

/// The base-OT receiver's message for one OT: B = bG + c·A, as the 32-byte compressed point.
///
/// Only the length is checked on parsing; the point is validated when the sender uses it.
/// The default value (all zeros) encodes the identity, which the sender rejects, so a slot the
/// receiver never filled cannot pass unnoticed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ChoiceMessage([u8; POINT_LEN]);

impl ChoiceMessage {
    /// Parses the message from the wire (exactly [`POINT_LEN`] bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        parse_point_bytes(bytes).map(ChoiceMessage)
    }

    /// The bytes to put on the wire.
    pub const fn to_bytes(&self) -> [u8; POINT_LEN] {
        self.0
    }
}

/// The base-OT receiver's secret state for one OT: its choice bit and key k = H(i, A, B, bA).
#[derive(Clone, Copy, Default)]
pub struct ReceiverKey {
    key: [u8; 32],
    /// 0 or 1; kept as a byte so that it feeds `subtle::Choice` without a branch.
    choice: u8,
}

impl core::fmt::Debug for ReceiverKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ReceiverKey(<secret>)")
    }
}

// ---------------------------------------------------------------------------------------------
// Chou–Orlandi base OT
// ---------------------------------------------------------------------------------------------

/// The sender of the Chou–Orlandi base OT (see the module documentation).
pub struct ChouOrlandiSender {
    /// The secret exponent a (nonzero).
    a: Scalar,
    /// A = aG, compressed: the opening message and a hash input of every key.
    big_a: [u8; POINT_LEN],
    /// aA, so that a·(B − A) = aB − aA costs one scalar multiplication per OT, not two.
    a_big_a: RistrettoPoint,
    /// Index of the next OT.
    next_index: u64,
}

impl core::fmt::Debug for ChouOrlandiSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChouOrlandiSender")
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl ChouOrlandiSender {
    /// Starts a session with a fresh secret a.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        // a = 0 has probability 2^-252; redrawing keeps A ≠ identity by construction.
        let a = loop {
            let a = random_scalar(rng);
            if !bool::from(a.ct_eq(&Scalar::ZERO)) {
                break a;
            }
        };
        let big_a = RistrettoPoint::mul_base(&a);
        ChouOrlandiSender {
            a,
            big_a: big_a.compress().to_bytes(),
            a_big_a: a * big_a,
            next_index: 0,
        }
    }

    /// Encrypts `buf[i]` in place: on input the plaintext pair, on output the ciphertext pair.
    /// On error `buf` is zeroed (it may hold partly encrypted data) and no index is used up.
    fn encrypt_in_place<const L: usize>(
        &mut self,
        responses: &[ChoiceMessage],
        buf: &mut [[[u8; L]; 2]],
    ) -> Result<(), Error> {
        let result = self.try_encrypt_in_place(responses, buf);
        match result {
            Ok(next) => self.next_index = next,
            Err(_) => buf.fill([[0u8; L]; 2]),
        }
        result.map(|_| ())
    }

    /// Returns the next unused index on success.
    fn try_encrypt_in_place<const L: usize>(
        &self,
        responses: &[ChoiceMessage],
        buf: &mut [[[u8; L]; 2]],
    ) -> Result<u64, Error> {
        check_len(responses.len(), buf.len())?;
        let (start, next) = index_range(self.next_index, responses.len())?;
        for ((index, response), pair) in (start..next).zip(responses).zip(buf.iter_mut()) {
            let big_b = decode_point(&response.0, "B is not a valid Ristretto encoding")?;
            let a_big_b = self.a * big_b;
            let k0 = ot_key(index, &self.big_a, &response.0, &a_big_b);
            let k1 = ot_key(index, &self.big_a, &response.0, &(a_big_b - self.a_big_a));
            xor_pad(&k0, &mut pair[0]);
            xor_pad(&k1, &mut pair[1]);
        }
        Ok(next)
    }
}

impl OtSender for ChouOrlandiSender {
    type Setup = SenderSetup;
    type Response = ChoiceMessage;

    fn first_message(&self) -> SenderSetup {
        SenderSetup(self.big_a)
    }

    fn encrypt<const L: usize>(
        &mut self,
        responses: &[ChoiceMessage],
        messages: &[[[u8; L]; 2]],
        ciphertexts: &mut [[[u8; L]; 2]],
    ) -> Result<(), Error> {
        if let Err(e) = check_len(responses.len(), messages.len())
            .and(check_len(responses.len(), ciphertexts.len()))
        {
            ciphertexts.fill([[0u8; L]; 2]);
            return Err(e);
        }
        ciphertexts.copy_from_slice(messages);
        self.encrypt_in_place(responses, ciphertexts)
    }
}

/// The receiver of the Chou–Orlandi base OT (see the module documentation).
pub struct ChouOrlandiReceiver {
    /// The sender's A, validated.
    big_a: RistrettoPoint,
    /// A as received (its canonical encoding), a hash input of every key.
    big_a_bytes: [u8; POINT_LEN],
    /// Index of the next OT.
    next_index: u64,
}

impl core::fmt::Debug for ChouOrlandiReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChouOrlandiReceiver")
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl ChouOrlandiReceiver {
    /// Starts a session from the sender's opening message, rejecting an A that is not a valid
    /// Ristretto encoding or is the identity (with A = identity both keys would be public).
    pub fn new(setup: &SenderSetup) -> Result<Self, Error> {
        let big_a = decode_point(&setup.0, "A is not a valid Ristretto encoding")?;
        Ok(ChouOrlandiReceiver {
            big_a,
            big_a_bytes: setup.0,
            next_index: 0,
        })
    }
}

impl OtReceiver for ChouOrlandiReceiver {
    type Response = ChoiceMessage;
    type State = ReceiverKey;

    fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        choices: &[bool],
        responses: &mut [ChoiceMessage],
        states: &mut [ReceiverKey],
    ) -> Result<(), Error> {
        check_len(choices.len(), responses.len())?;
        check_len(choices.len(), states.len())?;
        let (start, next) = index_range(self.next_index, choices.len())?;
        for (((index, &c), response), state) in
            (start..next).zip(choices).zip(responses).zip(states)
        {
            let c = u8::from(c);
            let b = random_scalar(rng);
            let b_g = RistrettoPoint::mul_base(&b);
            // B = bG if c = 0, A + bG if c = 1, without a branch on c.
            let big_b =
                RistrettoPoint::conditional_select(&b_g, &(b_g + self.big_a), Choice::from(c));
            let big_b = big_b.compress().to_bytes();
            *response = ChoiceMessage(big_b);
            *state = ReceiverKey {
                key: ot_key(index, &self.big_a_bytes, &big_b, &(b * self.big_a)),
                choice: c,
            };
        }
        self.next_index = next;
        Ok(())
    }

    fn decrypt<const L: usize>(
        &self,
        states: &[ReceiverKey],
        ciphertexts: &[[[u8; L]; 2]],
        out: &mut [[u8; L]],
    ) -> Result<(), Error> {
        check_len(states.len(), ciphertexts.len())?;
        check_len(states.len(), out.len())?;
        for ((state, pair), o) in states.iter().zip(ciphertexts).zip(out.iter_mut()) {
            // Pick e^c without a secret-dependent branch or memory access.
            let c = Choice::from(state.choice);
            for ((o, e0), e1) in o.iter_mut().zip(&pair[0]).zip(&pair[1]) {
                *o = u8::conditional_select(e0, e1, c);
            }
            xor_pad(&state.key, o);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// 1-of-N OT from base OTs
// ---------------------------------------------------------------------------------------------

/// The receiver's message for one 1-of-N OT: one base-OT [`ChoiceMessage`] per bit of the
/// choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OneOfNRequest {
    messages: [ChoiceMessage; MAX_CHOICE_BITS],
    /// How many of `messages` are in use: ℓ = ⌈log2 N⌉.
    bits: u8,
}

impl OneOfNRequest {
    /// Builds the request from its base-OT messages as received (at most [`MAX_CHOICE_BITS`]).
    pub fn from_messages(messages: &[ChoiceMessage]) -> Result<Self, Error> {
        let mut request = OneOfNRequest {
            bits: count_bits(messages.len())?,
            ..OneOfNRequest::default()
        };
        request.messages[..messages.len()].copy_from_slice(messages);
        Ok(request)
    }

    /// The base-OT messages to send, one per choice bit.
    pub fn messages(&self) -> &[ChoiceMessage] {
        &self.messages[..usize::from(self.bits)]
    }
}

/// The sender's header for one 1-of-N OT: the base-OT ciphertexts of the key pairs
/// (K_j^0, K_j^1), one pair per choice bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OneOfNHeader {
    keys: [[Block; 2]; MAX_CHOICE_BITS],
    /// How many of `keys` are in use: ℓ = ⌈log2 N⌉.
    bits: u8,
}

impl OneOfNHeader {
    /// Builds the header from its base-OT ciphertext pairs as received (at most
    /// [`MAX_CHOICE_BITS`]).
    pub fn from_ciphertexts(ciphertexts: &[[Block; 2]]) -> Result<Self, Error> {
        let mut header = OneOfNHeader {
            bits: count_bits(ciphertexts.len())?,
            ..OneOfNHeader::default()
        };
        header.keys[..ciphertexts.len()].copy_from_slice(ciphertexts);
        Ok(header)
    }

    /// The base-OT ciphertext pairs to send, one per choice bit.
    pub fn ciphertexts(&self) -> &[[Block; 2]] {
        &self.keys[..usize::from(self.bits)]
    }
}

/// The receiver's secret state for one 1-of-N OT.
#[derive(Clone, Copy, Default)]
pub struct OneOfNState {
    keys: [ReceiverKey; MAX_CHOICE_BITS],
    bits: u8,
    choice: u16,
    n: u16,
}

impl core::fmt::Debug for OneOfNState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneOfNState")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

/// The sender of 1-of-N OT built from ⌈log2 N⌉ Chou–Orlandi OTs (see the module documentation).
#[derive(Debug)]
pub struct NaorPinkasSender {
    base: ChouOrlandiSender,
}

impl NaorPinkasSender {
    /// Starts a session (one base-OT opening message serves all its 1-of-N OTs).
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        NaorPinkasSender {
            base: ChouOrlandiSender::new(rng),
        }
    }
}

impl OneOfNSender for NaorPinkasSender {
    type Setup = SenderSetup;
    type Request = OneOfNRequest;
    type Header = OneOfNHeader;

    fn first_message(&self) -> SenderSetup {
        self.base.first_message()
    }

    fn encrypt<R: CryptoRng + ?Sized, const L: usize>(
        &mut self,
        rng: &mut R,
        request: &OneOfNRequest,
        messages: &[[u8; L]],
        ciphertexts: &mut [[u8; L]],
    ) -> Result<OneOfNHeader, Error> {
        let n = messages.len();
        let bits = choice_bits(n)?;
        check_len(n, ciphertexts.len())?;
        check_len(bits, usize::from(request.bits))?;

        // Fresh key pairs for this OT only; they go to the receiver through the base OTs.
        let mut pairs = [[[0u8; 16]; 2]; MAX_CHOICE_BITS];
        for pair in &mut pairs[..bits] {
            rng.fill_bytes(&mut pair[0]);
            rng.fill_bytes(&mut pair[1]);
        }
        let mut header = OneOfNHeader {
            keys: pairs,
            bits: request.bits,
        };
        self.base
            .encrypt_in_place(request.messages(), &mut header.keys[..bits])?;

        for (i, (m, e)) in messages.iter().zip(ciphertexts.iter_mut()).enumerate() {
            let keys = pairs[..bits]
                .iter()
                .enumerate()
                .map(|(j, pair)| &pair[(i >> j) & 1]);
            *e = *m;
            xor_pad(&message_key(n, i, keys), e);
        }
        Ok(header)
    }
}

/// The receiver of 1-of-N OT built from ⌈log2 N⌉ Chou–Orlandi OTs (see the module
/// documentation).
#[derive(Debug)]
pub struct NaorPinkasReceiver {
    base: ChouOrlandiReceiver,
}

impl NaorPinkasReceiver {
    /// Starts a session from the sender's opening message (validated as for the base OT).
    pub fn new(setup: &SenderSetup) -> Result<Self, Error> {
        Ok(NaorPinkasReceiver {
            base: ChouOrlandiReceiver::new(setup)?,
        })
    }
}

impl OneOfNReceiver for NaorPinkasReceiver {
    type Request = OneOfNRequest;
    type Header = OneOfNHeader;
    type State = OneOfNState;

    fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        choice: usize,
        n: usize,
    ) -> Result<(OneOfNRequest, OneOfNState), Error> {
        let bits = choice_bits(n)?;
        if choice >= n {
            return Err(Error::ProtocolMisuse("1-of-N choice must be below N"));
        }
        let mut choices = [false; MAX_CHOICE_BITS];
        for (j, c) in choices[..bits].iter_mut().enumerate() {
            *c = (choice >> j) & 1 == 1;
        }
        // bits ≤ 8 and n ≤ 256 were checked above, so these conversions are exact.
        let mut request = OneOfNRequest {
            bits: bits as u8,
            ..OneOfNRequest::default()
        };
        let mut state = OneOfNState {
            bits: bits as u8,
            choice: choice as u16,
            n: n as u16,
            ..OneOfNState::default()
        };
        self.base.respond(
            rng,
            &choices[..bits],
            &mut request.messages[..bits],
            &mut state.keys[..bits],
        )?;
        Ok((request, state))
    }

    fn decrypt<const L: usize>(
        &self,
        state: &OneOfNState,
        header: &OneOfNHeader,
        ciphertexts: &[[u8; L]],
    ) -> Result<[u8; L], Error> {
        let n = usize::from(state.n);
        let bits = usize::from(state.bits);
        if n == 0 {
            return Err(Error::ProtocolMisuse(
                "1-of-N state was never filled by respond",
            ));
        }
        check_len(n, ciphertexts.len())?;
        check_len(bits, usize::from(header.bits))?;

        let mut keys = [[0u8; 16]; MAX_CHOICE_BITS];
        self.base
            .decrypt(&state.keys[..bits], header.ciphertexts(), &mut keys[..bits])?;
        let key = message_key(n, usize::from(state.choice), keys[..bits].iter());

        // Read ciphertexts[choice] by scanning all of them, so the memory access pattern does
        // not depend on the secret choice.
        let mut out = [0u8; L];
        let choice = u32::from(state.choice);
        for (i, e) in ciphertexts.iter().enumerate() {
            let hit = (i as u32).ct_eq(&choice);
            for (o, x) in out.iter_mut().zip(e) {
                o.conditional_assign(x, hit);
            }
        }
        xor_pad(&key, &mut out);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Correlated OT from base OTs
// ---------------------------------------------------------------------------------------------

/// The sender of correlated OT by transferring (x_i, x_i ⊕ Δ) with Chou–Orlandi OTs.
///
/// Public-key cost per OT: use it for a few hundred OTs (e.g. the base OTs of an extension),
/// not for bulk correlations.
pub struct BaseCotSender {
    base: ChouOrlandiSender,
    delta: Block,
}

impl core::fmt::Debug for BaseCotSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BaseCotSender")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BaseCotSender {
    /// Starts a session with the global correlation `delta` (secret, chosen by the caller).
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, delta: Block) -> Self {
        BaseCotSender {
            base: ChouOrlandiSender::new(rng),
            delta,
        }
    }
}

impl CotSender for BaseCotSender {
    type Setup = SenderSetup;
    type Response = ChoiceMessage;
    type Reply = [Block; 2];

    fn first_message(&self) -> SenderSetup {
        self.base.first_message()
    }

    fn delta(&self) -> Block {
        self.delta
    }

    fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        responses: &[ChoiceMessage],
        x: &mut [Block],
        replies: &mut [[Block; 2]],
    ) -> Result<(), Error> {
        check_len(responses.len(), x.len())?;
        check_len(responses.len(), replies.len())?;
        for (xi, reply) in x.iter_mut().zip(replies.iter_mut()) {
            rng.fill_bytes(xi);
            reply[0] = *xi;
            reply[1] = xor_block(xi, &self.delta);
        }
        self.base
            .encrypt_in_place(responses, replies)
            .inspect_err(|_| {
                x.fill([0u8; 16]);
            })
    }
}

/// The receiver of correlated OT from Chou–Orlandi OTs (pairs with [`BaseCotSender`]).
#[derive(Debug)]
pub struct BaseCotReceiver {
    base: ChouOrlandiReceiver,
}

impl BaseCotReceiver {
    /// Starts a session from the sender's opening message (validated as for the base OT).
    pub fn new(setup: &SenderSetup) -> Result<Self, Error> {
        Ok(BaseCotReceiver {
            base: ChouOrlandiReceiver::new(setup)?,
        })
    }
}

impl CotReceiver for BaseCotReceiver {
    type Response = ChoiceMessage;
    type State = ReceiverKey;
    type Reply = [Block; 2];

    fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        choices: &[bool],
        responses: &mut [ChoiceMessage],
        states: &mut [ReceiverKey],
    ) -> Result<(), Error> {
        self.base.respond(rng, choices, responses, states)
    }

    fn receive(
        &self,
        states: &[ReceiverKey],
        replies: &[[Block; 2]],
        out: &mut [Block],
    ) -> Result<(), Error> {
        self.base.decrypt(states, replies, out)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A uniform scalar from 64 random bytes (the bias of the reduction is about 2^-256).
fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn parse_point_bytes(bytes: &[u8]) -> Result<[u8; POINT_LEN], Error> {
    bytes.try_into().map_err(|_| Error::LengthMismatch {
        expected: POINT_LEN,
        got: bytes.len(),
    })
}

/// Decodes a received point, rejecting non-canonical encodings and the identity.
fn decode_point(bytes: &[u8; POINT_LEN], invalid: &'static str) -> Result<RistrettoPoint, Error> {
    let point = CompressedRistretto(*bytes)
        .decompress()
        .ok_or(Error::MalformedMessage(invalid))?;
    if point.is_identity() {
        return Err(Error::MalformedMessage("group element is the identity"));
    }
    Ok(point)
}

/// H(i, A, B, P): the key of OT `index`, binding the shared point to the OT and the session.
fn ot_key(
    index: u64,
    big_a: &[u8; POINT_LEN],
    big_b: &[u8; POINT_LEN],
    shared: &RistrettoPoint,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(KEY_LABEL);
    h.update(index.to_le_bytes());
    h.update(big_a);
    h.update(big_b);
    h.update(shared.compress().as_bytes());
    h.finalize().into()
}

/// The key of message `i` of a 1-of-N OT: H(N, i, K_0^{i_0}, …, K_{ℓ−1}^{i_{ℓ−1}}).
fn message_key<'a>(n: usize, i: usize, keys: impl Iterator<Item = &'a Block>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ONE_OF_N_LABEL);
    h.update((n as u32).to_le_bytes());
    h.update((i as u32).to_le_bytes());
    for k in keys {
        h.update(k);
    }
    h.finalize().into()
}

/// XORs `out` with KDF(key): SHA-256(label, key, counter) blocks, as many as `out` needs.
fn xor_pad(key: &[u8; 32], out: &mut [u8]) {
    for (counter, chunk) in (0u64..).zip(out.chunks_mut(32)) {
        let mut h = Sha256::new();
        h.update(PAD_LABEL);
        h.update(key);
        h.update(counter.to_le_bytes());
        let pad: [u8; 32] = h.finalize().into();
        for (o, p) in chunk.iter_mut().zip(pad) {
            *o ^= p;
        }
    }
}

fn xor_block(a: &Block, b: &Block) -> Block {
    core::array::from_fn(|i| a[i] ^ b[i])
}

fn check_len(expected: usize, got: usize) -> Result<(), Error> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::LengthMismatch { expected, got })
    }
}

/// The indices [start, next) of a batch of `count` OTs starting at `start`.
fn index_range(start: u64, count: usize) -> Result<(u64, u64), Error> {
    u64::try_from(count)
        .ok()
        .and_then(|c| start.checked_add(c))
        .map(|next| (start, next))
        .ok_or(Error::ProtocolMisuse("OT index counter exhausted"))
}

/// ℓ = ⌈log2 n⌉ for a supported N.
fn choice_bits(n: usize) -> Result<usize, Error> {
    if !(2..=MAX_N).contains(&n) {
        return Err(Error::ProtocolMisuse("1-of-N OT needs 2 <= N <= 256"));
    }
    Ok((usize::BITS - (n - 1).leading_zeros()) as usize)
}

/// A received count of base OTs in a 1-of-N message, as the `bits` field.
fn count_bits(count: usize) -> Result<u8, Error> {
    if (1..=MAX_CHOICE_BITS).contains(&count) {
        Ok(count as u8)
    } else {
        Err(Error::MalformedMessage(
            "1-of-N message must carry 1..=8 base-OT parts",
        ))
    }
}
