//! OpenGuild's HTTP face: the GraphQL client API (queries, mutations, subscriptions over
//! websockets), health and readiness, metrics, the federation outbox pull, and the built web
//! client at every other path.
//!
//! **Architecture invariant:** only this crate knows HTTP (and, later, GraphQL). Handlers
//! extract, call one function and map the result; no SQL or permission logic lives here
//! beyond reading a read model.

pub mod auth;
pub mod clock;
pub mod commands;
mod dms;
pub mod errors;
pub mod fanout;
pub mod federation;
pub mod gql;
mod http;
pub use http::ClientAddr;
pub mod limits;
pub mod listen;
pub mod media;
mod metrics;
pub mod moderation;
pub mod oidc;
mod outbox;
pub mod post;
pub mod proposals;
pub mod provision;
mod remote;
pub mod sender;
mod sockets;
mod trace;
pub mod voice;
mod webclient;
mod worker;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use openguild_domain::guild::Guild;
use openguild_domain::{ChannelId, GuildId, InviteCode, Permissions, ReportId, ServerName, UserId};
use openguild_projections::{ProjectionState, Projections};
use openguild_store::EventStore;
use serde_json::json;

use crate::commands::Commands;
use crate::errors::ApiError;
use crate::fanout::Fanout;
use crate::limits::{ApiLimits, Limiter};

/// The client API's settings (the `[api]` section).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Browser origins allowed to open the websocket, e.g. `https://chat.example.org`.
    /// The server's own origin is always allowed; clients that send no Origin (apps) are too.
    pub origins: Vec<String>,
    /// Serve GraphiQL at `GET /graphql` (for development).
    pub graphiql: bool,
    /// Redis for cross-node typing notices and shared rate limits.
    pub redis_url: Option<String>,
    /// The first account registered on a fresh hub becomes its operator.
    pub first_account_is_operator: bool,
    /// Who may create guilds: `anyone`, `creators` (granted by an operator) or `operators`.
    pub guild_creation: GuildCreation,
    /// External level → role mapping for `syncMemberLevel`, e.g. trust 0/5/15/30.
    pub level_roles: Vec<gql::LevelRole>,
    /// Days after a guild is archived before its message bodies are erased (the events
    /// stay and still verify), and how often that is checked.
    pub retention_days: u64,
    pub retention_sweep_seconds: u64,
    /// Reverse proxies (addresses or CIDR ranges, e.g. `127.0.0.1`, `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the client; per-address limits then apply to the client, not
    /// to the proxy. Empty: the header is ignored (anyone can send it).
    pub trusted_proxies: Vec<String>,
    /// The URL clients reach this server at (for OIDC redirects); default: the listen address.
    pub public_url: Option<String>,
    /// OpenID Connect providers for single sign-on, by name.
    pub oidc: std::collections::BTreeMap<String, oidc::ProviderSettings>,
    pub limits: ApiLimits,
    /// Uploads: where they are kept and how large they may be.
    pub media: media::MediaSettings,
    /// The hub's LiveKit: set from the top-level `[voice]` section, not from `[api]`.
    #[serde(skip)]
    pub voice: openguild_voice::VoiceSettings,
}

/// Who may create guilds on this hub: a rule of the hub's, so it lives in the domain
/// (`hub::policy`); the setting names it here, spelt as before.
pub use openguild_domain::hub::GuildCreation;

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            graphiql: false,
            redis_url: None,
            first_account_is_operator: true,
            guild_creation: GuildCreation::Anyone,
            level_roles: Vec::new(),
            retention_days: 60,
            retention_sweep_seconds: 3600,
            trusted_proxies: Vec::new(),
            public_url: None,
            oidc: Default::default(),
            media: Default::default(),
            limits: ApiLimits::default(),
            voice: Default::default(),
        }
    }
}

/// What federation starts from: the configured peers (`name=url`; the hub stream's
/// `hub.peer_allowed` and `hub.peer_denied` override them at run time), the outbox pull's
/// bearer tokens (token → peer), this hub's retired keys, and the sender's longest pause.
pub struct FederationSetup {
    pub tokens: HashMap<String, String>,
    pub hubs: std::collections::BTreeMap<ServerName, openguild_federation::peers::Peer>,
    /// This hub's retired keys, published beside the current one so old events verify.
    pub retired_keys: std::collections::BTreeMap<openguild_domain::KeyId, openguild_federation::keys::OldVerifyKey>,
    /// Since when the current key signs.
    pub key_since: openguild_domain::Timestamp,
    /// The longest pause of a peer's sender between failed tries (its backoff's cap): how
    /// long a peer that came back may wait for what is queued for it.
    pub retry_max: std::time::Duration,
}

impl Default for FederationSetup {
    fn default() -> Self {
        Self {
            tokens: HashMap::new(),
            hubs: Default::default(),
            retired_keys: Default::default(),
            key_since: Default::default(),
            retry_max: sender::DEFAULT_RETRY_MAX,
        }
    }
}

/// Everything the handlers share.
pub struct Api {
    pub store: Arc<dyn EventStore>,
    pub projections: Arc<Projections>,
    pub commands: Arc<Commands>,
    pub server: ServerName,
    pub settings: ApiSettings,
    pub limiter: Limiter,
    pub fanout: Arc<Fanout>,
    pub schema: gql::AppSchema,
    /// Parsed GraphQL documents by query text.
    pub(crate) documents: http::Documents,
    /// Federation outbox pull: bearer token → the peer it authenticates.
    pub peer_tokens: HashMap<String, String>,
    /// The configured peer hubs, and what federation keeps about them on this node.
    pub(crate) federation: federation::Federation,
    /// `settings.trusted_proxies`, parsed.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Each user's last write on this node: their reads wait for it.
    writes: std::sync::Mutex<HashMap<UserId, u64>>,
    /// The websockets open on this node, per user, and their shutdown.
    pub(crate) sockets: Arc<sockets::Sockets>,
    pub oidc: oidc::Oidc,
    /// When each service token was last used on this node (token hash → ms).
    pub token_last_used: std::sync::Mutex<HashMap<[u8; 32], u64>>,
    /// Where uploads are kept (`None`: none configured, as in a bare test harness).
    pub media: Option<media::Media>,
    /// The hub's LiveKit (`None`: `[voice]` is not set; voice requests answer
    /// `VOICE_UNAVAILABLE`).
    pub voice: Option<voice::Voice>,
    /// DMs are opened one at a time on a node.
    dm_opening: tokio::sync::Mutex<()>,
}

pub type AppState = Arc<Api>;

impl Api {
    /// Wires the API to a store and running projections; starts the live feed.
    pub async fn start(
        store: Arc<dyn EventStore>,
        projections: Arc<Projections>,
        key: openguild_domain::ServerKey,
        settings: ApiSettings,
        peers: FederationSetup,
    ) -> Result<Arc<Api>, ApiError> {
        let server = key.server().clone();
        let trusted_proxies = settings
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>().or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(
                    |_| {
                        ApiError::invalid(
                            "api.trusted_proxies",
                            format!("{p:?} is not an address or a CIDR range like 10.0.0.0/8"),
                        )
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let read_db = projections.db().clone();
        let media_store = match (&settings.media.s3_bucket, settings.media.dir.is_empty()) {
            (None, true) => None,
            _ => Some(media::Media::open(&settings.media)?),
        };
        let commands = Arc::new(Commands::new(store.clone(), key).with_directory(projections.db().clone()));
        // The live feed tells DM posts from others by this set; the rest join it as they come.
        for channel in openguild_projections::queries::dm_channels(projections.db()).await? {
            commands.note_dm(channel);
        }
        for (channel, guild) in openguild_projections::queries::voice_channels(projections.db()).await? {
            commands.note_voice(channel, guild);
        }
        let voice = match settings.voice.check() {
            Ok(true) => Some(voice::Voice::new(settings.voice.clone())),
            Ok(false) => None,
            Err(why) => return Err(ApiError::invalid("voice", why)),
        };
        let limiter = match &settings.redis_url {
            Some(url) => Limiter::redis(url)
                .await
                .map_err(|e| ApiError::internal(format!("connecting to Redis at {url} for rate limits: {e}")))?,
            None => Limiter::local(),
        };
        let fanout = Fanout::start(store.clone(), commands.clone(), settings.redis_url.as_deref()).await?;
        let api = Arc::new(Api {
            store,
            projections,
            commands,
            server,
            schema: gql::schema(&settings.limits),
            oidc: oidc::Oidc::new(settings.oidc.clone()),
            settings,
            limiter,
            fanout,
            peer_tokens: peers.tokens,
            federation: federation::Federation::new(
                peers.hubs,
                read_db,
                peers.retired_keys,
                peers.key_since,
                peers.retry_max,
            ),
            trusted_proxies,
            documents: http::Documents::new(),
            writes: Default::default(),
            sockets: Default::default(),
            token_last_used: Default::default(),
            dm_opening: Default::default(),
            media: media_store,
            voice,
        });
        // Presence: renew the marks of this node's connected users on every node's view.
        let marker = Arc::downgrade(&api);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(fanout::PRESENCE_TTL / 3).await;
                let Some(api) = marker.upgrade() else { break };
                let users = api.sockets.users();
                api.fanout.mark_online(&users).await;
            }
        });
        moderation::start(Arc::downgrade(&api));
        voice::start(&api);
        sender::start(&api);
        remote::start_queues(&api);
        let sweeper = Arc::downgrade(&api);
        let every = Duration::from_secs(api.settings.retention_sweep_seconds.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(api) = sweeper.upgrade() else { break };
                if let Err(e) = api.sweep_retention().await {
                    tracing::warn!(error = %e.message, "retention sweep failed; will retry");
                }
            }
        });
        Ok(api)
    }

    /// Which of `users` are online: a websocket open on this node, or on another node
    /// within the last [`fanout::PRESENCE_TTL`] (with Redis).
    pub async fn online(&self, users: &[&UserId]) -> Vec<bool> {
        let here = self.sockets.open_for(users);
        if here.iter().all(|&h| h) {
            return here;
        }
        let anywhere = self.fanout.online_anywhere(users).await;
        here.into_iter().zip(anywhere).map(|(h, a)| h || a).collect()
    }

    /// Erases the message bodies of guilds archived longer than the retention. The events
    /// stay, and still verify: their ids and signatures cover the redacted form.
    pub async fn sweep_retention(&self) -> Result<usize, ApiError> {
        let retention = self.settings.retention_days.saturating_mul(86_400_000);
        let cutoff = clock::now().as_millis().saturating_sub(retention);
        let db = self.projections.db();
        let mut erased = 0;
        use openguild_projections::queries::{self, Scope};
        let mut scopes: Vec<Scope> =
            queries::archived_guilds(db, cutoff).await?.into_iter().map(|(g, _)| Scope::Guild(g)).collect();
        scopes.extend(queries::archived_channels(db, cutoff).await?.into_iter().map(Scope::Channel));
        for scope in scopes {
            let before = erased;
            loop {
                let ids = queries::messages_with_body(db, scope, 200).await?;
                if ids.is_empty() {
                    break;
                }
                for id in &ids {
                    self.erase_files_of(id).await?;
                    self.store.erase_body(id).await?;
                }
                queries::forget_bodies(db, &ids).await?;
                erased += ids.len();
            }
            if erased > before {
                tracing::info!(?scope, erased = erased - before, "retention: message bodies erased");
            }
        }
        Ok(erased)
    }

    /// Where clients reach this server.
    pub fn public_url(&self) -> String {
        self.settings
            .public_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_owned()
    }

    /// The caps on connections, for [`listen::serve`].
    pub fn connection_limits(&self) -> listen::ConnectionLimits {
        let limits = &self.settings.limits;
        listen::ConnectionLimits {
            max_connections: limits.max_connections,
            max_connections_per_address: limits.max_connections_per_address,
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_seconds.max(1)),
        }
    }

    /// Closes every websocket (1001, going away), so a graceful shutdown can finish.
    pub fn stop(&self) {
        self.sockets.stop();
    }

    /// Waits until every websocket has sent its close frame and ended, for at most `within`.
    /// Without this, the process could exit before a socket's task wrote its 1001.
    pub async fn sockets_closed(&self, within: Duration) {
        self.sockets.closed(within).await;
    }

    /// The last position `user` wrote through this node (0 if none).
    pub fn last_write(&self, user: &UserId) -> u64 {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).get(user).copied().unwrap_or(0)
    }

    /// Remembers a user's write, so their next read sees it.
    pub fn wrote(&self, user: &UserId, position: u64) {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let last = writes.entry(user.clone()).or_default();
        *last = (*last).max(position);
    }

    /// Waits (bounded) until `names` have applied the viewer's last write on this node, the
    /// position a client passed in the `OpenGuild-Read-After` header, and everything this
    /// node has already delivered live: a client never reads a state older than an event
    /// its subscriptions have shown it.
    pub async fn read_your_writes(&self, ctx: &async_graphql::Context<'_>, names: &[&str]) -> Result<(), ApiError> {
        let mine = ctx
            .data_opt::<auth::Viewer>()
            .and_then(|v| self.writes.lock().unwrap_or_else(|p| p.into_inner()).get(&v.user).copied())
            .unwrap_or(0);
        let asked = ctx.data_opt::<http::ReadAfter>().map_or(0, |r| r.0);
        let position = mine.max(asked).max(self.fanout.position());
        if position == 0 {
            return Ok(());
        }
        let wait = Duration::from_millis(self.settings.limits.read_your_writes_ms);
        let span = tracing::info_span!("read_models", position, projections = %names.join(","));
        Ok(tracing::Instrument::instrument(self.projections.wait_for(names, position, wait), span).await?)
    }

    /// A guild as a member sees it.
    pub async fn member_view(&self, me: &UserId, guild: GuildId) -> Result<Arc<Guild>, ApiError> {
        let not_found = || ApiError::not_found(format!("guild {guild} not found, or you are not a member"));
        let cell = self.commands.guild_cell(guild).await.map_err(|e| match e {
            commands::CommandError::Domain(_) => not_found(),
            other => other.into(),
        })?;
        let g = cell.lock().await;
        if !g.members.contains_key(me) {
            if g.bans.contains_key(me) {
                return Err(ApiError::forbidden("you are banned from this guild"));
            }
            return Err(not_found());
        }
        Ok(Arc::new(g.clone()))
    }

    /// A channel's guild, if the viewer can see the channel.
    pub async fn channel_view(&self, me: &UserId, channel: ChannelId) -> Result<Arc<Guild>, ApiError> {
        let not_found = || ApiError::not_found(format!("channel {channel} not found, or you cannot see it"));
        let guild = self.commands.guild_of(channel).await.map_err(|e| match e {
            commands::CommandError::Domain(_) => not_found(),
            other => other.into(),
        })?;
        let g = self.member_view(me, guild).await?;
        if !g.channels.contains_key(&channel)
            || !g.channel_permissions(me, channel, clock::now()).contains(Permissions::VIEW_CHANNEL)
        {
            return Err(not_found());
        }
        Ok(g)
    }

    /// Refuses unless `me` holds `permission` guild-wide.
    pub async fn require(
        &self,
        me: &UserId,
        guild: GuildId,
        permission: Permissions,
        what: &str,
    ) -> Result<Arc<Guild>, ApiError> {
        let g = self.member_view(me, guild).await?;
        if !g.guild_permissions(me, clock::now()).contains(permission) {
            return Err(ApiError::forbidden(format!(
                "{what} needs the {} permission",
                permission.names().join(" and ")
            )));
        }
        Ok(g)
    }

    /// The guild an invite code belongs to (the directory may lag a moment behind).
    pub async fn guild_of_invite(&self, code: &InviteCode) -> Result<GuildId, ApiError> {
        self.lookup(|db| async move { openguild_projections::queries::invite_guild(&db, code).await })
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no invite with the code {code}; check the link")))
    }

    /// The guild a report was filed in.
    pub async fn guild_of_report(&self, report: &ReportId) -> Result<GuildId, ApiError> {
        self.lookup(|db| async move { openguild_projections::queries::report_guild(&db, report).await })
            .await?
            .ok_or_else(|| ApiError::not_found(format!("report {report} not found")))
    }

    /// A directory lookup; on a miss, waits for the read models to reach the store's head
    /// and asks once more.
    async fn lookup<T, F, Fut>(&self, query: F) -> Result<Option<T>, ApiError>
    where
        F: Fn(openguild_projections::ReadDb) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, openguild_projections::ProjectionError>>,
    {
        if let Some(found) = query(self.projections.db().clone()).await? {
            return Ok(Some(found));
        }
        let head = self.store.head_position().await?;
        let wait = Duration::from_millis(self.settings.limits.read_your_writes_ms);
        self.projections.wait_for(&["directory", "reports"], head, wait).await?;
        Ok(query(self.projections.db().clone()).await?)
    }
}

/// The server's routes; any other path is a file of the web client built into `ui_dir`.
pub fn router(api: Arc<Api>, ui_dir: std::path::PathBuf) -> Router {
    router_with(api, ui_dir, Router::new())
}

/// [`router`], with more routes (the Matrix client-server API) under the same limits, before
/// the web client's fallback.
pub fn router_with(api: Arc<Api>, ui_dir: std::path::PathBuf, more: Router<AppState>) -> Router {
    let body_limit = api.settings.limits.max_body_bytes;
    let client = webclient::WebClient::new(ui_dir);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/graphql", get(http::get).post(http::post))
        .route("/graphql/ws", get(ws::upgrade))
        .route("/auth/providers", get(oidc::providers))
        .route("/auth/oidc/{provider}/start", get(oidc::start))
        .route("/auth/oidc/{provider}/callback", get(oidc::callback))
        .route("/auth/oidc/{provider}/id-token", axum::routing::post(oidc::id_token))
        .route(
            "/media/upload",
            // Streamed and bounded by `api.media` as it arrives, not buffered.
            axum::routing::post(media::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/media/{id}", get(media::download))
        .route("/media/{id}/preview", get(media::preview))
        .route("/_openguild/federation/v1/media/{id}", get(media::for_peer))
        .route("/_openguild/federation/v1/outbox", get(outbox::pull))
        .route("/_openguild/federation/v1/keys", get(federation::keys))
        .route("/_openguild/voice/webhook", axum::routing::post(voice::webhook))
        .route(
            "/_openguild/federation/v1/send/{txn_id}",
            // Up to 50 events of up to 64 KiB each, in base64, with room for the JSON.
            axum::routing::put(federation::send)
                .layer(axum::extract::DefaultBodyLimit::max(federation::MAX_TRANSACTION_BYTES)),
        )
        .route("/_openguild/federation/v1/propose/{nonce}", axum::routing::put(proposals::receive))
        .route("/_openguild/federation/v1/invites/{code}", get(federation::invite))
        .route("/_openguild/federation/v1/streams/{stream}", get(federation::stream))
        .route("/_openguild/federation/v1/state/{guild}", get(federation::state))
        .merge(more)
        .fallback(move |req: axum::extract::Request| {
            let client = client.clone();
            async move { client.serve(req).await }
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(trace::request_span))
        .with_state(api)
}

/// How far behind the store head a projection may be for the node to be ready.
const READY_LAG: u64 = 10_000;

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let head = match state.store.head_position().await {
        Ok(h) => h,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "store": e.to_string() })))
                .into_response();
        }
    };
    let projections: Vec<_> = state
        .projections
        .status()
        .into_iter()
        .map(|s| {
            let ready = !matches!(s.state, ProjectionState::Stopped { .. }) && head.saturating_sub(s.position) <= READY_LAG;
            json!({ "name": s.name, "position": s.position, "lag": head.saturating_sub(s.position), "state": format!("{:?}", s.state), "ready": ready })
        })
        .collect();
    let ready = projections.iter().all(|p| p["ready"] == true);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": ready, "head": head, "projections": projections }))).into_response()
}

/// A refusal with a code and a sentence saying what to do.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}
