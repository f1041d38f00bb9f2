//! A real `openguild serve` on an ephemeral port, and small GraphQL clients for it: HTTP
//! (reqwest) and graphql-transport-ws (tokio-tungstenite), driven at the protocol level so
//! tests can check close codes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server with `config` (TOML) and extra environment.
    pub fn start(data: &std::path::Path, config: &str, env: &[(&str, &str)]) -> Server {
        Self::start_on(data, config, env, "127.0.0.1:0")
    }

    /// Starts the server listening on `listen`.
    pub fn start_on(data: &std::path::Path, config: &str, env: &[(&str, &str)], listen: &str) -> Server {
        let config_path = data.join(format!("openguild-{}.toml", std::process::id() ^ rand::random::<u32>()));
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openguild"));
        cmd.args(["serve", "--listen", listen])
            .env("OPENGUILD_CONFIG", &config_path)
            .env("OPENGUILD_DATA_DIR", data)
            .env("OPENGUILD_SERVER_NAME", "hub.test")
            .env("OPENGUILD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let url = loop {
            let line =
                lines.next().unwrap_or_else(|| panic!("the server stopped before it was ready: {seen:#?}")).unwrap();
            seen.push(line.clone());
            if let Some(at) = line.find("openguild ready on ") {
                break line[at + "openguild ready on ".len()..].split_whitespace().next().unwrap().to_owned();
            }
        };
        // OPENGUILD_TEST_LOGS=1 shows the server's log after it is ready (debugging a test).
        let show = std::env::var_os("OPENGUILD_TEST_LOGS").is_some();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if show {
                    eprintln!("[{}] {line}", std::process::id());
                }
            }
        });
        Server { child, url }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.url.replacen("http", "ws", 1))
    }

    /// One GraphQL request; the whole response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// `data`, failing the test with the errors if there are any.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let r = self.gql(token, query, variables).await;
        assert!(r.get("errors").is_none(), "{query}\n{r:#}");
        r["data"].clone()
    }

    /// The code of the first error.
    pub async fn refused(&self, token: Option<&str>, query: &str, variables: Value) -> (String, Value) {
        let r = self.gql(token, query, variables).await;
        let err = r["errors"][0].clone();
        assert!(err.is_object(), "expected a refusal: {query}\n{r:#}");
        (err["extensions"]["code"].as_str().unwrap_or_default().to_owned(), err)
    }

    pub async fn register(&self, handle: &str) -> String {
        let d = self
            .ok(
                None,
                "mutation($h: String!) { register(handle: $h, password: \"correct horse\") { token user { id } } }",
                json!({ "h": handle }),
            )
            .await;
        d["register"]["token"].as_str().unwrap().to_owned()
    }
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Ws {
    pub socket: Socket,
}

impl Ws {
    /// Opens the websocket with the graphql-transport-ws subprotocol (and an Origin, if given).
    pub async fn open(url: &str, origin: Option<&str>) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(req).await?;
        assert_eq!(
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws")
        );
        Ok(Ws { socket })
    }

    /// Opens, initialises with `token` and waits for the ack.
    pub async fn connect(url: &str, token: &str) -> Ws {
        let mut ws = Ws::open(url, None).await.unwrap();
        ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })).await;
        let ack = ws.next().await.expect("an ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }

    pub async fn send(&mut self, v: Value) {
        self.socket.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message (pings answered and skipped); `None` once closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("no message within 10 s")?;
            match msg.ok()? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The close code the server ends with (messages before it are skipped).
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(15), self.socket.next())
                .await
                .expect("the server did not close within 15 s");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("websocket error instead of a close: {e}"),
            }
        }
    }

    /// Nothing arrives within `wait`.
    pub async fn quiet(&mut self, wait: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(wait, self.socket.next()).await {
            panic!("expected nothing, got {t}");
        }
    }
}
