//! The one way a command travels: load the aggregate (guild, or guild and channel), let the
//! domain decide, wrap each body in an envelope, sign it, append it with the version it was
//! decided against, and reply with the position written (for read-your-writes).
//!
//! Aggregates are kept in memory after their first load and moved forward by the events this
//! process appends. Another node may append too: a version conflict reloads the stream from
//! the store and decides again, a few times, before it is reported.

use std::collections::HashMap;
use std::sync::Arc;

use openguild_domain::channel::{self, ChannelState, MessageCommand};
use openguild_domain::event::{self, Event, ServerKey, UnsignedEvent};
use openguild_domain::guild::{self, Guild, GuildCommand};
use openguild_domain::{ChannelId, DomainError, EventBody, EventId, GuildId, StreamId, Timestamp, UserId};
use openguild_store::{Direction, EventStore, ExpectedVersion, StoreError};
use tokio::sync::Mutex;

/// Tries before a version conflict is reported to the caller. Between tries a node backs
/// off for a random moment, so two nodes hammering one stream do not stay in lockstep.
const ATTEMPTS: usize = 10;

/// What a command wrote.
#[derive(Clone, Debug)]
pub struct Executed {
    pub events: Vec<Event>,
    /// The global position of the last event: wait for it before reading.
    pub position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the {0} changed under this command {ATTEMPTS} times in a row; try again")]
    Contended(&'static str),
}

/// Executes commands for one hub.
pub struct Commands {
    store: Arc<dyn EventStore>,
    key: ServerKey,
    guilds: Mutex<HashMap<GuildId, Arc<Mutex<Guild>>>>,
    channels: Mutex<HashMap<ChannelId, Arc<Mutex<ChannelState>>>>,
    /// Which guild each channel belongs to (a channel never moves between guilds).
    channel_guild: Mutex<HashMap<ChannelId, GuildId>>,
    /// Where to look up a channel's guild that no loaded guild knows yet.
    directory: Option<openguild_projections::ReadDb>,
}

impl Commands {
    pub fn new(store: Arc<dyn EventStore>, key: ServerKey) -> Self {
        Self {
            store,
            key,
            guilds: Mutex::default(),
            channels: Mutex::default(),
            channel_guild: Mutex::default(),
            directory: None,
        }
    }

    /// Looks up unknown channels in the directory read model (a channel created on another
    /// node, not yet seen here).
    pub fn with_directory(mut self, db: openguild_projections::ReadDb) -> Self {
        self.directory = Some(db);
        self
    }

    /// Creates a guild owned by `actor`.
    pub async fn create_guild(
        &self,
        actor: &UserId,
        name: &str,
        now: Timestamp,
    ) -> Result<(GuildId, Executed), CommandError> {
        let (id, body) = guild::create(actor, self.key.server(), name, random16(), now)?;
        let stream = StreamId::Guild(id);
        let signed = self.sign(&stream, 0, None, vec![], actor, now, vec![body])?;
        let result = self.store.append(&stream, ExpectedVersion::NoStream, signed.clone()).await?;
        let events: Vec<Event> = signed.into_iter().map(|s| s.event).collect();
        let state = Guild::from_events(&events);
        self.guilds.lock().await.insert(id, Arc::new(Mutex::new(state)));
        Ok((id, Executed { events, position: last(&result.positions) }))
    }

    /// Runs a command on a guild's stream.
    pub async fn guild(
        &self,
        actor: &UserId,
        id: GuildId,
        cmd: &GuildCommand,
        now: Timestamp,
    ) -> Result<Executed, CommandError> {
        let stream = StreamId::Guild(id);
        let cell = self.guild_cell(id).await?;
        for _ in 0..ATTEMPTS {
            let mut state = cell.lock().await;
            let bodies = guild::decide(&state, actor, cmd, now)?;
            let signed = self.sign(&stream, state.version, state.head, vec![], actor, now, bodies)?;
            match self.store.append(&stream, ExpectedVersion::Exact(state.version), signed.clone()).await {
                Ok(result) => {
                    let events: Vec<Event> = signed.into_iter().map(|s| s.event).collect();
                    let mut index = self.channel_guild.lock().await;
                    for e in &events {
                        if let EventBody::ChannelCreated { channel, .. } = e.content() {
                            index.insert(*channel, id);
                        }
                        *state = guild::evolve(std::mem::take(&mut *state), e);
                    }
                    return Ok(Executed { events, position: last(&result.positions) });
                }
                Err(StoreError::Conflict { .. }) => {
                    *state = load_guild(&*self.store, id).await?;
                    drop(state);
                    jitter().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended("guild"))
    }

    /// Runs a message command in a channel, decided against its guild as it is now. Each
    /// event's `auth` names the guild head it was authorised against.
    pub async fn message(
        &self,
        actor: &UserId,
        id: ChannelId,
        cmd: &MessageCommand,
        now: Timestamp,
    ) -> Result<Executed, CommandError> {
        let stream = StreamId::Channel(id);
        let guild_id = self.guild_of(id).await?;
        let guild_cell = self.guild_cell(guild_id).await?;
        let cell = self.channel_cell(id).await?;
        for _ in 0..ATTEMPTS {
            let mut state = cell.lock().await;
            let (bodies, auth) = {
                let guild = guild_cell.lock().await;
                (channel::decide(&guild, id, &state, actor, cmd, now)?, guild.head.into_iter().collect())
            };
            let signed = self.sign(&stream, state.version, state.head, auth, actor, now, bodies)?;
            let expected =
                if state.version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(state.version) };
            match self.store.append(&stream, expected, signed.clone()).await {
                Ok(result) => {
                    let events: Vec<Event> = signed.into_iter().map(|s| s.event).collect();
                    for e in &events {
                        *state = channel::evolve(std::mem::take(&mut *state), e);
                    }
                    return Ok(Executed { events, position: last(&result.positions) });
                }
                Err(StoreError::Conflict { .. }) => {
                    *state = load_channel(&*self.store, id).await?;
                    // The guild may have moved too (a ban, a lock) on another node.
                    *guild_cell.lock().await = load_guild(&*self.store, guild_id).await?;
                    drop(state);
                    jitter().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended("channel"))
    }

    /// A guild's state, loaded from its stream on first use.
    pub async fn guild_cell(&self, id: GuildId) -> Result<Arc<Mutex<Guild>>, CommandError> {
        if let Some(cell) = self.guilds.lock().await.get(&id) {
            return Ok(cell.clone());
        }
        let state = load_guild(&*self.store, id).await?;
        if state.id.is_none() {
            return Err(DomainError::NotFound { what: "guild", id: id.to_string() }.into());
        }
        let mut index = self.channel_guild.lock().await;
        for channel in state.channels.keys() {
            index.insert(*channel, id);
        }
        Ok(self.guilds.lock().await.entry(id).or_insert_with(|| Arc::new(Mutex::new(state))).clone())
    }

    async fn channel_cell(&self, id: ChannelId) -> Result<Arc<Mutex<ChannelState>>, CommandError> {
        if let Some(cell) = self.channels.lock().await.get(&id) {
            return Ok(cell.clone());
        }
        let state = load_channel(&*self.store, id).await?;
        Ok(self.channels.lock().await.entry(id).or_insert_with(|| Arc::new(Mutex::new(state))).clone())
    }

    /// The guild a channel belongs to: known once its guild is loaded; otherwise from the
    /// directory, or from the channel's first event, whose `auth` names an event of the
    /// guild's stream.
    async fn guild_of(&self, channel: ChannelId) -> Result<GuildId, CommandError> {
        if let Some(g) = self.channel_guild.lock().await.get(&channel) {
            return Ok(*g);
        }
        if let Some(db) = &self.directory {
            let found = openguild_projections::queries::channel_guild(db, channel)
                .await
                .map_err(|e| StoreError::Open(format!("directory lookup: {e}")))?;
            if let Some(g) = found {
                self.guild_cell(g).await?;
                return Ok(g);
            }
        }
        let first = self.store.read_stream(&StreamId::Channel(channel), 1, 1, Direction::Forward).await?;
        let guild_event = match first.first().and_then(|e| e.event.core.auth.first()) {
            Some(auth) => self.store.get(auth).await?,
            None => None,
        };
        match guild_event.map(|e| e.event.core.stream) {
            Some(StreamId::Guild(g)) => {
                self.guild_cell(g).await?;
                Ok(g)
            }
            _ => Err(DomainError::NotFound { what: "channel", id: channel.to_string() }.into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        stream: &StreamId,
        version: u64,
        head: Option<EventId>,
        auth: Vec<EventId>,
        actor: &UserId,
        now: Timestamp,
        bodies: Vec<EventBody>,
    ) -> Result<Vec<openguild_domain::SignedEvent>, CommandError> {
        let mut out: Vec<openguild_domain::SignedEvent> = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            let prev = out.last().map(|e| e.event.id).or(head);
            let unsigned = UnsignedEvent {
                stream: stream.clone(),
                seq: version + 1 + i as u64,
                prev: prev.into_iter().collect(),
                auth: auth.clone(),
                sender: actor.clone(),
                ts: now,
                body,
            };
            let signed = event::sign(unsigned, &self.key)
                .map_err(|e| DomainError::InvalidInput { field: "event", reason: e.to_string() })?;
            out.push(signed);
        }
        Ok(out)
    }
}

async fn load_guild(store: &dyn EventStore, id: GuildId) -> Result<Guild, StoreError> {
    let events = read_whole(store, &StreamId::Guild(id)).await?;
    Ok(Guild::from_events(&events))
}

async fn load_channel(store: &dyn EventStore, id: ChannelId) -> Result<ChannelState, StoreError> {
    let events = read_whole(store, &StreamId::Channel(id)).await?;
    Ok(ChannelState::from_events(&events))
}

async fn read_whole(store: &dyn EventStore, stream: &StreamId) -> Result<Vec<Event>, StoreError> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_stream(stream, from, 1000, Direction::Forward).await?;
        let Some(last) = page.last() else { break };
        from = last.event.core.seq + 1;
        events.extend(page.into_iter().map(|e| e.event));
    }
    Ok(events)
}

/// Up to ~4 ms, at random.
async fn jitter() {
    let r = random16();
    tokio::time::sleep(std::time::Duration::from_micros(u64::from(u16::from_le_bytes([r[0], r[1]])) % 4000)).await;
}

fn last(positions: &[u64]) -> u64 {
    positions.last().copied().unwrap_or_default()
}

/// 16 bytes from the OS's secure random source: nonces and fresh ids.
pub fn random16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // Without a random source there is no safe way to go on.
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("no secure random source: {e}");
    }
    bytes
}
