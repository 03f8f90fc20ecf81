//! `securerouter client`: classify text with a deployed pool (`--text`, `--jsonl`), or route
//! feature vectors through the encrypted router head of a `securerouter keys` deployment.

use super::service::{link_config, runtime};
use anyhow::{Context, bail};
use clap::Args;
use securerouter_circuits::RouteMode;
use securerouter_core::prg::{AesCtr, Domain};
use securerouter_ml::router::RouterHeadShape;
use securerouter_runtime::client::Client;
use securerouter_runtime::deployment::{DeploymentDir, random_seed};
use securerouter_runtime::pool_client::PoolClient;
use std::io::Write;
use std::path::PathBuf;

/// `securerouter client`'s options.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct ClientArgs {
    /// The client's folder of a pool's deployment (`securerouter deploy`), or a deployment
    /// directory of `securerouter keys`.
    #[arg(long)]
    pub deployment: PathBuf,
    /// A text to classify (repeat for more; they run as concurrent sessions).
    #[arg(long, conflicts_with_all = ["input", "random"])]
    pub text: Vec<String>,
    /// A JSON Lines file of inputs to classify, one object per line with "text" and, for a
    /// pair task, "text_pair"; `-` reads standard input.
    #[arg(long, conflicts_with_all = ["input", "random"])]
    pub jsonl: Option<PathBuf>,
    /// Routing privacy mode of the queries.
    #[arg(long, value_enum, default_value = "reveal-route")]
    pub route: RouteMode,
    /// Sessions in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub concurrency: u64,
    /// Inputs per session: up to this many texts share one session, which runs the router once
    /// for all of them (and in reveal-route each chosen expert once for those routed to it),
    /// in the rounds of one query. Each answer's costs are its batch's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub batch: u64,
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

/// Classifies the texts with a deployed pool, or runs one batch of feature vectors through a
/// router head, printing JSON lines.
pub fn run(args: &ClientArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if !args.text.is_empty() || args.jsonl.is_some() {
        return runtime()?.block_on(classify_texts(args, out));
    }
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

/// One input of a batch: its text, its pair and where it came from (a JSON Lines line).
struct TextInput {
    text: String,
    text_pair: Option<String>,
    line: Option<usize>,
}

/// The inputs named on the command line.
fn text_inputs(args: &ClientArgs) -> anyhow::Result<Vec<TextInput>> {
    let mut inputs: Vec<TextInput> = args
        .text
        .iter()
        .map(|t| TextInput {
            text: t.clone(),
            text_pair: None,
            line: None,
        })
        .collect();
    if let Some(path) = &args.jsonl {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |what: &str| anyhow::anyhow!("{} line {}: {what}", path.display(), i + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(&format!("not JSON ({e})")))?;
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| bad("no \"text\" string"))?;
            let text_pair = match v.get("text_pair") {
                None | Some(serde_json::Value::Null) => None,
                Some(p) => Some(
                    p.as_str()
                        .ok_or_else(|| bad("\"text_pair\" is not a string"))?,
                ),
            };
            inputs.push(TextInput {
                text: text.to_string(),
                text_pair: text_pair.map(String::from),
                line: Some(i + 1),
            });
        }
    }
    if let Some(bad) = inputs.iter().find(|i| i.text.trim().is_empty()) {
        match bad.line {
            Some(n) => bail!("line {n}: the text is empty"),
            None => bail!("--text is empty"),
        }
    }
    if inputs.is_empty() {
        bail!("no input to classify");
    }
    Ok(inputs)
}

/// Classifies every input with the pool, `--batch` inputs a session and `--concurrency`
/// sessions at a time, printing one JSON line per input in input order (an error as
/// `{"error": ...}`, for each input of a failed batch); fails at the end if any failed.
async fn classify_texts(args: &ClientArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let inputs = text_inputs(args)?;
    let client = PoolClient::connect_as(&args.deployment, &args.name, link_config(args.timeout))
        .await
        .with_context(|| {
            format!(
                "opening {} (a client's folder from `securerouter deploy`)",
                args.deployment.display()
            )
        })?
        .with_route(args.route);
    let client = std::sync::Arc::new(client);
    let mut failed = 0usize;
    let batch = args.batch as usize;
    for sessions in inputs.chunks(args.concurrency as usize * batch) {
        let tasks: Vec<_> = sessions
            .chunks(batch)
            .map(|b| {
                let client = client.clone();
                let texts: Vec<(String, Option<String>)> = b
                    .iter()
                    .map(|i| (i.text.clone(), i.text_pair.clone()))
                    .collect();
                tokio::spawn(async move {
                    if let [(text, pair)] = texts.as_slice() {
                        return Ok(vec![client.classify_input(text, pair.as_deref()).await?]);
                    }
                    let refs: Vec<(&str, Option<&str>)> = texts
                        .iter()
                        .map(|(t, p)| (t.as_str(), p.as_deref()))
                        .collect();
                    client.classify_batch(&refs).await
                })
            })
            .collect();
        for (task, chunk) in tasks.into_iter().zip(sessions.chunks(batch)) {
            let answers = match task.await {
                Ok(Ok(answers)) => Ok(answers),
                Ok(Err(e)) => Err(e.chain().to_string()),
                Err(e) => Err(format!("the query's task failed: {e}")),
            };
            for (j, input) in chunk.iter().enumerate() {
                let mut line = match &answers {
                    Ok(a) => serde_json::to_value(&a[j])?,
                    Err(why) => {
                        failed += 1;
                        serde_json::json!({ "error": why })
                    }
                };
                if let (Some(n), Some(fields)) = (input.line, line.as_object_mut()) {
                    fields.insert("line".into(), n.into());
                }
                writeln!(out, "{line}")?;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} queries failed", inputs.len());
    }
    Ok(())
}
