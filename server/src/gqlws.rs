//! GraphQL from a client's side, as `openguild loadtest` speaks it: queries and mutations as JSON
//! over HTTP, and one subscription per websocket in the `graphql-transport-ws` protocol (the one
//! of the npm `graphql-ws` package).
//!
//! Only plain `http://` and `ws://`: the load test runs beside the server it measures.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The websocket subprotocol the server speaks on `/graphql/ws`.
pub const SUBPROTOCOL: &str = "graphql-transport-ws";

/// The longest wait a `retryAfter` may impose, whatever the server says.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A GraphQL request over HTTP that did not return data.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The first of the response's `errors`.
    #[error("{code}: {message}")]
    Graphql { code: String, message: String, retry_after: Option<Duration> },
    #[error("unexpected response: {0}")]
    Response(String),
}

impl HttpError {
    /// A short, low-cardinality name for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            HttpError::Transport(e) if e.is_timeout() => "timeout".into(),
            HttpError::Transport(e) if e.is_connect() => "connect".into(),
            HttpError::Transport(_) => "transport".into(),
            HttpError::Status { status, .. } => format!("http {status}"),
            HttpError::Graphql { code, .. } => code.clone(),
            HttpError::Response(_) => "bad response".into(),
        }
    }

    /// How long the server asked us to wait (`RATE_LIMITED` errors only).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Graphql { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// GraphQL over HTTP: `POST {base}/graphql`.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
}

impl Client {
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client { http, endpoint: format!("{}/graphql", base_url.trim_end_matches('/')) })
    }

    /// Runs one query or mutation and returns its `data`.
    pub async fn execute(&self, token: Option<&str>, query: &str, variables: Value) -> Result<Value, HttpError> {
        let mut request = self.http.post(&self.endpoint).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        // GraphQL errors may come with any status (429 for RATE_LIMITED, say), so the body is
        // read first and the status only matters when the body is not a GraphQL response.
        let parsed = match serde_json::from_slice::<Response>(&bytes) {
            Ok(parsed) => parsed,
            Err(_) if !status.is_success() => {
                let body = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                return Err(HttpError::Status { status: status.as_u16(), body });
            }
            Err(e) => return Err(HttpError::Response(e.to_string())),
        };
        if let Some(first) = parsed.errors.into_iter().next() {
            let extensions = first.extensions.unwrap_or_default();
            return Err(HttpError::Graphql {
                code: extensions.code.unwrap_or_else(|| "GRAPHQL_ERROR".into()),
                message: first.message,
                retry_after: extensions
                    .retry_after
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .map(|d| d.min(MAX_RETRY_AFTER)),
            });
        }
        match parsed.data {
            Some(data) if !data.is_null() => Ok(data),
            _ if !status.is_success() => Err(HttpError::Status { status: status.as_u16(), body: String::new() }),
            _ => Err(HttpError::Response("neither data nor errors".into())),
        }
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<ResponseError>,
}

#[derive(Deserialize)]
struct ResponseError {
    message: String,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Extensions {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    retry_after: Option<f64>,
}

/// Why a subscription could not start, or ended.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("connecting: {0}")]
    Connect(tungstenite::Error),
    #[error("{0}")]
    Transport(tungstenite::Error),
    #[error("closed by the server with {code} ({}): {reason}", close_meaning(*.code))]
    Closed { code: u16, reason: String },
    #[error("the connection ended without a close frame")]
    Dropped,
    #[error("the server ended the subscription with an error: {0}")]
    Rejected(Value),
    #[error("the server completed the subscription")]
    Completed,
    #[error("protocol: {0}")]
    Protocol(String),
}

impl WsError {
    /// A short, low-cardinality name for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            WsError::Connect(tungstenite::Error::Http(response)) => {
                format!("connect http {}", response.status().as_u16())
            }
            WsError::Connect(_) => "connect".into(),
            WsError::Transport(_) => "transport".into(),
            WsError::Closed { code, .. } => format!("close {code}"),
            WsError::Dropped => "dropped".into(),
            WsError::Rejected(_) => "error message".into(),
            WsError::Completed => "completed".into(),
            WsError::Protocol(_) => "protocol".into(),
        }
    }
}

/// What a close code means, in `graphql-transport-ws` or plain websockets.
pub fn close_meaning(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        1001 => "going away",
        1005 => "no status",
        1011 => "server error",
        1013 => "try again later",
        4400 => "bad request",
        4401 => "unauthorized",
        4403 => "forbidden",
        4406 => "subprotocol not acceptable",
        4408 => "connection initialisation timeout",
        4409 => "subscriber already exists",
        4429 => "too many initialisation requests",
        4500 => "internal server error",
        _ => "unknown",
    }
}

/// One websocket carrying one subscription (id `"1"`).
pub struct Subscription {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// The id of the one subscription on a socket.
const ID: &str = "1";

/// A `graphql-transport-ws` message from the server.
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
}

impl Subscription {
    /// Connects, initialises with `token` and subscribes. The protocol does not acknowledge a
    /// subscribe, so the subscription may become live on the server a moment after this returns.
    pub async fn start(
        url: &str,
        token: &str,
        query: &str,
        variables: Value,
        ack_timeout: Duration,
    ) -> Result<Self, WsError> {
        let mut request = url.into_client_request().map_err(WsError::Connect)?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
        // tungstenite allocates its read buffer up front (128 KiB by default): 4 KiB keeps ten
        // thousand sockets within a few tens of megabytes; our frames are small.
        let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(WsError::Connect)?;
        let mut subscription = Subscription { socket };
        let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
        subscription.send(&init).await?;
        let first = tokio::time::timeout(ack_timeout, subscription.receive())
            .await
            .map_err(|_| WsError::Protocol(format!("no connection_ack within {} s", ack_timeout.as_secs_f64())))??;
        if first.kind != "connection_ack" {
            return Err(WsError::Protocol(format!("expected connection_ack, got {}", first.kind)));
        }
        let subscribe = json!({ "id": ID, "type": "subscribe", "payload": { "query": query, "variables": variables } });
        subscription.send(&subscribe).await?;
        Ok(subscription)
    }

    /// The payload of the next `next` message (`{"data": ..., "errors": ...}`), or why there
    /// will be none.
    pub async fn next(&mut self) -> Result<Value, WsError> {
        let message = self.receive().await?;
        match (message.kind.as_str(), message.id.as_deref() == Some(ID)) {
            ("next", true) => Ok(message.payload.unwrap_or(Value::Null)),
            ("error", true) => Err(WsError::Rejected(message.payload.unwrap_or(Value::Null))),
            ("complete", true) => Err(WsError::Completed),
            (kind, _) => Err(WsError::Protocol(format!("unexpected {kind} message with id {:?}", message.id))),
        }
    }

    /// Ends the subscription and closes the socket, ignoring errors: the caller is done with it.
    pub async fn close(mut self) {
        let _ = self.send(&json!({ "id": ID, "type": "complete" })).await;
        let _ = self.socket.close(None).await;
    }

    async fn send(&mut self, message: &Value) -> Result<(), WsError> {
        self.socket.send(Message::text(message.to_string())).await.map_err(WsError::Transport)
    }

    /// The next protocol message, answering the server's pings on the way. (Websocket-level
    /// ping frames are answered by tungstenite itself.)
    async fn receive(&mut self) -> Result<Incoming, WsError> {
        loop {
            let frame = match self.socket.next().await {
                None => return Err(WsError::Dropped),
                Some(frame) => frame.map_err(WsError::Transport)?,
            };
            match frame {
                Message::Text(text) => {
                    let message: Incoming = serde_json::from_str(text.as_str())
                        .map_err(|e| WsError::Protocol(format!("unreadable message: {e}")))?;
                    match message.kind.as_str() {
                        "ping" => self.send(&json!({ "type": "pong" })).await?,
                        "pong" => {}
                        _ => return Ok(message),
                    }
                }
                Message::Close(Some(frame)) => {
                    return Err(WsError::Closed { code: frame.code.into(), reason: frame.reason.to_string() });
                }
                Message::Close(None) => return Err(WsError::Closed { code: 1005, reason: String::new() }),
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}
