//! `TestHub`: a small hub over a real SQLite event store and read model database: commands go through
//! `decide`, are signed and appended as the server does it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openguild_domain::channel::{self, ChannelState, MessageCommand};
use openguild_domain::event::{self, ServerKey, UnsignedEvent};
use openguild_domain::guild::{self, Guild, GuildCommand};
use openguild_domain::{ChannelId, DomainError, EventBody, GuildId, StreamId, Timestamp, UserId};
use openguild_projections::{Projections, ReadDb};
use openguild_store::{EventStore, ExpectedVersion, Options};

pub struct TestHub {
    /// Keeps the temporary directory alive as long as the hub.
    _dir: tempfile::TempDir,
    pub store: Arc<dyn EventStore>,
    pub db: ReadDb,
    pub key: ServerKey,
    pub now: Timestamp,
    pub guilds: BTreeMap<GuildId, Guild>,
    pub channels: BTreeMap<ChannelId, (GuildId, ChannelState)>,
}

pub fn user(handle: &str) -> UserId {
    UserId::new(handle, &"hub.test".parse().unwrap()).unwrap()
}

impl TestHub {
    pub async fn new() -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let store = openguild_store::open(&dir.path().join("events.db").display().to_string(), Options::default())
            .await
            .unwrap();
        let db = ReadDb::open(&dir.path().join("read.db").display().to_string()).await.unwrap();
        let key = ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:k1".parse().unwrap(), [42; 32]);
        TestHub {
            _dir: dir,
            store,
            db,
            key,
            now: Timestamp::from_millis(1_000_000).unwrap(),
            guilds: BTreeMap::new(),
            channels: BTreeMap::new(),
        }
    }

    /// The read models the hub runs: all of them, with one federation peer.
    fn read_models() -> Vec<std::sync::Arc<dyn openguild_projections::Projection>> {
        openguild_projections::all("hub.test")
    }

    pub async fn start_projections(&self) -> Projections {
        Projections::start(self.db.clone(), self.store.clone(), Self::read_models()).await.unwrap()
    }

    /// Rebuilds every read model from zero and swaps them in (`projections rebuild --all`).
    pub async fn rebuild_all(&self) -> Result<u64, openguild_projections::ProjectionError> {
        openguild_projections::rebuild(&self.db, self.store.clone(), &Self::read_models(), |_| {}).await
    }

    /// Where an unfinished rebuild of `projection` stands (its `__rebuild` checkpoint).
    pub async fn rebuild_position(&self, projection: &str) -> u64 {
        let recorded = openguild_projections::recorded_status(&self.db).await.unwrap();
        let name = format!("{projection}__rebuild");
        recorded.iter().find(|r| r.0 == name).unwrap_or_else(|| panic!("no checkpoint {name}")).1
    }

    async fn append(
        &mut self,
        stream: StreamId,
        version: u64,
        head: Option<openguild_domain::EventId>,
        auth: Vec<openguild_domain::EventId>,
        actor: &UserId,
        bodies: Vec<EventBody>,
    ) -> Vec<openguild_domain::Event> {
        let events = bodies.into_iter().map(|b| (actor.clone(), b)).collect();
        self.append_as(stream, version, head, auth, events).await
    }

    /// Signs and appends events as given, without deciding them: for streams a test builds
    /// by hand (many events at once, or events no command would make).
    pub async fn append_as(
        &mut self,
        stream: StreamId,
        version: u64,
        head: Option<openguild_domain::EventId>,
        auth: Vec<openguild_domain::EventId>,
        events: Vec<(UserId, EventBody)>,
    ) -> Vec<openguild_domain::Event> {
        let mut signed = Vec::new();
        let (mut seq, mut prev) = (version, head);
        for (sender, body) in events {
            seq += 1;
            let e = event::sign(
                UnsignedEvent {
                    stream: stream.clone(),
                    seq,
                    prev: prev.into_iter().collect(),
                    auth: auth.clone(),
                    sender,
                    ts: self.now,
                    body,
                },
                &self.key,
            )
            .unwrap();
            prev = Some(e.event.id);
            signed.push(e);
        }
        let out = signed.iter().map(|e| e.event.clone()).collect();
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        self.store.append(&stream, expected, signed).await.unwrap();
        self.now = self.now.plus_millis(1000);
        out
    }

    /// A text channel `general` in `guild`, made by its owner.
    pub async fn general(&mut self, guild: GuildId, owner: &str) -> ChannelId {
        let channel = ChannelId::from_bytes([1; 16]);
        let create = GuildCommand::CreateChannel {
            channel,
            name: "general".into(),
            kind: openguild_domain::ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        };
        self.run(guild, owner, create).await.unwrap();
        channel
    }

    pub async fn create_guild(&mut self, owner: &str, name: &str, nonce: u8) -> GuildId {
        let owner = user(owner);
        let (id, body) = guild::create(&owner, self.key.server(), name, [nonce; 16], self.now).unwrap();
        let events = self.append(StreamId::Guild(id), 0, None, vec![], &owner, vec![body]).await;
        self.guilds.insert(id, Guild::from_events(&events));
        id
    }

    /// Runs a guild command; refusals are returned, successes appended.
    pub async fn run(&mut self, guild: GuildId, actor: &str, cmd: GuildCommand) -> Result<u64, DomainError> {
        let actor = user(actor);
        let state = self.guilds[&guild].clone();
        let bodies = guild::decide(&state, &actor, &cmd, self.now)?;
        let events = self.append(StreamId::Guild(guild), state.version, state.head, vec![], &actor, bodies).await;
        let mut state = state;
        for e in &events {
            state = guild::evolve(state, e);
            if let EventBody::ChannelCreated { channel, .. } = e.content() {
                self.channels.insert(*channel, (guild, ChannelState::default()));
            }
        }
        self.guilds.insert(guild, state);
        Ok(self.store.head_position().await.unwrap())
    }

    /// Runs a message command; returns the new event's id and position.
    pub async fn say(
        &mut self,
        channel: ChannelId,
        actor: &str,
        cmd: MessageCommand,
    ) -> Result<(openguild_domain::EventId, u64), DomainError> {
        let actor = user(actor);
        let (guild, state) = self
            .channels
            .get(&channel)
            .cloned()
            .ok_or(DomainError::NotFound { what: "channel", id: channel.to_string() })?;
        let g = &self.guilds[&guild];
        let bodies = channel::decide(g, channel, &state, &actor, &cmd, self.now)?;
        let auth = g.head.into_iter().collect();
        let events = self.append(StreamId::Channel(channel), state.version, state.head, auth, &actor, bodies).await;
        let mut state = state;
        for e in &events {
            state = channel::evolve(state, e);
        }
        let id = events.last().unwrap().id;
        self.channels.insert(channel, (guild, state));
        Ok((id, self.store.head_position().await.unwrap()))
    }

    pub async fn post(&mut self, channel: ChannelId, actor: &str, text: &str) -> (openguild_domain::EventId, u64) {
        let cmd = MessageCommand::Post {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: text.into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        };
        self.say(channel, actor, cmd).await.unwrap()
    }

    /// Waits until every projection has applied everything in the store.
    pub async fn caught_up(&self, projections: &Projections) {
        let head = self.store.head_position().await.unwrap();
        projections.wait_for(&[], head, Duration::from_secs(30)).await.unwrap();
    }
}

/// A plain message's body.
pub fn posted(text: &str) -> EventBody {
    EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: text.into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    }
}

/// Every row of every read model table, as sorted text, table by table.
pub async fn dump(db: &ReadDb) -> BTreeMap<String, Vec<String>> {
    let dump = openguild_projections::dump_tables(db).await.unwrap();
    for (table, rows) in &dump {
        assert!(rows.iter().all(|l| !l.contains("<undecodable>")), "a cell of {table} did not decode");
    }
    dump
}
