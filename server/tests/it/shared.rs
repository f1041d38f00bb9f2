//! A guild shared across two real hubs: hub A owns it; bob, whose account is on hub B,
//! joins it from B with A's invite (`CODE@hub-a.test`) and chats in it through B's own
//! GraphQL — his acts are proposed to A, A's answer is his — while ann on A chats back and
//! A's events reach B. A ban issued on A then stops bob on B.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::federation::{free_port, openguild, stream_ids};
use crate::support::{Server, Ws};

/// The bodies of a channel's last messages as `token` reads them on `hub`.
async fn bodies(hub: &Server, token: &str, channel: &str) -> Vec<String> {
    let m = hub
        .gql(
            Some(token),
            "query($c: ID!) { channel(id: $c) { messages(last: 50) { nodes { body author { id } } } } }",
            json!({ "c": channel }),
        )
        .await;
    m["data"]["channel"]["messages"]["nodes"]
        .as_array()
        .map(|n| n.iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Waits until `check` holds, at most `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < end, "after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn code_of(refused: &Value) -> String {
    refused["errors"][0]["extensions"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_hub_joins_and_chats_from_their_own_hub_and_a_ban_on_the_owner_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let (a_port, b_port) = (free_port(), free_port());
    for (data, seed) in [(&a_data, 7u8), (&b_data, 8)] {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(data.join("server.key"), [seed; 32]).unwrap();
    }
    let config = |peer: &str, port: u16| format!("[federation]\npeers = [\"{peer}=http://127.0.0.1:{port}\"]\n");
    let a = Server::start_on(
        &a_data,
        &config("hub-b.test", b_port),
        &[("OPENGUILD_SERVER_NAME", "hub-a.test")],
        &format!("127.0.0.1:{a_port}"),
    );
    let b = Server::start_on(
        &b_data,
        &config("hub-a.test", a_port),
        &[("OPENGUILD_SERVER_NAME", "hub-b.test")],
        &format!("127.0.0.1:{b_port}"),
    );

    // ann on A runs a guild with a channel and an invite.
    let ann = a.register("ann").await;
    let g = a.ok(Some(&ann), "mutation { createGuild(input: {name: \"Co-op\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = a
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"chat\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    a.ok(Some(&ann), post, json!({ "c": channel, "b": "welcome" })).await;
    let invite = a
        .ok(Some(&ann), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    let code = invite["createInvite"]["code"].as_str().unwrap().to_owned();

    // bob, on B, joins with A's invite: the guild and its history are on B when it returns.
    let bob = b.register("bob").await;
    let joined = b
        .ok(
            Some(&bob),
            "mutation($c: String!) { joinGuild(code: $c) { id name } }",
            json!({ "c": format!("{code}@hub-a.test") }),
        )
        .await;
    assert_eq!(joined["joinGuild"]["id"], guild.as_str(), "{joined}");
    assert_eq!(joined["joinGuild"]["name"], "Co-op");
    let mine = b.ok(Some(&bob), "{ guilds { id } }", json!({})).await;
    assert!(mine["guilds"].as_array().unwrap().iter().any(|g| g["id"] == guild.as_str()), "{mine}");
    until(Duration::from_secs(10), "ann's message readable on B", || async {
        bodies(&b, &bob, &channel).await == ["welcome"]
    })
    .await;

    // bob posts on B: it is appended by A, readable on both.
    b.ok(Some(&bob), post, json!({ "c": channel, "b": "hi from hub B" })).await;
    assert_eq!(bodies(&a, &ann, &channel).await, ["welcome", "hi from hub B"]);
    until(Duration::from_secs(10), "bob's message on B", || async {
        bodies(&b, &bob, &channel).await == ["welcome", "hi from hub B"]
    })
    .await;
    // ann answers on A; A's sender brings it to B.
    a.ok(Some(&ann), post, json!({ "c": channel, "b": "hello bob" })).await;
    until(Duration::from_secs(10), "ann's answer on B", || async {
        bodies(&b, &bob, &channel).await == ["welcome", "hi from hub B", "hello bob"]
    })
    .await;
    // bob's members list on B shows both, with their hubs.
    let members = b
        .ok(
            Some(&bob),
            "query($g: ID!) { guild(id: $g) { members(first: 10) { nodes { user { id } } } } }",
            json!({ "g": guild }),
        )
        .await;
    let ids: Vec<&str> = members["guild"]["members"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["user"]["id"].as_str())
        .collect();
    assert!(ids.contains(&"@ann:hub-a.test") && ids.contains(&"@bob:hub-b.test"), "{members}");

    // Typing crosses hubs both ways, live on each hub's own subscriptions.
    let subscription = "subscription($c: ID!) { channelEvents(channelId: $c) { kind actor { id } } }";
    let typing = "mutation($c: ID!) { typing(channelId: $c) }";
    for (watcher, token, typist, their_token, who) in
        [(&b, &bob, &a, &ann, "@ann:hub-a.test"), (&a, &ann, &b, &bob, "@bob:hub-b.test")]
    {
        let mut ws = Ws::connect(&watcher.ws_url(), token).await;
        ws.subscribe("1", subscription, json!({ "c": channel })).await;
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.unwrap()["type"], "pong");
        typist.ok(Some(their_token), typing, json!({ "c": channel })).await;
        let got = ws.next().await.unwrap();
        assert_eq!(got["payload"]["data"]["channelEvents"]["kind"], "TYPING", "{got}");
        assert_eq!(got["payload"]["data"]["channelEvents"]["actor"]["id"], who, "{got}");
    }

    // An act the rules refuse him reaches bob with its code: he cannot kick ann.
    let refused = b
        .gql(
            Some(&bob),
            "mutation($g: ID!, $u: ID!) { kickMember(guildId: $g, userId: $u) }",
            json!({ "g": guild, "u": "@ann:hub-a.test" }),
        )
        .await;
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");

    // ann bans bob on A: his next post on B is refused, and nothing of it is stored.
    a.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u, reason: \"spam\") }",
        json!({ "g": guild, "u": "@bob:hub-b.test" }),
    )
    .await;
    let refused = b.gql(Some(&bob), post, json!({ "c": channel, "b": "after the ban" })).await;
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");
    assert!(!bodies(&a, &ann, &channel).await.contains(&"after the ban".to_owned()));

    drop((a, b));
    for (data, hub) in [(&a_data, "hub-a.test"), (&b_data, "hub-b.test")] {
        let verify = openguild(data, hub, &["events", "verify"], &[]);
        let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
        assert!(verify.status.success() && said.contains("ok:"), "events verify on {hub}: {said}");
    }
}

/// Three hubs, each allowing the other two; A owns the guild.
struct Hubs {
    a: Server,
    b: Server,
    c: Server,
    data: [std::path::PathBuf; 3],
}

fn three_hubs(dir: &std::path::Path) -> Hubs {
    let names = ["hub-a.test", "hub-b.test", "hub-c.test"];
    let ports = [free_port(), free_port(), free_port()];
    let data: [std::path::PathBuf; 3] = [dir.join("a"), dir.join("b"), dir.join("c")];
    let start = |me: usize| {
        std::fs::create_dir_all(&data[me]).unwrap();
        std::fs::write(data[me].join("server.key"), [7 + me as u8; 32]).unwrap();
        let peers: Vec<String> =
            (0..3).filter(|&i| i != me).map(|i| format!("\"{}=http://127.0.0.1:{}\"", names[i], ports[i])).collect();
        let config = format!("[federation]\npeers = [{}]\n", peers.join(", "));
        Server::start_on(
            &data[me],
            &config,
            &[("OPENGUILD_SERVER_NAME", names[me])],
            &format!("127.0.0.1:{}", ports[me]),
        )
    };
    let (a, b, c) = (start(0), start(1), start(2));
    Hubs { a, b, c, data }
}

/// Whether `user` is a member of `guild` as `token` reads it on `hub`.
async fn is_member(hub: &Server, token: &str, guild: &str, user: &str) -> bool {
    let m = hub
        .gql(
            Some(token),
            "query($g: ID!) { guild(id: $g) { members(first: 50) { nodes { user { id } } } } }",
            json!({ "g": guild }),
        )
        .await;
    m["data"]["guild"]["members"]["nodes"].as_array().is_some_and(|n| n.iter().any(|m| m["user"]["id"] == user))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_living_on_a_third_hub_times_out_and_kicks_a_member_living_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let Hubs { a, b, c, data } = three_hubs(dir.path());

    // ann on A: a guild, a channel, a moderators' role, an invite.
    let ann = a.register("ann").await;
    let g = a.ok(Some(&ann), "mutation { createGuild(input: {name: \"Three\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let ch = a
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"chat\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let channel = ch["createChannel"]["id"].as_str().unwrap().to_owned();
    let role = a
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createRole(input: {guildId: $g, name: \"mods\", permissions: [KICK_MEMBERS, MODERATE_MEMBERS]}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let role = role["createRole"]["id"].as_str().unwrap().to_owned();
    let invite = a
        .ok(Some(&ann), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    let code = format!("{}@hub-a.test", invite["createInvite"]["code"].as_str().unwrap());

    // bob (B) and carol (C) join from their own hubs; ann makes carol a moderator.
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let join = "mutation($c: String!) { joinGuild(code: $c) { id } }";
    b.ok(Some(&bob), join, json!({ "c": code })).await;
    c.ok(Some(&carol), join, json!({ "c": code })).await;
    a.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!, $r: ID!) { assignRole(guildId: $g, userId: $u, roleId: $r) }",
        json!({ "g": guild, "u": "@carol:hub-c.test", "r": role }),
    )
    .await;
    // C learns of carol's role from A's sender; then she acts from C.
    until(Duration::from_secs(10), "carol's role on C", || async {
        let me = c.gql(Some(&carol), "query($g: ID!) { guild(id: $g) { me { roles } } }", json!({ "g": guild })).await;
        me["data"]["guild"]["me"]["roles"].as_array().is_some_and(|r| r.iter().any(|r| r == role.as_str()))
    })
    .await;

    // carol, on C, times bob out; bob, on B, leaves and joins again: the timeout holds.
    c.ok(
        Some(&carol),
        "mutation($g: ID!, $u: ID!) { timeoutMember(guildId: $g, userId: $u, seconds: 600, reason: \"cool off\") }",
        json!({ "g": guild, "u": "@bob:hub-b.test" }),
    )
    .await;
    until(Duration::from_secs(10), "the timeout on B", || async {
        let me =
            b.gql(Some(&bob), "query($g: ID!) { guild(id: $g) { me { timedOutUntil } } }", json!({ "g": guild })).await;
        me["data"]["guild"]["me"]["timedOutUntil"].is_string()
    })
    .await;
    b.ok(Some(&bob), "mutation($g: ID!) { leaveGuild(guildId: $g) }", json!({ "g": guild })).await;
    until(Duration::from_secs(10), "bob gone on B", || async { !is_member(&b, &bob, &guild, "@bob:hub-b.test").await })
        .await;
    b.ok(Some(&bob), join, json!({ "c": code })).await;
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let refused = b.gql(Some(&bob), post, json!({ "c": channel, "b": "I'm back" })).await;
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");

    // carol kicks bob from C; B sees him gone.
    c.ok(
        Some(&carol),
        "mutation($g: ID!, $u: ID!) { kickMember(guildId: $g, userId: $u, reason: \"enough\") }",
        json!({ "g": guild, "u": "@bob:hub-b.test" }),
    )
    .await;
    assert!(!is_member(&a, &ann, &guild, "@bob:hub-b.test").await);
    until(Duration::from_secs(10), "the kick on C's and B's copies", || async {
        !is_member(&c, &carol, &guild, "@bob:hub-b.test").await
    })
    .await;

    // Every hub's copy of the guild stream is A's, and the audit log shows carol's acts.
    let stream = openguild_domain::StreamId::Guild(guild.parse().unwrap());
    let on_a = stream_ids(&data[0], &stream).await;
    for d in &data[1..] {
        let d = d.clone();
        let (stream, on_a) = (stream.clone(), on_a.clone());
        until(Duration::from_secs(10), "every copy equal to A's", move || {
            let (d, stream, on_a) = (d.clone(), stream.clone(), on_a.clone());
            async move { stream_ids(&d, &stream).await == on_a }
        })
        .await;
    }
    let audit = a
        .ok(
            Some(&ann),
            "query($g: ID!) { auditLog(guildId: $g, first: 50) { nodes { kind actor } } }",
            json!({ "g": guild }),
        )
        .await;
    let acts: Vec<(String, String)> = audit["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (n["kind"].as_str().unwrap_or_default().to_owned(), n["actor"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    for kind in ["member.timed_out", "member.kicked"] {
        assert!(acts.contains(&(kind.to_owned(), "@carol:hub-c.test".to_owned())), "{kind} by carol: {acts:?}");
    }
    // Slow mode set on A holds for carol posting from C: her second post is refused with
    // how long to wait.
    a.ok(Some(&ann), "mutation($c: ID!) { setSlowMode(channelId: $c, seconds: 60) { id } }", json!({ "c": channel }))
        .await;
    until(Duration::from_secs(10), "slow mode on C", || async {
        let seen = c
            .gql(Some(&carol), "query($c: ID!) { channel(id: $c) { slowModeSeconds } }", json!({ "c": channel }))
            .await;
        seen["data"]["channel"]["slowModeSeconds"] == 60
    })
    .await;
    c.ok(Some(&carol), post, json!({ "c": channel, "b": "order, please" })).await;
    let (code, err) = c.refused(Some(&carol), post, json!({ "c": channel, "b": "and again" })).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");
    assert!(err["extensions"]["retryAfter"].as_f64().is_some_and(|s| s > 0.0), "{err}");

    // With A down, what carol asks of A's guild from C is UNAVAILABLE, not lost in silence.
    drop(a);
    let (code, err) =
        c.refused(Some(&carol), "mutation($g: ID!) { leaveGuild(guildId: $g) }", json!({ "g": guild })).await;
    assert_eq!(code, "UNAVAILABLE", "{err}");
    assert!(err["message"].as_str().unwrap_or_default().contains("cannot be reached"), "{err}");
    drop((b, c));
    for (d, hub) in data.iter().zip(["hub-a.test", "hub-b.test", "hub-c.test"]) {
        let verify = openguild(d, hub, &["events", "verify"], &[]);
        let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
        assert!(verify.status.success() && said.contains("ok:"), "events verify on {hub}: {said}");
    }
}
