//! Configuration, in layers (figment): the defaults, then one optional `openguild.toml`,
//! then `OPENGUILD_*` environment variables (`__` between section names:
//! `OPENGUILD_API__LIMITS__MAX_DEPTH=20`), then command-line flags, each overriding the one
//! before. Every setting can come from the environment, as container deployments expect.
//! With nothing set, everything lives under `./data` and the server listens on
//! 127.0.0.1:8080.
//!
//! The documented defaults and variables (`docs/CONFIG.md`) are generated from
//! [`Settings::default`] by `openguild config defaults`, and a test fails when they drift.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

/// The prefix of every setting's environment variable.
const ENV_PREFIX: &str = "OPENGUILD_";
/// `OPENGUILD_*` variables that are not settings of the file: the file itself, logs and
/// traces (docs/OPERATIONS.md), short forms the command line reads (`OPENGUILD_REDIS_URL`, …), and secrets of
/// single commands (the backup passphrase).
const NOT_SETTINGS: &[&str] = &[
    "config",
    "log",
    "redis_url",
    "federation_peers",
    "federation_peer_tokens",
    "loadtest_password",
    "backup_passphrase",
    "log_format",
    "otlp_endpoint",
    "otlp_protocol",
];

/// Every setting, with its default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded event store, read models and server key live.
    pub data_dir: PathBuf,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// This hub's server name, as in user ids (`@handle:SERVER`).
    pub server_name: String,
    /// The event store: a SQLite path, `postgres://…` or `esdb://…` (empty: `<data_dir>/events.db`).
    pub store_url: String,
    /// The read model database: a SQLite path or `postgres://…` (empty: `<data_dir>/read.db`).
    pub read_db_url: String,
    /// The built web client, served at every path the API does not answer (relative to
    /// the working directory; `make ui` builds it into `ui/dist`).
    pub ui_dir: PathBuf,
    pub federation: Federation,
    /// The client API: origins, GraphiQL, Redis, limits.
    pub api: openguild_api::ApiSettings,
    /// Voice channels: the hub's LiveKit (docs/OPERATIONS.md, "Voice: LiveKit and TURN").
    /// Also `OPENGUILD_VOICE_URL`, `OPENGUILD_VOICE_API_KEY`, `OPENGUILD_VOICE_API_SECRET`.
    pub voice: openguild_voice::VoiceSettings,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Federation {
    /// Peer hubs to federate with, as `name=base-url` (or a bare `name` for a peer that only
    /// pulls). They bootstrap the allowlist: the hub stream's `hub.peer_allowed` and
    /// `hub.peer_denied` events (`openguild federation allow|deny`) override them.
    pub peers: Vec<String>,
    /// The longest pause, in seconds, of a peer's sender between failed tries: after an
    /// outage the peer waits at most about this long for its queue.
    pub retry_max_seconds: u64,
    /// Bearer token of each peer for the outbox pull, by peer name.
    pub peer_tokens: BTreeMap<String, Secret>,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            retry_max_seconds: openguild_api::sender::DEFAULT_RETRY_MAX.as_secs(),
            peer_tokens: BTreeMap::new(),
        }
    }
}

/// A value that never prints.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            server_name: "localhost".into(),
            store_url: String::new(),
            read_db_url: String::new(),
            ui_dir: PathBuf::from("ui/dist"),
            federation: Federation::default(),
            api: openguild_api::ApiSettings::default(),
            voice: openguild_voice::VoiceSettings::default(),
        }
    }
}

impl Settings {
    /// The defaults, then `path` (or `./openguild.toml` if it exists), then the
    /// `OPENGUILD_*` environment variables. Unknown keys are refused with their name (and,
    /// in the file, their line).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        let (path, required) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from("openguild.toml"), false),
        };
        let file: toml::Table = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let what = || format!("reading the configuration {}", path.display());
                // Checked as settings first: toml's errors name the line.
                toml::from_str::<Settings>(&text).with_context(what)?;
                toml::from_str(&text).with_context(what)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => toml::Table::new(),
            Err(e) => return Err(e).with_context(|| format!("reading the configuration {}", path.display())),
        };
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                !NOT_SETTINGS.contains(&key.as_str()) && !key.starts_with("test_")
            })
            // LiveKit's three, in the short form its own tools use.
            .map(|key| match key.as_str().to_ascii_lowercase().as_str() {
                "voice_url" => "voice.url".into(),
                "voice_api_key" => "voice.api_key".into(),
                "voice_api_secret" => "voice.api_secret".into(),
                _ => key.into(),
            })
            .split("__");
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Serialized::defaults(file))
            .merge(env)
            .extract()
            .map_err(|e| {
                let e = e.to_string();
                anyhow::anyhow!(
                    "{e}; settings come from {} then OPENGUILD_* variables (docs/CONFIG.md)",
                    path.display()
                )
            })
    }

    /// The environment variable of every setting, with its default (`OPENGUILD_API__LIMITS__MAX_DEPTH=12`),
    /// for `docs/CONFIG.md`.
    pub fn env_names() -> anyhow::Result<Vec<String>> {
        fn walk(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
            match value {
                toml::Value::Table(t) if !t.is_empty() => {
                    for (k, v) in t {
                        let name = if prefix.is_empty() {
                            k.to_ascii_uppercase()
                        } else {
                            format!("{prefix}__{}", k.to_ascii_uppercase())
                        };
                        walk(&name, v, out);
                    }
                }
                // A map by name (OIDC providers, peer tokens): one entry shown by its shape.
                toml::Value::Table(_) => out.push(format!("{ENV_PREFIX}{prefix}__<NAME>=…")),
                other => out.push(format!("{ENV_PREFIX}{prefix}={other}")),
            }
        }
        let mut out = Vec::new();
        walk("", &toml::Value::try_from(Settings::default())?, &mut out);
        Ok(out)
    }

    /// The allowlisted peers, read (docs/PROTOCOL.md, "Peers").
    pub fn peers(
        &self,
    ) -> anyhow::Result<std::collections::BTreeMap<openguild_domain::ServerName, openguild_federation::peers::Peer>>
    {
        Ok(openguild_federation::peers::parse(&self.federation.peers)?)
    }

    pub fn store_url(&self) -> String {
        if self.store_url.is_empty() {
            self.data_dir.join("events.db").display().to_string()
        } else {
            self.store_url.clone()
        }
    }

    pub fn read_db_url(&self) -> String {
        if self.read_db_url.is_empty() {
            self.data_dir.join("read.db").display().to_string()
        } else {
            self.read_db_url.clone()
        }
    }

    /// The defaults as TOML, for `docs/CONFIG.md`.
    pub fn defaults_toml() -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(&Settings::default())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = toml::from_str::<Settings>("listen = \"127.0.0.1:9000\"\nlisten_port = 9\n").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
        let ok: Settings =
            toml::from_str("[federation]\npeers = [\"peer.example\"]\npeer_tokens = { \"peer.example\" = \"t0k\" }\n")
                .unwrap();
        assert_eq!(ok.federation.peers, ["peer.example"]);
        assert_eq!(format!("{:?}", ok.federation.peer_tokens), "{\"peer.example\": [secret]}");
        assert_eq!(ok.listen, Settings::default().listen, "unset keys keep their defaults");
    }

    #[test]
    fn every_setting_has_its_documented_variable() {
        let doc = include_str!("../../docs/CONFIG.md");
        let names = Settings::env_names().unwrap();
        assert!(names.contains(&"OPENGUILD_API__LIMITS__MAX_DEPTH=12".to_owned()), "{names:#?}");
        let missing: Vec<&String> = names.iter().filter(|n| !doc.contains(n.as_str())).collect();
        assert!(
            missing.is_empty(),
            "docs/CONFIG.md lacks these variables (`openguild config env` lists them): {missing:#?}"
        );
    }

    #[test]
    fn the_documented_defaults_match_the_code() {
        let doc = include_str!("../../docs/CONFIG.md");
        let defaults = Settings::defaults_toml().unwrap();
        assert!(
            doc.contains(&defaults),
            "docs/CONFIG.md is out of date; regenerate it with `openguild config defaults`:\n{defaults}"
        );
    }
}
