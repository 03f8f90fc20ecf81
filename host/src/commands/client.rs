//! `securerouter client`: route feature vectors through a deployment's encrypted router head.

use super::service::{link_config, runtime};
use anyhow::{Context, bail};
use clap::Args;
use securerouter_core::prg::{AesCtr, Domain};
use securerouter_ml::router::RouterHeadShape;
use securerouter_runtime::client::Client;
use securerouter_runtime::deployment::{DeploymentDir, random_seed};
use std::io::Write;
use std::path::PathBuf;

/// `securerouter client`'s options.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct ClientArgs {
    /// The deployment directory (from `securerouter keys`).
    #[arg(long)]
    pub deployment: PathBuf,
    /// Comma-separated features of one query (as many as the router head takes).
    #[arg(long, conflicts_with = "random")]
    pub input: Option<String>,
    /// Instead of --input: this many random queries in one batch.
    #[arg(long)]
    pub random: Option<usize>,
    /// The client whose key to use (`keys add-client`).
    #[arg(long, default_value = "client")]
    pub name: String,
    /// Seconds to wait for a server before failing.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Runs one batch of queries and prints the result as one JSON line.
pub fn run(args: &ClientArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let d = DeploymentDir::open(&args.deployment)?;
        let features = d
            .plain_model()
            .map(|m| m.shape.features)
            .unwrap_or(RouterHeadShape::DEMO.features);
        let x: Vec<f64> = match (&args.input, args.random) {
            (Some(text), None) => text
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .with_context(|| format!("--input value {v:?} is not a number"))
                })
                .collect::<anyhow::Result<_>>()?,
            (None, Some(rows)) => {
                let mut rng = AesCtr::new(&random_seed(), Domain(1));
                (0..rows * features)
                    .map(|_| (rng.next_u64() as f64 / u64::MAX as f64) * 4.0 - 2.0)
                    .collect()
            }
            _ => bail!("give either --input or --random"),
        };
        let client = Client::new(
            d.client_identity(&args.name)?,
            d.deployment.clone(),
            link_config(args.timeout),
        );
        let result = client.route(features, &x).await?;
        writeln!(out, "{}", serde_json::to_string(&result)?)?;
        Ok(())
    })
}
