//! `spawn_app()`: the whole API in this process — router on port 0, a temporary SQLite event
//! store and read models, the real projections and fan-out — so each resolver's policy gets a
//! small, named test over real HTTP without starting the binary. The binary's own tests
//! (`server/tests`) keep what only a process can show: the CLI, crashes, signals.

use std::sync::Arc;
use std::time::Duration;

use openguild_api::{Api, ApiSettings};
use openguild_domain::event::ServerKey;
use openguild_projections::{Projections, ReadDb};
use openguild_store::Options;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A running API and a client for it.
pub struct App {
    pub url: String,
    pub api: Arc<Api>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
        self.api.stop();
    }
}

/// The API on `127.0.0.1:0` with default settings but `settings`.
pub async fn spawn_app_with(settings: ApiSettings) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store =
        openguild_store::open(&dir.path().join("events.db").display().to_string(), Options::default()).await.unwrap();
    let db = ReadDb::open(&dir.path().join("read.db").display().to_string()).await.unwrap();
    let projections =
        Arc::new(Projections::start(db, store.clone(), openguild_projections::all("hub.test")).await.unwrap());
    let key = ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:k1".parse().unwrap(), [5; 32]);
    let api = Api::start(store, projections, key, settings, openguild_api::FederationSetup::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = openguild_api::router(api.clone(), dir.path().join("ui"));
    let stop = CancellationToken::new();
    tokio::spawn(openguild_api::listen::serve(
        listener,
        router,
        api.connection_limits(),
        stop.clone(),
        Duration::from_secs(1),
    ));
    App { url, api, stop, _dir: dir }
}

pub async fn spawn_app() -> App {
    spawn_app_with(ApiSettings::default()).await
}

impl App {
    /// One GraphQL request; the whole response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// `data`, failing the test with the errors if there are any.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let r = self.gql(token, query, variables).await;
        assert!(r.get("errors").is_none(), "{query}\n{r:#}");
        r["data"].clone()
    }

    /// The code of the first error, and the error.
    pub async fn refused(&self, token: Option<&str>, query: &str, variables: Value) -> (String, Value) {
        let r = self.gql(token, query, variables).await;
        let err = r["errors"][0].clone();
        assert!(err.is_object(), "expected a refusal: {query}\n{r:#}");
        (err["extensions"]["code"].as_str().unwrap_or_default().to_owned(), err)
    }

    pub async fn register(&self, handle: &str) -> String {
        let d = self
            .ok(
                None,
                "mutation($h: String!) { register(handle: $h, password: \"correct horse\") { token } }",
                json!({ "h": handle }),
            )
            .await;
        d["register"]["token"].as_str().unwrap().to_owned()
    }

    /// A guild of `owner`'s with a text channel and an invite code.
    pub async fn guild(&self, owner: &str) -> (String, String, String) {
        let g = self.ok(Some(owner), "mutation { createGuild(input: {name: \"Policy\"}) { id } }", json!({})).await;
        let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
        let c = self
            .ok(
                Some(owner),
                "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"general\", kind: TEXT}) { id } }",
                json!({ "g": guild }),
            )
            .await;
        let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
        let i = self
            .ok(Some(owner), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
            .await;
        (guild, channel, i["createInvite"]["code"].as_str().unwrap().to_owned())
    }
}
