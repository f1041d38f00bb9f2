//! `openguild events verify`: re-hash and re-check the signature of every event, and the
//! `prev` chain and seq order of every stream. Stops at the first broken event and names it.

use std::collections::HashMap;

use openguild_domain::event::{self, KeyRing};
use openguild_domain::{EventId, StreamId};

use crate::{EventStore, StoreError};

/// What a clean run checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub streams: u64,
}

/// The first event that does not check out.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error("event at position {position} ({id}) in {stream}: {reason}")]
    Event { position: u64, id: EventId, stream: StreamId, reason: String },
    #[error("stored event at position {position} is unreadable: {reason}")]
    Unreadable { position: u64, reason: String },
    #[error("{0}")]
    Store(StoreError),
}

/// Checks every event (or one stream's), in order. `progress` gets the count so far.
pub async fn verify_all(
    store: &dyn EventStore,
    keys: &KeyRing,
    only: Option<&StreamId>,
    mut progress: impl FnMut(u64),
) -> Result<Verified, Broken> {
    let mut chains = Chains::default();
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = match store.read_all(after, 1000).await {
            Ok(page) => page,
            Err(StoreError::Corrupt { position, reason }) => {
                return Err(Broken::Unreadable { position, reason: reason.to_string() });
            }
            Err(e) => return Err(Broken::Store(e)),
        };
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in page {
            let stream = e.event.core.stream.clone();
            if only.is_some_and(|s| *s != stream) {
                continue;
            }
            let broken =
                |reason: String| Broken::Event { position: e.position, id: e.event.id, stream: stream.clone(), reason };
            event::verify(&e.raw, keys).map_err(|r| broken(r.to_string()))?;
            chains.follow(&e.event).map_err(broken)?;
            count += 1;
        }
        progress(count);
    }
    Ok(Verified { events: count, streams: chains.streams() })
}

/// Each stream's last seq and event, to check that every next event follows on: its seq one
/// more, its `prev` naming the one before.
#[derive(Default)]
pub struct Chains {
    heads: HashMap<StreamId, (u64, EventId)>,
}

impl Chains {
    /// Starts `stream` from an event already in place (an incremental restore).
    pub fn start_from(&mut self, stream: StreamId, seq: u64, id: EventId) {
        self.heads.insert(stream, (seq, id));
    }

    pub fn knows(&self, stream: &StreamId) -> bool {
        self.heads.contains_key(stream)
    }

    /// Takes `event` as its stream's next one, or says why it does not follow on.
    pub fn follow(&mut self, event: &openguild_domain::event::Event) -> Result<(), String> {
        let core = &event.core;
        let (expected_seq, expected_prev) = match self.heads.get(&core.stream) {
            Some((seq, id)) => (seq + 1, vec![*id]),
            None => (1, vec![]),
        };
        if core.seq != expected_seq {
            return Err(format!("seq {} where {expected_seq} was expected", core.seq));
        }
        if core.prev != expected_prev {
            return Err("its prev does not name the stream's previous event".into());
        }
        self.heads.insert(core.stream.clone(), (core.seq, event.id));
        Ok(())
    }

    pub fn streams(&self) -> u64 {
        self.heads.len() as u64
    }
}
