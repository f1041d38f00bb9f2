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
    let dir = tempfile::tempdir().unwrap();
    // The suite registers a dozen people from one address.
    let config = "[api.limits]\nregistrations_per_address = 50.0\n";
    let hub = Server::start(&dir.path().join("data"), config, &[]);
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/../matrix/tests/nio");
    let out = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
        .env("OPENGUILD_URL", &hub.url)
        .env("OPENGUILD_SERVER", "hub.test")
        .output()
        .expect("python3");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the matrix-nio suite failed (scripts/ensure-services installs matrix-nio and pytest):\n{text}"
    );
    assert!(text.contains("11 passed"), "{text}");
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
