//! A guild shared across two real hubs: hub A owns it; bob, whose account is on hub B,
//! joins it from B with A's invite (`CODE@hub-a.test`) and chats in it through B's own
//! GraphQL — his acts are proposed to A, A's answer is his — while ann on A chats back and
//! A's events reach B. A ban issued on A then stops bob on B.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::federation::{free_port, openguild};
use crate::support::Server;

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
