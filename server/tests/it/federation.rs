//! Federation against a real hub: the keys it publishes, and its inbox facing a peer under
//! the test's control (its own keys served over HTTP, crafted requests and events). The
//! sender comes next: docs/PROTOCOL.md says what is built.

use openguild_domain::KeyRing;
use openguild_federation::keys::KeyDocument;
use openguild_store::Options;
use serde_json::json;

use crate::support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_publishes_its_keys_self_signed_and_every_event_it_signed_verifies_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, "", &[]);
    let ann = server.register("ann").await;
    server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Keys\"}) { id } }", json!({})).await;

    // Public: no authentication, the document carries its own signature.
    let response = reqwest::get(format!("{}/_openguild/federation/v1/keys", server.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: KeyDocument = response.json().await.unwrap();
    let keys = doc.verify(&"hub.test".parse().unwrap()).expect("the document is signed by its own key");
    assert_eq!(keys.len(), 1, "one current key, no old ones yet");
    let mut tampered = doc.clone();
    tampered.valid_until_ts += 1;
    assert!(tampered.verify(&"hub.test".parse().unwrap()).is_err(), "a changed document no longer verifies");
    assert!(doc.verify(&"other.test".parse().unwrap()).is_err(), "a document is only its own hub's");

    // A peer that holds only the published keys checks every event the hub signed.
    let mut ring = KeyRing::default();
    for (key_id, key) in keys {
        ring.insert(doc.server.clone(), key_id, key);
    }
    let options = Options { read_only: true, ..Options::default() };
    let store = openguild_store::open(&data.join("events.db").display().to_string(), options).await.unwrap();
    let events = store.read_all(0, 1_000).await.unwrap();
    assert!(events.len() >= 3, "registration, session and guild events were written");
    for e in &events {
        openguild_domain::event::verify(&e.raw, &ring).unwrap_or_else(|err| panic!("{}: {err}", e.event.id));
    }
    store.close().await;
}

/// A peer hub under the test's control: its own key, its key document served over real HTTP,
/// and requests it crafts.
pub(crate) struct TestPeer {
    pub(crate) key: openguild_domain::ServerKey,
    pub(crate) url: String,
}

impl TestPeer {
    /// `name`'s peer with key `seed`, serving its key document on an ephemeral port.
    pub(crate) fn start(name: &str, seed: u8) -> TestPeer {
        use std::io::{Read, Write};
        let key =
            openguild_domain::ServerKey::from_seed(name.parse().unwrap(), "ed25519:p1".parse().unwrap(), [seed; 32]);
        let now = openguild_domain::Timestamp::from_millis(now_ms()).unwrap();
        let doc = KeyDocument::publish(&key, openguild_domain::Timestamp::default(), Default::default(), now).unwrap();
        let body = serde_json::to_string(&doc).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        TestPeer { key, url }
    }

    /// Signs an event of `stream` at `seq` after `prev`, sent by `@p` of this peer.
    fn event(
        &self,
        stream: openguild_domain::StreamId,
        seq: u64,
        prev: Option<openguild_domain::EventId>,
        body: openguild_domain::EventBody,
    ) -> openguild_domain::SignedEvent {
        let sender: openguild_domain::UserId = format!("@p:{}", self.key.server()).parse().unwrap();
        let unsigned = openguild_domain::UnsignedEvent {
            stream,
            seq,
            prev: prev.into_iter().collect(),
            auth: vec![],
            sender,
            ts: openguild_domain::Timestamp::from_millis(now_ms()).unwrap(),
            body,
        };
        openguild_domain::event::sign(unsigned, &self.key).unwrap()
    }

    /// A guild created by this peer's `@p`: the create event and the guild's stream.
    fn guild(&self, nonce: u8) -> (openguild_domain::SignedEvent, openguild_domain::StreamId) {
        let sender: openguild_domain::UserId = format!("@p:{}", self.key.server()).parse().unwrap();
        let at = openguild_domain::Timestamp::from_millis(now_ms()).unwrap();
        let (g, body) = openguild_domain::guild::create(&sender, self.key.server(), "Remote", [nonce; 16], at).unwrap();
        let stream = openguild_domain::StreamId::Guild(g);
        (self.event(stream.clone(), 1, None, body), stream)
    }

    /// PUTs a transaction of `events` (already as JSON) to `hub`, signed for `destination`
    /// at `created_ms`: the status and the answer.
    pub(crate) async fn send(
        &self,
        hub: &Server,
        destination: &str,
        txn: &str,
        events: Vec<serde_json::Value>,
        created_ms: u64,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        self.put(hub, destination, txn, body, created_ms).await
    }

    async fn put(
        &self,
        hub: &Server,
        destination: &str,
        txn: &str,
        body: Vec<u8>,
        created_ms: u64,
    ) -> (u16, serde_json::Value) {
        let target = format!("/_openguild/federation/v1/send/{txn}");
        let request = openguild_federation::request::Request { method: "PUT", target: &target, body: &body };
        let header = openguild_federation::request::authorization(
            &self.key,
            &destination.parse().unwrap(),
            &request,
            openguild_domain::Timestamp::from_millis(created_ms).unwrap(),
        );
        let response = reqwest::Client::new()
            .put(format!("{}{target}", hub.url))
            .header("authorization", header)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Runs `openguild ARGS` on the hub `server` whose data lives in `data`, with `env` more.
pub(crate) fn openguild(
    data: &std::path::Path,
    server: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_openguild"));
    cmd.args(args).env("OPENGUILD_DATA_DIR", data).env("OPENGUILD_SERVER_NAME", server).env("OPENGUILD_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn wire(e: &openguild_domain::SignedEvent) -> serde_json::Value {
    serde_json::to_value(openguild_api::federation::WireEvent::of(&e.raw)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_refuses_each_bad_request_and_event_with_its_reason_and_keeps_the_good_ones() {
    let peer = TestPeer::start("peer.test", 11);
    let stranger = TestPeer::start("stranger.test", 12);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&dir.path().join("data"), &config, &[]);

    // The request: each refusal in the protocol's order, answered before the body is read.
    let (create, stream) = peer.guild(1);
    let good = vec![wire(&create)];
    assert_eq!(stranger.send(&hub, "hub.test", "s1", good.clone(), now_ms()).await.0, 403, "not a peer");
    assert_eq!(peer.send(&hub, "other.test", "t0", good.clone(), now_ms()).await.0, 401, "another destination");
    assert_eq!(peer.send(&hub, "hub.test", "t0", good.clone(), now_ms() - 6 * 60_000).await.0, 401, "stale");
    let body = serde_json::to_vec(&json!({ "events": good })).unwrap();
    let mut forged = TestPeer::start("peer.test", 99);
    forged.url = peer.url.clone();
    assert_eq!(forged.put(&hub, "hub.test", "t0", body.clone(), now_ms()).await.0, 401, "signed by another key");
    let fifty_one: Vec<_> = (0..51).map(|_| good[0].clone()).collect();
    let (status, answer) = peer.send(&hub, "hub.test", "t-big", fifty_one, now_ms()).await;
    assert_eq!(status, 400, "{answer}");

    // A good transaction is stored, and the same transaction id is answered again as before.
    let (status, answer) = peer.send(&hub, "hub.test", "t1", good.clone(), now_ms()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"][create.event.id.to_string()]["accepted"], true, "{answer}");
    let (status, again) = peer.send(&hub, "hub.test", "t1", vec![], now_ms()).await;
    assert_eq!((status, &again), (200, &answer), "a retried transaction gets the same answer");

    // Per event: each bad one refused with its reason, the good one in the same transaction kept.
    let renamed = peer.event(
        stream.clone(),
        2,
        Some(create.event.id),
        openguild_domain::EventBody::GuildUpdated { name: Some("Renamed".into()), description: None },
    );
    let mut flipped = wire(&peer.event(
        stream.clone(),
        3,
        Some(renamed.event.id),
        openguild_domain::EventBody::GuildUpdated { name: Some("Flipped".into()), description: None },
    ));
    let core = flipped["core"].as_str().unwrap().to_owned();
    let mut bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD_NO_PAD, &core).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    flipped["core"] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, &bytes));
    let (other_create, _) = stranger.guild(2);
    // A second create, in an existing guild's stream.
    let (another, _) = peer.guild(3);
    let second = peer.event(stream.clone(), 2, Some(create.event.id), another.event.core.redacted.clone());
    let (status, answer) = peer
        .send(&hub, "hub.test", "t2", vec![wire(&renamed), flipped, wire(&other_create), wire(&second)], now_ms())
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["events"].as_object().unwrap();
    assert_eq!(results[&renamed.event.id.to_string()]["accepted"], true, "{answer}");
    let refused: Vec<String> = results.values().filter_map(|r| r["refused"].as_str().map(str::to_owned)).collect();
    assert_eq!(refused.len(), 3, "{answer}");
    assert!(refused.iter().any(|r| r.contains("not by the hub that sent it")), "wrong hub: {refused:?}");
    assert!(refused.iter().any(|r| r.contains("malformed") || r.contains("hash")), "flipped byte: {refused:?}");
    assert!(refused.iter().any(|r| r.contains("guild create") || r.contains("seq")), "second create: {refused:?}");

    // An event the peer signed for a user of this hub, without this hub's signature: the
    // peer cannot put words in another hub's users' mouths.
    let forged_words = openguild_domain::event::sign(
        openguild_domain::UnsignedEvent {
            stream: stream.clone(),
            seq: 3,
            prev: vec![renamed.event.id],
            auth: vec![],
            sender: "@victim:hub.test".parse().unwrap(),
            ts: openguild_domain::Timestamp::from_millis(now_ms()).unwrap(),
            body: openguild_domain::EventBody::GuildUpdated { name: Some("Not mine".into()), description: None },
        },
        &peer.key,
    )
    .unwrap();
    let (_, answer) = peer.send(&hub, "hub.test", "t2b", vec![wire(&forged_words)], now_ms()).await;
    let why = answer["events"][forged_words.event.id.to_string()]["refused"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("whose signature is missing"), "{answer}");

    // A peer appends only to the streams of guilds it created: not to this hub's own guild.
    let ann = hub.register("ann").await;
    let local = hub.ok(Some(&ann), "mutation { createGuild(input: {name: \"Ours\"}) { id } }", json!({})).await;
    let ours: openguild_domain::GuildId = local["createGuild"]["id"].as_str().unwrap().parse().unwrap();
    let takeover = peer.event(
        openguild_domain::StreamId::Guild(ours),
        2,
        None,
        openguild_domain::EventBody::GuildUpdated { name: Some("Taken".into()), description: None },
    );
    let (_, answer) = peer.send(&hub, "hub.test", "t2c", vec![wire(&takeover)], now_ms()).await;
    let why = answer["events"][takeover.event.id.to_string()]["refused"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("only its owner appends"), "{answer}");

    // The refused changed nothing: the peer's next good event still goes through.
    let next = peer.event(
        stream.clone(),
        3,
        Some(renamed.event.id),
        openguild_domain::EventBody::GuildUpdated { name: Some("Third".into()), description: None },
    );
    let (status, answer) = peer.send(&hub, "hub.test", "t3", vec![wire(&next)], now_ms()).await;
    assert_eq!(
        (status, answer["events"][next.event.id.to_string()]["accepted"].clone()),
        (200, json!(true)),
        "{answer}"
    );
}

/// An owner hub cannot append what its own guild's rules refuse: each event is decided
/// again against this hub's copy. The copy cannot be changed from here either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_refuses_what_the_guilds_rules_refuse_and_the_copy_is_changed_only_by_its_owner() {
    use openguild_domain::{EventBody, UnsignedEvent};
    let peer = TestPeer::start("peer.test", 13);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&dir.path().join("data"), &config, &[]);
    let (create, stream) = peer.guild(4);
    let (status, answer) = peer.send(&hub, "hub.test", "r1", vec![wire(&create)], now_ms()).await;
    assert_eq!((status, answer["events"][create.event.id.to_string()]["accepted"].clone()), (200, json!(true)));

    // A message in the guild's own stream, and a role created by someone who is no member.
    let misplaced = peer.event(
        stream.clone(),
        2,
        Some(create.event.id),
        EventBody::MessagePosted {
            text: "hi".into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        },
    );
    let outsider = openguild_domain::event::sign(
        UnsignedEvent {
            stream: stream.clone(),
            seq: 2,
            prev: vec![create.event.id],
            auth: vec![],
            sender: "@outsider:peer.test".parse().unwrap(),
            ts: openguild_domain::Timestamp::from_millis(now_ms()).unwrap(),
            body: EventBody::CategoryCreated {
                category: openguild_domain::CategoryId::from_bytes([7; 16]),
                name: "mine".into(),
                position: 0,
            },
        },
        &peer.key,
    )
    .unwrap();
    let (status, answer) = peer.send(&hub, "hub.test", "r2", vec![wire(&misplaced), wire(&outsider)], now_ms()).await;
    assert_eq!(status, 200, "{answer}");
    let why = |e: &openguild_domain::SignedEvent| {
        answer["events"][e.event.id.to_string()]["refused"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(why(&misplaced), "a guild stream does not take `message.posted` events", "{answer}");
    assert_eq!(
        why(&outsider),
        "the guild's rules refuse it: forbidden: you are not a member of this guild",
        "{answer}"
    );

    // What the owner may do is taken, and moves the copy on.
    let renamed = peer.event(
        stream.clone(),
        2,
        Some(create.event.id),
        EventBody::GuildUpdated { name: Some("Renamed".into()), description: None },
    );
    let (_, answer) = peer.send(&hub, "hub.test", "r3", vec![wire(&renamed)], now_ms()).await;
    assert_eq!(answer["events"][renamed.event.id.to_string()]["accepted"], true, "{answer}");

    // Nobody changes the peer's guild here: only its owner sequences it.
    let ann = hub.register("ann").await;
    let guild = match &stream {
        openguild_domain::StreamId::Guild(g) => g.to_string(),
        _ => unreachable!(),
    };
    let refused = hub.gql(Some(&ann), "mutation($g: ID!) { leaveGuild(guildId: $g) }", json!({ "g": guild })).await;
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("owned by peer.test"), "{refused}");
}

/// A free port on loopback, below the kernel's ephemeral range (32768 and up), so no server
/// another test starts on port 0 can take it between this check and the hub's start.
pub(crate) fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 10_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Writes, into `data`, hub A's guild with a member who lives on hub B, and `renames` more
/// events after the join: the guild's stream.
pub(crate) async fn seed_shared_guild(data: &std::path::Path, renames: usize) -> openguild_domain::StreamId {
    seed_shared_guild_in(data, &data.join("events.db").display().to_string(), renames).await
}

/// [`seed_shared_guild`], into the event store at `store_url` (A's key still goes to `data`).
pub(crate) async fn seed_shared_guild_in(
    data: &std::path::Path,
    store_url: &str,
    renames: usize,
) -> openguild_domain::StreamId {
    use openguild_domain::guild::{self, GuildCommand};
    use openguild_domain::{StreamId, Timestamp, UserId};
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("server.key"), [7u8; 32]).unwrap();
    let key =
        openguild_domain::ServerKey::from_seed("hub-a.test".parse().unwrap(), "ed25519:a1".parse().unwrap(), [7; 32]);
    let store = openguild_store::open(store_url, Options::default()).await.unwrap();
    let owner: UserId = "@owner:hub-a.test".parse().unwrap();
    let remote: UserId = "@bob:hub-b.test".parse().unwrap();
    let now = Timestamp::from_millis(now_ms()).unwrap();
    let (g, created) = guild::create(&owner, key.server(), "Shared", [1; 16], now).unwrap();
    let stream = StreamId::Guild(g);
    let mut steps: Vec<(UserId, Option<GuildCommand>)> = vec![
        (owner.clone(), None),
        (
            owner.clone(),
            Some(GuildCommand::CreateInvite { code: "peer1".parse().unwrap(), max_uses: None, expires_at: None }),
        ),
        (remote.clone(), Some(GuildCommand::Join { invite: "peer1".parse().unwrap() })),
    ];
    for i in 0..renames {
        steps.push((
            owner.clone(),
            Some(GuildCommand::UpdateGuild { name: Some(format!("Shared {i}")), description: None }),
        ));
    }
    let mut state = guild::Guild::default();
    for (actor, cmd) in steps {
        let bodies = match cmd {
            None => vec![created.clone()],
            Some(cmd) => guild::decide(&state, &actor, &cmd, now).unwrap(),
        };
        for body in bodies {
            let unsigned = openguild_domain::UnsignedEvent {
                stream: stream.clone(),
                seq: state.version + 1,
                prev: state.head.into_iter().collect(),
                auth: vec![],
                sender: actor.clone(),
                ts: now,
                body,
            };
            let mut e = openguild_domain::event::sign(unsigned, &key).unwrap();
            if actor.server() != *key.server() {
                // A member of hub B acts in A's guild: B signs the event too.
                let b = b_key();
                let sig = b.sign_hash(e.event.id.as_bytes());
                e.event.signatures.entry(b.server().clone()).or_default().insert(b.key_id().clone(), sig);
                e.raw.signatures = openguild_domain::canonical::encode(&e.event.signatures).unwrap();
            }
            let expected = if state.version == 0 {
                openguild_store::ExpectedVersion::NoStream
            } else {
                openguild_store::ExpectedVersion::Exact(state.version)
            };
            store.append(&stream, expected, vec![e.clone()]).await.unwrap();
            state = guild::evolve(state, &e.event);
        }
    }
    store.close().await;
    stream
}

/// Hub B's key, written to its data directory before it starts.
pub(crate) fn b_key() -> openguild_domain::ServerKey {
    openguild_domain::ServerKey::from_seed("hub-b.test".parse().unwrap(), "ed25519:a1".parse().unwrap(), [8; 32])
}

/// The ids of `stream`'s events in the store under `data` (read beside a running server).
pub(crate) async fn stream_ids(data: &std::path::Path, stream: &openguild_domain::StreamId) -> Vec<String> {
    stream_ids_in(&data.join("events.db").display().to_string(), stream).await
}

/// The ids of `stream`'s events in the event store at `store_url`.
pub(crate) async fn stream_ids_in(store_url: &str, stream: &openguild_domain::StreamId) -> Vec<String> {
    let options = Options { read_only: true, ..Options::default() };
    let Ok(store) = openguild_store::open(store_url, options).await else {
        return Vec::new();
    };
    let events = store.read_stream(stream, 1, 10_000, openguild_store::Direction::Forward).await.unwrap_or_default();
    store.close().await;
    events.iter().map(|e| e.event.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guilds_events_reach_the_peer_hub_of_its_member_verified_and_in_order_even_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let stream = seed_shared_guild(&a_data, 60).await;
    std::fs::create_dir_all(&b_data).unwrap();
    std::fs::write(b_data.join("server.key"), [8u8; 32]).unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let a_config = format!("[federation]\npeers = [\"hub-b.test=http://127.0.0.1:{b_port}\"]\n");
    let b_config = format!("[federation]\npeers = [\"hub-a.test=http://127.0.0.1:{a_port}\"]\n");
    let b_env = [("OPENGUILD_SERVER_NAME", "hub-b.test")];
    let mut b = Server::start_on(&b_data, &b_config, &b_env, &format!("127.0.0.1:{b_port}"));
    // B dies (SIGKILL) at once and comes back: A keeps its place and resumes.
    let _ = b.child.kill();
    let _ = b.child.wait();
    let a = Server::start_on(
        &a_data,
        &a_config,
        &[("OPENGUILD_SERVER_NAME", "hub-a.test")],
        &format!("127.0.0.1:{a_port}"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    b = Server::start_on(&b_data, &b_config, &b_env, &format!("127.0.0.1:{b_port}"));

    let on_a = stream_ids(&a_data, &stream).await;
    assert_eq!(on_a.len(), 63);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let on_b = stream_ids(&b_data, &stream).await;
        if on_b == on_a {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 20 s hub B holds {} of A's {} events",
            on_b.len(),
            on_a.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Every event on B, A's included, verifies there, with the keys B fetched from A.
    let verify = openguild(&b_data, "hub-b.test", &["events", "verify"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.contains("ok:"), "events verify on hub B: {said}");
    // B can also pull: the guild's state, and a stream from a seq on, signed as B.
    let get = |target: String| {
        let url = format!("http://127.0.0.1:{a_port}{target}");
        let request = openguild_federation::request::Request { method: "GET", target: &target, body: b"" };
        let header = openguild_federation::request::authorization(
            &b_key(),
            &"hub-a.test".parse().unwrap(),
            &request,
            openguild_domain::Timestamp::from_millis(now_ms()).unwrap(),
        );
        async move {
            let r = reqwest::Client::new().get(url).header("authorization", header).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let guild_id = match &stream {
        openguild_domain::StreamId::Guild(g) => g.to_string(),
        _ => unreachable!(),
    };
    let (status, state) = get(format!("/_openguild/federation/v1/state/{guild_id}")).await;
    assert_eq!((status, state["events"].as_array().map(Vec::len)), (200, Some(63)), "{state}");
    let (status, tail) = get(format!("/_openguild/federation/v1/streams/{stream}?from=60&limit=10")).await;
    assert_eq!((status, tail["events"].as_array().map(Vec::len)), (200, Some(4)), "{tail}");
    let (status, bad) = get(format!("/_openguild/federation/v1/streams/{stream}?from=minus-one")).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("INVALID_INPUT")), "{bad}");
    let (status, _) =
        get(format!("/_openguild/federation/v1/streams/{}?from=1", openguild_domain::StreamId::Hub)).await;
    assert_eq!(status, 403, "the hub stream never leaves its hub");

    // A's sender has nothing left for B, and says so: in its status, and in its metrics.
    let peers = ("OPENGUILD_FEDERATION__PEERS", format!("[\"hub-b.test=http://127.0.0.1:{b_port}\"]"));
    let status = openguild(&a_data, "hub-a.test", &["federation", "status"], &[peers]);
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    let line =
        said.lines().find(|l| l.starts_with("hub-b.test")).unwrap_or_else(|| panic!("no hub-b.test in:\n{said}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..3], ["allowed", "config"], "{line}");
    assert_eq!(fields[3], "0", "nothing queued: {line}");
    assert!(fields[4].starts_with("20"), "a last success time: {line}");
    let metrics = reqwest::get(format!("{}/metrics", a.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("openguild_federation_queue_depth{peer=\"hub-b.test\"} 0"), "{metrics}");
    assert!(
        metrics.contains("openguild_federation_transactions_total{peer=\"hub-b.test\",outcome=\"answered\"}"),
        "{metrics}"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_floods_is_slowed_down() {
    let peer = TestPeer::start("peer.test", 21);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[federation]\npeers = [\"peer.test={}\"]\n[api.limits]\nfederation_request_burst = 2.0\nfederation_requests_per_second = 0.01\n",
        peer.url
    );
    let hub = Server::start(&dir.path().join("data"), &config, &[]);
    for txn in ["f1", "f2"] {
        assert_eq!(peer.send(&hub, "hub.test", txn, vec![], now_ms()).await.0, 200);
    }
    let (status, answer) = peer.send(&hub, "hub.test", "f3", vec![], now_ms()).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_stays_published_and_everything_it_signed_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, "", &[]);
    let ann = server.register("ann").await;
    server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Before\"}) { id } }", json!({})).await;
    drop(server);

    let rotated = openguild(&data, "hub.test", &["keys", "rotate"], &[]);
    let said = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success() && said.contains("ed25519:a2"),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );

    let server = Server::start(&data, "", &[]);
    let bob = server.register("bob").await;
    server.ok(Some(&bob), "mutation { createGuild(input: {name: \"After\"}) { id } }", json!({})).await;
    let doc: KeyDocument =
        reqwest::get(format!("{}/_openguild/federation/v1/keys", server.url)).await.unwrap().json().await.unwrap();
    let keys = doc.verify(&"hub.test".parse().unwrap()).unwrap();
    assert!(doc.verify_keys.contains_key(&"ed25519:a2".parse().unwrap()), "{doc:?}");
    let old = &doc.old_verify_keys[&"ed25519:a1".parse().unwrap()];
    assert!(old.expired_ts > 0 && doc.verify_keys.values().all(|k| k.valid_from_ts == old.expired_ts), "{doc:?}");

    // A peer holding only the published document verifies events from before and after.
    let mut ring = KeyRing::default();
    for (key_id, key) in keys {
        ring.insert(doc.server.clone(), key_id, key);
    }
    let options = Options { read_only: true, ..Options::default() };
    let store = openguild_store::open(&data.join("events.db").display().to_string(), options).await.unwrap();
    let events = store.read_all(0, 1_000).await.unwrap();
    let signers: std::collections::BTreeSet<String> =
        events.iter().flat_map(|e| e.event.signatures.values().flat_map(|s| s.keys().map(|k| k.to_string()))).collect();
    assert_eq!(signers.into_iter().collect::<Vec<_>>(), ["ed25519:a1", "ed25519:a2"]);
    for e in &events {
        openguild_domain::event::verify(&e.raw, &ring).unwrap_or_else(|err| panic!("{}: {err}", e.event.id));
    }
    store.close().await;
    // And so does the hub's own `events verify`.
    let verify = openguild(&data, "hub.test", &["events", "verify"], &[]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
