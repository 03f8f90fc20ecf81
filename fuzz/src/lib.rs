//! Fuzz targets for every decoder that reads bytes from another party, and the stable harness
//! that runs them in CI.
//!
//! Each target is a plain function of arbitrary bytes ([`Target::run`]) that must never panic,
//! hang or allocate without bound; where a decoder has an encoder, the target also checks the
//! round trip (what decodes re-encodes to the same bytes, or a valid encoding decodes back to
//! its value). Every target comes with a seed generator ([`Target::seeds`]) that builds valid
//! encodings with the project's own encoders (real keys, messages, frames, files), so the seeds
//! follow the formats when they change.
//!
//! Two drivers use the same functions:
//! - `fuzz-smoke` (stable, CI): a deterministic mutator ([`mutate`]) over the seeds for a fixed
//!   time or number of inputs per target, under a per-input time budget and an allocation
//!   limit ([`harness`], [`alloc`]); any panic, slow input or oversized allocation fails it,
//!   naming the target and saving the input.
//! - cargo-fuzz (nightly, libFuzzer, coverage-guided): one binary per target under
//!   `fuzz/fuzz_targets/`.

pub mod alloc;
pub mod harness;
pub mod mutate;
pub mod targets;

// The harness's own tests check that an oversized allocation is reported.
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

/// One fuzz target: a decoder (or a family of them) fed arbitrary bytes.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The name (also the cargo-fuzz binary's).
    pub name: &'static str,
    /// What it decodes.
    pub covers: &'static str,
    /// Runs one input; panics on a bug. Returns whether the input was accepted (decoded
    /// without error at least in part), which the smoke harness uses to keep interesting
    /// mutants.
    pub run: fn(&[u8]) -> bool,
    /// Valid inputs, built with the project's encoders.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order the smoke harness runs them.
pub fn all_targets() -> Vec<Target> {
    targets::all()
}

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    all_targets().into_iter().find(|t| t.name == name)
}

/// Runs the smoke harness on the target `name` with the default settings (what a cargo-fuzz
/// entry point does when built without libFuzzer, e.g. by `cargo build --workspace`).
pub fn smoke_main(name: &str) -> std::process::ExitCode {
    let Some(t) = target(name) else {
        eprintln!("no target {name}");
        return std::process::ExitCode::FAILURE;
    };
    eprintln!("built without libFuzzer: running the stable smoke harness on {name}");
    let report = harness::run_target(&t, &harness::Config::default());
    println!("{report}");
    match report.finding {
        Some(f) => {
            eprintln!("{f}");
            std::process::ExitCode::FAILURE
        }
        None => std::process::ExitCode::SUCCESS,
    }
}
