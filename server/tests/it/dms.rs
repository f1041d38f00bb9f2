//! Direct messages over real HTTP and websockets: one conversation per set of people, every
//! message act working in it as in a guild's channel, live; group DMs; blocks and the
//! "only people I share a guild with" setting refusing what they should; a host
//! application's coordination DM; and a DM between people of two real hubs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, Ws};

const OPEN: &str = "mutation($u: [ID!]!) { openDm(userIds: $u) { id kind guildId name recipients { id } } }";
const POST: &str =
    "mutation($c: ID!, $b: String!, $r: ID) { sendMessage(input: {channelId: $c, body: $b, replyTo: $r}) { id } }";

async fn open(hub: &Server, token: &str, users: &[&str]) -> Value {
    hub.ok(Some(token), OPEN, json!({ "u": users })).await["openDm"].clone()
}

async fn post(hub: &Server, token: &str, channel: &str, body: &str) -> String {
    let m = hub.ok(Some(token), POST, json!({ "c": channel, "b": body, "r": null })).await;
    m["sendMessage"]["id"].as_str().unwrap().to_owned()
}

/// The channel's messages as `token` reads them: (body, author, reactions).
async fn read(hub: &Server, token: &str, channel: &str) -> Vec<Value> {
    let m = hub
        .ok(
            Some(token),
            "query($c: ID!) { channel(id: $c) { messages(last: 50) { nodes { body replyToId author { id } reactions { emoji count } } } } }",
            json!({ "c": channel }),
        )
        .await;
    m["channel"]["messages"]["nodes"].as_array().cloned().unwrap_or_default()
}

fn code(refused: &Value) -> &str {
    refused["errors"][0]["extensions"]["code"].as_str().unwrap_or_default()
}

fn message(refused: &Value) -> &str {
    refused["errors"][0]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_share_one_dm_where_every_message_act_works_live_and_outsiders_see_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let eve = hub.register("eve").await;

    let dm = open(&hub, &ann, &["@bob:hub.test"]).await;
    assert_eq!(dm["kind"], "DM", "{dm}");
    assert_eq!(dm["guildId"], Value::Null, "a DM belongs to no guild: {dm}");
    assert_eq!(dm["name"], "bob");
    assert_eq!(dm["recipients"], json!([{ "id": "@bob:hub.test" }]));
    let channel = dm["id"].as_str().unwrap().to_owned();
    // The same people get the same conversation, whoever asks.
    assert_eq!(open(&hub, &ann, &["@bob:hub.test"]).await["id"], channel.as_str());
    let theirs = open(&hub, &bob, &["@ann:hub.test"]).await;
    assert_eq!(theirs["id"], channel.as_str());
    assert_eq!(theirs["name"], "ann");

    // Bob follows it live.
    let mut ws = Ws::connect(&hub.ws_url(), &bob).await;
    ws.subscribe("1", "subscription($c: ID!) { channelEvents(channelId: $c) { kind } }", json!({ "c": channel })).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.unwrap()["type"], "pong");

    // Post, reply, edit, react, delete: as in a guild's channel.
    let hello = post(&hub, &ann, &channel, "hello @bob:hub.test").await;
    let reply = hub.ok(Some(&bob), POST, json!({ "c": channel, "b": "hi ann", "r": hello })).await;
    let reply = reply["sendMessage"]["id"].as_str().unwrap().to_owned();
    hub.ok(Some(&ann), "mutation($m: ID!) { editMessage(id: $m, body: \"hello, bob\") { id } }", json!({ "m": hello }))
        .await;
    hub.ok(Some(&bob), "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"👋\") }", json!({ "m": hello })).await;
    hub.ok(Some(&bob), "mutation($m: ID!) { pinMessage(messageId: $m) }", json!({ "m": hello })).await;
    let oops = post(&hub, &bob, &channel, "oops").await;
    hub.ok(Some(&bob), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": oops })).await;
    let mut kinds = Vec::new();
    while kinds.len() < 6 {
        let got = ws.next().await.expect("the DM's events arrive live");
        if let Some(kind) = got["payload"]["data"]["channelEvents"]["kind"].as_str() {
            kinds.push(kind.to_owned());
        }
    }
    assert_eq!(kinds[..3], ["MESSAGE_POSTED", "MESSAGE_POSTED", "MESSAGE_EDITED"], "{kinds:?}");

    let seen = read(&hub, &ann, &channel).await;
    let bodies: Vec<&str> = seen.iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(bodies, ["hello, bob", "hi ann"], "{seen:?}");
    assert_eq!(seen[1]["replyToId"], hello.as_str());
    assert_eq!(seen[0]["reactions"], json!([{ "emoji": "👋", "count": 1 }]));
    let pins = hub.ok(Some(&ann), "query($c: ID!) { channel(id: $c) { pins { id } } }", json!({ "c": channel })).await;
    assert_eq!(pins["channel"]["pins"][0]["id"], hello.as_str(), "either person pins in a DM: {pins}");
    let _ = reply;

    // Both list it among their DMs, not among their guilds.
    for token in [&ann, &bob] {
        let listed = hub.ok(Some(token), "{ dms { id kind } guilds { id } }", json!({})).await;
        assert_eq!(listed["dms"], json!([{ "id": channel, "kind": "DM" }]), "{listed}");
        assert_eq!(listed["guilds"], json!([]), "{listed}");
    }
    let as_guild = hub.gql(Some(&ann), "query($g: ID!) { guild(id: $g) { id } }", json!({ "g": channel })).await;
    assert_eq!(code(&as_guild), "NOT_FOUND", "{as_guild}");

    // Eve sees nothing of it and cannot write in it.
    let peek = hub.gql(Some(&eve), "query($c: ID!) { channel(id: $c) { id } }", json!({ "c": channel })).await;
    assert_eq!(code(&peek), "NOT_FOUND", "{peek}");
    let intrude = hub.gql(Some(&eve), POST, json!({ "c": channel, "b": "me too", "r": null })).await;
    assert!(matches!(code(&intrude), "NOT_FOUND" | "FORBIDDEN"), "{intrude}");
    assert!(hub.ok(Some(&eve), "{ dms { id } }", json!({})).await["dms"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_dms_hold_up_to_ten_and_bad_lists_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    for who in ["bob", "cat", "dan"] {
        hub.register(who).await;
    }
    let group = open(&hub, &ann, &["@bob:hub.test", "@cat:hub.test", "@dan:hub.test"]).await;
    assert_eq!(group["kind"], "GROUP_DM", "{group}");
    assert_eq!(group["name"], "bob, cat, dan");
    // A different set of people is a different conversation.
    let pair = open(&hub, &ann, &["@bob:hub.test"]).await;
    assert_ne!(pair["id"], group["id"]);
    let channel = group["id"].as_str().unwrap();
    post(&hub, &ann, channel, "hello all").await;

    // Dan leaves; the others go on without him.
    let dan =
        hub.ok(None, "mutation { login(handle: \"dan\", password: \"correct horse\") { token } }", json!({})).await;
    let dan = dan["login"]["token"].as_str().unwrap().to_owned();
    let guild_id_of_dm = channel; // A DM's id names its governance too.
    hub.ok(Some(&dan), "mutation($g: ID!) { leaveGuild(guildId: $g) }", json!({ "g": guild_id_of_dm })).await;
    let after = hub.gql(Some(&dan), POST, json!({ "c": channel, "b": "still here?", "r": null })).await;
    assert!(matches!(code(&after), "NOT_FOUND" | "FORBIDDEN"), "{after}");

    let ten: Vec<String> = (0..10).map(|i| format!("@u{i}:hub.test")).collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    for (users, why) in [
        (vec![], "1 to 9 others"),
        (ten, "1 to 9 others"),
        (vec!["@ann:hub.test"], "not yourself"),
        (vec!["@nobody:hub.test"], "no user @nobody:hub.test"),
        (vec!["@zed:elsewhere.test"], "not a peer"),
    ] {
        let refused = hub.gql(Some(&ann), OPEN, json!({ "u": users })).await;
        assert!(message(&refused).contains(why), "{users:?}: {refused}");
        assert!(["INVALID_INPUT", "NOT_FOUND", "FORBIDDEN"].contains(&code(&refused)), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_stops_new_dms_and_posts_and_hides_the_blocked_and_strangers_can_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let cat = hub.register("cat").await;
    let dm = open(&hub, &ann, &["@bob:hub.test"]).await["id"].as_str().unwrap().to_owned();
    post(&hub, &ann, &dm, "before").await;

    // In a guild they share too.
    let g = hub.ok(Some(&bob), "mutation { createGuild(input: {name: \"G\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = hub
        .ok(
            Some(&bob),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"chat\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let chat = c["createChannel"]["id"].as_str().unwrap().to_owned();
    let invite = hub
        .ok(Some(&bob), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    hub.ok(
        Some(&ann),
        "mutation($c: String!) { joinGuild(code: $c) { id } }",
        json!({ "c": invite["createInvite"]["code"] }),
    )
    .await;
    post(&hub, &ann, &chat, "ann in the guild").await;
    post(&hub, &bob, &chat, "bob in the guild").await;

    hub.ok(Some(&bob), "mutation { blockUser(userId: \"@ann:hub.test\") }", json!({})).await;
    let listed = hub.ok(Some(&bob), "{ blockedUsers { id } }", json!({})).await;
    assert_eq!(listed["blockedUsers"], json!([{ "id": "@ann:hub.test" }]));
    // Ann can no longer write to bob, in their DM or a new one.
    let refused = hub.gql(Some(&ann), POST, json!({ "c": dm, "b": "hello?", "r": null })).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(message(&refused).contains("does not accept direct messages from you"), "{refused}");
    let refused = hub.gql(Some(&ann), OPEN, json!({ "u": ["@bob:hub.test", "@cat:hub.test"] })).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    // Bob, who blocked, is told how to write again.
    let refused = hub.gql(Some(&bob), POST, json!({ "c": dm, "b": "hm", "r": null })).await;
    assert!(refused.get("errors").is_none(), "the blocker may still write: {refused}");
    let refused = hub.gql(Some(&bob), OPEN, json!({ "u": ["@ann:hub.test", "@cat:hub.test"] })).await;
    assert!(message(&refused).contains("unblock them"), "{refused}");
    // Ann's messages are hidden from bob, in the guild too; others still see them.
    let bodies =
        |rows: Vec<Value>| rows.iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect::<Vec<_>>();
    assert_eq!(bodies(read(&hub, &bob, &chat).await), ["bob in the guild"]);
    assert_eq!(bodies(read(&hub, &ann, &chat).await), ["ann in the guild", "bob in the guild"]);
    hub.ok(Some(&bob), "mutation { unblockUser(userId: \"@ann:hub.test\") }", json!({})).await;
    assert_eq!(bodies(read(&hub, &bob, &chat).await), ["ann in the guild", "bob in the guild"]);
    post(&hub, &ann, &dm, "thanks").await;

    // Cat accepts DMs only from people she shares a guild with.
    hub.ok(Some(&cat), "mutation { setDmPolicy(acceptFromStrangers: false) }", json!({})).await;
    let refused = hub.gql(Some(&ann), OPEN, json!({ "u": ["@cat:hub.test"] })).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(message(&refused).contains("share a guild"), "{refused}");
    let invite = hub
        .ok(Some(&bob), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    hub.ok(
        Some(&cat),
        "mutation($c: String!) { joinGuild(code: $c) { id } }",
        json!({ "c": invite["createInvite"]["code"] }),
    )
    .await;
    assert_eq!(open(&hub, &ann, &["@cat:hub.test"]).await["kind"], "DM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_application_keeps_one_coordination_dm_per_set_of_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let root = hub.register("root").await;
    let create = "mutation { createServiceToken(name: \"host app\", hub: true) { token } }";
    let token =
        hub.ok(Some(&root), create, json!({})).await["createServiceToken"]["token"].as_str().unwrap().to_owned();
    let ensure_user = "mutation($x: String!, $h: String!) { ensureUser(externalId: $x, handle: $h) { id } }";
    for (x, h) in [("cust-1", "buyer"), ("cust-2", "seller")] {
        hub.ok(Some(&token), ensure_user, json!({ "x": x, "h": h })).await;
    }
    let ensure = "mutation($m: String) { ensureDm(externalIds: [\"cust-1\", \"cust-2\"], message: $m) { id kind } }";
    let first = hub.ok(Some(&token), ensure, json!({ "m": "Order #42: please agree on a pickup time." })).await;
    let again = hub.ok(Some(&token), ensure, json!({ "m": "Order #42: please agree on a pickup time." })).await;
    assert_eq!(first["ensureDm"]["id"], again["ensureDm"]["id"], "idempotent");
    let channel = first["ensureDm"]["id"].as_str().unwrap();
    // Unknown external ids and people without a service token are refused.
    let unknown = hub.gql(Some(&token), "mutation { ensureDm(externalIds: [\"cust-9\"]) { id } }", json!({})).await;
    assert_eq!(code(&unknown), "NOT_FOUND", "{unknown}");
    assert!(message(&unknown).contains("ensureUser"), "{unknown}");
    let someone = hub.register("someone").await;
    let person = hub.gql(Some(&someone), ensure, json!({ "m": null })).await;
    assert_eq!(code(&person), "FORBIDDEN", "{person}");

    // The buyer (here through a session of the provisioned account) reads the context
    // message once, posted by the hub's service identity, and answers.
    let login =
        hub.ok(Some(&token), "mutation { issueUserSession(userId: \"@buyer:hub.test\") { token } }", json!({})).await;
    let buyer = login["issueUserSession"]["token"].as_str().unwrap().to_owned();
    let seen = read(&hub, &buyer, channel).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["body"], "Order #42: please agree on a pickup time.");
    assert_eq!(seen[0]["author"]["id"], "@_services:hub.test");
    post(&hub, &buyer, channel, "Tomorrow at 10?").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_between_people_of_two_hubs_is_owned_by_the_openers_hub_and_works_from_both() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = crate::shared::two_hubs(dir.path(), (17, 18));
    let ann = a.register("ann").await;
    let bob = b.register("bob").await;

    let dm = open(&a, &ann, &["@bob:hub-b.test"]).await;
    let channel = dm["id"].as_str().unwrap().to_owned();
    post(&a, &ann, &channel, "hello from A").await;

    // It reaches bob's hub, where he finds it among his DMs and answers from there.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = b.ok(Some(&bob), "{ dms { id kind recipients { id } } }", json!({})).await;
        if listed["dms"].as_array().is_some_and(|d| !d.is_empty()) {
            assert_eq!(
                listed["dms"],
                json!([{ "id": channel, "kind": "DM", "recipients": [{ "id": "@ann:hub-a.test" }] }])
            );
            break;
        }
        assert!(Instant::now() < end, "the DM never reached hub B: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Opening it from B finds the same conversation rather than a second one.
    assert_eq!(open(&b, &bob, &["@ann:hub-a.test"]).await["id"], channel.as_str());
    // Bob attaches a file uploaded to his own hub; ann's hub fetches it from B for her,
    // checked against the hash in the signed message.
    let file: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let up: Value = reqwest::Client::new()
        .post(format!("{}/media/upload?filename=notes.bin", b.url))
        .bearer_auth(&bob)
        .header("Content-Type", "application/octet-stream")
        .body(file.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let media = up["id"].as_str().unwrap().to_owned();
    let send = "mutation($c: ID!, $a: [ID!]) { sendMessage(input: {channelId: $c, body: \"hello from B\", attachments: $a}) { id } }";
    b.ok(Some(&bob), send, json!({ "c": channel, "a": [media] })).await;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let on_a: Vec<String> =
            read(&a, &ann, &channel).await.iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect();
        let on_b: Vec<String> =
            read(&b, &bob, &channel).await.iter().filter_map(|m| m["body"].as_str().map(str::to_owned)).collect();
        if on_a == ["hello from A", "hello from B"] && on_b == on_a {
            break;
        }
        assert!(Instant::now() < end, "A has {on_a:?}, B has {on_b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = reqwest::Client::new().get(format!("{}/media/{media}", a.url)).bearer_auth(&ann).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert!(got.bytes().await.unwrap() == file, "hub A served other bytes than bob uploaded");
    // A third party on A who is not in the DM gets nothing, and hub B gives nothing to a
    // request that is not a peer's.
    let eve = a.register("eve").await;
    let peek = reqwest::Client::new().get(format!("{}/media/{media}", a.url)).bearer_auth(&eve).send().await.unwrap();
    assert_eq!(peek.status().as_u16(), 404);
    let unsigned = reqwest::get(format!("{}/_openguild/federation/v1/media/{media}", b.url)).await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
}
