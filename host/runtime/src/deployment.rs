//! A deployment: who the dealer, P0, P1 and the clients are (static Noise keys), where the
//! services listen, and the model files. `securerouter keys` writes one into a directory; every
//! service and client reads it from there.
//!
//! Files: `deployment.json` (public: addresses and public keys), `<role>.key` (secret static
//! keys; `client-NAME.key` for clients added later), the model files `dealer.model`
//! (the weights' masks, independent of the weights), `p0.model`, `p1.model` (masked weights
//! and shares), and for
//! `securerouter keys` the router head's plaintext `router-head.plain.json`. All but
//! `deployment.json` and the client bundle are secret: created with mode 0600 and refused on
//! load when group or others may access them. `securerouter keys export` copies one
//! service's files into a folder of its own, for that service's host.

use crate::error::{Error, Result, invalid};
use crate::model_file::ModelFile;
use crate::net::{Identity, PublicKey, ServiceAddr};
use securerouter_circuits::ModelSpec;
use securerouter_circuits::bert::RingLayer;
use securerouter_core::prg::Seed;
use securerouter_ml::router::{PlainRouterHead, RouterHeadShape};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The client bundle's file name inside a deployment (tokenizer and embedding tables, for
/// deployments of BERT models and pools).
pub const CLIENT_BUNDLE: &str = "client.bundle";

/// The router head's plaintext weights inside a deployment made by [`DeploymentDir::create`].
const PLAIN_HEAD: &str = "router-head.plain.json";

/// A service's address and public key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    /// Where it is reached: a host name or an IP address, and a port.
    pub addr: ServiceAddr,
    /// Its static public key (hex).
    pub public_key: String,
}

impl Endpoint {
    /// The parsed public key.
    pub fn key(&self) -> Result<PublicKey> {
        PublicKey::from_hex(&self.public_key).map_err(Error::link(format!(
            "public key of the service at {}",
            self.addr
        )))
    }
}

/// The public half of a deployment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployment {
    /// The dealer.
    pub dealer: Endpoint,
    /// Server 0.
    pub p0: Endpoint,
    /// Server 1.
    pub p1: Endpoint,
    /// The clients the servers accept, each with a key of its own.
    #[serde(deserialize_with = "clients_of_any_version")]
    pub clients: Vec<ClientEntry>,
}

/// The name of the client every deployment starts with (its key file is `client.key`).
pub const FIRST_CLIENT: &str = "client";

/// A client of a deployment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientEntry {
    /// Its name (`keys add-client NAME`).
    pub name: String,
    /// Its static public key (hex).
    pub public_key: String,
}

/// Reads the clients as written now (name and key) or as bare keys (deployments written
/// before clients had names: the first is [`FIRST_CLIENT`], the others `client-2`, ...).
fn clients_of_any_version<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ClientEntry>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Named(ClientEntry),
        Bare(String),
    }
    let all = Vec::<Any>::deserialize(d)?;
    Ok(all
        .into_iter()
        .enumerate()
        .map(|(i, c)| match c {
            Any::Named(c) => c,
            Any::Bare(public_key) => ClientEntry {
                name: match i {
                    0 => FIRST_CLIENT.to_string(),
                    n => format!("client-{}", n + 1),
                },
                public_key,
            },
        })
        .collect())
}

/// A role in a deployment, naming its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The dealer.
    Dealer,
    /// Server 0.
    P0,
    /// Server 1.
    P1,
    /// The client.
    Client,
}

impl Role {
    /// The role's name in file names (`p0.key`) and folders (`p0/`).
    pub fn stem(self) -> &'static str {
        match self {
            Role::Dealer => "dealer",
            Role::P0 => "p0",
            Role::P1 => "p1",
            Role::Client => "client",
        }
    }
}

/// A deployment directory.
#[derive(Clone, Debug)]
pub struct DeploymentDir {
    dir: PathBuf,
    /// Its public description.
    pub deployment: Deployment,
}

impl DeploymentDir {
    /// Creates a deployment in `dir`: fresh keys for every role, a random router head shared
    /// for the servers, and the given addresses. Refuses to overwrite unless `force`.
    pub fn create(
        dir: &Path,
        addrs: [ServiceAddr; 3],
        shape: RouterHeadShape,
        force: bool,
    ) -> Result<Self> {
        // The model provider's step: share a router head for the servers.
        let model = PlainRouterHead::random(shape, &random_seed());
        let d = Self::create_with(
            dir,
            addrs,
            &ModelSpec::RouterHead(shape),
            &securerouter_circuits::router_head::ring_layers(&model)?,
            force,
        )?;
        let plain = dir.join(PLAIN_HEAD);
        let json = serde_json::to_vec(&model).map_err(|source| Error::Json {
            what: "encoding the router head".to_string(),
            source,
        })?;
        crate::secret_file::write(&plain, &json).map_err(Error::io("writing", &plain))?;
        Ok(d)
    }

    /// Creates a deployment in `dir` serving the model of `spec` whose ring layers are `layers`
    /// (shared for the roles with fresh masks, one layer at a time, into `dealer.model`,
    /// `p0.model` and `p1.model`): fresh keys for every role. Refuses to overwrite unless
    /// `force`.
    pub fn create_with(
        dir: &Path,
        addrs: [ServiceAddr; 3],
        spec: &ModelSpec,
        layers: &[RingLayer],
        force: bool,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        let json = dir.join("deployment.json");
        if json.exists() && !force {
            invalid!(
                "{} already holds a deployment; pass --force to replace its keys",
                dir.display()
            );
        }
        let ids =
            [Role::Dealer, Role::P0, Role::P1, Role::Client].map(|r| (r, Identity::generate()));
        for (role, id) in &ids {
            id.save(&dir.join(format!("{}.key", role.stem())))?;
        }
        let endpoint = |i: usize| Endpoint {
            addr: addrs[i].clone(),
            public_key: ids[i].1.public().to_hex(),
        };
        let deployment = Deployment {
            dealer: endpoint(0),
            p0: endpoint(1),
            p1: endpoint(2),
            clients: vec![ClientEntry {
                name: FIRST_CLIENT.to_string(),
                public_key: ids[3].1.public().to_hex(),
            }],
        };
        let d = DeploymentDir {
            dir: dir.to_path_buf(),
            deployment,
        };
        d.save()?;
        let paths = ["dealer", "p0", "p1"].map(|stem| dir.join(format!("{stem}.model")));
        ModelFile::deploy_to(spec, layers, &random_seed(), &paths)?;
        Ok(d)
    }

    fn save(&self) -> Result<()> {
        let json = self.dir.join("deployment.json");
        let bytes = serde_json::to_vec_pretty(&self.deployment).map_err(|source| Error::Json {
            what: "encoding the deployment".to_string(),
            source,
        })?;
        std::fs::write(&json, bytes).map_err(Error::io("writing", &json))
    }

    /// Adds a client named `name` with a fresh key (written to [`Self::client_key_path`]).
    ///
    /// # Errors
    /// A name that is not 1 to 32 of `a-z 0-9 - _`, or one the deployment has already.
    pub fn add_client(&mut self, name: &str) -> Result<PathBuf> {
        let valid = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            invalid!("a client name is 1 to 32 of a-z, 0-9, '-' and '_'; {name:?} is not");
        }
        if self.deployment.clients.iter().any(|c| c.name == name) {
            invalid!("the deployment has a client named {name:?} already");
        }
        let id = Identity::generate();
        let path = self.client_key_path(name);
        id.save(&path)?;
        self.deployment.clients.push(ClientEntry {
            name: name.to_string(),
            public_key: id.public().to_hex(),
        });
        self.save()?;
        Ok(path)
    }

    /// Removes the client named `name` and deletes its key file.
    ///
    /// # Errors
    /// When the deployment has no such client.
    pub fn revoke_client(&mut self, name: &str) -> Result<()> {
        let before = self.deployment.clients.len();
        self.deployment.clients.retain(|c| c.name != name);
        if self.deployment.clients.len() == before {
            let names: Vec<&str> = self
                .deployment
                .clients
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            invalid!("the deployment has no client named {name:?} (it has {names:?})");
        }
        self.save()?;
        let path = self.client_key_path(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("deleting", &path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Copies what `role` needs into `dest`, a folder for that role's host alone, and returns
    /// the files' names: for a service the deployment description, its key and its model file;
    /// for the first client the description, its key, and the client bundle and the pool's
    /// public settings where the deployment has them.
    ///
    /// # Errors
    /// When `dest` holds files already or a file cannot be copied.
    pub fn export(&self, role: Role, dest: &Path) -> Result<Vec<String>> {
        if std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
            invalid!("{} holds files already", dest.display());
        }
        std::fs::create_dir_all(dest).map_err(Error::io("creating", dest))?;
        let stem = role.stem();
        let mut names = vec!["deployment.json".to_string(), format!("{stem}.key")];
        if role == Role::Client {
            names.extend(
                [CLIENT_BUNDLE, crate::pool_client::CLIENT_SETTINGS]
                    .into_iter()
                    .filter(|n| self.dir.join(n).exists())
                    .map(String::from),
            );
        } else {
            names.push(format!("{stem}.model"));
        }
        let public = [
            "deployment.json",
            CLIENT_BUNDLE,
            crate::pool_client::CLIENT_SETTINGS,
        ];
        for name in &names {
            let from = self.dir.join(name);
            if public.contains(&name.as_str()) {
                std::fs::copy(&from, dest.join(name)).map_err(Error::io("copying", &from))?;
            } else {
                let bytes = crate::secret_file::read(&from).map_err(Error::io("reading", &from))?;
                let to = dest.join(name);
                crate::secret_file::write(&to, &bytes).map_err(Error::io("writing", &to))?;
            }
        }
        Ok(names.to_vec())
    }

    /// Where the key of the client named `name` is kept.
    pub fn client_key_path(&self, name: &str) -> PathBuf {
        match name {
            FIRST_CLIENT => self.dir.join("client.key"),
            other => self.dir.join(format!("client-{other}.key")),
        }
    }

    /// The static identity of the client named `name`.
    ///
    /// # Errors
    /// When the deployment has no such client or its key file cannot be read.
    pub fn client_identity(&self, name: &str) -> Result<Identity> {
        if !self.deployment.clients.iter().any(|c| c.name == name) {
            invalid!("the deployment has no client named {name:?}");
        }
        let path = self.client_key_path(name);
        Identity::load(&path).map_err(Error::link(format!("the key of client {name:?}")))
    }

    /// Opens a deployment directory, checking its description.
    pub fn open(dir: &Path) -> Result<Self> {
        let json = dir.join("deployment.json");
        let bytes = std::fs::read(&json).map_err(|source| Error::NoDeployment {
            dir: dir.to_path_buf(),
            file: json.clone(),
            source,
        })?;
        let deployment: Deployment =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: format!("{} is not a valid deployment file", json.display()),
                source,
            })?;
        deployment.dealer.key()?;
        deployment.p0.key()?;
        deployment.p1.key()?;
        for c in &deployment.clients {
            PublicKey::from_hex(&c.public_key).map_err(Error::link(format!(
                "client {:?}'s public key in deployment.json",
                c.name
            )))?;
        }
        Ok(DeploymentDir {
            dir: dir.to_path_buf(),
            deployment,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A role's static identity.
    pub fn identity(&self, role: Role) -> Result<Identity> {
        Ok(Identity::load(
            &self.dir.join(format!("{}.key", role.stem())),
        )?)
    }

    /// A role's model file.
    pub fn model(&self, role: Role) -> Result<ModelFile> {
        ModelFile::load(&self.dir.join(format!("{}.model", role.stem())))
    }

    /// The plaintext model (for reference checks by the model provider and tests).
    pub fn plain_model(&self) -> Result<PlainRouterHead> {
        let p = self.dir.join(PLAIN_HEAD);
        let bytes = crate::secret_file::read(&p).map_err(Error::io("reading", &p))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("{} is not a plaintext router head", p.display()),
            source,
        })
    }

    /// Public keys of the accepted clients.
    pub fn client_keys(&self) -> Result<Vec<PublicKey>> {
        self.deployment
            .clients
            .iter()
            .map(|c| Ok(PublicKey::from_hex(&c.public_key)?))
            .collect()
    }
}

/// 16 bytes from the operating system's randomness.
///
/// # Panics
/// When the operating system has no randomness to give (then nothing secure can run); services
/// use [`fresh_seed`], which returns that as an error.
pub fn random_seed() -> Seed {
    fresh_seed().expect("the operating system's random source failed")
}

/// 16 bytes from the operating system's randomness, or an error saying it failed.
///
/// # Errors
/// When the operating system's random source fails.
pub fn fresh_seed() -> Result<Seed> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(Error::Random)?;
    Ok(Seed::from_bytes(b))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SECRETS: [&str; 8] = [
        "dealer.key",
        "p0.key",
        "p1.key",
        "client.key",
        "dealer.model",
        "p0.model",
        "p1.model",
        PLAIN_HEAD,
    ];

    fn deployment(name: &str) -> DeploymentDir {
        let dir = std::env::temp_dir().join(format!(
            "securerouter-deployment-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let addr: ServiceAddr = "127.0.0.1:1".parse().unwrap();
        let addrs = [addr.clone(), addr.clone(), addr];
        DeploymentDir::create(&dir, addrs, RouterHeadShape::DEMO, false).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn every_secret_file_is_created_0600() {
        let d = deployment("modes");
        for name in SECRETS {
            assert_eq!(mode(&d.path().join(name)), 0o600, "{name}");
        }
        // Replacing the deployment keeps them private.
        let again = DeploymentDir::create(
            d.path(),
            [0; 3].map(|_| d.deployment.dealer.addr.clone()),
            RouterHeadShape::DEMO,
            true,
        )
        .unwrap();
        for name in SECRETS {
            assert_eq!(mode(&again.path().join(name)), 0o600, "{name}");
        }
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    #[test]
    fn a_secret_file_others_can_read_is_refused_naming_it() {
        let d = deployment("refuse");
        d.identity(Role::P0).unwrap();
        d.model(Role::P0).unwrap();
        d.plain_model().unwrap();
        for name in SECRETS {
            let path = d.path().join(name);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let errors = [
            d.identity(Role::P0).map(drop),
            d.model(Role::P0).map(drop),
            d.plain_model().map(drop),
        ];
        for (e, name) in errors.into_iter().zip(["p0.key", "p0.model", PLAIN_HEAD]) {
            let text = e.unwrap_err().chain().to_string();
            assert!(
                text.contains(&d.path().join(name).display().to_string()),
                "{text}"
            );
            assert!(text.contains("mode 0644"), "{text}");
        }
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    /// Clients come and go by name, each with a key of its own; the servers' list follows.
    #[test]
    fn clients_are_added_and_revoked_by_name() {
        let mut d = deployment("clients");
        let first = d.client_identity(FIRST_CLIENT).unwrap();
        let path = d.add_client("alice").unwrap();
        assert!(path.exists());
        let alice = d.client_identity("alice").unwrap();
        assert_ne!(alice.public(), first.public());
        let reopened = DeploymentDir::open(d.path()).unwrap();
        assert_eq!(
            reopened.client_keys().unwrap(),
            [first.public(), alice.public()]
        );
        for bad in ["alice", "", "Alice", "a/b", &"x".repeat(33)] {
            assert!(d.add_client(bad).is_err(), "{bad:?} accepted");
        }
        d.revoke_client("alice").unwrap();
        assert!(!path.exists());
        let reopened = DeploymentDir::open(d.path()).unwrap();
        assert_eq!(reopened.client_keys().unwrap(), [first.public()]);
        let err = reopened.client_identity("alice").unwrap_err();
        assert!(format!("{err}").contains("no client named"), "{err}");
        assert!(d.revoke_client("alice").is_err());
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    /// A deployment file whose clients are bare keys (as written before clients had names)
    /// still opens; its first client is `client`.
    #[test]
    fn bare_client_keys_still_open() {
        let d = deployment("bare");
        let json = d.path().join("deployment.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let key = v["clients"][0]["public_key"].clone();
        v["clients"] = serde_json::json!([key.clone(), key]);
        std::fs::write(&json, serde_json::to_vec(&v).unwrap()).unwrap();
        let reopened = DeploymentDir::open(d.path()).unwrap();
        let names: Vec<&str> = reopened
            .deployment
            .clients
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, [FIRST_CLIENT, "client-2"]);
        reopened.client_identity(FIRST_CLIENT).unwrap();
        std::fs::remove_dir_all(d.path()).unwrap();
    }
}
