//! The federation outbox pull over real HTTP: a peer with a member in a guild receives that
//! guild's events, in order, page by page; without its token it receives nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openguild_domain::event::{self, ServerKey, UnsignedEvent};
use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::{StreamId, Timestamp, UserId};
use openguild_store::{ExpectedVersion, Options};

async fn seed(data: &std::path::Path) {
    std::fs::write(data.join("server.key"), [7u8; 32]).unwrap();
    let key = ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:a1".parse().unwrap(), [7; 32]);
    let store = openguild_store::open(&data.join("events.db").display().to_string(), Options::default()).await.unwrap();
    let owner: UserId = "@owner:hub.test".parse().unwrap();
    let remote: UserId = "@bob:peer.test".parse().unwrap();
    let now = Timestamp::from_millis(1_795_000_000_000).unwrap();
    let (g, created) = guild::create(&owner, key.server(), "Shared", [1; 16], now).unwrap();
    let mut state = guild::Guild::default();
    let steps: Vec<(UserId, Option<GuildCommand>)> = vec![
        (owner.clone(), None),
        (
            owner.clone(),
            Some(GuildCommand::CreateInvite { code: "peer1".parse().unwrap(), max_uses: None, expires_at: None }),
        ),
        (remote.clone(), Some(GuildCommand::Join { invite: "peer1".parse().unwrap() })),
        (owner.clone(), Some(GuildCommand::UpdateGuild { name: Some("Shared hub".into()), description: None })),
        (owner.clone(), Some(GuildCommand::Kick { user: remote.clone(), reason: "bye".into() })),
        (owner.clone(), Some(GuildCommand::UpdateGuild { name: Some("Private again".into()), description: None })),
    ];
    for (actor, cmd) in steps {
        let bodies = match cmd {
            None => vec![created.clone()],
            Some(cmd) => guild::decide(&state, &actor, &cmd, now).unwrap(),
        };
        for body in bodies {
            let e = event::sign(
                UnsignedEvent {
                    stream: StreamId::Guild(g),
                    seq: state.version + 1,
                    prev: state.head.into_iter().collect(),
                    auth: vec![],
                    sender: actor.clone(),
                    ts: now,
                    body,
                },
                &key,
            )
            .unwrap();
            let expected =
                if state.version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(state.version) };
            store.append(&StreamId::Guild(g), expected, vec![e.clone()]).await.unwrap();
            state = guild::evolve(state, &e.event);
        }
    }
    store.close().await;
}

/// Starts `openguild serve` on an ephemeral port; returns it and its base address.
fn start(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", "hub.test")
        .env("OPENGUILD_FEDERATION_PEERS", "peer.test,other.test")
        .env("OPENGUILD_FEDERATION_PEER_TOKENS", "peer.test=s3cret,other.test=0ther")
        .env("OPENGUILD_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines.next().unwrap_or_else(|| panic!("the server stopped before it was ready: {seen:#?}")).unwrap();
        seen.push(line.clone());
        if let Some(at) = line.find("openguild ready on http://") {
            let rest = &line[at + "openguild ready on http://".len()..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body) = get_text(addr, path, token);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

fn get_text(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, body.to_owned())
}

#[tokio::test]
async fn a_peer_pulls_the_events_of_guilds_it_has_members_in() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path()).await;
    let (mut server, addr) = start(dir.path());
    // Wait until the projections have caught up (readyz reports the lag), not for a time.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ready) = get(&addr, "/readyz", None);
        if ready["projections"].as_array().is_some_and(|ps| ps.iter().all(|p| p["lag"] == 0)) {
            break;
        }
        assert!(Instant::now() < deadline, "projections did not catch up: {ready}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (status, body) = get(&addr, "/_openguild/federation/v1/outbox", None);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
    let (status, body) = get(&addr, "/_openguild/federation/v1/outbox?limit=0", Some("s3cret"));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_INPUT")));

    // peer.test had a member from the join (position 3) to the kick (position 5).
    let (status, page1) = get(&addr, "/_openguild/federation/v1/outbox?limit=2", Some("s3cret"));
    assert_eq!(status, 200, "{page1}");
    let cursors: Vec<&str> =
        page1["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_str().unwrap()).collect();
    assert_eq!(cursors, ["3", "4"]);
    let next = page1["next"].as_str().unwrap();
    let (_, page2) = get(&addr, &format!("/_openguild/federation/v1/outbox?since={next}&limit=2"), Some("s3cret"));
    let cursors: Vec<&str> =
        page2["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_str().unwrap()).collect();
    assert_eq!(cursors, ["5"], "the kick is delivered, nothing after it");
    assert!(page2["events"][0]["core"].as_str().is_some_and(|c| !c.is_empty()), "signed bytes are included");
    let (_, other) = get(&addr, "/_openguild/federation/v1/outbox", Some("0ther"));
    assert_eq!(other["events"].as_array().unwrap().len(), 0, "a peer without members gets nothing");

    // The metrics an operator alerts on.
    let (status, metrics) = get_text(&addr, "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("openguild_store_head_position 6"), "{metrics}");
    assert!(metrics.contains("openguild_projection_lag{projection=\"timeline\"} 0"), "{metrics}");
    assert!(metrics.contains("openguild_projection_stopped{projection=\"federation_outbox\"} 0"), "{metrics}");
    server.kill().unwrap();
    server.wait().unwrap();
}
