//! Backends for the tests and chains of signed events to append.

use std::sync::Arc;

use openguild_domain::event::{self, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::{ChannelId, EventBody, EventId, StreamId, Timestamp};
use openguild_store::{EventStore, Options};
use sqlx::Connection;

pub fn key() -> ServerKey {
    ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:k1".parse().unwrap(), [42; 32])
}

/// A stream and its head, to sign events that continue it.
pub struct Chain {
    pub stream: StreamId,
    pub seq: u64,
    pub head: Option<EventId>,
    key: ServerKey,
}

impl Chain {
    pub fn new(n: u32) -> Chain {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id[4] = 0xC4;
        Chain { stream: StreamId::Channel(ChannelId::from_bytes(id)), seq: 0, head: None, key: key() }
    }

    /// The next `n` events, signed; the chain moves on.
    pub fn next(&mut self, n: usize) -> Vec<SignedEvent> {
        (0..n).map(|_| self.next_with_text(&format!("message {} of {}", self.seq + 1, self.stream))).collect()
    }

    pub fn next_with_text(&mut self, text: &str) -> SignedEvent {
        let e = self.sign(self.seq + 1, self.head, text);
        self.seq += 1;
        self.head = Some(e.event.id);
        e
    }

    /// An event for an arbitrary place in the stream (does not move the chain).
    pub fn sign(&self, seq: u64, prev: Option<EventId>, text: &str) -> SignedEvent {
        let body = EventBody::MessagePosted {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: text.into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        };
        let unsigned = UnsignedEvent {
            stream: self.stream.clone(),
            seq,
            prev: prev.into_iter().collect(),
            auth: vec![],
            sender: "@writer:hub.test".parse().unwrap(),
            ts: Timestamp::from_millis(1_700_000_000_000 + seq).unwrap(),
            body,
        };
        event::sign(unsigned, &self.key).unwrap()
    }
}

/// The PostgreSQL server the tests use (`OPENGUILD_TEST_POSTGRES_URL`, default the
/// machine's `test` database).
pub fn postgres_admin_url() -> String {
    std::env::var("OPENGUILD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A store under test, and what to clean up after it.
pub struct Backend {
    pub store: Arc<dyn EventStore>,
    pub kind: Kind,
}

pub enum Kind {
    Sqlite { dir: tempfile::TempDir },
    Postgres { database: String },
    Kurrentdb { url: String },
}

impl Backend {
    pub async fn sqlite() -> Backend {
        Self::sqlite_with(Options::default()).await
    }

    pub async fn sqlite_with(options: Options) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("events.db").display().to_string();
        let store = openguild_store::open(&url, options).await.unwrap();
        Backend { store, kind: Kind::Sqlite { dir } }
    }

    pub async fn postgres() -> Backend {
        Self::postgres_with(Options::default()).await
    }

    pub async fn postgres_with(options: Options) -> Backend {
        let database = fresh_database().await;
        let store = openguild_store::open(&database_url(&database), options).await.unwrap();
        Backend { store, kind: Kind::Postgres { database } }
    }

    /// A store in a fresh namespace (a stream prefix, in its URL) of the KurrentDB server at
    /// `OPENGUILD_TEST_KURRENTDB_URL` (e.g. `esdb://admin:changeit@127.0.0.1:2113?tls=false`),
    /// or why there is none.
    pub async fn kurrentdb() -> Result<Backend, &'static str> {
        if !cfg!(feature = "kurrentdb") {
            return Err("openguild-store was built without its `kurrentdb` feature");
        }
        let unset = "set OPENGUILD_TEST_KURRENTDB_URL to a KurrentDB server (none can be installed on this machine)";
        let Some(server) = std::env::var("OPENGUILD_TEST_KURRENTDB_URL").ok().filter(|u| !u.is_empty()) else {
            return Err(unset);
        };
        let mut n = [0u8; 6];
        getrandom::fill(&mut n).unwrap();
        let hex: String = n.iter().map(|b| format!("{b:02x}")).collect();
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}streamPrefix=og-test-{hex}-");
        let store = openguild_store::open(&url, Options::default()).await.unwrap();
        Ok(Backend { store, kind: Kind::Kurrentdb { url } })
    }

    /// The URL or path another process would open.
    pub fn url(&self) -> String {
        match &self.kind {
            Kind::Sqlite { dir } => dir.path().join("events.db").display().to_string(),
            Kind::Postgres { database } => database_url(database),
            Kind::Kurrentdb { url } => url.clone(),
        }
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Kind::Postgres { database } = &self.kind {
            drop_database(database).await;
        }
    }
}

pub fn database_url(database: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{database}")
}

/// A new, empty database named for this test process.
pub async fn fresh_database() -> String {
    let mut n = [0u8; 6];
    getrandom::fill(&mut n).unwrap();
    let name = format!("og_store_{}", n.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is needed for this test: {e}", postgres_admin_url()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    name
}

pub async fn drop_database(name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}
