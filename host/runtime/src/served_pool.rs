//! A trained pool as the services serve it: the manifest, the trained router and every expert,
//! deployed as one model file per role (router and experts in circuit order, see
//! [`securerouter_circuits::pool`]) with the client's bundle; and the plaintext computation of the same
//! route and logits, which checks what comes back.

use crate::deployment::{CLIENT_BUNDLE, DeploymentDir, Role};
use crate::error::{Error, Result, invalid};
use crate::local_cluster::{LocalCluster, ServerFlags};
use crate::net::ServiceAddr;
use crate::pool_client::PoolClientSettings;
use securerouter_circuits::bert::{BertHead, client_input, deployable};
use securerouter_circuits::{ExpertInput, ModelSpec, PoolExpert, PoolShape};
use securerouter_ml::head::argmax;
use securerouter_ml::pool::{LoadedExpert, PoolManifest};
use securerouter_ml::pool_format::StoredRouter;
use securerouter_ml::router::{router_feature_count, router_features};
use securerouter_ml::{BertWeights, ClientBundle, Encoding, Matrix, Tokenizer, mean_pool};
use std::path::Path;

/// A pool with its trained router, loaded in plaintext (the model provider's side).
pub struct ServedPool {
    /// The manifest.
    pub manifest: PoolManifest,
    /// The trained router.
    pub router: StoredRouter,
    /// Every expert, cheapest first; expert 0's encoder is the summary encoder.
    pub experts: Vec<LoadedExpert>,
    /// The pool's shape under MPC, each expert with its checkpoint's activation.
    shape: PoolShape,
    /// The base checkpoint's tokenizer (its `tokenizer.json`, else its `vocab.txt`), which the
    /// client bundle carries.
    tokenizer: Tokenizer,
}

/// What the plaintext pool answers for one sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct PlainAnswer {
    /// The router's scores per expert.
    pub scores: Vec<f64>,
    /// The chosen expert.
    pub route: usize,
    /// The chosen expert's logits.
    pub logits: Vec<f64>,
}

impl ServedPool {
    /// Loads the pool in `dir` (built by `securerouter train pool`, with a router from
    /// `securerouter train router`) and its base checkpoint from the asset cache.
    pub fn load(dir: &Path, cache: &Path) -> Result<Self> {
        let manifest = PoolManifest::load(dir)?;
        let router = StoredRouter::load(dir, manifest.experts.len())?;
        let experts = (0..manifest.experts.len())
            .map(|k| manifest.load_expert(dir, cache, k))
            .collect::<securerouter_ml::Result<Vec<_>>>()?;
        let hidden = experts[0].weights.config.hidden_size;
        if router.head.shape.features != router_feature_count(hidden) {
            invalid!(
                "the stored router reads {} features, not the {} this version's router reads \
                 (the summary encoder's {hidden} pooled states and its lead): retrain it with \
                 `securerouter train router`",
                router.head.shape.features,
                router_feature_count(hidden)
            );
        }
        let base = manifest.base_asset()?.path(cache)?;
        let tokenizer = Tokenizer::from_dir(&base)?;
        let (summary, BertHead::MeanPooled, _) = deployable(&experts[0].weights, &experts[0].head)?
        else {
            invalid!("expert 0, the router's summary encoder, needs a head on mean-pooled states");
        };
        let others = experts[1..]
            .iter()
            .map(|e| {
                let (shape, head, _) = deployable(&e.weights, &e.head)?;
                let input = match e.own_tokenizer {
                    Some(_) => ExpertInput::Own,
                    None => ExpertInput::Summary,
                };
                Ok(PoolExpert { shape, head, input })
            })
            .collect::<securerouter_circuits::Result<_>>()?;
        let shape = PoolShape {
            summary,
            router: router.head.shape,
            others,
        };
        shape.validate()?;
        Ok(ServedPool {
            manifest,
            router,
            experts,
            shape,
            tokenizer,
        })
    }

    /// The pool's shape under MPC.
    pub fn shape(&self) -> PoolShape {
        self.shape.clone()
    }

    /// Writes a deployment serving the pool into `dir`: fresh keys for every role, the model
    /// files (the router and every expert, shared for the servers) and the client bundle (the
    /// summary's tokenizer and embeddings, and those of every expert with an input of its own).
    pub fn deploy(&self, dir: &Path, addrs: [ServiceAddr; 3]) -> Result<DeploymentDir> {
        let summary = &self.experts[0];
        let (_, _, mut layers) = deployable(&summary.weights, &summary.head)?;
        layers.extend(securerouter_circuits::router_head::ring_layers(
            &self.router.head,
        )?);
        for e in &self.experts[1..] {
            layers.extend(deployable(&e.weights, &e.head)?.2);
        }
        let deployment =
            DeploymentDir::create_with(dir, addrs, &ModelSpec::Pool(self.shape()), &layers, true)?;
        drop(layers);
        let own: Vec<(usize, &BertWeights, &Tokenizer)> = self
            .experts
            .iter()
            .enumerate()
            .filter_map(|(k, e)| Some((k, &e.weights, e.own_tokenizer.as_ref()?)))
            .collect();
        ClientBundle::save_pool(
            &summary.weights,
            &self.tokenizer,
            &own,
            &dir.join(CLIENT_BUNDLE),
        )?;
        self.client_settings().save(dir)?;
        Ok(deployment)
    }

    /// Writes a deployment serving the pool as one folder per role under `out`: `dealer/`,
    /// `p0/`, `p1/` (each the deployment's public description, the role's key and its model
    /// file) and `client/` (the description, the client's key, its bundle and the pool's
    /// public settings), each to be copied to its host as it is. The dealer's model file holds
    /// masks independent of the weights; no folder holds the plaintext weights but the
    /// client's embedding tables. A folder that holds files is refused unless `force`.
    ///
    /// # Errors
    /// When a folder holds files (without `force`), or a file cannot be written.
    pub fn deploy_per_role(
        &self,
        out: &Path,
        addrs: [ServiceAddr; 3],
        force: bool,
    ) -> Result<DeploymentDir> {
        let roles = [Role::Dealer, Role::P0, Role::P1, Role::Client];
        for role in roles {
            let folder = out.join(role.stem());
            if std::fs::read_dir(&folder).is_ok_and(|mut d| d.next().is_some()) {
                if !force {
                    invalid!(
                        "{} holds files already (--force replaces the deployment)",
                        folder.display()
                    );
                }
                std::fs::remove_dir_all(&folder).map_err(Error::io("replacing", &folder))?;
            }
        }
        // Every role's files are written once, side by side, then each role's copied out.
        let staging = out.join(format!(".staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let written = self.deploy(&staging, addrs).and_then(|all| {
            for role in roles {
                all.export(role, &out.join(role.stem()))?;
            }
            DeploymentDir::open(&out.join(Role::Client.stem()))
        });
        let cleaned = std::fs::remove_dir_all(&staging).map_err(Error::io("removing", &staging));
        let d = written?;
        cleaned?;
        Ok(d)
    }

    /// The pool's public settings a client needs.
    pub fn client_settings(&self) -> PoolClientSettings {
        PoolClientSettings {
            shape: self.shape(),
            seq_len: self.seq_len(),
            task: self.manifest.task.clone(),
            labels: self.manifest.labels.clone(),
            experts: self
                .manifest
                .experts
                .iter()
                .map(|e| e.name.clone())
                .collect(),
        }
    }

    /// Deploys the pool into a fresh directory and starts its dealer and servers on loopback
    /// (see [`LocalCluster::start`]); returns them with the client's bundle.
    pub fn start_local(
        &self,
        timeout_s: u64,
        servers: ServerFlags,
    ) -> Result<(LocalCluster, ClientBundle)> {
        let dir = LocalCluster::fresh_dir("pool");
        let deployment = self.deploy(&dir, LocalCluster::free_addrs()?)?;
        let bundle = ClientBundle::load(&dir.join(CLIENT_BUNDLE))?;
        Ok((LocalCluster::start(deployment, timeout_s, servers)?, bundle))
    }

    /// Tokens per sequence under MPC.
    pub fn seq_len(&self) -> usize {
        self.manifest.seq_len
    }

    /// The token ids of `text` (and its `pair`, for a pair task) at the pool's sequence length
    /// (the summary's tokenizer).
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoding> {
        Ok(self.tokenizer.encode_input(text, pair, self.seq_len())?)
    }

    /// The plaintext router and chosen expert on `text` (and its `pair`, for a pair task; f64
    /// reference of the circuit's graph; an expert with an input of its own reads the text
    /// through its own tokenizer).
    pub fn answer(&self, text: &str, pair: Option<&str>) -> Result<PlainAnswer> {
        let e = self.encode(text, pair)?;
        let embedded = self.experts[0].weights.embed(&e.ids, &e.type_ids)?;
        let (scores, summary_logits) = self.route_embedded(&embedded)?;
        let route = argmax(&scores);
        let logits = match route {
            0 => summary_logits,
            k if self.shape.own_input(k) => self.expert_logits(k, text, pair)?,
            k => self.expert_logits_embedded(k, embedded)?,
        };
        Ok(PlainAnswer {
            scores,
            route,
            logits,
        })
    }

    /// The plaintext router and chosen expert on the summary's embedded tokens (rows of its
    /// hidden size, real tokens only, after the embedding LayerNorm): for inputs the client
    /// embedded itself. A route to an expert with an input of its own is refused: that
    /// expert does not read these rows.
    pub fn answer_embedded(&self, embedded: Matrix) -> Result<PlainAnswer> {
        let (scores, summary_logits) = self.route_embedded(&embedded)?;
        let route = argmax(&scores);
        let logits = if route == 0 {
            summary_logits
        } else {
            self.expert_logits_embedded(route, embedded)?
        };
        Ok(PlainAnswer {
            scores,
            route,
            logits,
        })
    }

    /// The router's scores and the summary expert's logits on the summary's embedded tokens.
    fn route_embedded(&self, embedded: &Matrix) -> Result<(Vec<f64>, Vec<f64>)> {
        let summary = &self.experts[0];
        let hidden = summary.weights.config.hidden_size;
        if embedded.cols != hidden || embedded.rows == 0 {
            invalid!(
                "{} embedded tokens of width {}; the pool takes rows of {hidden}",
                embedded.rows,
                embedded.cols,
            );
        }
        let states = summary.weights.encode(embedded.clone());
        let pooled = mean_pool(&states);
        let summary_logits = summary.head.logits_of_hidden(&states)?;
        let scores = self
            .router
            .head
            .scores(&router_features(&pooled, &summary_logits)?);
        Ok((scores, summary_logits))
    }

    /// Expert `k`'s plaintext logits on the summary's embedded tokens (as
    /// [`Self::answer_embedded`] takes them), whatever the router would choose; refused for an
    /// expert with an input of its own.
    pub fn expert_logits_embedded(&self, k: usize, embedded: Matrix) -> Result<Vec<f64>> {
        let e = self.expert(k)?;
        if e.own_tokenizer.is_some() {
            invalid!(
                "expert {k} reads an input of its own, not the summary's embedded tokens \
                 (ask it with the text)"
            );
        }
        Ok(e.head.logits_of_hidden(&e.weights.encode(embedded))?)
    }

    /// Expert `k`'s plaintext logits on `text` and its `pair` (its own tokenizer, or the
    /// summary's).
    pub fn expert_logits(&self, k: usize, text: &str, pair: Option<&str>) -> Result<Vec<f64>> {
        Ok(self
            .expert(k)?
            .logits(&self.tokenizer, text, pair, self.seq_len())?)
    }

    fn expert(&self, k: usize) -> Result<&LoadedExpert> {
        self.experts
            .get(k)
            .ok_or_else(|| Error::Invalid(format!("the pool has no expert {k}")))
    }
}

/// The client's input for expert `k` of a pool for `text` (and its `pair`, for a pair task)
/// from its bundle alone: tokens embedded (with that expert's own tokenizer and tables when it
/// reads an input of its own), padded to `seq_len` ([tokens, hidden + 2], see
/// [`client_input`]). The input [`Client::ask_pool`](crate::client::Client::ask_pool) asks
/// for.
pub fn embed_query_for(
    bundle: &ClientBundle,
    k: usize,
    text: &str,
    pair: Option<&str>,
    seq_len: usize,
) -> Result<Vec<f64>> {
    let embedded = match pair {
        Some(b) => bundle.embed_pair_for(k, text, b, seq_len)?,
        None => bundle.embed_text_for(k, text, seq_len)?,
    };
    Ok(client_input(&embedded.data, embedded.cols, seq_len)?)
}

/// The client's input for `text` from its bundle alone: tokens embedded, padded to `seq_len`
/// ([tokens, hidden + 2], see [`client_input`]).
pub fn embed_query(bundle: &ClientBundle, text: &str, seq_len: usize) -> Result<Vec<f64>> {
    embed_query_for(bundle, 0, text, None, seq_len)
}
