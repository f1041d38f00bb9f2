//! Two real hubs with a bad network between them (`faults`): slow, dropping, resetting,
//! then cut off entirely for minutes. Hub A keeps writing all along; once the network heals,
//! hub B holds exactly A's events, in order, and they verify.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use openguild_domain::StreamId;
use serde_json::json;

use crate::faults::{Faults, Partition, Plan, Proxy};
use crate::federation::{free_port, openguild, seed_shared_guild, stream_ids};
use crate::support::Server;

/// The sender's longest pause between tries on both hubs (`[federation] retry_max_seconds`).
const RETRY_MAX_SECS: u64 = 5;

/// How long the hubs are cut off: `OPENGUILD_TEST_PARTITION_SECS`, else 120 s ("a few
/// minutes" is what the issue asks a hub to survive).
fn partition_length() -> Duration {
    let secs = std::env::var("OPENGUILD_TEST_PARTITION_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    Duration::from_secs(secs)
}

/// Hub A's guild, and what its owner writes into it over A's GraphQL.
pub(crate) struct Writer<'a> {
    pub a: &'a Server,
    pub token: String,
    pub guild: String,
    pub channels: Vec<String>,
    pub written: usize,
}

impl Writer<'_> {
    /// One write: every eighth a new channel (an event on the guild stream, then a channel
    /// stream that starts at once), else a message in one of the channels, round the room.
    pub(crate) async fn write(&mut self) {
        self.written += 1;
        let n = self.written;
        if self.channels.is_empty() || n.is_multiple_of(8) {
            let c = self
                .a
                .ok(
                    Some(&self.token),
                    "mutation($g: ID!, $n: String!) { createChannel(input: {guildId: $g, name: $n, kind: TEXT}) { id } }",
                    json!({ "g": self.guild, "n": format!("room-{n}") }),
                )
                .await;
            self.channels.push(c["createChannel"]["id"].as_str().unwrap().to_owned());
        } else {
            let channel = &self.channels[n % self.channels.len()];
            self.a
                .ok(
                    Some(&self.token),
                    "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
                    json!({ "c": channel, "b": format!("message {n}") }),
                )
                .await;
        }
    }

    /// Writes one event every `every` for `length`, and calls `between` after each.
    async fn keep_writing(&mut self, length: Duration, every: Duration, mut between: impl FnMut()) {
        let end = Instant::now() + length;
        while Instant::now() < end {
            self.write().await;
            between();
            tokio::time::sleep(every).await;
        }
    }

    /// The guild's streams: its own and each channel's.
    pub(crate) fn streams(&self, guild: &StreamId) -> Vec<StreamId> {
        let channels = self.channels.iter().map(|c| StreamId::Channel(c.parse().unwrap()));
        std::iter::once(guild.clone()).chain(channels).collect()
    }
}

/// The ids of each of `streams` in the store under `data`, stream by stream.
pub(crate) async fn all_ids(data: &std::path::Path, streams: &[StreamId]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for s in streams {
        out.push(stream_ids(data, s).await);
    }
    out
}

/// `openguild federation status` on A, B's line: (events queued, backoff in ms, last error).
fn status_of_b(a_data: &std::path::Path, peers: &str) -> (u64, u64, String) {
    let out =
        openguild(a_data, "hub-a.test", &["federation", "status"], &[("OPENGUILD_FEDERATION__PEERS", peers.into())]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let line =
        said.lines().find(|l| l.starts_with("hub-b.test")).unwrap_or_else(|| panic!("no hub-b.test in:\n{said}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let queued = fields[3].parse().unwrap_or_else(|_| panic!("queued: {line}"));
    let backoff = fields[6].trim_end_matches("ms").parse().unwrap_or_else(|_| panic!("backoff: {line}"));
    (queued, backoff, fields[7..].join(" "))
}

/// Hub A's guild has a member on hub B; every connection between the hubs goes through two
/// fault proxies (A → B and B → A) that the test drives through three phases while A's owner
/// keeps writing (messages, and new channels that start new streams):
/// 1. a bad network: latency, and requests dropped, reset, or passed on with their answer
///    lost, until each of these happened several times;
/// 2. a total partition, black-holing connections for half of it and refusing them for the
///    other half. It lasts 120 s, or `OPENGUILD_TEST_PARTITION_SECS` seconds;
/// 3. healing: the network passes everything again.
///
/// Then B must end with exactly A's events of every stream of the guild: the same ids in
/// the same order, none missing and none twice, and `openguild events verify` passes on B.
/// Meanwhile A's `federation status` shows the events queued for B and a backoff that never
/// exceeds its configured cap (`retry_max_seconds`, 5 s here), which is what lets B catch up
/// soon after the partition ends. Convergence is awaited with a generous deadline; how long
/// it took is printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bad_network_and_a_partition_of_minutes_the_peer_holds_exactly_the_owners_events() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));

    // A's owner registers on A, then A's guild is written beside the account, with B's member.
    std::fs::create_dir_all(&a_data).unwrap();
    std::fs::write(a_data.join("server.key"), [7u8; 32]).unwrap();
    let first = Server::start(&a_data, "", &[("OPENGUILD_SERVER_NAME", "hub-a.test")]);
    let token = first.register("owner").await;
    drop(first);
    let guild = seed_shared_guild(&a_data, 3).await;
    let StreamId::Guild(guild_id) = &guild else { unreachable!() };

    let faults = Faults::new();
    let (a_port, b_port) = (free_port(), free_port());
    let to_b = Proxy::start(([127, 0, 0, 1], b_port).into(), faults.clone()).await;
    let to_a = Proxy::start(([127, 0, 0, 1], a_port).into(), faults.clone()).await;
    let a_peers = format!("[\"hub-b.test=http://{}\"]", to_b.addr);
    let config = |peers: &str| format!("[federation]\npeers = {peers}\nretry_max_seconds = {RETRY_MAX_SECS}\n");
    std::fs::create_dir_all(&b_data).unwrap();
    std::fs::write(b_data.join("server.key"), [8u8; 32]).unwrap();
    let b = Server::start_on(
        &b_data,
        &config(&format!("[\"hub-a.test=http://{}\"]", to_a.addr)),
        &[("OPENGUILD_SERVER_NAME", "hub-b.test")],
        &format!("127.0.0.1:{b_port}"),
    );
    let a = Server::start_on(
        &a_data,
        &config(&a_peers),
        &[("OPENGUILD_SERVER_NAME", "hub-a.test")],
        &format!("127.0.0.1:{a_port}"),
    );
    let mut writer = Writer { a: &a, token, guild: guild_id.to_string(), channels: Vec::new(), written: 0 };

    // A good network first: what A writes reaches B.
    for _ in 0..4 {
        writer.write().await;
    }
    converge(&a_data, &b_data, &writer.streams(&guild), Duration::from_secs(60), "on a good network").await;

    // 1. A bad network, until each fault happened a few times (at least 20 s, at most 3 min).
    let bad = Plan {
        latency: (Duration::from_millis(10), Duration::from_millis(150)),
        drop: 0.15,
        lose_answer: 0.15,
        reset: 0.15,
        partition: None,
    };
    faults.set(bad);
    let phase = Instant::now();
    loop {
        writer.keep_writing(Duration::from_secs(5), Duration::from_millis(250), || {}).await;
        let t = faults.tally();
        if [t.dropped, t.answers_lost, t.reset].iter().all(|&n| n >= 3) && phase.elapsed() >= Duration::from_secs(20) {
            break;
        }
        assert!(phase.elapsed() < Duration::from_secs(180), "the faults did not all happen: {t:?}");
    }
    eprintln!("bad network for {:?}: {:?}; {} writes", phase.elapsed(), faults.tally(), writer.written);

    // 2. A total partition. A keeps writing; its status shows the queue and a capped backoff.
    let length = partition_length();
    let mut highest_backoff = 0;
    let look = |highest: &mut u64| {
        let (queued, backoff, error) = status_of_b(&a_data, &a_peers);
        assert!(backoff <= RETRY_MAX_SECS * 1000, "backoff {backoff} ms passes its cap of {RETRY_MAX_SECS} s");
        *highest = (*highest).max(backoff);
        (queued, error)
    };
    for (kind, half) in [(Partition::BlackHole, length / 2), (Partition::Refuse, length - length / 2)] {
        faults.set(Plan { partition: Some(kind), ..Plan::default() });
        let mut writes = 0;
        writer
            .keep_writing(half, Duration::from_millis(500), || {
                writes += 1;
                if writes % 20 == 0 {
                    look(&mut highest_backoff);
                }
            })
            .await;
    }
    let (queued, error) = look(&mut highest_backoff);
    assert!(queued > 0, "events wait for B during the partition");
    assert!(!error.is_empty(), "the last error is shown");
    assert!(highest_backoff > 0, "the sender backed off");
    let t = faults.tally();
    assert!(t.black_holed > 0 && t.refused > 0, "the partition cut connections: {t:?}");
    eprintln!(
        "partition of {length:?}: {queued} events queued for B, highest backoff seen {highest_backoff} ms, \
         last error: {error}"
    );

    // 3. Healed: a few more writes, then B catches up with everything.
    faults.set(Plan::default());
    let healed = Instant::now();
    for _ in 0..4 {
        writer.write().await;
    }
    let streams = writer.streams(&guild);
    converge(&a_data, &b_data, &streams, Duration::from_secs(300), "after the partition").await;
    eprintln!(
        "B caught up {:?} after healing; {} writes, {} streams; the test took {:?}",
        healed.elapsed(),
        writer.written,
        streams.len(),
        started.elapsed()
    );

    let on_b = all_ids(&b_data, &streams).await;
    for ids in &on_b {
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "an event twice on B");
    }
    // The seeded start (create, invite, join, three renames), then one event per write.
    let events: usize = on_b.iter().map(Vec::len).sum();
    assert_eq!(events, 6 + writer.written, "B holds the guild's start and every write");
    // B holds only copies of A's guild: it sends none of them back, so A refused nothing.
    let metrics = reqwest::get(format!("{}/metrics", a.url)).await.unwrap().text().await.unwrap();
    // Every known reason is shown from the start, at 0.
    let refused: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("openguild_federation_events_refused") && !l.ends_with(" 0"))
        .collect();
    assert!(refused.is_empty(), "hub A refused events from B: {refused:?}");
    let verify = openguild(&b_data, "hub-b.test", &["events", "verify"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.contains("ok:"), "events verify on hub B: {said}");
    drop((a, b, to_a, to_b));
}

/// Waits until B holds exactly A's events of `streams` (same ids, same order), failing after
/// `deadline` with what differs.
pub(crate) async fn converge(
    a_data: &std::path::Path,
    b_data: &std::path::Path,
    streams: &[StreamId],
    deadline: Duration,
    when: &str,
) {
    let end = Instant::now() + deadline;
    loop {
        let (on_a, on_b) = (all_ids(a_data, streams).await, all_ids(b_data, streams).await);
        if on_a == on_b {
            return;
        }
        if Instant::now() >= end {
            let differ: Vec<String> = streams
                .iter()
                .zip(on_a.iter().zip(&on_b))
                .filter(|(_, (a, b))| a != b)
                .map(|(s, (a, b))| {
                    let missing = a.iter().filter(|id| !b.contains(id)).count();
                    let extra = b.iter().filter(|id| !a.contains(id)).count();
                    format!("{s}: A has {}, B has {} ({missing} missing, {extra} not A's)", a.len(), b.len())
                })
                .collect();
            panic!("{when}: after {deadline:?} hub B still differs from A:\n{}", differ.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
