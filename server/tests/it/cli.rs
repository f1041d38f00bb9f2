//! The operator's commands against a real data directory.

use std::process::{Command, Output};

use openguild_domain::event::{self, ServerKey, UnsignedEvent};
use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::{EventBody, GuildId, StreamId, Timestamp, UserId};
use openguild_store::{ExpectedVersion, Options};
use sqlx::Connection;

fn openguild(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(args)
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", "hub.test")
        .env("OPENGUILD_LOG", "warn")
        .output()
        .expect("openguild runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Writes a guild with a ban into `data` as the server would, signed with the data
/// directory's own key.
async fn seed(data: &std::path::Path) -> (GuildId, Vec<openguild_domain::EventId>) {
    // The hub's key, where the server keeps it.
    let seed = [7u8; 32];
    std::fs::write(data.join("server.key"), seed).unwrap();
    let key = ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:a1".parse().unwrap(), seed);
    let store = openguild_store::open(&data.join("events.db").display().to_string(), Options::default()).await.unwrap();
    let owner: UserId = "@owner:hub.test".parse().unwrap();
    let mut now = Timestamp::from_millis(1_795_000_000_000).unwrap();
    let (id, created) = guild::create(&owner, key.server(), "CLI guild", [3; 16], now).unwrap();
    let mut state = guild::Guild::default();
    let mut ids = vec![];
    let commands = [
        (
            owner.clone(),
            GuildCommand::CreateInvite { code: "join1".parse().unwrap(), max_uses: None, expires_at: None },
        ),
        ("@mal:hub.test".parse().unwrap(), GuildCommand::Join { invite: "join1".parse().unwrap() }),
        (
            owner.clone(),
            GuildCommand::Ban { user: "@mal:hub.test".parse().unwrap(), reason: "spam".into(), purge_seconds: 0 },
        ),
    ];
    let mut pending: Vec<(UserId, EventBody)> = vec![(owner.clone(), created)];
    let mut commands = commands.into_iter();
    loop {
        for (actor, body) in pending.drain(..) {
            let e = event::sign(
                UnsignedEvent {
                    stream: StreamId::Guild(id),
                    seq: state.version + 1,
                    prev: state.head.into_iter().collect(),
                    auth: vec![],
                    sender: actor,
                    ts: now,
                    body,
                },
                &key,
            )
            .unwrap();
            let expected =
                if state.version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(state.version) };
            store.append(&StreamId::Guild(id), expected, vec![e.clone()]).await.unwrap();
            ids.push(e.event.id);
            state = guild::evolve(state, &e.event);
            now = now.plus_millis(1000);
        }
        let Some((actor, cmd)) = commands.next() else { break };
        for body in guild::decide(&state, &actor, &cmd, now).unwrap() {
            pending.push((actor.clone(), body));
        }
    }
    store.close().await;
    (id, ids)
}

#[tokio::test]
async fn verify_passes_then_names_an_event_altered_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ids) = seed(dir.path()).await;
    let ok = openguild(dir.path(), &["events", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("ok: 4 events in 1 streams verify"), "{}", text(&ok));

    let db = dir.path().join("events.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let (mut body,): (Vec<u8>,) =
        sqlx::query_as("SELECT body FROM events WHERE position = 3").fetch_one(&mut conn).await.unwrap();
    let last = body.len() - 2;
    body[last] ^= 0x01;
    sqlx::query("UPDATE events SET body = ? WHERE position = 3").bind(body).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let bad = openguild(dir.path(), &["events", "verify"]);
    assert!(!bad.status.success(), "verify must fail: {}", text(&bad));
    assert!(text(&bad).contains("position 3"), "names the event: {}", text(&bad));
    let _ = ids;
}

#[tokio::test]
async fn show_tail_status_rebuild_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (guild, ids) = seed(dir.path()).await;
    let show = openguild(dir.path(), &["events", "show", &ids[3].to_string()]);
    assert!(show.status.success(), "{}", text(&show));
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(json["kind"], "member.banned");
    assert_eq!(json["body"]["member.banned"]["reason"], "spam");

    let tail = openguild(dir.path(), &["events", "tail", "-n", "2"]);
    assert!(tail.status.success(), "{}", text(&tail));
    let lines: Vec<&str> = std::str::from_utf8(&tail.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2, "{}", text(&tail));

    let rebuild = openguild(dir.path(), &["projections", "rebuild", "--all"]);
    assert!(rebuild.status.success(), "{}", text(&rebuild));
    assert!(text(&rebuild).contains("directory: rebuilt to position 4"), "{}", text(&rebuild));
    let status = openguild(dir.path(), &["projections", "status"]);
    assert!(text(&status).contains("caught-up") && text(&status).contains("store head: 4"), "{}", text(&status));
    let unknown = openguild(dir.path(), &["projections", "rebuild", "nope"]);
    assert!(!unknown.status.success() && text(&unknown).contains("known: directory"), "{}", text(&unknown));

    let replay = openguild(dir.path(), &["audit", "replay", "--guild", &guild.to_string(), "--until", "position:3"]);
    assert!(replay.status.success(), "{}", text(&replay));
    let state: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert!(state["members"]["@mal:hub.test"].is_array(), "mal is a member before the ban: {state}");
    let now = openguild(dir.path(), &["audit", "replay", "--guild", &guild.to_string()]);
    let state: serde_json::Value = serde_json::from_slice(&now.stdout).unwrap();
    assert_eq!(state["bans"]["@mal:hub.test"], "spam");
    assert_eq!(state["history"][0]["kind"], "member.banned");
}

#[test]
fn configuration_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openguild.toml");
    std::fs::write(&file, "data_dir = \"from-file\"\nserver_name = \"hub.example\"\n[federation]\npeer_tokens = { \"peer.example\" = \"hunter2\" }\n").unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openguild"));
        cmd.env_remove("OPENGUILD_DATA_DIR").env_remove("OPENGUILD_SERVER_NAME").env("OPENGUILD_CONFIG", &file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).arg("config").arg("show").output().unwrap()
    };
    let shown = text(&run(&[], &[]));
    assert!(shown.contains("\"from-file\"") && shown.contains("hub.example"), "{shown}");
    assert!(!shown.contains("hunter2") && shown.contains("[secret]"), "secrets never print: {shown}");
    let shown = text(&run(&[("OPENGUILD_DATA_DIR", "from-env")], &[]));
    assert!(shown.contains("\"from-env\""), "{shown}");
    let shown = text(&run(&[("OPENGUILD_DATA_DIR", "from-env")], &["--data-dir", "from-flag"]));
    assert!(shown.contains("\"from-flag\""), "{shown}");

    std::fs::write(&file, "listen_port = 9\n").unwrap();
    let bad = run(&[], &[]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("listen_port") && text(&bad).contains("openguild.toml"), "{}", text(&bad));
}
