//! `securerouter dealer`: the service that streams each session's correlated randomness.

use super::service::{
    LimitArgs, ListenArgs, OpsArgs, link_config, runtime, serve_until_stopped, until_stdin_closes,
};
use clap::Args;
use securerouter_runtime::dealer::DealerService;
use securerouter_runtime::deployment::{DeploymentDir, Role};
use std::path::PathBuf;
use std::sync::Arc;

/// `securerouter dealer`'s options.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct DealerArgs {
    /// The deployment directory (from `securerouter keys`).
    #[arg(long)]
    pub deployment: PathBuf,
    /// Seconds a link may stay silent before the session fails (and a server's request
    /// waits for the other server's).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Where to listen.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Caps and deadlines against floods (--max-sessions caps key generations in flight).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Probes and draining.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Exit when standard input closes: a supervising process that holds the other end of
    /// the pipe takes this service with it when it ends, even when it is killed.
    #[arg(long)]
    pub exit_with_stdin: bool,
}

/// Runs the dealer until SIGTERM or SIGINT (then drains it) or its supervisor's pipe closes.
pub fn run(args: &DealerArgs) -> anyhow::Result<()> {
    runtime()?.block_on(until_stdin_closes(args.exit_with_stdin, async {
        let d = DeploymentDir::open(&args.deployment)?;
        let service = DealerService::new(
            d.identity(Role::Dealer)?,
            [d.deployment.p0.key()?, d.deployment.p1.key()?],
            d.model(Role::Dealer)?,
            link_config(args.timeout),
            args.limits.limits(),
        )?;
        let listener = args.listen.bind(&d.deployment.dealer.addr).await?;
        let service = Arc::new(service);
        serve_until_stopped(service.clone(), service.run(listener), &args.ops).await
    }))
}
