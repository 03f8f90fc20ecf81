//! The smoke harness: runs a [`Target`] over its seeds and mutants of them for a fixed time or
//! number of inputs, and reports the first input that panics, runs over the per-input time
//! budget, or makes the decoder allocate far more than the input justifies.
//!
//! Panics are caught with [`std::panic::catch_unwind`]; a panic hook records the message and
//! where it was raised (and keeps the default report off the terminal). An input that never
//! returns is caught by a watchdog thread, which saves it, prints the report and ends the
//! process with exit status 1 (a hung decoder cannot be unwound). Every finding is saved to a
//! file and printed as a hex dump, so it can be replayed (`fuzz-smoke --reproduce FILE TARGET`).

use crate::Target;
use crate::alloc;
use crate::mutate::{Rng, mutate};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How long and how hard to fuzz each target.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time spent on each target (after its seeds).
    pub time_per_target: Duration,
    /// Stop a target after this many inputs even if time is left.
    pub max_inputs: Option<u64>,
    /// An input that takes longer than this (twice in a row) is a finding.
    pub input_budget: Duration,
    /// An input still running after this long is a hang: the watchdog reports it and exits.
    pub hang_limit: Duration,
    /// Bytes an input may make live at once, above what was live before it: this plus
    /// [`Config::alloc_per_input_byte`] times the input's length.
    pub alloc_limit: usize,
    /// See [`Config::alloc_limit`].
    pub alloc_per_input_byte: usize,
    /// Seed of the mutator (mixed with the target's name).
    pub seed: u64,
    /// Where findings are saved.
    pub out_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            time_per_target: Duration::from_secs(20),
            max_inputs: None,
            input_budget: Duration::from_secs(1),
            hang_limit: Duration::from_secs(20),
            alloc_limit: 64 << 20,
            alloc_per_input_byte: 256,
            seed: 0x5ec0_2e70_f022,
            out_dir: std::env::temp_dir().join("securerouter-fuzz"),
        }
    }
}

/// What went wrong with an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The target panicked, with the message and location.
    Panic(String),
    /// The input took longer than the budget (the faster of two runs).
    Slow(Duration),
    /// The input made this many bytes live at once (the largest single allocation second).
    Memory {
        /// Bytes above the starting point at the peak.
        grown: usize,
        /// The largest single allocation.
        largest: usize,
    },
    /// A seed (a valid encoding) was rejected: the seed generator or the decoder is broken.
    SeedRejected(usize),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "panic: {m}"),
            Failure::Slow(d) => write!(f, "slow input: {d:?} over the per-input budget"),
            Failure::Memory { grown, largest } => write!(
                f,
                "allocation: {grown} bytes live at once (largest single allocation {largest})"
            ),
            Failure::SeedRejected(i) => write!(f, "seed {i}, a valid encoding, was rejected"),
        }
    }
}

/// A failing input.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The target.
    pub target: &'static str,
    /// What went wrong.
    pub failure: Failure,
    /// The input.
    pub input: Vec<u8>,
    /// Where it was saved, if it could be.
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "FAILED target {}: {}", self.target, self.failure)?;
        match &self.saved {
            Some(p) => writeln!(
                f,
                "input ({} bytes) saved to {}; replay: cargo run -p securerouter-fuzz --bin \
                 fuzz-smoke -- --reproduce {} {}",
                self.input.len(),
                p.display(),
                p.display(),
                self.target
            )?,
            None => writeln!(f, "input ({} bytes), not saved", self.input.len())?,
        }
        write!(f, "{}", hex_dump(&self.input, 1024))
    }
}

/// What a target's run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs run, seeds included.
    pub inputs: u64,
    /// Inputs the target accepted (decoded at least in part).
    pub accepted: u64,
    /// Seeds among the inputs.
    pub seeds: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// The slowest input's time.
    pub slowest: Duration,
    /// The most bytes one input made live at once.
    pub most_memory: usize,
    /// The first failing input, if any.
    pub finding: Option<Finding>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<18} {:>9} inputs ({:>3} seeds, {:>5.1}% accepted) in {:>5.1} s, slowest {:>8.2?}, \
             peak {:>6} KiB: {}",
            self.target,
            self.inputs,
            self.seeds,
            100.0 * self.accepted as f64 / self.inputs.max(1) as f64,
            self.elapsed.as_secs_f64(),
            self.slowest,
            self.most_memory >> 10,
            if self.finding.is_some() {
                "FAILED"
            } else {
                "ok"
            }
        )
    }
}

/// A hex dump of the first `limit` bytes of `data`, 32 a line.
pub fn hex_dump(data: &[u8], limit: usize) -> String {
    let mut s = String::new();
    for (i, line) in data[..data.len().min(limit)].chunks(32).enumerate() {
        let _ = write!(s, "  {:06x}:", i * 32);
        for b in line {
            let _ = write!(s, " {b:02x}");
        }
        s.push('\n');
    }
    if data.len() > limit {
        let _ = writeln!(s, "  ... {} more bytes", data.len() - limit);
    }
    s
}

thread_local! {
    /// Set while this thread runs a target: the hook records panics instead of printing them.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string payload)".into());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{at}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `target` once on `data`: the panic message on a panic, else whether it accepted.
pub fn run_one(target: &Target, data: &[u8]) -> Result<bool, String> {
    install_panic_hook();
    CATCHING.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(data)));
    CATCHING.with(|c| c.set(false));
    result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "(no message)".into())
    })
}

/// The input being run, for the watchdog.
struct Current {
    target: &'static str,
    started: Option<Instant>,
    input: Vec<u8>,
}

/// Saves a finding's input under `dir` as `<target>-<hash>.bin`.
pub fn save(dir: &Path, target: &str, input: &[u8]) -> Option<PathBuf> {
    // FNV-1a: a stable name for the same input.
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("{target}-{hash:016x}.bin"));
    std::fs::create_dir_all(dir).ok()?;
    std::fs::write(&path, input).ok()?;
    Some(path)
}

fn watchdog(current: Arc<Mutex<Current>>, cfg: &Config) -> Arc<Mutex<bool>> {
    let stop = Arc::new(Mutex::new(false));
    let stop2 = Arc::clone(&stop);
    let (limit, dir) = (cfg.hang_limit, cfg.out_dir.clone());
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(50).min(limit / 4));
            if *stop2.lock().unwrap_or_else(|e| e.into_inner()) {
                return;
            }
            let c = current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = c.started.filter(|t| t.elapsed() > limit) {
                let finding = Finding {
                    target: c.target,
                    failure: Failure::Slow(t.elapsed()),
                    saved: save(&dir, c.target, &c.input),
                    input: c.input.clone(),
                };
                eprintln!("{finding}");
                eprintln!(
                    "the input has not returned after {limit:?} (a hang): stopping the process"
                );
                std::process::exit(1);
            }
        }
    });
    stop
}

/// The outcome of one measured input.
struct Measured {
    result: Result<bool, String>,
    elapsed: Duration,
    memory: alloc::AllocStats,
}

fn measure(target: &Target, data: &[u8], current: &Mutex<Current>) -> Measured {
    {
        let mut c = current.lock().unwrap_or_else(|e| e.into_inner());
        c.input.clear();
        c.input.extend_from_slice(data);
        c.started = Some(Instant::now());
    }
    let base = alloc::reset_peak();
    let start = Instant::now();
    let result = run_one(target, data);
    let elapsed = start.elapsed();
    let memory = alloc::stats(base);
    current.lock().unwrap_or_else(|e| e.into_inner()).started = None;
    Measured {
        result,
        elapsed,
        memory,
    }
}

/// Runs `target` under `cfg`: its seeds first (each must be accepted), then mutants.
pub fn run_target(target: &Target, cfg: &Config) -> Report {
    let started = Instant::now();
    let seeds = (target.seeds)();
    let mut report = Report {
        target: target.name,
        inputs: 0,
        accepted: 0,
        seeds: seeds.len(),
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
        most_memory: 0,
        finding: None,
    };
    let current = Arc::new(Mutex::new(Current {
        target: target.name,
        started: None,
        input: Vec::new(),
    }));
    let stop = watchdog(Arc::clone(&current), cfg);
    let name_hash = target
        .name
        .bytes()
        .fold(cfg.seed, |h, b| h.rotate_left(8) ^ u64::from(b));
    let mut rng = Rng::new(name_hash);
    // Mutants the target accepted join the seeds as bases (bounded).
    let mut pool = seeds.clone();
    let pool_cap = seeds.len() + 512;
    let mut data = Vec::new();
    let deadline = started + cfg.time_per_target;
    let mut seed_index = 0;
    loop {
        let is_seed = seed_index < seeds.len();
        if is_seed {
            data.clone_from(&seeds[seed_index]);
        } else {
            if Instant::now() >= deadline || cfg.max_inputs.is_some_and(|m| report.inputs >= m) {
                break;
            }
            if rng.one_in(64) {
                // Now and then plain random bytes.
                let n = rng.below(256);
                data.clear();
                data.extend((0..n).map(|_| rng.next_u64() as u8));
            } else {
                data.clone_from(&pool[rng.below(pool.len())]);
                mutate(&mut rng, &mut data, &pool);
            }
        }
        let mut m = measure(target, &data, &current);
        report.inputs += 1;
        if m.result.is_ok() && m.elapsed > cfg.input_budget {
            // Once more, in case the machine was busy.
            let again = measure(target, &data, &current);
            m.elapsed = m.elapsed.min(again.elapsed);
        }
        report.slowest = report.slowest.max(m.elapsed);
        report.most_memory = report.most_memory.max(m.memory.grown());
        let alloc_limit = cfg
            .alloc_limit
            .saturating_add(cfg.alloc_per_input_byte.saturating_mul(data.len()));
        let failure = match m.result {
            Err(message) => Some(Failure::Panic(message)),
            Ok(_) if m.elapsed > cfg.input_budget => Some(Failure::Slow(m.elapsed)),
            Ok(_) if m.memory.grown() > alloc_limit => Some(Failure::Memory {
                grown: m.memory.grown(),
                largest: m.memory.largest,
            }),
            Ok(false) if is_seed => Some(Failure::SeedRejected(seed_index)),
            Ok(accepted) => {
                if accepted {
                    report.accepted += 1;
                    if !is_seed {
                        if pool.len() < pool_cap {
                            pool.push(data.clone());
                        } else {
                            let i = seeds.len() + rng.below(pool_cap - seeds.len());
                            pool[i].clone_from(&data);
                        }
                    }
                }
                None
            }
        };
        if let Some(failure) = failure {
            report.finding = Some(Finding {
                target: target.name,
                failure,
                saved: save(&cfg.out_dir, target.name, &data),
                input: data.clone(),
            });
            break;
        }
        if is_seed {
            seed_index += 1;
        }
    }
    *stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
    report.elapsed = started.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_inputs: u64) -> Config {
        Config {
            time_per_target: Duration::from_secs(60),
            max_inputs: Some(max_inputs),
            out_dir: std::env::temp_dir().join("securerouter-fuzz-harness-tests"),
            ..Config::default()
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        vec![b"SEED: a valid input".to_vec()]
    }

    /// Panics on inputs whose sixth byte is 0x42 (no seed has it; one mutation makes it).
    fn panics_on_a_byte(data: &[u8]) -> bool {
        if data.get(5) == Some(&0x42) {
            let v: Vec<u8> = Vec::new();
            let _ = v[data.len()];
        }
        true
    }

    #[test]
    fn a_target_that_panics_on_some_input_is_reported_with_that_input() {
        let t = Target {
            name: "test-panic",
            covers: "a planted bug",
            run: panics_on_a_byte,
            seeds,
        };
        let report = run_target(&t, &config(200_000));
        let finding = report.finding.expect("the planted panic is found");
        assert_eq!(finding.target, "test-panic");
        assert!(
            matches!(&finding.failure, Failure::Panic(m) if m.contains("index out of bounds") && m.contains("harness.rs")),
            "{:?}",
            finding.failure
        );
        assert_eq!(finding.input.get(5), Some(&0x42));
        // The saved file replays the panic.
        let saved = std::fs::read(finding.saved.as_ref().expect("saved")).unwrap();
        assert_eq!(saved, finding.input);
        assert!(run_one(&t, &saved).is_err());
        assert!(finding.to_string().contains("FAILED target test-panic"));
        assert!(report.inputs < 200_000);
    }

    #[test]
    fn a_clean_target_runs_every_input_and_finds_nothing() {
        let t = Target {
            name: "test-clean",
            covers: "nothing",
            run: |d| d.len() % 2 == 0,
            seeds: || vec![vec![0; 4], vec![1; 8]],
        };
        let report = run_target(&t, &config(5000));
        assert!(report.finding.is_none(), "{:?}", report.finding);
        assert_eq!(report.inputs, 5000);
        assert!(report.accepted > 0 && report.accepted < 5000);
    }

    #[test]
    fn a_slow_input_is_a_finding() {
        let t = Target {
            name: "test-slow",
            covers: "a planted slow path",
            run: |d| {
                if d.first() == Some(&0xff) {
                    std::thread::sleep(Duration::from_millis(300));
                }
                true
            },
            seeds: || vec![vec![0xff, 1, 2]],
        };
        let cfg = Config {
            input_budget: Duration::from_millis(100),
            ..config(10)
        };
        let report = run_target(&t, &cfg);
        let finding = report.finding.expect("the slow seed is reported");
        assert!(
            matches!(finding.failure, Failure::Slow(d) if d >= Duration::from_millis(300)),
            "{:?}",
            finding.failure
        );
    }

    #[test]
    fn an_oversized_allocation_is_a_finding() {
        let t = Target {
            name: "test-alloc",
            covers: "a planted allocation",
            run: |d| {
                if d.first() == Some(&7) {
                    let v = vec![1u8; 100 << 20];
                    std::hint::black_box(&v);
                }
                true
            },
            seeds: || vec![vec![7]],
        };
        let report = run_target(&t, &config(10));
        let finding = report.finding.expect("the allocation is reported");
        assert!(
            matches!(finding.failure, Failure::Memory { largest, .. } if largest >= 100 << 20),
            "{:?}",
            finding.failure
        );
    }

    #[test]
    fn a_rejected_seed_is_a_finding() {
        let t = Target {
            name: "test-seed",
            covers: "a broken seed generator",
            run: |d| !d.is_empty(),
            seeds: || vec![vec![1], Vec::new()],
        };
        let report = run_target(&t, &config(10));
        let finding = report.finding.expect("the empty seed is rejected");
        assert_eq!(finding.failure, Failure::SeedRejected(1));
    }
}
