//! The Matrix client-server API on a real `openguild serve`: matrix-nio (PyPI) logs in and
//! lists its rooms (`matrix/tests/nio`), and what is not served answers `M_UNRECOGNIZED`.

use serde_json::Value;

use crate::support::Server;

async fn call(hub: &Server, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new().request(method, format!("{}{path}", hub.url)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_nio_discovers_the_hub_logs_in_and_sees_its_guild_as_a_space_with_rooms() {
    // The suite registers a dozen people from one address, and signs one on through the
    // real OpenID provider the SSO tests use.
    let (_provider, hub, _dir) = crate::oidc::hub_with_provider("[api.limits]\nregistrations_per_address = 50.0\n");
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/../matrix/tests/nio");
    let out = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
        .env("OPENGUILD_URL", &hub.url)
        .env("OPENGUILD_SERVER", "hub.test")
        .env("OPENGUILD_SSO_IDP", "test")
        .output()
        .expect("python3");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the matrix-nio suite failed (scripts/ensure-services installs matrix-nio and pytest):\n{text}"
    );
    assert!(text.contains("13 passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_served_is_m_unrecognized_and_a_missing_token_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let (status, body) = call(&hub, reqwest::Method::GET, "/_matrix/client/v3/rooms/!x:hub.test/event/$y").await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{body}");
    let (status, body) = call(&hub, reqwest::Method::GET, "/_matrix/federation/v1/version").await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{body}");
    let (status, body) = call(&hub, reqwest::Method::DELETE, "/_matrix/client/v3/login").await;
    assert_eq!((status, body["errcode"].as_str()), (405, Some("M_UNRECOGNIZED")), "{body}");
    let (status, body) = call(&hub, reqwest::Method::GET, "/_matrix/client/v3/account/whoami").await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")), "{body}");
    let (status, body) = call(&hub, reqwest::Method::GET, "/_matrix/client/versions").await;
    assert_eq!(status, 200);
    assert!(body["versions"].as_array().unwrap().iter().any(|v| v == "v1.5"), "{body}");
    let resp = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/login", hub.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errcode"], "M_BAD_JSON", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_syncs_and_a_message_it_sends_reaches_another_client() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/../matrix/tests/js");
    if !std::path::Path::new(js).join("node_modules/matrix-js-sdk").exists() {
        let npm =
            std::process::Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(js).output().unwrap();
        assert!(npm.status.success(), "npm ci in {js}: {}", String::from_utf8_lossy(&npm.stderr));
    }
    let out = std::process::Command::new("node")
        .arg("sync-send.mjs")
        .current_dir(js)
        .env("OPENGUILD_URL", &hub.url)
        .env("OPENGUILD_SERVER", "hub.test")
        .output()
        .expect("node");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "matrix-js-sdk's run failed:\n{text}");
    assert!(text.contains("reached the other client"), "{text}");
}

/// One Matrix call as `token`: status and JSON answer.
async fn matrix_as(
    hub: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", hub.url)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Both APIs are one hub: a post over Matrix reaches a GraphQL subscription live, with the
/// Matrix event id as the message's id, and a post over GraphQL reaches a Matrix client's
/// long-poll `/sync` under way when it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_either_api_reaches_the_other_live() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let (guild, channel) = crate::shared::guild_with_channel(&hub, &ann, "Both ways").await;
    crate::shared::join_by_invite(&hub, &ann, &guild, &bob).await;
    let room = format!("!{channel}:hub.test");

    // bob, over Matrix, to ann's GraphQL subscription.
    let mut ws = crate::support::Ws::connect(&hub.ws_url(), &ann).await;
    let subscription =
        "subscription($c: ID!) { channelEvents(channelId: $c) { kind eventId message { body author { id } } } }";
    ws.subscribe("1", subscription, json!({ "c": channel })).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.unwrap()["type"], "pong");
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1");
    let body = json!({ "msgtype": "m.text", "body": "hello from a Matrix client" });
    let (status, sent) = matrix_as(&hub, &bob, reqwest::Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 200, "{sent}");
    let live = loop {
        let next = ws.next().await.expect("the subscription is open");
        if next["payload"]["data"]["channelEvents"]["kind"] == "MESSAGE_POSTED" {
            break next["payload"]["data"]["channelEvents"].clone();
        }
    };
    assert_eq!(live["eventId"], sent["event_id"], "{live}");
    assert_eq!(live["message"]["body"], "hello from a Matrix client", "{live}");
    assert_eq!(live["message"]["author"]["id"], "@bob:hub.test", "{live}");

    // ann, over GraphQL, to bob's long-poll already waiting.
    let (status, first) = matrix_as(&hub, &bob, reqwest::Method::GET, "/_matrix/client/v3/sync", None).await;
    assert_eq!(status, 200, "{first}");
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let (hub_url, bob) = (hub.url.clone(), bob.clone());
        tokio::spawn(async move {
            let url = format!("{hub_url}/_matrix/client/v3/sync?timeout=10000&since={since}");
            let answer: Value =
                reqwest::Client::new().get(url).bearer_auth(bob).send().await.unwrap().json().await.unwrap();
            answer
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let posted = hub.ok(Some(&ann), post, json!({ "c": channel, "b": "hello from the web" })).await;
    let answer = poll.await.unwrap();
    let events = answer["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    let got = events.iter().find(|e| e["type"] == "m.room.message").unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(got["event_id"], posted["sendMessage"]["id"], "{got}");
    assert_eq!(
        (got["sender"].as_str(), got["content"]["body"].as_str()),
        (Some("@ann:hub.test"), Some("hello from the web"))
    );
}
