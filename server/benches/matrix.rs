//! Matrix clients under load, against one release `openguild serve` on its embedded SQLite on
//! this machine, the figures to set beside the GraphQL ones (`send` and `openguild loadtest`).
//!
//! 1. Send throughput: `USERS` users of one guild, each with one Matrix `send` in flight
//!    (`PUT /rooms/{room}/send/m.room.message/{txn}`, a closed loop over HTTP/1.1 keep-alive),
//!    `MESSAGES` messages: messages per second, send latency p50/p99, server CPU per message.
//! 2. `/sync` delivery: one listener long-polls `/sync` (timeout 30 s, `since` the last batch)
//!    while `WRITERS` users send `RATE` messages per second in all for `SECONDS` seconds. Each
//!    body carries its send time; latency is from the send to the sync answer that carries it,
//!    on this process's clock. Every message must arrive once.
//!
//! `cargo bench -p openguild --bench matrix`. `MATRIX_BENCH_RATE` and `MATRIX_BENCH_SECONDS`
//! change the second part.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

mod support;
use support::{Hub, club, free_port, measure, percentile, ready};

const USERS: usize = 20;
const MESSAGES: usize = 4_000;
const WARM_UP: usize = 400;
const WRITERS: usize = 5;
const RATE: f64 = 50.0;
const SECONDS: f64 = 30.0;
const SERVER: &str = "bench.test";

fn start(data: &Path) -> Hub {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", SERVER)
        // Twenty people sending as fast as the server answers, registered from one address.
        .env("OPENGUILD_API__LIMITS__MUTATIONS_PER_SECOND", "1000000")
        .env("OPENGUILD_API__LIMITS__MUTATION_BURST", "1000000")
        .env("OPENGUILD_API__LIMITS__REGISTRATIONS_PER_ADDRESS", "1000")
        .env("OPENGUILD_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Hub { child, url: format!("http://127.0.0.1:{port}") }
}

/// One Matrix call that must succeed: its JSON answer.
async fn matrix(req: reqwest::RequestBuilder) -> Value {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Sends `body` to `room` as `token` with transaction id `txn`.
async fn send(client: &reqwest::Client, hub: &Hub, token: &str, room: &str, txn: &str, body: &str) {
    let url = format!("{}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", hub.url);
    let req = client.put(url).bearer_auth(token).json(&json!({ "msgtype": "m.text", "body": body }));
    matrix(req).await;
}

/// `count` messages sent by `tokens`, each with one request in flight: the latencies.
async fn closed_loop(client: &reqwest::Client, hub: &Hub, tokens: &[String], room: &str, count: usize) -> Vec<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let run = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let sends = tokens.iter().map(|token| {
        let next = next.clone();
        async move {
            let mut took = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break took;
                }
                let t0 = Instant::now();
                let txn = format!("{run}-{n}");
                send(client, hub, token, room, &txn, "a message of everyday length, about sixty bytes").await;
                took.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
    });
    futures::future::join_all(sends).await.into_iter().flatten().collect()
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// The listener: long-polls `/sync` from `since` until it has `expected` bodies of this run
/// (or `deadline`), recording each one's latency. Latencies in ms, and duplicates seen.
async fn listen(
    client: reqwest::Client,
    url: String,
    token: String,
    mut since: String,
    expected: usize,
    deadline: Instant,
) -> (Vec<f64>, usize) {
    let mut seen = HashSet::new();
    let mut latencies = Vec::new();
    let mut duplicates = 0;
    while seen.len() < expected && Instant::now() < deadline {
        let req = client
            .get(format!("{url}/_matrix/client/v3/sync"))
            .query(&[("since", since.as_str()), ("timeout", "30000")])
            .bearer_auth(&token);
        let answer = matrix(req).await;
        let received = unix_micros();
        since = answer["next_batch"].as_str().unwrap().to_owned();
        let rooms = answer["rooms"]["join"].as_object().cloned().unwrap_or_default();
        for room in rooms.values() {
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                let Some(body) = event["content"]["body"].as_str() else { continue };
                let Some((sent, tag)) = body.strip_prefix("sync-bench ").and_then(|b| b.split_once(' ')) else {
                    continue;
                };
                let sent: u64 = sent.parse().unwrap();
                if seen.insert(tag.to_owned()) {
                    latencies.push(received.saturating_sub(sent) as f64 / 1000.0);
                } else {
                    duplicates += 1;
                }
            }
        }
    }
    (latencies, duplicates)
}

#[tokio::main]
async fn main() {
    let rate: f64 = std::env::var("MATRIX_BENCH_RATE").ok().and_then(|n| n.parse().ok()).unwrap_or(RATE);
    let seconds: f64 = std::env::var("MATRIX_BENCH_SECONDS").ok().and_then(|n| n.parse().ok()).unwrap_or(SECONDS);
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path());
    let client = reqwest::Client::builder().pool_max_idle_per_host(USERS + 1).build().unwrap();
    ready(&client, &hub).await;

    // The guild and its members, set up over GraphQL; a GraphQL session token is a Matrix
    // access token too.
    let (tokens, channel) = club(&client, &hub, USERS + 1).await;
    let room = format!("!{channel}:{SERVER}");
    let (listener, senders) = (tokens[USERS].clone(), &tokens[..USERS]);

    // 1. Send throughput.
    let pid = hub.child.id();
    println!("server pid {pid}; warming up with {WARM_UP} Matrix sends…");
    closed_loop(&client, &hub, senders, &room, WARM_UP).await;
    println!("{USERS} users × 1 Matrix send in flight, {MESSAGES} messages…");
    measure("matrix send", pid, MESSAGES, closed_loop(&client, &hub, senders, &room, MESSAGES)).await;

    // 2. /sync delivery at a fixed rate.
    let first = matrix(
        client
            .get(format!("{}/_matrix/client/v3/sync", hub.url))
            .query(&[("filter", r#"{"room":{"timeline":{"limit":1}}}"#)])
            .bearer_auth(&listener),
    )
    .await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let total = (rate * seconds).round() as usize;
    println!("one listener long-polling /sync; {WRITERS} writers sending {rate} messages/s for {seconds} s…");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 30.0);
    let listening = tokio::spawn(listen(client.clone(), hub.url.clone(), listener, since, total, deadline));
    let period = Duration::from_secs_f64(WRITERS as f64 / rate);
    let start = tokio::time::Instant::now();
    let writers = (0..WRITERS).map(|w| {
        let (client, hub, room, token) = (&client, &hub, &room, &senders[w]);
        async move {
            // Writers start spread over one period, so the messages arrive evenly.
            let mut tick = tokio::time::interval_at(start + period.mul_f64(w as f64 / WRITERS as f64), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = w;
            while n < total {
                tick.tick().await;
                let body = format!("sync-bench {} {n}", unix_micros());
                send(client, hub, token, room, &format!("sync-{n}"), &body).await;
                n += WRITERS;
            }
        }
    });
    futures::future::join_all(writers).await;
    let sending = start.elapsed();
    let (mut latencies, duplicates) = listening.await.unwrap();
    latencies.sort_by(f64::total_cmp);
    let lost = total - latencies.len();
    println!(
        "matrix /sync: {total} messages in {:.1} s ({:.1}/s); delivery p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; lost {lost}, duplicated {duplicates}",
        sending.as_secs_f64(),
        total as f64 / sending.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    assert_eq!((lost, duplicates), (0, 0), "every message reaches the listener once");
}
