//! `securerouter bench sweep`: retrains the router over a range of cost-loss weights,
//! measures each router's routed queries under MPC (dealer, P0 and P1 as processes), measures
//! each expert alone on the same sentences, and draws held-out accuracy against measured online
//! time per query (SVG, with plotters).
//!
//! Accuracy is the plaintext pool's on every held-out sentence (the secure router picks what
//! the plaintext one picks, see `bench pool`), so that the points are not the noise of a few
//! sentences; the cost axis is measured. Beside each router's measured point the plot shows
//! the paper's projection of its cost ([`projected_online_s`]: the router stage and the
//! experts alone, measured on the same sentences, weighted by the route distribution over all
//! held-out sentences).

use crate::error::{Error, Result, invalid};
use securerouter_circuits::{CircuitKind, RouteMode};
use securerouter_ml::assets;
use securerouter_ml::data::Example;
use securerouter_ml::pool_format::{load_held_out, pool_dir};
use securerouter_runtime::client::PoolAnswer;
use securerouter_runtime::local_cluster::ServerFlags;
use securerouter_runtime::served_pool::{ServedPool, embed_query_for};
use securerouter_train::pool::{SIGNALS, Signals};
use securerouter_train::router::{RouterOptions, evaluate, train_router};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the sweep runs.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The pool directory (default: the cache's `pool`).
    pub pool_dir: Option<PathBuf>,
    /// Asset cache.
    pub cache: Option<PathBuf>,
    /// Routing privacy mode of the routed queries.
    pub mode: RouteMode,
    /// Held-out sentences measured under MPC per point.
    pub queries: usize,
    /// Cost-loss weights.
    pub weights: Vec<f64>,
    /// The routers' other training options (the cost weight is each of `weights`).
    pub router: RouterOptions,
    /// Where the plot goes.
    pub plot: PathBuf,
    /// Seconds any link may stay silent.
    pub timeout_s: u64,
}

/// One point of the plot.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    /// The router's cost-loss weight, or `None` for a single expert.
    pub cost_weight: Option<f64>,
    /// The expert's name, for single experts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert: Option<String>,
    /// Accuracy on every held-out sentence (plaintext pool).
    pub held_out_accuracy: f64,
    /// Share of the held-out sentences routed to each expert (plaintext router).
    pub route_distribution: Vec<f64>,
    /// Online seconds per query under MPC (the slower server), measured.
    pub measured_online_s: f64,
    /// For a router: its online seconds per query as the paper projects them
    /// ([`projected_online_s`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_online_s: Option<f64>,
    /// Sentences the online time averages.
    pub measured_queries: usize,
}

/// The sweep's router options with cost weight `w`.
fn router_options(opts: &SweepOptions, w: f64) -> RouterOptions {
    RouterOptions {
        cost_weight: w,
        ..opts.router.clone()
    }
}

/// Runs the sweep: one JSON line per point on `out`, and the plot.
pub fn run(opts: &SweepOptions, out: &mut dyn Write) -> Result<Vec<SweepPoint>> {
    if opts.queries == 0 || opts.weights.is_empty() {
        invalid!("the sweep needs --queries ≥ 1 and at least one cost weight");
    }
    // Every router's options before minutes of measuring.
    for &w in &opts.weights {
        router_options(opts, w).check()?;
    }
    let cache = assets::cache_dir(opts.cache.as_deref())?;
    let dir = pool_dir(opts.pool_dir.as_deref(), Some(&cache))?;
    let mut pool = ServedPool::load(&dir, &cache)?;
    let k = pool.experts.len();
    let signals = Signals::load(&dir.join(SIGNALS), k)?;
    let costs = pool.manifest.online_costs()?;
    let mut texts = load_held_out(&dir, &pool.manifest, &cache)?;
    texts.truncate(opts.queries);
    let mut points = Vec::new();
    // Every expert alone and the router stage alone, on the same sentences.
    let mut kinds: Vec<CircuitKind> = (0..k).map(|e| CircuitKind::Expert(e as u8)).collect();
    kinds.push(CircuitKind::Router);
    let online = measure(&pool, &kinds, &texts, opts.timeout_s)?;
    let (expert_s, router_s) = (&online[..k], online[k]);
    for (e, entry) in pool.manifest.experts.iter().enumerate() {
        let mut dist = vec![0.0; k];
        dist[e] = 1.0;
        points.push(SweepPoint {
            cost_weight: None,
            expert: Some(entry.name.clone()),
            held_out_accuracy: entry.held_out_accuracy,
            route_distribution: dist,
            measured_online_s: online[e],
            projected_online_s: None,
            measured_queries: texts.len(),
        });
        let text = serde_json::to_string(points.last().unwrap()).map_err(Error::Json)?;
        writeln!(out, "{text}").map_err(Error::Output)?;
    }
    for &w in &opts.weights {
        let ropts = router_options(opts, w);
        pool.router.head = train_router(&signals.router_data()?, &costs, &ropts)?;
        let report = evaluate(&pool.router.head, &signals.test_data()?, &costs)?;
        let online = measure(
            &pool,
            &[CircuitKind::Routed(opts.mode)],
            &texts,
            opts.timeout_s,
        )?;
        let projected =
            projected_online_s(opts.mode, router_s, expert_s, &report.route_distribution);
        points.push(SweepPoint {
            cost_weight: Some(w),
            expert: None,
            held_out_accuracy: report.accuracy,
            route_distribution: report.route_distribution,
            measured_online_s: online[0],
            projected_online_s: Some(projected),
            measured_queries: texts.len(),
        });
        let text = serde_json::to_string(points.last().unwrap()).map_err(Error::Json)?;
        writeln!(out, "{text}").map_err(Error::Output)?;
    }
    plot(&points, opts.mode, &opts.plot)?;
    writeln!(out, "plot written to {}", opts.plot.display()).map_err(Error::Output)?;
    Ok(points)
}

/// A routed query's online seconds as the paper projects them: the router's overhead plus the
/// experts' costs weighted by how often each is chosen (`route_distribution`). In reveal-route
/// the router stage (`router_s`, which computes the summary expert's answer too) runs on every
/// query and expert k > 0 on a share p_k of them; in hide-route every expert runs on every
/// query.
pub fn projected_online_s(
    mode: RouteMode,
    router_s: f64,
    expert_s: &[f64],
    route_distribution: &[f64],
) -> f64 {
    let later: f64 = match mode {
        RouteMode::Reveal => expert_s
            .iter()
            .zip(route_distribution)
            .skip(1)
            .map(|(c, p)| c * p)
            .sum(),
        RouteMode::Hide => expert_s.iter().skip(1).sum(),
    };
    router_s + later
}

/// Mean online seconds per query of each circuit over `texts`, on one fresh deployment of
/// `pool`.
fn measure(
    pool: &ServedPool,
    kinds: &[CircuitKind],
    texts: &[Example],
    timeout_s: u64,
) -> Result<Vec<f64>> {
    let (cluster, bundle) = pool.start_local(
        timeout_s,
        ServerFlags {
            prefetch_keys: true,
            ..ServerFlags::default()
        },
    )?;
    let client = cluster.client()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::AsyncRuntime)?;
    let shape = pool.shape();
    let bar = securerouter_ml::progress::Progress::new(
        kinds.len() * texts.len(),
        "the routers and experts under MPC",
    );
    let mut online = vec![0.0; kinds.len()];
    for e in texts {
        let (t, pair) = (e.text.as_str(), e.text_pair.as_deref());
        for (i, &kind) in kinds.iter().enumerate() {
            let session = if kind == CircuitKind::Router {
                // The router alone answers scores, not a pool's logits: run it as a session.
                let x = embed_query_for(&bundle, 0, t, pair, pool.seq_len())?;
                runtime.block_on(client.run(kind, shape.input_cols(kind), &x))?
            } else {
                let input = |k| Ok(embed_query_for(&bundle, k, t, pair, pool.seq_len())?);
                let a: PoolAnswer =
                    runtime.block_on(client.ask_pool(&shape, kind, pool.seq_len(), input))?;
                a.outputs
            };
            online[i] += session.worst_server().online_s;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(online.iter().map(|s| s / texts.len() as f64).collect())
}

/// Draws accuracy against measured online time: the routers as a line (each point labelled with
/// its cost weight), their projected costs as a second line of hollow points, the single
/// experts as triangles.
fn plot(points: &[SweepPoint], mode: RouteMode, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let xs = points
        .iter()
        .map(|p| p.measured_online_s.max(p.projected_online_s.unwrap_or(0.0)));
    let ys = points.iter().map(|p| 100.0 * p.held_out_accuracy);
    let (x1, y0, y1) = (
        xs.fold(0.0, f64::max) * 1.15,
        ys.clone().fold(f64::MAX, f64::min) - 1.0,
        ys.fold(0.0, f64::max) + 1.0,
    );
    let draw =
        || -> Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "SecureRouter pool: accuracy against measured MPC cost ({})",
                        mode.name()
                    ),
                    ("sans-serif", 18),
                )
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("online seconds per query under MPC (measured, 2 cores)")
                .y_desc("held-out accuracy (%)")
                .draw()?;
            let routers: Vec<(f64, f64, f64)> = points
                .iter()
                .filter_map(|p| {
                    p.cost_weight
                        .map(|w| (p.measured_online_s, 100.0 * p.held_out_accuracy, w))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(
                    routers.iter().map(|&(x, y, _)| (x, y)),
                    &BLUE,
                ))?
                .label("routed (router retrained per cost weight)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
            chart.draw_series(
                routers
                    .iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, BLUE.filled())),
            )?;
            chart.draw_series(routers.iter().map(|&(x, y, w)| {
                Text::new(format!("w={w}"), (x, y + 0.15), ("sans-serif", 12))
            }))?;
            let projected: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| Some((p.projected_online_s?, 100.0 * p.held_out_accuracy)))
                .collect();
            let green = RGBColor(0, 140, 70);
            chart
                .draw_series(LineSeries::new(projected.iter().copied(), green))?
                .label("routed, projected: router + Σ p_k·c_k (the paper's formula)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green));
            chart.draw_series(
                projected
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, green.stroke_width(2))),
            )?;
            chart
                .draw_series(points.iter().filter(|p| p.expert.is_some()).map(|p| {
                    TriangleMarker::new(
                        (p.measured_online_s, 100.0 * p.held_out_accuracy),
                        7,
                        RED.filled(),
                    )
                }))?
                .label("single experts")
                .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, RED.filled()));
            chart.draw_series(points.iter().filter_map(|p| {
                p.expert.as_ref().map(|e| {
                    Text::new(
                        e.clone(),
                        (p.measured_online_s, 100.0 * p.held_out_accuracy - 0.5),
                        ("sans-serif", 12),
                    )
                })
            }))?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()?;
            root.present()?;
            Ok(())
        };
    draw().map_err(|e| Error::Plot {
        path: path.to_path_buf(),
        source: e.to_string().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projection_weights_the_experts_by_their_routes() {
        let experts = [0.1, 0.2, 1.0];
        let dist = [0.5, 0.25, 0.25];
        let reveal = projected_online_s(RouteMode::Reveal, 0.12, &experts, &dist);
        assert!((reveal - (0.12 + 0.25 * 0.2 + 0.25 * 1.0)).abs() < 1e-12);
        let hide = projected_online_s(RouteMode::Hide, 0.12, &experts, &dist);
        assert!((hide - (0.12 + 0.2 + 1.0)).abs() < 1e-12);
        // Everything to the summary: the router stage alone.
        assert_eq!(
            projected_online_s(RouteMode::Reveal, 0.12, &experts, &[1.0, 0.0, 0.0]),
            0.12
        );
    }

    #[test]
    fn the_plot_shows_every_router_and_expert() {
        let point = |w: Option<f64>, e: Option<&str>, acc: f64, s: f64| SweepPoint {
            cost_weight: w,
            expert: e.map(String::from),
            held_out_accuracy: acc,
            route_distribution: vec![0.5, 0.5],
            measured_online_s: s,
            projected_online_s: w.map(|_| s * 0.9),
            measured_queries: 3,
        };
        let points = [
            point(None, Some("small-expert"), 0.77, 0.6),
            point(None, Some("large-expert"), 0.82, 3.3),
            point(Some(0.0), None, 0.82, 2.5),
            point(Some(0.3), None, 0.81, 1.5),
        ];
        let path = std::env::temp_dir().join(format!("sweep-{}.svg", std::process::id()));
        plot(&points, RouteMode::Reveal, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for label in [
            "small-expert",
            "large-expert",
            "w=0",
            "w=0.3",
            "held-out accuracy",
            "projected",
        ] {
            assert!(svg.contains(label), "{label} missing from the plot");
        }
    }
}
