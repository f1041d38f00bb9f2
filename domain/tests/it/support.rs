//! A world with one guild: commands go through `decide`, are signed and folded with
//! `evolve`, as the server does it. `check` snapshots the outcome with expect-test.

use std::collections::BTreeMap;

use expect_test::Expect;
use openguild_domain::channel::{self, ChannelState, MessageCommand};
use openguild_domain::event::{self, KeyRing, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::guild::{self, Guild, GuildCommand};
use openguild_domain::{ChannelId, DomainError, Event, EventBody, EventId, GuildId, StreamId, Timestamp, UserId};

pub const SERVER: &str = "hub.test";

pub fn key() -> ServerKey {
    ServerKey::from_seed(SERVER.parse().unwrap(), "ed25519:k1".parse().unwrap(), [42; 32])
}

pub fn keyring() -> KeyRing {
    KeyRing::default().with_own(&key())
}

pub fn user(handle: &str) -> UserId {
    UserId::new(handle, &SERVER.parse().unwrap()).unwrap()
}

pub fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

pub fn chan(n: u8) -> ChannelId {
    ChannelId::from_bytes([n; 16])
}

pub struct World {
    pub key: ServerKey,
    pub guild_id: GuildId,
    pub guild: Guild,
    pub events: Vec<SignedEvent>,
    pub channels: BTreeMap<ChannelId, ChannelState>,
    pub channel_events: BTreeMap<ChannelId, Vec<SignedEvent>>,
    pub now: Timestamp,
}

impl World {
    /// A guild owned by `@owner`, at t = 1,000,000 ms.
    pub fn new() -> World {
        let key = key();
        let now = t(1_000_000);
        let owner = user("owner");
        let (guild_id, body) = guild::create(&owner, key.server(), "Test guild", [1; 16], now).unwrap();
        let mut world = World {
            key,
            guild_id,
            guild: Guild::default(),
            events: vec![],
            channels: BTreeMap::new(),
            channel_events: BTreeMap::new(),
            now,
        };
        world.append_guild(&owner, vec![body]);
        world
    }

    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
    }

    pub fn sign(
        &self,
        stream: StreamId,
        seq: u64,
        prev: Option<EventId>,
        auth: Vec<EventId>,
        sender: &UserId,
        body: EventBody,
    ) -> SignedEvent {
        let unsigned = UnsignedEvent {
            stream,
            seq,
            prev: prev.into_iter().collect(),
            auth,
            sender: sender.clone(),
            ts: self.now,
            body,
        };
        event::sign(unsigned, &self.key).unwrap()
    }

    fn append_guild(&mut self, actor: &UserId, bodies: Vec<EventBody>) {
        for body in bodies {
            let signed =
                self.sign(StreamId::Guild(self.guild_id), self.guild.version + 1, self.guild.head, vec![], actor, body);
            self.guild = guild::evolve(std::mem::take(&mut self.guild), &signed.event);
            self.events.push(signed);
        }
    }

    /// Runs a guild command; on success its events are appended.
    pub fn run(&mut self, actor: &str, cmd: GuildCommand) -> Result<Vec<EventBody>, DomainError> {
        let actor = user(actor);
        let bodies = guild::decide(&self.guild, &actor, &cmd, self.now)?;
        self.append_guild(&actor, bodies.clone());
        Ok(bodies)
    }

    /// Runs a command that must succeed.
    pub fn ok(&mut self, actor: &str, cmd: GuildCommand) {
        if let Err(e) = self.run(actor, cmd.clone()) {
            panic!("{actor} {cmd:?} was refused: {e}");
        }
    }

    /// Runs a message command; on success returns the id of the (last) event appended.
    pub fn say(&mut self, actor: &str, channel: ChannelId, cmd: MessageCommand) -> Result<EventId, DomainError> {
        let actor = user(actor);
        let state = self.channels.get(&channel).cloned().unwrap_or_default();
        let bodies = channel::decide(&self.guild, channel, &state, &actor, &cmd, self.now)?;
        let mut state = state;
        let mut last = None;
        for body in bodies {
            let auth = self.guild.head.into_iter().collect();
            let signed = self.sign(StreamId::Channel(channel), state.version + 1, state.head, auth, &actor, body);
            state = channel::evolve(state, &signed.event);
            last = Some(signed.event.id);
            self.channel_events.entry(channel).or_default().push(signed);
        }
        self.channels.insert(channel, state);
        Ok(last.unwrap())
    }

    /// Posts a plain message that must be accepted.
    pub fn post(&mut self, actor: &str, channel: ChannelId, text: &str) -> EventId {
        let cmd = MessageCommand::Post {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: text.into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        };
        self.say(actor, channel, cmd).unwrap()
    }

    pub fn guild_events(&self) -> Vec<Event> {
        self.events.iter().map(|s| s.event.clone()).collect()
    }
}

/// Given the world, when `actor` runs `cmd`, then the outcome matches the snapshot.
pub fn check(world: &mut World, actor: &str, cmd: GuildCommand, expect: Expect) {
    let outcome = match world.run(actor, cmd) {
        Ok(bodies) => bodies.iter().map(|b| format!("{b:?}")).collect::<Vec<_>>().join("\n"),
        Err(e) => format!("refused: {e}  ({e:?})"),
    };
    expect.assert_eq(&outcome);
}

/// As `check`, for a message command; a success shows the new event's body.
pub fn check_msg(world: &mut World, actor: &str, channel: ChannelId, cmd: MessageCommand, expect: Expect) {
    let outcome = match world.say(actor, channel, cmd) {
        Ok(_) => format!("{:?}", world.channel_events[&channel].last().unwrap().event.body.as_ref().unwrap()),
        Err(e) => format!("refused: {e}  ({e:?})"),
    };
    expect.assert_eq(&outcome);
}

impl World {
    /// An event by `sender` at the next seq of the guild stream, signed but not applied:
    /// what a hostile owner could append.
    pub fn forge(&self, sender: &str, body: EventBody) -> Event {
        let stream = StreamId::Guild(self.guild_id);
        self.sign(stream, self.guild.version + 1, self.guild.head, vec![], &user(sender), body).event
    }

    /// As [`World::forge`], at the next seq of a channel's stream.
    pub fn forge_in(&self, channel: ChannelId, sender: &str, body: EventBody) -> Event {
        let state = self.channels.get(&channel).cloned().unwrap_or_default();
        let auth = self.guild.head.into_iter().collect();
        self.sign(StreamId::Channel(channel), state.version + 1, state.head, auth, &user(sender), body).event
    }
}
