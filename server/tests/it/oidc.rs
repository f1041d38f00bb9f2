//! Single sign-on through a real OpenID provider (`oidc-provider` from npm, started by this
//! test: `tests/oidc/provider.mjs`), driven over HTTP through the whole authorization-code
//! flow with PKCE: just-in-time signup with a chosen handle, the same user on the next
//! login, a tampered `state` refused, an ID token from another issuer refused, and a
//! revoked session closing the user's websocket.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::{Server, Ws};

const CLIENT_ID: &str = "openguild-test";
const CLIENT_SECRET: &str = "test0secret0123456789";

pub(crate) struct Provider {
    child: Child,
    url: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn harness_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc")
}

/// Installs the provider's npm packages if this machine has not yet.
fn install_harness() {
    let dir = harness_dir();
    if dir.join("node_modules/oidc-provider").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm (Node 20) is needed to run the test OpenID provider");
    assert!(status.success(), "npm ci in tests/oidc failed");
}

fn start_provider(redirect: &str) -> Provider {
    let mut child = Command::new("node")
        .arg(harness_dir().join("provider.mjs"))
        .env("OIDC_PORT", "0")
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_REDIRECT_URIS", redirect)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is needed to run the test OpenID provider");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the provider stopped before it was ready").unwrap();
        if let Some(url) = line.strip_prefix("oidc provider ready on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Provider { child, url }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A browser-like client: a cookie jar, following redirects until the next hop is
/// OpenGuild's callback (`stop_at_callback`), or until the callback answers.
fn browser(stop_at_callback: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let from_callback = attempt.previous().last().is_some_and(|u| u.path().ends_with("/callback"));
            if from_callback || (stop_at_callback && attempt.url().path().ends_with("/callback")) {
                attempt.stop()
            } else if attempt.previous().len() > 20 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("expected a redirect, got {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The fragment parameters of a login's final redirect (`/#token=…` or `/#signup=…`).
fn fragment(location: &str) -> std::collections::HashMap<String, String> {
    let (_, frag) = location.split_once('#').unwrap_or_else(|| panic!("no fragment in {location}"));
    frag.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Logs in as `who` through the provider; the login's answer.
async fn login(server: &Server, who: &str) -> std::collections::HashMap<String, String> {
    let response =
        browser(false).get(format!("{}/auth/oidc/test/start?login_hint={who}", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    fragment(&location(&response))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_through_a_real_openid_provider() {
    install_harness();
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let provider = start_provider(&callback);
    let other_issuer = start_provider(&callback);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[api.oidc.test]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\ndisplay_name = \"Test SSO\"\n",
        provider.url
    );
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start_on(dir.path(), &config, &[], &listen);

    let providers: Value = reqwest::get(format!("{}/auth/providers", server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(providers["providers"][0]["displayName"], "Test SSO");

    // First login: nothing is created until the person picks a handle.
    let first = login(&server, "carol").await;
    assert_eq!(first.get("handle").map(String::as_str), Some("carol"), "the provider's username is suggested");
    let signup = first.get("signup").expect("a first login asks for a handle").clone();
    let complete =
        "mutation($s: String!, $h: String!) { completeSignup(signupToken: $s, handle: $h) { token user { id } } }";
    server.register("taken").await;
    let (code, _) = server.refused(None, complete, json!({ "s": signup, "h": "taken" })).await;
    assert_eq!(code, "CONFLICT", "handles are unique on the hub");
    let done = server.ok(None, complete, json!({ "s": signup, "h": "carol-sso" })).await;
    assert_eq!(done["completeSignup"]["user"]["id"], "@carol-sso:hub.test");
    let (code, _) = server.refused(None, complete, json!({ "s": signup, "h": "again" })).await;
    assert_eq!(code, "INVALID_INPUT", "a signup is used once");

    // The next login is the same user, straight to a session.
    let second = login(&server, "carol").await;
    let token = second.get("token").expect("a known subject gets a session").clone();
    let me = server.ok(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(me["me"]["id"], "@carol-sso:hub.test");

    // A tampered state is refused; the genuine one still works once.
    let hop = browser(true).get(format!("{}/auth/oidc/test/start?login_hint=carol", server.url)).send().await.unwrap();
    let back = location(&hop);
    assert!(back.starts_with(&callback), "{back}");
    let mut url = reqwest::Url::parse(&back).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(
        pairs.iter().map(|(k, v)| if k == "state" { (k.clone(), format!("{v}x")) } else { (k.clone(), v.clone()) }),
    );
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let tampered = no_redirects.get(url.as_str()).send().await.unwrap();
    assert_eq!(tampered.status(), 400);
    let body: Value = tampered.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("start the login again"), "{body}");
    let genuine = no_redirects.get(&back).send().await.unwrap();
    assert_eq!(genuine.status(), 303);
    assert!(fragment(&location(&genuine)).contains_key("token"));
    assert_eq!(no_redirects.get(&back).send().await.unwrap().status(), 400, "a state is used once");

    // An ID token from another issuer, genuinely signed by it, is refused.
    let foreign = id_token_from(&other_issuer, &callback, "carol").await;
    let refused = reqwest::Client::new()
        .post(format!("{}/auth/oidc/test/id-token", server.url))
        .json(&json!({ "id_token": foreign.0, "nonce": foreign.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().to_lowercase().contains("issuer"), "{body}");
    // The same kind of token from the configured provider is accepted (a native app's path).
    let own = id_token_from(&provider, &callback, "carol").await;
    let accepted: Value = reqwest::Client::new()
        .post(format!("{}/auth/oidc/test/id-token", server.url))
        .json(&json!({ "id_token": own.0, "nonce": own.1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(accepted["token"].is_string(), "{accepted}");

    // Logging out revokes the session, and its open websocket closes at once.
    let mut ws = Ws::connect(&server.ws_url(), &token).await;
    ws.subscribe("me", "subscription { myEvents { kind } }", json!({})).await;
    server.ok(Some(&token), "mutation { logout }", json!({})).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), ws.close_code()).await.unwrap();
    assert_eq!(closed, 4401);
    let (code, _) = server.refused(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
}

/// Runs the code flow against `provider` as its client would, and returns a genuine ID
/// token with the nonce it was asked for.
async fn id_token_from(provider: &Provider, redirect: &str, who: &str) -> (String, String) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(rand::random::<[u8; 32]>());
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let nonce = b64.encode(rand::random::<[u8; 16]>());
    let mut auth = reqwest::Url::parse(&format!("{}/auth", provider.url)).unwrap();
    auth.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid profile")
        .append_pair("state", "s")
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", who);
    let hop = browser(true).get(auth).send().await.unwrap();
    let back = reqwest::Url::parse(&location(&hop)).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", provider.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (tokens["id_token"].as_str().unwrap_or_else(|| panic!("no id_token: {tokens}")).to_owned(), nonce)
}

/// A hub on a free port whose `test` OpenID provider is a real one started here, with
/// `config` (TOML) besides.
pub(crate) fn hub_with_provider(config: &str) -> (Provider, Server, tempfile::TempDir) {
    install_harness();
    let port = free_port();
    let provider = start_provider(&format!("http://127.0.0.1:{port}/auth/oidc/test/callback"));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{config}\n[api.oidc.test]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\ndisplay_name = \"Test SSO\"\n",
        provider.url
    );
    let server = Server::start_on(dir.path(), &config, &[], &format!("127.0.0.1:{port}"));
    (provider, server, dir)
}

/// A Matrix client's single sign-on: `/login/sso/redirect` through the same real provider,
/// back to the client's `redirectUrl` with a `loginToken`, exchanged once at `/login`
/// (`m.login.token`) for an access token (docs/MATRIX.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_client_signs_on_through_the_openid_provider_and_gets_a_login_token() {
    let (_provider, server, _dir) = hub_with_provider("");
    let flows: Value =
        reqwest::get(format!("{}/_matrix/client/v3/login", server.url)).await.unwrap().json().await.unwrap();
    let sso = flows["flows"].as_array().unwrap().iter().find(|f| f["type"] == "m.login.sso").expect("an SSO flow");
    let idp = &sso["identity_providers"][0];
    assert_eq!((idp["id"].as_str(), idp["name"].as_str()), (Some("test"), Some("Test SSO")), "{sso}");
    assert!(flows["flows"].as_array().unwrap().iter().any(|f| f["type"] == "m.login.token"));

    // Through the provider (its default account, `alice`) and back to the client.
    let client_url = "http://client.example/after-login?state=kept";
    let start =
        format!("{}/_matrix/client/v3/login/sso/redirect/test?redirectUrl={}", server.url, urlencode(client_url));
    let back = browser(false).get(start).send().await.unwrap();
    assert_eq!(back.status(), 303, "{:?}", back.text().await);
    let to = location(&back);
    let token =
        to.strip_prefix("http://client.example/after-login?state=kept&loginToken=").unwrap_or_else(|| panic!("{to}"));

    let exchange = |token: String| {
        let url = format!("{}/_matrix/client/v3/login", server.url);
        async move {
            let body = json!({ "type": "m.login.token", "token": token });
            let r = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, login) = exchange(token.to_owned()).await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user_id"], "@alice:hub.test", "a first sign-on takes the provider's username as handle");
    let whoami: Value = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/account/whoami", server.url))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whoami["user_id"], "@alice:hub.test");
    let (status, again) = exchange(token.to_owned()).await;
    assert_eq!((status, again["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "a login token is used once: {again}");
    // A redirect that is no URL of a client is refused.
    let bad =
        reqwest::get(format!("{}/_matrix/client/v3/login/sso/redirect?redirectUrl=javascript:alert(1)", server.url))
            .await
            .unwrap();
    assert_eq!(bad.status(), 400);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
