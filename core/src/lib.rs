//! # securerouter-core
//!
//! The audited core of SecureRouter: everything cryptographic that the two servers, the dealer
//! and the clients share, with no I/O, no clocks, no threads and no `unsafe`.
//!
//! - [`ring`]: Z_2^64 and Z_2^n arithmetic, fixed-point encoding.
//! - [`share`]: additive secret shares, including the seeded split where P0's share is a seed.
//! - [`prg`]: AES-128 counter-mode streams and the GGM-tree PRG.
//! - [`fss`]: function secret sharing; the one-bit DPF behind every comparison and lookup.
//! - [`dealer`]: correlated randomness for the servers, seed-compressed.
//! - [`gate`]: the two-party gate engine (masked wires, written once for dealer and servers).
//!
//! That is what inference runs. Primitives no gate uses are behind non-default features:
//!
//! | feature | adds |
//! |---|---|
//! | `dpf` | `fss::dpf`: the arithmetic DPF (outputs in Z_2^l) and `Dealer::dpf` |
//! | `dcf` | `fss::dcf`: distributed comparison functions and `Dealer::dcf`, `Dealer::dcf_batch` |
//! | `triples` | Beaver and matrix triples in [`dealer`] |
//! | `ot` | `ot`: oblivious transfer traits, Chou–Orlandi base OT, 1-of-N and correlated OT |
//!
//! The threat model and constant-time notes are in `SECURITY.md` beside this crate.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(feature = "alloc")]
pub mod dealer;
mod error;
#[cfg(feature = "alloc")]
pub mod fss;
#[cfg(feature = "alloc")]
pub mod gate;
#[cfg(feature = "ot")]
pub mod ot;
pub mod prg;
pub mod ring;
pub mod share;

pub use error::Error;
