//! The federation endpoints peers call (`/_openguild/federation/v1/…`). What they decide is
//! in the `openguild-federation` crate and `domain::event::verify`; this module speaks HTTP
//! and keeps what a node remembers about its peers: their keys (fetched and cached), the
//! request signatures it accepted (replays), the answers to recent transactions.
//!
//! Who is a peer is looked up on every request: the configured peers, overridden by the hub
//! aggregate's word on each name (`hub.peer_allowed`, `hub.peer_denied`;
//! `openguild_federation::peers::Allowlist`). The hub aggregate is moved on by this node's
//! own commands and by the live feed, which carries other nodes' and the command line's
//! events, so an allow or a deny takes effect without a restart, at once.
//!
//! - `GET keys`: this hub's key document, self-signed (docs/PROTOCOL.md, "Keys").
//! - `PUT send/{txn_id}`: a transaction of at most 50 events. The request is checked first
//!   (peer, destination, time, replay, signature); then each event on its own, and each
//!   refused with its reason while the others are still taken (docs/PROTOCOL.md,
//!   "Transactions").

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use openguild_domain::event::{self, PublishedKey};
use openguild_domain::proposal::{self, Seal};
use openguild_domain::{KeyId, KeyRing, RawEvent, ServerName, SignedEvent, StreamId, Timestamp};
use openguild_federation::keys::KeyDocument;
use openguild_federation::peers::{Allowlist, Listed, Peer};
use openguild_federation::request::{Credentials, Receiver, Replays, Request};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::now;
use crate::commands::ImportError;
use crate::errors::ApiError;
use crate::{Api, AppState, error};

/// The most events in one transaction.
pub const MAX_EVENTS: usize = 50;
/// The largest transaction body: 50 events of at most 64 KiB, base64 (4/3), and the JSON.
pub const MAX_TRANSACTION_BYTES: usize = MAX_EVENTS * openguild_store::DEFAULT_MAX_EVENT_BYTES * 4 / 3 + 256 * 1024;
/// The most ephemeral notices in one transaction.
pub const MAX_NOTICES: usize = 100;
/// How often a peer's keys may be fetched when an unknown key id shows up.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// How many transaction answers are kept for retries.
const ANSWERS_KEPT: usize = 1_024;

/// What this node keeps about its peers.
pub(crate) struct Federation {
    /// The configured peers; the hub stream overrides them (`Api::allowlist`).
    config: BTreeMap<ServerName, Peer>,
    keys: Mutex<HashMap<ServerName, PeerKeys>>,
    replays: Mutex<Replays>,
    answers: Mutex<HashMap<(ServerName, String), serde_json::Value>>,
    /// Owners whose queue of proposals a task delivers now, so each has one (`remote`).
    pub(crate) delivering: Mutex<std::collections::BTreeSet<ServerName>>,
    http: reqwest::Client,
    /// Where fetched key documents are kept.
    db: openguild_projections::ReadDb,
    /// This hub's retired keys and since when its current key signs, for its key document.
    retired: BTreeMap<KeyId, openguild_federation::keys::OldVerifyKey>,
    key_since: Timestamp,
    /// The sender's longest pause between failed tries.
    retry_max: Duration,
}

struct PeerKeys {
    keys: Vec<(KeyId, PublishedKey)>,
    fetched: Instant,
}

impl Federation {
    pub(crate) fn new(
        config: BTreeMap<ServerName, Peer>,
        db: openguild_projections::ReadDb,
        retired: BTreeMap<KeyId, openguild_federation::keys::OldVerifyKey>,
        key_since: Timestamp,
        retry_max: Duration,
    ) -> Self {
        Self {
            db,
            retired,
            key_since,
            retry_max,
            config,
            keys: Mutex::default(),
            replays: Mutex::default(),
            answers: Mutex::default(),
            delivering: Mutex::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
        }
    }

    /// The answer given to `origin`'s request `id` (a transaction, a proposal), if recent.
    pub(crate) fn answer(&self, origin: &ServerName, id: &str) -> Option<serde_json::Value> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).get(&(origin.clone(), id.to_owned())).cloned()
    }

    /// Keeps an answer, to give again to a retry of the same request.
    pub(crate) fn remember(&self, origin: ServerName, id: String, answer: serde_json::Value) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= ANSWERS_KEPT {
            answers.clear();
        }
        answers.insert((origin, id), answer);
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn retry_max(&self) -> Duration {
        self.retry_max
    }
    /// `origin`'s key `key_id` if it is known and valid at `at` (`None` for any time).
    fn key(&self, origin: &ServerName, key_id: &KeyId, at: Option<Timestamp>) -> Option<[u8; 32]> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let (_, k) = keys.get(origin)?.keys.iter().find(|(id, _)| id == key_id)?;
        let valid = at.is_none_or(|t| t >= k.valid_from && k.valid_until.is_none_or(|until| t < until));
        valid.then_some(k.public_key)
    }

    /// Fetches `origin`'s key document from `url`, the peer's, if its keys are unknown, or if
    /// `key_id` is not among them and they were last fetched more than a minute ago.
    async fn ensure_keys(&self, origin: &ServerName, url: Option<&str>, key_id: &KeyId) {
        let stale = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match keys.get(origin) {
                None => true,
                Some(k) => !k.keys.iter().any(|(id, _)| id == key_id) && k.fetched.elapsed() >= REFETCH_EVERY,
            }
        };
        let Some(url) = url.filter(|_| stale) else { return };
        let fetched = async {
            let doc: KeyDocument = self
                .http
                .get(format!("{url}/_openguild/federation/v1/keys"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<_, reqwest::Error>(doc)
        }
        .await;
        let keys = match fetched {
            Ok(doc) => match doc.verify(origin) {
                Ok(keys) => {
                    // Kept for `events verify`, which checks this peer's events offline.
                    if let Ok(json) = serde_json::to_string(&doc)
                        && let Err(e) =
                            openguild_projections::queries::save_peer_keys(&self.db, origin.as_str(), &json).await
                    {
                        tracing::warn!(peer = %origin, error = %e, "federation: keeping the peer's keys failed");
                    }
                    keys
                }
                Err(e) => {
                    tracing::warn!(peer = %origin, error = %e, "federation: the peer's key document does not verify");
                    Vec::new()
                }
            },
            Err(e) => {
                tracing::warn!(peer = %origin, error = %e, "federation: fetching the peer's keys failed");
                Vec::new()
            }
        };
        // Remembered even when empty, so an unreachable peer is asked at most once a minute.
        let mut all = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let entry = all.entry(origin.clone()).or_insert(PeerKeys { keys: Vec::new(), fetched: Instant::now() });
        if !keys.is_empty() {
            entry.keys = keys;
        }
        entry.fetched = Instant::now();
    }

    fn keys_of(&self, server: &ServerName) -> Vec<(KeyId, PublishedKey)> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(server).map(|k| k.keys.clone()).unwrap_or_default()
    }

    fn ring(&self, origin: &ServerName) -> KeyRing {
        let mut ring = KeyRing::default();
        if let Some(k) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(origin) {
            for (id, key) in &k.keys {
                ring.insert(origin.clone(), id.clone(), key.clone());
            }
        }
        ring
    }
}

/// Why a stream's owner is not known: its guild is not here yet, or the event cannot be placed.
enum Unowned {
    Missing(String),
    Refused(String),
}

/// Why one event of a transaction was refused; for a stream that is behind here, where it
/// stands, so the sender can send what is missing.
pub(crate) struct Refused {
    id: String,
    /// A short reason for metrics (`malformed`, `signature`, `gap`, …).
    code: &'static str,
    pub(crate) why: String,
    stream_at: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct StreamParams {
    from: Option<u64>,
    limit: Option<usize>,
}

/// The most events one backfill answer carries.
const MAX_BACKFILL: usize = 500;

/// `GET /_openguild/federation/v1/streams/{stream}?from=SEQ&limit=N` (signed): a stream's
/// events from `seq` on, for a peer with members in its guild, to catch up after downtime.
/// `GET …/state/{guild}` is the guild's stream from the start.
pub(crate) async fn stream(
    State(api): State<AppState>,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    params: Result<axum::extract::Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(axum::extract::Query(p)) => p,
        Err(e) => {
            let why = format!("{}; `from` is a seq (1 and up), `limit` a count up to {MAX_BACKFILL}", e.body_text());
            return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", &why);
        }
    };
    let stream: StreamId = match stream.parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", &format!("not a stream: {e}")),
    };
    serve_stream(&api, stream, params.from.unwrap_or(1), params.limit.unwrap_or(100), &uri, &headers).await
}

pub(crate) async fn state(
    State(api): State<AppState>,
    Path(guild): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let guild: openguild_domain::GuildId = match guild.parse() {
        Ok(g) => g,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", &format!("not a guild id: {e}")),
    };
    serve_stream(&api, StreamId::Guild(guild), 1, MAX_BACKFILL, &uri, &headers).await
}

async fn serve_stream(
    api: &Api,
    stream: StreamId,
    from: u64,
    limit: usize,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let peer = match api.peer_request("GET", uri, headers, b"").await {
        Ok(origin) => origin,
        Err(response) => return response,
    };
    match api.stream_for_peer(&peer, &stream, from, limit.clamp(1, MAX_BACKFILL)).await {
        Ok(events) => {
            let next = events.last().map(|e| e.event.core.seq + 1);
            let wire: Vec<WireEvent> = events.iter().map(|e| WireEvent::of(&e.raw)).collect();
            Json(json!({ "stream": stream.to_string(), "events": wire, "next": next })).into_response()
        }
        Err((status, code, why)) => error(status, code, &why),
    }
}

/// `GET /_openguild/federation/v1/invites/{code}` (signed): the guild an invite of this hub
/// opens, for a peer whose user was given the code (`CODE@this-hub`) and joins through their
/// own hub. Knowing the code is what lets anyone join; this tells nothing more.
pub(crate) async fn invite(
    State(api): State<AppState>,
    Path(code): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = api.peer_request("GET", &uri, &headers, b"").await {
        return response;
    }
    let code: openguild_domain::InviteCode = match code.parse() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", &format!("not an invite code: {e}")),
    };
    match api.guild_of_invite(&code).await {
        Ok(guild) => Json(json!({ "guild": guild.to_string() })).into_response(),
        Err(e) if e.code == "NOT_FOUND" => error(StatusCode::NOT_FOUND, "NOT_FOUND", &e.message),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", &e.message),
    }
}

/// `GET /_openguild/federation/v1/keys`: no authentication (keys are public); a peer checks
/// the document's own signature.
pub(crate) async fn keys(State(api): State<AppState>) -> Response {
    match KeyDocument::publish(api.commands.key(), api.federation.key_since, api.federation.retired.clone(), now()) {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "publishing the key document failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "the key document could not be signed; it has been logged",
            )
        }
    }
}

/// One event as it travels: its three stored byte strings, base64.
#[derive(Serialize, Deserialize)]
pub struct WireEvent {
    pub core: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub signatures: String,
}

impl WireEvent {
    pub fn of(raw: &RawEvent) -> WireEvent {
        WireEvent {
            core: B64.encode(&raw.core),
            body: raw.body.as_ref().map(|b| B64.encode(b)),
            signatures: B64.encode(&raw.signatures),
        }
    }

    pub(crate) fn raw(&self) -> Result<RawEvent, String> {
        let bytes = |what: &str, text: &str| {
            B64.decode(text.trim_end_matches('=')).map_err(|_| format!("{what} is not base64"))
        };
        let core = bytes("core", &self.core)?;
        let id = openguild_domain::EventId::from_hash(event::hash(event::context::EVENT_ID, &core));
        Ok(RawEvent {
            id,
            core,
            body: self.body.as_deref().map(|b| bytes("body", b)).transpose()?,
            signatures: bytes("signatures", &self.signatures)?,
        })
    }
}

/// A transaction's body.
#[derive(Serialize, Deserialize)]
pub struct Transaction {
    pub events: Vec<WireEvent>,
    #[serde(default)]
    pub notices: Vec<serde_json::Value>,
}

/// `PUT /_openguild/federation/v1/send/{txn_id}`.
pub(crate) async fn send(
    State(api): State<AppState>,
    Path(txn_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let origin = match api.peer_request("PUT", &uri, &headers, &body).await {
        Ok(origin) => origin,
        Err(response) => return response,
    };
    if let Some(answer) = api.federation.answer(&origin, &txn_id) {
        return Json(answer).into_response();
    }
    let txn: Transaction = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                &format!("the transaction is not {{events, notices}}: {e}"),
            );
        }
    };
    if txn.events.len() > MAX_EVENTS || txn.notices.len() > MAX_NOTICES {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            &format!(
                "a transaction holds at most {MAX_EVENTS} events and {MAX_NOTICES} notices (this one: {} and {}); split it",
                txn.events.len(),
                txn.notices.len()
            ),
        );
    }
    let outcomes = api.take_events(&origin, &txn.events).await;
    for notice in &txn.notices {
        api.take_notice(&origin, notice).await;
    }
    let mut results = serde_json::Map::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let (id, outcome) = match outcome {
            Ok(id) => (id, json!({ "accepted": true })),
            Err(Refused { id, code, why, stream_at }) => {
                crate::metrics::federation_event_refused(code);
                tracing::info!(peer = %origin, event = %id, reason = %why, "federation: event refused");
                match stream_at {
                    Some(at) => (id, json!({ "refused": why, "stream_at": at })),
                    None => (id, json!({ "refused": why })),
                }
            }
        };
        let key = if id.is_empty() { format!("#{i}") } else { id };
        results.insert(key, outcome);
    }
    let answer = json!({ "events": results });
    api.federation.remember(origin, txn_id, answer.clone());
    Json(answer).into_response()
}

impl Api {
    /// Answers `ask` from the allowlist in force: the configured peers, overridden by the
    /// hub aggregate as this node knows it now.
    async fn allowlist<T>(&self, ask: impl FnOnce(Allowlist<'_>) -> T) -> Result<T, ApiError> {
        let hub = self.commands.hub_cell().await?;
        let hub = hub.lock().await;
        Ok(ask(Allowlist { us: &self.server, config: &self.federation.config, hub: &hub.peers }))
    }

    /// `name`, if it is an allowed peer now, with the URL it is reached at.
    pub(crate) async fn peer(&self, name: &ServerName) -> Result<Option<Peer>, ApiError> {
        self.allowlist(|list| list.peer(name)).await
    }

    /// The peers allowed now, in name order.
    pub(crate) async fn allowed_peers(&self) -> Result<Vec<Peer>, ApiError> {
        self.allowlist(|list| list.allowed()).await
    }

    /// Every name the configuration or the hub stream mentions, allowed or not, and why.
    pub(crate) async fn listed_peers(&self) -> Result<Vec<Listed>, ApiError> {
        self.allowlist(|list| list.list()).await
    }

    /// The peer a signed request comes from, or the refusal to answer (docs/PROTOCOL.md,
    /// "Request signatures"): the order of the checks is the protocol's.
    pub(crate) async fn authenticate_peer(
        &self,
        authorization: Option<&str>,
        request: &Request<'_>,
    ) -> Result<ServerName, Response> {
        // The claimed origin is looked up on the allowlist, and an unknown key of a peer
        // fetched, before the checks, which stay synchronous.
        let claimed = authorization.and_then(|a| Credentials::parse(a).ok());
        let peer = match &claimed {
            Some(c) => self.peer(&c.origin).await.map_err(|e| {
                tracing::warn!(error = %e.message, "federation: the allowlist cannot be read");
                error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the allowlist cannot be read now; retry shortly")
            })?,
            None => None,
        };
        if let (Some(c), Some(p)) = (&claimed, &peer) {
            self.federation.ensure_keys(&c.origin, p.url.as_deref(), &c.key).await;
        }
        let is_peer = |s: &ServerName| peer.as_ref().is_some_and(|p| p.name == *s);
        let key = |s: &ServerName, k: &KeyId| self.federation.key(s, k, Some(now()));
        let receiver = Receiver { us: &self.server, is_peer: &is_peer, key: &key };
        let mut replays = self.federation.replays.lock().unwrap_or_else(|p| p.into_inner());
        receiver.check(authorization, request, now(), &mut replays).map_err(|refusal| {
            crate::metrics::refused("federation_request");
            tracing::info!(refusal = %refusal, "federation: request refused");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let code = if status == StatusCode::FORBIDDEN { "FORBIDDEN" } else { "UNAUTHENTICATED" };
            error(status, code, &refusal.to_string())
        })
    }

    /// Authenticates a peer's signed request and takes it from the peer's rate bucket, before
    /// any other work: the peer, or the refusal to answer with.
    pub(crate) async fn peer_request(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<ServerName, Response> {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let peer = self.authenticate_peer(authorization, &Request { method, target, body }).await?;
        self.peer_rate(&peer).await?;
        Ok(peer)
    }

    /// Takes one request from `origin`'s bucket: a peer that floods is slowed, not served.
    async fn peer_rate(&self, origin: &ServerName) -> Result<(), Response> {
        let limits = &self.settings.limits;
        let rate = crate::limits::Rate {
            per_second: limits.federation_requests_per_second,
            burst: limits.federation_request_burst,
        };
        self.limiter.take(&format!("federation:{origin}"), rate).await.map_err(|e| {
            crate::metrics::refused("federation_rate");
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                &format!("too many requests from {origin}; retry after {:.1} s", e.retry_after.as_secs_f64()),
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&e.retry_after.as_secs().max(1).to_string()) {
                response.headers_mut().insert("retry-after", v);
            }
            response
        })
    }

    /// The guild a federated stream belongs to: `None` for streams that never leave their
    /// hub (user, hub, DM), an error for a channel this hub does not know.
    async fn guild_of_stream(&self, stream: &StreamId) -> Result<Option<openguild_domain::GuildId>, ()> {
        match stream {
            StreamId::Guild(g) => Ok(Some(*g)),
            StreamId::Channel(c) => self.commands.guild_of(*c).await.map(Some).map_err(|_| ()),
            _ => Ok(None),
        }
    }

    /// The events of `stream` from `from` (at most `limit`), if `peer` may see them: the
    /// stream is of a guild with members on `peer`.
    async fn stream_for_peer(
        &self,
        peer: &ServerName,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<openguild_store::StoredEvent>, (StatusCode, &'static str, String)> {
        let guild = match self.guild_of_stream(stream).await {
            Ok(Some(g)) => g,
            Ok(None) => {
                return Err((
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    format!("stream {stream} does not travel between hubs"),
                ));
            }
            Err(()) => return Err((StatusCode::NOT_FOUND, "NOT_FOUND", format!("no stream {stream} here"))),
        };
        let cell = self
            .commands
            .guild_cell(guild)
            .await
            .map_err(|_| (StatusCode::NOT_FOUND, "NOT_FOUND", format!("no stream {stream} here")))?;
        let shared = cell.lock().await.members.keys().any(|u| u.server() == *peer);
        if !shared {
            return Err((StatusCode::FORBIDDEN, "FORBIDDEN", format!("{peer} has no members in guild {guild}")));
        }
        self.store.read_stream(stream, from.max(1), limit, openguild_store::Direction::Forward).await.map_err(|e| {
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", format!("the stream cannot be read now: {e}"))
        })
    }

    /// The hub that owns `stream` (created its guild): from the guild as this hub holds it,
    /// or, for a guild's first event, from the event itself.
    async fn owner_of(
        &self,
        stream: &StreamId,
        seq: u64,
        event: &openguild_domain::Event,
    ) -> Result<ServerName, Unowned> {
        let guild = match self.guild_of_stream(stream).await {
            Ok(Some(g)) => g,
            Ok(None) => return Err(Unowned::Refused(format!("stream {stream} does not travel between hubs"))),
            Err(()) => {
                return Err(Unowned::Missing(format!(
                    "{stream} is of a guild this hub does not have yet; send the guild first"
                )));
            }
        };
        if let StreamId::Guild(_) = stream
            && seq == 1
        {
            return match event.content() {
                openguild_domain::EventBody::GuildCreated(created) => Ok(created.origin.clone()),
                _ => Err(Unowned::Refused("a guild's stream starts with its create event".into())),
            };
        }
        // The guild as the command path holds it (loaded once, then kept): reading its
        // create event from the store for every received event was 9% of a catching-up
        // hub's time.
        let missing = || Unowned::Missing(format!("guild {guild} is not here yet; send its stream from the start"));
        match self.commands.guild_cell(guild).await {
            Ok(cell) => cell.lock().await.origin.clone().ok_or_else(missing),
            Err(crate::commands::CommandError::Domain(openguild_domain::DomainError::NotFound { .. })) => {
                Err(missing())
            }
            Err(e) => Err(Unowned::Refused(format!("the guild cannot be read now: {e}"))),
        }
    }

    /// Checks the seal of the hub of `sender` (this hub, or a peer whose keys are fetched as
    /// needed) on a proposal, with the key valid at the seal's time.
    pub(crate) async fn check_seal(
        &self,
        stream: &StreamId,
        sender: &openguild_domain::UserId,
        content_hash: &[u8; 32],
        seal: &Seal,
    ) -> Result<(), String> {
        let home = sender.server();
        let keys = if home == self.server {
            let own = self.commands.key();
            vec![(
                own.key_id().clone(),
                PublishedKey { public_key: own.public_key(), valid_from: Timestamp::default(), valid_until: None },
            )]
        } else if let Ok(Some(peer)) = self.peer(&home).await {
            self.federation.ensure_keys(&home, peer.url.as_deref(), &seal.key_id).await;
            self.federation.keys_of(&home)
        } else {
            return Err(format!("the sender {sender} lives on {home}, which is not a peer of this hub"));
        };
        let signed = proposal::signing_hash(stream, sender, content_hash, &seal.nonce, seal.ts)
            .map_err(|e| format!("the proposal cannot be encoded: {e}"))?;
        openguild_federation::keys::verify_hub_signature(&signed, &seal.key_id, &seal.signature, &keys, seal.ts)
            .map_err(|why| format!("the proposal of {sender} is not sealed by {home}: {why}"))
    }

    /// Takes an ephemeral notice from `origin` about one of its own users — today `typing`
    /// (`{"type": "typing", "channel", "user"}`), shown to this hub's subscribers if the user
    /// may post in the channel. Anything else is dropped: notices have no answer.
    async fn take_notice(&self, origin: &ServerName, notice: &serde_json::Value) {
        let (Some("typing"), Some(channel), Some(user)) =
            (notice["type"].as_str(), notice["channel"].as_str(), notice["user"].as_str())
        else {
            return;
        };
        let (Ok(channel), Ok(user)) = (channel.parse(), user.parse::<openguild_domain::UserId>()) else { return };
        if user.server() != *origin {
            tracing::info!(peer = %origin, %user, "federation: a typing notice for another hub's user dropped");
            return;
        }
        let Ok(guild) = self.commands.guild_of(channel).await else { return };
        let Ok(cell) = self.commands.guild_cell(guild).await else { return };
        let may = cell
            .lock()
            .await
            .channel_permissions(&user, channel, now())
            .contains(openguild_domain::Permissions::SEND_MESSAGES);
        if may {
            self.fanout.typing(channel, user).await;
        }
    }

    /// Verifies and takes a transaction's events from `origin`, in order: each one's id, or
    /// why it was refused. Each event is verified in turn; a channel's events are then taken
    /// together (one write per channel, `Commands::import_many`), a guild's one by one, since
    /// later events are checked against what the guild's own events make of it.
    pub(crate) async fn take_events(&self, origin: &ServerName, events: &[WireEvent]) -> Vec<Result<String, Refused>> {
        let mut outcomes: Vec<Result<String, Refused>> = Vec::with_capacity(events.len());
        let mut pending: Vec<(usize, String, SignedEvent)> = Vec::new();
        for (i, wire) in events.iter().enumerate() {
            match self.verify_received(origin, wire).await {
                Ok((id, signed)) if matches!(signed.event.core.stream, StreamId::Channel(_)) => {
                    outcomes.push(Ok(id.clone()));
                    pending.push((i, id, signed));
                }
                Ok((id, signed)) => {
                    self.import_received(std::mem::take(&mut pending), &mut outcomes).await;
                    outcomes.push(Ok(id.clone()));
                    self.import_received(vec![(i, id, signed)], &mut outcomes).await;
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        self.import_received(pending, &mut outcomes).await;
        outcomes
    }

    /// Takes verified events into this hub's copies (`Commands::import_many`), and turns the
    /// outcome of each one that is not taken into why.
    async fn import_received(
        &self,
        events: Vec<(usize, String, SignedEvent)>,
        outcomes: &mut [Result<String, Refused>],
    ) {
        if events.is_empty() {
            return;
        }
        let (places, events): (Vec<(usize, String)>, Vec<SignedEvent>) =
            events.into_iter().map(|(i, id, signed)| ((i, id), signed)).unzip();
        let streams: Vec<(StreamId, u64)> =
            events.iter().map(|s| (s.event.core.stream.clone(), s.event.core.seq)).collect();
        let imported = self.commands.import_many(events).await;
        for (((i, id), (stream, seq)), result) in places.into_iter().zip(streams).zip(imported) {
            let refuse = |code: &'static str, why: String| Refused { id: id.clone(), code, why, stream_at: None };
            outcomes[i] = match result {
                Ok(_) => Ok(id.clone()),
                Err(ImportError::Gap { at, .. }) => Err(Refused {
                    stream_at: Some(at),
                    ..refuse(
                        "gap",
                        format!(
                            "stream {stream} is at seq {at} here, and this event is seq {seq}: send the events in between first"
                        ),
                    )
                }),
                Err(ImportError::Unauthorised(why)) => Err(refuse("unauthorised", why.to_string())),
                Err(e) => Err(refuse("store", format!("not stored: {e}"))),
            };
        }
    }

    /// Verifies one event from `origin`: its id and the event, or why it was refused.
    pub(crate) async fn verify_received(
        &self,
        origin: &ServerName,
        wire: &WireEvent,
    ) -> Result<(String, SignedEvent), Refused> {
        let raw = wire.raw().map_err(|why| Refused { id: String::new(), code: "malformed", why, stream_at: None })?;
        let id = raw.id.to_string();
        let refuse = |code: &'static str, why: String| Refused { id: id.clone(), code, why, stream_at: None };
        let size = raw.core.len() + raw.body.as_ref().map_or(0, Vec::len) + raw.signatures.len();
        if size > openguild_store::DEFAULT_MAX_EVENT_BYTES {
            return Err(refuse(
                "too_large",
                format!("{size} bytes; an event is at most {}", openguild_store::DEFAULT_MAX_EVENT_BYTES),
            ));
        }
        // The cheap, strict decode first: it names the event's origin and key.
        let decoded = raw.decode_strict().map_err(|e| refuse("malformed", e.to_string()))?;
        let core = &decoded.core;
        if core.origin != *origin {
            return Err(refuse(
                "wrong_origin",
                format!(
                    "signed by {}, not by the hub that sent it ({origin}); an event reaches a hub from its origin",
                    core.origin
                ),
            ));
        }
        if !matches!(core.stream, StreamId::Guild(_) | StreamId::Channel(_)) {
            return Err(refuse("stream", format!("stream {} does not travel between hubs", core.stream)));
        }
        for key_id in decoded.signatures.get(origin).into_iter().flatten().map(|(k, _)| k) {
            if self.federation.key(origin, key_id, None).is_none() {
                let url = self.peer(origin).await.ok().flatten().and_then(|p| p.url);
                self.federation.ensure_keys(origin, url.as_deref(), key_id).await;
            }
        }
        let event =
            event::verify(&raw, &self.federation.ring(origin)).map_err(|e| refuse("signature", e.to_string()))?;
        // A sender of another hub: the event must carry that hub's seal on the proposal it
        // was made from, so the origin cannot put words in its users' mouths. That the seal
        // is fresh and not replayed is checked with the stream's state (`replica`).
        let home = event.core.sender.server();
        if let Some(seal) = &event.core.proposal
            && home != event.core.origin
        {
            self.check_seal(&event.core.stream, &event.core.sender, &event.core.content_hash, seal)
                .await
                .map_err(|why| refuse("sender_hub", why))?;
        }
        let stream = event.core.stream.clone();
        let seq = event.core.seq;
        // Owner-sequenced streams: only the hub that created a guild appends to its streams.
        match self.owner_of(&stream, seq, &event).await {
            Ok(owner) if owner == *origin => {}
            Ok(owner) => {
                return Err(refuse(
                    "not_owner",
                    format!("{stream} belongs to a guild of {owner}; only its owner appends to it"),
                ));
            }
            // The guild's start is missing here: the sender pushes the stream from seq 1.
            Err(Unowned::Missing(why)) if matches!(stream, StreamId::Guild(_)) => {
                return Err(Refused { stream_at: Some(0), ..refuse("gap", why) });
            }
            Err(Unowned::Missing(why) | Unowned::Refused(why)) => return Err(refuse("not_owner", why)),
        }
        // Checked against this hub's copy of the guild by the guild's own rules, then
        // appended as signed (`import_received`).
        Ok((id, SignedEvent { event, raw }))
    }
}
