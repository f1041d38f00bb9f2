//! Threads over real HTTP: started under a message, listed under their channel and on the
//! message, followed and unfollowed, chatted in like any channel, with the parent's
//! permissions — and refused where CREATE_PUBLIC_THREADS or SEND_MESSAGES_IN_THREADS are
//! denied, under a deleted message, or in a channel one cannot see.

use serde_json::{Value, json};

use crate::shared::{guild_with_channel, join_by_invite};
use crate::support::Server;

const POST: &str = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
const START: &str = "mutation($m: ID!, $n: String!) { startThread(messageId: $m, name: $n) { id kind name following parent { id } starterMessage { id body } } }";
const EVERYONE: &str = "1111111111111111";

async fn post(hub: &Server, token: &str, channel: &str, body: &str) -> String {
    hub.ok(Some(token), POST, json!({ "c": channel, "b": body })).await["sendMessage"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or_default()
}

async fn deny(hub: &Server, token: &str, channel: &str, what: &str) {
    hub.ok(
        Some(token),
        "mutation($c: ID!, $r: ID!, $d: [Permission!]!) { setChannelOverwrite(channelId: $c, roleId: $r, allow: [], deny: $d) }",
        json!({ "c": channel, "r": EVERYONE, "d": [what] }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_under_a_message_is_a_channel_of_its_own_listed_under_its_parent_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let (guild, chat) = guild_with_channel(&hub, &ann, "G").await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    let root = post(&hub, &ann, &chat, "who is coming on Saturday?").await;

    let t = hub.ok(Some(&bob), START, json!({ "m": root, "n": "Saturday" })).await["startThread"].clone();
    assert_eq!(t["kind"], "THREAD", "{t}");
    assert_eq!((t["name"].as_str(), t["following"].as_bool()), (Some("Saturday"), Some(true)));
    assert_eq!(t["parent"]["id"], chat.as_str());
    assert_eq!(t["starterMessage"], json!({ "id": root, "body": "who is coming on Saturday?" }));
    let thread = t["id"].as_str().unwrap().to_owned();
    // Asked again, the same thread.
    let again = hub.ok(Some(&ann), START, json!({ "m": root, "n": "Other" })).await;
    assert_eq!(again["startThread"]["id"], thread.as_str());

    post(&hub, &ann, &thread, "me").await;
    post(&hub, &bob, &thread, "me too").await;
    let inside = hub
        .ok(
            Some(&ann),
            "query($c: ID!) { channel(id: $c) { messages(last: 10) { nodes { body } } } }",
            json!({ "c": thread }),
        )
        .await;
    assert_eq!(inside["channel"]["messages"]["nodes"], json!([{ "body": "me" }, { "body": "me too" }]));
    // The parent keeps its own messages; the starter shows its thread.
    let parent = hub
        .ok(
            Some(&ann),
            "query($c: ID!) { channel(id: $c) { messages(last: 10) { nodes { body thread { id name messageCount lastActivity } } } threads { id } } }",
            json!({ "c": chat }),
        )
        .await;
    let nodes = parent["channel"]["messages"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{parent}");
    assert_eq!(nodes[0]["thread"]["id"], thread.as_str());
    assert_eq!(
        (nodes[0]["thread"]["name"].as_str(), nodes[0]["thread"]["messageCount"].as_i64()),
        (Some("Saturday"), Some(2))
    );
    assert!(nodes[0]["thread"]["lastActivity"].is_string(), "{parent}");
    assert_eq!(parent["channel"]["threads"], json!([{ "id": thread }]));
    let active = hub
        .ok(
            Some(&ann),
            "query($c: ID!) { channel(id: $c) { threads(archived: false) { id archived } } }",
            json!({ "c": chat }),
        )
        .await;
    assert_eq!(active["channel"]["threads"], json!([{ "id": thread, "archived": false }]));
    // Threads are not among the guild's channels.
    let g = hub.ok(Some(&ann), "query($g: ID!) { guild(id: $g) { channels { id } } }", json!({ "g": guild })).await;
    assert_eq!(g["guild"]["channels"], json!([{ "id": chat }]));

    // Follow and unfollow.
    let following = "query($c: ID!) { channel(id: $c) { following } }";
    assert_eq!(hub.ok(Some(&ann), following, json!({ "c": thread })).await["channel"]["following"], false);
    hub.ok(Some(&ann), "mutation($t: ID!) { followThread(threadId: $t) }", json!({ "t": thread })).await;
    assert_eq!(hub.ok(Some(&ann), following, json!({ "c": thread })).await["channel"]["following"], true);
    hub.ok(Some(&bob), "mutation($t: ID!) { unfollowThread(threadId: $t) }", json!({ "t": thread })).await;
    assert_eq!(hub.ok(Some(&bob), following, json!({ "c": thread })).await["channel"]["following"], false);
    let not_thread =
        hub.gql(Some(&ann), "mutation($t: ID!) { followThread(threadId: $t) }", json!({ "t": chat })).await;
    assert_eq!(code(&not_thread), "INVALID_INPUT", "{not_thread}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_permissions_come_from_the_parent_and_refusals_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let (guild, chat) = guild_with_channel(&hub, &ann, "G").await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    let root = post(&hub, &ann, &chat, "topic").await;
    let thread = hub.ok(Some(&ann), START, json!({ "m": root, "n": "T" })).await["startThread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Talking in threads is its own permission: denied, bob still talks in the channel.
    deny(&hub, &ann, &chat, "SEND_MESSAGES_IN_THREADS").await;
    let refused = hub.gql(Some(&bob), POST, json!({ "c": thread, "b": "hi" })).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("SEND_MESSAGES_IN_THREADS"), "{refused}");
    post(&hub, &bob, &chat, "in the channel").await;
    post(&hub, &ann, &thread, "the owner still can").await;

    // Starting threads too.
    deny(&hub, &ann, &chat, "CREATE_PUBLIC_THREADS").await;
    let other = post(&hub, &bob, &chat, "another topic").await;
    let refused = hub.gql(Some(&bob), START, json!({ "m": other, "n": "mine" })).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("CREATE_PUBLIC_THREADS"), "{refused}");

    // A deleted message has no thread to start.
    hub.ok(Some(&bob), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": other })).await;
    let refused = hub.gql(Some(&ann), START, json!({ "m": other, "n": "late" })).await;
    assert_eq!(code(&refused), "NOT_FOUND", "{refused}");

    // A channel bob cannot see: neither it, its threads nor their messages are his.
    deny(&hub, &ann, &chat, "VIEW_CHANNEL").await;
    for q in [
        json!({ "query": START, "variables": { "m": root, "n": "peek" } }),
        json!({ "query": "query($c: ID!) { channel(id: $c) { messages(last: 5) { nodes { body } } } }", "variables": { "c": thread } }),
        json!({ "query": POST, "variables": { "c": thread, "b": "hello?" } }),
    ] {
        let got = hub.gql(Some(&bob), q["query"].as_str().unwrap(), q["variables"].clone()).await;
        assert!(matches!(code(&got), "NOT_FOUND" | "FORBIDDEN"), "{q}: {got}");
    }
    let t = "mutation($c: ID!) { createChannel(input: {guildId: $c, name: \"x\", kind: THREAD}) { id } }";
    let refused = hub.gql(Some(&ann), t, json!({ "c": guild })).await;
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("startThread"), "{refused}");
}
