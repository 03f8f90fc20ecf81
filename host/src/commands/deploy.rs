//! `securerouter deploy`: a trained pool as one folder per role, each to be copied to its host.

use clap::Args;
use securerouter_ml::assets;
use securerouter_runtime::net::ServiceAddr;
use securerouter_runtime::served_pool::ServedPool;
use std::io::Write;
use std::path::PathBuf;

/// `securerouter deploy`'s options.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct DeployArgs {
    /// The trained pool (`train pool`, then `train router`).
    #[arg(long)]
    pub pool: PathBuf,
    /// Where to write the folders `dealer/`, `p0/`, `p1/` and `client/`.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the dealer is reached (HOST:PORT, a name or an address).
    #[arg(long)]
    pub dealer: ServiceAddr,
    /// Where P0 is reached.
    #[arg(long)]
    pub p0: ServiceAddr,
    /// Where P1 is reached.
    #[arg(long)]
    pub p1: ServiceAddr,
    /// Cache directory of the pool's base checkpoint (default: $SECUREROUTER_CACHE, else
    /// ~/.cache/securerouter).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Replace the folders of an earlier deployment (new keys for every role).
    #[arg(long)]
    pub force: bool,
}

/// Writes the deployment and says what goes where.
pub fn run(args: &DeployArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let cache = assets::cache_dir(args.cache_dir.as_deref())?;
    let pool = ServedPool::load(&args.pool, &cache)?;
    let addrs = [args.dealer.clone(), args.p0.clone(), args.p1.clone()];
    pool.deploy_per_role(&args.out, addrs, args.force)?;
    writeln!(
        out,
        "deployment of the pool {} ({}; {}) written to {}:",
        args.pool.display(),
        pool.manifest.task,
        pool.manifest
            .experts
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display()
    )?;
    for (folder, addr, run) in [
        (
            "dealer",
            Some(&args.dealer),
            "securerouter dealer --deployment dealer",
        ),
        (
            "p0",
            Some(&args.p0),
            "securerouter serve --party 0 --deployment p0",
        ),
        (
            "p1",
            Some(&args.p1),
            "securerouter serve --party 1 --deployment p1",
        ),
        (
            "client",
            None,
            "securerouter client --deployment client --text \"...\"",
        ),
    ] {
        let at = addr.map_or_else(|| "the client's host".to_string(), ToString::to_string);
        writeln!(out, "  {folder}/  to {at}, then: {run}")?;
    }
    writeln!(
        out,
        "Every folder but its deployment.json, client.json and client.bundle is secret: copy \
         each to its own host only (the dealer's model file holds masks, no weight)."
    )?;
    Ok(())
}
