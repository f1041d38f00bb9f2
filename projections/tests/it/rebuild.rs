//! Live projections, built event by event as commands arrive, equal projections rebuilt
//! from zero, table by table, for random command sequences.

use openguild_domain::body::{ChannelKind, Place, ReportAction};
use openguild_domain::channel::MessageCommand;
use openguild_domain::guild::GuildCommand as C;
use openguild_domain::permissions::{OverwriteTarget, Permissions as P};
use openguild_domain::{ChannelId, InviteCode, ReportId, RoleId, Timestamp};
use proptest::prelude::*;

use crate::support::{TestHub, dump, user};

const USERS: [&str; 5] = ["owner", "ann", "ben", "cat", "dan"];

#[derive(Clone, Debug)]
enum Op {
    Channel(u8),
    Role(u8, u64),
    Assign(u8, u8),
    Join(u8),
    Leave(u8),
    Post(u8, u8),
    Edit(u8),
    Redact(u8, u8),
    React(u8, u8, u8),
    Kick(u8, u8),
    Ban(u8, u8, bool),
    Unban(u8, u8),
    Timeout(u8, u8),
    SlowMode(u8, u8),
    Lock(u8, bool),
    Deny(u8, u8),
    Report(u8, u8),
    Resolve(u8, u8),
    Nick(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let u = || 0..5u8;
    prop_oneof![
        (0..3u8).prop_map(Op::Channel),
        (0..3u8, any::<u64>()).prop_map(|(r, p)| Op::Role(r, p)),
        (u(), 0..3u8).prop_map(|(a, r)| Op::Assign(a, r)),
        u().prop_map(Op::Join),
        u().prop_map(Op::Join),
        u().prop_map(Op::Leave),
        (u(), 0..3u8).prop_map(|(a, c)| Op::Post(a, c)),
        (u(), 0..3u8).prop_map(|(a, c)| Op::Post(a, c)),
        (u(), 0..3u8).prop_map(|(a, c)| Op::Post(a, c)),
        u().prop_map(Op::Edit),
        (u(), any::<u8>()).prop_map(|(a, m)| Op::Redact(a, m)),
        (u(), any::<u8>(), 0..3u8).prop_map(|(a, m, e)| Op::React(a, m, e)),
        (u(), u()).prop_map(|(a, t)| Op::Kick(a, t)),
        (u(), u(), any::<bool>()).prop_map(|(a, t, p)| Op::Ban(a, t, p)),
        (u(), u()).prop_map(|(a, t)| Op::Unban(a, t)),
        (u(), u()).prop_map(|(a, t)| Op::Timeout(a, t)),
        (0..3u8, 0..3u8).prop_map(|(c, s)| Op::SlowMode(c, s)),
        (0..3u8, any::<bool>()).prop_map(|(c, l)| Op::Lock(c, l)),
        (0..3u8, 0..3u8).prop_map(|(c, r)| Op::Deny(c, r)),
        (u(), any::<u8>()).prop_map(|(a, m)| Op::Report(a, m)),
        (u(), any::<u8>()).prop_map(|(a, r)| Op::Resolve(a, r)),
        u().prop_map(Op::Nick),
    ]
}

fn chan(n: u8) -> ChannelId {
    ChannelId::from_bytes([n + 1; 16])
}

fn role(n: u8) -> RoleId {
    RoleId::from_bytes([n + 100; 16])
}

async fn run_case(ops: Vec<Op>) {
    let mut hub = TestHub::new().await;
    let projections = hub.start_projections().await;
    let g = hub.create_guild("owner", "Prop guild", 1).await;
    let invite: InviteCode = "welcome".parse().unwrap();
    hub.run(g, "owner", C::CreateInvite { code: invite.clone(), max_uses: None, expires_at: None }).await.unwrap();
    hub.run(
        g,
        "owner",
        C::CreateChannel {
            channel: chan(0),
            name: "general".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
    )
    .await
    .unwrap();
    let mut messages = Vec::new();
    let mut reports = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let name = |n: u8| USERS[n as usize];
        let _ = match op {
            Op::Channel(c) => hub
                .run(
                    g,
                    "owner",
                    C::CreateChannel {
                        channel: chan(c),
                        name: format!("room-{c}"),
                        kind: ChannelKind::Text,
                        category: None,
                        topic: "t".into(),
                        overwrites: vec![],
                    },
                )
                .await
                .map(|_| ()),
            Op::Role(r, p) => hub
                .run(
                    g,
                    "owner",
                    C::CreateRole {
                        role: role(r),
                        name: format!("role {r}"),
                        permissions: P::from_bits_truncate(p) - P::ADMINISTRATOR,
                    },
                )
                .await
                .map(|_| ()),
            Op::Assign(a, r) => hub
                .run(g, "owner", C::AssignRole { user: user(name(a)), role: role(r), reason: "prop".into() })
                .await
                .map(|_| ()),
            Op::Join(a) => hub.run(g, name(a), C::Join { invite: invite.clone() }).await.map(|_| ()),
            Op::Leave(a) => hub.run(g, name(a), C::Leave).await.map(|_| ()),
            Op::Post(a, c) => hub
                .say(
                    chan(c),
                    name(a),
                    MessageCommand::Post {
                        mention_roles: Default::default(),
                        attachments: Vec::new(),
                        extra: None,
                        text: format!("message {i}"),
                        reply_to: messages.last().copied(),
                        mentions: Default::default(),
                        mentions_everyone: false,
                    },
                )
                .await
                .map(|(id, _)| messages.push(id)),
            Op::Edit(a) => match messages.last() {
                Some(m) => {
                    let m = *m;
                    let (g2, _) = hub
                        .channels
                        .iter()
                        .find(|(_, (_, s))| s.messages.contains_key(&m))
                        .map(|(c, s)| (*c, s.0))
                        .unwrap();
                    hub.say(g2, name(a), MessageCommand::Edit { message: m, text: format!("edited {i}") })
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            },
            Op::Redact(a, m) | Op::React(a, m, _) | Op::Report(a, m) if !messages.is_empty() => {
                let msg = messages[m as usize % messages.len()];
                let channel =
                    hub.channels.iter().find(|(_, (_, s))| s.messages.contains_key(&msg)).map(|(c, _)| *c).unwrap();
                match op {
                    Op::Redact(..) => hub
                        .say(channel, name(a), MessageCommand::Redact { message: msg, reason: "prop".into() })
                        .await
                        .map(|_| ()),
                    Op::React(_, _, e) => hub
                        .say(
                            channel,
                            name(a),
                            MessageCommand::React {
                                message: msg, emoji: ["👍", "🎉", ":wave:"][e as usize].into()
                            },
                        )
                        .await
                        .map(|_| ()),
                    _ => {
                        let target = hub.channels[&channel].1.report_target(channel, msg).unwrap();
                        let report = ReportId::from_bytes([i as u8; 16]);
                        let r = hub.run(g, name(a), C::FileReport { report, target, reason: "looks bad".into() }).await;
                        if r.is_ok() {
                            reports.push(report);
                        }
                        r.map(|_| ())
                    }
                }
            }
            Op::Redact(..) | Op::React(..) | Op::Report(..) => Ok(()),
            Op::Kick(a, t) => {
                hub.run(g, name(a), C::Kick { user: user(name(t)), reason: "prop".into() }).await.map(|_| ())
            }
            Op::Ban(a, t, purge) => hub
                .run(
                    g,
                    name(a),
                    C::Ban { user: user(name(t)), reason: "prop".into(), purge_seconds: if purge { 3600 } else { 0 } },
                )
                .await
                .map(|_| ()),
            Op::Unban(a, t) => {
                hub.run(g, name(a), C::Unban { user: user(name(t)), reason: "appeal".into() }).await.map(|_| ())
            }
            Op::Timeout(a, t) => {
                let until = hub.now.plus_millis(5_000);
                hub.run(g, name(a), C::Timeout { user: user(name(t)), until, reason: "cool".into() }).await.map(|_| ())
            }
            Op::SlowMode(c, s) => {
                hub.run(g, "owner", C::SetSlowMode { channel: chan(c), seconds: u32::from(s) * 5 }).await.map(|_| ())
            }
            Op::Lock(c, l) => hub
                .run(g, "owner", C::LockChannel { channel: chan(c), locked: l, reason: "prop".into() })
                .await
                .map(|_| ()),
            Op::Deny(c, r) => hub
                .run(
                    g,
                    "owner",
                    C::SetOverwrite {
                        place: Place::Channel(chan(c)),
                        target: OverwriteTarget::Role(role(r)),
                        allow: P::empty(),
                        deny: P::SEND_MESSAGES,
                    },
                )
                .await
                .map(|_| ()),
            Op::Resolve(a, r) if !reports.is_empty() => {
                let report = reports[r as usize % reports.len()];
                // Even: a moderator takes the report; odd: it is resolved.
                let cmd = if r % 2 == 0 {
                    C::AssignReport { report, assignee: Some(user(name(a))) }
                } else {
                    C::ResolveReport { report, action: ReportAction::Warned, reason: "done".into() }
                };
                hub.run(g, name(a), cmd).await.map(|_| ())
            }
            Op::Resolve(..) => Ok(()),
            Op::Nick(a) => hub
                .run(g, name(a), C::SetNickname { user: user(name(a)), nickname: Some(format!("nick {i}")) })
                .await
                .map(|_| ()),
        };
        let _ = Timestamp::default();
    }
    hub.caught_up(&projections).await;
    let live = dump(&hub.db).await;
    assert!(live["tl_messages"].len() == messages.len(), "every accepted message is in the timeline");
    assert!(!live["dir_members"].is_empty() && !live["audit_log"].is_empty() && !live["dir_channels"].is_empty());
    if std::env::var("SHOW_DUMP").is_ok() {
        eprintln!("{live:#?}");
    }
    hub.rebuild_all().await.unwrap();
    let rebuilt = dump(&hub.db).await;
    for (table, rows) in &live {
        assert_eq!(rows, &rebuilt[table], "table {table} differs after a rebuild");
    }
    projections.stop().await;
    hub.store.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn live_projections_equal_a_rebuild_from_zero(ops in proptest::collection::vec(op(), 10..70)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_case(ops));
    }
}
