//! `fuzz-smoke`: runs every fuzz target (or those named) over its generated seeds and mutants
//! of them for a fixed time each, on the stable toolchain, and fails on any panic, slow input
//! or oversized allocation. CI runs it; see `fuzz/README.md`.

use clap::Parser;
use securerouter_fuzz::alloc::CountingAlloc;
use securerouter_fuzz::harness::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Smoke-fuzzes SecureRouter's decoders (deterministic mutations of valid encodings).
#[derive(Parser, Debug)]
struct Args {
    /// Targets to run (default: all).
    targets: Vec<String>,
    /// Seconds of mutants per target (after its seeds).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Stop each target after this many inputs.
    #[arg(long)]
    inputs: Option<u64>,
    /// Per-input time budget in milliseconds: a slower input (twice) is a failure.
    #[arg(long, default_value_t = 1000)]
    budget_ms: u64,
    /// An input still running after this many seconds is a hang (the process stops).
    #[arg(long, default_value_t = 20)]
    hang_seconds: u64,
    /// Bytes an input may make live at once (plus 256 per input byte).
    #[arg(long, default_value_t = 64 << 20)]
    alloc_limit: usize,
    /// The mutator's seed.
    #[arg(long, default_value_t = Config::default().seed)]
    seed: u64,
    /// Where failing inputs are saved.
    #[arg(long, default_value = "target/fuzz-smoke")]
    out: PathBuf,
    /// List the targets and what they cover.
    #[arg(long)]
    list: bool,
    /// Runs one target (the single name given) on this file once and reports.
    #[arg(long, value_name = "FILE")]
    reproduce: Option<PathBuf>,
    /// Writes every target's seeds to `DIR/<target>/` (a starting corpus for cargo-fuzz).
    #[arg(long, value_name = "DIR")]
    write_corpus: Option<PathBuf>,
}

fn main() -> ExitCode {
    let code = run();
    // The file targets' scratch files: model files and bundles, some with secret-looking bytes.
    securerouter_fuzz::targets::files::remove_scratch();
    code
}

fn run() -> ExitCode {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Decoders return anyhow errors by the million here: with RUST_BACKTRACE set, each
        // would capture a backtrace (milliseconds). Our panic reports carry the location.
        // SAFETY: the first statement of `main`; no other thread exists yet to read the
        // environment.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let args = Args::parse();
    let all = securerouter_fuzz::all_targets();
    if args.list {
        for t in &all {
            println!("{:<18} {}", t.name, t.covers);
        }
        return ExitCode::SUCCESS;
    }
    let unknown: Vec<&String> = args
        .targets
        .iter()
        .filter(|n| !all.iter().any(|t| &t.name == n))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown targets {unknown:?}; --list names them");
        return ExitCode::from(2);
    }
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|t| args.targets.is_empty() || args.targets.iter().any(|n| n == t.name))
        .collect();
    if let Some(file) = &args.reproduce {
        let [t] = &chosen[..] else {
            eprintln!("--reproduce needs exactly one target name");
            return ExitCode::from(2);
        };
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let base = securerouter_fuzz::alloc::reset_peak();
        let start = Instant::now();
        let result = harness::run_one(t, &data);
        let took = start.elapsed();
        let memory = securerouter_fuzz::alloc::stats(base);
        return match result {
            Ok(accepted) => {
                println!(
                    "{}: no panic in {took:?} (accepted: {accepted}), {} bytes live at most, \
                     largest allocation {}",
                    t.name,
                    memory.grown(),
                    memory.largest
                );
                ExitCode::SUCCESS
            }
            Err(m) => {
                println!("{}: panic: {m}", t.name);
                ExitCode::FAILURE
            }
        };
    }
    if let Some(dir) = &args.write_corpus {
        for t in &chosen {
            let d = dir.join(t.name);
            let seeds = (t.seeds)();
            for (i, s) in seeds.iter().enumerate() {
                if let Err(e) = std::fs::create_dir_all(&d)
                    .and_then(|()| std::fs::write(d.join(format!("seed-{i:03}")), s))
                {
                    eprintln!("cannot write the corpus under {}: {e}", d.display());
                    return ExitCode::FAILURE;
                }
            }
            println!("{}: {} seeds in {}", t.name, seeds.len(), d.display());
        }
        return ExitCode::SUCCESS;
    }
    let cfg = Config {
        time_per_target: Duration::from_secs_f64(args.seconds),
        max_inputs: args.inputs,
        input_budget: Duration::from_millis(args.budget_ms),
        hang_limit: Duration::from_secs(args.hang_seconds),
        alloc_limit: args.alloc_limit,
        seed: args.seed,
        out_dir: args.out.clone(),
        ..Config::default()
    };
    println!(
        "fuzz-smoke: {} targets, {:.0} s each, per-input budget {:?}, seed {:#x}",
        chosen.len(),
        args.seconds,
        cfg.input_budget,
        cfg.seed
    );
    let start = Instant::now();
    let mut failed = Vec::new();
    for t in &chosen {
        let report = harness::run_target(t, &cfg);
        println!("{report}");
        if let Some(f) = &report.finding {
            eprintln!("{f}");
            failed.push(t.name);
        }
    }
    let total: f64 = start.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!(
            "fuzz-smoke: all {} targets passed in {total:.1} s",
            chosen.len()
        );
        ExitCode::SUCCESS
    } else {
        println!("fuzz-smoke: FAILED targets {failed:?} ({total:.1} s)");
        ExitCode::FAILURE
    }
}
