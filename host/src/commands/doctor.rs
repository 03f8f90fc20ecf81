//! `securerouter doctor`: the environment facts an operator needs before running SecureRouter.

use std::fmt;
use std::io::Write;

use securerouter_gpu::GpuAvailability;

/// What `doctor` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoctorReport {
    /// Version of this binary (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// Target architecture and OS, e.g. `x86_64-linux`.
    pub platform: String,
    /// Whether the AES used by the PRGs runs on hardware instructions (AES-NI on x86,
    /// the ARMv8 AES extension on aarch64); otherwise constant-time software AES is used.
    pub hardware_aes: bool,
    /// GPU availability, with the reason when there is none.
    pub gpu: GpuAvailability,
}

impl DoctorReport {
    /// Probes this machine.
    #[must_use]
    pub fn collect() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            platform: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            // The same runtime check the `aes` crate (used by securerouter-core) makes before
            // choosing its backend, so this is what the PRGs actually use.
            hardware_aes: aes::hardware_accelerated(),
            gpu: securerouter_gpu::detect(),
        }
    }
}

fn hardware_aes_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86" | "x86_64" => "AES-NI",
        "aarch64" => "ARMv8 AES",
        _ => "hardware AES",
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "securerouter {}", self.version)?;
        writeln!(f, "platform:     {}", self.platform)?;
        if self.hardware_aes {
            writeln!(
                f,
                "hardware AES: yes ({}, detected at run time)",
                hardware_aes_name()
            )?;
        } else {
            writeln!(
                f,
                "hardware AES: no (constant-time bitsliced software AES is used)"
            )?;
        }
        match &self.gpu {
            GpuAvailability::Available(info) => writeln!(f, "GPU:          {info}"),
            GpuAvailability::Unavailable(why) => writeln!(f, "GPU:          unavailable: {why}"),
        }
    }
}

/// Collects a [`DoctorReport`] and writes it to `out`.
///
/// # Errors
/// Only if writing to `out` fails.
pub fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    let report = DoctorReport::collect();
    tracing::debug!(?report, "doctor");
    write!(out, "{report}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_gpu::GpuUnavailable;

    #[test]
    fn report_has_one_line_per_fact() {
        let report = DoctorReport {
            version: "9.9.9",
            platform: "x86_64-linux".into(),
            hardware_aes: false,
            gpu: GpuAvailability::Unavailable(GpuUnavailable::NoDriverLibrary),
        };
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "securerouter 9.9.9");
        assert!(lines[2].starts_with("hardware AES: no"));
        assert!(lines[3].starts_with("GPU:          unavailable: no CUDA driver library"));
    }

    #[test]
    fn collect_reports_this_binary() {
        let report = DoctorReport::collect();
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
        let mut out = Vec::new();
        run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().any(|l| l.starts_with("GPU:")), "{text}");
    }
}
