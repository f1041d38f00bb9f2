//! `openguild backup` and `openguild restore` on a store of `EVENTS` events: a guild with
//! `CHANNELS` text channels, each channel a stream of signed posts, written straight into
//! the embedded SQLite store as the server would. It times three runs of the release binary:
//! the backup, `restore --check` (reading and verifying only), and a whole restore, which
//! checks, appends and rebuilds the read models.
//!
//! `cargo bench -p openguild --bench backup`. `BACKUP_BENCH_EVENTS` changes the size.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use openguild_domain::event::{self, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::guild::{self, Guild, GuildCommand};
use openguild_domain::{ChannelId, ChannelKind, EventBody, StreamId, Timestamp, UserId};
use openguild_store::{ExpectedVersion, Options};

const EVENTS: usize = 100_000;
const CHANNELS: usize = 20;
const SERVER: &str = "bench.test";

fn sign(
    key: &ServerKey,
    stream: &StreamId,
    seq: u64,
    prev: Option<openguild_domain::EventId>,
    sender: &UserId,
    ts: Timestamp,
    body: EventBody,
) -> SignedEvent {
    let unsigned = UnsignedEvent {
        stream: stream.clone(),
        seq,
        prev: prev.into_iter().collect(),
        auth: vec![],
        sender: sender.clone(),
        ts,
        body,
    };
    event::sign(unsigned, key).unwrap()
}

/// Writes the guild, its channels and `events` posts into the store under `data`.
async fn seed(data: &Path, events: usize) -> u64 {
    let seed = [9u8; 32];
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("server.key"), seed).unwrap();
    let key = ServerKey::from_seed(SERVER.parse().unwrap(), "ed25519:a1".parse().unwrap(), seed);
    let store = openguild_store::open(&data.join("events.db").display().to_string(), Options::default()).await.unwrap();
    let owner: UserId = format!("@owner:{SERVER}").parse().unwrap();
    let mut now = Timestamp::from_millis(1_795_000_000_000).unwrap();
    let (id, created) = guild::create(&owner, key.server(), "Backed up", [5; 16], now).unwrap();
    let stream = StreamId::Guild(id);
    let mut state = Guild::default();
    let mut pending = vec![created];
    let mut channels = Vec::new();
    for n in 0..=CHANNELS {
        for body in pending.drain(..) {
            let e = sign(&key, &stream, state.version + 1, state.head, &owner, now, body);
            let expected =
                if state.version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(state.version) };
            store.append(&stream, expected, vec![e.clone()]).await.unwrap();
            state = guild::evolve(state, &e.event);
            now = now.plus_millis(1);
        }
        if n == CHANNELS {
            break;
        }
        let channel = ChannelId::from_bytes([n as u8 + 1; 16]);
        channels.push(channel);
        let cmd = GuildCommand::CreateChannel {
            channel,
            name: format!("channel-{n}"),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: Vec::new(),
        };
        pending = guild::decide(&state, &owner, &cmd, now).unwrap();
    }
    // Posts, in batches of 500 per channel in turn, as a busy hub's group commits would.
    let mut heads: Vec<(u64, Option<openguild_domain::EventId>)> = vec![(0, None); channels.len()];
    let mut written = 0;
    while written < events {
        for (i, channel) in channels.iter().enumerate() {
            let stream = StreamId::Channel(*channel);
            let (seq, head) = &mut heads[i];
            let expected = if *seq == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(*seq) };
            let mut batch = Vec::new();
            for _ in 0..500.min(events - written) {
                let body = EventBody::MessagePosted {
                    mention_roles: Default::default(),
                    attachments: Vec::new(),
                    extra: None,
                    text: format!("message {written} of an everyday length, about sixty bytes"),
                    reply_to: None,
                    mentions: Default::default(),
                    mentions_everyone: false,
                };
                let e = sign(&key, &stream, *seq + 1, *head, &owner, now, body);
                *seq += 1;
                *head = Some(e.event.id);
                now = now.plus_millis(1);
                batch.push(e);
                written += 1;
            }
            if batch.is_empty() {
                break;
            }
            store.append(&stream, expected, batch).await.unwrap();
        }
    }
    let head = store.head_position().await.unwrap();
    store.close().await;
    head
}

fn openguild(data: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(args)
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", SERVER)
        .env("OPENGUILD_LOG", "warn")
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    seconds
}

#[tokio::main]
async fn main() {
    let events = std::env::var("BACKUP_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(EVENTS);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    println!("writing {events} posts in {CHANNELS} channels…");
    let head = seed(&source, events).await;
    let db_bytes = std::fs::metadata(source.join("events.db")).unwrap().len();
    for run in 1..=3 {
        let file = dir.path().join(format!("hub-{run}.ogbackup"));
        let file_arg = file.display().to_string();
        let backup = openguild(&source, &["backup", "--no-keys", &file_arg]);
        let size = std::fs::metadata(&file).unwrap().len();
        let target = dir.path().join(format!("restored-{run}"));
        let check = openguild(&target, &["restore", "--check", &file_arg]);
        let restore = openguild(&target, &["restore", &file_arg]);
        let rate = |s: f64| head as f64 / s;
        println!(
            "run {run}: {head} events, store {:.1} MB, backup file {:.1} MB; backup {backup:.2} s ({:.0} events/s); \
             check {check:.2} s ({:.0} events/s); restore with rebuild {restore:.2} s ({:.0} events/s)",
            db_bytes as f64 / 1e6,
            size as f64 / 1e6,
            rate(backup),
            rate(check),
            rate(restore),
        );
    }
}
