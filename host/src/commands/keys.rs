//! `securerouter keys`: create a deployment, manage its clients, export one service's files.

use anyhow::Context;
use clap::{Args, Subcommand};
use securerouter_ml::router::RouterHeadShape;
use securerouter_runtime::deployment::{DeploymentDir, Role};
use securerouter_runtime::net::ServiceAddr;
use std::io::Write;
use std::path::PathBuf;

/// `securerouter keys`' options: a new deployment, or an action on an existing one.
#[derive(Debug, Args, PartialEq, Eq)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct KeysArgs {
    /// Manage the clients of an existing deployment instead.
    #[command(subcommand)]
    pub action: Option<KeysAction>,
    /// Directory to write the deployment into.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Where the dealer is reached (HOST:PORT, a name or an address).
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub dealer: ServiceAddr,
    /// Where P0 is reached.
    #[arg(long, default_value = "127.0.0.1:7101")]
    pub p0: ServiceAddr,
    /// Where P1 is reached.
    #[arg(long, default_value = "127.0.0.1:7102")]
    pub p1: ServiceAddr,
    /// Replace the keys of an existing deployment in that directory.
    #[arg(long)]
    pub force: bool,
}

/// What `securerouter keys` does to an existing deployment.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum KeysAction {
    /// Add a client with a key of its own (`client-NAME.key` in the deployment directory, to
    /// hand to that client); the servers' caps on sessions in flight apply per client key.
    AddClient {
        /// The client's name: 1 to 32 of a-z, 0-9, '-' and '_'.
        name: String,
        /// The deployment directory.
        #[arg(long)]
        deployment: PathBuf,
    },
    /// Remove a client: the servers refuse its key once restarted; its key file is deleted.
    RevokeClient {
        /// The client's name.
        name: String,
        /// The deployment directory.
        #[arg(long)]
        deployment: PathBuf,
    },
    /// Copy the files one service needs (deployment.json, its key, its model file) into a
    /// folder of their own, to put on that service's host: the dealer's folder holds no
    /// weight of the model, only masks independent of it.
    Export {
        /// Which service.
        #[arg(long, value_enum)]
        role: ServiceRole,
        /// The deployment directory.
        #[arg(long)]
        deployment: PathBuf,
        /// The folder to write (created; refused if it holds files already).
        #[arg(long)]
        out: PathBuf,
    },
}

/// A service of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceRole {
    /// The dealer.
    Dealer,
    /// Server P0.
    P0,
    /// Server P1.
    P1,
}

/// Runs `securerouter keys`.
pub fn run(args: &KeysArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.action {
        Some(KeysAction::AddClient { name, deployment }) => {
            let path = DeploymentDir::open(deployment)?.add_client(name)?;
            writeln!(
                out,
                "client {name:?} added; its key is {} (hand it to that client only; restart P0 and P1 to accept it)",
                path.display()
            )?;
        }
        Some(KeysAction::RevokeClient { name, deployment }) => {
            DeploymentDir::open(deployment)?.revoke_client(name)?;
            writeln!(
                out,
                "client {name:?} revoked; restart P0 and P1 to refuse its key"
            )?;
        }
        Some(KeysAction::Export {
            role,
            deployment,
            out: dest,
        }) => {
            let role = match role {
                ServiceRole::Dealer => Role::Dealer,
                ServiceRole::P0 => Role::P0,
                ServiceRole::P1 => Role::P1,
            };
            let files = DeploymentDir::open(deployment)?.export(role, dest)?;
            writeln!(
                out,
                "wrote {} for the {role:?} host: {}",
                dest.display(),
                files.join(", ")
            )?;
        }
        None => {
            let dir = args
                .out
                .as_deref()
                .context("--out names the directory to write into")?;
            let d = DeploymentDir::create(
                dir,
                [args.dealer.clone(), args.p0.clone(), args.p1.clone()],
                RouterHeadShape::DEMO,
                args.force,
            )?;
            writeln!(out, "deployment written to {}", d.path().display())?;
            for (name, service) in [
                ("dealer", &d.deployment.dealer),
                ("P0    ", &d.deployment.p0),
                ("P1    ", &d.deployment.p1),
            ] {
                writeln!(out, "{name} {} key {}", service.addr, service.public_key)?;
            }
        }
    }
    Ok(())
}
