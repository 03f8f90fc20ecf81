//! `securerouter bench router`: the secure router's choice against the plaintext
//! router's on many held-out sentences. Only the router circuit runs under MPC (summary
//! encoder, its head, router head, secure argmax; no expert), so a sample large enough to bound
//! the agreement rate costs minutes, not hours. The line reports the agreement and a one-sided
//! 95 % lower confidence bound on it (Clopper–Pearson).

use super::pool::{HeldOutRun, PoolBenchOptions};
use crate::error::{Error, Result, invalid};
use securerouter_circuits::CircuitKind;
use securerouter_circuits::pool::route_of;
use securerouter_runtime::served_pool::embed_query_for;
use serde::Serialize;
use std::io::Write;

/// One `bench router` run, as the JSON line prints it.
#[derive(Clone, Debug, Serialize)]
pub struct RouterAgreementLine {
    /// The experts, cheapest first.
    pub experts: Vec<String>,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Held-out sentences run.
    pub queries: usize,
    /// Sentences whose secure route equals the plaintext router's.
    pub agreeing: usize,
    /// `agreeing / queries`.
    pub router_agreement: f64,
    /// One-sided 95 % lower confidence bound on the agreement rate (Clopper–Pearson).
    pub router_agreement_lower_95: f64,
    /// Held-out indices of the sentences where the two disagree.
    pub disagreements: Vec<usize>,
    /// Share of the sentences the secure router sends to each expert.
    pub route_distribution: Vec<f64>,
    /// Online seconds per query of the router circuit (the slower server).
    pub online_s: f64,
    /// End-to-end seconds per query as the client saw it.
    pub wall_s: f64,
}

/// Runs the router alone under MPC on `opts.queries` held-out sentences and compares each
/// choice with the plaintext router's.
pub fn run(
    opts: &PoolBenchOptions,
    json: bool,
    out: &mut dyn Write,
) -> Result<RouterAgreementLine> {
    let HeldOutRun {
        pool,
        examples,
        cluster,
        bundle,
        client,
        runtime,
    } = HeldOutRun::start(opts)?;
    let k = pool.experts.len();
    let cols = pool.shape().input_cols(CircuitKind::Router);
    let mut routes = vec![0usize; k];
    let mut disagreements = Vec::new();
    let (mut online_s, mut wall_s) = (0.0, 0.0);
    let bar = securerouter_ml::progress::Progress::new(examples.len(), "the router under MPC");
    for (i, s) in examples.iter().enumerate() {
        let pair = s.text_pair.as_deref();
        let x = embed_query_for(&bundle, 0, &s.text, pair, pool.seq_len())?;
        let session = runtime.block_on(client.run(CircuitKind::Router, cols, &x))?;
        let [_, _, onehot] = session.outputs.as_slice() else {
            invalid!(
                "the servers returned {} outputs, the router has 3",
                session.outputs.len()
            );
        };
        let route = route_of(onehot)?;
        routes[route] += 1;
        if route != pool.answer(&s.text, pair)?.route {
            disagreements.push(i);
        }
        online_s += session.worst_server().online_s;
        wall_s += session.wall_s;
        bar.set_message(format!(
            "the router under MPC ({} of {} as in plaintext)",
            i + 1 - disagreements.len(),
            i + 1
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(cluster);
    let n = examples.len();
    let agreeing = n - disagreements.len();
    let line = RouterAgreementLine {
        experts: pool
            .manifest
            .experts
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        seq_len: pool.seq_len(),
        queries: n,
        agreeing,
        router_agreement: agreeing as f64 / n as f64,
        router_agreement_lower_95: clopper_pearson_lower(agreeing, n, 0.05),
        disagreements,
        route_distribution: routes.iter().map(|&c| c as f64 / n as f64).collect(),
        online_s: online_s / n as f64,
        wall_s: wall_s / n as f64,
    };
    if json {
        let text = serde_json::to_string(&line).map_err(Error::Json)?;
        writeln!(out, "{text}").map_err(Error::Output)?;
    } else {
        writeln!(
            out,
            "router under MPC on {n} held-out sentences: secure route = plaintext route on {agreeing} \
             ({:.2}%; 95% lower bound {:.2}%); {:.3} s online, {:.3} s end to end per query",
            100.0 * line.router_agreement,
            100.0 * line.router_agreement_lower_95,
            line.online_s,
            line.wall_s
        )
        .map_err(Error::Output)?;
    }
    Ok(line)
}

/// The one-sided lower confidence bound of level 1 − `alpha` on a success probability after
/// `successes` in `trials` (Clopper–Pearson): the p at which seeing at least `successes`
/// has probability `alpha`. Found by bisection on the binomial tail.
pub fn clopper_pearson_lower(successes: usize, trials: usize, alpha: f64) -> f64 {
    if successes == 0 || trials == 0 {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if binomial_upper_tail(successes, trials, mid) < alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// P(X ≥ k) for X ~ Binomial(n, p), summed in log space.
fn binomial_upper_tail(k: usize, n: usize, p: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // ln P(X = k), then P(X = j + 1) / P(X = j) = (n − j) / (j + 1) · p / (1 − p).
    let ln_choose: f64 = (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum();
    let mut ln_pmf = ln_choose + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln();
    let odds = (p / (1.0 - p)).ln();
    let mut tail = 0.0;
    for j in k..=n {
        tail += ln_pmf.exp();
        ln_pmf += ((n - j) as f64 / (j + 1) as f64).ln() + odds;
    }
    tail.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_known_values() {
        // No failure in n trials: the bound is alpha^(1/n) (the "rule of three").
        let b = clopper_pearson_lower(300, 300, 0.05);
        assert!((b - 0.05f64.powf(1.0 / 300.0)).abs() < 1e-9, "{b}");
        assert!(b > 0.99 && b < 0.9901);
        // One failure in 100: the textbook one-sided 95 % bound is 0.9534.
        let b = clopper_pearson_lower(99, 100, 0.05);
        assert!((b - 0.9534).abs() < 5e-4, "{b}");
        // Half successes: a bound below one half.
        assert!(clopper_pearson_lower(50, 100, 0.05) < 0.5);
        assert_eq!(clopper_pearson_lower(0, 10, 0.05), 0.0);
    }
}
