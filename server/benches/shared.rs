//! A guild shared by three real hubs on loopback: A owns it, carol lives on C, bob on B.
//!
//! `cargo bench -p openguild --bench shared` (three release `openguild serve` on their
//! embedded SQLite; nothing else needed).
//!
//! - **Latency**: carol sends `sendMessage` on C at `RATE` per second for `SECONDS`; C
//!   proposes each to A, A appends it and its sender pushes it to B, where bob's
//!   `channelEvents` subscription (graphql-transport-ws) delivers it. Each message's latency
//!   is from the start of carol's request on C to its delivery to bob on B.
//! - **Throughput**: `SENDERS` users of C, each with one `sendMessage` in flight (closed
//!   loop) for `SECONDS`: messages per second into A's guild from another hub.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;
use support::{Hub, free_port, gql, percentile, ready, register};

const RATE: f64 = 20.0;
const SECONDS: f64 = 30.0;
const SENDERS: usize = 10;

fn start(data: &Path, name: &str, port: u16, peers: &str, seed: u8) -> Hub {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("server.key"), [seed; 32]).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", name)
        .env("OPENGUILD_FEDERATION_PEERS", peers)
        // The benchmark's users send faster than a person, and register from one address;
        // and C's proposals are requests to A, which a peer may make 50 a second by default.
        .env("OPENGUILD_API__LIMITS__MUTATIONS_PER_SECOND", "1000000")
        .env("OPENGUILD_API__LIMITS__MUTATION_BURST", "1000000")
        .env("OPENGUILD_API__LIMITS__REGISTRATIONS_PER_ADDRESS", "1000")
        .env("OPENGUILD_API__LIMITS__FEDERATION_REQUESTS_PER_SECOND", "1000000")
        .env("OPENGUILD_API__LIMITS__FEDERATION_REQUEST_BURST", "1000000")
        .env("OPENGUILD_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Hub { child, url: format!("http://127.0.0.1:{port}") }
}

const POST: &str = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["hub-a.test", "hub-b.test", "hub-c.test"];
    let ports = [free_port(), free_port(), free_port()];
    let peers = |me: usize| {
        (0..3)
            .filter(|&i| i != me)
            .map(|i| format!("{}=http://127.0.0.1:{}", names[i], ports[i]))
            .collect::<Vec<_>>()
            .join(",")
    };
    let hubs: Vec<Hub> =
        (0..3).map(|i| start(&dir.path().join(names[i]), names[i], ports[i], &peers(i), 7 + i as u8)).collect();
    let (a, b, c) = (&hubs[0], &hubs[1], &hubs[2]);
    let client = reqwest::Client::new();
    for h in &hubs {
        ready(&client, h).await;
    }

    let ann = register(&client, a, "ann").await;
    let g = gql(&client, a, Some(&ann), "mutation { createGuild(input: {name: \"Bench\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let ch = gql(
        &client,
        a,
        Some(&ann),
        "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"chat\", kind: TEXT}) { id } }",
        json!({ "g": guild }),
    )
    .await;
    let channel = ch["createChannel"]["id"].as_str().unwrap().to_owned();
    let inv = gql(
        &client,
        a,
        Some(&ann),
        "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }",
        json!({ "g": guild }),
    )
    .await;
    let code = format!("{}@hub-a.test", inv["createInvite"]["code"].as_str().unwrap());
    let join = "mutation($c: String!) { joinGuild(code: $c) { id } }";
    let bob = register(&client, b, "bob").await;
    gql(&client, b, Some(&bob), join, json!({ "c": code })).await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let t = register(&client, c, &format!("carol{i}")).await;
        gql(&client, c, Some(&t), join, json!({ "c": code })).await;
        senders.push(t);
    }

    // bob's subscription on B: each delivered body with its arrival time.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut request = format!("{}/graphql/ws", b.url.replacen("http", "ws", 1)).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {bob}") } }).to_string(),
    ))
    .await
    .unwrap();
    let _ack = ws.next().await;
    let sub = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($c: ID!) { channelEvents(channelId: $c) { kind message { body } } }",
        "variables": { "c": channel } } });
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let seen = arrived.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Ok(text) = msg.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            if let Some(body) = v["payload"]["data"]["channelEvents"]["message"]["body"].as_str() {
                seen.lock().unwrap().insert(body.to_owned(), Instant::now());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Latency: one sender at RATE.
    println!("carol sends on C at {RATE}/s for {SECONDS} s; bob receives on B…");
    let count = (RATE * SECONDS) as usize;
    let mut sent_at = Vec::with_capacity(count);
    let every = Duration::from_secs_f64(1.0 / RATE);
    let begin = Instant::now();
    for i in 0..count {
        let due = begin + every * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let body = format!("latency {i}");
        let t0 = Instant::now();
        gql(&client, c, Some(&senders[0]), POST, json!({ "c": channel, "b": body })).await;
        sent_at.push((body, t0));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lat: Vec<f64> = {
        let got = arrived.lock().unwrap();
        sent_at.iter().filter_map(|(b, t0)| got.get(b).map(|t| t.duration_since(*t0).as_secs_f64() * 1000.0)).collect()
    };
    lat.sort_by(f64::total_cmp);
    println!(
        "latency sendMessage on C -> delivered on B, {} of {count} delivered: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );

    // Throughput: SENDERS closed loops on C.
    println!("{SENDERS} senders on C, one sendMessage in flight each, for {SECONDS} s…");
    let end = Instant::now() + Duration::from_secs_f64(SECONDS);
    let mut tasks = Vec::new();
    for (i, token) in senders.iter().enumerate() {
        let (client, url, token, channel) = (client.clone(), c.url.clone(), token.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end {
                let body = format!("load {i} {n}");
                let r = client
                    .post(format!("{url}/graphql"))
                    .bearer_auth(&token)
                    .json(&json!({ "query": POST, "variables": { "c": channel, "b": body } }))
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.json::<Value>().await.is_ok_and(|v| v["errors"].is_null())
                {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    println!(
        "throughput of remote senders into one guild: {total} messages in {SECONDS} s ({:.0} messages/s)",
        total as f64 / SECONDS
    );
    drop(hubs);
}
