//! End-to-end checks of the built `securerouter` binary.

use std::process::{Command, Output};

fn securerouter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_securerouter"))
        .args(args)
        // Keep the runs independent of the caller's logging settings.
        .env_remove("RUST_LOG")
        .output()
        .expect("run the securerouter binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

#[test]
fn version_prints_the_package_version() {
    let out = securerouter(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("securerouter {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_describes_securerouter_and_lists_doctor() {
    let out = securerouter(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    assert!(help.contains("doctor"), "{help}");
    assert!(
        help.contains("private inference of Transformer classifiers"),
        "{help}"
    );
    assert!(help.contains("RUST_LOG"), "{help}");
}

#[test]
fn unknown_flag_is_a_clean_error() {
    let out = securerouter(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("error:") && err.contains("--no-such-flag"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_subcommand_is_a_clean_error() {
    let out = securerouter(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("error:") && err.contains("frobnicate"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn no_arguments_prints_usage_and_fails() {
    let out = securerouter(&[]);
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("Usage: securerouter"), "{out:?}");
}

#[test]
fn doctor_reports_version_aes_and_gpu() {
    let out = securerouter(&["doctor"]);
    assert!(out.status.success(), "{out:?}");
    let report = text(&out.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("securerouter {}", env!("CARGO_PKG_VERSION")).as_str()),
        "{report}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hardware AES: yes") || l.starts_with("hardware AES: no")),
        "{report}"
    );
    let gpu = lines
        .iter()
        .find(|l| l.starts_with("GPU:"))
        .unwrap_or_else(|| panic!("no GPU line in:\n{report}"));
    // Either a device description or the reason there is none.
    let detail = gpu.trim_start_matches("GPU:").trim();
    assert!(!detail.is_empty(), "{gpu}");
    if let Some(reason) = detail.strip_prefix("unavailable: ") {
        assert!(reason.contains("CPU"), "{gpu}");
    }
}
