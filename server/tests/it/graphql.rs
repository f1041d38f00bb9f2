//! The GraphQL API end to end, over real HTTP and websockets against a real `openguild
//! serve`: chat, moderation and its effect on live subscriptions, resume without gap or
//! duplicate, the graphql-transport-ws close codes, and the limits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, Ws};

const CHANNEL_EVENTS: &str = "subscription($c: ID!, $since: String) { channelEvents(channelId: $c, since: $since) { \
    cursor kind actor { id } message { id body } messageId body emoji reason } }";

/// The `channelEvents` payload of a `next` message for subscription `id`.
async fn event(ws: &mut Ws, id: &str) -> Value {
    let msg = ws.next().await.expect("the socket closed");
    assert_eq!((msg["type"].as_str(), msg["id"].as_str()), (Some("next"), Some(id)), "{msg}");
    msg["payload"]["data"]["channelEvents"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_moderation_arrive_live_and_moderation_takes_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "", &[]);
    let ann = server.register("ann").await;
    let bob = server.register("bob").await;

    // Ann creates a guild, a channel and an invite; Bob joins with the invite's code.
    let g = server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Co-op\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"general\", kind: TEXT}) { id name kind } }",
            json!({ "g": guild }),
        )
        .await;
    assert_eq!(c["createChannel"]["kind"], "TEXT");
    let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
    let i = server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createInvite(input: {guildId: $g, maxUses: 5}) { code } }",
            json!({ "g": guild }),
        )
        .await;
    let code = i["createInvite"]["code"].as_str().unwrap().to_owned();
    let joined =
        server.ok(Some(&bob), "mutation($c: String!) { joinGuild(code: $c) { id name } }", json!({ "c": code })).await;
    assert_eq!(joined["joinGuild"]["name"], "Co-op");
    // Read-your-writes: Bob's guild list shows the guild right after the join.
    let mine = server.ok(Some(&bob), "{ guilds { id members { edges { node { user { id } } } } } }", json!({})).await;
    assert_eq!(mine["guilds"][0]["id"], guild.as_str());
    assert_eq!(mine["guilds"][0]["members"]["edges"].as_array().unwrap().len(), 2);

    // Both follow the channel.
    let mut ann_ws = Ws::connect(&server.ws_url(), &ann).await;
    let mut bob_ws = Ws::connect(&server.ws_url(), &bob).await;
    ann_ws.subscribe("a", CHANNEL_EVENTS, json!({ "c": channel })).await;
    bob_ws.subscribe("b", CHANNEL_EVENTS, json!({ "c": channel })).await;
    // A subscription is registered when the server has read it; a message sent after
    // a round trip on the same socket is certain to find it.
    for ws in [&mut ann_ws, &mut bob_ws] {
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.unwrap()["type"], "pong");
    }

    let sent = server
        .ok(
            Some(&bob),
            "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"hello **co-op**\"}) { id body author { id } } }",
            json!({ "c": channel }),
        )
        .await;
    let message = sent["sendMessage"]["id"].as_str().unwrap().to_owned();
    let mut first_cursor = String::new();
    for (ws, id) in [(&mut ann_ws, "a"), (&mut bob_ws, "b")] {
        let e = event(ws, id).await;
        assert_eq!(e["kind"], "MESSAGE_POSTED");
        assert_eq!(e["message"]["body"], "hello **co-op**");
        assert_eq!(e["actor"]["id"], "@bob:hub.test");
        first_cursor = e["cursor"].as_str().unwrap().to_owned();
    }
    let edit = "mutation($m: ID!) { editMessage(id: $m, body: \"hello, co-op\") { body editedAt } }";
    let edited = server.ok(Some(&bob), edit, json!({ "m": message })).await;
    assert_eq!(edited["editMessage"]["body"], "hello, co-op");
    server
        .ok(Some(&ann), "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"🎉\") }", json!({ "m": message }))
        .await;
    server
        .ok(Some(&bob), "mutation($m: ID!) { deleteMessage(id: $m, reason: \"typo\") }", json!({ "m": message }))
        .await;
    for (ws, id) in [(&mut ann_ws, "a"), (&mut bob_ws, "b")] {
        let e = event(ws, id).await;
        assert_eq!((e["kind"].as_str(), e["body"].as_str()), (Some("MESSAGE_EDITED"), Some("hello, co-op")));
        let e = event(ws, id).await;
        assert_eq!((e["kind"].as_str(), e["emoji"].as_str()), (Some("REACTION_ADDED"), Some("🎉")));
        let e = event(ws, id).await;
        assert_eq!((e["kind"].as_str(), e["messageId"].as_str()), (Some("MESSAGE_DELETED"), Some(message.as_str())));
    }
    let history = server
        .ok(
            Some(&ann),
            "query($c: ID!) { channel(id: $c) { messages(last: 10) { edges { node { body deleted } } } } }",
            json!({ "c": channel }),
        )
        .await;
    assert_eq!(history["channel"]["messages"]["edges"][0]["node"], json!({ "body": null, "deleted": true }));

    // Resume: a new subscription from the first cursor gets exactly what came after it.
    let mut resumed = Ws::connect(&server.ws_url(), &ann).await;
    resumed.subscribe("r", CHANNEL_EVENTS, json!({ "c": channel, "since": first_cursor })).await;
    let kinds: Vec<String> = {
        let mut k = Vec::new();
        for _ in 0..3 {
            k.push(event(&mut resumed, "r").await["kind"].as_str().unwrap().to_owned());
        }
        k
    };
    assert_eq!(kinds, ["MESSAGE_EDITED", "REACTION_ADDED", "MESSAGE_DELETED"]);
    resumed.quiet(Duration::from_millis(300)).await;

    // A timeout stops Bob's messages with FORBIDDEN, and nothing else.
    server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { timeoutMember(guildId: $g, userId: \"@bob:hub.test\", seconds: 600, reason: \"cool off\") }",
            json!({ "g": guild }),
        )
        .await;
    let send = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let (code, err) = server.refused(Some(&bob), send, json!({ "c": channel, "b": "let me speak" })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(err["message"].as_str().unwrap().contains("timed out"), "{err}");
    server
        .ok(
            Some(&bob),
            "query($c: ID!) { channel(id: $c) { messages(last: 5) { edges { cursor } } } }",
            json!({ "c": channel }),
        )
        .await;
    server.ok(Some(&ann), send, json!({ "c": channel, "b": "still here" })).await;
    for (ws, id) in [(&mut ann_ws, "a"), (&mut bob_ws, "b")] {
        assert_eq!(event(ws, id).await["message"]["body"], "still here", "the timed-out member still receives");
    }

    // The audit log shows the timeout with its reason.
    let audit = server
        .ok(
            Some(&ann),
            "query($g: ID!) { auditLog(guildId: $g, filter: {kinds: [\"member.timed_out\"]}) { edges { node { kind actor target reason eventId } } } }",
            json!({ "g": guild }),
        )
        .await;
    let entry = &audit["auditLog"]["edges"][0]["node"];
    assert_eq!((entry["target"].as_str(), entry["reason"].as_str()), (Some("@bob:hub.test"), Some("cool off")));
    // The kinds a filter can offer come from the server, the kind just recorded among them.
    let kinds = server.ok(Some(&bob), "{ auditKinds }", json!({})).await;
    let kinds: Vec<&str> = kinds["auditKinds"].as_array().unwrap().iter().filter_map(|k| k.as_str()).collect();
    assert!(kinds.contains(&"member.timed_out") && kinds.contains(&"message.redacted"), "{kinds:?}");
    let (code, _) = server
        .refused(Some(&bob), "query($g: ID!) { auditLog(guildId: $g) { edges { cursor } } }", json!({ "g": guild }))
        .await;
    assert_eq!(code, "FORBIDDEN", "members without VIEW_AUDIT_LOG cannot read it");

    // Slow mode: a message within the window is RATE_LIMITED with retryAfter.
    server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { removeTimeout(guildId: $g, userId: \"@bob:hub.test\") }",
            json!({ "g": guild }),
        )
        .await;
    server
        .ok(
            Some(&ann),
            "mutation($c: ID!) { setSlowMode(channelId: $c, seconds: 30) { slowModeSeconds } }",
            json!({ "c": channel }),
        )
        .await;
    // Bob posted less than 30 s ago: his next message must wait.
    let (code, err) = server.refused(Some(&bob), send, json!({ "c": channel, "b": "too soon" })).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");
    let retry = err["extensions"]["retryAfter"].as_f64().unwrap();
    assert!(retry > 20.0 && retry <= 30.0, "{err}");
    // Moderators are exempt.
    server.ok(Some(&ann), send, json!({ "c": channel, "b": "one" })).await;
    for (ws, id) in [(&mut ann_ws, "a"), (&mut bob_ws, "b")] {
        assert_eq!(event(ws, id).await["message"]["body"], "one");
    }

    // A ban ends the banned user's subscription at once, and only theirs.
    server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { banMember(guildId: $g, userId: \"@bob:hub.test\", reason: \"spam\") }",
            json!({ "g": guild }),
        )
        .await;
    server.ok(Some(&ann), send, json!({ "c": channel, "b": "after the ban" })).await;
    let ended = bob_ws.next().await.unwrap();
    assert_eq!((ended["type"].as_str(), ended["id"].as_str()), (Some("next"), Some("b")), "{ended}");
    assert_eq!(ended["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert_eq!(bob_ws.next().await.unwrap(), json!({ "id": "b", "type": "complete" }));
    bob_ws.quiet(Duration::from_millis(300)).await;
    assert_eq!(event(&mut ann_ws, "a").await["message"]["body"], "after the ban");
    let (code, _) =
        server.refused(Some(&bob), "query($g: ID!) { guild(id: $g) { name } }", json!({ "g": guild })).await;
    assert_eq!(code, "FORBIDDEN");

    // The guild as it was before the ban, computed from the events.
    let before_ban: u64 = first_cursor.parse().unwrap();
    let at = server
        .ok(
            Some(&ann),
            "query($g: ID!, $p: Int!) { guildAt(id: $g, at: {position: $p}) { members { userId } bans { userId } } }",
            json!({ "g": guild, "p": before_ban }),
        )
        .await;
    assert_eq!(at["guildAt"]["members"].as_array().unwrap().len(), 2);
    assert_eq!(at["guildAt"]["bans"], json!([]));

    // Who decided what: the explanation names the role or overwrite.
    let explained = server
        .ok(
            Some(&ann),
            "query($c: ID!) { explainPermissions(channelId: $c, userId: \"@ann:hub.test\") { permission allowed decidedBy } }",
            json!({ "c": channel }),
        )
        .await;
    assert!(explained["explainPermissions"].as_array().unwrap().iter().all(|v| v["decidedBy"] == "guild owner"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_speaks_graphql_transport_ws_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "[api.limits]\nhandshake_timeout_seconds = 1\n", &[]);
    let token = server.register("wsuser").await;
    let url = server.ws_url();

    // An unauthenticated connection is closed with 4401, as is a subscribe before the ack.
    let mut ws = Ws::open(&url, None).await.unwrap();
    ws.send(json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(ws.close_code().await, 4401);
    let mut ws = Ws::open(&url, None).await.unwrap();
    ws.subscribe("1", "subscription { myEvents { cursor } }", json!({})).await;
    assert_eq!(ws.close_code().await, 4401);
    let mut ws = Ws::open(&url, None).await.unwrap();
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } })).await;
    assert_eq!(ws.close_code().await, 4401);

    // No init within the handshake timeout: 4408.
    let mut ws = Ws::open(&url, None).await.unwrap();
    assert_eq!(ws.close_code().await, 4408);

    // A second init: 4429. A duplicate subscription id: 4409.
    let mut ws = Ws::connect(&url, &token).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })).await;
    assert_eq!(ws.close_code().await, 4429);
    let mut ws = Ws::connect(&url, &token).await;
    ws.subscribe("dup", "subscription { myEvents { cursor } }", json!({})).await;
    ws.subscribe("dup", "subscription { myEvents { cursor } }", json!({})).await;
    assert_eq!(ws.close_code().await, 4409);

    // A subscription to a channel that does not exist is an `error` for that id only.
    let mut ws = Ws::connect(&url, &token).await;
    ws.subscribe("x", CHANNEL_EVENTS, json!({ "c": "11111111111111111111111111111111" })).await;
    let err = ws.next().await.unwrap();
    assert_eq!((err["type"].as_str(), err["id"].as_str()), (Some("error"), Some("x")), "{err}");
    assert!(err["payload"][0]["message"].as_str().is_some(), "{err}");

    // A browser from a foreign origin is refused before the upgrade.
    assert!(Ws::open(&url, Some("https://evil.example")).await.is_err());
    let own = server.url.clone();
    Ws::open(&url, Some(&own)).await.expect("the server's own origin is allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_deep_wide_and_abusive_requests_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "[api.limits]\nlogin_failures = 3.0\nmax_depth = 5\n", &[]);
    let token = server.register("limits").await;

    // This server allows depth 5: a depth-4 query runs, a depth-7 one is refused.
    server.ok(Some(&token), "{ guilds { channels { name kind } } me { id } }", json!({})).await;
    let nested = "{ guilds { channels { messages(last: 1) { edges { node { author { id } } } } } } }";
    let r = server.gql(Some(&token), nested, json!({})).await;
    let message = r["errors"][0]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("deep") || message.contains("depth"), "{r}");
    assert!(r["data"].is_null(), "nothing of a refused query runs: {r}");

    let aliases: String = (0..10_000).map(|i| format!("a{i}: me {{ id }} ")).collect();
    let (code, err) = server.refused(Some(&token), &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(code, "INVALID_INPUT", "{err}");
    assert!(err["message"].as_str().unwrap().contains("fields"), "{err}");

    // No mutation over GET.
    let resp = reqwest::get(format!("{}/graphql?query=mutation%20%7B%20logout%20%7D", server.url)).await.unwrap();
    assert_eq!(resp.status(), 405);

    // A wrong token is refused with UNAUTHENTICATED, never a 500.
    let (code, _) = server.refused(Some("garbage"), "{ me { id } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    let (code, _) = server.refused(None, "{ me { id } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");

    // Failed logins are rate-limited per account.
    let login = "mutation($p: String!) { login(handle: \"limits\", password: $p) { token } }";
    for _ in 0..3 {
        let (code, _) = server.refused(None, login, json!({ "p": "wrong password" })).await;
        assert_eq!(code, "UNAUTHENTICATED");
    }
    let (code, err) = server.refused(None, login, json!({ "p": "correct horse" })).await;
    assert_eq!(code, "RATE_LIMITED", "even the right password waits: {err}");
    assert!(err["extensions"]["retryAfter"].as_f64().unwrap() > 0.0);

    // A session refreshes into a new token; the old one stops working.
    let fresh = server.ok(Some(&token), "mutation { refreshSession { token } }", json!({})).await;
    let fresh = fresh["refreshSession"]["token"].as_str().unwrap().to_owned();
    assert_eq!(server.ok(Some(&fresh), "{ me { handle } }", json!({})).await["me"]["handle"], "limits");
    let (code, _) = server.refused(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");

    // Handles are validated and unique.
    let register = "mutation($h: String!) { register(handle: $h, password: \"correct horse\") { token } }";
    let (code, err) = server.refused(None, register, json!({ "h": "Not Valid" })).await;
    assert_eq!(code, "INVALID_INPUT", "{err}");
    let (code, _) = server.refused(None, register, json!({ "h": "limits" })).await;
    assert_eq!(code, "CONFLICT");
    // The hub's own identities cannot be registered (they own provisioned guilds).
    for reserved in ["_services", "_console", "_oidc", "_anything"] {
        let (code, err) = server.refused(None, register, json!({ "h": reserved })).await;
        assert_eq!(code, "INVALID_INPUT", "{reserved}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "[api.limits]\nmutations_per_second = 0.5\nmutation_burst = 3.0\n", &[]);
    let token = server.register("burst").await;
    for _ in 0..3 {
        server.ok(Some(&token), "mutation { createGuild(input: {name: \"g\"}) { id } }", json!({})).await;
    }
    let (code, err) =
        server.refused(Some(&token), "mutation { createGuild(input: {name: \"g\"}) { id } }", json!({})).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");
    assert!(err["extensions"]["retryAfter"].as_f64().unwrap() > 0.5, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_every_subscriber_complete_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(dir.path(), "[api.limits]\nmutations_per_second = 1000.0\nmutation_burst = 1000.0\n", &[]);
    let owner = server.register("burst-owner").await;
    let g = server.ok(Some(&owner), "mutation { createGuild(input: {name: \"b\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = server
        .ok(
            Some(&owner),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"b\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
    let mut subscribers = Vec::new();
    for id in ["1", "2", "3"] {
        let mut ws = Ws::connect(&server.ws_url(), &owner).await;
        ws.subscribe(id, CHANNEL_EVENTS, json!({ "c": channel })).await;
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.unwrap()["type"], "pong");
        subscribers.push((id, ws));
    }
    // 300 messages from 6 concurrent writers: more than one batch (64) queues per socket.
    let server = std::sync::Arc::new(server);
    let mut writers = Vec::new();
    for w in 0..6 {
        let (server, owner, channel) = (server.clone(), owner.clone(), channel.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                server
                    .ok(
                        Some(&owner),
                        "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
                        json!({ "c": channel, "b": format!("{w}-{i}") }),
                    )
                    .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for (id, ws) in &mut subscribers {
        let mut cursors = Vec::new();
        let mut bodies = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let e = event(ws, id).await;
            cursors.push(e["cursor"].as_str().unwrap().parse::<u64>().unwrap());
            bodies.insert(e["message"]["body"].as_str().unwrap().to_owned());
        }
        assert!(cursors.windows(2).all(|p| p[0] < p[1]), "in store order");
        assert_eq!(bodies.len(), 300, "every message, once");
        ws.quiet(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_guild_and_personal_events_and_the_remaining_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[api.limits]\nmax_connections_per_user = 2\nmax_batch = 2\nmax_body_bytes = 4096\n";
    let server = Server::start(dir.path(), config, &[]);
    let ann = server.register("ann").await;
    let cat = server.register("cat").await;
    let g = server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Search\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"s\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
    let i = server
        .ok(Some(&ann), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;

    // Ann follows the guild; Cat follows what happens to her.
    let mut guild_ws = Ws::connect(&server.ws_url(), &ann).await;
    guild_ws
        .subscribe(
            "g",
            "subscription($g: ID!) { guildEvents(guildId: $g) { kind target { id } reason } }",
            json!({ "g": guild }),
        )
        .await;
    let mut cat_ws = Ws::connect(&server.ws_url(), &cat).await;
    cat_ws.subscribe("me", "subscription { myEvents { kind guildId reason } }", json!({})).await;
    for ws in [&mut guild_ws, &mut cat_ws] {
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.unwrap()["type"], "pong");
    }
    server
        .ok(
            Some(&cat),
            "mutation($c: String!) { joinGuild(code: $c) { id } }",
            json!({ "c": i["createInvite"]["code"] }),
        )
        .await;
    let send = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    server.ok(Some(&cat), send, json!({ "c": channel, "b": "the quick brown fox" })).await;
    let dog = server.ok(Some(&ann), send, json!({ "c": channel, "b": "a lazy dog" })).await;

    // The reports queue: open, assigned, resolved.
    let filed = server
        .ok(
            Some(&cat),
            "mutation($m: ID!) { reportMessage(messageId: $m, reason: \"rude\") { id status } }",
            json!({ "m": dog["sendMessage"]["id"] }),
        )
        .await;
    let report = filed["reportMessage"]["id"].as_str().unwrap().to_owned();
    let queue = "query($g: ID!, $s: ReportStatus) { reports(guildId: $g, status: $s) { id status assignee action } }";
    let open = server.ok(Some(&ann), queue, json!({ "g": guild, "s": "OPEN" })).await;
    assert_eq!(open["reports"][0]["id"], report.as_str());
    // The moderator sees what was reported.
    let with_message = "query($g: ID!) { reports(guildId: $g) { message { body author { handle } } } }";
    let seen = server.ok(Some(&ann), with_message, json!({ "g": guild })).await;
    assert_eq!(seen["reports"][0]["message"], json!({ "body": "a lazy dog", "author": { "handle": "ann" } }), "{seen}");
    let assign = "mutation($r: ID!) { assignReport(reportId: $r, userId: \"@ann:hub.test\") }";
    server.ok(Some(&ann), assign, json!({ "r": report })).await;
    let assigned = server.ok(Some(&ann), queue, json!({ "g": guild, "s": "ASSIGNED" })).await;
    assert_eq!(assigned["reports"][0]["assignee"], "@ann:hub.test", "{assigned}");
    let resolve = "mutation($r: ID!) { resolveReport(reportId: $r, action: DISMISSED, reason: \"fine\") }";
    server.ok(Some(&ann), resolve, json!({ "r": report })).await;
    let resolved = server.ok(Some(&ann), queue, json!({ "g": guild, "s": "RESOLVED" })).await;
    assert_eq!(resolved["reports"][0]["action"], "dismissed", "{resolved}");
    assert_eq!(server.ok(Some(&ann), queue, json!({ "g": guild, "s": "OPEN" })).await["reports"], json!([]));
    let (code, _) = server.refused(Some(&cat), queue, json!({ "g": guild })).await;
    assert_eq!(code, "FORBIDDEN", "members cannot read the queue");
    server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { kickMember(guildId: $g, userId: \"@cat:hub.test\", reason: \"tidy up\") }",
            json!({ "g": guild }),
        )
        .await;
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let e = guild_ws.next().await.unwrap();
        kinds.push(e["payload"]["data"]["guildEvents"]["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        kinds,
        ["member.joined", "report.filed", "report.assigned", "report.resolved"],
        "a moderator sees reports"
    );
    let kicked = guild_ws.next().await.unwrap();
    assert_eq!(
        kicked["payload"]["data"]["guildEvents"],
        json!({ "kind": "member.kicked", "target": { "id": "@cat:hub.test" }, "reason": "tidy up" })
    );
    let mine: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(cat_ws.next().await.unwrap()["payload"]["data"]["myEvents"]["kind"].as_str().unwrap().to_owned());
        }
        v
    };
    assert_eq!(mine, ["member.joined", "member.kicked"], "the kicked member learns of it");

    // Search finds words, not other messages, and only for members.
    let search =
        "query($g: ID!, $q: String!) { search(guildId: $g, query: $q) { edges { node { body author { id } } } } }";
    let found = server.ok(Some(&ann), search, json!({ "g": guild, "q": "quick fox" })).await;
    assert_eq!(found["search"]["edges"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["search"]["edges"][0]["node"]["body"], "the quick brown fox");
    let odd = server.ok(Some(&ann), search, json!({ "g": guild, "q": "\"fox OR NEAR(" })).await;
    assert!(odd["search"]["edges"].is_array(), "search syntax in the query is just text");
    let (code, _) = server.refused(Some(&cat), search, json!({ "g": guild, "q": "fox" })).await;
    assert_eq!(code, "NOT_FOUND", "a kicked member cannot search the guild");

    // Connections per user: the third is closed at init; batches and bodies are bounded.
    let _second = Ws::connect(&server.ws_url(), &ann).await;
    let mut third = Ws::open(&server.ws_url(), None).await.unwrap();
    third.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {ann}") } })).await;
    assert_eq!(third.close_code().await, 4403);
    let batch = json!([{ "query": "{ me { id } }" }, { "query": "{ me { id } }" }, { "query": "{ me { id } }" }]);
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .bearer_auth(&ann)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("at most 2"), "{body}");
    let two = json!([{ "query": "{ me { id } }" }, { "query": "{ me { handle } }" }]);
    let r: Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .bearer_auth(&ann)
        .json(&two)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r[1]["data"]["me"]["handle"], "ann");
    let huge = json!({ "query": format!("{{ me {{ id }} }} # {}", "x".repeat(8000)) });
    let r = reqwest::Client::new().post(format!("{}/graphql", server.url)).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("4096"), "{body}");
    let r = reqwest::Client::new().post(format!("{}/graphql", server.url)).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400, "malformed JSON is the client's mistake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "", &[]);
    let token = server.register("term").await;
    let mut ws = Ws::connect(&server.ws_url(), &token).await;
    ws.subscribe("1", "subscription { myEvents { kind } }", json!({})).await;
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(ws.close_code().await, 1001, "going away");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
