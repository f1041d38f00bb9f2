//! The allowlist as signed events on the hub stream, between real hubs over real HTTP: an
//! operator allows a peer through GraphQL, or the console denies one with `openguild
//! federation deny` beside a running server, and the running hubs follow without a restart.

use std::time::{Duration, Instant};

use openguild_domain::StreamId;
use openguild_store::Options;
use serde_json::{Value, json};

use crate::federation::{
    b_key, free_port, now_ms, openguild, seed_shared_guild, seed_shared_guild_in, stream_ids, stream_ids_in,
};
use crate::nodes::{drop_database, fresh_database};
use crate::support::Server;

const ALLOW: &str = "mutation($n: String!, $u: String!) { allowPeer(name: $n, url: $u) { name url source allowed } }";
const DENY: &str = "mutation($n: String!) { denyPeer(name: $n) { name url source allowed } }";

/// A GET from hub B to the hub at `port`, signed with B's key: the status and the answer.
async fn signed_get_as_b(port: u16, target: &str) -> (u16, Value) {
    let request = openguild_federation::request::Request { method: "GET", target, body: b"" };
    let header = openguild_federation::request::authorization(
        &b_key(),
        &"hub-a.test".parse().unwrap(),
        &request,
        openguild_domain::Timestamp::from_millis(now_ms()).unwrap(),
    );
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{target}"))
        .header("authorization", header)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

fn state_path(stream: &StreamId) -> String {
    match stream {
        StreamId::Guild(g) => format!("/_openguild/federation/v1/state/{g}"),
        other => panic!("not a guild stream: {other}"),
    }
}

/// Waits until `check` holds, for at most `within`; `what` says what was awaited.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if Instant::now() >= deadline => panic!("{what}: not after {within:?}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The kinds and senders of the hub stream's peer events, in the store at `store_url`.
async fn peer_events(store_url: &str) -> Vec<String> {
    let store = openguild_store::open(store_url, Options { read_only: true, ..Options::default() }).await.unwrap();
    let events = store.read_stream(&StreamId::Hub, 1, 1_000, openguild_store::Direction::Forward).await.unwrap();
    store.close().await;
    events
        .iter()
        .map(|e| (e.event.content().kind(), e.event.core.sender.to_string()))
        .filter(|(kind, _)| kind.starts_with("hub.peer_"))
        .map(|(kind, sender)| format!("{kind} by {sender}"))
        .collect()
}

/// Hub B, on SQLite in `data`, listing hub A (at `a_port`) as its peer.
pub(crate) fn start_b(data: &std::path::Path, a_port: u16, b_port: u16) -> Server {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("server.key"), [8u8; 32]).unwrap();
    let config = format!("[federation]\npeers = [\"hub-a.test=http://127.0.0.1:{a_port}\"]\n");
    Server::start_on(data, &config, &[("OPENGUILD_SERVER_NAME", "hub-b.test")], &format!("127.0.0.1:{b_port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_allows_a_peer_at_run_time_and_the_guilds_events_flow_to_it_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let stream = seed_shared_guild(&a_data, 3).await;
    let (a_port, b_port) = (free_port(), free_port());
    let b = start_b(&b_data, a_port, b_port);
    // Hub A is configured with no peers at all.
    let a = Server::start_on(&a_data, "", &[("OPENGUILD_SERVER_NAME", "hub-a.test")], &format!("127.0.0.1:{a_port}"));
    let root = a.register("root").await; // the first account of a fresh hub: its operator
    let pat = a.register("pat").await;
    let b_url = format!("http://127.0.0.1:{b_port}");
    let (status, refusal) = signed_get_as_b(a_port, &state_path(&stream)).await;
    assert_eq!((status, refusal["error"]["message"].as_str()), (403, Some("hub-b.test is not a peer of this hub")));

    // Only an operator allows, and only a URL that is https:// or loopback http://.
    let (code, err) = a.refused(Some(&pat), ALLOW, json!({ "n": "hub-b.test", "u": b_url })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(err["message"].as_str().unwrap().contains("only a hub operator can do this"), "{err}");
    let (code, err) = a.refused(Some(&root), ALLOW, json!({ "n": "hub-b.test", "u": "http://hub-b.example" })).await;
    assert_eq!(code, "INVALID_INPUT", "{err}");
    assert_eq!(
        err["message"],
        "invalid url: the URL \"http://hub-b.example\" is plain HTTP to another machine; use https:// (http:// is for \
         loopback only: 127.0.0.1, localhost, [::1])"
    );
    let (code, err) = a.refused(Some(&root), ALLOW, json!({ "n": "hub-b.test", "u": "hub-b.example" })).await;
    assert_eq!(code, "INVALID_INPUT", "{err}");
    assert!(err["message"].as_str().unwrap().contains("a peer URL is https://HOST[:PORT][/PATH]"), "{err}");
    let (code, err) = a.refused(Some(&root), ALLOW, json!({ "n": "Hub B", "u": b_url })).await;
    assert_eq!(code, "INVALID_INPUT", "{err}");
    assert!(err["message"].as_str().unwrap().contains("invalid server name \"Hub B\""), "{err}");
    let (code, err) = a.refused(Some(&root), ALLOW, json!({ "n": "hub-a.test", "u": b_url })).await;
    assert_eq!(code, "INVALID_INPUT", "{err}");
    assert!(err["message"].as_str().unwrap().contains("is this hub itself"), "{err}");
    let (code, _) = a.refused(Some(&pat), "{ federationPeers { name } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");
    assert!(stream_ids(&b_data, &stream).await.is_empty(), "nothing was sent to a hub that is not a peer");

    // Allowed: B's requests are accepted at once, and the guild's events reach it.
    let allowed = a.ok(Some(&root), ALLOW, json!({ "n": "hub-b.test", "u": format!("{b_url}/") })).await;
    assert_eq!(
        allowed["allowPeer"],
        json!({ "name": "hub-b.test", "url": b_url, "source": "HUB_EVENT", "allowed": true })
    );
    let (status, state) = signed_get_as_b(a_port, &state_path(&stream)).await;
    assert_eq!((status, state["events"].as_array().map(Vec::len)), (200, Some(6)), "{state}");
    let on_a = stream_ids(&a_data, &stream).await;
    assert_eq!(on_a.len(), 6);
    eventually(Duration::from_secs(20), "A's guild on hub B", || {
        let (b_data, on_a, stream) = (&b_data, &on_a, &stream);
        async move {
            let on_b = stream_ids(b_data, stream).await;
            if on_b == *on_a { Ok(()) } else { Err(format!("{} of {} events", on_b.len(), on_a.len())) }
        }
    })
    .await;
    let listed = a.ok(Some(&root), "{ federationPeers { name url source allowed } }", json!({})).await;
    assert_eq!(
        listed["federationPeers"],
        json!([{ "name": "hub-b.test", "url": b_url, "source": "HUB_EVENT", "allowed": true }])
    );
    let (code, err) = a.refused(Some(&root), ALLOW, json!({ "n": "hub-b.test", "u": b_url })).await;
    assert_eq!(code, "CONFLICT", "allowed twice: {err}");

    // Denied through GraphQL: refused at once.
    let denied = a.ok(Some(&root), DENY, json!({ "n": "hub-b.test" })).await;
    assert_eq!(
        denied["denyPeer"],
        json!({ "name": "hub-b.test", "url": Value::Null, "source": "HUB_EVENT", "allowed": false })
    );
    assert_eq!(signed_get_as_b(a_port, &state_path(&stream)).await.0, 403);

    // The allow and the deny are signed events on A's hub stream, by the operator, and verify.
    let a_store = a_data.join("events.db").display().to_string();
    assert_eq!(
        peer_events(&a_store).await,
        ["hub.peer_allowed by @root:hub-a.test", "hub.peer_denied by @root:hub-a.test"]
    );
    let verify = openguild(&a_data, "hub-a.test", &["events", "verify"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.contains("ok:"), "events verify on hub A: {said}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_denies_a_configured_peer_beside_a_running_server_and_allows_it_back() {
    let (url, db_name) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let stream = seed_shared_guild_in(&a_data, &url, 2).await;
    let (a_port, b_port) = (free_port(), free_port());
    let b = start_b(&b_data, a_port, b_port);
    // Hub A on PostgreSQL, where the command line writes beside a running server. B is its
    // peer by configuration, with a token for the outbox pull.
    let b_url = format!("http://127.0.0.1:{b_port}");
    let peers = format!("hub-b.test={b_url}");
    let env = [
        ("OPENGUILD_SERVER_NAME", "hub-a.test"),
        ("OPENGUILD_STORE_URL", url.as_str()),
        ("OPENGUILD_READ_DB_URL", url.as_str()),
        ("OPENGUILD_FEDERATION_PEERS", peers.as_str()),
        ("OPENGUILD_FEDERATION_PEER_TOKENS", "hub-b.test=pull-t0ken"),
    ];
    let a = Server::start_on(&a_data, "", &env, &format!("127.0.0.1:{a_port}"));
    let cli_env: Vec<(&str, String)> = env.iter().skip(1).map(|(k, v)| (*k, (*v).to_owned())).collect();
    let cli = |args: &[&str]| {
        let out = openguild(&a_data, "hub-a.test", args, &cli_env);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), said)
    };
    let ids_on_a = || stream_ids_in(&url, &stream);
    // B's line of `federation status`, as words: peer, state, from, queued, ….
    let b_status = || {
        let (ok, status) = cli(&["federation", "status"]);
        assert!(ok, "{status}");
        let line = status.lines().find(|l| l.starts_with("hub-b.test")).unwrap_or_else(|| panic!("{status}"));
        line.split_whitespace().map(str::to_owned).collect::<Vec<String>>()
    };
    eventually(Duration::from_secs(20), "A's guild on hub B, and A's sender past it", || async {
        let (on_a, on_b) = (ids_on_a().await, stream_ids(&b_data, &stream).await);
        let queued = b_status().get(3).cloned().unwrap_or_default();
        if on_a.len() == 5 && on_b == on_a && queued == "0" {
            Ok(())
        } else {
            Err(format!("{} of {} events, {queued} queued", on_b.len(), on_a.len()))
        }
    })
    .await;
    assert_eq!(b_status()[1..3], ["allowed", "config"]);
    let pull = |token: &'static str| {
        let url = format!("http://127.0.0.1:{a_port}/_openguild/federation/v1/outbox");
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(pull("pull-t0ken").await, 200);

    // A bad name or URL is refused with what is accepted.
    let (ok, said) = cli(&["federation", "allow", "hub-b.test", "ftp://hub-b.example"]);
    assert!(!ok && said.contains("must start with https://") && said.contains("loopback"), "{said}");
    let (ok, said) = cli(&["federation", "deny", "Hub B"]);
    assert!(!ok && said.contains("not a server name"), "{said}");

    // Denied from the command line: the running server refuses B shortly after, whatever its
    // configuration says, and sends it nothing more.
    let (ok, said) = cli(&["federation", "deny", "hub-b.test"]);
    assert!(ok && said.contains("hub-b.test is denied"), "{said}");
    eventually(Duration::from_secs(10), "B refused", || async {
        match signed_get_as_b(a_port, &state_path(&stream)).await {
            (403, _) => Ok(()),
            (status, answer) => Err(format!("{status} {answer}")),
        }
    })
    .await;
    assert_eq!(pull("pull-t0ken").await, 403, "a peer token does not outlive a deny");
    let root = a.register("root").await;
    let guild = match &stream {
        StreamId::Guild(g) => g.to_string(),
        _ => unreachable!(),
    };
    a.ok(Some(&root), "mutation($g: ID!) { hubArchiveGuild(guildId: $g, reason: \"closed\") }", json!({ "g": guild }))
        .await;
    assert_eq!(b_status()[1..3], ["denied", "hub-event"]);
    // The archive is queued for B (the outbox has it), and B does not get it. A negative
    // can only be waited for: a sender looks at its queue whenever the outbox moves.
    eventually(Duration::from_secs(10), "the archive queued for B", || async {
        let words = b_status();
        if words.get(3).map(String::as_str) == Some("1") { Ok(()) } else { Err(words.join(" ")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(stream_ids(&b_data, &stream).await.len(), 5, "nothing is sent to a denied peer");

    // Allowed back: what was queued meanwhile flows.
    let (ok, said) = cli(&["federation", "allow", "hub-b.test", &b_url]);
    assert!(ok && said.contains(&format!("hub-b.test is allowed at {b_url}")), "{said}");
    eventually(Duration::from_secs(20), "the archive on hub B", || async {
        let (on_a, on_b) = (ids_on_a().await, stream_ids(&b_data, &stream).await);
        if on_a.len() == 6 && on_b == on_a { Ok(()) } else { Err(format!("{} of {}", on_b.len(), on_a.len())) }
    })
    .await;
    assert_eq!(signed_get_as_b(a_port, &state_path(&stream)).await.0, 200);
    eventually(Duration::from_secs(10), "A's sender past the archive", || async {
        let words = b_status();
        if words[1..4] == ["allowed", "hub-event", "0"] { Ok(()) } else { Err(words.join(" ")) }
    })
    .await;

    assert_eq!(
        peer_events(&url).await,
        ["hub.peer_denied by @_console:hub-a.test", "hub.peer_allowed by @_console:hub-a.test"]
    );
    let (ok, said) = cli(&["events", "verify"]);
    assert!(ok && said.contains("ok:"), "events verify on hub A: {said}");
    drop((a, b));
    drop_database(&db_name).await;
}
