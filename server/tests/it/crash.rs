//! SIGKILL the server mid-batch while its projections catch up on a large store; after a
//! restart, every read model equals one rebuilt from zero.

use std::process::{Command, Stdio};
use std::time::Duration;

use openguild_domain::event::{self, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::{ChannelId, ChannelKind, EventBody, StreamId, Timestamp, UserId};
use openguild_projections::{Projections, ReadDb};
use openguild_store::{ExpectedVersion, Options};
use rand::Rng;

/// A guild with one channel and `messages` messages, written through the store.
async fn seed(data: &std::path::Path, messages: u64) -> u64 {
    std::fs::write(data.join("server.key"), [7u8; 32]).unwrap();
    let key = ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:a1".parse().unwrap(), [7; 32]);
    let store = openguild_store::open(&data.join("events.db").display().to_string(), Options::default()).await.unwrap();
    let owner: UserId = "@owner:hub.test".parse().unwrap();
    let now = Timestamp::from_millis(1_795_000_000_000).unwrap();
    let (g, created) = guild::create(&owner, key.server(), "Crash", [1; 16], now).unwrap();
    let mut state = guild::Guild::default();
    let channel = ChannelId::from_bytes([2; 16]);
    let cmd = GuildCommand::CreateChannel {
        channel,
        name: "general".into(),
        kind: ChannelKind::Text,
        category: None,
        topic: String::new(),
        overwrites: vec![],
    };
    for body in [created] {
        let e = sign(&key, StreamId::Guild(g), 1, None, &owner, body, now);
        store.append(&StreamId::Guild(g), ExpectedVersion::NoStream, vec![e.clone()]).await.unwrap();
        state = guild::evolve(state, &e.event);
    }
    let body = guild::decide(&state, &owner, &cmd, now).unwrap().remove(0);
    let e = sign(&key, StreamId::Guild(g), 2, state.head, &owner, body, now);
    store.append(&StreamId::Guild(g), ExpectedVersion::Exact(1), vec![e]).await.unwrap();
    let stream = StreamId::Channel(channel);
    let (mut head, mut seq) = (None, 0u64);
    while seq < messages {
        let mut batch = Vec::new();
        for _ in 0..500.min(messages - seq) {
            seq += 1;
            let body = EventBody::MessagePosted {
                mention_roles: Default::default(),
                attachments: Vec::new(),
                extra: None,
                text: format!("message number {seq}"),
                reply_to: None,
                mentions: Default::default(),
                mentions_everyone: false,
            };
            let e = sign(&key, stream.clone(), seq, head, &owner, body, now.plus_millis(seq));
            head = Some(e.event.id);
            batch.push(e);
        }
        let first = batch[0].event.core.seq;
        let expected = if first == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(first - 1) };
        store.append(&stream, expected, batch).await.unwrap();
    }
    let total = store.head_position().await.unwrap();
    store.close().await;
    total
}

fn sign(
    key: &ServerKey,
    stream: StreamId,
    seq: u64,
    prev: Option<openguild_domain::EventId>,
    sender: &UserId,
    body: EventBody,
    ts: Timestamp,
) -> SignedEvent {
    event::sign(
        UnsignedEvent { stream, seq, prev: prev.into_iter().collect(), auth: vec![], sender: sender.clone(), ts, body },
        key,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_equal_a_rebuild_after_sigkill_mid_batch() {
    let dir = tempfile::tempdir().unwrap();
    let total = seed(dir.path(), 20_000).await;
    let read_db = dir.path().join("read.db").display().to_string();
    for round in 0..3 {
        let mut server = Command::new(env!("CARGO_BIN_EXE_openguild"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("OPENGUILD_DATA_DIR", dir.path())
            .env("OPENGUILD_SERVER_NAME", "hub.test")
            .env("OPENGUILD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        let db = ReadDb::open(&read_db).await.unwrap();
        let positions: Vec<u64> =
            openguild_projections::recorded_status(&db).await.unwrap().iter().map(|r| r.1).collect();
        eprintln!("round {round}: killed after {wait} ms with projections at {positions:?} of {total}");
        db.pool.close().await;
    }
    // Restart (in-process), let every projection catch up, and compare with a rebuild.
    let store =
        openguild_store::open(&dir.path().join("events.db").display().to_string(), Options::default()).await.unwrap();
    let db = ReadDb::open(&read_db).await.unwrap();
    let projections =
        Projections::start(db.clone(), store.clone(), openguild_projections::all("hub.test")).await.unwrap();
    projections.wait_for(&[], total, Duration::from_secs(120)).await.unwrap();
    let recovered = openguild_projections::dump_tables(&db).await.unwrap();
    assert_eq!(recovered["tl_messages"].len() as u64, total - 2, "every message once");
    openguild_projections::rebuild(&db, store.clone(), &openguild_projections::all("hub.test"), |_| {}).await.unwrap();
    let rebuilt = openguild_projections::dump_tables(&db).await.unwrap();
    for (table, rows) in &recovered {
        assert!(rows == &rebuilt[table], "table {table} differs from a rebuild after the crash");
    }
    projections.stop().await;
    store.close().await;
}
