//! Message commands, given/when/then: post, edit, redact, react, pin, and what slow mode,
//! locks, overwrites and timeouts refuse.

use std::collections::BTreeSet;

use expect_test::expect;
use openguild_domain::body::Place;
use openguild_domain::channel::MessageCommand as M;
use openguild_domain::guild::GuildCommand as C;
use openguild_domain::permissions::{OverwriteTarget, Permissions as P};
use openguild_domain::{EventId, RoleId};

use crate::guild::{GENERAL, populated};
use crate::support::{chan, check_msg, user};

fn post(text: &str) -> M {
    M::Post {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: text.into(),
        reply_to: None,
        mentions: BTreeSet::new(),
        mentions_everyone: false,
    }
}

#[test]
fn posting_replies_and_mentions() {
    let mut w = populated();
    let first = w.post("bob", chan(GENERAL), "hello");
    let reply = M::Post {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "hi @bob".into(),
        reply_to: Some(first),
        mentions: [user("bob")].into(),
        mentions_everyone: false,
    };
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        reply,
        expect![[
            r#"MessagePosted { text: "hi @bob", reply_to: Some($6nqbbex4xHwp3Zk6BxwsLAdWgRzsu9kGZNzN6JmDggrC), mentions: {@bob:hub.test}, mentions_everyone: false, mention_roles: {}, attachments: [], extra: None }"#
        ]],
    );
    let to_nowhere = M::Post {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "?".into(),
        reply_to: Some(EventId::from_hash([9; 32])),
        mentions: BTreeSet::new(),
        mentions_everyone: false,
    };
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        to_nowhere,
        expect![[
            r#"refused: message $cGfHiC6Kgg3FpFZvgwGcswsCRtp4aBP2fzuXRQPizuN not found  (NotFound { what: "message", id: "$cGfHiC6Kgg3FpFZvgwGcswsCRtp4aBP2fzuXRQPizuN" })"#
        ]],
    );
    let everyone = M::Post {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "@everyone".into(),
        reply_to: None,
        mentions: BTreeSet::new(),
        mentions_everyone: true,
    };
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        everyone,
        expect![
            "refused: forbidden: you need the MENTION_EVERYONE permission  (Forbidden(Missing(Permissions(MENTION_EVERYONE))))"
        ],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        post("   "),
        expect![[
            r#"refused: invalid body: must not be empty  (InvalidInput { field: "body", reason: "must not be empty" })"#
        ]],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        post(&"x".repeat(4001)),
        expect![[
            r#"refused: invalid body: must be at most 4000 characters (got 4001)  (InvalidInput { field: "body", reason: "must be at most 4000 characters (got 4001)" })"#
        ]],
    );
    check_msg(
        &mut w,
        "carol",
        chan(99),
        post("hi"),
        expect![[
            r#"refused: channel DGpykUme7qPfqGMwzzNJqg not found  (NotFound { what: "channel", id: "DGpykUme7qPfqGMwzzNJqg" })"#
        ]],
    );
    check_msg(
        &mut w,
        "zed",
        chan(GENERAL),
        post("hi"),
        expect!["refused: forbidden: you are not a member of this guild  (Forbidden(NotMember))"],
    );
}

#[test]
fn slow_mode_refuses_a_second_message_inside_the_window() {
    let mut w = populated();
    w.ok("alice", C::SetSlowMode { channel: chan(GENERAL), seconds: 10 });
    w.post("bob", chan(GENERAL), "one");
    w.advance(2_500);
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("two"),
        expect!["refused: slow mode is on: you can post again in 7.500 s  (SlowMode { retry_after_ms: 7500 })"],
    );
    // Others are not held back by bob's message, and moderators are exempt.
    w.post("carol", chan(GENERAL), "mine");
    w.post("alice", chan(GENERAL), "mod one");
    w.post("alice", chan(GENERAL), "mod two");
    w.advance(7_500);
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("two, later"),
        expect![[
            r#"MessagePosted { text: "two, later", reply_to: None, mentions: {}, mentions_everyone: false, mention_roles: {}, attachments: [], extra: None }"#
        ]],
    );
}

#[test]
fn a_locked_channel_refuses_posts_from_members_without_manage_channels() {
    let mut w = populated();
    w.ok("alice", C::LockChannel { channel: chan(GENERAL), locked: true, reason: "raid".into() });
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("let me in"),
        expect![
            "refused: forbidden: the channel is locked; only members with MANAGE_CHANNELS can post  (Forbidden(ChannelLocked))"
        ],
    );
    check_msg(
        &mut w,
        "alice",
        chan(GENERAL),
        post("calm down"),
        expect![[
            r#"MessagePosted { text: "calm down", reply_to: None, mentions: {}, mentions_everyone: false, mention_roles: {}, attachments: [], extra: None }"#
        ]],
    );
}

#[test]
fn a_timed_out_member_cannot_post_or_react() {
    let mut w = populated();
    let msg = w.post("carol", chan(GENERAL), "hi");
    let until = w.now.plus_millis(60_000);
    w.ok("alice", C::Timeout { user: user("bob"), until, reason: "spam".into() });
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("hello?"),
        expect![
            "refused: you are timed out until 1060000 ms since the epoch  (TimedOut { until: Timestamp(1060000) })"
        ],
    );
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        M::React { message: msg, emoji: "👍".into() },
        expect![
            "refused: you are timed out until 1060000 ms since the epoch  (TimedOut { until: Timestamp(1060000) })"
        ],
    );
    w.advance(60_000);
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("I'm back"),
        expect![[
            r#"MessagePosted { text: "I'm back", reply_to: None, mentions: {}, mentions_everyone: false, mention_roles: {}, attachments: [], extra: None }"#
        ]],
    );
}

#[test]
fn overwrites_decide_who_posts_and_sees() {
    let mut w = populated();
    let everyone = OverwriteTarget::Role(RoleId::EVERYONE);
    w.ok(
        "owner",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: everyone.clone(),
            allow: P::empty(),
            deny: P::SEND_MESSAGES,
        },
    );
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("hi"),
        expect![
            "refused: forbidden: you need the SEND_MESSAGES permission  (Forbidden(Missing(Permissions(SEND_MESSAGES))))"
        ],
    );
    w.ok(
        "owner",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: OverwriteTarget::Member(user("bob")),
            allow: P::SEND_MESSAGES,
            deny: P::empty(),
        },
    );
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("hi"),
        expect![[
            r#"MessagePosted { text: "hi", reply_to: None, mentions: {}, mentions_everyone: false, mention_roles: {}, attachments: [], extra: None }"#
        ]],
    );
    w.ok(
        "owner",
        C::SetOverwrite {
            place: Place::Channel(chan(GENERAL)),
            target: everyone,
            allow: P::empty(),
            deny: P::VIEW_CHANNEL,
        },
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        post("hi"),
        expect![
            "refused: forbidden: you need the VIEW_CHANNEL permission  (Forbidden(Missing(Permissions(VIEW_CHANNEL))))"
        ],
    );
    let why = w.guild.explain(&user("carol"), Some(chan(GENERAL)), w.now).unwrap();
    let send = why.iter().find(|v| v.permission == P::SEND_MESSAGES).unwrap();
    expect![[r#"
        Verdict {
            permission: Permissions(
                SEND_MESSAGES,
            ),
            name: "SEND_MESSAGES",
            allowed: false,
            reason: NoViewChannel,
        }
    "#]]
    .assert_debug_eq(send);
}

#[test]
fn editing_and_redacting() {
    let mut w = populated();
    let msg = w.post("bob", chan(GENERAL), "helo");
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        M::Edit { message: msg, text: "hello".into() },
        expect![[r#"MessageEdited { message: $GdxCJMheBf9Jzj9ks1mg9tiRW7iC8GDnmVyXjE8CGLSg, text: "hello" }"#]],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::Edit { message: msg, text: "hacked".into() },
        expect!["refused: forbidden: only the author of the message can do this  (Forbidden(NotAuthor))"],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::Redact { message: msg, reason: String::new() },
        expect![
            "refused: forbidden: you need the MANAGE_MESSAGES permission  (Forbidden(Missing(Permissions(MANAGE_MESSAGES))))"
        ],
    );
    check_msg(
        &mut w,
        "alice",
        chan(GENERAL),
        M::Redact { message: msg, reason: "off topic".into() },
        expect![[r#"MessageRedacted { message: $GdxCJMheBf9Jzj9ks1mg9tiRW7iC8GDnmVyXjE8CGLSg, reason: "off topic" }"#]],
    );
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        M::Edit { message: msg, text: "again".into() },
        expect![[
            r#"refused: message $GdxCJMheBf9Jzj9ks1mg9tiRW7iC8GDnmVyXjE8CGLSg not found  (NotFound { what: "message", id: "$GdxCJMheBf9Jzj9ks1mg9tiRW7iC8GDnmVyXjE8CGLSg" })"#
        ]],
    );
    let own = w.post("carol", chan(GENERAL), "oops");
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::Redact { message: own, reason: String::new() },
        expect![[r#"MessageRedacted { message: $5Qdi5UNzmDQpD4kJkny7YGvrXyBmk99K5qvA6vrQwNPq, reason: "" }"#]],
    );
}

#[test]
fn reactions() {
    let mut w = populated();
    let msg = w.post("bob", chan(GENERAL), "vote");
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::React { message: msg, emoji: "👍".into() },
        expect![[r#"ReactionAdded { message: $4w9Apm2pNpGSbTbDX1pRMbjPC6BsCJAfS1y7864w3R4a, emoji: "👍" }"#]],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::React { message: msg, emoji: "👍".into() },
        expect![[
            r#"refused: conflict: you already reacted with that emoji  (Conflict("you already reacted with that emoji"))"#
        ]],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::React { message: msg, emoji: "two words".into() },
        expect![[
            r#"refused: invalid emoji: must be 1 to 64 bytes without spaces  (InvalidInput { field: "emoji", reason: "must be 1 to 64 bytes without spaces" })"#
        ]],
    );
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        M::React { message: msg, emoji: "👍".into() },
        expect![[r#"ReactionAdded { message: $4w9Apm2pNpGSbTbDX1pRMbjPC6BsCJAfS1y7864w3R4a, emoji: "👍" }"#]],
    );
    assert_eq!(w.channels[&chan(GENERAL)].messages[&msg].reactions["👍"].len(), 2);
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::Unreact { message: msg, emoji: "👍".into() },
        expect![[r#"ReactionRemoved { message: $4w9Apm2pNpGSbTbDX1pRMbjPC6BsCJAfS1y7864w3R4a, emoji: "👍" }"#]],
    );
    check_msg(
        &mut w,
        "carol",
        chan(GENERAL),
        M::Unreact { message: msg, emoji: "👍".into() },
        expect![[r#"refused: your reaction 👍 not found  (NotFound { what: "your reaction", id: "👍" })"#]],
    );
}

#[test]
fn pins() {
    let mut w = populated();
    let msg = w.post("bob", chan(GENERAL), "rules");
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        M::Pin { message: msg },
        expect![
            "refused: forbidden: you need the MANAGE_MESSAGES permission  (Forbidden(Missing(Permissions(MANAGE_MESSAGES))))"
        ],
    );
    check_msg(
        &mut w,
        "alice",
        chan(GENERAL),
        M::Pin { message: msg },
        expect!["MessagePinned { message: $Fsqpb6g1WDheAy3QB6o9H8ZbTe4ErDBe9KWTcQubNpSp }"],
    );
    check_msg(
        &mut w,
        "alice",
        chan(GENERAL),
        M::Pin { message: msg },
        expect![[r#"refused: conflict: the message is already pinned  (Conflict("the message is already pinned"))"#]],
    );
    check_msg(
        &mut w,
        "alice",
        chan(GENERAL),
        M::Unpin { message: msg },
        expect!["MessageUnpinned { message: $Fsqpb6g1WDheAy3QB6o9H8ZbTe4ErDBe9KWTcQubNpSp }"],
    );
    check_msg(
        &mut w,
        "alice",
        chan(GENERAL),
        M::Unpin { message: msg },
        expect![[r#"refused: conflict: the message is not pinned  (Conflict("the message is not pinned"))"#]],
    );
}

/// Message bodies are what people write, in any direction: bidi controls and zero-width
/// characters stay (names refuse them; a message shows who wrote it and is not an identity).
#[test]
fn message_bodies_keep_direction_marks() {
    let mut w = populated();
    check_msg(
        &mut w,
        "bob",
        chan(GENERAL),
        post("\u{2067}שלום\u{2069} and \u{200F}!"),
        expect![[
            r#"MessagePosted { text: "\u{2067}שלום\u{2069} and \u{200f}!", reply_to: None, mentions: {}, mentions_everyone: false, mention_roles: {}, attachments: [], extra: None }"#
        ]],
    );
}
