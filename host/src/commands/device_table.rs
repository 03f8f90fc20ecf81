//! `securerouter device-table`: a deployment's embeddings as the device client's flash table.

use anyhow::Context;
use clap::Args;
use securerouter_ml::ClientBundle;
use std::io::Write;
use std::path::PathBuf;

/// `securerouter device-table`'s options.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct DeviceTableArgs {
    /// The client bundle to convert (a deployment's `client.bundle`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Where to write the table.
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes the table.
pub fn run(args: &DeviceTableArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table = ClientBundle::load(&args.bundle)?.device_table()?;
    std::fs::write(&args.out, &table).with_context(|| format!("writing {}", args.out.display()))?;
    writeln!(out, "wrote {} ({} bytes)", args.out.display(), table.len())?;
    Ok(())
}
