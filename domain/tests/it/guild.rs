//! Guild commands, given/when/then: every command's happy path and its refusals.

use expect_test::expect;
use openguild_domain::body::{ChannelKind, Place, ReportAction, ReportTarget};
use openguild_domain::event::guild_id_for;
use openguild_domain::guild::{GuildCommand as C, MAX_TIMEOUT_MS};
use openguild_domain::permissions::{Overwrite, OverwriteTarget, Permissions as P};
use openguild_domain::{CategoryId, EventBody, InviteCode, ReportId, RoleId, StreamId};

use crate::support::{World, chan, check, t, user};

pub fn role(n: u8) -> RoleId {
    RoleId::from_bytes([n; 16])
}

pub fn code(s: &str) -> InviteCode {
    s.parse().unwrap()
}

pub const GENERAL: u8 = 1;
pub const MOD: u8 = 10;
pub const SENIOR: u8 = 11;

/// The owner made #general, roles `mod` (below) and `senior` (above it), and an invite;
/// alice (mod), bob and carol joined; dave (senior) too.
pub fn populated() -> World {
    let mut w = World::new();
    w.ok(
        "owner",
        C::CreateChannel {
            channel: chan(GENERAL),
            name: "general".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
    );
    let moderation = P::KICK_MEMBERS
        | P::BAN_MEMBERS
        | P::MODERATE_MEMBERS
        | P::MANAGE_MESSAGES
        | P::MANAGE_CHANNELS
        | P::VIEW_AUDIT_LOG
        | P::MANAGE_ROLES;
    w.ok("owner", C::CreateRole { role: role(MOD), name: "mod".into(), permissions: moderation });
    w.ok("owner", C::CreateRole { role: role(SENIOR), name: "senior".into(), permissions: moderation });
    w.ok("owner", C::ReorderRoles { order: vec![role(MOD), role(SENIOR)] });
    w.ok("owner", C::CreateInvite { code: code("welcome"), max_uses: None, expires_at: None });
    for who in ["alice", "bob", "carol", "dave"] {
        w.ok(who, C::Join { invite: code("welcome") });
    }
    w.ok("owner", C::AssignRole { user: user("alice"), role: role(MOD), reason: String::new() });
    w.ok("owner", C::AssignRole { user: user("dave"), role: role(SENIOR), reason: String::new() });
    w
}

#[test]
fn a_new_guild_is_named_by_the_hash_of_its_create_event() {
    let w = World::new();
    let first = &w.events[0].event;
    let EventBody::GuildCreated(created) = first.content() else { panic!("not a create event") };
    assert_eq!(first.core.stream, StreamId::Guild(guild_id_for(created).unwrap()));
    assert!(w.guild.is_owner(&user("owner")));
    assert!(w.guild.members.contains_key(&user("owner")));
    let err = openguild_domain::guild::create(&user("owner"), w.key.server(), "  ", [0; 16], w.now).unwrap_err();
    expect![[r#"invalid name: must not be empty"#]].assert_eq(&err.to_string());
}

#[test]
fn update_archive_and_delete_the_guild() {
    let mut w = populated();
    check(
        &mut w,
        "owner",
        C::UpdateGuild { name: Some("Renamed".into()), description: Some("about".into()) },
        expect![[r#"GuildUpdated { name: Some("Renamed"), description: Some("about") }"#]],
    );
    check(
        &mut w,
        "bob",
        C::UpdateGuild { name: Some("Mine".into()), description: None },
        expect![
            "refused: forbidden: you need the MANAGE_GUILD permission  (Forbidden(Missing(Permissions(MANAGE_GUILD))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::ArchiveGuild { reason: "done".into() },
        expect!["refused: forbidden: only the guild owner can do this  (Forbidden(OwnerOnly))"],
    );
    check(&mut w, "owner", C::ArchiveGuild { reason: "done".into() }, expect![[r#"GuildArchived { reason: "done" }"#]]);
    check(
        &mut w,
        "owner",
        C::CreateInvite { code: code("later"), max_uses: None, expires_at: None },
        expect!["refused: forbidden: the guild or channel is archived and read-only  (Forbidden(Archived))"],
    );
    check(
        &mut w,
        "alice",
        C::DeleteGuild { reason: String::new() },
        expect!["refused: forbidden: only the guild owner can do this  (Forbidden(OwnerOnly))"],
    );
    check(&mut w, "owner", C::DeleteGuild { reason: "bye".into() }, expect![[r#"GuildDeleted { reason: "bye" }"#]]);
    check(
        &mut w,
        "owner",
        C::UpdateGuild { name: Some("x".into()), description: None },
        expect![[
            r#"refused: guild WRmeRpatTDohdCprK2n51J (deleted) not found  (NotFound { what: "guild", id: "WRmeRpatTDohdCprK2n51J (deleted)" })"#
        ]],
    );
}

#[test]
fn categories() {
    let mut w = populated();
    let cat = CategoryId::from_bytes([5; 16]);
    check(
        &mut w,
        "alice",
        C::CreateCategory { category: cat, name: "Voice rooms".into() },
        expect![[r#"CategoryCreated { category: cx9j2zKs9JYqinaq3K4qA, name: "Voice rooms", position: 0 }"#]],
    );
    check(
        &mut w,
        "alice",
        C::CreateCategory { category: cat, name: "Again".into() },
        expect![[
            r#"refused: conflict: category cx9j2zKs9JYqinaq3K4qA already exists  (Conflict("category cx9j2zKs9JYqinaq3K4qA already exists"))"#
        ]],
    );
    check(
        &mut w,
        "bob",
        C::CreateCategory { category: CategoryId::from_bytes([6; 16]), name: "Mine".into() },
        expect![
            "refused: forbidden: you need the MANAGE_CHANNELS permission  (Forbidden(Missing(Permissions(MANAGE_CHANNELS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::UpdateCategory { category: cat, name: Some("Rooms".into()), position: Some(3) },
        expect![[r#"CategoryUpdated { category: cx9j2zKs9JYqinaq3K4qA, name: "Rooms", position: 3 }"#]],
    );
    check(
        &mut w,
        "alice",
        C::UpdateCategory { category: CategoryId::from_bytes([9; 16]), name: None, position: None },
        expect![[
            r#"refused: category 27iGhrynZFwniJDT6Gm7tt not found  (NotFound { what: "category", id: "27iGhrynZFwniJDT6Gm7tt" })"#
        ]],
    );
    w.ok(
        "alice",
        C::CreateChannel {
            channel: chan(2),
            name: "lobby".into(),
            kind: ChannelKind::Voice,
            category: Some(cat),
            topic: String::new(),
            overwrites: vec![],
        },
    );
    check(
        &mut w,
        "alice",
        C::DeleteCategory { category: cat },
        expect!["CategoryDeleted { category: cx9j2zKs9JYqinaq3K4qA }"],
    );
    assert_eq!(w.guild.channels[&chan(2)].category, None, "channels outlive their category");
}

#[test]
fn channels() {
    let mut w = populated();
    check(
        &mut w,
        "alice",
        C::CreateChannel {
            channel: chan(2),
            name: "news".into(),
            kind: ChannelKind::Announcement,
            category: None,
            topic: "Updates".into(),
            overwrites: vec![],
        },
        expect![[
            r#"ChannelCreated { channel: FP4VQzjM4KcwHiS8cj2Xs, name: "news", kind: Announcement, category: None, position: 1, topic: "Updates" }"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::CreateChannel {
            channel: chan(2),
            name: "dup".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
        expect![[
            r#"refused: conflict: channel FP4VQzjM4KcwHiS8cj2Xs already exists  (Conflict("channel FP4VQzjM4KcwHiS8cj2Xs already exists"))"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::CreateChannel {
            channel: chan(3),
            name: "x".into(),
            kind: ChannelKind::Text,
            category: Some(CategoryId::from_bytes([8; 16])),
            topic: String::new(),
            overwrites: vec![],
        },
        expect![[
            r#"refused: category zXExeyvPEHUk9rjXTu78T not found  (NotFound { what: "category", id: "zXExeyvPEHUk9rjXTu78T" })"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::CreateChannel {
            channel: chan(3),
            name: "two\nlines".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
        expect![[
            r#"refused: invalid name: must be on one line  (InvalidInput { field: "name", reason: "must be on one line" })"#
        ]],
    );
    check(
        &mut w,
        "bob",
        C::CreateChannel {
            channel: chan(3),
            name: "mine".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
        expect![
            "refused: forbidden: you need the MANAGE_CHANNELS permission  (Forbidden(Missing(Permissions(MANAGE_CHANNELS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::UpdateChannel { channel: chan(2), name: Some("announcements".into()), topic: None },
        expect![[r#"ChannelUpdated { channel: FP4VQzjM4KcwHiS8cj2Xs, name: "announcements", topic: "Updates" }"#]],
    );
    check(
        &mut w,
        "bob",
        C::UpdateChannel { channel: chan(2), name: None, topic: Some("hi".into()) },
        expect![
            "refused: forbidden: you need the MANAGE_CHANNELS permission  (Forbidden(Missing(Permissions(MANAGE_CHANNELS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::MoveChannel { channel: chan(2), category: None, position: Some(7) },
        expect!["ChannelMoved { channel: FP4VQzjM4KcwHiS8cj2Xs, category: None, position: 7 }"],
    );
    check(
        &mut w,
        "alice",
        C::DeleteChannel { channel: chan(2) },
        expect!["ChannelDeleted { channel: FP4VQzjM4KcwHiS8cj2Xs }"],
    );
    check(
        &mut w,
        "alice",
        C::DeleteChannel { channel: chan(2) },
        expect![[
            r#"refused: channel FP4VQzjM4KcwHiS8cj2Xs not found  (NotFound { what: "channel", id: "FP4VQzjM4KcwHiS8cj2Xs" })"#
        ]],
    );
}

#[test]
fn moving_a_channel_without_a_position_puts_it_after_the_last_one_there() {
    let mut w = populated();
    let cat = CategoryId::from_bytes([5; 16]);
    w.ok("owner", C::CreateCategory { category: cat, name: "Rooms".into() });
    for (n, name) in [(2, "lobby"), (3, "stage")] {
        let channel = C::CreateChannel {
            channel: chan(n),
            name: name.into(),
            kind: ChannelKind::Voice,
            category: Some(cat),
            topic: String::new(),
            overwrites: vec![],
        };
        w.ok("owner", channel);
    }
    w.ok("owner", C::MoveChannel { channel: chan(3), category: Some(cat), position: Some(4) });
    check(
        &mut w,
        "alice",
        C::MoveChannel { channel: chan(GENERAL), category: Some(cat), position: None },
        expect!["ChannelMoved { channel: 8C2kCzsB2fJy9MiZos1mS, category: Some(cx9j2zKs9JYqinaq3K4qA), position: 5 }"],
    );
    // Moving the last one to its own category leaves it where it is, not one further.
    check(
        &mut w,
        "alice",
        C::MoveChannel { channel: chan(GENERAL), category: Some(cat), position: None },
        expect!["ChannelMoved { channel: 8C2kCzsB2fJy9MiZos1mS, category: Some(cx9j2zKs9JYqinaq3K4qA), position: 5 }"],
    );
    check(
        &mut w,
        "alice",
        C::MoveChannel { channel: chan(2), category: None, position: None },
        expect!["ChannelMoved { channel: FP4VQzjM4KcwHiS8cj2Xs, category: None, position: 0 }"],
    );
}

#[test]
fn slow_mode_and_locks() {
    let mut w = populated();
    check(
        &mut w,
        "alice",
        C::SetSlowMode { channel: chan(GENERAL), seconds: 30 },
        expect!["SlowModeSet { channel: 8C2kCzsB2fJy9MiZos1mS, seconds: 30 }"],
    );
    check(
        &mut w,
        "alice",
        C::SetSlowMode { channel: chan(GENERAL), seconds: 100_000 },
        expect![[
            r#"refused: invalid seconds: slow mode is at most 21600 seconds  (InvalidInput { field: "seconds", reason: "slow mode is at most 21600 seconds" })"#
        ]],
    );
    check(
        &mut w,
        "bob",
        C::SetSlowMode { channel: chan(GENERAL), seconds: 0 },
        expect![
            "refused: forbidden: you need the MANAGE_CHANNELS permission  (Forbidden(Missing(Permissions(MANAGE_CHANNELS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::LockChannel { channel: chan(GENERAL), locked: true, reason: "raid".into() },
        expect![[r#"ChannelLocked { channel: 8C2kCzsB2fJy9MiZos1mS, locked: true, reason: "raid" }"#]],
    );
    check(
        &mut w,
        "alice",
        C::LockChannel { channel: chan(GENERAL), locked: true, reason: String::new() },
        expect![[r#"refused: conflict: the channel is already locked  (Conflict("the channel is already locked"))"#]],
    );
    check(
        &mut w,
        "bob",
        C::LockChannel { channel: chan(GENERAL), locked: false, reason: String::new() },
        expect![
            "refused: forbidden: you need the MANAGE_CHANNELS permission  (Forbidden(Missing(Permissions(MANAGE_CHANNELS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::LockChannel { channel: chan(GENERAL), locked: false, reason: "calm".into() },
        expect![[r#"ChannelLocked { channel: 8C2kCzsB2fJy9MiZos1mS, locked: false, reason: "calm" }"#]],
    );
}

#[test]
fn overwrites() {
    let mut w = populated();
    let everyone = OverwriteTarget::Role(RoleId::EVERYONE);
    check(
        &mut w,
        "alice",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: everyone.clone(),
            allow: P::empty(),
            deny: P::SEND_MESSAGES,
        },
        expect![
            "OverwriteSet { place: Channel(8C2kCzsB2fJy9MiZos1mS), target: Role(1111111111111111), allow: Permissions(0x0), deny: Permissions(SEND_MESSAGES) }"
        ],
    );
    assert!(!w.guild.channel_permissions(&user("bob"), chan(GENERAL), w.now).contains(P::SEND_MESSAGES));
    // alice does not hold MANAGE_GUILD, so she cannot hand it out in a channel.
    check(
        &mut w,
        "alice",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: OverwriteTarget::Member(user("bob")),
            allow: P::MANAGE_GUILD,
            deny: P::empty(),
        },
        expect![
            "refused: forbidden: you cannot grant MANAGE_GUILD, which you do not hold  (Forbidden(CannotGrant(Permissions(MANAGE_GUILD))))"
        ],
    );
    check(
        &mut w,
        "bob",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: everyone.clone(),
            allow: P::SEND_MESSAGES,
            deny: P::empty(),
        },
        expect![
            "refused: forbidden: you need the MANAGE_ROLES permission  (Forbidden(Missing(Permissions(MANAGE_ROLES))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: everyone.clone(),
            allow: P::SEND_MESSAGES,
            deny: P::SEND_MESSAGES,
        },
        expect![
            "refused: forbidden: you cannot grant SEND_MESSAGES, which you do not hold  (Forbidden(CannotGrant(Permissions(SEND_MESSAGES))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: OverwriteTarget::Role(role(99)),
            allow: P::SEND_MESSAGES,
            deny: P::empty(),
        },
        expect![[
            r#"refused: role DGpykUme7qPfqGMwzzNJqg not found  (NotFound { what: "role", id: "DGpykUme7qPfqGMwzzNJqg" })"#
        ]],
    );
    // Empty allow and deny remove the overwrite.
    w.ok(
        "alice",
        C::SetOverwrite { place: Place::Channel(chan(GENERAL)), target: everyone, allow: P::empty(), deny: P::empty() },
    );
    assert!(w.guild.channels[&chan(GENERAL)].overwrites.is_empty());
}

#[test]
fn roles() {
    let mut w = populated();
    check(
        &mut w,
        "alice",
        C::CreateRole { role: role(20), name: "helper".into(), permissions: P::MANAGE_MESSAGES },
        expect![[
            r#"RoleCreated { role: 3Uobu8xJTaDCMt9LKAFGKd, name: "helper", permissions: Permissions(MANAGE_MESSAGES), position: 1 }"#
        ]],
    );
    assert_eq!(w.guild.position(&role(20)), 1, "a new role starts at the bottom");
    check(
        &mut w,
        "alice",
        C::CreateRole { role: role(21), name: "boss".into(), permissions: P::ADMINISTRATOR },
        expect![
            "refused: forbidden: you cannot grant ADMINISTRATOR, which you do not hold  (Forbidden(CannotGrant(Permissions(ADMINISTRATOR))))"
        ],
    );
    check(
        &mut w,
        "bob",
        C::CreateRole { role: role(21), name: "boss".into(), permissions: P::empty() },
        expect![
            "refused: forbidden: you need the MANAGE_ROLES permission  (Forbidden(Missing(Permissions(MANAGE_ROLES))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::CreateRole { role: role(20), name: "dup".into(), permissions: P::empty() },
        expect![[
            r#"refused: conflict: role 3Uobu8xJTaDCMt9LKAFGKd already exists  (Conflict("role 3Uobu8xJTaDCMt9LKAFGKd already exists"))"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::UpdateRole {
            role: role(20),
            name: Some("helpers".into()),
            permissions: Some(P::MANAGE_MESSAGES | P::KICK_MEMBERS),
        },
        expect![[
            r#"RoleUpdated { role: 3Uobu8xJTaDCMt9LKAFGKd, name: "helpers", permissions: Permissions(KICK_MEMBERS | MANAGE_MESSAGES) }"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::UpdateRole { role: role(20), name: None, permissions: Some(P::MANAGE_GUILD) },
        expect![
            "refused: forbidden: you cannot grant MANAGE_GUILD, which you do not hold  (Forbidden(CannotGrant(Permissions(MANAGE_GUILD))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::UpdateRole { role: role(SENIOR), name: Some("juniors".into()), permissions: None },
        expect!["refused: forbidden: that role is not below your highest role  (Forbidden(RoleNotBelow))"],
    );
    check(
        &mut w,
        "alice",
        C::UpdateRole { role: role(MOD), name: Some("mods".into()), permissions: None },
        expect!["refused: forbidden: that role is not below your highest role  (Forbidden(RoleNotBelow))"],
    );
    check(
        &mut w,
        "alice",
        C::UpdateRole { role: RoleId::EVERYONE, name: None, permissions: Some(P::DEFAULT_EVERYONE - P::CREATE_INVITE) },
        expect![[
            r#"RoleUpdated { role: 1111111111111111, name: "@everyone", permissions: Permissions(ADD_REACTIONS | STREAM | VIEW_CHANNEL | SEND_MESSAGES | ATTACH_FILES | READ_MESSAGE_HISTORY | CONNECT | SPEAK | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS) }"#
        ]],
    );
    // Order is now helper(1) mod(2) senior(3). alice (mod) may not lift helper above herself.
    check(
        &mut w,
        "alice",
        C::ReorderRoles { order: vec![role(MOD), role(20), role(SENIOR)] },
        expect!["refused: forbidden: that role is not below your highest role  (Forbidden(RoleNotBelow))"],
    );
    check(
        &mut w,
        "dave",
        C::ReorderRoles { order: vec![role(MOD), role(20), role(SENIOR)] },
        expect!["RolesReordered { order: [2EuJT4yejHc6gSaAf5d8fK, 3Uobu8xJTaDCMt9LKAFGKd, 2N6LCGyWuKGQeavtDtV9Rk] }"],
    );
    check(
        &mut w,
        "dave",
        C::ReorderRoles { order: vec![role(MOD)] },
        expect![[
            r#"refused: invalid order: must list every role except @everyone exactly once  (InvalidInput { field: "order", reason: "must list every role except @everyone exactly once" })"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::DeleteRole { role: role(SENIOR) },
        expect!["refused: forbidden: that role is not below your highest role  (Forbidden(RoleNotBelow))"],
    );
    check(
        &mut w,
        "alice",
        C::DeleteRole { role: RoleId::EVERYONE },
        expect![[
            r#"refused: invalid role: @everyone cannot be deleted  (InvalidInput { field: "role", reason: "@everyone cannot be deleted" })"#
        ]],
    );
    check(&mut w, "dave", C::DeleteRole { role: role(20) }, expect!["RoleDeleted { role: 3Uobu8xJTaDCMt9LKAFGKd }"]);
    assert!(!w.guild.roles.contains_key(&role(20)));
}

#[test]
fn assigning_roles_respects_the_hierarchy() {
    let mut w = populated();
    check(
        &mut w,
        "dave",
        C::AssignRole { user: user("bob"), role: role(MOD), reason: "trusted".into() },
        expect![[r#"RoleAssigned { user: @bob:hub.test, role: 2EuJT4yejHc6gSaAf5d8fK, reason: "trusted" }"#]],
    );
    check(
        &mut w,
        "dave",
        C::AssignRole { user: user("bob"), role: role(MOD), reason: String::new() },
        expect![[
            r#"refused: conflict: @bob:hub.test already has that role  (Conflict("@bob:hub.test already has that role"))"#
        ]],
    );
    // A member cannot grant a role at or above their own.
    check(
        &mut w,
        "alice",
        C::AssignRole { user: user("carol"), role: role(SENIOR), reason: String::new() },
        expect!["refused: forbidden: that role is not below your highest role  (Forbidden(RoleNotBelow))"],
    );
    check(
        &mut w,
        "alice",
        C::AssignRole { user: user("carol"), role: role(MOD), reason: String::new() },
        expect!["refused: forbidden: that role is not below your highest role  (Forbidden(RoleNotBelow))"],
    );
    check(
        &mut w,
        "carol",
        C::AssignRole { user: user("carol"), role: role(MOD), reason: String::new() },
        expect![
            "refused: forbidden: you need the MANAGE_ROLES permission  (Forbidden(Missing(Permissions(MANAGE_ROLES))))"
        ],
    );
    check(
        &mut w,
        "dave",
        C::UnassignRole { user: user("bob"), role: role(MOD), reason: "inactive".into() },
        expect![[r#"RoleUnassigned { user: @bob:hub.test, role: 2EuJT4yejHc6gSaAf5d8fK, reason: "inactive" }"#]],
    );
    check(
        &mut w,
        "dave",
        C::UnassignRole { user: user("bob"), role: role(MOD), reason: String::new() },
        expect![[
            r#"refused: conflict: @bob:hub.test does not have that role  (Conflict("@bob:hub.test does not have that role"))"#
        ]],
    );
    check(
        &mut w,
        "dave",
        C::AssignRole { user: user("zed"), role: role(MOD), reason: String::new() },
        expect![[r#"refused: member @zed:hub.test not found  (NotFound { what: "member", id: "@zed:hub.test" })"#]],
    );
    // A role carrying a permission the actor lacks cannot be handed out by them.
    w.ok("owner", C::CreateRole { role: role(30), name: "treasurer".into(), permissions: P::MANAGE_GUILD });
    check(
        &mut w,
        "dave",
        C::AssignRole { user: user("bob"), role: role(30), reason: String::new() },
        expect![
            "refused: forbidden: you cannot grant MANAGE_GUILD, which you do not hold  (Forbidden(CannotGrant(Permissions(MANAGE_GUILD))))"
        ],
    );
}

#[test]
fn invites_and_joining() {
    let mut w = populated();
    let soon = w.now.plus_millis(60_000);
    check(
        &mut w,
        "bob",
        C::CreateInvite { code: code("once1"), max_uses: Some(1), expires_at: Some(soon) },
        expect!["InviteCreated { code: once1, max_uses: Some(1), expires_at: Some(Timestamp(1060000)) }"],
    );
    check(
        &mut w,
        "bob",
        C::CreateInvite { code: code("once1"), max_uses: None, expires_at: None },
        expect![[r#"refused: conflict: invite once1 already exists  (Conflict("invite once1 already exists"))"#]],
    );
    check(
        &mut w,
        "bob",
        C::CreateInvite { code: code("zero"), max_uses: Some(0), expires_at: None },
        expect![[
            r#"refused: invalid maxUses: must be at least 1, or unset for unlimited  (InvalidInput { field: "maxUses", reason: "must be at least 1, or unset for unlimited" })"#
        ]],
    );
    check(
        &mut w,
        "bob",
        C::CreateInvite { code: code("past"), max_uses: None, expires_at: Some(t(1)) },
        expect![[
            r#"refused: invalid expiresAt: must be in the future  (InvalidInput { field: "expiresAt", reason: "must be in the future" })"#
        ]],
    );
    check(
        &mut w,
        "erin",
        C::Join { invite: code("once1") },
        expect!["MemberJoined { user: @erin:hub.test, invite: Some(once1) }"],
    );
    check(
        &mut w,
        "erin",
        C::Join { invite: code("once1") },
        expect![[r#"refused: conflict: you are already a member  (Conflict("you are already a member"))"#]],
    );
    check(
        &mut w,
        "frank",
        C::Join { invite: code("once1") },
        expect![[
            r#"refused: invalid invite: the invite has been used up  (InvalidInput { field: "invite", reason: "the invite has been used up" })"#
        ]],
    );
    check(
        &mut w,
        "frank",
        C::Join { invite: code("nosuch") },
        expect![[r#"refused: invite nosuch not found  (NotFound { what: "invite", id: "nosuch" })"#]],
    );
    w.ok("bob", C::CreateInvite { code: code("short"), max_uses: None, expires_at: Some(soon) });
    w.advance(60_000);
    check(
        &mut w,
        "frank",
        C::Join { invite: code("short") },
        expect![[
            r#"refused: invalid invite: the invite has expired  (InvalidInput { field: "invite", reason: "the invite has expired" })"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::RevokeInvite { code: code("welcome") },
        expect![
            "refused: forbidden: you need the MANAGE_GUILD permission  (Forbidden(Missing(Permissions(MANAGE_GUILD))))"
        ],
    );
    check(&mut w, "bob", C::RevokeInvite { code: code("short") }, expect!["InviteRevoked { code: short }"]);
    check(
        &mut w,
        "frank",
        C::Join { invite: code("short") },
        expect![[r#"refused: invite short not found  (NotFound { what: "invite", id: "short" })"#]],
    );
}

#[test]
fn leaving() {
    let mut w = populated();
    check(&mut w, "bob", C::Leave, expect!["MemberLeft { user: @bob:hub.test }"]);
    check(
        &mut w,
        "bob",
        C::Leave,
        expect!["refused: forbidden: you are not a member of this guild  (Forbidden(NotMember))"],
    );
    check(
        &mut w,
        "owner",
        C::Leave,
        expect![[
            r#"refused: conflict: the owner cannot leave: transfer or delete the guild first  (Conflict("the owner cannot leave: transfer or delete the guild first"))"#
        ]],
    );
}

#[test]
fn kicking() {
    let mut w = populated();
    check(
        &mut w,
        "alice",
        C::Kick { user: user("bob"), reason: "spam".into() },
        expect![[r#"MemberKicked { user: @bob:hub.test, reason: "spam" }"#]],
    );
    check(
        &mut w,
        "alice",
        C::Kick { user: user("dave"), reason: String::new() },
        expect!["refused: forbidden: their highest role is not below yours  (Forbidden(Hierarchy))"],
    );
    check(
        &mut w,
        "alice",
        C::Kick { user: user("owner"), reason: String::new() },
        expect!["refused: forbidden: their highest role is not below yours  (Forbidden(Hierarchy))"],
    );
    check(
        &mut w,
        "alice",
        C::Kick { user: user("alice"), reason: String::new() },
        expect![[
            r#"refused: invalid userId: you cannot do this to yourself  (InvalidInput { field: "userId", reason: "you cannot do this to yourself" })"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::Kick { user: user("alice"), reason: String::new() },
        expect![
            "refused: forbidden: you need the KICK_MEMBERS permission  (Forbidden(Missing(Permissions(KICK_MEMBERS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::Kick { user: user("bob"), reason: String::new() },
        expect![[r#"refused: member @bob:hub.test not found  (NotFound { what: "member", id: "@bob:hub.test" })"#]],
    );
}

#[test]
fn banning() {
    let mut w = populated();
    // A moderator cannot ban a member with a higher role.
    check(
        &mut w,
        "alice",
        C::Ban { user: user("dave"), reason: "coup".into(), purge_seconds: 0 },
        expect!["refused: forbidden: their highest role is not below yours  (Forbidden(Hierarchy))"],
    );
    check(
        &mut w,
        "carol",
        C::Ban { user: user("bob"), reason: String::new(), purge_seconds: 0 },
        expect![
            "refused: forbidden: you need the BAN_MEMBERS permission  (Forbidden(Missing(Permissions(BAN_MEMBERS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::Ban { user: user("bob"), reason: "spam".into(), purge_seconds: 3600 },
        expect![[r#"MemberBanned { user: @bob:hub.test, reason: "spam", purge_since: Some(Timestamp(0)) }"#]],
    );
    check(
        &mut w,
        "alice",
        C::Ban { user: user("bob"), reason: String::new(), purge_seconds: 0 },
        expect![[
            r#"refused: conflict: @bob:hub.test is already banned  (Conflict("@bob:hub.test is already banned"))"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::Ban { user: user("carol"), reason: String::new(), purge_seconds: 8 * 24 * 3600 },
        expect![[
            r#"refused: invalid deleteMessageSeconds: must be at most 604800 (7 days)  (InvalidInput { field: "deleteMessageSeconds", reason: "must be at most 604800 (7 days)" })"#
        ]],
    );
    // Users who never joined can be banned too.
    check(
        &mut w,
        "alice",
        C::Ban { user: user("stranger"), reason: "known raider".into(), purge_seconds: 0 },
        expect![[r#"MemberBanned { user: @stranger:hub.test, reason: "known raider", purge_since: None }"#]],
    );
    // A banned user cannot rejoin through an invite.
    check(
        &mut w,
        "bob",
        C::Join { invite: code("welcome") },
        expect!["refused: forbidden: you are banned from this guild  (Forbidden(Banned))"],
    );
    check(&mut w, "bob", C::Leave, expect!["refused: forbidden: you are banned from this guild  (Forbidden(Banned))"]);
    check(
        &mut w,
        "carol",
        C::Unban { user: user("bob"), reason: String::new() },
        expect![
            "refused: forbidden: you need the BAN_MEMBERS permission  (Forbidden(Missing(Permissions(BAN_MEMBERS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::Unban { user: user("bob"), reason: "appeal".into() },
        expect![[r#"MemberUnbanned { user: @bob:hub.test, reason: "appeal" }"#]],
    );
    check(
        &mut w,
        "alice",
        C::Unban { user: user("bob"), reason: String::new() },
        expect![[r#"refused: ban of @bob:hub.test not found  (NotFound { what: "ban of", id: "@bob:hub.test" })"#]],
    );
    check(
        &mut w,
        "bob",
        C::Join { invite: code("welcome") },
        expect!["MemberJoined { user: @bob:hub.test, invite: Some(welcome) }"],
    );
}

#[test]
fn timeouts() {
    let mut w = populated();
    let until = w.now.plus_millis(600_000);
    check(
        &mut w,
        "alice",
        C::Timeout { user: user("bob"), until, reason: "cool off".into() },
        expect![[r#"MemberTimedOut { user: @bob:hub.test, until: Timestamp(1600000), reason: "cool off" }"#]],
    );
    let perms = w.guild.channel_permissions(&user("bob"), chan(GENERAL), w.now);
    assert_eq!(perms, P::VIEW_CHANNEL | P::READ_MESSAGE_HISTORY, "a timed-out member keeps only view and history");
    assert!(!perms.intersects(P::CONNECT | P::SPEAK));
    check(
        &mut w,
        "alice",
        C::Timeout { user: user("dave"), until, reason: String::new() },
        expect!["refused: forbidden: their highest role is not below yours  (Forbidden(Hierarchy))"],
    );
    let (now, too_long) = (w.now, w.now.plus_millis(MAX_TIMEOUT_MS + 1));
    check(
        &mut w,
        "alice",
        C::Timeout { user: user("carol"), until: now, reason: String::new() },
        expect![[
            r#"refused: invalid until: must be in the future  (InvalidInput { field: "until", reason: "must be in the future" })"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::Timeout { user: user("carol"), until: too_long, reason: String::new() },
        expect![[
            r#"refused: invalid until: a timeout lasts at most 28 days  (InvalidInput { field: "until", reason: "a timeout lasts at most 28 days" })"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::Timeout { user: user("bob"), until, reason: String::new() },
        expect![
            "refused: forbidden: you need the MODERATE_MEMBERS permission  (Forbidden(Missing(Permissions(MODERATE_MEMBERS))))"
        ],
    );
    // A timed-out moderator loses their powers until the timeout ends.
    w.ok("dave", C::Timeout { user: user("alice"), until, reason: "abuse".into() });
    check(
        &mut w,
        "alice",
        C::Kick { user: user("carol"), reason: String::new() },
        expect![
            "refused: you are timed out until 1600000 ms since the epoch  (TimedOut { until: Timestamp(1600000) })"
        ],
    );
    // Administrators cannot be timed out.
    w.ok("owner", C::CreateRole { role: role(40), name: "admin".into(), permissions: P::ADMINISTRATOR });
    w.ok("owner", C::AssignRole { user: user("carol"), role: role(40), reason: String::new() });
    check(
        &mut w,
        "owner",
        C::Timeout { user: user("carol"), until, reason: String::new() },
        expect![[
            r#"refused: conflict: administrators cannot be timed out  (Conflict("administrators cannot be timed out"))"#
        ]],
    );
    check(
        &mut w,
        "dave",
        C::RemoveTimeout { user: user("bob"), reason: "apologised".into() },
        expect![[r#"TimeoutRemoved { user: @bob:hub.test, reason: "apologised" }"#]],
    );
    check(
        &mut w,
        "dave",
        C::RemoveTimeout { user: user("bob"), reason: String::new() },
        expect![[r#"refused: conflict: @bob:hub.test is not timed out  (Conflict("@bob:hub.test is not timed out"))"#]],
    );
}

#[test]
fn a_timeout_outlives_leaving_and_rejoining() {
    let mut w = populated();
    let until = w.now.plus_millis(600_000);
    w.ok("alice", C::Timeout { user: user("bob"), until, reason: String::new() });
    w.ok("bob", C::Leave);
    w.ok("bob", C::Join { invite: code("welcome") });
    assert_eq!(w.guild.timed_out_until(&user("bob"), w.now), Some(until));
    assert!(!w.guild.channel_permissions(&user("bob"), chan(GENERAL), w.now).contains(P::SEND_MESSAGES));
    w.advance(600_000);
    assert_eq!(w.guild.timed_out_until(&user("bob"), w.now), None, "the timeout ends on its own");
    assert!(w.guild.channel_permissions(&user("bob"), chan(GENERAL), w.now).contains(P::SEND_MESSAGES));
}

#[test]
fn nicknames() {
    let mut w = populated();
    check(
        &mut w,
        "bob",
        C::SetNickname { user: user("bob"), nickname: Some("Bobby".into()) },
        expect![[r#"NicknameSet { user: @bob:hub.test, nickname: Some("Bobby") }"#]],
    );
    check(
        &mut w,
        "bob",
        C::SetNickname { user: user("carol"), nickname: Some("x".into()) },
        expect![
            "refused: forbidden: you need the MANAGE_GUILD permission  (Forbidden(Missing(Permissions(MANAGE_GUILD))))"
        ],
    );
    check(
        &mut w,
        "owner",
        C::SetNickname { user: user("carol"), nickname: Some("a very long nickname that goes on and on".into()) },
        expect![[
            r#"refused: invalid nickname: must be at most 32 characters (got 40)  (InvalidInput { field: "nickname", reason: "must be at most 32 characters (got 40)" })"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::SetNickname { user: user("carol"), nickname: None },
        expect!["NicknameSet { user: @carol:hub.test, nickname: None }"],
    );
}

#[test]
fn reports() {
    let mut w = populated();
    let message = w.post("bob", chan(GENERAL), "buy cheap stuff");
    let target = w.channels[&chan(GENERAL)].report_target(chan(GENERAL), message).unwrap();
    let r1 = ReportId::from_bytes([1; 16]);
    check(
        &mut w,
        "carol",
        C::FileReport { report: r1, target: target.clone(), reason: "spam".into() },
        expect![[
            r#"ReportFiled { report: 8C2kCzsB2fJy9MiZos1mS, target: Message { channel: 8C2kCzsB2fJy9MiZos1mS, message: $CDGFP239dr9RqFCzVHkwdeHf9BsiqoG4ScajkBEnWLVu, author: @bob:hub.test }, reason: "spam" }"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::FileReport { report: r1, target, reason: "spam".into() },
        expect![[
            r#"refused: conflict: report 8C2kCzsB2fJy9MiZos1mS already exists  (Conflict("report 8C2kCzsB2fJy9MiZos1mS already exists"))"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::FileReport {
            report: ReportId::from_bytes([2; 16]),
            target: ReportTarget::Member { user: user("zed") },
            reason: "x".into(),
        },
        expect![[r#"refused: member @zed:hub.test not found  (NotFound { what: "member", id: "@zed:hub.test" })"#]],
    );
    check(
        &mut w,
        "carol",
        C::FileReport {
            report: ReportId::from_bytes([2; 16]),
            target: ReportTarget::Member { user: user("bob") },
            reason: String::new(),
        },
        expect![[
            r#"refused: invalid reason: must not be empty  (InvalidInput { field: "reason", reason: "must not be empty" })"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::ResolveReport { report: r1, action: ReportAction::Dismissed, reason: String::new() },
        expect![
            "refused: forbidden: you need the MODERATE_MEMBERS permission  (Forbidden(Missing(Permissions(MODERATE_MEMBERS))))"
        ],
    );
    check(
        &mut w,
        "carol",
        C::AssignReport { report: r1, assignee: Some(user("carol")) },
        expect![
            "refused: forbidden: you need the MODERATE_MEMBERS permission  (Forbidden(Missing(Permissions(MODERATE_MEMBERS))))"
        ],
    );
    check(
        &mut w,
        "alice",
        C::AssignReport { report: r1, assignee: Some(user("bob")) },
        expect![[
            r#"refused: invalid assignee: @bob:hub.test cannot moderate (MODERATE_MEMBERS)  (InvalidInput { field: "assignee", reason: "@bob:hub.test cannot moderate (MODERATE_MEMBERS)" })"#
        ]],
    );
    check(
        &mut w,
        "alice",
        C::AssignReport { report: r1, assignee: Some(user("alice")) },
        expect!["ReportAssigned { report: 8C2kCzsB2fJy9MiZos1mS, assignee: Some(@alice:hub.test) }"],
    );
    check(
        &mut w,
        "alice",
        C::ResolveReport { report: r1, action: ReportAction::MessageDeleted, reason: "removed".into() },
        expect![[r#"ReportResolved { report: 8C2kCzsB2fJy9MiZos1mS, action: MessageDeleted, reason: "removed" }"#]],
    );
    check(
        &mut w,
        "alice",
        C::ResolveReport { report: r1, action: ReportAction::Dismissed, reason: String::new() },
        expect![[r#"refused: conflict: the report is already resolved  (Conflict("the report is already resolved"))"#]],
    );
    check(
        &mut w,
        "alice",
        C::AssignReport { report: r1, assignee: None },
        expect![[r#"refused: conflict: the report is already resolved  (Conflict("the report is already resolved"))"#]],
    );
    check(
        &mut w,
        "alice",
        C::ResolveReport {
            report: ReportId::from_bytes([3; 16]),
            action: ReportAction::Dismissed,
            reason: String::new(),
        },
        expect![[
            r#"refused: report Na6EczbX5yvuS59hRb3JJ not found  (NotFound { what: "report", id: "Na6EczbX5yvuS59hRb3JJ" })"#
        ]],
    );
}

#[test]
fn strangers_can_do_nothing_but_join() {
    let mut w = populated();
    check(
        &mut w,
        "zed",
        C::CreateInvite { code: code("mine1"), max_uses: None, expires_at: None },
        expect!["refused: forbidden: you are not a member of this guild  (Forbidden(NotMember))"],
    );
    check(
        &mut w,
        "zed",
        C::Leave,
        expect!["refused: forbidden: you are not a member of this guild  (Forbidden(NotMember))"],
    );
}

#[test]
fn folding_the_stream_again_gives_the_same_guild() {
    let w = populated();
    let events = w.guild_events();
    assert_eq!(openguild_domain::guild::Guild::from_events(&events), w.guild);
}

/// Names that hide what they say: a right-to-left override made `Bank\u{202E}txt.exe` read
/// as "Bankexe.txt", and names of zero-width characters showed as nothing. Both were accepted.
#[test]
fn names_with_direction_changing_characters_are_refused() {
    let mut w = populated();
    check(
        &mut w,
        "owner",
        C::CreateChannel {
            channel: chan(2),
            name: "Bank\u{202E}txt.exe".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
        expect![[
            r#"refused: invalid name: must not contain invisible or direction-changing characters (U+202E); type the name as it should read  (InvalidInput { field: "name", reason: "must not contain invisible or direction-changing characters (U+202E); type the name as it should read" })"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::CreateRole { role: role(3), name: "\u{2066}admin\u{2069}".into(), permissions: P::empty() },
        expect![[
            r#"refused: invalid name: must not contain invisible or direction-changing characters (U+2066, U+2069); type the name as it should read  (InvalidInput { field: "name", reason: "must not contain invisible or direction-changing characters (U+2066, U+2069); type the name as it should read" })"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::UpdateGuild { name: Some("Our\u{200F} guild".into()), description: None },
        expect![[
            r#"refused: invalid name: must not contain invisible or direction-changing characters (U+200F); type the name as it should read  (InvalidInput { field: "name", reason: "must not contain invisible or direction-changing characters (U+200F); type the name as it should read" })"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::SetNickname { user: user("carol"), nickname: Some("ca\u{00AD}rol".into()) },
        expect![[
            r#"refused: invalid nickname: must not contain invisible or direction-changing characters (U+00AD); type the nickname as it should read  (InvalidInput { field: "nickname", reason: "must not contain invisible or direction-changing characters (U+00AD); type the nickname as it should read" })"#
        ]],
    );
}

/// Names made only of zero-width or blank characters showed as nothing in every list.
#[test]
fn names_with_no_visible_character_are_refused() {
    let mut w = populated();
    check(
        &mut w,
        "owner",
        C::CreateCategory { category: CategoryId::from_bytes([6; 16]), name: "\u{200B}\u{200B}".into() },
        expect![[
            r#"refused: invalid name: must contain a visible character; U+200B shows as nothing  (InvalidInput { field: "name", reason: "must contain a visible character; U+200B shows as nothing" })"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::CreateRole { role: role(3), name: "\u{3164}".into(), permissions: P::empty() },
        expect![[
            r#"refused: invalid name: must contain a visible character; U+3164 shows as nothing  (InvalidInput { field: "name", reason: "must contain a visible character; U+3164 shows as nothing" })"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::UpdateChannel { channel: chan(GENERAL), name: Some("\u{2800} \u{FFA0}".into()), topic: None },
        expect![[
            r#"refused: invalid name: must contain a visible character; U+2800, U+0020, U+FFA0 show as nothing  (InvalidInput { field: "name", reason: "must contain a visible character; U+2800, U+0020, U+FFA0 show as nothing" })"#
        ]],
    );
    check(
        &mut w,
        "carol",
        C::SetNickname { user: user("carol"), nickname: Some("\u{115F}\u{1160}".into()) },
        expect![[
            r#"refused: invalid nickname: must contain a visible character; U+115F, U+1160 show as nothing  (InvalidInput { field: "nickname", reason: "must contain a visible character; U+115F, U+1160 show as nothing" })"#
        ]],
    );
    let err = openguild_domain::guild::create(&user("owner"), w.key.server(), "\u{FEFF}\u{2060}", [0; 16], w.now)
        .unwrap_err();
    expect!["invalid name: must contain a visible character; U+FEFF, U+2060 show as nothing"]
        .assert_eq(&err.to_string());
}

/// Joiners that scripts and emoji need still pass: Persian spells with U+200C, emoji
/// sequences join with U+200D. Right-to-left letters need no control character at all.
#[test]
fn names_keep_the_joiners_their_script_or_emoji_needs() {
    let mut w = populated();
    check(
        &mut w,
        "owner",
        C::CreateChannel {
            channel: chan(2),
            name: "👩\u{200D}💻 می\u{200C}خواهم".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        },
        expect![[
            r#"ChannelCreated { channel: FP4VQzjM4KcwHiS8cj2Xs, name: "👩\u{200d}💻 می\u{200c}خواهم", kind: Text, category: None, position: 1, topic: "" }"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::CreateRole { role: role(3), name: "🏳\u{FE0F}\u{200D}🌈 עברית".into(), permissions: P::empty() },
        expect![[
            r#"RoleCreated { role: Na6EczbX5yvuS59hRb3JJ, name: "🏳\u{fe0f}\u{200d}🌈 עברית", permissions: Permissions(0x0), position: 1 }"#
        ]],
    );
    check(
        &mut w,
        "owner",
        C::CreateRole { role: role(4), name: "Mod\u{200D}erator".into(), permissions: P::empty() },
        expect![[
            r#"refused: invalid name: must not contain invisible or direction-changing characters (U+200D); type the name as it should read  (InvalidInput { field: "name", reason: "must not contain invisible or direction-changing characters (U+200D); type the name as it should read" })"#
        ]],
    );
}

fn private_channel(n: u8, category: Option<CategoryId>, overwrites: Vec<(OverwriteTarget, Overwrite)>) -> C {
    C::CreateChannel {
        channel: chan(n),
        name: "staff".into(),
        kind: ChannelKind::Text,
        category,
        topic: String::new(),
        overwrites,
    }
}

fn deny(deny: P) -> Overwrite {
    Overwrite { allow: P::empty(), deny }
}

fn allow(allow: P) -> Overwrite {
    Overwrite { allow, deny: P::empty() }
}

/// Provisioning created a channel and hid it with a second command, so a crash or a race in
/// between left a private channel public. Now the channel and its overwrites are one decision.
#[test]
fn a_channel_is_created_with_its_overwrites_in_one_decision() {
    let mut w = populated();
    let everyone = OverwriteTarget::Role(RoleId::EVERYONE);
    check(
        &mut w,
        "owner",
        private_channel(
            2,
            None,
            vec![
                (everyone.clone(), deny(P::VIEW_CHANNEL)),
                (OverwriteTarget::Role(role(MOD)), allow(P::VIEW_CHANNEL)),
                (OverwriteTarget::Member(user("bob")), Overwrite::default()),
            ],
        ),
        expect![[r#"
            ChannelCreated { channel: FP4VQzjM4KcwHiS8cj2Xs, name: "staff", kind: Text, category: None, position: 1, topic: "" }
            OverwriteSet { place: Channel(FP4VQzjM4KcwHiS8cj2Xs), target: Role(1111111111111111), allow: Permissions(0x0), deny: Permissions(VIEW_CHANNEL) }
            OverwriteSet { place: Channel(FP4VQzjM4KcwHiS8cj2Xs), target: Role(2EuJT4yejHc6gSaAf5d8fK), allow: Permissions(VIEW_CHANNEL), deny: Permissions(0x0) }"#]],
    );
    assert!(!w.guild.channel_permissions(&user("bob"), chan(2), w.now).contains(P::VIEW_CHANNEL));
    assert!(w.guild.channel_permissions(&user("alice"), chan(2), w.now).contains(P::VIEW_CHANNEL));
    assert_eq!(w.guild.channels[&chan(2)].overwrites.len(), 2, "the empty overwrite for bob is not recorded");
}

/// Each overwrite is checked as `SetOverwrite` would check it on the new channel, and a
/// refused one refuses the channel too: nothing is appended.
#[test]
fn a_channel_created_with_overwrites_is_refused_whole() {
    let mut w = populated();
    let everyone = OverwriteTarget::Role(RoleId::EVERYONE);
    let version = w.guild.version;
    // alice (mod) does not hold MANAGE_GUILD, so she cannot hand it out.
    check(
        &mut w,
        "alice",
        private_channel(2, None, vec![(OverwriteTarget::Member(user("bob")), allow(P::MANAGE_GUILD))]),
        expect![
            "refused: forbidden: you cannot grant MANAGE_GUILD, which you do not hold  (Forbidden(CannotGrant(Permissions(MANAGE_GUILD))))"
        ],
    );
    check(
        &mut w,
        "alice",
        private_channel(2, None, vec![(OverwriteTarget::Role(role(99)), deny(P::VIEW_CHANNEL))]),
        expect![[
            r#"refused: role DGpykUme7qPfqGMwzzNJqg not found  (NotFound { what: "role", id: "DGpykUme7qPfqGMwzzNJqg" })"#
        ]],
    );
    check(
        &mut w,
        "alice",
        private_channel(
            2,
            None,
            vec![(everyone.clone(), Overwrite { allow: P::SEND_MESSAGES, deny: P::SEND_MESSAGES })],
        ),
        expect![[
            r#"refused: invalid deny: a permission cannot be both allowed and denied  (InvalidInput { field: "deny", reason: "a permission cannot be both allowed and denied" })"#
        ]],
    );
    check(
        &mut w,
        "alice",
        private_channel(2, None, vec![(everyone.clone(), deny(P::VIEW_CHANNEL)), (everyone, deny(P::SEND_MESSAGES))]),
        expect![[
            r#"refused: invalid overwrites: @everyone appears twice; give each role or member one overwrite  (InvalidInput { field: "overwrites", reason: "@everyone appears twice; give each role or member one overwrite" })"#
        ]],
    );
    assert_eq!(w.guild.version, version, "nothing was appended");
    assert!(!w.guild.channels.contains_key(&chan(2)));
}

/// Overwrites need MANAGE_ROLES where the channel will be: a member who may make channels
/// but not manage roles makes them without overwrites only.
#[test]
fn overwrites_at_creation_need_manage_roles_in_the_new_channel() {
    let mut w = populated();
    w.ok("owner", C::CreateRole { role: role(3), name: "builder".into(), permissions: P::MANAGE_CHANNELS });
    w.ok("owner", C::AssignRole { user: user("carol"), role: role(3), reason: String::new() });
    check(
        &mut w,
        "carol",
        private_channel(2, None, vec![(OverwriteTarget::Role(RoleId::EVERYONE), deny(P::VIEW_CHANNEL))]),
        expect![
            "refused: forbidden: you need the MANAGE_ROLES permission  (Forbidden(Missing(Permissions(MANAGE_ROLES))))"
        ],
    );
    // A category that takes MANAGE_ROLES from mods takes it from channels made in it.
    let cat = CategoryId::from_bytes([5; 16]);
    w.ok("owner", C::CreateCategory { category: cat, name: "Quiet".into() });
    w.ok(
        "owner",
        C::SetOverwrite {
            place: Place::Category(cat),
            target: OverwriteTarget::Role(role(MOD)),
            allow: P::empty(),
            deny: P::MANAGE_ROLES,
        },
    );
    check(
        &mut w,
        "alice",
        private_channel(2, Some(cat), vec![(OverwriteTarget::Role(RoleId::EVERYONE), deny(P::VIEW_CHANNEL))]),
        expect![
            "refused: forbidden: you need the MANAGE_ROLES permission  (Forbidden(Missing(Permissions(MANAGE_ROLES))))"
        ],
    );
    check(
        &mut w,
        "alice",
        private_channel(2, Some(cat), vec![]),
        expect![[
            r#"ChannelCreated { channel: FP4VQzjM4KcwHiS8cj2Xs, name: "staff", kind: Text, category: Some(cx9j2zKs9JYqinaq3K4qA), position: 0, topic: "" }"#
        ]],
    );
}

/// The overwrites are checked against the channel as created, not one after another: hiding
/// it from @everyone first does not stop a mod, who sees it through @everyone, from letting
/// their own role in. (As two `SetOverwrite`s in that order, the second would be refused.)
#[test]
fn overwrites_at_creation_do_not_depend_on_their_order() {
    let mut w = populated();
    check(
        &mut w,
        "alice",
        private_channel(
            2,
            None,
            vec![
                (OverwriteTarget::Role(RoleId::EVERYONE), deny(P::VIEW_CHANNEL)),
                (OverwriteTarget::Role(role(MOD)), allow(P::VIEW_CHANNEL)),
            ],
        ),
        expect![[r#"
            ChannelCreated { channel: FP4VQzjM4KcwHiS8cj2Xs, name: "staff", kind: Text, category: None, position: 1, topic: "" }
            OverwriteSet { place: Channel(FP4VQzjM4KcwHiS8cj2Xs), target: Role(1111111111111111), allow: Permissions(0x0), deny: Permissions(VIEW_CHANNEL) }
            OverwriteSet { place: Channel(FP4VQzjM4KcwHiS8cj2Xs), target: Role(2EuJT4yejHc6gSaAf5d8fK), allow: Permissions(VIEW_CHANNEL), deny: Permissions(0x0) }"#]],
    );
    assert!(w.guild.channel_permissions(&user("alice"), chan(2), w.now).contains(P::VIEW_CHANNEL));
    assert!(!w.guild.channel_permissions(&user("carol"), chan(2), w.now).contains(P::VIEW_CHANNEL));
}
