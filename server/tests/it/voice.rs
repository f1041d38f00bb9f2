//! Voice over real HTTP, against LiveKit's own formats — with no SFU: none can be installed on
//! these machines, so no media flows and no real LiveKit server runs here. What stands in:
//!
//! - tokens are checked with `livekit-api`'s verifier and with LiveKit's Python SDK (PyPI
//!   `livekit-api`), each verifying what the other signed;
//! - webhooks are signed as LiveKit signs them (a JWT with the body's SHA-256) and posted to
//!   `/_openguild/voice/webhook`;
//! - a recording server speaks RoomService (Twirp over protobuf at
//!   `/twirp/livekit.RoomService/…`, decoded with `livekit-protocol`'s types, each request's
//!   admin token verified) and shows the exact calls moderation makes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use livekit_api::access_token::{AccessToken, Claims, TokenVerifier};
use livekit_protocol as proto;
use prost::Message;
use serde_json::{Value, json};
use sha2::Digest;

use crate::shared::join_by_invite;
use crate::support::{Server, Ws};

const KEY: &str = "devkey";
const SECRET: &str = "a-secret-of-thirty-two-characters-at-least";
const EVERYONE: &str = "1111111111111111";

/// One RoomService call as the recorder decoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Remove { room: String, identity: String, revoked: bool },
    Update { room: String, identity: String, sources: Vec<i32>, subscribe: bool },
    Mute { room: String, identity: String, track: String, muted: bool },
    Move { room: String, identity: String, to: String },
    List { room: String },
}

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    /// What ListParticipants answers, by room.
    rooms: Arc<Mutex<HashMap<String, Vec<proto::ParticipantInfo>>>>,
}

impl Recorder {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// The calls made from now until `n` arrived and nothing more came for a moment.
    async fn expect(&self, n: usize) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.take()
    }
}

async fn twirp(
    State(rec): State<Recorder>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    // Every call carries an admin token for its room, signed with the hub's key.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let claims = TokenVerifier::with_api_key(KEY, SECRET).verify(auth.trim_start_matches("Bearer "));
    let Ok(claims) = claims else {
        return (StatusCode::UNAUTHORIZED, b"{\"code\":\"unauthenticated\",\"msg\":\"bad token\"}".to_vec());
    };
    assert!(claims.video.room_admin, "{method} without room_admin");
    let (call, reply) = match method.as_str() {
        "RemoveParticipant" => {
            let r = proto::RoomParticipantIdentity::decode(body).unwrap();
            (
                Call::Remove { room: r.room, identity: r.identity, revoked: r.revoke_token_ts > 0 },
                proto::RemoveParticipantResponse::default().encode_to_vec(),
            )
        }
        "UpdateParticipant" => {
            let r = proto::UpdateParticipantRequest::decode(body).unwrap();
            let p = r.permission.unwrap_or_default();
            let call = Call::Update {
                room: r.room,
                identity: r.identity,
                sources: p.can_publish_sources,
                subscribe: p.can_subscribe,
            };
            (call, proto::ParticipantInfo::default().encode_to_vec())
        }
        "MutePublishedTrack" => {
            let r = proto::MuteRoomTrackRequest::decode(body).unwrap();
            let reply = proto::MuteRoomTrackResponse {
                track: Some(proto::TrackInfo { sid: r.track_sid.clone(), muted: r.muted, ..Default::default() }),
            };
            (
                Call::Mute { room: r.room, identity: r.identity, track: r.track_sid, muted: r.muted },
                reply.encode_to_vec(),
            )
        }
        "MoveParticipant" => {
            let r = proto::MoveParticipantRequest::decode(body).unwrap();
            (
                Call::Move { room: r.room, identity: r.identity, to: r.destination_room },
                proto::MoveParticipantResponse::default().encode_to_vec(),
            )
        }
        "ListParticipants" => {
            let r = proto::ListParticipantsRequest::decode(body).unwrap();
            let participants = rec.rooms.lock().unwrap().get(&r.room).cloned().unwrap_or_default();
            (Call::List { room: r.room }, proto::ListParticipantsResponse { participants }.encode_to_vec())
        }
        other => panic!("unexpected RoomService call {other}"),
    };
    rec.calls.lock().unwrap().push(call);
    (StatusCode::OK, reply)
}

async fn start_recorder() -> (Recorder, String) {
    let rec = Recorder::default();
    let app = axum::Router::new()
        .route("/twirp/livekit.RoomService/{method}", axum::routing::post(twirp))
        .with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rec, url)
}

fn voice_config(url: &str) -> String {
    format!("[voice]\nurl = \"{url}\"\napi_key = \"{KEY}\"\napi_secret = \"{SECRET}\"\n")
}

fn user(handle: &str) -> String {
    format!("@{handle}:hub.test")
}

/// A guild with two voice channels, made by `owner`: (guild, voice, voice2).
async fn voice_guild(hub: &Server, owner: &str) -> (String, String, String) {
    let g = hub.ok(Some(owner), "mutation { createGuild(input: {name: \"Talk\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let mut voice = Vec::new();
    for name in ["lounge", "stage"] {
        let c = hub
            .ok(
                Some(owner),
                "mutation($g: ID!, $n: String!) { createChannel(input: {guildId: $g, name: $n, kind: VOICE}) { id } }",
                json!({ "g": guild, "n": name }),
            )
            .await;
        voice.push(c["createChannel"]["id"].as_str().unwrap().to_owned());
    }
    (guild, voice[0].clone(), voice[1].clone())
}

const JOIN: &str = "mutation($c: ID!) { joinVoice(channelId: $c) { url token expiresAt room } }";
const ROSTER: &str = "query($c: ID!) { channel(id: $c) { voiceParticipants { user { id } muted deafened serverMuted camera joinedAt } } }";

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A webhook body as LiveKit sends it.
fn event(kind: &str, room: &str, identity: &str, extra: impl FnOnce(&mut proto::WebhookEvent)) -> String {
    let mut e = proto::WebhookEvent {
        event: kind.into(),
        room: Some(proto::Room { name: room.into(), ..Default::default() }),
        participant: Some(proto::ParticipantInfo {
            sid: format!("PA_{identity}"),
            identity: identity.into(),
            ..Default::default()
        }),
        id: format!("EV_{}", rand::random::<u64>()),
        created_at: now_secs(),
        ..Default::default()
    };
    extra(&mut e);
    serde_json::to_string(&e).unwrap()
}

/// LiveKit's `Authorization` for `body`: a JWT by the API key carrying the body's SHA-256.
fn sign(body: &str, key: &str, secret: &str) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()));
    AccessToken::with_api_key(key, secret).with_sha256(&hash).to_jwt().unwrap()
}

async fn post_webhook(hub: &Server, body: &str, auth: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/_openguild/voice/webhook", hub.url))
        .header("content-type", "application/webhook+json")
        .body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Posts a signed webhook and expects it taken.
async fn webhook(hub: &Server, body: &str) {
    let (status, reply) = post_webhook(hub, body, Some(&sign(body, KEY, SECRET))).await;
    assert_eq!(status, 200, "{reply}");
}

async fn roster(hub: &Server, token: &str, channel: &str) -> Vec<Value> {
    hub.ok(Some(token), ROSTER, json!({ "c": channel })).await["channel"]["voiceParticipants"]
        .as_array()
        .unwrap()
        .clone()
}

async fn roster_ids(hub: &Server, token: &str, channel: &str) -> Vec<String> {
    roster(hub, token, channel).await.iter().map(|p| p["user"]["id"].as_str().unwrap().to_owned()).collect()
}

fn code(v: &Value) -> &str {
    v["extensions"]["code"].as_str().unwrap_or_default()
}

async fn overwrite(hub: &Server, token: &str, channel: &str, target: (&str, &str), deny: &[&str]) {
    let q = format!(
        "mutation($c: ID!, $t: ID!, $d: [Permission!]!) {{ setChannelOverwrite(channelId: $c, {}: $t, allow: [], deny: $d) }}",
        target.0
    );
    hub.ok(Some(token), &q, json!({ "c": channel, "t": target.1, "d": deny })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_carry_each_members_permissions_as_livekit_grants_checked_by_both_sdks() {
    let (_rec, url) = start_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), &voice_config(&url), &[]);
    let ann = hub.register("ann").await;
    let (guild, voice, _) = voice_guild(&hub, &ann).await;
    let mut tokens = HashMap::new();
    for name in ["bob", "carl", "dan", "eve", "fay", "gus"] {
        let t = hub.register(name).await;
        join_by_invite(&hub, &ann, &guild, &t).await;
        tokens.insert(name, t);
    }
    // carl: SPEAK denied by an overwrite; dan: timed out; eve: banned; fay: no CONNECT.
    overwrite(&hub, &ann, &voice, ("userId", &user("carl")), &["SPEAK"]).await;
    overwrite(&hub, &ann, &voice, ("userId", &user("fay")), &["CONNECT"]).await;
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { timeoutMember(guildId: $g, userId: $u, seconds: 600) }",
        json!({ "g": guild, "u": user("dan") }),
    )
    .await;
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u) }",
        json!({ "g": guild, "u": user("eve") }),
    )
    .await;

    let verifier = TokenVerifier::with_api_key(KEY, SECRET);
    let ticket = |v: &Value| -> (Claims, String) {
        let t = &v["joinVoice"];
        assert_eq!(t["url"], url.as_str());
        assert_eq!(t["room"], voice.as_str());
        let token = t["token"].as_str().unwrap().to_owned();
        (verifier.verify(&token).expect("the ticket verifies with livekit-api"), token)
    };
    let (member, member_jwt) = ticket(&hub.ok(Some(&tokens["bob"]), JOIN, json!({ "c": voice })).await);
    assert_eq!(member.sub, user("bob"));
    assert!(member.video.room_join && member.video.room == voice);
    assert_eq!(member.video.can_publish_sources, ["microphone", "camera", "screen_share", "screen_share_audio"]);
    assert!(!member.video.room_admin && member.attributes.is_empty(), "a member has no moderation powers");
    assert!(member.exp > member.nbf && member.exp as i64 <= now_secs() + 600);

    let (muted, muted_jwt) = ticket(&hub.ok(Some(&tokens["carl"]), JOIN, json!({ "c": voice })).await);
    assert_eq!(
        muted.video.can_publish_sources,
        ["camera", "screen_share", "screen_share_audio"],
        "no SPEAK: no microphone"
    );

    let (moderator, moderator_jwt) = ticket(&hub.ok(Some(&ann), JOIN, json!({ "c": voice })).await);
    assert!(!moderator.video.room_admin, "moderation goes through OpenGuild, never straight to the SFU");
    assert_eq!(moderator.attributes["openguild.moderation"], "MUTE_MEMBERS,DEAFEN_MEMBERS,MOVE_MEMBERS");

    let (c, e) = hub.refused(Some(&tokens["dan"]), JOIN, json!({ "c": voice })).await;
    assert_eq!(c, "FORBIDDEN", "{e}");
    assert!(e["message"].as_str().unwrap().contains("timed out"), "{e}");
    let (_, e) = hub.refused(Some(&tokens["eve"]), JOIN, json!({ "c": voice })).await;
    assert!(e["message"].as_str().unwrap().contains("banned"), "{e}");
    let (c, e) = hub.refused(Some(&tokens["fay"]), JOIN, json!({ "c": voice })).await;
    assert_eq!(c, "FORBIDDEN");
    assert!(e["message"].as_str().unwrap().contains("CONNECT"), "{e}");

    // A full channel: two seats taken (the SFU says so); gus is refused, a moderator is not.
    hub.ok(
        Some(&ann),
        "mutation($c: ID!) { setVoiceUserLimit(channelId: $c, limit: 2) { userLimit } }",
        json!({ "c": voice }),
    )
    .await;
    webhook(&hub, &event("participant_joined", &voice, &user("bob"), |_| {})).await;
    webhook(&hub, &event("participant_joined", &voice, &user("carl"), |_| {})).await;
    let (c, e) = hub.refused(Some(&tokens["gus"]), JOIN, json!({ "c": voice })).await;
    assert_eq!(c, "FORBIDDEN");
    assert!(e["message"].as_str().unwrap().contains("full (2 of 2)"), "{e}");
    ticket(&hub.ok(Some(&ann), JOIN, json!({ "c": voice })).await);

    // LiveKit's Python SDK verifies ours, and signs tokens and a webhook ours take.
    let body = event("participant_left", &voice, &user("carl"), |_| {});
    let request = json!({
        "key": KEY, "secret": SECRET,
        "verify": [member_jwt, muted_jwt, moderator_jwt],
        "make": [{ "identity": user("bob"), "room": voice, "sources": ["microphone"] }],
        "webhook_body": body,
    });
    let out = python_crosscheck(&request);
    let verified = out["verified"].as_array().unwrap();
    assert_eq!(verified[0]["identity"], user("bob"));
    assert_eq!(verified[0]["room"], voice.as_str());
    assert_eq!(verified[0]["room_join"], true);
    assert_eq!(
        verified[0]["can_publish_sources"],
        json!(["microphone", "camera", "screen_share", "screen_share_audio"])
    );
    assert_eq!(verified[1]["can_publish_sources"], json!(["camera", "screen_share", "screen_share_audio"]));
    assert_eq!(verified[2]["room_admin"], false);
    assert_eq!(verified[2]["attributes"]["openguild.moderation"], "MUTE_MEMBERS,DEAFEN_MEMBERS,MOVE_MEMBERS");
    let made = verifier.verify(out["made"][0].as_str().unwrap()).expect("a Python-made token verifies here");
    assert_eq!((made.sub.as_str(), made.video.room.as_str()), (user("bob").as_str(), voice.as_str()));
    assert_eq!(made.video.can_publish_sources, ["microphone"]);
    let (status, reply) = post_webhook(&hub, &body, out["webhook_auth"].as_str()).await;
    assert_eq!(status, 200, "a webhook LiveKit's Python SDK signed is taken: {reply}");
    assert_eq!(roster_ids(&hub, &ann, &voice).await, [user("bob")], "carl left");

    // Without [voice], voice channels exist and every voice request says why not.
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = Server::start(&bare_dir.path().join("data"), "", &[]);
    let zed = bare.register("zed").await;
    let (_, lounge, _) = voice_guild(&bare, &zed).await;
    let (c, e) = bare.refused(Some(&zed), JOIN, json!({ "c": lounge })).await;
    assert_eq!(c, "VOICE_UNAVAILABLE");
    assert!(e["message"].as_str().unwrap().contains("[voice]"), "{e}");
    let (status, reply) = post_webhook(&bare, "{}", Some("x")).await;
    assert_eq!((status, code(&reply["errors"][0])), (404, "VOICE_UNAVAILABLE"));
}

fn python_crosscheck(request: &Value) -> Value {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/voice_py/crosscheck.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "LiveKit's Python SDK refused (is PyPI livekit-api installed? scripts/ensure-services installs it): {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_and_the_roster_follows_them_live() {
    let (_rec, url) = start_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), &voice_config(&url), &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let (guild, voice, _) = voice_guild(&hub, &ann).await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    let mut ws = Ws::connect(&hub.ws_url(), &bob).await;
    ws.subscribe(
        "g",
        "subscription($g: ID!) { guildEvents(guildId: $g) { kind cursor channelId target { id } } }",
        json!({ "g": guild }),
    )
    .await;

    // Valid: ann joins, and bob sees it live.
    let joined = event("participant_joined", &voice, &user("ann"), |_| {});
    webhook(&hub, &joined).await;
    let live = next_voice(&mut ws).await;
    assert_eq!((live["kind"].as_str(), live["channelId"].as_str()), (Some("voice.joined"), Some(voice.as_str())));
    assert_eq!(live["target"]["id"], user("ann"));
    let seen = hub
        .ok(
            Some(&bob),
            "query($c: ID!, $a: String) { channel(id: $c) { voiceParticipants(after: $a) { user { id } muted } } }",
            json!({ "c": voice, "a": live["cursor"] }),
        )
        .await;
    assert_eq!(seen["channel"]["voiceParticipants"][0]["user"]["id"], user("ann"));

    // Refused: replayed, wrong key, tampered body, unsigned, stale — and nothing recorded.
    let (status, reply) = post_webhook(&hub, &joined, Some(&sign(&joined, KEY, SECRET))).await;
    assert_eq!(status, 401, "a replay");
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("received before"), "{reply}");
    let left = event("participant_left", &voice, &user("ann"), |_| {});
    let (status, reply) = post_webhook(&hub, &left, Some(&sign(&left, "otherkey", SECRET))).await;
    assert_eq!(status, 401, "wrong key: {reply}");
    let (status, _) = post_webhook(&hub, &left, Some(&sign(&left, KEY, "another-secret-of-thirty-two-chars!!"))).await;
    assert_eq!(status, 401, "wrong secret");
    let tampered = left.replace(&user("ann"), &user("bob"));
    let (status, reply) = post_webhook(&hub, &tampered, Some(&sign(&left, KEY, SECRET))).await;
    assert_eq!(status, 401);
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("does not match the hash"), "{reply}");
    let (status, reply) = post_webhook(&hub, &left, None).await;
    assert_eq!(status, 401);
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("no Authorization"), "{reply}");
    let stale = event("participant_left", &voice, &user("ann"), |e| e.created_at -= 600);
    let (status, reply) = post_webhook(&hub, &stale, Some(&sign(&stale, KEY, SECRET))).await;
    assert_eq!(status, 401);
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("600 s"), "{reply}");
    assert_eq!(roster_ids(&hub, &bob, &voice).await, [user("ann")], "no refused webhook changed the roster");

    // Mutes: her own (the client says so) and a published camera, live.
    hub.ok(
        Some(&ann),
        "mutation($c: ID!) { setVoiceState(channelId: $c, muted: true, deafened: false) }",
        json!({ "c": voice }),
    )
    .await;
    assert_eq!(next_voice(&mut ws).await["kind"], "voice.self");
    let camera = event("track_published", &voice, &user("ann"), |e| {
        e.track = Some(proto::TrackInfo {
            sid: "TR_cam".into(),
            source: proto::TrackSource::Camera as i32,
            ..Default::default()
        })
    });
    webhook(&hub, &camera).await;
    let live = next_voice(&mut ws).await;
    assert_eq!(live["kind"], "voice.track");
    let r = hub
        .ok(
            Some(&bob),
            "query($c: ID!, $a: String) { channel(id: $c) { voiceParticipants(after: $a) { muted deafened camera } } }",
            json!({ "c": voice, "a": live["cursor"] }),
        )
        .await;
    assert_eq!(r["channel"]["voiceParticipants"][0], json!({ "muted": true, "deafened": false, "camera": true }));

    // Leaves: the roster empties, live.
    webhook(&hub, &left).await;
    let live = next_voice(&mut ws).await;
    assert_eq!(live["kind"], "voice.left");
    assert!(roster(&hub, &bob, &voice).await.is_empty());
}

/// The next voice event on a guildEvents subscription (skipping others).
async fn next_voice(ws: &mut Ws) -> Value {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a live voice event").expect("open");
        let e = &msg["payload"]["data"]["guildEvents"];
        if e["kind"].as_str().is_some_and(|k| k.starts_with("voice.")) {
            return e.clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_reaches_livekit_as_roomservice_calls() {
    let (rec, url) = start_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hub = Server::start(&data, &voice_config(&url), &[]);
    let ann = hub.register("ann").await;
    let (guild, voice, stage) = voice_guild(&hub, &ann).await;
    let mut tokens = HashMap::new();
    for name in ["bob", "carl", "dan", "eve", "fay", "gus"] {
        let t = hub.register(name).await;
        join_by_invite(&hub, &ann, &guild, &t).await;
        webhook(&hub, &event("participant_joined", &voice, &user(name), |_| {})).await;
        tokens.insert(name, t);
    }
    let mic = event("track_published", &voice, &user("bob"), |e| {
        e.track = Some(proto::TrackInfo {
            sid: "TR_mic".into(),
            source: proto::TrackSource::Microphone as i32,
            ..Default::default()
        })
    });
    webhook(&hub, &mic).await;
    rec.expect(0).await;
    let all = [2, 1, 3, 4]; // microphone, camera, screen share, screen share audio

    // Server mute: the microphone muted, and the right to publish one taken away.
    hub.ok(
        Some(&ann),
        "mutation($c: ID!, $u: ID!) { serverMuteMember(channelId: $c, userId: $u, muted: true, reason: \"shouting\") }",
        json!({ "c": voice, "u": user("bob") }),
    )
    .await;
    let (room, bob) = (voice.clone(), user("bob"));
    assert_eq!(
        rec.expect(2).await,
        [
            Call::Mute { room: room.clone(), identity: bob.clone(), track: "TR_mic".into(), muted: true },
            Call::Update { room: room.clone(), identity: bob.clone(), sources: vec![1, 3, 4], subscribe: true },
        ]
    );
    let r = roster(&hub, &ann, &voice).await;
    let bob_row = r.iter().find(|p| p["user"]["id"] == bob).unwrap();
    assert_eq!((bob_row["serverMuted"].as_bool(), bob_row["muted"].as_bool()), (Some(true), Some(true)));

    // Move: carl to the stage, then the stage's room listed to seat him there.
    rec.rooms.lock().unwrap().insert(
        stage.clone(),
        vec![proto::ParticipantInfo { sid: "PA_carl".into(), identity: user("carl"), ..Default::default() }],
    );
    hub.ok(
        Some(&ann),
        "mutation($c: ID!, $u: ID!, $t: ID!) { moveVoiceMember(channelId: $c, userId: $u, toChannelId: $t) }",
        json!({ "c": voice, "u": user("carl"), "t": stage }),
    )
    .await;
    assert_eq!(
        rec.expect(2).await,
        [
            Call::Move { room: room.clone(), identity: user("carl"), to: stage.clone() },
            Call::List { room: stage.clone() }
        ]
    );
    assert_eq!(roster_ids(&hub, &ann, &stage).await, [user("carl")]);

    // Disconnect: removed, tokens not revoked (they may come back).
    hub.ok(
        Some(&ann),
        "mutation($c: ID!, $u: ID!) { disconnectVoiceMember(channelId: $c, userId: $u) }",
        json!({ "c": voice, "u": user("dan") }),
    )
    .await;
    assert_eq!(rec.expect(1).await, [Call::Remove { room: room.clone(), identity: user("dan"), revoked: false }]);

    // Kick, ban, timeout: removed at once, their tokens revoked.
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { kickMember(guildId: $g, userId: $u) }",
        json!({ "g": guild, "u": user("eve") }),
    )
    .await;
    assert_eq!(rec.expect(1).await, [Call::Remove { room: room.clone(), identity: user("eve"), revoked: true }]);
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u) }",
        json!({ "g": guild, "u": user("fay") }),
    )
    .await;
    assert_eq!(rec.expect(1).await, [Call::Remove { room: room.clone(), identity: user("fay"), revoked: true }]);
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { timeoutMember(guildId: $g, userId: $u, seconds: 60) }",
        json!({ "g": guild, "u": user("gus") }),
    )
    .await;
    assert_eq!(rec.expect(1).await, [Call::Remove { room: room.clone(), identity: user("gus"), revoked: true }]);

    // A permission change: @everyone loses STREAM here; everyone still in the room (bob,
    // server-muted, and the removed ones no more) is told at once, and only them.
    overwrite(&hub, &ann, &voice, ("roleId", EVERYONE), &["STREAM"]).await;
    assert_eq!(
        rec.expect(1).await,
        [Call::Update { room: room.clone(), identity: bob.clone(), sources: vec![], subscribe: true }]
    );
    // ... and losing CONNECT removes them.
    overwrite(&hub, &ann, &voice, ("userId", &bob), &["CONNECT"]).await;
    assert_eq!(rec.expect(1).await, [Call::Remove { room: room.clone(), identity: bob.clone(), revoked: true }]);
    let _ = all;
    // Each act is the moderator's signed event, in the guild's audit log.
    let log = hub
        .ok(Some(&ann), "query($g: ID!) { auditLog(guildId: $g, first: 100) { edges { node { kind actor target channelId reason } } } }", json!({ "g": guild }))
        .await;
    let voice_acts: Vec<(String, String)> = log["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["kind"].as_str().unwrap().starts_with("voice."))
        .map(|n| (n["kind"].as_str().unwrap().to_owned(), n["target"].as_str().unwrap_or_default().to_owned()))
        .collect();
    for (kind, target) in
        [("voice.server_muted", user("bob")), ("voice.moved", user("carl")), ("voice.disconnected", user("dan"))]
    {
        assert!(voice_acts.contains(&(kind.to_owned(), target.clone())), "{kind} of {target} not in {voice_acts:?}");
    }

    // A webhook missed while the hub was down heals on start: LiveKit lists ann in the lounge.
    drop(hub);
    rec.rooms.lock().unwrap().insert(
        voice.clone(),
        vec![proto::ParticipantInfo { sid: "PA_ann2".into(), identity: user("ann"), ..Default::default() }],
    );
    hub = Server::start(&data, &voice_config(&url), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !roster_ids(&hub, &ann, &voice).await.contains(&user("ann")) {
        assert!(Instant::now() < deadline, "the roster did not heal: {:?}", roster_ids(&hub, &ann, &voice).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healed = roster_ids(&hub, &ann, &voice).await;
    assert_eq!(healed, [user("ann")], "everyone LiveKit does not list left");
    let _ = tokens;
}
