//! Two `openguild serve` processes on one PostgreSQL and one Redis (the machine's
//! services): what is written through node A reaches a subscriber on node B, and slow mode,
//! rate limits and typing hold across both.

use serde_json::json;
use sqlx::Connection;

use crate::support::{Server, Ws};

fn admin_url() -> String {
    std::env::var("OPENGUILD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("OPENGUILD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh database; its URL and name.
pub(crate) async fn fresh_database() -> (String, String) {
    let name = format!("og_nodes_{:012x}", rand::random::<u64>() >> 16);
    let admin = admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} is needed for this test (scripts/ensure-services starts it): {e}")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
    (format!("{base}/{name}"), name)
}

pub(crate) async fn drop_database(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_and_redis_act_as_one_hub() {
    let (url, name) = fresh_database().await;
    let redis = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let env = [
        ("OPENGUILD_STORE_URL", url.as_str()),
        ("OPENGUILD_READ_DB_URL", url.as_str()),
        ("OPENGUILD_REDIS_URL", redis.as_str()),
    ];
    // Mutations are limited to a burst of 4 per user, on the hub as a whole.
    let config = "[api.limits]\nmutations_per_second = 0.05\nmutation_burst = 4.0\n";
    let a = Server::start(&dir_a, config, &env);
    // The nodes of one hub sign with the hub's one key.
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::copy(dir_a.join("server.key"), dir_b.join("server.key")).unwrap();
    let b = Server::start(&dir_b, config, &env);

    // Handles unique to this run: Redis outlives test runs.
    let tag = format!("{:08x}", rand::random::<u32>());
    let (ann_handle, bob_handle) = (format!("ann{tag}"), format!("bob{tag}"));
    let ann = a.register(&ann_handle).await;
    let bob = a.register(&bob_handle).await;
    let g = a.ok(Some(&ann), "mutation { createGuild(input: {name: \"Two nodes\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let c = a
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"x\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await;
    let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
    let i = a
        .ok(Some(&ann), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    // Bob joins through node B: B finds the invite and the guild written through A.
    let joined = b
        .gql(
            Some(&bob),
            "mutation($c: String!) { joinGuild(code: $c) { id } }",
            json!({ "c": i["createInvite"]["code"] }),
        )
        .await;
    assert!(joined.get("errors").is_none(), "{joined}");
    // Read-your-writes on the node written through, and on the other one with the
    // position the write returned (`OpenGuild-Read-After`).
    let mine = b.ok(Some(&bob), "{ guilds { id } }", json!({})).await;
    assert_eq!(mine["guilds"][0]["id"], guild.as_str(), "{mine}");
    let joined_at = joined["extensions"]["position"].as_u64().expect("a write returns its position");
    let mine: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/graphql", a.url))
        .bearer_auth(&bob)
        .header("OpenGuild-Read-After", joined_at.to_string())
        .json(&json!({ "query": "{ guilds { id } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["data"]["guilds"][0]["id"], guild.as_str(), "{mine}");

    // Ann follows the channel on node B (B checks her session, written through A).
    let mut on_b = Ws::connect(&b.ws_url(), &ann).await;
    // Presence crosses nodes: ann's socket is on B, and A shows her online; bob has none.
    let members = a
        .ok(
            Some(&bob),
            "query($g: ID!) { guild(id: $g) { members { nodes { user { handle } online } } } }",
            json!({ "g": guild }),
        )
        .await;
    let online = |handle: &str| {
        members["guild"]["members"]["nodes"].as_array().unwrap().iter().find(|m| m["user"]["handle"] == handle).unwrap()
            ["online"]
            .clone()
    };
    assert_eq!(online(&ann_handle), json!(true), "{members}");
    assert_eq!(online(&bob_handle), json!(false), "{members}");
    on_b.subscribe(
        "1",
        "subscription($c: ID!) { channelEvents(channelId: $c) { kind actor { handle } message { body } } }",
        json!({ "c": channel }),
    )
    .await;
    on_b.send(json!({ "type": "ping" })).await;
    assert_eq!(on_b.next().await.unwrap()["type"], "pong");

    let send = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    a.ok(Some(&bob), send, json!({ "c": channel, "b": "sent through A" })).await;
    let got = on_b.next().await.unwrap();
    assert_eq!(got["payload"]["data"]["channelEvents"]["message"]["body"], "sent through A", "{got}");

    // Typing through A reaches B (Redis pub/sub).
    a.ok(Some(&bob), "mutation($c: ID!) { typing(channelId: $c) }", json!({ "c": channel })).await;
    let typing = on_b.next().await.unwrap();
    assert_eq!(typing["payload"]["data"]["channelEvents"]["kind"], "TYPING", "{typing}");
    assert_eq!(typing["payload"]["data"]["channelEvents"]["actor"]["handle"], bob_handle.as_str());

    // Slow mode set through A holds for a message through B.
    a.ok(Some(&ann), "mutation($c: ID!) { setSlowMode(channelId: $c, seconds: 60) { id } }", json!({ "c": channel }))
        .await;
    // B decides against the guild as its feed has delivered it: wait until B shows the
    // slow mode (milliseconds; the test failed now and then when it raced the feed).
    for _ in 0..100 {
        let seen =
            b.ok(Some(&bob), "query($c: ID!) { channel(id: $c) { slowModeSeconds } }", json!({ "c": channel })).await;
        if seen["channel"]["slowModeSeconds"] == 60 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (code, err) = b.refused(Some(&bob), send, json!({ "c": channel, "b": "too soon, through B" })).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");

    // Bob has used his burst of 4 (join, send, typing, the refused send) across both nodes.
    let (code, err) =
        a.refused(Some(&bob), "mutation { createGuild(input: {name: \"more\"}) { id } }", json!({})).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");
    assert!(err["message"].as_str().unwrap().contains("slow down"), "the mutation limit, not slow mode: {err}");

    drop((a, b));
    drop_database(&name).await;
}

/// How many transactions the node at `url` has had answered by `peer` (its `/metrics`).
async fn answered_by(url: &str, peer: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    let series = format!("openguild_federation_transactions_total{{peer=\"{peer}\",outcome=\"answered\"}}");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.trim().parse::<f64>().unwrap_or(0.0) as u64)
}

/// Two nodes of hub A on one PostgreSQL: one of them sends to peer B (it holds the peer's
/// lease), and when it dies the other takes over where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_to_a_peer_through_one_of_them_and_the_other_takes_over() {
    use std::time::Duration;

    use crate::allowlist::{eventually, start_b};
    use crate::federation::{free_port, seed_shared_guild_in, stream_ids, stream_ids_in};

    let (url, name) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (a1_data, a2_data, b_data) = (dir.path().join("a1"), dir.path().join("a2"), dir.path().join("b"));
    let stream = seed_shared_guild_in(&a1_data, &url, 2).await;
    std::fs::create_dir_all(&a2_data).unwrap();
    std::fs::copy(a1_data.join("server.key"), a2_data.join("server.key")).unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let b = start_b(&b_data, a_port, b_port);
    let peers = format!("hub-b.test=http://127.0.0.1:{b_port}");
    let env = [
        ("OPENGUILD_SERVER_NAME", "hub-a.test"),
        ("OPENGUILD_STORE_URL", url.as_str()),
        ("OPENGUILD_READ_DB_URL", url.as_str()),
        ("OPENGUILD_FEDERATION_PEERS", peers.as_str()),
    ];
    let a1 = Server::start_on(&a1_data, "", &env, &format!("127.0.0.1:{a_port}"));
    let a2 = Server::start(&a2_data, "", &env);
    eventually(Duration::from_secs(30), "A's guild on hub B", || async {
        let (on_a, on_b) = (stream_ids_in(&url, &stream).await, stream_ids(&b_data, &stream).await);
        if on_a.len() == 5 && on_b == on_a { Ok(()) } else { Err(format!("{} of {}", on_b.len(), on_a.len())) }
    })
    .await;
    let (sent1, sent2) = (answered_by(&a1.url, "hub-b.test").await, answered_by(&a2.url, "hub-b.test").await);
    assert!(sent1.min(sent2) == 0 && sent1.max(sent2) > 0, "one node sends: {sent1} and {sent2} transactions");

    // The sending node dies; what is written next reaches B through the other.
    let (survivor, dead) = if sent1 > 0 { (a2, a1) } else { (a1, a2) };
    drop(dead);
    let root = survivor.register("root").await;
    let guild = match &stream {
        openguild_domain::StreamId::Guild(g) => g.to_string(),
        _ => unreachable!(),
    };
    survivor
        .ok(
            Some(&root),
            "mutation($g: ID!) { hubArchiveGuild(guildId: $g, reason: \"closed\") }",
            json!({ "g": guild }),
        )
        .await;
    eventually(Duration::from_secs(30), "the archive on hub B through the surviving node", || async {
        let (on_a, on_b) = (stream_ids_in(&url, &stream).await, stream_ids(&b_data, &stream).await);
        if on_a.len() == 6 && on_b == on_a { Ok(()) } else { Err(format!("{} of {}", on_b.len(), on_a.len())) }
    })
    .await;
    assert!(answered_by(&survivor.url, "hub-b.test").await > 0, "the survivor took the peer over");
    drop((survivor, b));
    drop_database(&name).await;
}
