//! Maps the command line's types to the libraries' option structs and runs the command.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{self, Cli, Command};
use crate::{demo, doctor};
use anyhow::{Context, bail};
use securerouter_bench as bench;
use securerouter_circuits as circuit;
use securerouter_core::share::Party;
use securerouter_kernels as kernels;
use securerouter_ml::{self as model, assets, pool_format};
use securerouter_runtime::deployment::{self, DeploymentDir, Role};
use securerouter_runtime::{client, dealer, net, server};
#[cfg(feature = "train")]
use securerouter_train as train;

/// Runs the parsed command, writing its report to `out`.
///
/// # Errors
/// Whatever the command fails with (for `doctor`, only a failure to write to `out`).
pub(crate) fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match &cli.command {
        Command::Doctor => doctor::run(out),
        Command::Demo {
            text,
            route,
            cache_dir,
            pool_dir,
            timeout,
        } => demo::run(
            &demo::DemoOptions {
                cache: cache_dir.clone(),
                pool_dir: pool_dir.clone(),
                mode: *route,
                texts: text.clone(),
                timeout_s: *timeout,
            },
            out,
        ),
        Command::Assets {
            action: cli::AssetsAction::Fetch { cache_dir },
        } => {
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
        Command::Keys {
            action: Some(action),
            ..
        } => match action {
            cli::KeysAction::AddClient { name, deployment } => {
                let path = DeploymentDir::open(deployment)?.add_client(name)?;
                writeln!(
                    out,
                    "client {name:?} added; its key is {} (hand it to that client only; restart P0 and P1 to accept it)",
                    path.display()
                )?;
                Ok(())
            }
            cli::KeysAction::RevokeClient { name, deployment } => {
                DeploymentDir::open(deployment)?.revoke_client(name)?;
                writeln!(
                    out,
                    "client {name:?} revoked; restart P0 and P1 to refuse its key"
                )?;
                Ok(())
            }
            cli::KeysAction::Export {
                role,
                deployment,
                out: dest,
            } => {
                let role = match role {
                    cli::ServiceRole::Dealer => Role::Dealer,
                    cli::ServiceRole::P0 => Role::P0,
                    cli::ServiceRole::P1 => Role::P1,
                };
                let files = DeploymentDir::open(deployment)?.export(role, dest)?;
                writeln!(
                    out,
                    "wrote {} for the {role:?} host: {}",
                    dest.display(),
                    files.join(", ")
                )?;
                Ok(())
            }
        },
        Command::Keys {
            action: None,
            out: dir,
            dealer,
            p0,
            p1,
            force,
        } => {
            let dir = dir
                .as_deref()
                .context("--out names the directory to write into")?;
            let d = DeploymentDir::create(
                dir,
                [*dealer, *p0, *p1],
                model::router::RouterHeadShape::DEMO,
                *force,
            )?;
            writeln!(out, "deployment written to {}", d.path().display())?;
            writeln!(
                out,
                "dealer {} key {}",
                d.deployment.dealer.addr, d.deployment.dealer.public_key
            )?;
            writeln!(
                out,
                "P0     {} key {}",
                d.deployment.p0.addr, d.deployment.p0.public_key
            )?;
            writeln!(
                out,
                "P1     {} key {}",
                d.deployment.p1.addr, d.deployment.p1.public_key
            )?;
            Ok(())
        }
        Command::Dealer {
            deployment,
            timeout,
            limits,
            exit_with_stdin,
        } => runtime()?.block_on(until_stdin_closes(*exit_with_stdin, async {
            let d = DeploymentDir::open(deployment)?;
            let service = dealer::DealerService::new(
                d.identity(Role::Dealer)?,
                [d.deployment.p0.key()?, d.deployment.p1.key()?],
                d.model(Role::Dealer)?,
                link_config(*timeout),
                limits.limits(),
            )?;
            let listener = bind(d.deployment.dealer.addr).await?;
            Arc::new(service).run(listener).await;
            Ok(())
        })),
        Command::Serve {
            party,
            deployment,
            timeout,
            prefetch_keys,
            gpu,
            kernel_threads,
            limits,
            exit_with_stdin,
        } => runtime()?.block_on(until_stdin_closes(*exit_with_stdin, async {
            let d = DeploymentDir::open(deployment)?;
            let (party, role, addr) = match party {
                0 => (Party::P0, Role::P0, d.deployment.p0.addr),
                _ => (Party::P1, Role::P1, d.deployment.p1.addr),
            };
            let service = server::ServerService::new(
                party,
                d.identity(role)?,
                d.deployment.clone(),
                d.client_keys()?,
                d.model(role)?,
                link_config(*timeout),
            )?
            .with_prefetch_keys(*prefetch_keys)
            .with_limits(limits.limits())?
            .with_kernels(kernels::ServerKernels::select(*gpu, *kernel_threads))?;
            let listener = bind(addr).await?;
            Arc::new(service).run(listener).await;
            Ok(())
        })),
        Command::Train { action } => train_command(action, out),
        Command::Bench {
            json,
            breakdown,
            minilm_layers,
            expert,
            pool,
            router_only,
            sweep,
            cost_weights,
            plot,
            route,
            pool_dir,
            layers,
            hidden,
            heads,
            ffn,
            seq,
            queries,
            cache_dir,
            timeout,
            gpu,
            kernel_threads,
        } => {
            if *sweep {
                #[cfg(feature = "train")]
                {
                    let opts = bench::sweep::SweepOptions {
                        pool_dir: pool_dir.clone(),
                        cache: cache_dir.clone(),
                        mode: *route,
                        queries: *queries,
                        weights: cost_weights.clone(),
                        plot: plot.clone(),
                        timeout_s: *timeout,
                    };
                    return bench::sweep::run(&opts, out).map(|_| ());
                }
                #[cfg(not(feature = "train"))]
                {
                    // Options of the sweep alone, which this build cannot run.
                    let _ = (cost_weights, plot);
                    return Err(without_train(
                        "`bench --pool --sweep` (it retrains the router per cost weight)",
                    ));
                }
            }
            if *pool {
                let opts = bench::pool::PoolBenchOptions {
                    pool_dir: pool_dir.clone(),
                    cache: cache_dir.clone(),
                    mode: *route,
                    queries: *queries,
                    timeout_s: *timeout,
                    gpu: *gpu,
                    kernel_threads: *kernel_threads,
                };
                if *router_only {
                    return bench::router_agreement::run(&opts, *json, out).map(|_| ());
                }
                return bench::pool::run(&opts, *json, out).map(|_| ());
            }
            if pool_dir.is_some() && expert.is_none() {
                anyhow::bail!("--pool-dir goes with --expert or --pool");
            }
            let model = match (layers, hidden, heads, ffn) {
                _ if expert.is_some() => bench::BenchModel::PoolExpert {
                    pool: pool_format::pool_dir(pool_dir.as_deref(), cache_dir.as_deref())?,
                    name: expert.clone().unwrap_or_default(),
                },
                (Some(layers), Some(hidden), Some(heads), Some(ffn)) => {
                    bench::BenchModel::Random(circuit::BertShape {
                        layers: *layers,
                        hidden: *hidden,
                        heads: *heads,
                        ffn: *ffn,
                        classes: 2,
                    })
                }
                _ => bench::BenchModel::MiniLm {
                    layers: *minilm_layers,
                },
            };
            let opts = bench::BenchOptions {
                model,
                seq_len: *seq,
                queries: *queries,
                breakdown: *breakdown,
                cache: cache_dir.clone(),
                timeout_s: *timeout,
                gpu: *gpu,
                kernel_threads: *kernel_threads,
            };
            bench::run(&opts, *json, out).map(|_| ())
        }
        Command::DeviceTable { bundle, out: path } => {
            let table = model::ClientBundle::load(bundle)?.device_table()?;
            std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "wrote {} ({} bytes)", path.display(), table.len())?;
            Ok(())
        }
        Command::Client {
            deployment,
            input,
            random,
            name,
            timeout,
        } => runtime()?.block_on(async {
            let d = DeploymentDir::open(deployment)?;
            let features = d
                .plain_model()
                .map(|m| m.shape.features)
                .unwrap_or(model::router::RouterHeadShape::DEMO.features);
            let x: Vec<f64> = match (input, random) {
                (Some(text), None) => text
                    .split(',')
                    .map(|v| {
                        v.trim()
                            .parse::<f64>()
                            .with_context(|| format!("--input value {v:?} is not a number"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                (None, Some(rows)) => {
                    let seed = deployment::random_seed();
                    let mut rng = securerouter_core::prg::AesCtr::new(
                        &seed,
                        securerouter_core::prg::Domain(1),
                    );
                    (0..rows * features)
                        .map(|_| (rng.next_u64() as f64 / u64::MAX as f64) * 4.0 - 2.0)
                        .collect()
                }
                _ => bail!("give either --input or --random"),
            };
            let client = client::Client::new(
                d.client_identity(name)?,
                d.deployment.clone(),
                link_config(*timeout),
            );
            let result = client.route(features, &x).await?;
            writeln!(out, "{}", serde_json::to_string(&result)?)?;
            Ok(())
        }),
    }
}

/// Runs `securerouter train`: the command line's options mapped to the training library's,
/// each expert's cost measured with [`bench::expert_cost`].
#[cfg(feature = "train")]
fn train_command(action: &cli::TrainAction, out: &mut dyn Write) -> anyhow::Result<()> {
    use train::{expert, pool, router};
    match action {
        cli::TrainAction::Pool {
            cache_dir,
            pool_dir,
            experts,
            seq,
            epochs,
            limit,
            cost_queries,
            force,
        } => {
            let opts = pool::PoolOptions {
                cache: cache_dir.clone(),
                dir: pool_dir.clone(),
                expert_layers: experts.clone(),
                seq_len: *seq as usize,
                fine_tune: expert::FineTuneOptions {
                    epochs: *epochs,
                    ..expert::FineTuneOptions::default()
                },
                limit: *limit,
                cost_queries: *cost_queries,
                force: *force,
            };
            let m = pool::build_pool(
                &opts,
                &|req, out| bench::expert_cost(req, cache_dir.as_deref(), out).map_err(Into::into),
                out,
            )?;
            writeln!(out, "{}", serde_json::to_string(&m)?)?;
            Ok(())
        }
        cli::TrainAction::Router {
            cache_dir,
            pool_dir,
            task_weight,
            balance_weight,
            cost_weight,
            costs,
            tau,
            epochs,
            hidden,
            dry_run,
        } => {
            for (what, v) in [
                ("--task-weight", *task_weight),
                ("--balance-weight", *balance_weight),
                ("--cost-weight", *cost_weight),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("{what} must be a finite number ≥ 0, not {v}");
                }
            }
            if !(tau.is_finite() && *tau > 0.0) {
                bail!("--tau must be positive, not {tau}");
            }
            let dir = pool_format::pool_dir(pool_dir.as_deref(), cache_dir.as_deref())?;
            let opts = router::RouterOptions {
                hidden: *hidden,
                epochs: *epochs,
                tau: *tau,
                task_weight: *task_weight,
                balance_weight: *balance_weight,
                cost_weight: *cost_weight,
                ..router::RouterOptions::default()
            };
            let (_, report) = pool::train_pool_router(&dir, &opts, costs.as_deref(), !dry_run)?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
            Ok(())
        }
    }
}

/// `securerouter train` in a build without the `train` feature: refused, saying why.
#[cfg(not(feature = "train"))]
fn train_command(_: &cli::TrainAction, _: &mut dyn Write) -> anyhow::Result<()> {
    Err(without_train("`securerouter train`"))
}

/// The error of a command that needs the `train` feature, in a build without it.
#[cfg(not(feature = "train"))]
fn without_train(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs training, and this securerouter was built without the `train` feature \
         (build it with the default features, or with `--features train`)"
    )
}

/// Runs a service; with `watch`, only until standard input reaches its end or fails (the
/// supervisor that holds the pipe has gone), then returns, ending the process.
async fn until_stdin_closes(
    watch: bool,
    service: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    if !watch {
        return service.await;
    }
    let closed = async {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        served = service => served,
        () = closed => {
            tracing::warn!("standard input closed (the supervising process ended): exiting");
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn link_config(timeout_s: u64) -> net::LinkConfig {
    net::LinkConfig {
        io_timeout: Duration::from_secs(timeout_s.max(1)),
        ..net::LinkConfig::default()
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}
