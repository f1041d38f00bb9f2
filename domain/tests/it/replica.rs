//! What a replica checks of an owner's events (`replica`): everything the rules decided
//! passes, in full and erased; what they would refuse, or decide otherwise, is refused.

use openguild_domain::body::{ChannelKind, EventBody};
use openguild_domain::channel::{ChannelState, MessageCommand as M};
use openguild_domain::guild::{self, Guild, GuildCommand as C};
use openguild_domain::permissions::{Overwrite, OverwriteTarget, Permissions as P};
use openguild_domain::replica::{self, Unauthorised};
use openguild_domain::{Event, EventId, Timestamp};

use crate::guild::{GENERAL, MOD, code, populated, role};
use crate::support::{World, chan, user};

/// The guild as it stood at `auth` (its head when a message was decided).
fn guild_at(world: &World, auth: &[EventId]) -> Guild {
    let mut guild = Guild::default();
    for e in world.events.iter().map(|s| &s.event) {
        guild = guild::evolve(guild, e);
        if auth.contains(&e.id) {
            break;
        }
    }
    guild
}

/// Replays every event of the world as a replica receives it, checking each before it is
/// applied; with `erase`, without the bodies, as a late replica's backfill brings them.
fn replay(world: &World, erase: bool) {
    let strip = |e: &Event| Event { body: if erase { None } else { e.body.clone() }, ..e.clone() };
    let mut guild = Guild::default();
    for e in world.events.iter().map(|s| strip(&s.event)) {
        replica::check_guild_event(&guild, &e)
            .unwrap_or_else(|why| panic!("{} at seq {} refused: {why}", e.content().kind(), e.core.seq));
        guild = guild::evolve(guild, &e);
    }
    for (channel, events) in &world.channel_events {
        let mut state = ChannelState::default();
        for e in events.iter().map(|s| strip(&s.event)) {
            let at = guild_at(world, &e.core.auth);
            replica::check_channel_event(&at, *channel, &state, &e)
                .unwrap_or_else(|why| panic!("{} in {channel} refused: {why}", e.content().kind()));
            state = openguild_domain::channel::evolve(state, &e);
        }
    }
}

/// A guild that used most of what the rules allow: channels with overwrites (in an order
/// that a second `SetOverwrite` would refuse), roles, moderation with a purge, reports,
/// messages, edits, reactions, pins, redactions.
fn busy() -> World {
    let mut w = populated();
    w.ok(
        "alice",
        C::CreateChannel {
            channel: chan(2),
            name: "staff".into(),
            kind: ChannelKind::Text,
            category: None,
            topic: "mods only".into(),
            overwrites: vec![
                (
                    OverwriteTarget::Role(openguild_domain::RoleId::EVERYONE),
                    Overwrite { allow: P::empty(), deny: P::VIEW_CHANNEL },
                ),
                (OverwriteTarget::Role(role(MOD)), Overwrite { allow: P::VIEW_CHANNEL, deny: P::empty() }),
            ],
        },
    );
    w.ok("owner", C::UpdateGuild { name: Some("Renamed".into()), description: Some("about us".into()) });
    w.ok("owner", C::SetSlowMode { channel: chan(GENERAL), seconds: 5 });
    w.advance(1_000_000);
    let hello = w.post("bob", chan(GENERAL), "hello");
    w.say("bob", chan(GENERAL), M::Edit { message: hello, text: "hello all".into() }).unwrap();
    w.say("carol", chan(GENERAL), M::React { message: hello, emoji: "👍".into() }).unwrap();
    w.say("alice", chan(GENERAL), M::Pin { message: hello }).unwrap();
    w.post("alice", chan(2), "staff note");
    w.advance(10_000);
    let spam = w.post("carol", chan(GENERAL), "spam");
    w.ok("bob", C::SetNickname { user: user("bob"), nickname: Some("Bobby".into()) });
    w.ok("alice", C::Timeout { user: user("bob"), until: w.now.plus_millis(60_000), reason: "calm down".into() });
    w.ok("alice", C::RemoveTimeout { user: user("bob"), reason: String::new() });
    w.ok("alice", C::Ban { user: user("carol"), reason: "spam".into(), purge_seconds: 60 });
    w.say("alice", chan(GENERAL), M::Purge { message: spam, reason: "purged".into() }).unwrap();
    w.advance(6_000);
    let again = w.post("bob", chan(GENERAL), "me again");
    w.say("bob", chan(GENERAL), M::Redact { message: again, reason: "oops".into() }).unwrap();
    w.ok("owner", C::CreateInvite { code: code("later"), max_uses: Some(1), expires_at: None });
    w.ok("owner", C::RevokeInvite { code: code("later") });
    w.ok("owner", C::LockChannel { channel: chan(GENERAL), locked: true, reason: "night".into() });
    w.ok("alice", C::Kick { user: user("bob"), reason: "bye".into() });
    w
}

#[test]
fn every_event_the_rules_decided_passes_in_full_and_erased() {
    let w = busy();
    replay(&w, false);
    replay(&w, true);
}

fn refused(result: Result<(), Unauthorised>) -> String {
    match result {
        Ok(()) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_owner_cannot_append_what_its_rules_refuse() {
    let w = populated();
    // bob has no right to hand out roles.
    let grant = w.forge("bob", EventBody::RoleAssigned { user: user("bob"), role: role(MOD), reason: String::new() });
    let why = refused(replica::check_guild_event(&w.guild, &grant));
    assert!(why.contains("MANAGE_ROLES"), "{why}");
    // carol is banned: no post of hers is taken, even with a valid signature.
    let w = busy();
    let ghost = w.forge_in(
        chan(GENERAL),
        "carol",
        EventBody::MessagePosted {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: "I'm back".into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        },
    );
    let state = w.channels[&chan(GENERAL)].clone();
    assert!(refused(replica::check_channel_event(&w.guild, chan(GENERAL), &state, &ghost)).contains("banned"));
    // Someone else's redaction outside any purge window.
    let hello = *state.messages.iter().find(|(_, m)| !m.redacted).unwrap().0;
    let wipe = w.forge_in(chan(GENERAL), "dave", EventBody::MessageRedacted { message: hello, reason: String::new() });
    let dave_is_mod = w.guild.channel_permissions(&user("dave"), chan(GENERAL), w.now).contains(P::MANAGE_MESSAGES);
    assert!(dave_is_mod, "the scenario gives dave a moderator role");
    let stranger =
        w.forge_in(chan(GENERAL), "nobody", EventBody::MessageRedacted { message: hello, reason: String::new() });
    assert!(refused(replica::check_channel_event(&w.guild, chan(GENERAL), &state, &stranger)).contains("member"));
    replica::check_channel_event(&w.guild, chan(GENERAL), &state, &wipe).unwrap();
}

#[test]
fn each_stream_takes_only_its_own_kinds_and_one_start() {
    let w = busy();
    let message = EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "hi".into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    };
    let misplaced = w.forge("owner", message);
    assert_eq!(
        refused(replica::check_guild_event(&w.guild, &misplaced)),
        "a guild stream does not take `message.posted` events"
    );
    let role_in_channel = w.forge_in(chan(GENERAL), "owner", EventBody::RoleDeleted { role: role(MOD) });
    let state = w.channels[&chan(GENERAL)].clone();
    assert!(
        refused(replica::check_channel_event(&w.guild, chan(GENERAL), &state, &role_in_channel))
            .contains("channel stream does not take")
    );
    let again = w.events[0].event.body.clone().unwrap();
    let second = w.forge("owner", again);
    assert_eq!(
        refused(replica::check_guild_event(&w.guild, &second)),
        "a guild's stream starts with its one `guild.created`"
    );
}

#[test]
fn a_guild_cannot_claim_a_creator_who_did_not_send_it() {
    let mut w = World::new();
    let EventBody::GuildCreated(mut created) = w.events[0].event.body.clone().unwrap() else { unreachable!() };
    created.creator = user("alice");
    w.guild = Guild::default();
    let forged = w.forge("owner", EventBody::GuildCreated(created));
    assert!(refused(replica::check_guild_event(&Guild::default(), &forged)).contains("created by @alice:hub.test"));
}

#[test]
fn what_the_rules_decide_otherwise_is_refused() {
    let w = busy();
    // A category at a position its creation would not give it.
    let category = openguild_domain::CategoryId::from_bytes([9; 16]);
    let jump = w.forge("owner", EventBody::CategoryCreated { category, name: "far".into(), position: 7 });
    assert!(refused(replica::check_guild_event(&w.guild, &jump)).contains("decide it differently"));
    // A purge window that is no whole number of seconds back from the ban.
    let since = Timestamp::from_millis(w.now.as_millis() - 1_500).unwrap();
    let by_owner = w.forge(
        "owner",
        EventBody::MemberBanned { user: user("dave"), reason: String::new(), purge_since: Some(since) },
    );
    assert!(refused(replica::check_guild_event(&w.guild, &by_owner)).contains("decide it differently"));
    let whole = Timestamp::from_millis(w.now.as_millis() - 2_000).unwrap();
    let fine = w.forge(
        "owner",
        EventBody::MemberBanned { user: user("dave"), reason: String::new(), purge_since: Some(whole) },
    );
    replica::check_guild_event(&w.guild, &fine).unwrap();
}

#[test]
fn an_owner_hubs_operator_may_act_as_one_but_no_one_elses() {
    let w = busy();
    // The owner hub's own user who is no member: taken as its operator for what operators do.
    let archive = w.forge("operator", EventBody::GuildArchived { reason: "abandoned".into() });
    replica::check_guild_event(&w.guild, &archive).unwrap();
    // ...but not for what only members do.
    let rename = w.forge("operator", EventBody::GuildUpdated { name: Some("mine".into()), description: None });
    assert!(refused(replica::check_guild_event(&w.guild, &rename)).contains("not a member"));
}
