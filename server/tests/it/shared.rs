//! A guild shared across two real hubs: hub A owns it; bob, whose account is on hub B,
//! joins it from B with A's invite (`CODE@hub-a.test`) and chats in it through B's own
//! GraphQL — his acts are proposed to A, A's answer is his — while ann on A chats back and
//! A's events reach B: posts, edits, reactions, deletions, typing. A ban issued on A then
//! stops bob on B. Three hubs: every kind of act from each reaches all three, live, in one
//! order; a moderator on C acts on a member on B; partitions and restarts converge.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::federation::{free_port, stream_ids, verify_on};
use crate::support::{Server, Ws};

/// A guild made by `token` on `hub`, with a text channel `chat`: their ids.
pub(crate) async fn guild_with_channel(hub: &Server, token: &str, name: &str) -> (String, String) {
    let g = hub
        .ok(Some(token), "mutation($n: String!) { createGuild(input: {name: $n}) { id } }", json!({ "n": name }))
        .await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = hub
        .ok(
            Some(token),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"chat\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    (guild, c["createChannel"]["id"].as_str().unwrap().to_owned())
}

/// Hubs `hub-a.test` and `hub-b.test`, each the other's peer, with keys from `seeds`, their
/// data in `dir`'s `a` and `b`.
pub(crate) fn two_hubs(dir: &std::path::Path, seeds: (u8, u8)) -> (Server, Server) {
    let (a_data, b_data) = (dir.join("a"), dir.join("b"));
    let (a_port, b_port) = (free_port(), free_port());
    for (data, seed) in [(&a_data, seeds.0), (&b_data, seeds.1)] {
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
    (a, b)
}

/// `joiner` joins `guild` on `hub` with a fresh invite made by `owner`.
pub(crate) async fn join_by_invite(hub: &Server, owner: &str, guild: &str, joiner: &str) {
    let code = invite_code(hub, owner, guild).await;
    hub.ok(Some(joiner), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": code })).await;
}

/// A new invite code of `guild`, made by `token` on `hub`.
pub(crate) async fn invite_code(hub: &Server, token: &str, guild: &str) -> String {
    let invite = hub
        .ok(Some(token), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    invite["createInvite"]["code"].as_str().unwrap().to_owned()
}

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
    let (a, b) = two_hubs(dir.path(), (7, 8));

    // ann on A runs a guild with a channel and an invite.
    let ann = a.register("ann").await;
    let (guild, channel) = guild_with_channel(&a, &ann, "Co-op").await;
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let welcome = a.ok(Some(&ann), post, json!({ "c": channel, "b": "welcome" })).await;
    let welcome = welcome["sendMessage"]["id"].as_str().unwrap().to_owned();
    let code = invite_code(&a, &ann, &guild).await;

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
    let hi = b.ok(Some(&bob), post, json!({ "c": channel, "b": "hi from hub B" })).await;
    let hi = hi["sendMessage"]["id"].as_str().unwrap().to_owned();
    assert_eq!(bodies(&a, &ann, &channel).await, ["welcome", "hi from hub B"]);
    until(Duration::from_secs(10), "bob's message on B", || async {
        bodies(&b, &bob, &channel).await == ["welcome", "hi from hub B"]
    })
    .await;
    // ann answers on A; A's sender brings it to B.
    let hello = a.ok(Some(&ann), post, json!({ "c": channel, "b": "hello bob" })).await;
    let hello = hello["sendMessage"]["id"].as_str().unwrap().to_owned();
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

    // bob edits his post and reacts to ann's, from B; ann deletes her first one on A: both
    // hubs show all three.
    b.ok(
        Some(&bob),
        "mutation($m: ID!) { editMessage(id: $m, body: \"hi from hub B, edited\") { id } }",
        json!({ "m": hi }),
    )
    .await;
    b.ok(Some(&bob), "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"👍\") }", json!({ "m": hello })).await;
    a.ok(Some(&ann), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": welcome })).await;
    for (hub, token, name) in [(&a, &ann, "A"), (&b, &bob, "B")] {
        let what = format!("the edit, the reaction and the deletion on {name}");
        until(Duration::from_secs(10), &what, || async {
            let m = hub
                .gql(
                    Some(token),
                    "query($c: ID!) { channel(id: $c) { messages(last: 10) { nodes { body deleted reactions { emoji count } } } } }",
                    json!({ "c": channel }),
                )
                .await;
            let nodes = m["data"]["channel"]["messages"]["nodes"].clone();
            nodes[0]["deleted"] == true
                && nodes[1]["body"] == "hi from hub B, edited"
                && nodes[2]["reactions"] == json!([{ "emoji": "👍", "count": 1 }])
        })
        .await;
    }

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

    // bob follows the guild on B; ann bans him on A: the ban reaches B, which ends his
    // subscription at once and refuses his next post; nothing of it is stored.
    let mut follow = Ws::connect(&b.ws_url(), &bob).await;
    follow.subscribe("g", "subscription($g: ID!) { guildEvents(guildId: $g) { kind } }", json!({ "g": guild })).await;
    follow.send(json!({ "type": "ping" })).await;
    assert_eq!(follow.next().await.unwrap()["type"], "pong");
    a.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u, reason: \"spam\") }",
        json!({ "g": guild, "u": "@bob:hub-b.test" }),
    )
    .await;
    let ended = follow.next().await.unwrap();
    assert_eq!(ended["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{ended}");
    assert_eq!(follow.next().await.unwrap(), json!({ "id": "g", "type": "complete" }));
    let refused = b.gql(Some(&bob), post, json!({ "c": channel, "b": "after the ban" })).await;
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");
    assert!(!bodies(&a, &ann, &channel).await.contains(&"after the ban".to_owned()));

    drop((a, b));
    for (data, hub) in [(dir.path().join("a"), "hub-a.test"), (dir.path().join("b"), "hub-b.test")] {
        verify_on(&data, hub);
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
    let (guild, channel) = guild_with_channel(&a, &ann, "Three").await;
    let role = a
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createRole(input: {guildId: $g, name: \"mods\", permissions: [KICK_MEMBERS, MODERATE_MEMBERS, VIEW_AUDIT_LOG]}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let role = role["createRole"]["id"].as_str().unwrap().to_owned();
    let code = format!("{}@hub-a.test", invite_code(&a, &ann, &guild).await);

    // bob (B) and carol (C) join from their own hubs; ann makes carol a moderator.
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let join = "mutation($c: String!) { joinGuild(code: $c) { id } }";
    b.ok(Some(&bob), join, json!({ "c": code })).await;
    c.ok(Some(&carol), join, json!({ "c": code })).await;
    // erin, also on B, reads the audit log: B's own copy shows what carol does.
    let erin = b.register("erin").await;
    b.ok(Some(&erin), join, json!({ "c": code })).await;
    let auditors = a
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createRole(input: {guildId: $g, name: \"auditors\", permissions: [VIEW_AUDIT_LOG]}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    a.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!, $r: ID!) { assignRole(guildId: $g, userId: $u, roleId: $r) }",
        json!({ "g": guild, "u": "@erin:hub-b.test", "r": auditors["createRole"]["id"] }),
    )
    .await;
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
    // The audit log shows carol's acts on the owner, on her own hub's copy, and on B's (each
    // hub's audit read model follows its own store).
    for (hub, token, name) in [(&a, &ann, "A"), (&c, &carol, "C"), (&b, &erin, "B")] {
        let what = format!("carol's timeout and kick in the audit log on {name}");
        until(Duration::from_secs(10), &what, || async {
            let audit = hub
                .gql(
                    Some(token),
                    "query($g: ID!) { auditLog(guildId: $g, first: 50) { nodes { kind actor } } }",
                    json!({ "g": guild }),
                )
                .await;
            let acts: Vec<(String, String)> = audit["data"]["auditLog"]["nodes"]
                .as_array()
                .map(|nodes| {
                    nodes
                        .iter()
                        .map(|n| {
                            let kind = n["kind"].as_str().unwrap_or_default().to_owned();
                            (kind, n["actor"].as_str().unwrap_or_default().to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            ["member.timed_out", "member.kicked"]
                .iter()
                .all(|kind| acts.contains(&(kind.to_string(), "@carol:hub-c.test".to_owned())))
        })
        .await;
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
        verify_on(d, hub);
    }
}

/// What a member sees of a guild on their own hub, for comparing copies: every message of
/// the channel (id, body, author, deleted; up to 200, a page), the members with their roles,
/// the roles with their permissions, the bans (the viewer needs BAN_MEMBERS).
async fn read_models(hub: &Server, token: &str, guild: &str, channel: &str) -> Value {
    let q = "query($g: ID!, $c: ID!) {
        channel(id: $c) { messages(last: 200) { nodes { id body author { id } deleted } } }
        guild(id: $g) {
            roles { id name permissions }
            members(first: 100) { nodes { user { id } roles } }
            bans { user { id } by { id } reason }
        }
    }";
    let v = hub.ok(Some(token), q, json!({ "g": guild, "c": channel })).await;
    let mut members = v["guild"]["members"]["nodes"].as_array().cloned().unwrap_or_default();
    members.sort_by_key(|m| m["user"]["id"].as_str().unwrap_or_default().to_owned());
    let mut bans = v["guild"]["bans"].as_array().cloned().unwrap_or_default();
    bans.sort_by_key(|b| b["user"]["id"].as_str().unwrap_or_default().to_owned());
    json!({ "messages": v["channel"]["messages"]["nodes"], "roles": v["guild"]["roles"], "members": members, "bans": bans })
}

/// A running hub of the three.
fn at(hubs: &[Option<Server>], i: usize) -> &Server {
    hubs[i].as_ref().expect("the hub is running")
}

/// At most this many posts in all, so that `read_models` sees every one.
const MAX_POSTS: usize = 190;

/// Three hubs whose every connection to each other passes through fault proxies: latency,
/// drops, resets and lost answers, then a total partition, then healed; hub B is killed
/// after the bad network and restarted a while after the healing. Users on all three keep
/// posting (users of B and C through proposals to A). No post is refused: one whose
/// owner cannot be reached waits in its hub's queue. Afterwards the three copies read the
/// same — messages, members, roles, bans — and every post is there exactly once: one whose
/// answer was lost on the way is tried again with the same nonce, which the owner refuses
/// as a replay instead of appending it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_behind_a_bad_network_and_a_partition_end_with_the_same_read_models() {
    use crate::faults::{Faults, Partition, Plan, Proxy};
    let dir = tempfile::tempdir().unwrap();
    let names = ["hub-a.test", "hub-b.test", "hub-c.test"];
    let ports = [free_port(), free_port(), free_port()];
    let faults = Faults::new();
    // proxies[i] leads to hub i: every hub reaches the others through them.
    let mut proxies = Vec::new();
    for port in ports {
        proxies.push(Proxy::start(([127, 0, 0, 1], port).into(), faults.clone()).await);
    }
    let data: Vec<std::path::PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let start = |me: usize| {
        std::fs::create_dir_all(&data[me]).unwrap();
        std::fs::write(data[me].join("server.key"), [7 + me as u8; 32]).unwrap();
        let peers: Vec<String> =
            (0..3).filter(|&i| i != me).map(|i| format!("\"{}=http://{}\"", names[i], proxies[i].addr)).collect();
        let config = format!("[federation]\npeers = [{}]\nretry_max_seconds = 2\n", peers.join(", "));
        Server::start_on(
            &data[me],
            &config,
            &[("OPENGUILD_SERVER_NAME", names[me])],
            &format!("127.0.0.1:{}", ports[me]),
        )
    };
    let mut hubs = vec![Some(start(0)), Some(start(1)), Some(start(2))];

    let ann = at(&hubs, 0).register("ann").await;
    let (guild, channel) = guild_with_channel(at(&hubs, 0), &ann, "Weather").await;
    let code = format!("{}@hub-a.test", invite_code(at(&hubs, 0), &ann, &guild).await);
    let bob = at(&hubs, 1).register("bob").await;
    let carol = at(&hubs, 2).register("carol").await;
    let join = "mutation($c: String!) { joinGuild(code: $c) { id } }";
    at(&hubs, 1).ok(Some(&bob), join, json!({ "c": code })).await;
    at(&hubs, 2).ok(Some(&carol), join, json!({ "c": code })).await;
    // dave (C) and erin (B) join too; bob and carol become wardens, who may ban, and carol
    // bans erin from C before the network turns bad (ann bans dave while it is bad).
    let dave = at(&hubs, 2).register("dave").await;
    at(&hubs, 2).ok(Some(&dave), join, json!({ "c": code })).await;
    let erin = at(&hubs, 1).register("erin").await;
    at(&hubs, 1).ok(Some(&erin), join, json!({ "c": code })).await;
    let wardens = at(&hubs, 0)
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createRole(input: {guildId: $g, name: \"wardens\", permissions: [BAN_MEMBERS]}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let wardens = wardens["createRole"]["id"].as_str().unwrap().to_owned();
    for user in ["@bob:hub-b.test", "@carol:hub-c.test"] {
        at(&hubs, 0)
            .ok(
                Some(&ann),
                "mutation($g: ID!, $u: ID!, $r: ID!) { assignRole(guildId: $g, userId: $u, roleId: $r) }",
                json!({ "g": guild, "u": user, "r": wardens }),
            )
            .await;
    }
    until(Duration::from_secs(10), "carol a warden on C", || async {
        let me = at(&hubs, 2)
            .gql(Some(&carol), "query($g: ID!) { guild(id: $g) { me { roles } } }", json!({ "g": guild }))
            .await;
        me["data"]["guild"]["me"]["roles"].as_array().is_some_and(|r| r.iter().any(|r| r == wardens.as_str()))
    })
    .await;
    let ban = "mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u, reason: \"test\") }";
    at(&hubs, 2).ok(Some(&carol), ban, json!({ "g": guild, "u": "@erin:hub-b.test" })).await;

    // Everyone posts, a post every 200 ms round the three, through the phases. Hub B is
    // killed after the bad network and comes back once it has healed.
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let tokens = [&ann, &bob, &carol];
    let mut told_ok: Vec<String> = Vec::new();
    let mut n = 0;
    let bad = Plan {
        latency: (Duration::from_millis(5), Duration::from_millis(80)),
        drop: 0.1,
        lose_answer: 0.1,
        reset: 0.1,
        partition: None,
    };
    let mut turn = 0;
    for (plan, length, b_up) in [
        (bad, Duration::from_secs(15), true),
        (Plan { partition: Some(Partition::Refuse), ..Plan::default() }, Duration::from_secs(5), false),
        (Plan { partition: Some(Partition::BlackHole), ..Plan::default() }, Duration::from_secs(5), false),
        (Plan::default(), Duration::from_secs(4), false),
        (Plan::default(), Duration::from_secs(4), true),
    ] {
        faults.set(plan);
        match (b_up, hubs[1].is_some()) {
            (false, true) => hubs[1] = None,
            (true, false) => hubs[1] = Some(start(1)),
            _ => {}
        }
        let end = Instant::now() + length;
        while Instant::now() < end && n < MAX_POSTS {
            turn += 1;
            if turn == 5 {
                at(&hubs, 0).ok(Some(&ann), ban, json!({ "g": guild, "u": "@dave:hub-c.test" })).await;
            }
            let Some(hub) = &hubs[turn % 3] else { continue };
            let token = tokens[turn % 3];
            let body = format!("post {n}");
            n += 1;
            let r = hub.gql(Some(token), post, json!({ "c": channel, "b": body })).await;
            // A post is never refused for the owner's absence: it is appended, or it waits.
            assert!(r["errors"].is_null(), "{body}: {r}");
            told_ok.push(body);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!("{n} posts, {} told they succeeded; faults: {:?}", told_ok.len(), faults.tally());
    assert!(n <= MAX_POSTS, "the comparison reads the last 200 messages");

    // Healed: the three copies converge.
    let end = Instant::now() + Duration::from_secs(120);
    let on_a = loop {
        let views = [
            read_models(at(&hubs, 0), &ann, &guild, &channel).await,
            read_models(at(&hubs, 1), &bob, &guild, &channel).await,
            read_models(at(&hubs, 2), &carol, &guild, &channel).await,
        ];
        if views[0] == views[1] && views[1] == views[2] {
            break views[0].clone();
        }
        assert!(
            Instant::now() < end,
            "the copies still differ after 2 min:\nA {}\nB {}\nC {}",
            views[0],
            views[1],
            views[2]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(on_a["bans"].as_array().map(Vec::len), Some(2), "erin's and dave's bans: {}", on_a["bans"]);
    let bodies: Vec<&str> = on_a["messages"].as_array().unwrap().iter().filter_map(|m| m["body"].as_str()).collect();
    for body in &told_ok {
        assert_eq!(bodies.iter().filter(|b| *b == body).count(), 1, "{body} once: {bodies:?}");
    }
    let mut unique = bodies.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), bodies.len(), "no post twice: {bodies:?}");
    assert_eq!(bodies.len(), n, "every post, and nothing else: {bodies:?}");
    drop(hubs);
    for (d, hub) in data.iter().zip(names) {
        verify_on(d, hub);
    }
}

/// bob on B posts while hub A, the guild's owner, is down: each post is answered as pending
/// and waits in B's queue; when A is back they are appended in order, once each, and reach
/// both hubs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_made_while_the_owner_is_down_wait_and_arrive_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let (a_port, b_port) = (free_port(), free_port());
    for (data, seed) in [(&a_data, 7u8), (&b_data, 8)] {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(data.join("server.key"), [seed; 32]).unwrap();
    }
    let config = |peer: &str, port: u16| {
        format!("[federation]\npeers = [\"{peer}=http://127.0.0.1:{port}\"]\nretry_max_seconds = 1\n")
    };
    let start_a = || {
        Server::start_on(
            &a_data,
            &config("hub-b.test", b_port),
            &[("OPENGUILD_SERVER_NAME", "hub-a.test")],
            &format!("127.0.0.1:{a_port}"),
        )
    };
    let a = start_a();
    let b = Server::start_on(
        &b_data,
        &config("hub-a.test", a_port),
        &[("OPENGUILD_SERVER_NAME", "hub-b.test")],
        &format!("127.0.0.1:{b_port}"),
    );
    let ann = a.register("ann").await;
    let (guild, channel) = guild_with_channel(&a, &ann, "Patience").await;
    let code = format!("{}@hub-a.test", invite_code(&a, &ann, &guild).await);
    let bob = b.register("bob").await;
    b.ok(Some(&bob), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": code })).await;

    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id pending } }";
    let sent = b.ok(Some(&bob), post, json!({ "c": channel, "b": "before" })).await;
    assert_eq!(sent["sendMessage"]["pending"], false, "{sent}");

    // A goes down; bob keeps posting: pending, not refused, not lost.
    drop(a);
    for text in ["one", "two", "three"] {
        let sent = b.ok(Some(&bob), post, json!({ "c": channel, "b": text })).await;
        assert_eq!(sent["sendMessage"]["pending"], true, "{sent}");
    }
    // A comes back: the queue drains in order, once.
    let a = start_a();
    let want = ["before", "one", "two", "three"];
    until(Duration::from_secs(30), "the queued posts on A", || async { bodies(&a, &ann, &channel).await == want })
        .await;
    until(Duration::from_secs(30), "the queued posts on B", || async { bodies(&b, &bob, &channel).await == want })
        .await;
    // And nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bodies(&a, &ann, &channel).await, want);
}

/// A channel's last messages as `token` reads them on `hub`: id, body, deleted, author,
/// reactions.
async fn timeline(hub: &Server, token: &str, channel: &str) -> Value {
    let m = hub
        .gql(
            Some(token),
            "query($c: ID!) { channel(id: $c) { messages(last: 10) { nodes { id body deleted author { id } reactions { emoji count } } } } }",
            json!({ "c": channel }),
        )
        .await;
    m["data"]["channel"]["messages"]["nodes"].clone()
}

/// The kinds and event ids a `channelEvents` subscription delivers, typing left out, until
/// it has `n` of them.
async fn live_events(ws: &mut Ws, n: usize) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let got = ws.next().await.unwrap_or_else(|| panic!("the subscription ended after {seen:?}"));
        let event = &got["payload"]["data"]["channelEvents"];
        assert!(event.is_object(), "{got}");
        if event["kind"] != "TYPING" {
            seen.push((event["kind"].as_str().unwrap().to_owned(), event["eventId"].as_str().unwrap().to_owned()));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_edits_reactions_and_deletions_from_three_hubs_reach_all_three_live_in_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let Hubs { a, b, c, data } = three_hubs(dir.path());
    let ann = a.register("ann").await;
    let (guild, channel) = guild_with_channel(&a, &ann, "Everyone").await;
    let code = format!("{}@hub-a.test", invite_code(&a, &ann, &guild).await);
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let join = "mutation($c: String!) { joinGuild(code: $c) { id } }";
    b.ok(Some(&bob), join, json!({ "c": code })).await;
    c.ok(Some(&carol), join, json!({ "c": code })).await;
    let people = [(&a, &ann, "ann"), (&b, &bob, "bob"), (&c, &carol, "carol")];
    for (hub, token, name) in &people[1..] {
        until(Duration::from_secs(10), &format!("the channel on {name}'s hub"), || async {
            let seen = hub.gql(Some(token), "query($c: ID!) { channel(id: $c) { id } }", json!({ "c": channel })).await;
            seen["data"]["channel"]["id"] == channel.as_str()
        })
        .await;
    }

    // Each of the three follows the channel live on their own hub.
    let subscription = "subscription($c: ID!) { channelEvents(channelId: $c) { kind eventId } }";
    let mut follows = Vec::new();
    for (hub, token, _) in people {
        let mut ws = Ws::connect(&hub.ws_url(), token).await;
        ws.subscribe("1", subscription, json!({ "c": channel })).await;
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.unwrap()["type"], "pong");
        follows.push(ws);
    }

    // Each posts twice from their own hub, edits their first post, reacts to the next
    // one's first post, and deletes their second.
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    for (hub, token, name) in people {
        for (n, into) in [(1, &mut firsts), (2, &mut seconds)] {
            let sent = hub.ok(Some(token), post, json!({ "c": channel, "b": format!("{name} {n}") })).await;
            let id = sent["sendMessage"]["id"].as_str().unwrap().to_owned();
            // Their own post reads back at once on their hub, however far behind the owner
            // their hub's copy of the channel was.
            let mine = timeline(hub, token, &channel).await;
            assert!(mine.as_array().unwrap().iter().any(|m| m["id"] == id.as_str()), "{name} {n} on their hub: {mine}");
            into.push(id);
        }
    }
    // Each sees all six posts on their own hub before acting on the others' ones.
    for (hub, token, name) in people {
        until(Duration::from_secs(10), &format!("the six posts on {name}'s hub"), || async {
            timeline(hub, token, &channel).await.as_array().is_some_and(|m| m.len() == 6)
        })
        .await;
    }
    for (i, (hub, token, name)) in people.into_iter().enumerate() {
        let emoji = ["👍", "🎉", "👀"][i];
        hub.ok(
            Some(token),
            "mutation($m: ID!, $b: String!) { editMessage(id: $m, body: $b) { id } }",
            json!({ "m": firsts[i], "b": format!("{name} 1, edited") }),
        )
        .await;
        hub.ok(
            Some(token),
            "mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) }",
            json!({ "m": firsts[(i + 1) % 3], "e": emoji }),
        )
        .await;
        hub.ok(Some(token), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": seconds[i] })).await;
    }

    // Every subscription saw the same fifteen events in the same order: the owner's.
    let mut orders = Vec::new();
    for ws in &mut follows {
        orders.push(live_events(ws, 15).await);
    }
    let kinds: Vec<&str> = orders[0].iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "MESSAGE_POSTED").count(), 6, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "MESSAGE_EDITED").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "REACTION_ADDED").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "MESSAGE_DELETED").count(), 3, "{kinds:?}");
    assert_eq!(orders[1], orders[0], "B's live order is A's");
    assert_eq!(orders[2], orders[0], "C's live order is A's");

    // And every hub's timeline reads the same: edited firsts with one reaction each,
    // deleted seconds, in the order they were posted.
    let on_a = timeline(&a, &ann, &channel).await;
    let bodies: Vec<&str> = on_a.as_array().unwrap().iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(bodies, ["ann 1, edited", "bob 1, edited", "carol 1, edited"], "{on_a}");
    assert_eq!(on_a.as_array().unwrap().iter().filter(|m| m["deleted"] == true).count(), 3, "{on_a}");
    assert_eq!(on_a[0]["reactions"], json!([{ "emoji": "👀", "count": 1 }]), "{on_a}");
    for (hub, token, name) in [(&b, &bob, "B"), (&c, &carol, "C")] {
        until(Duration::from_secs(10), &format!("{name}'s timeline equal to A's"), || async {
            timeline(hub, token, &channel).await == on_a
        })
        .await;
    }
    drop((a, b, c));
    for (d, hub) in data.iter().zip(["hub-a.test", "hub-b.test", "hub-c.test"]) {
        verify_on(d, hub);
    }
}
