//! Federation against a real hub: the keys it publishes; its inbox facing a peer under the
//! test's control (its own keys served over HTTP and rotated, crafted requests, events and
//! hand-made bytes); two real hubs, one sending a guild to the other. `partition` runs two
//! hubs through a bad network.

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

/// A peer hub under the test's control: its own key, its key document served over real HTTP
/// (counting how often it is fetched, and replaced when the peer rotates), and requests it
/// crafts.
pub(crate) struct TestPeer {
    pub(crate) key: openguild_domain::ServerKey,
    pub(crate) url: String,
    /// The key document served, as JSON.
    doc: std::sync::Arc<std::sync::Mutex<String>>,
    /// How many times the key document was fetched.
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TestPeer {
    /// `name`'s peer with key `seed`, serving its key document on an ephemeral port.
    pub(crate) fn start(name: &str, seed: u8) -> TestPeer {
        use std::io::{Read, Write};
        let key =
            openguild_domain::ServerKey::from_seed(name.parse().unwrap(), "ed25519:p1".parse().unwrap(), [seed; 32]);
        let now = openguild_domain::Timestamp::from_millis(now_ms()).unwrap();
        let doc = KeyDocument::publish(&key, openguild_domain::Timestamp::default(), Default::default(), now).unwrap();
        let doc = std::sync::Arc::new(std::sync::Mutex::new(serde_json::to_string(&doc).unwrap()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (served, counted) = (doc.clone(), fetches.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                // The key document; anything else (the hub's own sender, say) gets an empty
                // answer and is not counted.
                let body = if buf.starts_with(b"GET /_openguild/federation/v1/keys ") {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    served.lock().unwrap().clone()
                } else {
                    "{\"events\": {}}".to_owned()
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        TestPeer { key, url, doc, fetches }
    }

    /// How many times the hub fetched this peer's key document.
    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Rotates as `openguild keys rotate` does: `ed25519:p2` (from `seed`) signs from now
    /// on, and the old key stays published with `expired_ts` now. The old key and that time.
    fn rotate(&mut self, seed: u8) -> (openguild_domain::ServerKey, u64) {
        let at = now_ms();
        let next = openguild_domain::ServerKey::from_seed(
            self.key.server().clone(),
            "ed25519:p2".parse().unwrap(),
            [seed; 32],
        );
        let old = std::mem::replace(&mut self.key, next);
        let retired = std::collections::BTreeMap::from([(
            old.key_id().clone(),
            openguild_federation::keys::OldVerifyKey {
                key: base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, old.public_key()),
                valid_from_ts: 0,
                expired_ts: at,
            },
        )]);
        let since = openguild_domain::Timestamp::from_millis(at).unwrap();
        let doc = KeyDocument::publish(&self.key, since, retired, since).unwrap();
        *self.doc.lock().unwrap() = serde_json::to_string(&doc).unwrap();
        (old, at)
    }

    /// Signs an event of `stream` at `seq` after `prev`, sent by `@p` of this peer.
    fn event(
        &self,
        stream: openguild_domain::StreamId,
        seq: u64,
        prev: Option<openguild_domain::EventId>,
        body: openguild_domain::EventBody,
    ) -> openguild_domain::SignedEvent {
        signed(&self.key, stream, seq, prev, body, now_ms())
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
        self.put_to(hub, destination, &format!("/_openguild/federation/v1/send/{txn}"), body, created_ms).await
    }

    /// PUTs `body` to `target` on `hub`, signed for `destination` at `created_ms`.
    pub(crate) async fn put_to(
        &self,
        hub: &Server,
        destination: &str,
        target: &str,
        body: Vec<u8>,
        created_ms: u64,
    ) -> (u16, serde_json::Value) {
        let target = target.to_owned();
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

/// An event of `stream` at `seq` after `prev`, sent by `@p` of `key`'s hub at `ts_ms` and
/// signed by `key`.
fn signed(
    key: &openguild_domain::ServerKey,
    stream: openguild_domain::StreamId,
    seq: u64,
    prev: Option<openguild_domain::EventId>,
    body: openguild_domain::EventBody,
    ts_ms: u64,
) -> openguild_domain::SignedEvent {
    let sender: openguild_domain::UserId = format!("@p:{}", key.server()).parse().unwrap();
    let unsigned = openguild_domain::UnsignedEvent {
        stream,
        seq,
        prev: prev.into_iter().collect(),
        auth: vec![],
        sender,
        ts: openguild_domain::Timestamp::from_millis(ts_ms).unwrap(),
        body,
    };
    openguild_domain::event::sign(unsigned, key).unwrap()
}

/// Runs `openguild ARGS` on the hub `server` whose data lives in `data`, with `env` more.
/// Runs `openguild events verify` on a stopped hub's data and fails the test unless every
/// event verifies.
pub(crate) fn verify_on(data: &std::path::Path, hub: &str) {
    let verify = openguild(data, hub, &["events", "verify"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.contains("ok:"), "events verify on {hub}: {said}");
}

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

    // An event the peer signed for a user of this hub, without this hub's seal, or with a
    // seal the peer made itself: the peer cannot put words in another hub's users' mouths.
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
    assert!(why.contains("carries no proposal of that hub"), "{answer}");
    let victim: openguild_domain::UserId = "@victim:hub.test".parse().unwrap();
    let body = openguild_domain::EventBody::GuildUpdated { name: Some("Not mine".into()), description: None };
    let now = openguild_domain::Timestamp::from_millis(now_ms()).unwrap();
    let seal = openguild_domain::proposal::seal(&peer.key, &stream, &victim, &body, [5; 16], now).unwrap();
    let self_sealed = openguild_domain::event::sign_proposed(
        openguild_domain::UnsignedEvent {
            stream: stream.clone(),
            seq: 3,
            prev: vec![renamed.event.id],
            auth: vec![],
            sender: victim,
            ts: now,
            body,
        },
        Some(seal),
        &peer.key,
    )
    .unwrap();
    let (_, answer) = peer.send(&hub, "hub.test", "t2s", vec![wire(&self_sealed)], now_ms()).await;
    let why = answer["events"][self_sealed.event.id.to_string()]["refused"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("is not sealed by hub.test"), "{answer}");

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
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
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
    // ann's hub decides on its copy before proposing to the owner: she is no member.
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not a member of this guild"), "{refused}");
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

/// Writes, into `data`, hub A's guild, owned by `@owner:hub-a.test`, with a member who
/// lives on hub B, and `renames` more events after the join (3 + `renames` events): the
/// guild's stream. A test that registers `owner` on A first can then act as the owner.
pub(crate) async fn seed_shared_guild(data: &std::path::Path, renames: usize) -> openguild_domain::StreamId {
    seed_shared_guild_in(data, &data.join("events.db").display().to_string(), renames).await
}

/// [`seed_shared_guild`], into the event store at `store_url` (A's key still goes to `data`).
pub(crate) async fn seed_shared_guild_in(
    data: &std::path::Path,
    store_url: &str,
    renames: usize,
) -> openguild_domain::StreamId {
    seed_guild_with(data, store_url, &[b_key()], renames).await
}

/// Hub A's guild with a member `@bob` of each hub in `homes`, each join signed by its hub
/// too, then `renames` renames by the owner (1 + 1 + `homes.len()` + `renames` events).
pub(crate) async fn seed_guild_with(
    data: &std::path::Path,
    store_url: &str,
    homes: &[openguild_domain::ServerKey],
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
    let now = Timestamp::from_millis(now_ms()).unwrap();
    let (g, created) = guild::create(&owner, key.server(), "Shared", [1; 16], now).unwrap();
    let stream = StreamId::Guild(g);
    let mut steps: Vec<(UserId, Option<GuildCommand>)> = vec![
        (owner.clone(), None),
        (
            owner.clone(),
            Some(GuildCommand::CreateInvite { code: "peer1".parse().unwrap(), max_uses: None, expires_at: None }),
        ),
    ];
    for home in homes {
        let remote: UserId = format!("@bob:{}", home.server()).parse().unwrap();
        steps.push((remote, Some(GuildCommand::Join { invite: "peer1".parse().unwrap() })));
    }
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
            // A member of another hub acts in A's guild: their hub seals the proposal.
            let seal = homes.iter().find(|k| *k.server() == actor.server()).map(|home| {
                let nonce: [u8; 16] = rand::random();
                openguild_domain::proposal::seal(home, &stream, &actor, &unsigned.body, nonce, now).unwrap()
            });
            let e = openguild_domain::event::sign_proposed(unsigned, seal, &key).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_fetches_the_peers_keys_at_most_once_a_minute_and_its_event_is_refused() {
    let peer = TestPeer::start("peer.test", 31);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&dir.path().join("data"), &config, &[]);

    // First contact: the hub fetches the peer's keys to check the request, once.
    let (create, stream) = peer.guild(1);
    let (status, answer) = peer.send(&hub, "hub.test", "k1", vec![wire(&create)], now_ms()).await;
    assert_eq!((status, &answer["events"][create.event.id.to_string()]["accepted"]), (200, &json!(true)), "{answer}");
    assert_eq!(peer.fetches(), 1, "the first request fetched the keys");
    let first_fetch = std::time::Instant::now();

    // Events signed by key ids the peer never published (the request itself is signed by
    // its real key): each refused, and the keys are fetched again at most once a minute.
    let unknown = |id: &str, seed: u8| {
        openguild_domain::ServerKey::from_seed("peer.test".parse().unwrap(), id.parse().unwrap(), [seed; 32])
    };
    let rename = |name: &str| openguild_domain::EventBody::GuildUpdated { name: Some(name.into()), description: None };
    let send_refused = |txn: &'static str, e: openguild_domain::SignedEvent| {
        let peer = &peer;
        let hub = &hub;
        async move {
            let (status, answer) = peer.send(hub, "hub.test", txn, vec![wire(&e)], now_ms()).await;
            assert_eq!(status, 200, "{answer}");
            answer["events"][e.event.id.to_string()]["refused"].as_str().unwrap_or_default().to_owned()
        }
    };
    let by_p7 = signed(&unknown("ed25519:p7", 37), stream.clone(), 2, Some(create.event.id), rename("Seven"), now_ms());
    let why = send_refused("k2", by_p7).await;
    assert!(why.contains("unknown key ed25519:p7"), "{why}");
    assert_eq!(peer.fetches(), 1, "within a minute of the last fetch, an unknown key fetches nothing");

    // A minute after the fetch, an unknown key id fetches the document once more: the peer
    // may have rotated. It is still unknown, so the event is refused.
    tokio::time::sleep(std::time::Duration::from_secs(61).saturating_sub(first_fetch.elapsed())).await;
    let by_p8 = signed(&unknown("ed25519:p8", 38), stream.clone(), 2, Some(create.event.id), rename("Eight"), now_ms());
    let why = send_refused("k3", by_p8).await;
    assert!(why.contains("unknown key ed25519:p8"), "{why}");
    assert_eq!(peer.fetches(), 2, "an unknown key a minute later fetches the keys once");
    // Another unknown key id right after: refused again, without a fetch.
    let by_p9 = signed(&unknown("ed25519:p9", 39), stream.clone(), 2, Some(create.event.id), rename("Nine"), now_ms());
    let why = send_refused("k4", by_p9).await;
    assert!(why.contains("unknown key ed25519:p9"), "{why}");
    assert_eq!(peer.fetches(), 2, "a second unknown key within the minute fetches nothing");

    // None of it was stored: the peer's real key continues the stream at seq 2.
    let good = peer.event(stream.clone(), 2, Some(create.event.id), rename("Real"));
    let (_, answer) = peer.send(&hub, "hub.test", "k5", vec![wire(&good)], now_ms()).await;
    assert_eq!(answer["events"][good.event.id.to_string()]["accepted"], true, "{answer}");
    assert_eq!(peer.fetches(), 2);
}

/// `event` with its core bytes changed by `edit`, its id recomputed from them and signed by
/// `key` again: only the encoding is wrong, the signature is good. Its id and wire form.
fn recoded(
    event: &openguild_domain::SignedEvent,
    key: &openguild_domain::ServerKey,
    edit: impl FnOnce(&mut Vec<u8>),
) -> (String, serde_json::Value) {
    use openguild_domain::event::{self, context};
    let mut raw = event.raw.clone();
    edit(&mut raw.core);
    let hash = event::hash(context::EVENT_ID, &raw.core);
    raw.id = openguild_domain::EventId::from_hash(hash);
    let mut signatures = event::Signatures::new();
    signatures.entry(key.server().clone()).or_default().insert(key.key_id().clone(), key.sign_hash(&hash));
    raw.signatures = openguild_domain::canonical::encode(&signatures).unwrap();
    (raw.id.to_string(), serde_json::to_value(openguild_api::federation::WireEvent::of(&raw)).unwrap())
}

/// Where `pattern` first occurs in `bytes` at or after `from`.
fn find(bytes: &[u8], pattern: &[u8], from: usize) -> usize {
    from + bytes[from..].windows(pattern.len()).position(|w| w == pattern).expect("the field is in the core")
}

/// An event over 64 KiB is refused for its size, before it is even decoded; the good event
/// beside it in the same transaction is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_is_refused_for_its_size_and_the_good_one_beside_it_kept() {
    let peer = TestPeer::start("peer.test", 14);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&dir.path().join("data"), &config, &[]);
    let (create, stream) = peer.guild(5);
    let huge = peer.event(
        stream.clone(),
        2,
        Some(create.event.id),
        openguild_domain::EventBody::GuildUpdated { name: None, description: Some("x".repeat(70_000)) },
    );
    let (status, answer) = peer.send(&hub, "hub.test", "o1", vec![wire(&create), wire(&huge)], now_ms()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"][create.event.id.to_string()]["accepted"], true, "{answer}");
    let why = answer["events"][huge.event.id.to_string()]["refused"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("bytes; an event is at most 65536"), "{answer}");
    assert_eq!(stream_ids(&dir.path().join("data"), &stream).await, [create.event.id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_crafted_non_canonical_or_out_of_range_events_are_refused_as_malformed_and_the_good_ones_kept() {
    let peer = TestPeer::start("peer.test", 41);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&dir.path().join("data"), &config, &[]);
    let (create, stream) = peer.guild(1);
    let (_, answer) = peer.send(&hub, "hub.test", "m1", vec![wire(&create)], now_ms()).await;
    assert_eq!(answer["events"][create.event.id.to_string()]["accepted"], true, "{answer}");

    let rename = |name: &str| openguild_domain::EventBody::GuildUpdated { name: Some(name.into()), description: None };
    let second = peer.event(stream.clone(), 2, Some(create.event.id), rename("Second"));
    let third = peer.event(stream.clone(), 3, Some(second.event.id), rename("Third"));
    // The core is a map: stream, seq, prev, auth, origin, sender, ts, redacted, content_hash.
    let seq_at = |core: &[u8]| find(core, b"\xa3seq", 0) + 4;
    let ts_at = |core: &[u8]| find(core, b"\xa2ts", find(core, b"\xa6sender", 0)) + 3;
    let mut bad: Vec<(&str, String, serde_json::Value)> = Vec::new();
    let mut add = |what: &'static str, base: &openguild_domain::SignedEvent, edit: &dyn Fn(&mut Vec<u8>)| {
        let (id, wire) = recoded(base, &peer.key, edit);
        bad.push((what, id, wire));
    };
    // seq 3 as a uint64 (0xcf and eight bytes) instead of the one-byte fixint.
    add("a wide integer", &third, &|core| {
        let at = seq_at(core);
        assert_eq!(core[at], 3);
        core.splice(at..at + 1, [0xcf, 0, 0, 0, 0, 0, 0, 0, 3]);
    });
    // The seq entry before the stream entry.
    add("keys out of order", &third, &|core| {
        let (stream_key, seq_key, prev_key) = (1, find(core, b"\xa3seq", 0), find(core, b"\xa4prev", 0));
        let reordered =
            [&core[..stream_key], &core[seq_key..prev_key], &core[stream_key..seq_key], &core[prev_key..]].concat();
        *core = reordered;
    });
    add("a trailing byte", &third, &|core| core.push(0xc0));
    // ts as 2^53 ms, one past the largest time: canonical as an integer, out of range.
    add("a time out of range", &third, &|core| {
        let at = ts_at(core);
        assert_eq!(core[at], 0xcf);
        core[at + 1..at + 9].copy_from_slice(&(1u64 << 53).to_be_bytes());
    });
    // seq -1 (a negative fixint) where an unsigned integer belongs.
    add("a negative seq", &third, &|core| {
        let at = seq_at(core);
        core[at] = 0xff;
    });
    // seq 0: an unsigned integer, but seqs start at 1.
    add("seq 0", &third, &|core| {
        let at = seq_at(core);
        core[at] = 0;
    });

    // The bad ones around the good ones, in one transaction.
    let mut events: Vec<serde_json::Value> = bad.iter().take(3).map(|(_, _, w)| w.clone()).collect();
    events.push(wire(&second));
    events.extend(bad.iter().skip(3).map(|(_, _, w)| w.clone()));
    events.push(wire(&third));
    let (status, answer) = peer.send(&hub, "hub.test", "m2", events, now_ms()).await;
    assert_eq!(status, 200, "{answer}");
    for good in [&second, &third] {
        assert_eq!(answer["events"][good.event.id.to_string()]["accepted"], true, "{answer:#}");
    }
    let mut reasons = Vec::new();
    for (what, id, _) in &bad {
        let why = answer["events"][id]["refused"].as_str().unwrap_or_else(|| panic!("{what}: {answer:#}"));
        reasons.push((*what, why.to_owned()));
    }
    let why = |what: &str| reasons.iter().find(|(w, _)| *w == what).unwrap().1.clone();
    for what in ["a wide integer", "keys out of order"] {
        assert!(why(what).contains("malformed") && why(what).contains("not canonical"), "{what}: {}", why(what));
    }
    assert!(
        why("a trailing byte").contains("malformed") && why("a trailing byte").contains("1 trailing byte"),
        "{reasons:?}"
    );
    assert!(
        why("a time out of range").contains("malformed") && why("a time out of range").contains("2^53"),
        "{reasons:?}"
    );
    assert!(why("a negative seq").contains("malformed") && why("a negative seq").contains("-1"), "{reasons:?}");
    assert!(why("seq 0").contains("malformed") && why("seq 0").contains("seq"), "{reasons:?}");
    // Counted under `malformed` for the operator.
    let metrics = reqwest::get(format!("{}/metrics", hub.url)).await.unwrap().text().await.unwrap();
    let line = format!("openguild_federation_events_refused_total{{reason=\"malformed\"}} {}", bad.len());
    assert!(metrics.contains(&line), "{line}\n{metrics}");

    // The stream went on from the good ones only: the next event continues at seq 4.
    let fourth = peer.event(stream.clone(), 4, Some(third.event.id), rename("Fourth"));
    let (_, answer) = peer.send(&hub, "hub.test", "m3", vec![wire(&fourth)], now_ms()).await;
    assert_eq!(answer["events"][fourth.event.id.to_string()]["accepted"], true, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_peer_rotates_its_old_key_verifies_what_it_signed_before_and_nothing_after() {
    let mut peer = TestPeer::start("peer.test", 51);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&data, &config, &[]);
    let (create, stream) = peer.guild(1);
    let (_, answer) = peer.send(&hub, "hub.test", "r1", vec![wire(&create)], now_ms()).await;
    assert_eq!(answer["events"][create.event.id.to_string()]["accepted"], true, "{answer}");
    let first_fetch = std::time::Instant::now();
    let rename = |name: &str| openguild_domain::EventBody::GuildUpdated { name: Some(name.into()), description: None };
    // Signed by the first key while it was current, sent only after the rotation.
    let before = peer.event(stream.clone(), 2, Some(create.event.id), rename("Before"));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let (old, expired) = peer.rotate(52);
    assert!(before.event.core.ts.as_millis() < expired);
    // The hub still holds the document without `ed25519:p2`, fetched less than a minute ago:
    // it fetches again on the new key id once a minute has passed.
    tokio::time::sleep(std::time::Duration::from_secs(61).saturating_sub(first_fetch.elapsed())).await;
    let late = signed(&old, stream.clone(), 3, Some(before.event.id), rename("Late"), now_ms());
    let after = peer.event(stream.clone(), 3, Some(before.event.id), rename("After"));
    let (status, answer) =
        peer.send(&hub, "hub.test", "r2", vec![wire(&before), wire(&late), wire(&after)], now_ms()).await;
    assert_eq!(status, 200, "a request by the new key: {answer}");
    assert_eq!(peer.fetches(), 2, "the new key id fetched the rotated document");
    assert_eq!(answer["events"][before.event.id.to_string()]["accepted"], true, "signed before the expiry: {answer:#}");
    let why = answer["events"][late.event.id.to_string()]["refused"].as_str().unwrap_or_default();
    assert!(why.contains("ed25519:p1") && why.contains("not valid at the event's time"), "{answer:#}");
    assert_eq!(answer["events"][after.event.id.to_string()]["accepted"], true, "by the new key: {answer:#}");

    // Requests are checked against a key valid now: the old one no longer signs them.
    let mut retired = TestPeer::start("peer.test", 51);
    retired.url = peer.url.clone();
    assert_eq!(retired.key.public_key(), old.public_key());
    let (status, answer) = retired.send(&hub, "hub.test", "r3", vec![], now_ms()).await;
    assert_eq!(status, 401, "a request signed by the retired key: {answer}");

    // The hub kept the rotated document: `events verify` checks the peer's events with the
    // key valid at each one's time.
    let verify = openguild(&data, "hub.test", &["events", "verify"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.contains("ok:"), "events verify: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_created_and_its_first_messages_in_one_transaction_are_all_taken() {
    let peer = TestPeer::start("peer.test", 61);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&dir.path().join("data"), &config, &[]);
    let (create, stream) = peer.guild(1);
    let (_, answer) = peer.send(&hub, "hub.test", "c1", vec![wire(&create)], now_ms()).await;
    assert_eq!(answer["events"][create.event.id.to_string()]["accepted"], true, "{answer}");

    // As the sender packs them after an outage: the channel's creation on the guild stream,
    // then its messages, with nothing in between for the hub's read models to catch up.
    for round in 0..5u8 {
        let channel = openguild_domain::ChannelId::from_bytes([round + 1; 16]);
        let seq = u64::from(round) + 2;
        let head = stream_ids(&dir.path().join("data"), &stream).await;
        let prev: openguild_domain::EventId = head.last().unwrap().parse().unwrap();
        let created = peer.event(
            stream.clone(),
            seq,
            Some(prev),
            openguild_domain::EventBody::ChannelCreated {
                channel,
                name: format!("room-{round}"),
                kind: openguild_domain::ChannelKind::Text,
                category: None,
                position: u32::from(round),
                topic: String::new(),
            },
        );
        let messages = openguild_domain::StreamId::Channel(channel);
        let post = |text: &str| openguild_domain::EventBody::MessagePosted {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: text.into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        };
        let first = peer.event(messages.clone(), 1, None, post("first"));
        let second = peer.event(messages.clone(), 2, Some(first.event.id), post("second"));
        let txn = format!("c2-{round}");
        let (status, answer) =
            peer.send(&hub, "hub.test", &txn, vec![wire(&created), wire(&first), wire(&second)], now_ms()).await;
        assert_eq!(status, 200, "{answer}");
        for e in [&created, &first, &second] {
            assert_eq!(answer["events"][e.event.id.to_string()]["accepted"], true, "round {round}: {answer:#}");
        }
    }
}
