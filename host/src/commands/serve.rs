//! `securerouter serve`: server P0 or P1.

use super::service::{
    LimitArgs, ListenArgs, OpsArgs, link_config, runtime, serve_until_stopped, until_stdin_closes,
};
use clap::Args;
use securerouter_core::share::Party;
use securerouter_kernels::ServerKernels;
use securerouter_runtime::deployment::{DeploymentDir, Role};
use securerouter_runtime::server::ServerService;
use std::path::PathBuf;
use std::sync::Arc;

/// `securerouter serve`'s options.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct ServeArgs {
    /// Which server: 0 or 1.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub party: u8,
    /// The deployment directory (from `securerouter keys`).
    #[arg(long)]
    pub deployment: PathBuf,
    /// Seconds a link may stay silent (or P0 may wait for P1) before a session fails.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Receive each session's whole key stream (spilled to a temporary file) before its
    /// online phase, so that the online phase is timed alone (benchmarks use this).
    #[arg(long)]
    pub prefetch_keys: bool,
    /// Run the local heavy math (matrix products, FSS evaluation) on the first CUDA GPU,
    /// keeping the weights on it. Without a usable GPU the server says why in one log line
    /// and uses the CPU.
    #[arg(long)]
    pub gpu: bool,
    /// Threads the CPU kernels (matrix products, comparisons, lookups) split large calls
    /// between; 0, the default, means one per core.
    #[arg(long, default_value_t = 0)]
    pub kernel_threads: usize,
    /// Where to listen.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Caps and deadlines against floods.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Probes and draining.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Exit when standard input closes: a supervising process that holds the other end of
    /// the pipe takes this server with it when it ends, even when it is killed.
    #[arg(long)]
    pub exit_with_stdin: bool,
}

/// Runs the server until SIGTERM or SIGINT (then drains it) or its supervisor's pipe closes.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(until_stdin_closes(args.exit_with_stdin, async {
        let d = DeploymentDir::open(&args.deployment)?;
        let (party, role, addr) = match args.party {
            0 => (Party::P0, Role::P0, d.deployment.p0.addr.clone()),
            _ => (Party::P1, Role::P1, d.deployment.p1.addr.clone()),
        };
        let service = ServerService::new(
            party,
            d.identity(role)?,
            d.deployment.clone(),
            d.client_keys()?,
            d.model(role)?,
            link_config(args.timeout),
        )?
        .with_prefetch_keys(args.prefetch_keys)
        .with_limits(args.limits.limits())?
        .with_kernels(ServerKernels::select(args.gpu, args.kernel_threads))?;
        let listener = args.listen.bind(&addr).await?;
        let service = Arc::new(service);
        serve_until_stopped(service.clone(), service.run(listener), &args.ops).await
    }))
}
