//! Throughput of the event store adapters: signed appends per second with 1 and 16
//! concurrent writers (signing included, as in the server), and `read_all` events per
//! second. Run with `cargo bench -p openguild-store --bench throughput`; figures go to
//! docs/PERFORMANCE.md. PostgreSQL runs when OPENGUILD_TEST_POSTGRES_URL's server is up
//! (default: the machine's `test` database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openguild_domain::event::{self, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::{ChannelId, EventBody, EventId, StreamId, Timestamp};
use openguild_store::{EventStore, ExpectedVersion, Options};
use sqlx::Connection;

const RUN: Duration = Duration::from_secs(4);

fn key() -> ServerKey {
    ServerKey::from_seed("hub.example.org".parse().unwrap(), "ed25519:a1".parse().unwrap(), [9; 32])
}

fn sign(key: &ServerKey, stream: &StreamId, seq: u64, prev: Option<EventId>) -> SignedEvent {
    let body = EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: format!("benchmark message number {seq}, about as long as a short chat line"),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    };
    let unsigned = UnsignedEvent {
        stream: stream.clone(),
        seq,
        prev: prev.into_iter().collect(),
        auth: vec![],
        sender: "@bench:hub.example.org".parse().unwrap(),
        ts: Timestamp::from_millis(1_790_000_000_000 + seq).unwrap(),
        body,
    };
    event::sign(unsigned, key).unwrap()
}

/// `writers` tasks, each on its own stream, each signing `per_append` events and appending
/// them, for RUN, with up to `in_flight` appends awaiting their ack (1: sign, append, wait;
/// 2: sign the next batch while the last one commits). Returns events/s.
async fn appends(store: Arc<dyn EventStore>, writers: u8, per_append: usize, in_flight: usize, tag: u8) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = key();
                let mut id = [w; 16];
                id[0] = tag;
                let stream = StreamId::Channel(ChannelId::from_bytes(id));
                let (mut seq, mut head) = (0u64, None);
                let mut written = 0u64;
                let mut pending = std::collections::VecDeque::new();
                while start.elapsed() < RUN {
                    let mut batch = Vec::with_capacity(per_append);
                    for _ in 0..per_append {
                        let e = sign(&key, &stream, seq + 1, head);
                        seq += 1;
                        head = Some(e.event.id);
                        batch.push(e);
                    }
                    let expected = ExpectedVersion::Exact(seq - per_append as u64);
                    // Queued in order: the next append is checked against this one.
                    pending.push_back(store.queue(&stream, expected, batch).await.unwrap());
                    if pending.len() >= in_flight {
                        pending.pop_front().unwrap().committed().await.unwrap();
                        written += per_append as u64;
                    }
                }
                for p in pending {
                    p.committed().await.unwrap();
                    written += per_append as u64;
                }
                written
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn read_all(store: Arc<dyn EventStore>) -> (u64, f64) {
    let start = Instant::now();
    let (mut after, mut n) = (0, 0u64);
    loop {
        let page = store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        n += page.len() as u64;
    }
    (n, n as f64 / start.elapsed().as_secs_f64())
}

async fn run(name: &str, store: Arc<dyn EventStore>) {
    let mut tag = 0;
    for (writers, per_append, in_flight) in [(1u8, 1usize, 1usize), (16, 1, 1), (16, 16, 1), (16, 16, 2), (16, 1, 4)] {
        tag += 1;
        let rate = appends(store.clone(), writers, per_append, in_flight, tag).await;
        println!(
            "{name:<10} {writers:>2} writers x {per_append:>2} events/append, {in_flight} in flight: {rate:>9.0} signed appends/s"
        );
    }
    let (n, rate) = read_all(store.clone()).await;
    println!("{name:<10} read_all of {n} events: {rate:>9.0} events/s");
    store.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.db").display().to_string();
        run("sqlite", openguild_store::open(&path, Options::default()).await.unwrap()).await;

        let admin = std::env::var("OPENGUILD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        match sqlx::PgConnection::connect(&admin).await {
            Ok(mut conn) => {
                let db = "og_store_bench";
                let _ = sqlx::query("DROP DATABASE IF EXISTS og_store_bench WITH (FORCE)").execute(&mut conn).await;
                sqlx::query("CREATE DATABASE og_store_bench").execute(&mut conn).await.unwrap();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                let store = openguild_store::open(&format!("{base}/{db}"), Options::default()).await.unwrap();
                run("postgres", store).await;
                let _ = sqlx::query("DROP DATABASE IF EXISTS og_store_bench WITH (FORCE)").execute(&mut conn).await;
            }
            Err(e) => println!("postgres   skipped: cannot reach {admin}: {e}"),
        }
    });
}
