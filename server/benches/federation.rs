//! Federation between two real hubs on loopback: how fast hub B catches up on hub A after
//! downtime, and how long an event appended on A takes to be stored on B.
//!
//! `cargo bench -p openguild --bench federation` (PostgreSQL at 127.0.0.1:5432, database
//! `test` reachable for `CREATE DATABASE`; `OPENGUILD_BENCH_POSTGRES_URL` overrides).
//!
//! Hub A runs on PostgreSQL, so this process can append to A's event store beside the
//! running server (A follows every commit through LISTEN/NOTIFY, as it follows its own).
//! Hub B runs on its embedded SQLite. The guild has a member on B, so A's outbox queues its
//! events for B. Events are messages by the guild's owner in one channel, signed with A's key.
//!
//! - **Catch-up**: `CATCH_UP` messages are appended while B is down; B then starts, and the
//!   rate is the events stored on B between the first and the last arrival over that time.
//! - **Latency**: with B caught up, messages are appended at `RATE` per second for
//!   `SECONDS`; each one's latency is from its append's return to its being in B's store
//!   (B's head, read every millisecond).

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::{
    ChannelId, ChannelKind, EventBody, EventId, ServerKey, SignedEvent, StreamId, Timestamp, UnsignedEvent, UserId,
};
use openguild_store::{ExpectedVersion, Options};
use sqlx::Connection;

const CATCH_UP: usize = 20_000;
const RATE: f64 = 20.0;
const SECONDS: f64 = 30.0;

fn now() -> Timestamp {
    Timestamp::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64).unwrap()
}

fn key(server: &str, seed: u8) -> ServerKey {
    ServerKey::from_seed(server.parse().unwrap(), "ed25519:a1".parse().unwrap(), [seed; 32])
}

/// One stream this process appends to: where it stands.
struct Writer {
    stream: StreamId,
    version: u64,
    head: Option<EventId>,
}

impl Writer {
    /// The next event, by `sender`; a sender of another hub than `key`'s needs their hub's
    /// key (`home`) to seal the proposal.
    fn next(
        &mut self,
        key: &ServerKey,
        home: Option<&ServerKey>,
        sender: &UserId,
        auth: Vec<EventId>,
        body: EventBody,
    ) -> SignedEvent {
        let seal = home
            .map(|h| openguild_domain::proposal::seal(h, &self.stream, sender, &body, rand::random(), now()).unwrap());
        let unsigned = UnsignedEvent {
            stream: self.stream.clone(),
            seq: self.version + 1,
            prev: self.head.into_iter().collect(),
            auth,
            sender: sender.clone(),
            ts: now(),
            body,
        };
        let e = openguild_domain::event::sign_proposed(unsigned, seal, key).unwrap();
        self.version += 1;
        self.head = Some(e.event.id);
        e
    }

    fn expected(&self, n: u64) -> ExpectedVersion {
        if self.version == n { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(self.version - n) }
    }
}

fn message(i: usize) -> EventBody {
    EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: format!("message {i}"),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    }
}

fn start(data: &Path, name: &str, port: u16, peer: &str, env: &[(&str, &str)]) -> Child {
    std::fs::create_dir_all(data).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openguild"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", name)
        .env("OPENGUILD_FEDERATION_PEERS", peer)
        .env("OPENGUILD_LOG", "warn")
        .stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How many events B's store holds (read beside the running hub).
async fn head_of(b_store: &Path) -> u64 {
    let options = Options { read_only: true, ..Options::default() };
    match openguild_store::open(&b_store.display().to_string(), options).await {
        Ok(store) => {
            let head = store.head_position().await.unwrap_or(0);
            store.close().await;
            head
        }
        Err(_) => 0,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let admin = std::env::var("OPENGUILD_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = format!("og_bench_{:08x}", rand::random::<u32>());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL is needed for this benchmark");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
    let url = format!("{base}/{db}");

    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_data).unwrap();
    std::fs::create_dir_all(&b_data).unwrap();
    std::fs::write(a_data.join("server.key"), [7u8; 32]).unwrap();
    std::fs::write(b_data.join("server.key"), [8u8; 32]).unwrap();
    let (a_key, b_key) = (key("hub-a.test", 7), key("hub-b.test", 8));

    // The guild on A: its owner, a channel, an invite, and bob of hub B (B co-signs his join).
    let store = openguild_store::open(&url, Options::default()).await.unwrap();
    let owner: UserId = "@owner:hub-a.test".parse().unwrap();
    let bob: UserId = "@bob:hub-b.test".parse().unwrap();
    let (g, created) = guild::create(&owner, a_key.server(), "Bench", [1; 16], now()).unwrap();
    let mut gw = Writer { stream: StreamId::Guild(g), version: 0, head: None };
    let channel = ChannelId::from_bytes([3; 16]);
    let mut state = guild::Guild::default();
    let steps: Vec<(UserId, Option<GuildCommand>)> = vec![
        (owner.clone(), None),
        (
            owner.clone(),
            Some(GuildCommand::CreateChannel {
                channel,
                name: "bench".into(),
                kind: ChannelKind::Text,
                category: None,
                topic: String::new(),
                overwrites: vec![],
            }),
        ),
        (
            owner.clone(),
            Some(GuildCommand::CreateInvite { code: "bench1".parse().unwrap(), max_uses: None, expires_at: None }),
        ),
        (bob.clone(), Some(GuildCommand::Join { invite: "bench1".parse().unwrap() })),
    ];
    for (actor, cmd) in steps {
        let bodies = match cmd {
            None => vec![created.clone()],
            Some(cmd) => guild::decide(&state, &actor, &cmd, now()).unwrap(),
        };
        for body in bodies {
            let home = (actor.server() == *b_key.server()).then_some(&b_key);
            let e = gw.next(&a_key, home, &actor, vec![], body);
            state = guild::evolve(state, &e.event);
            store.append(&gw.stream, gw.expected(1), vec![e]).await.unwrap();
        }
    }
    let auth: Vec<EventId> = gw.head.into_iter().collect();
    let mut cw = Writer { stream: StreamId::Channel(channel), version: 0, head: None };
    let (a_port, b_port) = (free_port(), free_port());
    let a_peer = format!("hub-b.test=http://127.0.0.1:{b_port}");
    let b_peer = format!("hub-a.test=http://127.0.0.1:{a_port}");
    let pg = [("OPENGUILD_STORE_URL", url.as_str()), ("OPENGUILD_READ_DB_URL", url.as_str())];
    let mut a = start(&a_data, "hub-a.test", a_port, &a_peer, &pg);

    // Catch-up: B is down while A takes CATCH_UP messages.
    eprintln!("appending {CATCH_UP} messages on A while B is down…");
    for chunk in (0..CATCH_UP).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<SignedEvent> =
            chunk.iter().map(|i| cw.next(&a_key, None, &owner, auth.clone(), message(*i))).collect();
        let n = batch.len() as u64;
        store.append(&cw.stream, cw.expected(n), batch).await.unwrap();
    }
    let total = store.head_position().await.unwrap();
    let b_store = b_data.join("events.db");
    let mut b = start(&b_data, "hub-b.test", b_port, &b_peer, &[]);
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let head = head_of(&b_store).await;
        if head > 0 && first.is_none() {
            first = Some((Instant::now(), head));
        }
        if head >= total {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "B did not catch up: {head} of {total}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (t0, h0) = first.unwrap();
    let spent = t0.elapsed().as_secs_f64();
    let rate = (total - h0) as f64 / spent;
    println!(
        "catch-up: {} events stored on B in {:.2} s after its first arrival ({:.0} events/s); {:.2} s from B's start",
        total - h0,
        spent,
        rate,
        started.elapsed().as_secs_f64()
    );

    // Latency at RATE events/s.
    let count = (RATE * SECONDS) as usize;
    let mut latencies = Vec::with_capacity(count);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
    let options = Options { read_only: true, ..Options::default() };
    let b_reader = openguild_store::open(&b_store.display().to_string(), options).await.unwrap();
    let mut b_head = b_reader.head_position().await.unwrap();
    eprintln!("appending {count} messages at {RATE}/s…");
    for i in 0..count {
        tick.tick().await;
        let e = cw.next(&a_key, None, &owner, auth.clone(), message(CATCH_UP + i));
        store.append(&cw.stream, cw.expected(1), vec![e]).await.unwrap();
        let appended = Instant::now();
        let want = b_head + 1;
        loop {
            b_head = b_reader.head_position().await.unwrap();
            if b_head >= want {
                break;
            }
            assert!(appended.elapsed() < Duration::from_secs(30), "event {i} never reached B");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(appended.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency append on A -> stored on B, {count} events at {RATE}/s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    b_reader.close().await;
    store.close().await;
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    let _ =
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).execute(&mut conn).await;
}
