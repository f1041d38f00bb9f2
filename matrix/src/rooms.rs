//! What happens in a room: sending a message (idempotent per access token and transaction id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use axum::response::Response;
use openguild_api::Api;
use openguild_domain::channel::MessageCommand;
use openguild_domain::{ChannelId, MessageId};
use ruma::api::client::message::send_message_event;
use ruma::{OwnedEventId, RoomId};
use serde_json::Value;

use crate::MatrixError;
use crate::ruma_io::{parse, reply, token, viewer};

/// The most transactions remembered; past it the oldest are forgotten.
const REMEMBERED: usize = 16_384;

/// Sends already done, by (access token's hash, transaction id): a client retrying a send
/// gets the first answer, not a second message. Kept per node, in memory.
#[derive(Default)]
pub struct Txns(Mutex<Done>);

/// A transaction: the access token's hash and the client's id for it.
type Txn = ([u8; 32], String);

/// The answers by transaction, and their order (oldest first).
type Done = (HashMap<Txn, OwnedEventId>, std::collections::VecDeque<Txn>);

impl Txns {
    fn get(&self, key: &Txn) -> Option<OwnedEventId> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0.get(key).cloned()
    }

    fn put(&self, key: Txn, id: OwnedEventId) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), id).is_none() {
            order.push_back(key);
        }
        while order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

/// The channel a room id names, if the viewer can see it.
pub async fn channel_of(
    api: &Arc<Api>,
    me: &openguild_domain::UserId,
    room: &RoomId,
) -> Result<ChannelId, MatrixError> {
    let not_in = || crate::ids::not_in_room(room);
    let local = crate::ids::local_part(room).ok_or_else(not_in)?;
    let channel: ChannelId = local.parse().map_err(|_| not_in())?;
    api.channel_view(me, channel).await.map_err(|_| not_in())?;
    Ok(channel)
}

pub async fn send(
    State(api): State<Arc<Api>>,
    Extension(txns): Extension<Arc<Txns>>,
    Path((room, kind, txn)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, MatrixError> {
    let (request, parts) = parse::<send_message_event::v3::Request>(req, &[&room, &kind, &txn]).await?;
    let me = viewer(&api, &parts).await?;
    let key = (blake3::hash(token(&parts).unwrap_or_default().as_bytes()).into(), request.txn_id.to_string());
    if let Some(done) = txns.get(&key) {
        return Ok(reply(send_message_event::v3::Response::new(done)));
    }
    let channel = channel_of(&api, &me.user, &request.room_id).await?;
    let content: Value = serde_json::from_str(request.body.json().get()).map_err(MatrixError::bad_json)?;
    let id = act(&api, &me.user, channel, &request.event_type.to_string(), &content).await?;
    let id = OwnedEventId::try_from(id.to_string())
        .map_err(|_| MatrixError::new(500, "M_UNKNOWN", "an event id is no Matrix event id"))?;
    txns.put(key, id.clone());
    Ok(reply(send_message_event::v3::Response::new(id)))
}

/// The OpenGuild message an event id names (a message's id is its event's, `$…`).
fn message_of(event_id: &str) -> Result<MessageId, MatrixError> {
    event_id.parse().map_err(|_| MatrixError::new(404, "M_NOT_FOUND", format!("{event_id} is no event of this hub")))
}

/// What a sent event does: a message, an edit (`m.replace`) or a reaction (`m.annotation`).
async fn act(
    api: &Arc<Api>,
    me: &openguild_domain::UserId,
    channel: ChannelId,
    kind: &str,
    content: &Value,
) -> Result<openguild_domain::EventId, MatrixError> {
    let relates = content.get("m.relates_to");
    let rel_type = relates.and_then(|r| r.get("rel_type")).and_then(Value::as_str);
    let target = relates.and_then(|r| r.get("event_id")).and_then(Value::as_str);
    let cmd = match (kind, rel_type, target) {
        ("m.reaction", Some("m.annotation"), Some(target)) => {
            let emoji = relates.and_then(|r| r.get("key")).and_then(Value::as_str).unwrap_or_default();
            MessageCommand::React { message: message_of(target)?, emoji: emoji.to_owned() }
        }
        ("m.room.message", Some("m.replace"), Some(target)) => {
            let text = content
                .get("m.new_content")
                .and_then(|c| c.get("body"))
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::new(400, "M_BAD_JSON", "an edit needs `m.new_content.body`"))?;
            MessageCommand::Edit { message: message_of(target)?, text: text.to_owned() }
        }
        ("m.room.message", _, _) => {
            let body = content
                .get("body")
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::new(400, "M_BAD_JSON", "an m.room.message needs a text `body`"))?;
            let reply_to = relates
                .and_then(|r| r.get("m.in_reply_to"))
                .and_then(|r| r.get("event_id"))
                .and_then(Value::as_str)
                .map(message_of)
                .transpose()?;
            let extra = crate::sync::extra_of(content);
            return Ok(api.post(me, channel, body.to_owned(), reply_to, &[], extra).await?.id);
        }
        (other, _, _) => {
            return Err(MatrixError::new(
                400,
                "M_UNRECOGNIZED",
                format!("this hub does not take `{other}` events here (docs/MATRIX.md)"),
            ));
        }
    };
    let done = api.message_as(me, channel, cmd).await?;
    done.events.last().map(|e| e.id).ok_or_else(|| MatrixError::new(500, "M_UNKNOWN", "the act wrote no event"))
}

/// `/rooms/{roomId}/redact/{eventId}/{txnId}`: a message deleted (by its author or a
/// moderator, as on GraphQL), or one's own reaction taken back.
pub async fn redact(
    State(api): State<Arc<Api>>,
    Path((room, event, txn)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::redact::redact_event;
    let (request, parts) = parse::<redact_event::v3::Request>(req, &[&room, &event, &txn]).await?;
    let me = viewer(&api, &parts).await?;
    let channel = channel_of(&api, &me.user, &request.room_id).await?;
    let target = message_of(request.event_id.as_str())?;
    let not_here = || MatrixError::new(404, "M_NOT_FOUND", format!("{} is not in this room", request.event_id));
    let stored = api.store.get(&target).await.map_err(crate::error::api_err)?;
    let stored =
        stored.filter(|e| e.event.core.stream == openguild_domain::StreamId::Channel(channel)).ok_or_else(not_here)?;
    let reason = request.reason.unwrap_or_default();
    let cmd = match stored.event.content() {
        openguild_domain::EventBody::MessagePosted { .. } => MessageCommand::Redact { message: target, reason },
        openguild_domain::EventBody::ReactionAdded { message, emoji } if stored.event.core.sender == me.user => {
            MessageCommand::Unreact { message: *message, emoji: emoji.clone() }
        }
        _ => {
            return Err(MatrixError::new(
                400,
                "M_UNRECOGNIZED",
                "only messages and one's own reactions are redacted here",
            ));
        }
    };
    let done = api.message_as(&me.user, channel, cmd).await?;
    let id = done.events.last().map(|e| e.id.to_string()).unwrap_or_else(|| request.event_id.to_string());
    let id = OwnedEventId::try_from(id)
        .map_err(|_| MatrixError::new(500, "M_UNKNOWN", "an event id is no Matrix event id"))?;
    Ok(reply(redact_event::v3::Response::new(id)))
}

/// The guild whose space a room id names, or whose channel's room it is.
async fn guild_of_room(
    api: &Arc<Api>,
    me: &openguild_domain::UserId,
    room: &RoomId,
) -> Result<openguild_domain::GuildId, MatrixError> {
    let not_in = || crate::ids::not_in_room(room);
    let local = crate::ids::local_part(room).ok_or_else(not_in)?;
    if let Ok(g) = local.parse::<openguild_domain::GuildId>()
        && api.member_view(me, g).await.is_ok()
    {
        return Ok(g);
    }
    let channel = channel_of(api, me, room).await?;
    api.commands.guild_of(channel).await.map_err(|_| not_in())
}

/// `/rooms/{roomId}/kick`, `/ban`, `/unban`: OpenGuild's moderation of the room's guild, with
/// the same permission checks as GraphQL's.
pub async fn moderate(
    State(api): State<Arc<Api>>,
    Path((room, what)): Path<(String, String)>,
    req: Request,
) -> Result<Response, MatrixError> {
    use openguild_domain::guild::GuildCommand;
    use ruma::api::client::membership::{ban_user, kick_user, unban_user};
    let (room_id, user, reason, parts) = match what.as_str() {
        "kick" => {
            let (r, parts) = parse::<kick_user::v3::Request>(req, &[&room]).await?;
            (r.room_id, r.user_id, r.reason, parts)
        }
        "ban" => {
            let (r, parts) = parse::<ban_user::v3::Request>(req, &[&room]).await?;
            (r.room_id, r.user_id, r.reason, parts)
        }
        "unban" => {
            let (r, parts) = parse::<unban_user::v3::Request>(req, &[&room]).await?;
            (r.room_id, r.user_id, r.reason, parts)
        }
        _ => return Err(MatrixError::unrecognized(404)),
    };
    let me = viewer(&api, &parts).await?;
    let guild = guild_of_room(&api, &me.user, &room_id).await?;
    let user: openguild_domain::UserId = user
        .as_str()
        .parse()
        .map_err(|_| MatrixError::new(400, "M_INVALID_PARAM", format!("{user} is no user of a hub")))?;
    let reason = reason.unwrap_or_default();
    let cmd = match what.as_str() {
        "kick" => GuildCommand::Kick { user, reason },
        "ban" => GuildCommand::Ban { user, reason, purge_seconds: 0 },
        _ => GuildCommand::Unban { user, reason },
    };
    api.guild_as(&me.user, guild, cmd).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}
/// `/rooms/{roomId}/messages`: a page of the room's messages from a batch token (a store
/// position: a sync's `prev_batch`, or a page's `end`), backwards (newest first) or forwards.
pub async fn messages(
    State(api): State<Arc<Api>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use openguild_projections::queries::{self, Page};
    use ruma::api::Direction;
    use ruma::api::client::message::get_message_events;
    let (request, parts) = parse::<get_message_events::v3::Request>(req, &[&room]).await?;
    let me = viewer(&api, &parts).await?;
    let channel = channel_of(&api, &me.user, &request.room_id).await?;
    let from = match request.from.as_deref() {
        None => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            MatrixError::new(400, "M_INVALID_PARAM", "from: pass a prev_batch or end token from this hub")
        })?),
    };
    let limit = u32::try_from(u64::from(request.limit)).unwrap_or(u32::MAX).clamp(1, 100);
    // The viewer's own posts are in the read model before a page is read.
    let wait = std::time::Duration::from_millis(api.settings.limits.read_your_writes_ms);
    let mine = api.last_write(&me.user);
    api.projections.wait_for(&["timeline"], mine, wait).await.map_err(crate::error::api_err)?;
    // A token is the point just after a position: backwards from it come the messages at or
    // before that position, forwards the ones after it.
    let page = match request.dir {
        Direction::Backward => Page::Last { before: from.map(|f| f + 1), limit },
        Direction::Forward => Page::First { after: from, limit },
    };
    let mut rows = queries::messages(api.projections.db(), channel, page).await.map_err(crate::error::api_err)?;
    if request.dir == Direction::Backward {
        rows.reverse();
    }
    let room_id = request.room_id.to_string();
    let kept = crate::sync::extras(&api, &rows).await?;
    let chunk = rows
        .iter()
        .map(|m| {
            let mut event = crate::sync::message_event(m, kept.get(&m.id).map(String::as_str));
            event["room_id"] = Value::String(room_id.clone());
            crate::sync::raw(event)
        })
        .collect();
    let mut response = get_message_events::v3::Response::new();
    response.start = from.map_or_else(String::new, |f| f.to_string());
    // Where the next page starts: past the last message of this one; none when it was short.
    let next = |m: &openguild_projections::queries::MessageRow| match request.dir {
        Direction::Backward => m.position.saturating_sub(1),
        Direction::Forward => m.position,
    };
    response.end = rows.last().filter(|_| rows.len() == limit as usize).map(|m| next(m).to_string());
    response.chunk = chunk;
    Ok(reply(response))
}

/// A state event as a room's own (not a sync's): with its room id.
fn in_room(mut event: Value, room: &RoomId) -> Value {
    event["room_id"] = Value::String(room.to_string());
    event
}

/// `/rooms/{roomId}/state`: the room's whole state.
pub async fn state(
    State(api): State<Arc<Api>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::state::get_state_events;
    let (request, parts) = parse::<get_state_events::v3::Request>(req, &[&room]).await?;
    let me = viewer(&api, &parts).await?;
    let events = crate::sync::room_state_of(&api, &me.user, &request.room_id).await?;
    let events = events.into_iter().map(|e| crate::sync::raw(in_room(e, &request.room_id))).collect();
    Ok(reply(get_state_events::v3::Response::new(events)))
}

/// `/rooms/{roomId}/state/{type}/{key}`: one state event's content.
pub async fn state_for_key(
    State(api): State<Arc<Api>>,
    Path(args): Path<Vec<String>>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::state::get_state_event_for_key;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let args = if args.len() == 2 { vec![args[0], args[1], ""] } else { args };
    let (request, parts) = parse::<get_state_event_for_key::v3::Request>(req, &args).await?;
    let me = viewer(&api, &parts).await?;
    let events = crate::sync::room_state_of(&api, &me.user, &request.room_id).await?;
    let kind = request.event_type.to_string();
    let found = events
        .into_iter()
        .find(|e| e["type"] == kind.as_str() && e["state_key"] == request.state_key.as_str())
        .ok_or_else(|| {
            MatrixError::new(404, "M_NOT_FOUND", format!("no {kind} state with key {:?}", request.state_key))
        })?;
    Ok(axum::Json(found["content"].clone()).into_response())
}

/// `/rooms/{roomId}/members`: the room's `m.room.member` events.
pub async fn members(
    State(api): State<Arc<Api>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::membership::get_member_events;
    let (request, parts) = parse::<get_member_events::v3::Request>(req, &[&room]).await?;
    let me = viewer(&api, &parts).await?;
    let events = crate::sync::room_state_of(&api, &me.user, &request.room_id).await?;
    let chunk = events
        .into_iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| crate::sync::raw(in_room(e, &request.room_id)))
        .collect();
    Ok(reply(get_member_events::v3::Response::new(chunk)))
}

/// `/rooms/{roomId}/leave`: leaving the room's guild (a guild is left whole, as on GraphQL).
pub async fn leave(
    State(api): State<Arc<Api>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use openguild_domain::guild::GuildCommand;
    use ruma::api::client::membership::leave_room;
    let (request, parts) = parse::<leave_room::v3::Request>(req, &[&room]).await?;
    let me = viewer(&api, &parts).await?;
    let guild = guild_of_room(&api, &me.user, &request.room_id).await?;
    api.guild_as(&me.user, guild, GuildCommand::Leave).await?;
    Ok(reply(leave_room::v3::Response::new()))
}

/// `/rooms/{roomId}/typing/{userId}`: the viewer is typing (a live notice, as on GraphQL;
/// stopping needs nothing: a notice lapses by itself).
pub async fn typing(
    State(api): State<Arc<Api>>,
    Path((room, user)): Path<(String, String)>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::typing::create_typing_event;
    let (request, parts) = parse::<create_typing_event::v3::Request>(req, &[&room, &user]).await?;
    let me = viewer(&api, &parts).await?;
    if request.user_id.as_str() != me.user.as_str() {
        return Err(MatrixError::new(403, "M_FORBIDDEN", "one says only that oneself is typing"));
    }
    let channel = channel_of(&api, &me.user, &request.room_id).await?;
    if matches!(request.state, create_typing_event::v3::Typing::Yes(_)) {
        api.typing_in(&me.user, channel).await?;
    }
    Ok(reply(create_typing_event::v3::Response::new()))
}

/// `/rooms/{roomId}/receipt/{type}/{eventId}`: the viewer has read up to a message (OpenGuild's
/// read marker; receipts are the reader's own, not shown to others).
pub async fn receipt(
    State(api): State<Arc<Api>>,
    Path((room, kind, event)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::receipt::create_receipt;
    let (request, parts) = parse::<create_receipt::v3::Request>(req, &[&room, &kind, &event]).await?;
    let me = viewer(&api, &parts).await?;
    let channel = channel_of(&api, &me.user, &request.room_id).await?;
    api.mark_read(&me.user, channel, message_of(request.event_id.as_str())?).await?;
    Ok(reply(create_receipt::v3::Response::new()))
}

/// `/rooms/{roomId}/read_markers`: the same marker, from `m.read` or `m.fully_read`.
pub async fn read_markers(
    State(api): State<Arc<Api>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::read_marker::set_read_marker;
    let (request, parts) = parse::<set_read_marker::v3::Request>(req, &[&room]).await?;
    let me = viewer(&api, &parts).await?;
    let channel = channel_of(&api, &me.user, &request.room_id).await?;
    if let Some(read) = request.read_receipt.or(request.fully_read) {
        api.mark_read(&me.user, channel, message_of(read.as_str())?).await?;
    }
    Ok(reply(set_read_marker::v3::Response::new()))
}

/// `/createRoom`: a room becomes a guild of one text channel (named as the room), a space
/// (`creation_content.type = m.space`) a guild. The answer is the channel's room, or the
/// guild's space. Public rooms (joinable by id without an invite) are not served yet.
pub async fn create_room(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    use openguild_domain::guild::GuildCommand;
    use ruma::api::client::room::create_room;
    let (request, parts) = parse::<create_room::v3::Request>(req, &[]).await?;
    let me = viewer(&api, &parts).await?;
    let is_space = request
        .creation_content
        .as_ref()
        .and_then(|c| serde_json::from_str::<Value>(c.json().get()).ok())
        .is_some_and(|c| c.get("type").and_then(Value::as_str) == Some("m.space"));
    let name = request.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "New room".to_owned());
    let guild = api.create_guild_as(&me, &name).await?;
    let g = api.member_view(&me.user, guild).await?;
    let room = if is_space {
        crate::ids::space_of(&g)
    } else {
        let channel = ChannelId::from_bytes(openguild_api::commands::random16());
        // A channel's name as Discord's: lower case, words joined by `-`.
        let slug: String = name.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
        let slug: String = slug.trim_matches('-').chars().take(100).collect();
        let cmd = GuildCommand::CreateChannel {
            channel,
            name: if slug.is_empty() { "general".to_owned() } else { slug },
            kind: openguild_domain::ChannelKind::Text,
            category: None,
            topic: request.topic.clone().unwrap_or_default(),
            overwrites: vec![],
        };
        api.guild_as(&me.user, guild, cmd).await?;
        crate::ids::room_of(&g, channel)
    };
    let room = room.ok_or_else(|| MatrixError::new(500, "M_UNKNOWN", "the new guild has no room id"))?;
    Ok(reply(create_room::v3::Response::new(room)))
}

/// `/_matrix/client/v1/rooms/{roomId}/hierarchy`: a guild's space and the rooms of the
/// channels the viewer can see, in the guild's order.
pub async fn hierarchy(
    State(api): State<Arc<Api>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::space::get_hierarchy;
    let (request, parts) = parse::<get_hierarchy::v1::Request>(req, &[&room]).await?;
    let me = viewer(&api, &parts).await?;
    let state = crate::sync::room_state_of(&api, &me.user, &request.room_id).await?;
    let name_of = |state: &[Value]| {
        state.iter().find(|e| e["type"] == "m.room.name").map(|e| e["content"]["name"].clone()).unwrap_or(Value::Null)
    };
    let mut children: Vec<(String, String)> = state
        .iter()
        .filter(|e| e["type"] == "m.space.child")
        .map(|e| {
            (
                e["content"]["order"].as_str().unwrap_or_default().to_owned(),
                e["state_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    children.sort();
    let child_events: Vec<Value> = state
        .iter()
        .filter(|e| e["type"] == "m.space.child")
        .map(|e| serde_json::json!({ "type": e["type"], "state_key": e["state_key"], "content": e["content"], "sender": e["sender"], "origin_server_ts": e["origin_server_ts"] }))
        .collect();
    let members = |state: &[Value]| state.iter().filter(|e| e["type"] == "m.room.member").count();
    let is_space = state.iter().any(|e| e["type"] == "m.room.create" && e["content"]["type"] == "m.space");
    let mut rooms = vec![serde_json::json!({
        "room_id": request.room_id.as_str(),
        "name": name_of(&state),
        "num_joined_members": members(&state),
        "world_readable": false,
        "guest_can_join": false,
        "join_rule": "invite",
        "room_type": if is_space { Value::from("m.space") } else { Value::Null },
        "children_state": child_events,
    })];
    for (_, child) in children {
        let Ok(child_id) = RoomId::parse(&child) else { continue };
        let Ok(child_state) = crate::sync::room_state_of(&api, &me.user, &child_id).await else { continue };
        let topic = child_state.iter().find(|e| e["type"] == "m.room.topic").map(|e| e["content"]["topic"].clone());
        rooms.push(serde_json::json!({
            "room_id": child,
            "name": name_of(&child_state),
            "topic": topic.unwrap_or(Value::Null),
            "num_joined_members": members(&child_state),
            "world_readable": false,
            "guest_can_join": false,
            "join_rule": "invite",
            "children_state": [],
        }));
    }
    Ok(axum::Json(serde_json::json!({ "rooms": rooms })).into_response())
}
