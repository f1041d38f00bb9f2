//! `openguild backup` beside a running hub that keeps writing, and `openguild restore` into an
//! empty store, on SQLite and on PostgreSQL: the restored log is the original's byte for byte
//! up to the backup's head, the restored read models answer as the original and as a rebuild
//! does, and a damaged or cut backup is refused with where it broke.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openguild_store::{EventStore, Options};
use serde_json::{Value, json};

use crate::shared::{guild_with_channel, join_by_invite};
use crate::support::Server;

const PASSPHRASE: &str = "a long and memorable passphrase";

/// Where a hub keeps its data: a data directory, and the database URLs when not SQLite.
struct Place {
    data: PathBuf,
    db: Option<String>,
}

impl Place {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("OPENGUILD_BACKUP_PASSPHRASE", PASSPHRASE.to_owned())];
        if let Some(url) = &self.db {
            env.push(("OPENGUILD_STORE_URL", url.clone()));
            env.push(("OPENGUILD_READ_DB_URL", url.clone()));
        }
        env
    }

    fn start(&self) -> Server {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // ann writes as fast as the hub answers while the backup runs.
        Server::start(&self.data, "[api.limits]\nmutations_per_second = 1000.0\nmutation_burst = 1000.0\n", &env)
    }

    fn openguild(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openguild"));
        cmd.args(args)
            .env("OPENGUILD_DATA_DIR", &self.data)
            .env("OPENGUILD_SERVER_NAME", "hub.test")
            .env("OPENGUILD_LOG", "warn");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("openguild runs")
    }

    async fn store(&self) -> Arc<dyn EventStore> {
        let url = self.db.clone().unwrap_or_else(|| self.data.join("events.db").display().to_string());
        openguild_store::open(&url, Options { read_only: true, ..Options::default() }).await.unwrap()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every stored event up to `head`: position and bytes.
async fn log(store: &dyn EventStore, head: u64) -> Vec<(u64, openguild_domain::event::RawEvent)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last().map(|e| e.position) else { break };
        out.extend(page.into_iter().filter(|e| e.position <= head).map(|e| (e.position, e.raw)));
        after = last;
    }
    out
}

/// What the owner reads of the guild and its quiet channel.
async fn read_models(hub: &Server, token: &str, guild: &str, channel: &str) -> Value {
    let query = "query($g: ID!, $c: ID!) {
        guild(id: $g) { name members(first: 50) { nodes { user { id } roles timedOutUntil } } bans { user { id } reason } roles { name permissions } channels { name } }
        channel(id: $c) { messages(last: 50) { nodes { id body deleted author { id } reactions { emoji count } editedAt } } }
    }";
    hub.ok(Some(token), query, json!({ "g": guild, "c": channel })).await
}

async fn round_trip(from: Place, to: Place) {
    let dir = tempfile::tempdir().unwrap();
    let hub = from.start();
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let cat = hub.register("cat").await;
    let (guild, quiet) = guild_with_channel(&hub, &ann, "Backed up").await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    join_by_invite(&hub, &ann, &guild, &cat).await;
    let post = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let mut ids = Vec::new();
    for (who, n) in [(&ann, 1), (&bob, 2), (&cat, 3), (&bob, 4)] {
        let sent = hub.ok(Some(who), post, json!({ "c": quiet, "b": format!("message {n}") })).await;
        ids.push(sent["sendMessage"]["id"].as_str().unwrap().to_owned());
    }
    // An edit, a reaction, an erasure (a deleted message's text is erased from the store),
    // a timeout and a ban.
    hub.ok(
        Some(&bob),
        "mutation($m: ID!) { editMessage(id: $m, body: \"message 2, edited\") { id } }",
        json!({ "m": ids[1] }),
    )
    .await;
    hub.ok(Some(&ann), "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"🎉\") }", json!({ "m": ids[0] })).await;
    hub.ok(Some(&ann), "mutation($m: ID!) { deleteMessage(id: $m, reason: \"spam\") }", json!({ "m": ids[3] })).await;
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { timeoutMember(guildId: $g, userId: $u, seconds: 3600) }",
        json!({ "g": guild, "u": "@bob:hub.test" }),
    )
    .await;
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u, reason: \"rude\") }",
        json!({ "g": guild, "u": "@cat:hub.test" }),
    )
    .await;
    let busy = hub
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"busy\", kind: TEXT}) { id } }",
            json!({ "g": guild }),
        )
        .await["createChannel"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = read_models(&hub, &ann, &guild, &quiet).await;

    // ann keeps posting in another channel while the backup runs.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (url, ann, busy, writing) = (hub.url.clone(), ann.clone(), busy.clone(), writing.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({ "query": post, "variables": { "c": busy, "b": format!("busy {n}") } });
                let r: Value = client
                    .post(format!("{url}/graphql"))
                    .bearer_auth(&ann)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(r["errors"].is_null(), "{r}");
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let file = dir.path().join("hub.ogbackup");
    let file_arg = file.display().to_string();
    let out = tokio::task::spawn_blocking({
        let (data, db, file_arg) = (from.data.clone(), from.db.clone(), file_arg.clone());
        move || Place { data, db }.openguild(&["backup", &file_arg])
    })
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    writing.store(false, Ordering::Relaxed);
    let written_during = writer.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("the hub's key is in it, sealed"), "{said}");
    let head: u64 = said.split("..=").nth(1).and_then(|s| s.split(')').next()).unwrap().parse().unwrap();
    let original = from.store().await;
    let original_head = original.head_position().await.unwrap();
    assert!(original_head > head, "writes went on after the backup's head ({written_during} posts during it)");

    // A backup is never written over, and a restore needs the passphrase.
    let again = from.openguild(&["backup", &file_arg]);
    assert!(!again.status.success() && text(&again).contains("exists"), "{}", text(&again));
    let no_pass = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["restore", &file_arg])
        .env("OPENGUILD_DATA_DIR", &to.data)
        .env("OPENGUILD_SERVER_NAME", "hub.test")
        .env_remove("OPENGUILD_BACKUP_PASSPHRASE")
        .output()
        .unwrap();
    assert!(!no_pass.status.success() && text(&no_pass).contains("passphrase"), "{}", text(&no_pass));

    // Restored into an empty store: the same bytes, in the same order, up to the head.
    let restored = to.openguild(&["restore", &file_arg]);
    assert!(restored.status.success(), "{}", text(&restored));
    let copy = to.store().await;
    assert_eq!(copy.head_position().await.unwrap(), head);
    let (a, b) = (log(&*original, head).await, log(&*copy, head).await);
    assert_eq!(a.len() as u64, head);
    assert!(a == b, "the restored log differs from the original's up to {head}");
    assert!(a.iter().any(|(_, raw)| raw.body.is_none()), "the erased body is erased in the backup too");
    copy.close().await;
    original.close().await;
    drop(hub);

    // Into a store that holds events, a restore is refused.
    let twice = to.openguild(&["restore", &file_arg]);
    assert!(!twice.status.success() && text(&twice).contains("already holds"), "{}", text(&twice));
    let verify = to.openguild(&["events", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));

    // The restored hub answers as the original did, with its own key and ann's password.
    let hub = to.start();
    let login = "mutation { login(handle: \"ann\", password: \"correct horse\") { token } }";
    let ann = hub.ok(None, login, json!({})).await["login"]["token"].as_str().unwrap().to_owned();
    let after = read_models(&hub, &ann, &guild, &quiet).await;
    assert_eq!(after, before);
    drop(hub);
    // And as a rebuild of its read models does.
    let rebuilt = to.openguild(&["projections", "rebuild", "--all"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    let hub = to.start();
    assert_eq!(read_models(&hub, &ann, &guild, &quiet).await, before);
    drop(hub);

    // An incremental backup of what came after the head continues a restored log: a full
    // restore, then the increment, is the original to its new head.
    let increment = dir.path().join("increment.ogbackup");
    let since = head.to_string();
    let out = from.openguild(&["backup", "--since", &since, &increment.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let third = Place { data: dir.path().join("incremental"), db: None };
    let full_then_increment = [file_arg.clone(), increment.display().to_string()];
    for f in &full_then_increment {
        let out = third.openguild(&["restore", f]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let (whole, rebuilt) = (from.store().await, third.store().await);
    let end = whole.head_position().await.unwrap();
    assert!(end >= original_head);
    assert_eq!(rebuilt.head_position().await.unwrap(), end);
    assert!(log(&*whole, end).await == log(&*rebuilt, end).await, "full + increment = the original");
    whole.close().await;
    rebuilt.close().await;
    // Out of order, an increment is refused, saying so.
    let fourth = Place { data: dir.path().join("out-of-order"), db: None };
    let out = fourth.openguild(&["restore", &increment.display().to_string()]);
    assert!(!out.status.success() && text(&out).contains("restore the backups in order"), "{}", text(&out));

    // A changed byte, or a cut, is refused with where it broke; nothing is written.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let damaged = dir.path().join("flipped.ogbackup");
    std::fs::write(&damaged, &flipped).unwrap();
    let check = to.openguild(&["restore", "--check", &damaged.display().to_string()]);
    let said = text(&check);
    assert!(!check.status.success() && said.contains("position"), "{said}");
    let cut = dir.path().join("cut.ogbackup");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let check = to.openguild(&["restore", "--check", &cut.display().to_string()]);
    let said = text(&check);
    assert!(
        !check.status.success() && said.contains("cut short") && said.contains("after the event at position"),
        "{said}"
    );
    let whole = to.openguild(&["restore", "--check", &file_arg]);
    assert!(whole.status.success() && text(&whole).contains(&format!("ok: {head} events")), "{}", text(&whole));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_while_writing_restores_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(Place { data: dir.path().join("a"), db: None }, Place { data: dir.path().join("b"), db: None }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_while_writing_restores_byte_for_byte_and_sqlite_to_postgres_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_name) = crate::nodes::fresh_database().await;
    let (b, b_name) = crate::nodes::fresh_database().await;
    round_trip(Place { data: dir.path().join("a"), db: Some(a) }, Place { data: dir.path().join("b"), db: Some(b) })
        .await;
    // A SQLite hub's backup restored into PostgreSQL: the migration path.
    let (c, c_name) = crate::nodes::fresh_database().await;
    round_trip(Place { data: dir.path().join("c"), db: None }, Place { data: dir.path().join("d"), db: Some(c) }).await;
    for name in [a_name, b_name, c_name] {
        crate::nodes::drop_database(&name).await;
    }
}
