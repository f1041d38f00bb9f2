//! Live fan-out on one node. One task follows the event store's feed (every node follows
//! the same store, so an event written through any node reaches subscribers on all of
//! them, in store order, exactly once, resumable by position) and hands each event to
//! every websocket connection through a broadcast channel. Typing notices are not stored:
//! with Redis configured they cross nodes through Redis pub/sub.
//!
//! Each event is rendered once per distinct subscription selection and shared: see
//! [`Fanout::rendered`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use openguild_domain::{ChannelId, Timestamp, UserId};
use openguild_store::{EventStore, StoredEvent, subscribe_all};
use tokio::sync::{OnceCell, broadcast};

use crate::clock::now;
use crate::commands::{Commands, random16};

/// What the fan-out hands to every connection.
#[derive(Debug)]
pub enum Live {
    /// A committed event, at its global position.
    Event(Box<StoredEvent>),
    /// Someone is typing; not stored. `after` is the fan-out's position when it was sent.
    Typing { channel: ChannelId, user: UserId, at: Timestamp, after: u64 },
}

impl Live {
    /// The position a client resumes after.
    pub fn cursor(&self) -> u64 {
        match self {
            Live::Event(e) => e.position,
            Live::Typing { after, .. } => *after,
        }
    }
}

/// How many items a slow connection may fall behind before it catches up from the store.
const CHANNEL: usize = 4096;
/// How many positions of rendered payloads are kept.
const KEEP: u64 = 1024;
const TYPING_CHANNEL: &str = "openguild:typing";

type Rendered = Arc<OnceCell<Option<Arc<str>>>>;

/// A session, or every session of a user, that ended: the sockets it opened close at once,
/// whether or not they follow anything.
#[derive(Clone, Debug)]
pub enum Ended {
    /// `logout`, `refreshSession`, or a bot's tokens revoked: the session with this hash.
    Session([u8; 32]),
    /// A hub-wide ban: every session of the user.
    User(UserId),
}

impl Ended {
    /// What one event ends, if anything.
    fn of(e: &openguild_domain::Event) -> Option<Ended> {
        use openguild_domain::EventBody;
        match e.content() {
            EventBody::SessionRevoked { token_hash } => Some(Ended::Session(*token_hash)),
            EventBody::UserBanned { user, .. } => Some(Ended::User(user.clone())),
            _ => None,
        }
    }

    /// Whether a socket of `viewer` must close.
    pub fn ends(&self, viewer: &crate::auth::Viewer) -> bool {
        match self {
            Ended::Session(hash) => *hash == viewer.token_hash,
            Ended::User(user) => *user == viewer.user,
        }
    }
}

pub struct Fanout {
    tx: broadcast::Sender<Arc<Live>>,
    ended: broadcast::Sender<Ended>,
    position: AtomicU64,
    cache: std::sync::Mutex<HashMap<(u64, u64), Rendered>>,
    redis: Option<redis::aio::ConnectionManager>,
    node: String,
}

impl Fanout {
    /// Starts following the store from its head; with a Redis URL, typing crosses nodes.
    pub async fn start(
        store: Arc<dyn EventStore>,
        commands: Arc<Commands>,
        redis_url: Option<&str>,
    ) -> Result<Arc<Fanout>, crate::errors::ApiError> {
        let head = store.head_position().await?;
        let (tx, _) = broadcast::channel(CHANNEL);
        let node = bs58_node();
        let (redis, pubsub) = match redis_url {
            Some(url) => {
                let client = redis::Client::open(url).map_err(|e| crate::errors::ApiError::invalid("redis url", e))?;
                let conn = redis::aio::ConnectionManager::new(client.clone())
                    .await
                    .map_err(|e| crate::errors::ApiError::internal(format!("connecting to Redis at {url}: {e}")))?;
                (Some(conn), Some(client))
            }
            None => (None, None),
        };
        let (ended, _) = broadcast::channel(256);
        let hub =
            Arc::new(Fanout { tx, ended, position: AtomicU64::new(head), cache: Default::default(), redis, node });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let mut feed = subscribe_all(store, head);
            while let Some(next) = feed.next().await {
                let Some(hub) = weak.upgrade() else { break };
                match next {
                    Ok(e) => {
                        commands.observe(&e.event).await;
                        let ended = Ended::of(&e.event);
                        if let openguild_domain::EventBody::MessageRedacted { .. } = e.event.content() {
                            // Payloads rendered with the message's text must not be served again.
                            hub.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                        }
                        let position = e.position;
                        hub.position.store(position, Ordering::Release);
                        let _ = hub.tx.send(Arc::new(Live::Event(Box::new(e))));
                        // After the event itself, so a socket that follows it delivers it first.
                        if let Some(ended) = ended {
                            let _ = hub.ended.send(ended);
                        }
                        if position % 256 == 0 {
                            hub.prune(position);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "live feed: the store returned a corrupt event; live delivery stops");
                        break;
                    }
                }
            }
        });
        if let Some(client) = pubsub {
            let weak = Arc::downgrade(&hub);
            tokio::spawn(async move { follow_typing(client, weak).await });
        }
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.tx.subscribe()
    }

    /// Sessions as they end (revocations, hub-wide bans), for every open socket.
    pub fn endings(&self) -> broadcast::Receiver<Ended> {
        self.ended.subscribe()
    }

    /// The last position handed to connections.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Announces that `user` is typing in `channel`, on every node.
    pub async fn typing(&self, channel: ChannelId, user: UserId) {
        if let Some(conn) = &self.redis {
            let mut conn = conn.clone();
            let message = format!("{} {} {}", self.node, channel, user);
            if let Err(e) = redis::cmd("PUBLISH").arg(TYPING_CHANNEL).arg(message).query_async::<i64>(&mut conn).await {
                tracing::warn!(error = %e, "typing: Redis publish failed; delivering on this node only");
            }
        }
        self.local_typing(channel, user);
    }

    /// Marks `users` online on every node for the next [`PRESENCE_TTL`] (Redis); without
    /// Redis, this node's own connections are all the presence there is.
    pub async fn mark_online(&self, users: &[UserId]) {
        let Some(conn) = &self.redis else { return };
        if users.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("SET").arg(presence_key(user)).arg(&self.node).arg("EX").arg(PRESENCE_TTL.as_secs()).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn.clone()).await {
            tracing::warn!(error = %e, "presence: Redis write failed; other nodes may show these users offline");
        }
    }

    /// Which of `users` another node (or this one) marked online lately.
    pub async fn online_anywhere(&self, users: &[&UserId]) -> Vec<bool> {
        let Some(conn) = &self.redis else { return vec![false; users.len()] };
        if users.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = users.iter().map(|u| presence_key(u)).collect();
        match redis::cmd("MGET").arg(&keys).query_async::<Vec<Option<String>>>(&mut conn.clone()).await {
            Ok(marks) => marks.into_iter().map(|m| m.is_some()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "presence: Redis read failed; showing this node's connections only");
                vec![false; users.len()]
            }
        }
    }

    fn local_typing(&self, channel: ChannelId, user: UserId) {
        let _ = self.tx.send(Arc::new(Live::Typing { channel, user, at: now(), after: self.position() }));
    }

    /// The payload for `(selection, position)`, rendered by the first caller and shared
    /// with every other subscriber asking for the same.
    pub async fn rendered<F, Fut>(&self, selection: u64, position: u64, render: F) -> Option<Arc<str>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<Arc<str>>>,
    {
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entry((selection, position)).or_default().clone()
        };
        cell.get_or_init(render).await.clone()
    }

    fn prune(&self, position: u64) {
        let floor = position.saturating_sub(KEEP);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|(_, p), _| *p >= floor);
    }
}

/// How long a presence mark lasts; nodes renew their users' marks every third of it.
pub const PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

fn presence_key(user: &UserId) -> String {
    format!("og:presence:{user}")
}

fn bs58_node() -> String {
    random16().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Forwards other nodes' typing notices to this node's connections.
async fn follow_typing(client: redis::Client, hub: std::sync::Weak<Fanout>) {
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(TYPING_CHANNEL).await {
                    tracing::warn!(error = %e, "typing: Redis subscribe failed");
                } else {
                    backoff = std::time::Duration::from_millis(200);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(hub) = hub.upgrade() else { return };
                        let Ok(text) = msg.get_payload::<String>() else { continue };
                        let mut parts = text.split(' ');
                        let (Some(node), Some(channel), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
                            continue;
                        };
                        if node == hub.node {
                            continue;
                        }
                        if let (Ok(channel), Ok(user)) = (channel.parse(), user.parse()) {
                            hub.local_typing(channel, user);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "typing: Redis unreachable; retrying"),
        }
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
}
