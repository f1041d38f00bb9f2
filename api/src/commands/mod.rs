//! The one way a command travels: load the aggregate (guild, or guild and channel), let the
//! domain decide, wrap each body in an envelope, sign it, append it with the version it was
//! decided against, and reply with the position written (for read-your-writes).
//!
//! Aggregates (guilds, channels, accounts) are kept in memory after their first load and moved
//! forward by the events this process appends and by the live feed ([`Commands::observe`]),
//! which carries other nodes' events too. A version conflict reloads the stream from the
//! store and decides again, a few times, before it is reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use openguild_domain::account::{self, Account, AccountCommand};
use openguild_domain::channel::{self, ChannelState, MessageCommand};
use openguild_domain::event::{self, Event, ServerKey, UnsignedEvent};
use openguild_domain::guild::{self, Guild, GuildCommand};
use openguild_domain::hub::{self, Hub, HubActor, HubCommand};
use openguild_domain::proposal::Seal;
use openguild_domain::replica;
use openguild_domain::{ChannelId, DomainError, EventBody, EventId, GuildId, Permissions, StreamId, Timestamp, UserId};
use openguild_store::{Direction, EventStore, ExpectedVersion, StoreError};
use tokio::sync::Mutex;

mod import;

pub use import::ImportError;

/// Tries before a version conflict is reported to the caller. Between tries a node backs
/// off for a random moment that doubles each time (2 ms, 4 ms, … up to 256 ms), so two nodes
/// hammering one stream fall out of lockstep even on a loaded machine, where a fixed 4 ms
/// window lost ten tries in a row in CI.
const ATTEMPTS: usize = 10;

/// How many aggregates of each kind a node keeps in memory. A hub of ten guilds with
/// hundreds of members each fits many times over; past these, the least used are evicted
/// and reloaded from their streams on next use.
const GUILDS_CACHED: usize = 1_024;
const CHANNELS_CACHED: usize = 16_384;
const ACCOUNTS_CACHED: usize = 16_384;

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
    guilds: Cells<GuildId, Guild>,
    channels: Cells<ChannelId, ChannelState>,
    accounts: Cells<UserId, Account>,
    /// The hub stream (one key).
    hub: Cells<(), Hub>,
    /// Which guild each channel belongs to (a channel never moves between guilds).
    channel_guild: Mutex<HashMap<ChannelId, GuildId>>,
    /// The channels of the DMs this node has seen: the live feed asks it of every post, so
    /// it is a plain set behind a lock that is never held across an await.
    dm_channels: std::sync::RwLock<std::collections::HashSet<ChannelId>>,
    /// The voice channels seen, with their guilds: the live feed tells a guild's followers
    /// of its voice rooms by this.
    voice_channels: std::sync::RwLock<HashMap<ChannelId, GuildId>>,
    /// Where to look up a channel's guild that no loaded guild knows yet.
    directory: Option<openguild_projections::ReadDb>,
}

impl Commands {
    pub fn new(store: Arc<dyn EventStore>, key: ServerKey) -> Self {
        Self {
            store,
            key,
            guilds: Cells::new(GUILDS_CACHED, false),
            channels: Cells::new(CHANNELS_CACHED, true),
            accounts: Cells::new(ACCOUNTS_CACHED, false),
            hub: Cells::new(1, true),
            channel_guild: Mutex::default(),
            dm_channels: Default::default(),
            voice_channels: Default::default(),
            directory: None,
        }
    }

    /// The hub's signing key (for what is signed outside the command path: the published
    /// key document, federation requests).
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// How many aggregates this node holds in memory (guilds, channels, accounts).
    pub fn cached(&self) -> (usize, usize, usize) {
        (self.guilds.len(), self.channels.len(), self.accounts.len())
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
        self.create_guild_seeded(actor, name, random16(), now).await
    }

    /// Creates a guild owned by `actor` from a given nonce and time, which fix its id: the
    /// same call twice makes one guild (the second is a `Conflict` that wrote nothing).
    pub async fn create_guild_seeded(
        &self,
        actor: &UserId,
        name: &str,
        nonce: [u8; 16],
        now: Timestamp,
    ) -> Result<(GuildId, Executed), CommandError> {
        let (id, body) = guild::create(actor, self.key.server(), name, nonce, now)?;
        let stream = StreamId::Guild(id);
        let signed = self.sign(&stream, 0, None, vec![], actor, now, vec![body], None)?;
        let result = self.append_counted(&stream, ExpectedVersion::NoStream, signed.clone()).await?;
        let events: Vec<Event> = signed.into_iter().map(|s| s.event).collect();
        self.guilds.insert(id, Guild::from_events(&events));
        Ok((id, Executed { events, position: last(&result.positions) }))
    }

    /// Appends `signed` to `stream` and, once durable, counts its events by kind and the
    /// time the append took (the command loop, which queues, counts its own).
    pub(crate) async fn append_counted(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        signed: Vec<event::SignedEvent>,
    ) -> Result<openguild_store::AppendResult, StoreError> {
        let kinds: Vec<&'static str> = signed.iter().map(|s| s.event.content().kind()).collect();
        let started = Instant::now();
        let result = self.store.append(stream, expected, signed).await?;
        crate::metrics::appends::appended(started, kinds);
        Ok(result)
    }

    /// Opens a direct message between `actor` and `others`, owned by this hub: a guild of
    /// one channel (`guild::create_dm`); the nonce and time fix its id. Finding an existing
    /// one is the caller's part.
    pub async fn create_dm(
        &self,
        actor: &UserId,
        others: &std::collections::BTreeSet<UserId>,
        nonce: [u8; 16],
        now: Timestamp,
    ) -> Result<(GuildId, Executed), CommandError> {
        let (id, body) = guild::create_dm(actor, self.key.server(), others, nonce, now)?;
        let stream = StreamId::Guild(id);
        let signed = self.sign(&stream, 0, None, vec![], actor, now, vec![body], None)?;
        let result = self.append_counted(&stream, ExpectedVersion::NoStream, signed.clone()).await?;
        let events: Vec<Event> = signed.into_iter().map(|s| s.event).collect();
        for e in &events {
            self.index_channel(e).await;
        }
        self.guilds.insert(id, Guild::from_events(&events));
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
        self.guild_with(actor, id, now, |g| guild::decide(g, actor, cmd, now)).await
    }

    /// Runs a hub operator's command on a guild's stream (`actor` must be an operator; the
    /// caller checks it against the hub stream).
    pub async fn guild_as_operator(
        &self,
        actor: &UserId,
        id: GuildId,
        cmd: &GuildCommand,
        now: Timestamp,
    ) -> Result<Executed, CommandError> {
        self.guild_with(actor, id, now, |g| guild::decide_as_operator(g, cmd, now)).await
    }

    /// Runs a decision of the caller's own on a guild's stream, inside the guild's lock and
    /// the same append loop: for workflows that find or create in one step (provisioning),
    /// so a lost race returns the winner instead of a duplicate. A decision of no events
    /// writes nothing.
    pub async fn guild_with(
        &self,
        actor: &UserId,
        id: GuildId,
        now: Timestamp,
        decide: impl Fn(&Guild) -> Result<Vec<EventBody>, DomainError>,
    ) -> Result<Executed, CommandError> {
        let cell = self.guild_cell(id).await?;
        let decide = |g: &Guild| {
            self.owned_here(g)?;
            decide(g)
        };
        let done = self.execute(&StreamId::Guild(id), &cell, (actor, now, None), "guild", decide).await?;
        for e in &done.events {
            self.index_channel(e).await;
        }
        Ok(done)
    }

    /// Runs a command on a stream whose aggregate is `cell`, with no other state to consult.
    async fn execute<A: Aggregate>(
        &self,
        stream: &StreamId,
        cell: &Mutex<A>,
        signer: (&UserId, Timestamp, Option<&Seal>),
        what: &'static str,
        decide: impl Fn(&A) -> Result<Vec<EventBody>, DomainError>,
    ) -> Result<Executed, CommandError> {
        self.append_loop(stream, cell, None, signer, what, |state, _| Ok((decide(state)?, Vec::new()))).await
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
        self.message_with(actor, id, now, None, |g, state| channel::decide(g, id, state, actor, cmd, now)).await
    }

    /// Runs a voice command in a voice channel (`domain::voice`), like a message command.
    pub async fn voice(
        &self,
        actor: &UserId,
        id: ChannelId,
        cmd: &openguild_domain::voice::VoiceCommand,
        now: Timestamp,
    ) -> Result<Executed, CommandError> {
        self.message_with(actor, id, now, None, |g, state| {
            openguild_domain::voice::decide(g, id, &state.voice, actor, cmd, now)
        })
        .await
    }

    /// Who is in a voice channel, as its aggregate knows now, and what `may_join` says of
    /// each of them against the guild as it stands.
    pub async fn voice_seats(
        &self,
        id: ChannelId,
        now: Timestamp,
    ) -> Result<Vec<(UserId, openguild_domain::voice::Seat, Result<Permissions, DomainError>)>, CommandError> {
        let guild_cell = self.guild_cell(self.guild_of(id).await?).await?;
        let cell = self.channel_cell(id).await?;
        let state = cell.lock().await;
        let guild = guild_cell.lock().await;
        Ok(state
            .voice
            .iter()
            .map(|(user, seat)| {
                (user.clone(), seat.clone(), openguild_domain::voice::may_join(&guild, id, &state.voice, user, now))
            })
            .collect())
    }

    /// What `user` may do in voice channel `id` now, if they may join it (`voice::may_join`).
    pub async fn may_join_voice(
        &self,
        user: &UserId,
        id: ChannelId,
        now: Timestamp,
    ) -> Result<Permissions, CommandError> {
        let guild_cell = self.guild_cell(self.guild_of(id).await?).await?;
        let cell = self.channel_cell(id).await?;
        let state = cell.lock().await;
        let guild = guild_cell.lock().await;
        self.owned_here(&guild)?;
        Ok(openguild_domain::voice::may_join(&guild, id, &state.voice, user, now)?)
    }

    /// A message command's run through the append loop: decided against the guild and the
    /// channel as they are now, its events' `auth` naming the guild's head.
    async fn message_with(
        &self,
        actor: &UserId,
        id: ChannelId,
        now: Timestamp,
        seal: Option<&Seal>,
        decide: impl Fn(&Guild, &ChannelState) -> Result<Vec<EventBody>, DomainError>,
    ) -> Result<Executed, CommandError> {
        let stream = StreamId::Channel(id);
        let guild_id = self.guild_of(id).await?;
        let guild_cell = self.guild_cell(guild_id).await?;
        let cell = self.channel_cell(id).await?;
        let decide = |state: &ChannelState, guild: Option<&Guild>| {
            let guild = guild.ok_or(DomainError::NotFound { what: "guild", id: guild_id.to_string() })?;
            self.owned_here(guild)?;
            Ok((decide(guild, state)?, guild.head.into_iter().collect()))
        };
        self.append_loop(&stream, &cell, Some((guild_id, &*guild_cell)), (actor, now, seal), "channel", decide).await
    }

    /// The one append loop. Under the aggregate's lock (and, for a message, reading its
    /// guild under the guild's): decide, sign with the version decided against, queue the
    /// append. A channel's aggregate moves on at once and the append is awaited with the
    /// lock released, so the next post is decided and queued while this one commits, and a
    /// busy channel's posts share commits; any other aggregate waits under its lock and
    /// moves on once the append is durable. An append
    /// that fails leaves the aggregate ahead of the stream: it is read again, and the
    /// commands queued on top of it fail with a conflict and run again. A version conflict
    /// (another node wrote) decides again, a few times, with a random pause.
    #[tracing::instrument(name = "command", level = "info", skip_all, fields(aggregate = what, %stream))]
    async fn append_loop<A: Aggregate>(
        &self,
        stream: &StreamId,
        cell: &Mutex<A>,
        guild: Option<(GuildId, &Mutex<Guild>)>,
        (sender, now, seal): (&UserId, Timestamp, Option<&Seal>),
        what: &'static str,
        decide: impl Fn(&A, Option<&Guild>) -> Result<(Vec<EventBody>, Vec<EventId>), DomainError>,
    ) -> Result<Executed, CommandError> {
        for attempt in 0..ATTEMPTS {
            // Only a channel's aggregate moves on before its append is durable: guilds,
            // accounts and the hub are read outside the command path too (sessions,
            // provisioning, permissions), which must never see an event not yet written.
            let pipelined = guild.is_some();
            let (committed, events, append) = {
                let mut state = cell.lock().await;
                let (bodies, auth) = match guild {
                    Some((_, g)) => decide(&state, Some(&*g.lock().await))?,
                    None => decide(&state, None)?,
                };
                if bodies.is_empty() {
                    return Ok(Executed { events: Vec::new(), position: 0 });
                }
                let version = state.version();
                let signed = self.sign(stream, version, state.head(), auth, sender, now, bodies, seal)?;
                let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
                let events: Vec<Event> = signed.iter().map(|s| s.event.clone()).collect();
                let append = append_span(&events);
                let started = Instant::now();
                let queued = self.store.queue(stream, expected, signed).instrument(append.clone()).await?;
                let committed = if pipelined {
                    for e in &events {
                        *state = std::mem::take(&mut *state).apply(e);
                    }
                    drop(state);
                    queued.committed().instrument(append.clone()).await
                } else {
                    let committed = queued.committed().instrument(append.clone()).await;
                    if committed.is_ok() {
                        for e in &events {
                            *state = std::mem::take(&mut *state).apply(e);
                        }
                    }
                    committed
                };
                if committed.is_ok() {
                    crate::metrics::appends::appended(started, events.iter().map(|e| e.content().kind()));
                }
                (committed, events, append)
            };
            match committed {
                Ok(result) => {
                    let position = last(&result.positions);
                    append.record("position", position);
                    return Ok(Executed { events, position });
                }
                Err(e) => {
                    let mut state = cell.lock().await;
                    // If this read fails too, the commands queued next fail with a
                    // conflict and read it again. The guild may have moved too (a ban, a
                    // lock) on another node.
                    let reload = async {
                        if let Some((id, g)) = guild {
                            *g.lock().await = load_guild(&*self.store, id).await?;
                        }
                        Ok::<_, StoreError>(A::replay(&read_whole(&*self.store, stream).await?))
                    };
                    match (reload.await, e) {
                        (Ok(fresh), StoreError::Conflict { .. }) => *state = fresh,
                        (Ok(fresh), e) => {
                            *state = fresh;
                            return Err(e.into());
                        }
                        (Err(why), StoreError::Conflict { .. }) => return Err(why.into()),
                        (Err(_), e) => return Err(e.into()),
                    }
                    drop(state);
                    backoff(attempt).await;
                }
            }
        }
        Err(CommandError::Contended(what))
    }

    /// What `cmd` by `actor` would make of a guild's stream as this hub's copy stands, without
    /// appending: for a guild another hub owns, what this hub proposes to the owner.
    pub async fn decide_guild(
        &self,
        actor: &UserId,
        id: GuildId,
        cmd: &GuildCommand,
        now: Timestamp,
    ) -> Result<Vec<EventBody>, CommandError> {
        let cell = self.guild_cell(id).await?;
        let guild = cell.lock().await;
        Ok(guild::decide(&guild, actor, cmd, now)?)
    }

    /// [`Commands::decide_guild`] for a message command in a channel.
    pub async fn decide_message(
        &self,
        actor: &UserId,
        id: ChannelId,
        cmd: &MessageCommand,
        now: Timestamp,
    ) -> Result<Vec<EventBody>, CommandError> {
        let guild_cell = self.guild_cell(self.guild_of(id).await?).await?;
        let cell = self.channel_cell(id).await?;
        let state = cell.lock().await;
        let guild = guild_cell.lock().await;
        Ok(channel::decide(&guild, id, &state, actor, cmd, now)?)
    }

    /// Runs what a member of another hub asked for through their hub: `body` on `stream` as
    /// `sender`, sealed by the sender's hub (whose signature the caller has checked). The
    /// guild must be owned here; the command the body names is decided as for a local
    /// member and must give exactly `body` (`replica::decide_proposed_*`), and the event
    /// carries the seal, so every replica can check who asked for it.
    pub async fn propose(
        &self,
        sender: &UserId,
        stream: &StreamId,
        body: &EventBody,
        seal: &Seal,
        now: Timestamp,
    ) -> Result<Executed, CommandError> {
        let origin = self.key.server().clone();
        match stream {
            StreamId::Guild(id) => {
                let cell = self.guild_cell(*id).await?;
                let decide = |g: &Guild| {
                    self.owned_here(g)?;
                    replica::decide_proposed_guild(g, sender, &origin, body, seal, now)
                };
                self.execute(stream, &cell, (sender, now, Some(seal)), "guild", decide).await
            }
            StreamId::Channel(id) => {
                let decide = |g: &Guild, state: &ChannelState| {
                    replica::decide_proposed_message(g, *id, state, sender, &origin, body, seal, now)
                };
                self.message_with(sender, *id, now, Some(seal), decide).await
            }
            other => Err(DomainError::InvalidInput {
                field: "stream",
                reason: format!("{other} is not a guild's or a channel's stream; only those take proposals"),
            }
            .into()),
        }
    }

    /// Runs a command on a user's account stream (`actor` is the account's user).
    pub async fn account(&self, user: &UserId, cmd: &AccountCommand, now: Timestamp) -> Result<Executed, CommandError> {
        let cell = self.account_cell(user).await?;
        self.execute(&StreamId::User(user.clone()), &cell, (user, now, None), "account", |a| {
            account::decide(a, user, cmd, now)
        })
        .await
    }

    /// Runs a command on the hub stream. `sender` signs for it: the user, or for a service
    /// token the hub's service identity.
    pub async fn hub(
        &self,
        sender: &UserId,
        actor: &HubActor,
        cmd: &HubCommand,
        now: Timestamp,
    ) -> Result<Executed, CommandError> {
        // The one rule about peers the hub's own events cannot know: its own name.
        if let HubCommand::AllowPeer { name, .. } | HubCommand::DenyPeer { name } = cmd
            && name == self.key.server()
        {
            let reason = format!("{name} is this hub itself, which is never its own peer; name another hub");
            return Err(DomainError::InvalidInput { field: "name", reason }.into());
        }
        let cell = self.hub_cell().await?;
        self.execute(&StreamId::Hub, &cell, (sender, now, None), "hub", |h| hub::decide(h, actor, cmd)).await
    }

    /// The hub as this node knows it.
    pub async fn hub_cell(&self) -> Result<Arc<Mutex<Hub>>, CommandError> {
        Ok(self
            .hub
            .get_or_load(&(), || async { Ok(Hub::replay(&read_whole(&*self.store, &StreamId::Hub).await?)) })
            .await?)
    }

    /// A user's account as this node knows it (loaded on first use; empty if unregistered).
    pub async fn account_cell(&self, user: &UserId) -> Result<Arc<Mutex<Account>>, CommandError> {
        let stream = StreamId::User(user.clone());
        Ok(self
            .accounts
            .get_or_load(user, || async { Ok(Account::replay(&read_whole(&*self.store, &stream).await?)) })
            .await?)
    }

    /// A guild's state, loaded from its stream on first use.
    pub async fn guild_cell(&self, id: GuildId) -> Result<Arc<Mutex<Guild>>, CommandError> {
        let load = || async {
            let state = load_guild(&*self.store, id).await?;
            let mut index = self.channel_guild.lock().await;
            for channel in state.channels.keys() {
                index.insert(*channel, id);
            }
            if let Some(channel) = state.dm_channel() {
                self.note_dm(channel);
            }
            Ok(state)
        };
        let cell = self.guilds.get_or_load(&id, load).await?;
        if cell.lock().await.id.is_none() {
            return Err(DomainError::NotFound { what: "guild", id: id.to_string() }.into());
        }
        Ok(cell)
    }

    async fn channel_cell(&self, id: ChannelId) -> Result<Arc<Mutex<ChannelState>>, CommandError> {
        Ok(self.channels.get_or_load(&id, || load_channel(&*self.store, id)).await?)
    }

    /// Whether `message` of `channel` was redacted (as the channel's aggregate knows it).
    pub async fn is_redacted(&self, channel: ChannelId, message: &openguild_domain::MessageId) -> bool {
        match self.channel_cell(channel).await {
            Ok(cell) => cell.lock().await.messages.get(message).is_some_and(|m| m.redacted),
            Err(_) => false,
        }
    }

    /// What a report about `message` in `channel` targets (the message and its author).
    pub async fn report_target(
        &self,
        channel: ChannelId,
        message: openguild_domain::MessageId,
    ) -> Result<openguild_domain::ReportTarget, CommandError> {
        Ok(self.channel_cell(channel).await?.lock().await.report_target(channel, message)?)
    }

    /// Moves the cached aggregates forward by one event of the live feed (in store order).
    /// An event this node appended itself is already applied and is skipped; an aggregate
    /// that missed events is dropped and reloaded on next use.
    pub async fn observe(&self, e: &Event) {
        match &e.core.stream {
            StreamId::Guild(id) => {
                self.index_channel(e).await;
                self.guilds.observe(id, e).await;
            }
            StreamId::Channel(id) => {
                self.channels.observe(id, e).await;
            }
            StreamId::User(id) => {
                self.accounts.observe(id, e).await;
            }
            StreamId::Hub => {
                self.hub.observe(&(), e).await;
            }
            StreamId::Dm(_) => {}
        }
    }

    /// Records the channel a guild event opens (and whether it is a DM's).
    async fn index_channel(&self, e: &Event) {
        if let Some((channel, guild)) = guild::opened_channel(e) {
            self.channel_guild.lock().await.insert(channel, guild);
            match e.content() {
                EventBody::GuildCreated(_) => self.note_dm(channel),
                EventBody::ChannelCreated { kind: openguild_domain::ChannelKind::Voice, .. } => {
                    self.note_voice(channel, guild)
                }
                _ => {}
            }
        }
    }

    /// Remembers `channel` as a voice channel of `guild`.
    pub fn note_voice(&self, channel: ChannelId, guild: GuildId) {
        self.voice_channels.write().unwrap_or_else(|p| p.into_inner()).insert(channel, guild);
    }

    /// The guild of a voice channel, as far as this node has seen (every one the directory
    /// knows is noted at start).
    pub fn voice_guild(&self, channel: &ChannelId) -> Option<GuildId> {
        self.voice_channels.read().unwrap_or_else(|p| p.into_inner()).get(channel).copied()
    }

    /// Every voice channel seen, with its guild.
    pub fn voice_channels(&self) -> Vec<(ChannelId, GuildId)> {
        self.voice_channels.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(c, g)| (*c, *g)).collect()
    }

    /// Remembers `channel` as a DM's.
    pub fn note_dm(&self, channel: ChannelId) {
        self.dm_channels.write().unwrap_or_else(|p| p.into_inner()).insert(channel);
    }

    /// Whether `channel` is a DM's, as far as this node has seen (every DM the directory
    /// knows is noted at start).
    pub fn is_dm(&self, channel: &ChannelId) -> bool {
        self.dm_channels.read().unwrap_or_else(|p| p.into_inner()).contains(channel)
    }

    /// The guild a channel belongs to: known once its guild is loaded; otherwise from the
    /// directory, or from the channel's first event, whose `auth` names an event of the
    /// guild's stream.
    pub async fn guild_of(&self, channel: ChannelId) -> Result<GuildId, CommandError> {
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

    /// Only the hub that created a guild decides and appends to its streams (its owner); a
    /// copy of another hub's guild is moved on only by what its owner sends (`import`).
    fn owned_here(&self, guild: &Guild) -> Result<(), DomainError> {
        match &guild.origin {
            Some(owner) if owner != self.key.server() => {
                Err(DomainError::Forbidden(openguild_domain::Refusal::OwnedElsewhere(owner.clone())))
            }
            _ => Ok(()),
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
        seal: Option<&Seal>,
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
            let signed = event::sign_proposed(unsigned, seal.cloned(), &self.key)
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

/// Cached aggregates of one kind, each behind its own lock: bounded (the least useful are
/// evicted and reloaded on their next use) and loaded once when several ask at the same time.
/// Kinds anyone can name with a made-up id (accounts, guilds) never keep what does not exist,
/// so such ids cost no memory.
struct Cells<K, A> {
    map: quick_cache::sync::Cache<K, Arc<Mutex<A>>>,
    /// Whether an aggregate with no events is kept: yes for kinds reached only once they are
    /// known to exist (a channel of a loaded guild, the hub), so racing first commands share
    /// one cell instead of conflicting with each other.
    keep_empty: bool,
}

impl<K: std::hash::Hash + Eq + Clone, A: Aggregate> Cells<K, A> {
    fn new(capacity: usize, keep_empty: bool) -> Self {
        Self { map: quick_cache::sync::Cache::new(capacity), keep_empty }
    }

    fn get(&self, key: &K) -> Option<Arc<Mutex<A>>> {
        self.map.get(key)
    }

    /// Keeps `state` under `key` (or the cell another caller put there first).
    fn insert(&self, key: K, state: A) -> Arc<Mutex<A>> {
        match self.map.get(&key) {
            Some(cell) => cell,
            None => {
                let cell = Arc::new(Mutex::new(state));
                self.map.insert(key, cell.clone());
                cell
            }
        }
    }

    /// The cached aggregate, or `load`ed once however many ask at the same time. An
    /// aggregate with no events (an unknown account, say) is handed back and not kept.
    async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<Arc<Mutex<A>>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<A, StoreError>>,
    {
        let guard = match self.map.get_value_or_guard_async(key).await {
            Ok(cell) => return Ok(cell),
            Err(guard) => guard,
        };
        let state = load().await?;
        if state.version() == 0 && !self.keep_empty {
            // Dropping the guard lets the next caller load (nothing to share).
            return Ok(Arc::new(Mutex::new(state)));
        }
        let cell = Arc::new(Mutex::new(state));
        let _ = guard.insert(cell.clone());
        Ok(cell)
    }

    /// Moves `key`'s aggregate on by `e` if it is the next event; drops it if events were
    /// missed (it reloads on next use).
    async fn observe(&self, key: &K, e: &Event) {
        let Some(cell) = self.get(key) else { return };
        let stale = {
            // Waits out a command in flight: it may be appending this very event.
            let mut state = cell.lock().await;
            let version = state.version();
            if e.core.seq == version + 1 {
                *state = std::mem::take(&mut *state).apply(e);
            }
            e.core.seq > version + 1
        };
        if stale {
            self.map.remove_if(key, |c| Arc::ptr_eq(c, &cell));
        }
    }

    /// Drops `cell` from the cache if it is still `key`'s (it is read again on next use).
    fn forget(&self, key: &K, cell: &Arc<Mutex<A>>) {
        self.map.remove_if(key, |c| Arc::ptr_eq(c, cell));
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// What the command path needs of an aggregate: where it stands and how it moves on.
trait Aggregate: Default + Send {
    fn version(&self) -> u64;
    fn head(&self) -> Option<EventId>;
    fn apply(self, e: &Event) -> Self;
    fn replay(events: &[Event]) -> Self {
        events.iter().fold(Self::default(), Self::apply)
    }
}

macro_rules! aggregate {
    ($ty:ty, $evolve:path) => {
        impl Aggregate for $ty {
            fn version(&self) -> u64 {
                self.version
            }
            fn head(&self) -> Option<EventId> {
                self.head
            }
            fn apply(self, e: &Event) -> Self {
                $evolve(self, e)
            }
        }
    };
}

aggregate!(Guild, guild::evolve);
aggregate!(ChannelState, channel::evolve);
aggregate!(Account, account::evolve);
aggregate!(Hub, hub::evolve);

/// A random pause of up to 2 ms × 2^attempt, capped at 256 ms ("full jitter").
async fn backoff(attempt: usize) {
    let ceiling_us = 2_000u64 << attempt.min(7);
    let r = random16();
    let roll = u64::from(u32::from_le_bytes([r[0], r[1], r[2], r[3]]));
    tokio::time::sleep(std::time::Duration::from_micros(roll % ceiling_us)).await;
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

/// The span of one append: its events' ids and kinds, and (once committed) its position.
fn append_span(events: &[Event]) -> tracing::Span {
    if !tracing::enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.content().kind()).collect();
    tracing::info_span!(
        "append",
        event_ids = %ids.join(","),
        kinds = %kinds.join(","),
        position = tracing::field::Empty
    )
}
