//! Subscriptions over `/graphql/ws`, speaking graphql-transport-ws (the protocol of the npm
//! `graphql-ws` client) in full:
//!
//! - no `connection_init` within the handshake timeout: close 4408;
//! - `connection_init` without a valid `authorization`: close 4401;
//! - `subscribe` before the init is acknowledged: close 4401;
//! - a second `connection_init`: close 4429;
//! - a `subscribe` reusing an active id: close 4409;
//! - a message that is not the protocol's: close 4400.
//!
//! Each subscription is registered by executing its document once in `Register` mode
//! (validation, limits, permission to follow), then fed from the hub. An event is rendered
//! once per distinct selection and shared; who may receive it is checked per subscriber at
//! the moment of delivery. A subscription with `since` first replays what it missed from
//! the store, then goes live, with no gap and no duplicate (positions are strictly
//! increasing, and each subscription skips what it has already sent).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Request, Variables};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::Api;
use crate::auth::{Viewer, bearer};
use crate::clock::now;
use crate::fanout::Live;
use crate::gql::SubMode;
use crate::gql::live::{Registered, Verdict};
use crate::http::{ClientAddr, measure_doc};
use crate::metrics;

const PROTOCOL: &str = "graphql-transport-ws";
/// Most live items written to one socket before a flush.
const BATCH: usize = 64;
/// How often the server pings an open connection.
const PING_EVERY: Duration = Duration::from_secs(30);

pub(crate) async fn upgrade(
    State(api): State<Arc<Api>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !origin_allowed(&api, origin, &headers)
    {
        return (
            StatusCode::FORBIDDEN,
            format!("origin {origin} may not open this websocket; add it to api.origins in the configuration"),
        )
            .into_response();
    }
    ws.protocols([PROTOCOL])
        // Small buffers (the write buffer grows only when used): ten thousand idle connections
        // must fit in a few hundred MB.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(api.settings.limits.max_body_bytes)
        .on_upgrade(move |socket| {
            // Tracked until the socket has ended, even if its task panics: shutdown waits.
            let sockets = api.sockets.clone();
            sockets.run(async move {
                let mut conn = Connection::new(api, socket, addr);
                if let Err(e) = conn.run().await {
                    tracing::debug!(error = %e, "websocket ended");
                }
            })
        })
}

/// The server's own origin (same host as requested) and the configured ones are allowed.
fn origin_allowed(api: &Api, origin: &str, headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    origin_host.eq_ignore_ascii_case(host) || api.settings.origins.iter().any(|o| o.trim_end_matches('/') == origin)
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    payload: Option<Value>,
}

#[derive(Deserialize)]
struct SubscribePayload {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

/// One active subscription.
struct Sub {
    id: String,
    registered: Registered,
    query: String,
    variables: Value,
    operation_name: Option<String>,
    /// Identifies the selection: same query, variables and operation render the same.
    selection: u64,
    /// The last position sent (or resumed after).
    last: u64,
    /// Counted among the active subscriptions while it is kept.
    _active: metrics::live::Subscription,
}

enum Closing {
    Close(u16, &'static str),
    Gone,
}

struct Connection {
    api: Arc<Api>,
    socket: WebSocket,
    addr: std::net::IpAddr,
    viewer: Option<Viewer>,
    /// The viewer's place in their cap of sockets, given back when the connection ends.
    seat: Option<crate::sockets::Seat>,
    subs: Vec<Sub>,
    feed: Option<tokio::sync::broadcast::Receiver<Arc<Live>>>,
    /// Counted among the open websockets until the connection ends.
    _open: metrics::live::Socket,
}

impl Connection {
    fn new(api: Arc<Api>, socket: WebSocket, addr: std::net::IpAddr) -> Self {
        let _open = metrics::live::Socket::open();
        Self { api, socket, addr, viewer: None, seat: None, subs: Vec::new(), feed: None, _open }
    }

    async fn run(&mut self) -> Result<(), axum::Error> {
        match self.serve().await {
            Ok(Closing::Close(code, reason)) => {
                let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                let _ = self.socket.send(Message::Close(Some(frame))).await;
                Ok(())
            }
            Ok(Closing::Gone) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn serve(&mut self) -> Result<Closing, axum::Error> {
        let limits = self.api.settings.limits.clone();
        let handshake = tokio::time::sleep(Duration::from_secs(limits.handshake_timeout_seconds));
        tokio::pin!(handshake);
        let idle = Duration::from_secs(limits.idle_timeout_seconds);
        let mut last_heard = tokio::time::Instant::now();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let sockets = self.api.sockets.clone();
        let stopping = sockets.stopping();
        tokio::pin!(stopping);
        let mut endings = self.api.fanout.endings();
        loop {
            tokio::select! {
                () = &mut stopping => return Ok(Closing::Close(1001, "server shutting down")),
                ended = endings.recv() => {
                    let closes = match (&ended, &self.viewer) {
                        (Ok(ended), Some(v)) => ended.ends(v),
                        // Missed some: ask the account itself.
                        (Err(RecvError::Lagged(_)), Some(v)) => !self.api.session_open(v, now()).await,
                        _ => false,
                    };
                    if closes {
                        // Anything already queued for this socket goes first (a `myEvents`
                        // subscriber learns why), then the socket closes.
                        while let Some(Ok(live)) = self.feed.as_mut().map(|rx| rx.try_recv()) {
                            self.deliver(&live).await?;
                        }
                        return Ok(Closing::Close(4401, "Unauthorized: the session ended"));
                    }
                }
                () = &mut handshake, if self.viewer.is_none() => {
                    return Ok(Closing::Close(4408, "Connection initialisation timeout"));
                }
                _ = ping.tick() => {
                    if self.subs.is_empty() && last_heard.elapsed() > idle {
                        return Ok(Closing::Close(1000, "idle: no subscriptions and nothing heard"));
                    }
                    if let Some(v) = &self.viewer && !self.api.session_open(v, now()).await {
                        return Ok(Closing::Close(4401, "Unauthorized: the session ended"));
                    }
                    self.send_json(&json!({ "type": "ping" })).await?;
                }
                item = next_live(&mut self.feed) => {
                    // Everything already queued goes out in one write.
                    let mut item = item;
                    for taken in 1..=BATCH {
                        match item {
                            Ok(live) => {
                                if let Some(closing) = self.deliver(&live).await? {
                                    return Ok(closing);
                                }
                            }
                            Err(RecvError::Lagged(missed)) => {
                                tracing::debug!(missed, "websocket fell behind the hub; catching up from the store");
                                self.catch_up_all().await?;
                            }
                            Err(RecvError::Closed) => return Ok(Closing::Close(1001, "server shutting down")),
                        }
                        if taken == BATCH {
                            // The rest waits for the next turn of the loop (nothing is taken
                            // off the queue that is not delivered).
                            break;
                        }
                        item = match self.feed.as_mut().map(|rx| rx.try_recv()) {
                            Some(Ok(live)) => Ok(live),
                            Some(Err(TryRecvError::Lagged(n))) => Err(RecvError::Lagged(n)),
                            _ => break,
                        };
                    }
                    self.socket.flush().await?;
                }
                incoming = self.socket.recv() => {
                    let Some(incoming) = incoming else { return Ok(Closing::Gone) };
                    last_heard = tokio::time::Instant::now();
                    let text = match incoming? {
                        Message::Text(t) => t,
                        Message::Close(_) => return Ok(Closing::Gone),
                        Message::Binary(_) => return Ok(Closing::Close(4400, "Binary messages are not supported")),
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    let Ok(msg) = serde_json::from_str::<ClientMessage>(text.as_str()) else {
                        return Ok(Closing::Close(4400, "Invalid message: expected a graphql-transport-ws JSON message"));
                    };
                    if let Some(closing) = self.handle(msg).await? {
                        return Ok(closing);
                    }
                    // A subscribe with `since` queued its replay: send it now.
                    self.socket.flush().await?;
                }
            }
        }
    }

    async fn handle(&mut self, msg: ClientMessage) -> Result<Option<Closing>, axum::Error> {
        match msg.kind.as_str() {
            "connection_init" => {
                if self.viewer.is_some() {
                    return Ok(Some(Closing::Close(4429, "Too many initialisation requests")));
                }
                let token = msg
                    .payload
                    .as_ref()
                    .and_then(|p| p.get("authorization").or_else(|| p.get("Authorization")))
                    .and_then(Value::as_str)
                    .and_then(bearer);
                let Some(token) = token else {
                    return Ok(Some(Closing::Close(4401, "Unauthorized: send {authorization: 'Bearer <token>'}")));
                };
                let viewer = match self.api.authenticate(token, now()).await {
                    Ok(v) => v,
                    Err(_) => return Ok(Some(Closing::Close(4401, "Unauthorized: invalid or expired token"))),
                };
                let Some(seat) = self.api.sockets.seat(&viewer.user, self.api.settings.limits.max_connections_per_user)
                else {
                    return Ok(Some(Closing::Close(4403, "Forbidden: too many connections for this user")));
                };
                self.seat = Some(seat);
                self.api.fanout.mark_online(std::slice::from_ref(&viewer.user)).await;
                self.viewer = Some(viewer);
                self.send_json(&json!({ "type": "connection_ack" })).await?;
            }
            "ping" => self.send_json(&json!({ "type": "pong", "payload": msg.payload })).await?,
            "pong" => {}
            "subscribe" => {
                let Some(viewer) = &self.viewer else {
                    return Ok(Some(Closing::Close(4401, "Unauthorized")));
                };
                if !self.api.session_open(viewer, now()).await {
                    return Ok(Some(Closing::Close(4401, "Unauthorized: the session ended")));
                }
                let Some(id) = msg.id else {
                    return Ok(Some(Closing::Close(4400, "Invalid message: subscribe needs an id")));
                };
                if self.subs.iter().any(|s| s.id == id) {
                    return Ok(Some(Closing::Close(4409, "Subscriber for this id already exists")));
                }
                let Some(payload) = msg.payload.and_then(|p| serde_json::from_value::<SubscribePayload>(p).ok()) else {
                    return Ok(Some(Closing::Close(4400, "Invalid message: subscribe needs {query, variables}")));
                };
                self.subscribe(id, payload).await?;
            }
            "complete" => {
                if let Some(id) = msg.id {
                    self.subs.retain(|s| s.id != id);
                    if self.subs.is_empty() {
                        self.feed = None;
                    }
                }
            }
            _ => return Ok(Some(Closing::Close(4400, "Invalid message type"))),
        }
        Ok(None)
    }

    async fn subscribe(&mut self, id: String, payload: SubscribePayload) -> Result<(), axum::Error> {
        let errors = |message: String, code: &str| {
            metrics::graphql::error(code);
            json!([{ "message": message, "extensions": { "code": code } }])
        };
        if self.subs.len() >= self.api.settings.limits.max_subscriptions_per_connection {
            let message = format!(
                "at most {} subscriptions per connection; complete one first",
                self.api.settings.limits.max_subscriptions_per_connection
            );
            return self
                .send_json(&json!({ "id": id, "type": "error", "payload": errors(message, "RATE_LIMITED") }))
                .await;
        }
        let doc = self.api.documents.parse(&payload.query);
        if let Some(Err(e)) = doc.as_deref().map(|doc| measure_doc(doc, self.api.settings.limits.max_fields, false)) {
            return self.send_json(&json!({ "id": id, "type": "error", "payload": errors(e.message, e.code) })).await;
        }
        let variables = payload.variables.unwrap_or(Value::Null);
        let slot = Arc::new(Mutex::new(None));
        let mut request = request(&self.api, self.addr, &payload.query, &variables, payload.operation_name.as_deref());
        request = request.data(SubMode::Register(slot.clone()));
        if let Some(v) = &self.viewer {
            request = request.data(v.clone());
        }
        // A query or mutation over the socket runs once: next, then complete.
        if let Some(doc) = &doc {
            request.set_parsed_query(async_graphql::parser::types::ExecutableDocument::clone(doc));
        }
        let operation = metrics::graphql::Operation::of(doc.as_deref(), payload.operation_name.as_deref());
        let is_subscription = doc.is_some_and(|doc| {
            let op = match &doc.operations {
                async_graphql::parser::types::DocumentOperations::Single(op) => Some(op),
                async_graphql::parser::types::DocumentOperations::Multiple(ops) => match &payload.operation_name {
                    Some(name) => ops.get(name.as_str()),
                    None => ops.values().next(),
                },
            };
            op.is_some_and(|op| op.node.ty == async_graphql::parser::types::OperationType::Subscription)
        });
        let started = std::time::Instant::now();
        if !is_subscription {
            let response = crate::http::with_codes(self.api.schema.execute(request).await);
            operation.ran(started);
            metrics::graphql::errors(&response.errors);
            self.send_json(&json!({ "id": id, "type": "next", "payload": response })).await?;
            return self.send_json(&json!({ "id": id, "type": "complete" })).await;
        }
        let mut stream = self.api.schema.execute_stream(request);
        while let Some(response) = stream.next().await {
            if response.is_err() {
                operation.ran(started);
                let response = crate::http::with_codes(response);
                metrics::graphql::errors(&response.errors);
                let payload = serde_json::to_value(&response.errors).unwrap_or_default();
                return self.send_json(&json!({ "id": id, "type": "error", "payload": payload })).await;
            }
        }
        operation.ran(started);
        let Some(registered) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            let payload = errors("the subscription could not be registered".into(), "INVALID_INPUT");
            return self.send_json(&json!({ "id": id, "type": "error", "payload": payload })).await;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&payload.query, variables.to_string(), &payload.operation_name).hash(&mut hasher);
        // Live items from now on are buffered while the missed ones are replayed.
        if self.feed.is_none() {
            self.feed = Some(self.api.fanout.subscribe());
        }
        let live_from = self.api.fanout.position();
        let since = registered.since;
        self.subs.push(Sub {
            id,
            registered,
            query: payload.query,
            variables,
            operation_name: payload.operation_name,
            selection: hasher.finish(),
            last: since.unwrap_or(live_from),
            _active: metrics::live::Subscription::active(),
        });
        if since.is_some() {
            let index = self.subs.len() - 1;
            self.catch_up(index, live_from).await?;
        }
        Ok(())
    }

    /// Replays subscription `index`'s missed events from the store, up to `to`.
    async fn catch_up(&mut self, index: usize, to: u64) -> Result<(), axum::Error> {
        loop {
            let Some(from) = self.subs.get(index).map(|s| s.last) else { return Ok(()) };
            if from >= to {
                return Ok(());
            }
            let page = match self.api.store.read_all(from, 256).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "catch-up read failed");
                    let id = self.subs.remove(index).id;
                    metrics::graphql::error("UNAVAILABLE");
                    let payload = json!([{ "message": "the event store is unreachable; resubscribe with your last cursor", "extensions": { "code": "UNAVAILABLE" } }]);
                    return self.send_json(&json!({ "id": id, "type": "error", "payload": payload })).await;
                }
            };
            let Some(last) = page.last().map(|e| e.position) else { return Ok(()) };
            for e in page {
                let live = Arc::new(Live::Event(Box::new(e)));
                if self.deliver_to(index, &live, true).await?.is_none() {
                    return Ok(());
                }
            }
            if let Some(s) = self.subs.get_mut(index) {
                s.last = s.last.max(last);
            }
        }
    }

    async fn catch_up_all(&mut self) -> Result<(), axum::Error> {
        let to = self.api.fanout.position();
        for index in (0..self.subs.len()).rev() {
            self.catch_up(index, to).await?;
        }
        Ok(())
    }

    async fn deliver(&mut self, live: &Arc<Live>) -> Result<Option<Closing>, axum::Error> {
        if let Live::Event(e) = &**live
            && let Some(v) = &self.viewer
            && e.event.core.stream == openguild_domain::StreamId::User(v.user.clone())
            && let openguild_domain::EventBody::SessionRevoked { token_hash } = e.event.content()
            && *token_hash == v.token_hash
        {
            // Delivered first, so a `myEvents` subscriber learns why, then the socket closes.
            for index in (0..self.subs.len()).rev() {
                self.deliver_to(index, live, false).await?;
            }
            return Ok(Some(Closing::Close(4401, "Unauthorized: the session was revoked")));
        }
        for index in (0..self.subs.len()).rev() {
            self.deliver_to(index, live, false).await?;
        }
        Ok(None)
    }

    /// Sends `live` to subscription `index` if it belongs to its topic and the viewer may
    /// receive it (`replayed`: read from the store for a subscription that resumed). `None`
    /// when the subscription ended.
    async fn deliver_to(&mut self, index: usize, live: &Arc<Live>, replayed: bool) -> Result<Option<()>, axum::Error> {
        let Some(sub) = self.subs.get(index) else { return Ok(None) };
        let cursor = live.cursor();
        let is_event = matches!(&**live, Live::Event(_));
        if (is_event && cursor <= sub.last) || !sub.registered.topic.matches(live, &*self.api.commands) {
            return Ok(Some(()));
        }
        let Some(viewer) = &self.viewer else { return Ok(None) };
        let verdict = self.api.may_receive(&viewer.user, &sub.registered.topic, live).await;
        if let Verdict::Skip = verdict {
            if let Some(s) = self.subs.get_mut(index) {
                s.last = s.last.max(cursor);
            }
            return Ok(Some(()));
        }
        if let Verdict::End(why) = verdict {
            let sub = self.subs.remove(index);
            if self.subs.is_empty() {
                self.feed = None;
            }
            metrics::graphql::error("FORBIDDEN");
            let payload = json!({ "errors": [{ "message": why, "extensions": { "code": "FORBIDDEN" } }] });
            self.send_json(&json!({ "id": sub.id, "type": "next", "payload": payload })).await?;
            self.send_json(&json!({ "id": sub.id, "type": "complete" })).await?;
            return Ok(None);
        }
        let (api, addr) = (&self.api, self.addr);
        let render = || {
            let schema = api.schema.clone();
            async move {
                let live = redacted_now(api, live).await;
                let request = request(api, addr, &sub.query, &sub.variables, sub.operation_name.as_deref())
                    .data(SubMode::Deliver(live));
                let mut stream = schema.execute_stream(request);
                let response = stream.next().await?;
                serde_json::to_string(&response).ok().map(Arc::<str>::from)
            }
        };
        let payload =
            if is_event { self.api.fanout.rendered(sub.selection, cursor, render).await } else { render().await };
        let id = sub.id.clone();
        if let Some(s) = self.subs.get_mut(index)
            && is_event
        {
            s.last = cursor;
        }
        if let Some(payload) = payload {
            let text = format!("{{\"id\":{},\"type\":\"next\",\"payload\":{payload}}}", Value::String(id));
            // Written out by the flush after the batch.
            self.socket.feed(Message::Text(text.into())).await?;
            metrics::live::delivered(live, replayed, &self.api.server);
        }
        Ok(Some(()))
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), axum::Error> {
        self.socket.send(Message::Text(value.to_string().into())).await
    }
}

fn request(
    api: &Arc<Api>,
    addr: std::net::IpAddr,
    query: &str,
    variables: &Value,
    operation_name: Option<&str>,
) -> Request {
    let mut r =
        Request::new(query).variables(Variables::from_json(variables.clone())).data(api.clone()).data(ClientAddr(addr));
    if let Some(name) = operation_name {
        r = r.operation_name(name);
    }
    r
}

/// `live` as it may be shown now: a message's text (posted or edited) that was redacted
/// since is rendered without it, even before the moderation worker has erased it from the
/// store, so a replay from an old cursor never shows deleted text.
async fn redacted_now(api: &Api, live: &Arc<Live>) -> Arc<Live> {
    use openguild_domain::{EventBody as E, StreamId};
    let Live::Event(e) = &**live else { return live.clone() };
    let (StreamId::Channel(channel), Some(body)) = (&e.event.core.stream, &e.event.body) else {
        return live.clone();
    };
    let message = match body {
        E::MessagePosted { .. } => e.event.id,
        E::MessageEdited { message, .. } => *message,
        _ => return live.clone(),
    };
    if !api.commands.is_redacted(*channel, &message).await {
        return live.clone();
    }
    let mut stripped = (**e).clone();
    stripped.event.body = None;
    stripped.raw.body = None;
    Arc::new(Live::Event(Box::new(stripped)))
}

/// The next live item, or never when the connection follows nothing.
async fn next_live(feed: &mut Option<tokio::sync::broadcast::Receiver<Arc<Live>>>) -> Result<Arc<Live>, RecvError> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
