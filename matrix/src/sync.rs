//! `/sync`: the viewer's guilds as spaces and their channels as rooms, each with its state
//! (derived from the guild as it stands) and the newest messages; then, with `since`, what
//! was posted after it, long-polling up to `timeout` for the first of it.
//!
//! A batch token is a position in the event store: `next_batch` is where the answer read up
//! to, so an incremental sync reads the store from there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use openguild_api::Api;
use openguild_api::clock::now;
use openguild_domain::guild::Guild;
use openguild_domain::{ChannelId, ChannelKind, EventBody, Permissions, StreamId, UserId};
use openguild_projections::queries::{self, MessageRow, Page};

use ruma::api::client::sync::sync_events::v3;
use ruma::serde::Raw;
use serde_json::{Value, json};

use crate::MatrixError;
use crate::error::api_err;
use crate::ids::{room_of, space_of};
use crate::ruma_io::{parse, reply, viewer};

/// How many messages a room's timeline carries at most on an initial sync.
const TIMELINE: u32 = 20;
/// The longest long-poll taken.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// A stable event id for something that has no event of its own (state derived from the
/// guild as it stands): the hash of what it names.
fn derived_id(parts: &[&str]) -> String {
    let hash = blake3::hash(parts.join("\u{1f}").as_bytes()).to_hex();
    format!("${}", &hash.as_str()[..43])
}

pub fn raw<T>(v: Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&v).expect("JSON values serialise"))
}

fn state_event(kind: &str, key: &str, sender: &UserId, ts: u64, room: &str, content: Value) -> Value {
    json!({
        "type": kind,
        "state_key": key,
        "sender": sender.as_str(),
        "origin_server_ts": ts,
        "event_id": derived_id(&[room, kind, key, &content.to_string()]),
        "content": content,
    })
}

/// A message as a Matrix `m.room.message` (redacted: an empty content).
pub fn message_event(m: &MessageRow, extra: Option<&str>) -> Value {
    let content = match &m.body {
        Some(body) if !m.deleted => content_of(body, extra),
        _ => json!({}),
    };
    json!({
        "type": "m.room.message",
        "event_id": m.id.to_string(),
        "sender": m.author.as_str(),
        "origin_server_ts": m.created_at,
        "content": content,
    })
}

/// A message's Matrix content: the keys a client sent with it (kept as sent), its `body`, and
/// `msgtype` (`m.text` unless the client said otherwise).
pub fn content_of(body: &str, extra: Option<&str>) -> Value {
    let mut content =
        extra.and_then(|e| serde_json::from_str::<Value>(e).ok()).filter(Value::is_object).unwrap_or_else(|| json!({}));
    content["body"] = json!(body);
    if content.get("msgtype").is_none() {
        content["msgtype"] = json!("m.text");
    }
    content
}

/// What a Matrix client sent beyond `body` (and an `m.text` msgtype), to keep with the message.
pub fn extra_of(content: &Value) -> Option<String> {
    let mut rest = content.as_object()?.clone();
    rest.remove("body");
    if rest.get("msgtype").and_then(Value::as_str) == Some("m.text") {
        rest.remove("msgtype");
    }
    (!rest.is_empty()).then(|| Value::Object(rest).to_string())
}

/// The keys kept with each of `rows`' messages, read from their events.
pub async fn extras(
    api: &Arc<Api>,
    rows: &[MessageRow],
) -> Result<std::collections::HashMap<openguild_domain::MessageId, String>, MatrixError> {
    let mut out = std::collections::HashMap::new();
    for m in rows {
        if let Some(e) = api.store.get(&m.id).await.map_err(api_err)?
            && let EventBody::MessagePosted { extra: Some(extra), .. } = e.event.content()
        {
            out.insert(m.id, extra.clone());
        }
    }
    Ok(out)
}

/// The state of a guild's space: what it is, its name, its members, its children.
fn space_state(g: &Guild, me: &UserId, room: &str) -> Vec<Value> {
    let owner = g.owner.clone().unwrap_or_else(|| me.clone());
    let ts = g.created_at.as_millis();
    let origin = g.origin.as_ref().map(ToString::to_string).unwrap_or_default();
    let mut out = vec![
        state_event(
            "m.room.create",
            "",
            &owner,
            ts,
            room,
            json!({ "creator": owner.as_str(), "type": "m.space", "room_version": "10" }),
        ),
        state_event("m.room.name", "", &owner, ts, room, json!({ "name": g.name })),
        state_event("m.room.join_rules", "", &owner, ts, room, json!({ "join_rule": "invite" })),
    ];
    let now = now();
    for (channel, c) in &g.channels {
        if c.kind == ChannelKind::Thread
            || !g.channel_permissions(me, *channel, now).contains(Permissions::VIEW_CHANNEL)
        {
            continue;
        }
        if let Some(child) = room_of(g, *channel) {
            let order = format!("{:04}", c.position);
            let content = json!({ "via": [origin], "order": order });
            out.push(state_event("m.space.child", child.as_str(), &owner, ts, room, content));
        }
    }
    out.extend(members(g, room));
    out.push(power_levels(g, None, &owner, ts, room));
    out
}

/// `m.room.power_levels` as OpenGuild's roles and overwrites have it, read-only (changes go
/// through OpenGuild's roles): 100 for the owner and administrators, 50 for moderators (KICK,
/// BAN, MANAGE_MESSAGES or MODERATE_MEMBERS), 10 for those who may post where `@everyone` may
/// not; kick, ban and redact at 50; posting at 0 when `@everyone` may post, else 10.
fn power_levels(g: &Guild, channel: Option<ChannelId>, owner: &UserId, ts: u64, room: &str) -> Value {
    use openguild_domain::RoleId;
    let now = now();
    let perms_of = |user: &UserId| match channel {
        Some(c) => g.channel_permissions(user, c, now),
        None => g.guild_permissions(user, now),
    };
    // `@everyone` alone, as a member with no role would have it.
    let everyone = g.roles.get(&RoleId::EVERYONE).map(|r| r.permissions).unwrap_or_default();
    let everyone = match channel.and_then(|c| g.channels.get(&c)) {
        Some(c) => c
            .overwrites
            .get(&openguild_domain::permissions::OverwriteTarget::Role(RoleId::EVERYONE))
            .map_or(everyone, |o| (everyone - o.deny) | o.allow),
        None => everyone,
    };
    let all_post = everyone.contains(Permissions::SEND_MESSAGES);
    let moderator = Permissions::KICK_MEMBERS
        | Permissions::BAN_MEMBERS
        | Permissions::MANAGE_MESSAGES
        | Permissions::MODERATE_MEMBERS;
    let mut users = serde_json::Map::new();
    for user in g.members.keys() {
        let perms = perms_of(user);
        let level = if g.owner.as_ref() == Some(user) || perms.contains(Permissions::ADMINISTRATOR) {
            100
        } else if perms.intersects(moderator) {
            50
        } else if !all_post && perms.contains(Permissions::SEND_MESSAGES) {
            10
        } else {
            continue;
        };
        users.insert(user.to_string(), json!(level));
    }
    let content = json!({
        "users": users,
        "users_default": 0,
        "events_default": if all_post { 0 } else { 10 },
        "state_default": 100,
        "kick": 50,
        "ban": 50,
        "redact": 50,
        "invite": if everyone.contains(Permissions::CREATE_INVITE) { 0 } else { 50 },
    });
    state_event("m.room.power_levels", "", owner, ts, room, content)
}

fn members(g: &Guild, room: &str) -> Vec<Value> {
    g.members
        .iter()
        .map(|(user, m)| {
            let content = json!({ "membership": "join", "displayname": m.nickname.clone().unwrap_or_else(|| user.handle().to_owned()) });
            state_event("m.room.member", user.as_str(), user, m.joined_at.as_millis(), room, content)
        })
        .collect()
}

/// The state of a channel's room: its space, name, topic, members, who may post.
fn room_state(g: &Guild, channel: ChannelId, me: &UserId, room: &str) -> Vec<Value> {
    let Some(c) = g.channels.get(&channel) else { return Vec::new() };
    let owner = g.owner.clone().unwrap_or_else(|| me.clone());
    let ts = g.created_at.as_millis();
    let origin = g.origin.as_ref().map(ToString::to_string).unwrap_or_default();
    let mut out = vec![
        state_event("m.room.create", "", &owner, ts, room, json!({ "creator": owner.as_str(), "room_version": "10" })),
        state_event("m.room.name", "", &owner, ts, room, json!({ "name": c.name })),
        state_event("m.room.topic", "", &owner, ts, room, json!({ "topic": c.topic })),
        state_event("m.room.join_rules", "", &owner, ts, room, json!({ "join_rule": "invite" })),
    ];
    if !g.dm
        && let Some(space) = space_of(g)
    {
        out.push(state_event(
            "m.space.parent",
            space.as_str(),
            &owner,
            ts,
            room,
            json!({ "via": [origin], "canonical": true }),
        ));
    }
    out.extend(members(g, room));
    out.push(power_levels(g, Some(channel), &owner, ts, room));
    out
}

/// The state of the room `room` names for `me`: a guild's space or a channel's room.
pub async fn room_state_of(api: &Arc<Api>, me: &UserId, room: &ruma::RoomId) -> Result<Vec<Value>, MatrixError> {
    let not_in = || crate::ids::not_in_room(room);
    let local = crate::ids::local_part(room).ok_or_else(not_in)?;
    if let Ok(g) = local.parse::<openguild_domain::GuildId>()
        && let Ok(guild) = api.member_view(me, g).await
        && !guild.dm
    {
        return Ok(space_state(&guild, me, room.as_str()));
    }
    let channel: ChannelId = local.parse().map_err(|_| not_in())?;
    let guild = api.channel_view(me, channel).await.map_err(|_| not_in())?;
    Ok(room_state(&guild, channel, me, room.as_str()))
}

fn state_of(events: Vec<Raw<ruma::events::AnySyncStateEvent>>) -> v3::State {
    let mut state = v3::StateEvents::new();
    state.events = events;
    v3::State::Before(state)
}

/// How many messages a room's timeline carries on an initial sync: the filter's
/// `room.timeline.limit` (inline, or by the id `create_filter` made), else [`TIMELINE`];
/// at most 100.
fn timeline_limit(filter: Option<&v3::Filter>) -> u32 {
    use base64::Engine;
    let definition = match filter {
        Some(v3::Filter::FilterDefinition(d)) => Some(d.clone()),
        Some(v3::Filter::FilterId(id)) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id.as_bytes())
            .ok()
            .and_then(|json| serde_json::from_slice::<ruma::api::client::filter::FilterDefinition>(&json).ok()),
        _ => None,
    };
    definition
        .and_then(|d| d.room.timeline.limit)
        .map_or(TIMELINE, |l| u32::try_from(u64::from(l)).unwrap_or(100).clamp(1, 100))
}

async fn initial(api: &Arc<Api>, me: &UserId, timeline: u32) -> Result<v3::Response, MatrixError> {
    // Read the store's head first: whatever lands after it comes with the next sync. The read
    // models are waited for up to it.
    let head = api.store.head_position().await.map_err(api_err)?;
    let position = head.max(api.last_write(me));
    let wait = std::time::Duration::from_millis(api.settings.limits.read_your_writes_ms);
    api.projections.wait_for(&["timeline", "reads", "directory"], position, wait).await.map_err(api_err)?;
    let mut response = v3::Response::new(position.to_string());
    let guilds = queries::guilds_of(api.projections.db(), me).await.map_err(api_err)?;
    let now = now();
    for id in guilds {
        let Ok(g) = api.member_view(me, id).await else { continue };
        if !g.dm
            && let Some(space) = space_of(&g)
        {
            let mut joined = v3::JoinedRoom::new();
            let events = space_state(&g, me, space.as_str()).into_iter().map(raw).collect();
            joined.state = state_of(events);
            response.rooms.join.insert(space, joined);
        }
        for (channel, c) in &g.channels {
            if c.kind == ChannelKind::Thread
                || !g.channel_permissions(me, *channel, now).contains(Permissions::VIEW_CHANNEL)
            {
                continue;
            }
            let Some(room) = room_of(&g, *channel) else { continue };
            let mut joined = v3::JoinedRoom::new();
            let events = room_state(&g, *channel, me, room.as_str()).into_iter().map(raw).collect();
            joined.state = state_of(events);
            let page = Page::Last { before: Some(position + 1), limit: timeline + 1 };
            let mut rows = queries::messages(api.projections.db(), *channel, page).await.map_err(api_err)?;
            joined.timeline.limited = rows.len() > timeline as usize;
            if joined.timeline.limited {
                rows.remove(0);
            }
            // A token is the point just after a position: older messages are before this one.
            joined.timeline.prev_batch = rows.first().map(|m| m.position.saturating_sub(1).to_string());
            let kept = extras(api, &rows).await?;
            joined.timeline.events =
                rows.iter().map(|m| raw(message_event(m, kept.get(&m.id).map(String::as_str)))).collect();
            let unread = queries::read_states(api.projections.db(), me, &[*channel]).await.map_err(api_err)?;
            if let Some(state) = unread.first() {
                joined.unread_notifications.notification_count = Some(state.unread.into());
                joined.unread_notifications.highlight_count = Some(state.mentions.into());
            }
            response.rooms.join.insert(room, joined);
        }
    }
    Ok(response)
}

/// A room event rendered from a channel stream's event: a message, an edit, a reaction, a
/// redaction (`None` for what Matrix has no event for).
fn room_event(e: &openguild_store::StoredEvent) -> Option<Value> {
    let id = |m: &openguild_domain::MessageId| m.to_string();
    let (kind, content) = match e.event.content() {
        EventBody::MessagePosted { text, reply_to, extra, .. } => {
            let mut content = content_of(text, extra.as_deref());
            if let Some(parent) = reply_to
                && content.get("m.relates_to").is_none()
            {
                content["m.relates_to"] = json!({ "m.in_reply_to": { "event_id": id(parent) } });
            }
            ("m.room.message", content)
        }
        EventBody::MessageEdited { message, text } => (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": format!("* {text}"),
                "m.new_content": { "msgtype": "m.text", "body": text },
                "m.relates_to": { "rel_type": "m.replace", "event_id": id(message) },
            }),
        ),
        EventBody::ReactionAdded { message, emoji } => (
            "m.reaction",
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": id(message), "key": emoji } }),
        ),
        EventBody::MessageRedacted { message, reason } => {
            let mut event = json!({
                "type": "m.room.redaction",
                "event_id": e.event.id.to_string(),
                "sender": e.event.core.sender.as_str(),
                "origin_server_ts": e.event.core.ts.as_millis(),
                "redacts": id(message),
                "content": { "redacts": id(message) },
            });
            if !reason.is_empty() {
                event["content"]["reason"] = json!(reason);
            }
            return Some(event);
        }
        _ => return None,
    };
    Some(json!({
        "type": kind,
        "event_id": e.event.id.to_string(),
        "sender": e.event.core.sender.as_str(),
        "origin_server_ts": e.event.core.ts.as_millis(),
        "content": content,
    }))
}

/// The rooms of a guild `me` is no longer in: its space and its channels' rooms.
async fn left_rooms(api: &Arc<Api>, guild: openguild_domain::GuildId) -> Vec<ruma::OwnedRoomId> {
    let Ok(cell) = api.commands.guild_cell(guild).await else { return Vec::new() };
    let g = cell.lock().await;
    let mut rooms: Vec<_> = space_of(&g).into_iter().collect();
    rooms.extend(g.channels.keys().filter_map(|c| room_of(&g, *c)));
    rooms
}

/// How long an incremental sync that has news waits for more to send with it.
const GATHER: Duration = Duration::from_millis(10);

/// What happened after `since` in rooms `me` can see (messages, edits, reactions,
/// redactions) and the rooms they left (kicked, banned, gone); waits up to `timeout` for the
/// first of it.
async fn incremental(api: &Arc<Api>, me: &UserId, since: u64, timeout: Duration) -> Result<v3::Response, MatrixError> {
    let mut feed = openguild_store::subscribe_all(api.store.clone(), since);
    let mut typing = api.fanout.subscribe();
    let deadline = tokio::time::Instant::now() + timeout.min(MAX_TIMEOUT);
    let mut last = since;
    let mut rooms: BTreeMap<ruma::OwnedRoomId, v3::JoinedRoom> = BTreeMap::new();
    let mut left: BTreeMap<ruma::OwnedRoomId, v3::LeftRoom> = BTreeMap::new();
    // Guilds whose structure changed (channels, roles, members): their rooms' state is sent
    // again whole, as it now stands.
    let mut changed: std::collections::BTreeSet<openguild_domain::GuildId> = Default::default();
    let now = now();
    // Once there is news, what follows within GATHER goes with it; the window starts at the
    // first news and does not move (a steady stream would otherwise hold the answer back).
    let mut answer_by: Option<tokio::time::Instant> = None;
    loop {
        let found = !rooms.is_empty() || !left.is_empty() || !changed.is_empty();
        if found && answer_by.is_none() {
            answer_by = Some(tokio::time::Instant::now() + GATHER);
        }
        let wait = answer_by.unwrap_or(deadline).min(deadline);
        let next = tokio::select! {
            next = tokio::time::timeout_at(wait, feed.next()) => match next {
                Ok(Some(next)) => next.map_err(api_err)?,
                Ok(None) | Err(_) => break,
            },
            // Someone else typing where `me` can see: a notice, not a stored event.
            live = typing.recv() => {
                if let Ok(live) = live
                    && let openguild_api::fanout::Live::Typing { channel, user, .. } = &*live
                    && user != me
                    && let Ok(g) = api.channel_view(me, *channel).await
                    && let Some(room) = room_of(&g, *channel)
                {
                    let notice = json!({ "type": "m.typing", "content": { "user_ids": [user.as_str()] } });
                    rooms.entry(room).or_default().ephemeral.events.push(raw(notice));
                }
                continue;
            }
        };
        last = next.position;
        match (&next.event.core.stream, next.event.content()) {
            (
                StreamId::Guild(g),
                EventBody::MemberKicked { user, .. }
                | EventBody::MemberBanned { user, .. }
                | EventBody::MemberLeft { user },
            ) if user == me => {
                for room in left_rooms(api, *g).await {
                    rooms.remove(&room);
                    left.insert(room, v3::LeftRoom::new());
                }
                changed.remove(g);
            }
            // The reader's own receipts (read markers are theirs alone).
            (StreamId::User(user), EventBody::Read { channel, message }) if user == me => {
                let Ok(g) = api.channel_view(me, *channel).await else { continue };
                let Some(room) = room_of(&g, *channel) else { continue };
                let content = json!({ message.to_string(): { "m.read": { me.as_str(): { "ts": next.event.core.ts.as_millis() } } } });
                let receipt = json!({ "type": "m.receipt", "content": content });
                rooms.entry(room).or_default().ephemeral.events.push(raw(receipt));
            }
            // A channel gone: its room is left.
            (StreamId::Guild(g), EventBody::ChannelDeleted { channel }) => {
                if let Ok(guild) = api.member_view(me, *g).await
                    && let Some(origin) = &guild.origin
                    && let Ok(room) = ruma::RoomId::parse(format!("!{channel}:{origin}"))
                {
                    rooms.remove(&room);
                    left.insert(room, v3::LeftRoom::new());
                    changed.insert(*g);
                }
            }
            (StreamId::Guild(g), body) if structural(body) => {
                // Only the viewer's guilds: another's change is no news to them.
                let theirs = api.member_view(me, *g).await.is_ok();
                if theirs {
                    changed.insert(*g);
                }
            }
            (StreamId::Channel(channel), _) => {
                let Some(event) = room_event(&next) else { continue };
                let Ok(g) = api.channel_view(me, *channel).await else { continue };
                let Some(room) = room_of(&g, *channel) else { continue };
                if !g.channel_permissions(me, *channel, now).contains(Permissions::VIEW_CHANNEL) {
                    continue;
                }
                let joined = rooms.entry(room).or_default();
                joined.timeline.events.push(raw(event));
                if joined.timeline.prev_batch.is_none() {
                    joined.timeline.prev_batch = Some(since.to_string());
                }
            }
            _ => {}
        }
        if rooms.values().map(|r| r.timeline.events.len()).sum::<usize>() >= 100 {
            break;
        }
    }
    for g in changed {
        let Ok(guild) = api.member_view(me, g).await else { continue };
        if !guild.dm
            && let Some(space) = space_of(&guild)
        {
            let events = space_state(&guild, me, space.as_str()).into_iter().map(raw).collect();
            rooms.entry(space).or_default().state = state_of(events);
        }
        for (channel, c) in &guild.channels {
            if c.kind == ChannelKind::Thread
                || !guild.channel_permissions(me, *channel, now).contains(Permissions::VIEW_CHANNEL)
            {
                continue;
            }
            let Some(room) = room_of(&guild, *channel) else { continue };
            let events = room_state(&guild, *channel, me, room.as_str()).into_iter().map(raw).collect();
            left.remove(&room);
            rooms.entry(room).or_default().state = state_of(events);
        }
    }
    let mut response = v3::Response::new(last.to_string());
    response.rooms.join = rooms;
    response.rooms.leave = left;
    Ok(response)
}

/// Whether a guild event changes what its rooms' state shows: names, topics, children,
/// members, power levels.
fn structural(body: &EventBody) -> bool {
    use EventBody as E;
    matches!(
        body,
        E::GuildUpdated { .. }
            | E::ChannelCreated { .. }
            | E::ChannelUpdated { .. }
            | E::ChannelMoved { .. }
            | E::OverwriteSet { .. }
            | E::RoleCreated { .. }
            | E::RoleUpdated { .. }
            | E::RoleDeleted { .. }
            | E::RoleAssigned { .. }
            | E::RoleUnassigned { .. }
            | E::MemberJoined { .. }
            | E::MemberLeft { .. }
            | E::MemberKicked { .. }
            | E::MemberBanned { .. }
            | E::NicknameSet { .. }
    )
}

pub async fn sync(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    let (request, parts) = parse::<v3::Request>(req, &[]).await?;
    let me = viewer(&api, &parts).await?;
    let since = match request.since.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            MatrixError::new(400, "M_INVALID_PARAM", "since: pass the next_batch of a sync from this hub")
        })?),
    };
    let response = match (since, request.full_state) {
        (Some(since), false) => incremental(&api, &me.user, since, request.timeout.unwrap_or_default()).await?,
        _ => initial(&api, &me.user, timeline_limit(request.filter.as_ref())).await?,
    };
    Ok(reply(response))
}
