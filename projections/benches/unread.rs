//! What unread and mention counts cost on a long backlog, next to what opening a channel
//! already costs. One guild: a channel of 100,000 messages (1 in 50 mentions the three
//! readers, 1 in 500 mentions everyone, 1 in 1,000 redacted) and 19 of 1,000 messages. Three
//! readers: bob never read anything, carol read up to 50 messages from the end of each
//! channel, dave read everything. Measured: `queries::read_states` for each of them on the
//! big channel and on all 20 channels, and, as the baseline, the newest page of 50 messages
//! (`queries::messages`, `Page::Last`, limit 51) that a client reads on opening the channel.
//! The store and the read models are built once per run, in a temporary directory.
//!
//! Run: `cargo bench -p openguild-projections --bench unread`; figures go to
//! docs/PERFORMANCE.md.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use openguild_domain::event::{self, ServerKey, SignedEvent, UnsignedEvent};
use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::{ChannelId, ChannelKind, EventBody, EventId, InviteCode, StreamId, Timestamp, UserId};
use openguild_projections::ReadDb;
use openguild_projections::queries::{self, Page, UNREAD_CAP};
use openguild_store::{EventStore, ExpectedVersion, Options};

/// The allocator the `openguild` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages in the big channel, and in each of the others.
const BACKLOG: u64 = 100_000;
const SMALL: u64 = 1_000;
const CHANNELS: u8 = 20;
const AUTHORS: u32 = 20;
/// carol's marker is this many messages before the end of each channel.
const BEHIND: u64 = 50;

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

fn user(name: &str) -> UserId {
    format!("@{name}:hub.example.org").parse().unwrap()
}

fn author(n: u64) -> UserId {
    user(&format!("member{}", n % u64::from(AUTHORS) + 1))
}

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    db: ReadDb,
    channels: Vec<ChannelId>,
    bob: UserId,
    carol: UserId,
    dave: UserId,
}

/// Appends `events` (a stream's, from seq 1) in batches of 1,000.
async fn append(store: &Arc<dyn EventStore>, stream: &StreamId, events: Vec<SignedEvent>) {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch: Vec<SignedEvent> = events.by_ref().take(1000).collect();
        let first = batch[0].event.core.seq;
        let expected = if first == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(first - 1) };
        store.append(stream, expected, batch).await.unwrap();
    }
}

/// A channel's messages: posts by the authors, every 50th naming the three readers, every
/// 500th (offset by 250) `@everyone`, and the 500th of every 1,000 redacted right after it.
/// Returns the events and the ids of its posts in order.
fn channel_events(
    key: &ServerKey,
    channel: ChannelId,
    posts: u64,
    readers: &[UserId],
) -> (Vec<SignedEvent>, Vec<EventId>) {
    let stream = StreamId::Channel(channel);
    let (mut events, mut ids) = (Vec::new(), Vec::new());
    let mut head = None;
    for n in 1..=posts {
        let mentions: BTreeSet<UserId> = if n % 50 == 0 { readers.iter().cloned().collect() } else { BTreeSet::new() };
        let body = EventBody::MessagePosted {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: format!("message {n} in this channel, with a few words to index for search"),
            reply_to: None,
            mentions,
            mentions_everyone: n % 500 == 250,
        };
        let e = sign(key, &stream, events.len() as u64 + 1, head, &author(n), body, n);
        head = Some(e.event.id);
        ids.push(e.event.id);
        events.push(e);
        if n % 1000 == 500 {
            let body = EventBody::MessageRedacted { message: ids[ids.len() - 1], reason: "cleanup".into() };
            let e = sign(key, &stream, events.len() as u64 + 1, head, &author(n + 1), body, n);
            head = Some(e.event.id);
            events.push(e);
        }
    }
    (events, ids)
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bob, carol, dave) = (user("bob"), user("carol"), user("dave"));
    let readers = [bob.clone(), carol.clone(), dave.clone()];
    let (db, channels) = rt.block_on(async {
        let store = openguild_store::open(&dir.path().join("events.db").display().to_string(), Options::default())
            .await
            .unwrap();
        let key = key();
        let owner = user("owner");
        let invite: InviteCode = "bench1".parse().unwrap();

        // The guild: its channels, and every author and reader a member.
        let (id, created) =
            guild::create(&owner, key.server(), "Guild", [1; 16], Timestamp::from_millis(1).unwrap()).unwrap();
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
        let channels: Vec<ChannelId> =
            (0..CHANNELS).map(|c| ChannelId::from_bytes([1, c, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7])).collect();
        let mut cmds = vec![(
            owner.clone(),
            GuildCommand::CreateInvite { code: invite.clone(), max_uses: None, expires_at: None },
        )];
        for (c, channel) in channels.iter().enumerate() {
            cmds.push((
                owner.clone(),
                GuildCommand::CreateChannel {
                    channel: *channel,
                    name: format!("room-{c}"),
                    kind: ChannelKind::Text,
                    category: None,
                    topic: String::new(),
                    overwrites: vec![],
                },
            ));
        }
        for member in (0..u64::from(AUTHORS)).map(author).chain(readers.iter().cloned()) {
            cmds.push((member, GuildCommand::Join { invite: invite.clone() }));
        }
        for (actor, cmd) in cmds {
            for body in guild::decide(&state, &actor, &cmd, now).unwrap() {
                push(&mut state, &actor, body, &mut events);
            }
        }
        store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();

        // The channels' messages; then carol's and dave's markers (bob never read).
        let (mut carol_reads, mut dave_reads) = (Vec::new(), Vec::new());
        for (c, channel) in channels.iter().enumerate() {
            let posts = if c == 0 { BACKLOG } else { SMALL };
            let (events, ids) = channel_events(&key, *channel, posts, &readers);
            append(&store, &StreamId::Channel(*channel), events).await;
            let behind = ids[ids.len() - 1 - BEHIND as usize];
            carol_reads.push(EventBody::Read { channel: *channel, message: behind });
            dave_reads.push(EventBody::Read { channel: *channel, message: ids[ids.len() - 1] });
        }
        for (reader, reads) in [(&carol, carol_reads), (&dave, dave_reads)] {
            let stream = StreamId::User(reader.clone());
            let mut head = None;
            let events: Vec<SignedEvent> = reads
                .into_iter()
                .enumerate()
                .map(|(i, body)| {
                    let e = sign(&key, &stream, i as u64 + 1, head, reader, body, BACKLOG + i as u64);
                    head = Some(e.event.id);
                    e
                })
                .collect();
            append(&store, &stream, events).await;
        }

        // The read models, caught up with every event.
        let db = ReadDb::open(&dir.path().join("read.db").display().to_string()).await.unwrap();
        openguild_projections::rebuild(&db, store.clone(), &openguild_projections::all("hub.example.org"), |_| {})
            .await
            .unwrap();
        store.close().await;
        (db, channels)
    });
    let f = Fixture { _dir: dir, rt, db, channels, bob, carol, dave };
    // The counts are what the fixture says they are, or the figures measure something else.
    let big = &f.channels[..1];
    let states = |u: &UserId, chs: &[ChannelId]| f.rt.block_on(queries::read_states(&f.db, u, chs)).unwrap();
    let (b, c, d) = (&states(&f.bob, big)[0], &states(&f.carol, big)[0], &states(&f.dave, big)[0]);
    assert_eq!((b.unread, b.mentions), (UNREAD_CAP, UNREAD_CAP));
    assert_eq!((c.unread, c.mentions), (BEHIND as u32, 1));
    assert_eq!((d.unread, d.mentions), (0, 0));
    assert!(states(&f.bob, &f.channels).iter().skip(1).all(|s| s.unread == SMALL as u32 - 1));
    let page = f.rt.block_on(queries::messages(&f.db, f.channels[0], Page::Last { before: None, limit: 51 })).unwrap();
    assert_eq!(page.len(), 51);
    f
}

fn unread(c: &mut Criterion) {
    let f = fixture();
    let big = &f.channels[..1];
    let readers = [
        ("bob, never read (1,000 unread and mentions: capped)", &f.bob),
        ("carol, 50 behind (50 unread, 1 mention)", &f.carol),
        ("dave, fully read", &f.dave),
    ];

    let mut g = c.benchmark_group("100,000-message channel");
    g.bench_function("baseline: newest page, messages(Page::Last, limit 51)", |b| {
        b.iter(|| {
            f.rt.block_on(queries::messages(&f.db, black_box(f.channels[0]), Page::Last { before: None, limit: 51 }))
                .unwrap()
        })
    });
    for (name, reader) in readers {
        g.bench_function(format!("read_states, {name}"), |b| {
            b.iter(|| f.rt.block_on(queries::read_states(&f.db, black_box(reader), big)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("20 channels (1 of 100,000 messages, 19 of 1,000)");
    for (name, reader) in readers {
        let name = name.split(" (").next().unwrap_or(name);
        g.bench_function(format!("read_states, {name}"), |b| {
            b.iter(|| f.rt.block_on(queries::read_states(&f.db, black_box(reader), &f.channels)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, unread);
criterion_main!(benches);
