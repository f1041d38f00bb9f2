//! What the server benchmarks share: a hub process killed when dropped, GraphQL calls that
//! fail the run on an error, and percentiles. (Each benchmark uses a part of it.)
#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};

pub struct Hub {
    pub child: Child,
    pub url: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn gql(client: &reqwest::Client, hub: &Hub, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut req = client.post(format!("{}/graphql", hub.url)).json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let v: Value = req.send().await.unwrap().json().await.unwrap();
    assert!(v["errors"].is_null(), "{query}: {v}");
    v["data"].clone()
}

pub async fn ready(client: &reqwest::Client, hub: &Hub) {
    for _ in 0..200 {
        if client.get(format!("{}/healthz", hub.url)).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} did not start", hub.url);
}

pub async fn register(client: &reqwest::Client, hub: &Hub, handle: &str) -> String {
    let query = "mutation($h: String!) { register(handle: $h, password: \"correct horse\") { token } }";
    let d = gql(client, hub, None, query, json!({ "h": handle })).await;
    d["register"]["token"].as_str().unwrap().to_owned()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// User plus system CPU time of a process so far (`/proc/<pid>/stat`, fields 14 and 15).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// `users` people registered on `hub` (`user0`, …), the first's guild with a text channel,
/// and the others in it by invite: their tokens and the channel's id.
pub async fn club(client: &reqwest::Client, hub: &Hub, users: usize) -> (Vec<String>, String) {
    let mut tokens = Vec::new();
    for i in 0..users {
        tokens.push(register(client, hub, &format!("user{i}")).await);
    }
    let owner = Some(tokens[0].as_str());
    let g = gql(client, hub, owner, "mutation { createGuild(input: {name: \"Bench\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let create = "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"chat\", kind: TEXT}) { id } }";
    let ch = gql(client, hub, owner, create, json!({ "g": guild })).await;
    let channel = ch["createChannel"]["id"].as_str().unwrap().to_owned();
    let invite = "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }";
    let inv = gql(client, hub, owner, invite, json!({ "g": guild })).await;
    let code = inv["createInvite"]["code"].as_str().unwrap().to_owned();
    for t in &tokens[1..] {
        gql(client, hub, Some(t), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": code })).await;
    }
    (tokens, channel)
}

/// Runs `send`, a closed loop of `count` messages answering their latencies in ms, and
/// prints under `label` its rate, latency and the CPU the server `pid` and this process
/// spent per message.
pub async fn measure(label: &str, pid: u32, count: usize, send: impl std::future::Future<Output = Vec<f64>>) {
    let (cpu0, own0, t0) = (cpu_time(pid), cpu_time(std::process::id()), std::time::Instant::now());
    let mut took = send.await;
    let (cpu, own, elapsed) = (cpu_time(pid) - cpu0, cpu_time(std::process::id()) - own0, t0.elapsed());
    took.sort_by(f64::total_cmp);
    println!(
        "{label}: {:.0} messages/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         server CPU {:.3} ms per message ({:.2} cores); load client {:.3} ms per message",
        count as f64 / elapsed.as_secs_f64(),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took[took.len() - 1],
        cpu.as_secs_f64() * 1000.0 / count as f64,
        cpu.as_secs_f64() / elapsed.as_secs_f64(),
        own.as_secs_f64() * 1000.0 / count as f64,
    );
}
