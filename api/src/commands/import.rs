//! Events another hub signed, taken into this hub's copy of a guild it owns: checked against
//! that copy by the guild's own rules (`openguild_domain::replica`), appended as they were
//! signed (never re-signed), and folded into the cached aggregate under the same lock the
//! command path takes, so a copy moves on one way whoever brings the event.
//!
//! Events come in stream order. An event this hub has already is written again as nothing
//! (the store takes the same ids again without a change); one that skips ahead is refused
//! with where the stream stands here, so its sender can send what is missing first.

use openguild_domain::channel;
use openguild_domain::guild::{self, Guild};
use openguild_domain::replica::{self, Unauthorised};
use openguild_domain::{ChannelId, DomainError, EventBody, EventId, GuildId, SignedEvent, StreamId};
use openguild_store::{ExpectedVersion, StoreError};

use super::{CommandError, Commands, last, load_channel, load_guild, read_whole};

/// Why an event was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Unauthorised(#[from] Unauthorised),
    /// The stream stands at `at` here: the events before this one must come first.
    #[error("stream {stream} is at seq {at} here, and this event is seq {seq}: send the events in between first")]
    Gap { stream: StreamId, at: u64, seq: u64 },
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        Self::Command(e.into())
    }
}

impl Commands {
    /// Takes one event of a guild's or a channel's stream from the guild's owner, whose
    /// signatures the caller has checked: its global position once stored.
    pub async fn import(&self, signed: SignedEvent) -> Result<u64, ImportError> {
        match signed.event.core.stream.clone() {
            StreamId::Guild(id) => self.import_guild(id, signed).await,
            StreamId::Channel(id) => self.import_channel(id, signed).await,
            other => Err(CommandError::from(DomainError::InvalidInput {
                field: "stream",
                reason: format!("{other} does not travel between hubs"),
            })
            .into()),
        }
    }

    async fn import_guild(&self, id: GuildId, signed: SignedEvent) -> Result<u64, ImportError> {
        let seq = signed.event.core.seq;
        let cell = self.guilds.get_or_load(&id, || load_guild(&*self.store, id)).await?;
        let mut state = cell.lock().await;
        if seq != state.version + 1 {
            return self.append_as_signed(signed, state.version).await;
        }
        replica::check_guild_event(&state, &signed.event)?;
        let event = signed.event.clone();
        let position = match self.append_as_signed(signed, state.version).await {
            Ok(position) => position,
            Err(e) => {
                // Another node may have written: the copy is read again on next use.
                *state = load_guild(&*self.store, id).await?;
                return Err(e);
            }
        };
        *state = guild::evolve(std::mem::take(&mut *state), &event);
        if let EventBody::ChannelCreated { channel, .. } = event.content() {
            self.channel_guild.lock().await.insert(*channel, id);
        }
        if seq == 1 {
            // A guild that did not exist here is not kept by `get_or_load`: keep it now.
            self.guilds.insert(id, state.clone());
        }
        Ok(position)
    }

    async fn import_channel(&self, id: ChannelId, signed: SignedEvent) -> Result<u64, ImportError> {
        let seq = signed.event.core.seq;
        let guild_id = self.guild_of(id).await?;
        let guild_cell = self.guild_cell(guild_id).await?;
        let cell = self.channel_cell(id).await?;
        let mut state = cell.lock().await;
        if seq != state.version + 1 {
            return self.append_as_signed(signed, state.version).await;
        }
        let verdict = {
            let guild = guild_cell.lock().await;
            replica::check_channel_event(&guild, id, &state, &signed.event)
        };
        if let Err(refused) = verdict {
            // The guild may have moved between the decision and its append on the owner (a
            // ban, a lock): the event names the guild's head it was decided against.
            match self.guild_at(guild_id, &signed.event.core.auth).await? {
                Some(then) => replica::check_channel_event(&then, id, &state, &signed.event).map_err(|_| refused)?,
                None => return Err(refused.into()),
            }
        }
        let event = signed.event.clone();
        let position = match self.append_as_signed(signed, state.version).await {
            Ok(position) => position,
            Err(e) => {
                *state = load_channel(&*self.store, id).await?;
                return Err(e);
            }
        };
        *state = channel::evolve(std::mem::take(&mut *state), &event);
        Ok(position)
    }

    /// The guild as it stood at `auth`, the head a message was decided against, if that is
    /// an earlier event of the guild's own stream.
    async fn guild_at(&self, id: GuildId, auth: &[EventId]) -> Result<Option<Guild>, StoreError> {
        let Some(head) = auth.first() else { return Ok(None) };
        let Some(at) = self.store.get(head).await? else { return Ok(None) };
        if at.event.core.stream != StreamId::Guild(id) {
            return Ok(None);
        }
        let events = read_whole(&*self.store, &StreamId::Guild(id)).await?;
        let guild = Guild::from_events(events.iter().take_while(|e| e.core.seq <= at.event.core.seq));
        Ok(Some(guild))
    }

    /// Appends `signed` after seq `seq - 1`, as signed. `here` is where the copy stands, for
    /// the refusal of an event that skips ahead.
    async fn append_as_signed(&self, signed: SignedEvent, here: u64) -> Result<u64, ImportError> {
        let stream = signed.event.core.stream.clone();
        let seq = signed.event.core.seq;
        let expected = if seq <= 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(seq - 1) };
        match self.store.append(&stream, expected, vec![signed]).await {
            Ok(result) => Ok(last(&result.positions)),
            Err(StoreError::Conflict { actual, .. }) => {
                Err(ImportError::Gap { stream, at: actual.unwrap_or(here), seq })
            }
            Err(e) => Err(e.into()),
        }
    }
}
