//! Rebuilds every projection from a generated event store and reports events/s and peak
//! memory. `OG_BENCH_EVENTS` sets the size (default 1,000,000); `OG_BENCH_ONE_PASS=1` runs only
//! the one-pass rebuild of all six (what `projections rebuild --all` does), so its peak RSS is
//! its own. The store is generated once and kept under the target directory for later runs.
//!
//! Run: `cargo bench -p openguild-projections --bench rebuild`

use std::sync::Arc;
use std::time::Instant;

use openguild_domain::event::{self, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::{ChannelId, ChannelKind, EventBody, EventId, InviteCode, StreamId, Timestamp, UserId};
use openguild_projections::ReadDb;
use openguild_store::{EventStore, ExpectedVersion, Options};

/// The allocator the `openguild` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GUILDS: u8 = 10;
const CHANNELS: u8 = 10;
const MEMBERS: u32 = 200;

fn key() -> ServerKey {
    ServerKey::from_seed("hub.example.org".parse().unwrap(), "ed25519:a1".parse().unwrap(), [5; 32])
}

fn sign(
    key: &ServerKey,
    stream: &StreamId,
    seq: u64,
    prev: Option<EventId>,
    sender: &UserId,
    body: EventBody,
    ts: u64,
) -> SignedEvent {
    let ts = Timestamp::from_millis(1_790_000_000_000 + ts).unwrap();
    event::sign(
        UnsignedEvent {
            stream: stream.clone(),
            seq,
            prev: prev.into_iter().collect(),
            auth: vec![],
            sender: sender.clone(),
            ts,
            body,
        },
        key,
    )
    .unwrap()
}

fn user(n: u32) -> UserId {
    format!("@member{n}:hub.example.org").parse().unwrap()
}

/// Guilds with channels and members, then messages (with reactions, edits and redactions)
/// spread over every channel, signed on two threads.
async fn generate(store: Arc<dyn EventStore>, total: u64) {
    let key = key();
    let owner = user(0);
    let invite: InviteCode = "bench1".parse().unwrap();
    let mut channels = Vec::new();
    let mut written = 0u64;
    for g in 0..GUILDS {
        let (id, created) =
            guild::create(&owner, key.server(), &format!("Guild {g}"), [g; 16], Timestamp::from_millis(1).unwrap())
                .unwrap();
        let stream = StreamId::Guild(id);
        let mut state = guild::Guild::default();
        let mut events = Vec::new();
        let push = |state: &mut guild::Guild, actor: &UserId, body: EventBody, events: &mut Vec<SignedEvent>| {
            let e = sign(&key, &stream, state.version + 1, state.head, actor, body, state.version);
            *state = guild::evolve(std::mem::take(state), &e.event);
            events.push(e);
        };
        push(&mut state, &owner, created, &mut events);
        let now = Timestamp::from_millis(2).unwrap();
        let mut cmds = vec![(
            owner.clone(),
            GuildCommand::CreateInvite { code: invite.clone(), max_uses: None, expires_at: None },
        )];
        for c in 0..CHANNELS {
            let channel = ChannelId::from_bytes([g, c, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
            channels.push(channel);
            cmds.push((
                owner.clone(),
                GuildCommand::CreateChannel {
                    channel,
                    name: format!("room-{c}"),
                    kind: ChannelKind::Text,
                    category: None,
                    topic: String::new(),
                    overwrites: vec![],
                },
            ));
        }
        for m in 1..=MEMBERS {
            cmds.push((user(m), GuildCommand::Join { invite: invite.clone() }));
        }
        for (actor, cmd) in cmds {
            for body in guild::decide(&state, &actor, &cmd, now).unwrap() {
                push(&mut state, &actor, body, &mut events);
            }
        }
        written += events.len() as u64;
        store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();
    }
    let per_channel = (total.saturating_sub(written)) / channels.len() as u64;
    let halves: Vec<Vec<ChannelId>> =
        vec![channels.iter().step_by(2).copied().collect(), channels.iter().skip(1).step_by(2).copied().collect()];
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(StreamId, u64, Vec<SignedEvent>)>(8);
    for half in halves {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let key = crate::key();
            for channel in half {
                let stream = StreamId::Channel(channel);
                let (mut seq, mut head, mut last_msg) = (0u64, None, None);
                let mut batch = Vec::new();
                while seq < per_channel {
                    let n = seq + 1;
                    let author = user((n % u64::from(MEMBERS)) as u32 + 1);
                    let body = match (n % 100, last_msg) {
                        (0..=84, _) | (_, None) => EventBody::MessagePosted {
                            mention_roles: Default::default(),
                            attachments: Vec::new(),
                            extra: None,
                            text: format!("message {n} in this channel, with a few words to index for search"),
                            reply_to: None,
                            mentions: Default::default(),
                            mentions_everyone: false,
                        },
                        (85..=94, Some(m)) => EventBody::ReactionAdded {
                            message: m,
                            emoji: ["👍", "🎉", "❤️"][(n % 3) as usize].into(),
                        },
                        (95..=97, Some(m)) => EventBody::MessageEdited { message: m, text: format!("edited {n}") },
                        (_, Some(m)) => EventBody::MessageRedacted { message: m, reason: "cleanup".into() },
                    };
                    let is_post = matches!(body, EventBody::MessagePosted { .. });
                    let redacts = matches!(body, EventBody::MessageRedacted { .. });
                    let e = sign(&key, &stream, n, head, &author, body, n);
                    if is_post {
                        last_msg = Some(e.event.id);
                    }
                    if redacts {
                        last_msg = None;
                    }
                    head = Some(e.event.id);
                    seq = n;
                    batch.push(e);
                    if batch.len() == 1000 {
                        let first = batch[0].event.core.seq;
                        if tx.blocking_send((stream.clone(), first, std::mem::take(&mut batch))).is_err() {
                            return;
                        }
                    }
                }
                if !batch.is_empty() {
                    let first = batch[0].event.core.seq;
                    let _ = tx.blocking_send((stream.clone(), first, batch));
                }
            }
        });
    }
    drop(tx);
    let started = Instant::now();
    while let Some((stream, first, batch)) = rx.recv().await {
        let expected = if first == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(first - 1) };
        written += batch.len() as u64;
        store.append(&stream, expected, batch).await.unwrap();
        if written % 100_000 < 1000 {
            eprintln!("generated {written} events ({:.0}/s)", written as f64 / started.elapsed().as_secs_f64());
        }
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let total: u64 = std::env::var("OG_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let base = std::env::var("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| "target".into());
        let dir = base.join(format!("og-bench-rebuild-{total}"));
        std::fs::create_dir_all(&dir).unwrap();
        let events_db = dir.join("events.db");
        let fresh = !events_db.exists();
        let store = openguild_store::open(&events_db.display().to_string(), Options::default()).await.unwrap();
        if fresh || store.head_position().await.unwrap() < total / 2 {
            eprintln!("generating {total} events into {}", events_db.display());
            generate(store.clone(), total).await;
        }
        let head = store.head_position().await.unwrap();
        let read_db = dir.join("read.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", read_db.display()));
        }
        let db = ReadDb::open(&read_db.display().to_string()).await.unwrap();
        let rss_before = peak_rss_mb();
        let one_pass_only = std::env::var("OG_BENCH_ONE_PASS").is_ok_and(|v| v == "1");
        let all_started = Instant::now();
        for p in openguild_projections::all("hub.example.org").into_iter().filter(|_| !one_pass_only) {
            let started = Instant::now();
            let position = openguild_projections::rebuild(&db, store.clone(), std::slice::from_ref(&p), |_| {}).await.unwrap();
            let secs = started.elapsed().as_secs_f64();
            println!("rebuild {:<18} {position} events in {secs:>6.1} s: {:>8.0} events/s", p.name(), head as f64 / secs);
        }
        let secs = all_started.elapsed().as_secs_f64();
        if !one_pass_only {
            println!("rebuild all, one after another: {head} events in {secs:.1} s = {:.0} events/s", head as f64 / secs);
        }
        let together = Instant::now();
        openguild_projections::rebuild(&db, store.clone(), &openguild_projections::all("hub.example.org"), |_| {})
            .await
            .unwrap();
        let secs = together.elapsed().as_secs_f64();
        println!(
            "rebuild all in one pass (what `projections rebuild --all` does): {head} events in {secs:.1} s = {:.0} events/s; peak RSS {:.0} MB (before rebuilding: {rss_before:.0} MB)",
            head as f64 / secs,
            peak_rss_mb()
        );
        store.close().await;
    });
}
