//! `audit replay` of a scripted moderation scenario: ban at T1, unban at T2, timeout at T3.

use openguild_domain::Timestamp;
use openguild_domain::guild::GuildCommand as C;
use openguild_projections::replay::{Until, replay};

use crate::support::{TestHub, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_shows_the_state_at_each_moment() {
    let mut hub = TestHub::new().await;
    let g = hub.create_guild("owner", "Court", 1).await;
    hub.run(g, "owner", C::CreateInvite { code: "inv1".parse().unwrap(), max_uses: None, expires_at: None })
        .await
        .unwrap();
    hub.run(g, "mal", C::Join { invite: "inv1".parse().unwrap() }).await.unwrap();
    let t1 = hub.now;
    hub.run(g, "owner", C::Ban { user: user("mal"), reason: "spam wave".into(), purge_seconds: 0 }).await.unwrap();
    let t2 = hub.now;
    hub.run(g, "owner", C::Unban { user: user("mal"), reason: "appeal accepted".into() }).await.unwrap();
    hub.run(g, "mal", C::Join { invite: "inv1".parse().unwrap() }).await.unwrap();
    let t3 = hub.now;
    let until = t3.plus_millis(600_000);
    hub.run(g, "owner", C::Timeout { user: user("mal"), until, reason: "rude".into() }).await.unwrap();
    let mal = user("mal").to_string();

    let at = |t: Timestamp| replay(&*hub.store, g, Until::Time(t));
    let before = at(Timestamp::from_millis(t1.as_millis() - 1).unwrap()).await.unwrap().unwrap();
    assert!(before.members.contains_key(&mal) && before.bans.is_empty());

    let after_ban = at(t1).await.unwrap().unwrap();
    assert!(!after_ban.members.contains_key(&mal));
    assert_eq!(after_ban.bans.get(&mal).map(String::as_str), Some("spam wave"));
    assert_eq!(after_ban.history.last().unwrap().kind, "member.banned");

    let after_unban = at(t2).await.unwrap().unwrap();
    assert!(after_unban.bans.is_empty() && !after_unban.members.contains_key(&mal));
    assert_eq!(after_unban.history.iter().map(|h| h.kind).collect::<Vec<_>>(), ["member.banned", "member.unbanned"]);

    let after_timeout = at(t3).await.unwrap().unwrap();
    assert!(after_timeout.members.contains_key(&mal));
    assert_eq!(after_timeout.timeouts.get(&mal), Some(&until.as_millis()));
    assert_eq!(after_timeout.history.last().unwrap().reason, "rude");

    // After it ends, the timeout is no longer in force.
    let later = at(until.plus_millis(1)).await.unwrap().unwrap();
    assert!(later.timeouts.is_empty());
    // By position too.
    let by_position = replay(&*hub.store, g, Until::Position(after_ban.position)).await.unwrap().unwrap();
    assert_eq!(by_position, after_ban);
}
