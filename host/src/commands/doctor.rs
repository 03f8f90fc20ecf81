//! `securerouter doctor`: the environment facts an operator needs before running SecureRouter,
//! and with `--deployment`, the checks of one role's folder on its host: the other roles
//! reachable, the secret files private.

use securerouter_runtime::deployment::DeploymentDir;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The CPU's extensions the kernels can use, each with whether it is there.
    pub cpu_features: Vec<(&'static str, bool)>,
    /// The SIMD path the host kernels take on this CPU.
    pub kernels: &'static str,
}

/// The x86-64 extensions that speed SecureRouter up: AES for the PRGs and links, AVX2 and
/// AVX-512 for matrix products and lookups, IFMA for 52-bit products, VAES for the FSS walks.
fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        vec![
            ("AES-NI", has!("aes")),
            ("AVX2", has!("avx2")),
            ("AVX-512", has!("avx512f") && has!("avx512dq")),
            ("IFMA", has!("avx512ifma")),
            ("VAES", has!("vaes")),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
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
            cpu_features: cpu_features(),
            kernels: securerouter_kernels::Simd::detect().name(),
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
        let features: Vec<String> = self
            .cpu_features
            .iter()
            .map(|(name, has)| format!("{name} {}", if *has { "yes" } else { "no" }))
            .collect();
        writeln!(
            f,
            "CPU:          {}; host kernels: {}",
            if features.is_empty() {
                "no x86-64 extensions to use".to_string()
            } else {
                features.join(", ")
            },
            self.kernels
        )?;
        match &self.gpu {
            GpuAvailability::Available(info) => writeln!(f, "GPU:          {info}"),
            GpuAvailability::Unavailable(why) => writeln!(f, "GPU:          unavailable: {why}"),
        }
    }
}

/// `securerouter doctor`'s options.
#[derive(Debug, clap::Args, PartialEq, Eq)]
pub struct DoctorArgs {
    /// Also check a role's folder (from `securerouter deploy`) or a deployment directory: the
    /// other roles' addresses reachable from here, and every secret file private (mode 0600).
    #[arg(long)]
    pub deployment: Option<PathBuf>,
    /// Seconds to wait for each role's address.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// Collects a [`DoctorReport`] and writes it to `out`; with `--deployment`, checks that
/// folder too.
///
/// # Errors
/// If writing to `out` fails, or a check of the deployment fails (the report says which).
pub fn run(args: &DoctorArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = DoctorReport::collect();
    tracing::debug!(?report, "doctor");
    write!(out, "{report}")?;
    if let Some(dir) = &args.deployment {
        let failed = check_deployment(dir, Duration::from_secs(args.timeout.max(1)), out)?;
        if failed > 0 {
            anyhow::bail!("{failed} checks of {} failed", dir.display());
        }
    }
    out.flush()?;
    Ok(())
}

/// Checks the deployment folder `dir`: each role's address reachable within `timeout`, each
/// secret file private. Writes a line per check; returns how many failed.
fn check_deployment(dir: &Path, timeout: Duration, out: &mut dyn Write) -> anyhow::Result<usize> {
    let d = DeploymentDir::open(dir)?;
    let mut failed = 0;
    writeln!(out, "deployment:   {}", dir.display())?;
    let rt = super::service::runtime()?;
    for (role, e) in [
        ("dealer", &d.deployment.dealer),
        ("P0", &d.deployment.p0),
        ("P1", &d.deployment.p1),
    ] {
        let started = std::time::Instant::now();
        let reached = rt.block_on(async {
            let addr = e.addr.to_string();
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await
        });
        let line = match reached {
            Ok(Ok(_)) => format!(
                "reachable ({:.1} ms)",
                started.elapsed().as_secs_f64() * 1e3
            ),
            Ok(Err(err)) => {
                failed += 1;
                format!("UNREACHABLE: {err}")
            }
            Err(_) => {
                failed += 1;
                format!("UNREACHABLE: no answer within {} s", timeout.as_secs())
            }
        };
        writeln!(out, "  {role:<6} {:<24} {line}", e.addr)?;
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".key") || n.ends_with(".model") || n.ends_with(".plain.json"))
        .collect();
    names.sort();
    for name in names {
        let mode = std::fs::metadata(dir.join(&name))?.permissions().mode() & 0o777;
        let line = if mode & 0o077 == 0 {
            format!("private ({mode:o})")
        } else {
            failed += 1;
            format!("READABLE BY OTHERS ({mode:o}): chmod 600 it; the services refuse it")
        };
        writeln!(out, "  {name:<31} {line}")?;
    }
    Ok(failed)
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
            cpu_features: vec![("AES-NI", true), ("IFMA", false)],
            kernels: "avx2",
        };
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "securerouter 9.9.9");
        assert!(lines[2].starts_with("hardware AES: no"));
        assert_eq!(
            lines[3],
            "CPU:          AES-NI yes, IFMA no; host kernels: avx2"
        );
        assert!(lines[4].starts_with("GPU:          unavailable: no CUDA driver library"));
    }

    #[test]
    fn collect_reports_this_binary() {
        let report = DoctorReport::collect();
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
        let mut out = Vec::new();
        let args = DoctorArgs {
            deployment: None,
            timeout: 1,
        };
        run(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().any(|l| l.starts_with("GPU:")), "{text}");
    }
}
