//! Acting in a guild another hub owns, from this hub (docs/PROTOCOL.md "Proposals").
//!
//! A command on such a guild is decided first against this hub's copy, so what the copy can
//! already tell is refused (a banned member's post, a missing permission) is refused here at
//! once; the one event body it gives is then sealed and proposed to the owner. The owner's
//! answer is the client's: the appended event, taken into the copy at once when it follows
//! on, or the owner's refusal with the owner's code (`FORBIDDEN`, `RATE_LIMITED` with its
//! pause, …). An owner that cannot be reached is `UNAVAILABLE`.
//!
//! Joining by a remote invite (`CODE@hub-a.test`) asks the owner which guild the code opens,
//! proposes the join, then pulls the guild's stream and each channel's from the owner, so
//! the guild is readable here as soon as the join returns. From then on the owner's sender
//! pushes what follows (this hub has a member now).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openguild_domain::channel::MessageCommand;
use openguild_domain::guild::{Guild, GuildCommand};
use openguild_domain::{ChannelId, EventBody, GuildId, InviteCode, ServerName, StreamId, UserId};
use serde_json::Value;

use openguild_projections::queries;

use crate::Api;
use crate::clock::now;
use crate::commands::{CommandError, Executed, ImportError, random16};
use crate::errors::ApiError;
use crate::federation::WireEvent;
use crate::proposals::Proposal;

/// How long a request to a guild's owner may take before the client is told it is
/// unavailable.
const OWNER_TIMEOUT: Duration = Duration::from_secs(10);

impl Api {
    /// Proposes the one event `bodies` holds, on `stream` of a guild `owner` owns, as
    /// `sender` (a user of this hub): the event the owner appended.
    async fn propose_to_owner(
        &self,
        owner: &ServerName,
        stream: StreamId,
        sender: &UserId,
        bodies: Vec<EventBody>,
    ) -> Result<Executed, ApiError> {
        let Some(body) = one_body(owner, bodies)? else { return Ok(Executed { events: Vec::new(), position: 0 }) };
        let wire = self.send_proposal(owner, &stream, sender, &body).await?;
        self.take_answer(owner, &wire).await
    }

    /// Runs `cmd` of `user` on `guild`, owned by `owner`: decided against this hub's copy,
    /// then proposed to the owner, whose answer is the client's.
    pub(crate) async fn guild_cmd_elsewhere(
        &self,
        owner: &ServerName,
        user: &UserId,
        guild: GuildId,
        cmd: &GuildCommand,
    ) -> Result<Executed, ApiError> {
        let stream = StreamId::Guild(guild);
        let decide = || self.commands.decide_guild(user, guild, cmd, now());
        let bodies = self.decide_elsewhere(owner, std::slice::from_ref(&stream), decide).await?;
        self.propose_to_owner(owner, stream, user, bodies).await
    }

    /// [`Api::guild_cmd_elsewhere`] for a message command in a channel.
    pub(crate) async fn message_cmd_elsewhere(
        &self,
        owner: &ServerName,
        user: &UserId,
        channel: ChannelId,
        cmd: &MessageCommand,
    ) -> Result<Executed, ApiError> {
        let bodies = self.decide_message_elsewhere(owner, user, channel, cmd).await?;
        self.propose_to_owner(owner, StreamId::Channel(channel), user, bodies).await
    }

    /// A post of `user` in `channel` of a guild `owner` owns: decided here, then delivered,
    /// or queued while the owner cannot be reached ([`Api::post_to_owner`]).
    pub(crate) async fn post_elsewhere(
        self: &Arc<Self>,
        owner: &ServerName,
        user: &UserId,
        channel: ChannelId,
        cmd: &MessageCommand,
    ) -> Result<Posted, ApiError> {
        let bodies = self.decide_message_elsewhere(owner, user, channel, cmd).await?;
        self.post_to_owner(owner, StreamId::Channel(channel), user, bodies).await
    }

    async fn decide_message_elsewhere(
        &self,
        owner: &ServerName,
        user: &UserId,
        channel: ChannelId,
        cmd: &MessageCommand,
    ) -> Result<Vec<EventBody>, ApiError> {
        let streams = [StreamId::Guild(self.commands.guild_of(channel).await?), StreamId::Channel(channel)];
        let decide = || self.commands.decide_message(user, channel, cmd, now());
        self.decide_elsewhere(owner, &streams, decide).await
    }

    /// A decision against this hub's copy of `streams` of a guild `owner` owns. The copy may
    /// be behind the owner's (a member who joined a moment ago): a refusal is decided again
    /// after pulling the streams from the owner, and stands if the owner cannot be reached.
    async fn decide_elsewhere<F, Fut>(
        &self,
        owner: &ServerName,
        streams: &[StreamId],
        decide: F,
    ) -> Result<Vec<EventBody>, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<EventBody>, CommandError>>,
    {
        match decide().await {
            Err(CommandError::Domain(refused)) => {
                for stream in streams {
                    if self.pull_stream(owner, stream).await.is_err() {
                        return Err(refused.into());
                    }
                }
                Ok(decide().await?)
            }
            decided => Ok(decided?),
        }
    }

    /// Seals `body` and proposes it to `owner`: the event the owner appended, as it travels.
    async fn send_proposal(
        &self,
        owner: &ServerName,
        stream: &StreamId,
        sender: &UserId,
        body: &EventBody,
    ) -> Result<WireEvent, ApiError> {
        let proposal = Proposal::new(self.commands.key(), stream, sender, body, random16(), now())
            .map_err(|e| ApiError::invalid("event", e))?;
        self.deliver(owner, &proposal).await
    }

    /// Sends a sealed proposal to `owner`: the event it appended, or its refusal.
    async fn deliver(&self, owner: &ServerName, proposal: &Proposal) -> Result<WireEvent, ApiError> {
        let body = serde_json::to_vec(proposal).map_err(|e| ApiError::internal(format!("encoding a proposal: {e}")))?;
        let answer = self.ask_owner(owner, "PUT", &proposal.target(), body).await?;
        if let Some(refused) = answer.get("refused") {
            return Err(owners_refusal(owner, refused));
        }
        serde_json::from_value(answer["event"].clone())
            .map_err(|e| ApiError::new("UNAVAILABLE", format!("{owner} answered the proposal oddly: {e}")))
    }

    /// Takes an event the owner answered a proposal with into this hub's copy: at once if it
    /// follows on, else after pulling what comes before it from the owner, so the poster
    /// reads their own write here when the command returns. Its position here, or 0 when
    /// the owner could not be reached for the events between (its sender brings them).
    async fn take_answer(&self, owner: &ServerName, wire: &WireEvent) -> Result<Executed, ApiError> {
        let (_, signed) = self.verify_received(owner, wire).await.map_err(|refused| {
            ApiError::new("UNAVAILABLE", format!("{owner} answered with an event this hub refuses: {}", refused.why))
        })?;
        let event = signed.event.clone();
        let position = match self.commands.import_many(vec![signed]).await.pop() {
            Some(Ok(position)) => position,
            // Boxed: the pull is a large future, and every resolver's future is as large as
            // the largest.
            Some(Err(ImportError::Gap { stream, .. })) => match Box::pin(self.pull_stream(owner, &stream)).await {
                Ok(()) => self.store.get(&event.id).await?.map_or(0, |stored| stored.position),
                Err(e) => {
                    tracing::info!(%owner, %stream, error = %e.message, "federation: catching up after a proposal failed; the sender brings it");
                    0
                }
            },
            _ => 0,
        };
        Ok(Executed { events: vec![event], position })
    }

    /// Posts as `sender` in a channel of a guild `owner` owns, or, if the owner cannot be
    /// reached now (or posts to it already wait), queues the sealed proposal to be delivered
    /// in order, once, when it can.
    async fn post_to_owner(
        self: &Arc<Self>,
        owner: &ServerName,
        stream: StreamId,
        sender: &UserId,
        bodies: Vec<EventBody>,
    ) -> Result<Posted, ApiError> {
        let body = one_body(owner, bodies)?.ok_or_else(|| ApiError::internal("a post decided no event"))?;
        let proposal = Proposal::new(self.commands.key(), &stream, sender, &body, random16(), now())
            .map_err(|e| ApiError::invalid("event", e))?;
        let db = self.projections.db();
        let waiting = queries::next_proposal(db, owner.as_str()).await?.is_some();
        if !waiting {
            match self.deliver(owner, &proposal).await {
                Ok(wire) => return self.take_answer(owner, &wire).await.map(Posted::Appended),
                Err(e) if e.code != "UNAVAILABLE" => return Err(e),
                Err(e) => {
                    tracing::info!(%owner, error = %e.message, "federation: the owner is unreachable; the post waits")
                }
            }
        }
        let json =
            serde_json::to_string(&proposal).map_err(|e| ApiError::internal(format!("encoding a proposal: {e}")))?;
        queries::queue_proposal(db, &proposal.nonce_hex(), owner.as_str(), queued_now(), &json).await?;
        start_delivery(self, owner.clone());
        Ok(Posted::Queued { provisional: provisional_id(&proposal.seal.nonce) })
    }

    /// Joins, as `user`, the guild of `owner` that `code` opens, and brings the guild here.
    pub(crate) async fn join_remote(
        &self,
        owner: &ServerName,
        code: &InviteCode,
        user: &UserId,
    ) -> Result<GuildId, ApiError> {
        let answer =
            self.ask_owner(owner, "GET", &format!("/_openguild/federation/v1/invites/{code}"), Vec::new()).await?;
        let guild: GuildId = answer["guild"].as_str().and_then(|g| g.parse().ok()).ok_or_else(|| {
            ApiError::new("UNAVAILABLE", format!("{owner} answered the invite lookup oddly: {answer}"))
        })?;
        if let Ok(cell) = self.commands.guild_cell(guild).await
            && cell.lock().await.members.contains_key(user)
        {
            return Ok(guild);
        }
        // The join comes back before this hub has the guild: it arrives with the guild's
        // stream, pulled next.
        let join = EventBody::MemberJoined { user: user.clone(), invite: Some(code.clone()) };
        self.send_proposal(owner, &StreamId::Guild(guild), user, &join).await?;
        self.pull_guild(owner, guild).await?;
        Ok(guild)
    }

    /// Brings `guild` of `owner` here: its stream, then each of its channels' streams.
    async fn pull_guild(&self, owner: &ServerName, guild: GuildId) -> Result<(), ApiError> {
        self.pull_stream(owner, &StreamId::Guild(guild)).await?;
        let channels: Vec<_> = self.commands.guild_cell(guild).await?.lock().await.channels.keys().copied().collect();
        for channel in channels {
            self.pull_stream(owner, &StreamId::Channel(channel)).await?;
        }
        Ok(())
    }

    /// Pulls `stream` from `owner` from where it stands here, page by page, taking each page
    /// as a transaction from the owner.
    async fn pull_stream(&self, owner: &ServerName, stream: &StreamId) -> Result<(), ApiError> {
        loop {
            let here = self.store.read_stream(stream, u64::MAX, 1, openguild_store::Direction::Backward).await?;
            let from = here.first().map_or(1, |e| e.event.core.seq + 1);
            let target = format!("/_openguild/federation/v1/streams/{stream}?from={from}&limit=500");
            let answer = self.ask_owner(owner, "GET", &target, Vec::new()).await?;
            let wire: Vec<WireEvent> = serde_json::from_value(answer["events"].clone()).unwrap_or_default();
            if wire.is_empty() {
                return Ok(());
            }
            for outcome in self.take_events(owner, &wire).await {
                if let Err(refused) = outcome {
                    return Err(ApiError::new(
                        "UNAVAILABLE",
                        format!("{owner} sent an event of {stream} this hub refuses: {}", refused.why),
                    ));
                }
            }
        }
    }

    /// One signed request to `owner` (a guild's owner, or any peer hub): its JSON answer when
    /// 2xx, else the peer's error as the client's.
    async fn ask_owner(
        &self,
        owner: &ServerName,
        method: &str,
        target: &str,
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        let url = match self.peer(owner).await? {
            Some(peer) => peer.url,
            None => None,
        }
        .ok_or_else(|| {
            ApiError::new(
                "UNAVAILABLE",
                format!("the guild's owner {owner} is not a peer of this hub with an address; ask your hub's operator"),
            )
        })?;
        let request = openguild_federation::request::Request { method, target, body: &body };
        let authorization = openguild_federation::request::authorization(self.commands.key(), owner, &request, now());
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(ApiError::internal)?;
        let sent = self
            .federation
            .http()
            .request(method, format!("{url}{target}"))
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .timeout(OWNER_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                ApiError::new("UNAVAILABLE", format!("the guild's owner {owner} cannot be reached now: {e}"))
            })?;
        let status = sent.status();
        let answer: Value = sent.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(owners_refusal(owner, &answer["error"]))
    }
}

/// The one event a command on another hub's guild decided (none: nothing to propose).
/// Across hubs a proposal is one event, so a command that makes several is refused.
fn one_body(owner: &ServerName, mut bodies: Vec<EventBody>) -> Result<Option<EventBody>, ApiError> {
    match bodies.len() {
        0 | 1 => Ok(bodies.pop()),
        n => Err(ApiError::new(
            "INVALID_INPUT",
            format!("this makes {n} events in a guild owned by {owner}; across hubs a command makes one event"),
        )),
    }
}

/// What became of a post to another hub's guild.
pub(crate) enum Posted {
    /// The owner appended it.
    Appended(Executed),
    /// It waits in the queue; it has this id until the owner appends it under its own.
    Queued { provisional: openguild_domain::EventId },
}

/// A queued post's provisional id, from its nonce.
fn provisional_id(nonce: &[u8; 16]) -> openguild_domain::EventId {
    openguild_domain::EventId::from_hash(openguild_domain::event::hash("openguild 2026-12 pending post", nonce))
}

/// When a proposal is queued, in microseconds: the queue's order.
fn queued_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// How old a queued seal may be before it is sealed again for delivery (owners take seals
/// up to five minutes from their event).
const RESEAL_AFTER_MS: u64 = 4 * 60 * 1000;

/// Starts delivering `owner`'s queue unless a task already does.
fn start_delivery(api: &Arc<Api>, owner: ServerName) {
    if !api.federation.delivering.lock().unwrap_or_else(|p| p.into_inner()).insert(owner.clone()) {
        return;
    }
    let weak = Arc::downgrade(api);
    tokio::spawn(async move {
        deliver_queue(weak.clone(), &owner).await;
        if let Some(api) = weak.upgrade() {
            api.federation.delivering.lock().unwrap_or_else(|p| p.into_inner()).remove(&owner);
        }
    });
}

/// Starts a delivery task for every owner with queued proposals (at start).
pub(crate) fn start_queues(api: &Arc<Api>) {
    let api = api.clone();
    tokio::spawn(async move {
        match queries::queued_proposals(api.projections.db()).await {
            Ok(owners) => {
                for (owner, n) in owners {
                    let Ok(owner) = owner.parse::<ServerName>() else { continue };
                    tracing::info!(%owner, queued = n, "federation: delivering the proposals queued for the owner");
                    start_delivery(&api, owner);
                }
            }
            Err(e) => tracing::warn!(error = %e, "federation: the proposal queue cannot be read"),
        }
    });
}

/// Delivers `owner`'s queued proposals oldest first, each until the owner answers: taken off
/// the queue once appended, or refused for good (the owner's rules said no, or it was
/// appended by an earlier try whose answer was lost: a replay). An unreachable owner is
/// tried again with a growing pause, up to `[federation] retry_max_seconds`.
async fn deliver_queue(api: std::sync::Weak<Api>, owner: &ServerName) {
    let mut failures = 0u32;
    loop {
        let Some(api) = api.upgrade() else { return };
        let next = match queries::next_proposal(api.projections.db(), owner.as_str()).await {
            Ok(Some(next)) => next,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%owner, error = %e, "federation: the proposal queue cannot be read; will retry");
                failures = failures.saturating_add(1);
                let pause = crate::sender::backoff(failures, api.federation.retry_max());
                drop(api);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let (id, json) = next;
        let Ok(mut proposal) = serde_json::from_str::<Proposal>(&json) else {
            tracing::error!(%owner, %id, "federation: a queued proposal cannot be read; dropped");
            let _ = queries::dequeue_proposal(api.projections.db(), &id).await;
            continue;
        };
        if now().as_millis().saturating_sub(proposal.seal.ts.as_millis()) > RESEAL_AFTER_MS
            && let Some(again) = proposal.resealed(api.commands.key(), now())
        {
            proposal = again;
        }
        let done = match api.deliver(owner, &proposal).await {
            Ok(wire) => {
                let _ = api.take_answer(owner, &wire).await;
                true
            }
            Err(e) if e.code == "UNAVAILABLE" => {
                failures = failures.saturating_add(1);
                let pause = crate::sender::backoff(failures, api.federation.retry_max());
                tracing::info!(%owner, error = %e.message, retry_in_ms = pause.as_millis() as u64, "federation: queued proposals wait");
                drop(api);
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(%owner, sender = %proposal.sender, code = e.code, reason = %e.message, "federation: a queued proposal was refused");
                true
            }
        };
        if done {
            failures = 0;
            if let Err(e) = queries::dequeue_proposal(api.projections.db(), &id).await {
                tracing::warn!(%owner, error = %e, "federation: a delivered proposal could not be taken off the queue");
            }
        }
    }
}

/// Tells every other hub with members in `channel`'s guild that `user`, of this hub, is
/// typing there: a transaction of one notice to each, sent at once and not queued (a lost
/// notice is a dot that did not blink). A hub speaks only for its own users.
pub(crate) fn share_typing(api: &Arc<Api>, guild: &Guild, channel: ChannelId, user: &UserId) {
    let hubs: BTreeSet<ServerName> =
        guild.members.keys().map(UserId::server).filter(|h| h != api.commands.key().server()).collect();
    if hubs.is_empty() {
        return;
    }
    let notice = serde_json::json!({ "type": "typing", "channel": channel.to_string(), "user": user.to_string() });
    let body = match serde_json::to_vec(&serde_json::json!({ "events": [], "notices": [notice] })) {
        Ok(b) => b,
        Err(_) => return,
    };
    for hub in hubs {
        let (api, body) = (api.clone(), body.clone());
        tokio::spawn(async move {
            let r = random16();
            let txn: String = r.iter().map(|b| format!("{b:02x}")).collect();
            let target = format!("/_openguild/federation/v1/send/notice.{txn}");
            if let Err(e) = api.ask_owner(&hub, "PUT", &target, body).await {
                tracing::debug!(peer = %hub, error = %e.message, "federation: a typing notice was not delivered");
            }
        });
    }
}

/// The owner's refusal `{code, message, retry_after_ms?}` as this hub's, with the same code.
fn owners_refusal(owner: &ServerName, why: &Value) -> ApiError {
    let code = match why["code"].as_str().unwrap_or_default() {
        "FORBIDDEN" => "FORBIDDEN",
        "NOT_FOUND" => "NOT_FOUND",
        "CONFLICT" => "CONFLICT",
        "INVALID_INPUT" => "INVALID_INPUT",
        "RATE_LIMITED" => "RATE_LIMITED",
        "UNAUTHENTICATED" => "FORBIDDEN",
        _ => "UNAVAILABLE",
    };
    let message = why["message"].as_str().unwrap_or("no reason given");
    let mut e = ApiError::new(code, format!("{message} (from {owner}, which owns this guild)"));
    if let Some(ms) = why["retry_after_ms"].as_u64() {
        e.retry_after = Some(Duration::from_millis(ms));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owners_refusal_keeps_its_code_its_words_and_its_pause() {
        let owner: ServerName = "hub-a.test".parse().unwrap();
        let why = serde_json::json!({ "code": "RATE_LIMITED", "message": "slow mode", "retry_after_ms": 1500 });
        let e = owners_refusal(&owner, &why);
        assert_eq!((e.code, e.retry_after), ("RATE_LIMITED", Some(Duration::from_millis(1500))));
        assert!(e.message.starts_with("slow mode") && e.message.contains("hub-a.test"), "{}", e.message);
        // A code this hub does not know is the owner being unavailable, never a 500.
        let odd = owners_refusal(&owner, &serde_json::json!({ "code": "TEAPOT" }));
        assert_eq!(odd.code, "UNAVAILABLE");
    }
}
