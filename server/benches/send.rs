//! The send path under a Matrix-style load: `USERS` users of one guild, each with one
//! `sendMessage` in flight (a closed loop over HTTP/1.1 keep-alive), `MESSAGES` messages in
//! all, against one release `openguild serve` on its embedded SQLite on this machine.
//!
//! `cargo bench -p openguild --bench send`. Reports messages per second, send latency
//! (request to answer) p50/p99, and the server's CPU per message, read from
//! `/proc/<pid>/stat` before and after the measured run. `SEND_BENCH_MESSAGES`
//! changes the count (a longer run to profile: `perf record -g -p <pid>` with the pid the
//! benchmark prints).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::json;

mod support;
use support::{Hub, club, free_port, gql, measure, ready};

const USERS: usize = 20;
const MESSAGES: usize = 4_000;
const WARM_UP: usize = 400;

fn start(data: &Path) -> Hub {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OPENGUILD_DATA_DIR", data)
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

const POST: &str = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";

/// `count` messages sent by `tokens`, each with one request in flight: the latencies.
async fn closed_loop(client: &reqwest::Client, hub: &Hub, tokens: &[String], channel: &str, count: usize) -> Vec<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let sends = tokens.iter().map(|token| {
        let next = next.clone();
        async move {
            let mut took = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                gql(
                    client,
                    hub,
                    Some(token),
                    POST,
                    json!({ "c": channel, "b": "a message of everyday length, about sixty bytes" }),
                )
                .await;
                took.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            took
        }
    });
    futures::future::join_all(sends).await.into_iter().flatten().collect()
}

#[tokio::main]
async fn main() {
    let messages = std::env::var("SEND_BENCH_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(MESSAGES);
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path());
    let client = reqwest::Client::builder().pool_max_idle_per_host(USERS).build().unwrap();
    ready(&client, &hub).await;

    let (tokens, channel) = club(&client, &hub, USERS).await;

    let pid = hub.child.id();
    println!("server pid {pid}; warming up with {WARM_UP} messages…");
    closed_loop(&client, &hub, &tokens, &channel, WARM_UP).await;

    println!("{USERS} users × 1 sendMessage in flight, {messages} messages…");
    measure("send path", pid, messages, closed_loop(&client, &hub, &tokens, &channel, messages)).await;
}
