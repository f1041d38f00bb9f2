//! Read-your-writes under load, and a projection that meets an event it cannot apply.

use std::time::Duration;

use openguild_domain::body::ChannelKind;
use openguild_domain::event::{self, UnsignedEvent};
use openguild_domain::guild::GuildCommand as C;
use openguild_domain::{ChannelId, EventBody, StreamId};
use openguild_projections::{ProjectionError, ProjectionState};
use openguild_store::ExpectedVersion;

use crate::support::{TestHub, posted, user};

/// A client that writes and then reads always sees its write: 1,000 times in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_always_reads_its_own_write() {
    let mut hub = TestHub::new().await;
    let projections = hub.start_projections().await;
    let g = hub.create_guild("owner", "Busy", 1).await;
    let channel = ChannelId::from_bytes([1; 16]);
    hub.run(
        g,
        "owner",
        C::CreateChannel {
            channel,
            name: "general".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
    )
    .await
    .unwrap();
    for i in 0..1000 {
        let (id, position) = hub.post(channel, "owner", &format!("write {i}")).await;
        projections.wait_for(&["timeline"], position, Duration::from_secs(2)).await.unwrap();
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM tl_messages WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&hub.db.pool)
            .await
            .unwrap()
            .flatten();
        assert_eq!(body.as_deref(), Some(format!("write {i}").as_str()), "write {i} was not visible after waiting");
    }
    projections.stop().await;
}

/// An event a projection cannot apply stops that projection at the event before it, with
/// the event and the reason recorded; the others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_stops_at_an_event_it_cannot_apply() {
    let mut hub = TestHub::new().await;
    let projections = hub.start_projections().await;
    let g = hub.create_guild("owner", "Broken", 1).await;
    let before = hub.store.head_position().await.unwrap();
    // A message in a channel no guild ever created: the timeline cannot place it.
    let stray = StreamId::Channel(ChannelId::from_bytes([9; 16]));
    let body = EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "lost".into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    };
    let bad = event::sign(
        UnsignedEvent {
            stream: stray.clone(),
            seq: 1,
            prev: vec![],
            auth: vec![],
            sender: user("owner"),
            ts: hub.now,
            body,
        },
        &hub.key,
    )
    .unwrap();
    hub.store.append(&stray, ExpectedVersion::NoStream, vec![bad.clone()]).await.unwrap();
    hub.run(g, "owner", C::UpdateGuild { name: Some("Still going".into()), description: None }).await.unwrap();
    let head = hub.store.head_position().await.unwrap();

    projections.wait_for(&["directory"], head, Duration::from_secs(5)).await.unwrap();
    let err = projections.wait_for(&["timeline"], head, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ProjectionError::Stopped { position, .. } if position == before), "{err}");
    let status = projections.status().into_iter().find(|s| s.name == "timeline").unwrap();
    let ProjectionState::Stopped { event, reason } = status.state else { panic!("not stopped: {status:?}") };
    assert_eq!(event, bad.event.id.to_string());
    assert!(reason.contains("unknown channel"), "{reason}");
    let recorded = openguild_projections::recorded_status(&hub.db).await.unwrap();
    let timeline = recorded.iter().find(|r| r.0 == "timeline").unwrap();
    assert_eq!((timeline.1, timeline.2.as_str()), (before, "stopped"));
    assert!(timeline.3.as_deref().unwrap().contains(&bad.event.id.to_string()));
    let name: String = sqlx::query_scalar("SELECT name FROM dir_guilds").fetch_one(&hub.db.pool).await.unwrap();
    assert_eq!(name, "Still going", "the other projections carried on");
    projections.stop().await;
}

/// A rebuild that meets an event a projection cannot apply stops at it and names it, keeps
/// what came before it (in the rebuild's tables, which are not swapped in), and skips
/// nothing; the event lies past the first page, so a rebuild's grouped pages are rolled back
/// and applied again one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stops_at_an_event_it_cannot_apply() {
    let mut hub = TestHub::new().await;
    let g = hub.create_guild("owner", "Rebuilt", 1).await;
    let channel = hub.general(g, "owner").await;
    let posts = (1..=1200).map(|n| (user("owner"), posted(&format!("post {n}")))).collect();
    hub.append_as(StreamId::Channel(channel), 0, None, vec![], posts).await;
    let before = hub.store.head_position().await.unwrap();
    // A message in a channel no guild created.
    let stray = StreamId::Channel(ChannelId::from_bytes([9; 16]));
    let bad = hub.append_as(stray, 0, None, vec![], vec![(user("owner"), posted("lost"))]).await.remove(0);
    hub.run(g, "owner", C::UpdateGuild { name: Some("After".into()), description: None }).await.unwrap();

    let err = hub.rebuild_all().await.unwrap_err();
    let ProjectionError::Stopped { name, position, event, reason } = err else { panic!("not stopped: {err}") };
    assert_eq!((name.as_str(), position, event), ("timeline", before, bad.id.to_string()));
    assert!(reason.contains("unknown channel"), "{reason}");
    assert_eq!(hub.rebuild_position("timeline").await, before, "the rebuild kept its position before the bad event");
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tl_messages__rebuild").fetch_one(&hub.db.pool).await.unwrap();
    assert_eq!(kept, 1200, "every message before the bad event was kept");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints WHERE name = 'timeline'")
        .fetch_one(&hub.db.pool)
        .await
        .unwrap();
    assert_eq!(live, 0, "nothing was swapped in");
}

/// A statement the database refuses (here a second channel with the same id, in another
/// guild) fails on SQLite's rebuild writer behind the applying task, at the commit: the
/// rebuild must still stop at that exact event and keep what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_names_an_event_the_database_refuses() {
    let mut hub = TestHub::new().await;
    let first = hub.create_guild("owner", "First", 1).await;
    let channel = hub.general(first, "owner").await;
    let posts = (1..=1500).map(|n| (user("owner"), posted(&format!("post {n}")))).collect();
    hub.append_as(StreamId::Channel(channel), 0, None, vec![], posts).await;
    let second = hub.create_guild("owner", "Second", 2).await;
    let before = hub.store.head_position().await.unwrap();
    // `general` always makes the same channel id: the directory's row for it exists.
    hub.general(second, "owner").await;
    let clash = hub.store.read_all(before, 1).await.unwrap().remove(0);

    let err = hub.rebuild_all().await.unwrap_err();
    let ProjectionError::Stopped { name, position, event, reason } = err else { panic!("not stopped: {err}") };
    assert_eq!((name.as_str(), position, event), ("directory", before, clash.event.id.to_string()));
    assert!(reason.contains("UNIQUE"), "{reason}");
    assert_eq!(
        hub.rebuild_position("directory").await,
        before,
        "the rebuild kept its position before the refused event"
    );
    let guilds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dir_guilds__rebuild").fetch_one(&hub.db.pool).await.unwrap();
    assert_eq!(guilds, 2, "the second guild, made just before the refused event, was kept");
}

/// A message redacted while still held back, after more reactions to it than one statement
/// takes were queued (and so sent): its reactions must go too, as they do live. Pins the
/// rule that held rows are all sent at once, never one table's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_message_loses_reactions_sent_before_it_was() {
    let mut hub = TestHub::new().await;
    let g = hub.create_guild("owner", "Popular", 1).await;
    let channel = hub.general(g, "owner").await;
    let stream = StreamId::Channel(channel);
    let post = hub.append_as(stream.clone(), 0, None, vec![], vec![(user("owner"), posted("popular"))]).await.remove(0);
    let message = post.id;
    let mut events: Vec<_> = (2..1102)
        .map(|n| (user(&format!("fan{n}")), EventBody::ReactionAdded { message, emoji: "👍".into() }))
        .collect();
    events.push((user("owner"), EventBody::MessageRedacted { message, reason: "spam".into() }));
    hub.append_as(stream, 1, Some(message), vec![], events).await;
    hub.rebuild_all().await.unwrap();
    let reactions: i64 = sqlx::query_scalar("SELECT count(*) FROM tl_reactions").fetch_one(&hub.db.pool).await.unwrap();
    assert_eq!(reactions, 0, "the redacted message kept reactions");
}
