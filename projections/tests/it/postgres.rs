//! The read models on PostgreSQL: the same projections, the same SQL, a real server; and
//! one node at a time per projection.

use std::time::Duration;

use openguild_domain::ChannelId;
use openguild_domain::body::ChannelKind;
use openguild_domain::channel::MessageCommand;
use openguild_domain::guild::GuildCommand as C;
use openguild_projections::{ProjectionState, ReadDb};
use sqlx::Connection;

use crate::support::{TestHub, dump, user};

fn admin_url() -> String {
    std::env::var("OPENGUILD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn fresh_database() -> String {
    let name = format!(
        "og_proj_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is needed: {e}", admin_url()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let base = admin_url();
    let base = base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b).to_owned();
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_models_match_a_rebuild_and_run_on_one_node_at_a_time() {
    let mut hub = TestHub::new().await;
    let url = fresh_database().await;
    hub.db = ReadDb::open(&url).await.unwrap();
    let node_a = hub.start_projections().await;
    let g = hub.create_guild("owner", "On Postgres", 1).await;
    let channel = ChannelId::from_bytes([1; 16]);
    hub.run(
        g,
        "owner",
        C::CreateChannel {
            channel,
            name: "general".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: "pg".into(),
            overwrites: vec![],
        },
    )
    .await
    .unwrap();
    hub.run(g, "owner", C::CreateInvite { code: "pgjoin".parse().unwrap(), max_uses: Some(5), expires_at: None })
        .await
        .unwrap();
    hub.run(g, "ann", C::Join { invite: "pgjoin".parse().unwrap() }).await.unwrap();
    let mut last = None;
    for i in 0..30 {
        let (id, _) = hub.post(channel, if i % 2 == 0 { "owner" } else { "ann" }, &format!("hello postgres {i}")).await;
        last = Some(id);
    }
    let m = last.unwrap();
    hub.say(channel, "owner", MessageCommand::Edit { message: m, text: "edited on postgres".into() })
        .await
        .unwrap_err();
    hub.say(channel, "ann", MessageCommand::Edit { message: m, text: "edited on postgres".into() }).await.unwrap();
    hub.say(channel, "owner", MessageCommand::React { message: m, emoji: "👍".into() }).await.unwrap();
    let until = hub.now.plus_millis(60_000);
    hub.run(g, "owner", C::Timeout { user: user("ann"), until, reason: "pg".into() }).await.unwrap();

    // A second node on the same database stands by.
    let node_b = hub.start_projections().await;
    hub.caught_up(&node_a).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(node_b.status().iter().all(|s| s.state == ProjectionState::Standby), "{:?}", node_b.status());

    let live = dump(&hub.db).await;
    assert_eq!(live["tl_messages"].len(), 30);
    assert!(live["tl_messages"].iter().any(|r| r.contains("edited on postgres")));
    assert_eq!(live["dir_timeouts"].len(), 1);
    let found: i64 =
        sqlx::query_scalar("SELECT count(*) FROM search_text WHERE tsv @@ plainto_tsquery('simple', 'postgres')")
            .fetch_one(&hub.db.pool)
            .await
            .unwrap();
    assert_eq!(found, 30, "full-text search finds every message");
    hub.rebuild_all().await.unwrap();
    let rebuilt = dump(&hub.db).await;
    for (table, rows) in &live {
        assert_eq!(rows, &rebuilt[table], "table {table} differs after a rebuild on PostgreSQL");
    }

    // When node A goes away, node B takes over and follows new events.
    node_a.stop().await;
    let (_, position) = hub.post(channel, "owner", "after the failover").await;
    node_b.wait_for(&["timeline"], position, Duration::from_secs(20)).await.unwrap();
    node_b.stop().await;
    hub.db.pool.close().await;
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
