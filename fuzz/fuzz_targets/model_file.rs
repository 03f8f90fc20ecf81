//! cargo-fuzz entry point of the `model_file` target (`securerouter_fuzz::targets`); see
//! `fuzz/README.md`. Built without `--cfg fuzzing` (plain cargo) it runs the stable smoke
//! harness on this one target instead.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    securerouter_fuzz::targets::files::model_file(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    securerouter_fuzz::smoke_main("model_file")
}
