//! Text in, labels out: the client of a deployed pool, for applications and for
//! `securerouter client --text`. It reads the client's folder that `securerouter deploy`
//! writes (the deployment's public description, the client's key, its bundle of tokenizers and
//! embedding tables, and the pool's public settings), embeds each text itself and asks both
//! servers; nothing but the two secret shares of the embedded tokens leaves it.
//!
//! ```no_run
//! # async fn example() -> securerouter_runtime::Result<()> {
//! use securerouter_runtime::pool_client::PoolClient;
//! let client = PoolClient::connect("deploy/client".as_ref()).await?;
//! let answer = client.classify("a gripping, beautifully shot film").await?;
//! println!("{} via {} in {:.2} s", answer.label, answer.expert, answer.online_s);
//! # Ok(())
//! # }
//! ```

use crate::client::{Client, PoolAnswer, PoolBatchAnswer};
use crate::deployment::{CLIENT_BUNDLE, DeploymentDir, FIRST_CLIENT};
use crate::error::{Error, Result, invalid};
use crate::net::LinkConfig;
use crate::served_pool::embed_query_for;
use securerouter_circuits::{CircuitKind, PoolShape, RouteMode};
use securerouter_ml::ClientBundle;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The pool's public settings in a client's folder (JSON).
pub const CLIENT_SETTINGS: &str = "client.json";

/// What a client of a pool needs to know beside its key and bundle: all public (the pool's
/// shape under MPC, its task's labels, its experts' names, tokens per query).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolClientSettings {
    /// The pool's shape under MPC (which expert reads which input, the circuits' sizes).
    pub shape: PoolShape,
    /// Tokens per query.
    pub seq_len: usize,
    /// The task the pool was trained on.
    pub task: String,
    /// The labels, in the experts' output order.
    pub labels: Vec<String>,
    /// The experts' names, cheapest first.
    pub experts: Vec<String>,
}

impl PoolClientSettings {
    /// Reads and checks the settings in the client's folder `dir`.
    ///
    /// # Errors
    /// When the file is missing or malformed, or disagrees with itself.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CLIENT_SETTINGS);
        let bytes = std::fs::read(&path).map_err(Error::io("reading", &path))?;
        let s: PoolClientSettings =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: format!("{} is not a pool client's settings", path.display()),
                source,
            })?;
        s.check()
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Ok(s)
    }

    /// Writes the settings into `dir`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CLIENT_SETTINGS);
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            what: "encoding the pool client's settings".into(),
            source,
        })?;
        std::fs::write(&path, json).map_err(Error::io("writing", &path))
    }

    fn check(&self) -> Result<()> {
        self.shape.validate()?;
        if self.experts.len() != self.shape.experts() {
            invalid!(
                "{} expert names for a pool of {}",
                self.experts.len(),
                self.shape.experts()
            );
        }
        if self.labels.len() != self.shape.summary.classes {
            invalid!(
                "{} labels for experts of {} classes",
                self.labels.len(),
                self.shape.summary.classes
            );
        }
        if self.seq_len == 0 || self.seq_len > 512 {
            invalid!("seq_len {} is outside 1..=512", self.seq_len);
        }
        Ok(())
    }
}

/// A deployed pool's answer to one text, as the client reads it.
#[derive(Clone, Debug, Serialize)]
pub struct TextAnswer {
    /// The label.
    pub label: String,
    /// Its index in the task's labels.
    pub class: usize,
    /// The answering expert's logits, one per label.
    pub scores: Vec<f64>,
    /// The expert that answered.
    pub expert: String,
    /// Its index, cheapest first.
    pub route: usize,
    /// Inputs that shared this answer's sessions, and so the costs below
    /// ([`PoolClient::classify_batch`]); 1 for a query alone.
    pub batch: usize,
    /// Online seconds (the slower server; both sessions of a reveal-route query that asked a
    /// second expert).
    pub online_s: f64,
    /// Seconds from the first upload to the answer, as the client saw them.
    pub wall_s: f64,
    /// Bytes each server sent the other online (the larger).
    pub online_bytes_per_server: u64,
    /// Rounds.
    pub rounds: u64,
}

/// The client of a deployed pool: text in, label, scores and route out.
pub struct PoolClient {
    client: Client,
    bundle: ClientBundle,
    settings: PoolClientSettings,
    mode: RouteMode,
}

impl PoolClient {
    /// Opens the client's folder `dir` (from `securerouter deploy`) as its first client, in
    /// reveal-route, and checks that both servers' names resolve.
    ///
    /// # Errors
    /// When a file is missing or malformed, or a server's name does not resolve.
    pub async fn connect(dir: &Path) -> Result<Self> {
        Self::connect_as(dir, FIRST_CLIENT, LinkConfig::default()).await
    }

    /// [`connect`](Self::connect) as the client named `name` (`keys add-client`), with link
    /// settings `link`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_as(dir: &Path, name: &str, link: LinkConfig) -> Result<Self> {
        let d = DeploymentDir::open(dir)?;
        let settings = PoolClientSettings::load(dir)?;
        let bundle = ClientBundle::load(&dir.join(CLIENT_BUNDLE))?;
        for (who, e) in [("P0", &d.deployment.p0), ("P1", &d.deployment.p1)] {
            e.addr.resolve().await.map_err(|source| Error::Tcp {
                what: format!("resolving {who}'s address {}", e.addr),
                source,
            })?;
        }
        let client = Client::new(d.client_identity(name)?, d.deployment.clone(), link);
        Ok(PoolClient {
            client,
            bundle,
            settings,
            mode: RouteMode::Reveal,
        })
    }

    /// The same client asking in routing privacy mode `mode`.
    pub fn with_route(mut self, mode: RouteMode) -> Self {
        self.mode = mode;
        self
    }

    /// The pool's public settings.
    pub fn settings(&self) -> &PoolClientSettings {
        &self.settings
    }

    /// Classifies `text`.
    ///
    /// # Errors
    /// When the text cannot be embedded, a server cannot be reached, or a session fails.
    pub async fn classify(&self, text: &str) -> Result<TextAnswer> {
        self.classify_input(text, None).await
    }

    /// Classifies the sentence pair `a`, `b` (a pair task's input).
    ///
    /// # Errors
    /// As [`classify`](Self::classify).
    pub async fn classify_pair(&self, a: &str, b: &str) -> Result<TextAnswer> {
        self.classify_input(a, Some(b)).await
    }

    /// Classifies `text`, with its `pair` for a pair task.
    ///
    /// # Errors
    /// As [`classify`](Self::classify).
    pub async fn classify_input(&self, text: &str, pair: Option<&str>) -> Result<TextAnswer> {
        let s = &self.settings;
        let input = |k| embed_query_for(&self.bundle, k, text, pair, s.seq_len).map_err(Box::new);
        let a: PoolAnswer = self
            .client
            .ask_pool(&s.shape, CircuitKind::Routed(self.mode), s.seq_len, input)
            .await?;
        let cost = a.outputs.worst_server();
        Ok(TextAnswer {
            label: s.labels.get(a.label).cloned().unwrap_or_default(),
            class: a.label,
            scores: a.logits,
            expert: s.experts.get(a.route).cloned().unwrap_or_default(),
            route: a.route,
            batch: 1,
            online_s: cost.online_s,
            wall_s: a.outputs.wall_s,
            online_bytes_per_server: cost.online_bytes_sent,
            rounds: cost.rounds,
        })
    }

    /// Classifies `inputs` (texts, each with its pair for a pair task) as one batch: one
    /// session for the router, in the rounds of one query, then in reveal-route one session
    /// per chosen expert for the inputs routed to it ([`Client::ask_pool_batch`]). The
    /// answers are in the inputs' order and share the batch's costs.
    ///
    /// # Errors
    /// As [`classify`](Self::classify); no input is answered when the batch fails.
    pub async fn classify_batch(&self, inputs: &[(&str, Option<&str>)]) -> Result<Vec<TextAnswer>> {
        let s = &self.settings;
        if inputs.is_empty() {
            invalid!("a batch needs at least one input");
        }
        let input = |k, b: usize| {
            let (text, pair) = inputs[b];
            embed_query_for(&self.bundle, k, text, pair, s.seq_len).map_err(Box::new)
        };
        let a: PoolBatchAnswer = self
            .client
            .ask_pool_batch(
                &s.shape,
                CircuitKind::Routed(self.mode),
                s.seq_len,
                inputs.len(),
                input,
            )
            .await?;
        let cost = a.outputs.worst_server();
        Ok(a.answers
            .into_iter()
            .map(|one| TextAnswer {
                label: s.labels.get(one.label).cloned().unwrap_or_default(),
                class: one.label,
                scores: one.logits,
                expert: s.experts.get(one.route).cloned().unwrap_or_default(),
                route: one.route,
                batch: inputs.len(),
                online_s: cost.online_s,
                wall_s: a.outputs.wall_s,
                online_bytes_per_server: cost.online_bytes_sent,
                rounds: cost.rounds,
            })
            .collect())
    }
}
