//! What happens in a room: sending a message (idempotent per access token and transaction id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use openguild_api::Api;
use openguild_domain::ChannelId;
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
    let not_found = || MatrixError::new(404, "M_NOT_FOUND", format!("room {room} not found, or you are not in it"));
    let local = room.as_str().strip_prefix('!').and_then(|r| r.split(':').next()).ok_or_else(not_found)?;
    let channel: ChannelId = local.parse().map_err(|_| not_found())?;
    api.channel_view(me, channel).await.map_err(|_| not_found())?;
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
    let body = match request.event_type.to_string().as_str() {
        "m.room.message" => content
            .get("body")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| MatrixError::new(400, "M_BAD_JSON", "an m.room.message needs a text `body`"))?,
        other => {
            return Err(MatrixError::new(
                400,
                "M_UNRECOGNIZED",
                format!("this hub does not take `{other}` events yet (docs/MATRIX.md)"),
            ));
        }
    };
    let posted = api.post(&me.user, channel, body, None, &[]).await?;
    let id = OwnedEventId::try_from(format!("${}", posted.id))
        .map_err(|_| MatrixError::new(500, "M_UNKNOWN", "a message id is no Matrix event id"))?;
    txns.put(key, id.clone());
    Ok(reply(send_message_event::v3::Response::new(id)))
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
    api.projections
        .wait_for(&["timeline"], mine, wait)
        .await
        .map_err(|e| MatrixError::from(openguild_api::errors::ApiError::from(e)))?;
    // A token is the point just after a position: backwards from it come the messages at or
    // before that position, forwards the ones after it.
    let page = match request.dir {
        Direction::Backward => Page::Last { before: from.map(|f| f + 1), limit },
        Direction::Forward => Page::First { after: from, limit },
    };
    let mut rows = queries::messages(api.projections.db(), channel, page)
        .await
        .map_err(|e| MatrixError::from(openguild_api::errors::ApiError::from(e)))?;
    if request.dir == Direction::Backward {
        rows.reverse();
    }
    let room_id = request.room_id.to_string();
    let chunk = rows
        .iter()
        .map(|m| {
            let mut event = crate::sync::message_event(m);
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
