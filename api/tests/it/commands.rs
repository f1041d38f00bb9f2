//! The command path against a real SQLite store: what the domain decides is signed,
//! appended and chained; two executors (two nodes) racing on one channel both succeed.

use std::sync::Arc;

use openguild_api::commands::{CommandError, Commands, random16};
use openguild_domain::channel::MessageCommand;
use openguild_domain::event::{KeyRing, ServerKey};
use openguild_domain::guild::GuildCommand;
use openguild_domain::{ChannelId, ChannelKind, DomainError, StreamId, Timestamp, UserId};
use openguild_store::{Direction, Options};

fn key() -> ServerKey {
    ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:k1".parse().unwrap(), [3; 32])
}

fn user(h: &str) -> UserId {
    format!("@{h}:hub.test").parse().unwrap()
}

fn post(text: &str) -> MessageCommand {
    MessageCommand::Post {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: text.into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_travel_decide_sign_append_and_two_nodes_race_safely() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        openguild_store::open(&dir.path().join("events.db").display().to_string(), Options::default()).await.unwrap();
    let node_a = Arc::new(Commands::new(store.clone(), key()));
    let now = Timestamp::from_millis(1_795_000_000_000).unwrap();
    let (g, created) = node_a.create_guild(&user("owner"), "Commands", now).await.unwrap();
    assert_eq!(created.position, 1);
    let channel = ChannelId::from_bytes(random16());
    let cmd = GuildCommand::CreateChannel {
        channel,
        name: "general".into(),
        kind: ChannelKind::Text,
        category: None,
        topic: String::new(),
        overwrites: vec![],
    };
    node_a.guild(&user("owner"), g, &cmd, now).await.unwrap();
    let invite = GuildCommand::CreateInvite { code: "cmds1".parse().unwrap(), max_uses: None, expires_at: None };
    node_a.guild(&user("owner"), g, &invite, now).await.unwrap();
    node_a.guild(&user("ann"), g, &GuildCommand::Join { invite: "cmds1".parse().unwrap() }, now).await.unwrap();

    // A refusal is the domain's, with its reason, and writes nothing.
    let head = store.head_position().await.unwrap();
    let err =
        node_a.guild(&user("ann"), g, &GuildCommand::ArchiveGuild { reason: String::new() }, now).await.unwrap_err();
    assert!(matches!(err, CommandError::Domain(DomainError::Forbidden(_))), "{err}");
    assert_eq!(store.head_position().await.unwrap(), head);

    // A second node, which finds the channel's guild in the directory read model, both
    // posting at once.
    let db = openguild_projections::ReadDb::open(&dir.path().join("read.db").display().to_string()).await.unwrap();
    let projections =
        openguild_projections::Projections::start(db.clone(), store.clone(), openguild_projections::all("hub.test"))
            .await
            .unwrap();
    projections
        .wait_for(&["directory"], store.head_position().await.unwrap(), std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let node_b = Arc::new(Commands::new(store.clone(), key()).with_directory(db));
    let mut tasks = Vec::new();
    for (n, node) in [node_a.clone(), node_b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let author = if n == 0 { user("owner") } else { user("ann") };
                let t = Timestamp::from_millis(1_795_000_000_000 + i).unwrap();
                node.message(&author, channel, &post(&format!("node {n} message {i}")), t).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stream = store.read_stream(&StreamId::Channel(channel), 1, 100, Direction::Forward).await.unwrap();
    assert_eq!(stream.len(), 50, "every message of both nodes was written");
    assert!(
        stream
            .windows(2)
            .all(|w| w[1].event.core.prev == [w[0].event.id] && w[1].event.core.seq == w[0].event.core.seq + 1)
    );
    assert!(
        stream.iter().all(|e| !e.event.core.auth.is_empty()),
        "each message names the guild head it was decided against"
    );
    let keys = KeyRing::default().with_own(&key());
    let verified = openguild_store::verify::verify_all(&*store, &keys, None, |_| {}).await.unwrap();
    assert_eq!(verified.events, 54);

    // A timeout decided on node A refuses ann's next post on node A.
    let until = Timestamp::from_millis(1_795_000_600_000).unwrap();
    node_a
        .guild(&user("owner"), g, &GuildCommand::Timeout { user: user("ann"), until, reason: "calm".into() }, now)
        .await
        .unwrap();
    let err = node_a.message(&user("ann"), channel, &post("still here?"), now).await.unwrap_err();
    assert!(matches!(err, CommandError::Domain(DomainError::TimedOut { .. })), "{err}");
    projections.stop().await;
    store.close().await;
}
