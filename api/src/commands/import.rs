//! Events another hub signed, taken into this hub's copy of a guild it owns: checked against
//! that copy by the guild's own rules (`openguild_domain::replica`), appended as they were
//! signed (never re-signed), and folded into the cached aggregate under the same lock the
//! command path takes, so a copy moves on one way whoever brings the event.
//!
//! Events come in stream order. An event this hub has already is written again as nothing
//! (the store takes the same ids again without a change); one that skips ahead is refused
//! with where the stream stands here, so its sender can send what is missing first.
//!
//! A transaction's events are taken together (`import_many`): between two events of a guild's
//! stream, each channel's events are checked one after another against the channel as the
//! ones before them leave it and appended in one write, so catching up costs one durable
//! commit per channel and transaction, not one per event. Channels depend on their guild's
//! stream, never on each other, so only a guild event orders them.

use openguild_domain::channel::{self, ChannelState};
use openguild_domain::guild::{self, Guild};
use openguild_domain::replica::{self, Unauthorised};
use openguild_domain::{ChannelId, DomainError, EventId, GuildId, SignedEvent, StreamId};
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
    /// Takes a transaction's events, in order: each one's global position once stored, or
    /// why it was not.
    pub async fn import_many(&self, events: Vec<SignedEvent>) -> Vec<Result<u64, ImportError>> {
        let mut results: Vec<Option<Result<u64, ImportError>>> = (0..events.len()).map(|_| None).collect();
        // Channel events since the last guild event, by channel, with their places.
        let mut runs: Vec<(ChannelId, Vec<(usize, SignedEvent)>)> = Vec::new();
        for (i, signed) in events.into_iter().enumerate() {
            match signed.event.core.stream.clone() {
                StreamId::Channel(id) => match runs.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, run)) => run.push((i, signed)),
                    None => runs.push((id, vec![(i, signed)])),
                },
                _ => {
                    self.import_runs(std::mem::take(&mut runs), &mut results).await;
                    results[i] = Some(self.import(signed).await);
                }
            }
        }
        self.import_runs(runs, &mut results).await;
        results.into_iter().map(|r| r.expect("every event has its result")).collect()
    }

    async fn import_runs(
        &self,
        runs: Vec<(ChannelId, Vec<(usize, SignedEvent)>)>,
        results: &mut [Option<Result<u64, ImportError>>],
    ) {
        for (channel, run) in runs {
            let (places, events): (Vec<usize>, Vec<SignedEvent>) = run.into_iter().unzip();
            for (place, result) in places.into_iter().zip(self.import_channel_run(channel, events).await) {
                results[place] = Some(result);
            }
        }
    }

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
        self.index_channel(&event).await;
        if seq == 1 {
            // A guild that did not exist here is not kept by `get_or_load`: keep it now.
            self.guilds.insert(id, state.clone());
        }
        Ok(position)
    }

    async fn import_channel(&self, id: ChannelId, signed: SignedEvent) -> Result<u64, ImportError> {
        self.import_channel_run(id, vec![signed]).await.pop().expect("one result per event")
    }

    /// Takes a run of one channel's events: those this hub has already are written again
    /// as nothing, one by one; the rest are checked in turn, each against the channel as the
    /// ones before it leave it, and those that pass are appended in one write. After a
    /// refused event, the ones behind it are refused as a gap.
    async fn import_channel_run(&self, id: ChannelId, run: Vec<SignedEvent>) -> Vec<Result<u64, ImportError>> {
        let mut results = Vec::with_capacity(run.len());
        let guild_id = match self.guild_of(id).await {
            Ok(g) => g,
            Err(e) => return refuse_all(run.len(), e.into()),
        };
        let (guild_cell, cell) = match (self.guild_cell(guild_id).await, self.channel_cell(id).await) {
            (Ok(g), Ok(c)) => (g, c),
            (Err(e), _) | (_, Err(e)) => return refuse_all(run.len(), e.into()),
        };
        let mut state = cell.lock().await;
        let mut run = run.into_iter().peekable();
        // Already here: written again as nothing.
        while let Some(signed) = run.next_if(|s| s.event.core.seq <= state.version) {
            results.push(self.append_as_signed(signed, state.version).await);
        }
        // The copy moves on as events pass, and is read again if their write fails.
        let next = &mut *state;
        let mut taken: Vec<SignedEvent> = Vec::new();
        let mut refused: Option<(u64, ImportError)> = None;
        for signed in run.by_ref() {
            if signed.event.core.seq != next.version + 1 {
                let seq = signed.event.core.seq;
                refused = Some((seq, ImportError::Gap { stream: StreamId::Channel(id), at: next.version, seq }));
                break;
            }
            let verdict = {
                let guild = guild_cell.lock().await;
                replica::check_channel_event(&guild, id, next, &signed.event)
            };
            if let Err(why) = verdict {
                // The guild may have moved between the decision and its append on the owner
                // (a ban, a lock): the event names the guild's head it was decided against.
                let then = match self.guild_at(guild_id, &signed.event.core.auth).await {
                    Ok(then) => then,
                    Err(e) => {
                        refused = Some((signed.event.core.seq, e.into()));
                        break;
                    }
                };
                if then.is_none_or(|then| replica::check_channel_event(&then, id, next, &signed.event).is_err()) {
                    refused = Some((signed.event.core.seq, why.into()));
                    break;
                }
            }
            *next = channel::evolve(std::mem::take(next), &signed.event);
            taken.push(signed);
        }
        let behind: Vec<u64> = run.map(|s| s.event.core.seq).collect();
        if !taken.is_empty() {
            let seqs: Vec<u64> = taken.iter().map(|s| s.event.core.seq).collect();
            match self.append_run(taken).await {
                Ok(positions) => results.extend(positions.into_iter().map(Ok)),
                Err(e) => {
                    // Another node may have written, or the write failed: read the copy
                    // again (or drop it, to be read on next use).
                    *state = match load_channel(&*self.store, id).await {
                        Ok(reloaded) => reloaded,
                        Err(_) => {
                            self.channels.forget(&id, &cell);
                            ChannelState::default()
                        }
                    };
                    let at = state.version;
                    let gap = |seq| Err(ImportError::Gap { stream: StreamId::Channel(id), at, seq });
                    results.push(Err(e));
                    results.extend(seqs[1..].iter().map(|&seq| gap(seq)));
                    refused =
                        refused.map(|(seq, _)| (seq, ImportError::Gap { stream: StreamId::Channel(id), at, seq }));
                }
            }
        }
        let at = state.version;
        if let Some((_, why)) = refused {
            results.push(Err(why));
        }
        results.extend(behind.into_iter().map(|seq| Err(ImportError::Gap { stream: StreamId::Channel(id), at, seq })));
        results
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

    /// Appends a run of one stream's consecutive events, as signed: their positions.
    async fn append_run(&self, run: Vec<SignedEvent>) -> Result<Vec<u64>, ImportError> {
        let stream = run[0].event.core.stream.clone();
        let seq = run[0].event.core.seq;
        let expected = if seq <= 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(seq - 1) };
        match self.append_counted(&stream, expected, run).await {
            Ok(result) => Ok(result.positions),
            Err(StoreError::Conflict { actual, .. }) => Err(ImportError::Gap { stream, at: actual.unwrap_or(0), seq }),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends `signed` after seq `seq - 1`, as signed. `here` is where the copy stands, for
    /// the refusal of an event that skips ahead.
    async fn append_as_signed(&self, signed: SignedEvent, here: u64) -> Result<u64, ImportError> {
        let stream = signed.event.core.stream.clone();
        let seq = signed.event.core.seq;
        let expected = if seq <= 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(seq - 1) };
        match self.append_counted(&stream, expected, vec![signed]).await {
            Ok(result) => Ok(last(&result.positions)),
            Err(StoreError::Conflict { actual, .. }) => {
                Err(ImportError::Gap { stream, at: actual.unwrap_or(here), seq })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The same failure for each of `n` events: the first gets it, the rest are behind it.
fn refuse_all(n: usize, first: ImportError) -> Vec<Result<u64, ImportError>> {
    let why = first.to_string();
    let mut out = vec![Err(first)];
    out.extend((1..n).map(|_| {
        Err(ImportError::Command(CommandError::from(DomainError::InvalidInput {
            field: "stream",
            reason: why.clone(),
        })))
    }));
    out
}
