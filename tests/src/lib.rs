//! # securerouter-tests
//!
//! End-to-end tests that cross crate (and later process) boundaries: a device client feeding
//! the servers' side of core, and, as the runtime grows, dealer, P0 and P1 as real processes.
//! The tests live in `tests/`; this library only holds what they share.
#![forbid(unsafe_code)]

use securerouter_core::prg::{AesCtr, Domain, Seed};

/// A deterministic test RNG: fixed seed per `tag`, so failures reproduce.
pub fn test_rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes(*b"securerouter-tst"), Domain(tag))
}
