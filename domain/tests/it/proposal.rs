//! Proposals (`proposal`, `replica::decide_proposed_*`): a member of another hub acts in a
//! guild through their own hub's seal. The owner decides a proposal as any command, and
//! every replica then checks the seal's presence, freshness and uniqueness; what the rules
//! refuse a local member, they refuse a remote one.

use openguild_domain::body::EventBody;
use openguild_domain::channel::{self, ChannelState};
use openguild_domain::guild;
use openguild_domain::proposal::{self, MAX_SKEW_MS, Seal, SealError};
use openguild_domain::replica::{self, Unauthorised};
use openguild_domain::{Event, ServerKey, ServerName, StreamId, Timestamp, UserId, event};

use crate::guild::{GENERAL, MOD, code, populated, role};
use crate::support::{World, chan, user};

fn hub_b() -> ServerKey {
    ServerKey::from_seed("hub-b.test".parse().unwrap(), "ed25519:b1".parse().unwrap(), [9; 32])
}

fn erin() -> UserId {
    "@erin:hub-b.test".parse().unwrap()
}

fn owner_hub(w: &World) -> ServerName {
    w.key.server().clone()
}

/// `body` on the guild stream by `sender` at `ts`, carrying `seal`, signed by the owner.
fn guild_event(w: &World, sender: &UserId, body: EventBody, seal: Option<Seal>, ts: Timestamp) -> Event {
    let unsigned = event::UnsignedEvent {
        stream: StreamId::Guild(w.guild_id),
        seq: w.guild.version + 1,
        prev: w.guild.head.into_iter().collect(),
        auth: vec![],
        sender: sender.clone(),
        ts,
        body,
    };
    event::sign_proposed(unsigned, seal, &w.key).unwrap().event
}

fn seal(stream: &StreamId, body: &EventBody, nonce: u8, ts: Timestamp) -> Seal {
    proposal::seal(&hub_b(), stream, &erin(), body, [nonce; 16], ts).unwrap()
}

#[test]
fn a_remote_members_sealed_join_passes_the_owner_and_every_replica_once_and_never_again() {
    let mut w = populated();
    let stream = StreamId::Guild(w.guild_id);
    let join = EventBody::MemberJoined { user: erin(), invite: Some(code("welcome")) };
    let sealed = seal(&stream, &join, 1, w.now);

    let decided = replica::decide_proposed_guild(&w.guild, &erin(), &owner_hub(&w), &join, &sealed, w.now).unwrap();
    assert_eq!(decided, vec![join.clone()]);
    let e = guild_event(&w, &erin(), join.clone(), Some(sealed.clone()), w.now);
    replica::check_guild_event(&w.guild, &e).unwrap();
    let before = w.guild.clone();
    w.guild = guild::evolve(std::mem::take(&mut w.guild), &e);
    assert!(w.guild.members.contains_key(&erin()));

    // The same proposal again: the owner refuses it, and a replica refuses an event with it.
    w.advance(1_000);
    let again = replica::decide_proposed_guild(&w.guild, &erin(), &owner_hub(&w), &join, &sealed, w.now);
    assert!(format!("{:?}", again.unwrap_err()).contains("replay"));
    let leave = EventBody::MemberLeft { user: erin() };
    let replayed = guild_event(&w, &erin(), leave.clone(), Some(sealed.clone()), w.now);
    assert!(matches!(replica::check_guild_event(&w.guild, &replayed), Err(Unauthorised::Seal(SealError::Replayed))));
    // … while on the guild before it, the event would have passed that check.
    assert!(!before.seals.seen(&sealed.nonce));
}

#[test]
fn a_replica_refuses_a_remote_senders_event_without_a_seal_a_stale_one_and_a_seal_on_a_local_one() {
    let w = populated();
    let stream = StreamId::Guild(w.guild_id);
    let join = EventBody::MemberJoined { user: erin(), invite: Some(code("welcome")) };
    let unsealed = guild_event(&w, &erin(), join.clone(), None, w.now);
    assert!(matches!(replica::check_guild_event(&w.guild, &unsealed), Err(Unauthorised::Seal(SealError::Missing(_)))));

    let old = Timestamp::from_millis(w.now.as_millis() - MAX_SKEW_MS - 1).unwrap();
    let stale = guild_event(&w, &erin(), join.clone(), Some(seal(&stream, &join, 2, old)), w.now);
    assert!(matches!(replica::check_guild_event(&w.guild, &stale), Err(Unauthorised::Seal(SealError::Stale { .. }))));

    let rename = EventBody::GuildUpdated { name: Some("Mine".into()), description: None };
    let needless = guild_event(&w, &user("owner"), rename.clone(), Some(seal(&stream, &rename, 3, w.now)), w.now);
    assert!(matches!(replica::check_guild_event(&w.guild, &needless), Err(Unauthorised::Seal(SealError::Needless(_)))));
}

#[test]
fn the_owner_refuses_a_remote_member_what_the_rules_refuse_and_what_the_command_would_not_make() {
    let mut w = populated();
    let stream = StreamId::Guild(w.guild_id);
    let join = EventBody::MemberJoined { user: erin(), invite: Some(code("welcome")) };
    let sealed = seal(&stream, &join, 1, w.now);
    let e = guild_event(&w, &erin(), join, Some(sealed), w.now);
    w.guild = guild::evolve(std::mem::take(&mut w.guild), &e);

    // Granting itself the moderators' role: forbidden, as for a local member.
    let grant = EventBody::RoleAssigned { user: erin(), role: role(MOD), reason: String::new() };
    let refused = replica::decide_proposed_guild(
        &w.guild,
        &erin(),
        &owner_hub(&w),
        &grant,
        &seal(&stream, &grant, 4, w.now),
        w.now,
    );
    assert!(format!("{:?}", refused.unwrap_err()).contains("Forbidden"));

    // A kind no command makes on this stream.
    let post = EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "hi".into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    };
    let refused = replica::decide_proposed_guild(
        &w.guild,
        &erin(),
        &owner_hub(&w),
        &post,
        &seal(&stream, &post, 5, w.now),
        w.now,
    );
    assert!(format!("{:?}", refused.unwrap_err()).contains("cannot propose"));

    // A post in #general is decided as erin's, and the event passes the channel check.
    let general = StreamId::Channel(chan(GENERAL));
    let sealed = seal(&general, &post, 6, w.now);
    let state = ChannelState::default();
    let decided = replica::decide_proposed_message(
        &w.guild,
        chan(GENERAL),
        &state,
        &erin(),
        &owner_hub(&w),
        &post,
        &sealed,
        w.now,
    )
    .unwrap();
    assert_eq!(decided, vec![post.clone()]);
    let unsigned = event::UnsignedEvent {
        stream: general,
        seq: 1,
        prev: vec![],
        auth: w.guild.head.into_iter().collect(),
        sender: erin(),
        ts: w.now,
        body: post,
    };
    let e = event::sign_proposed(unsigned, Some(sealed), &w.key).unwrap().event;
    replica::check_channel_event(&w.guild, chan(GENERAL), &state, &e).unwrap();
    let state = channel::evolve(state, &e);
    assert_eq!(state.messages.len(), 1);
}

#[test]
fn a_seal_signs_the_stream_the_sender_and_the_content() {
    let w = World::new();
    let stream = StreamId::Guild(w.guild_id);
    let body = EventBody::MemberLeft { user: erin() };
    let s = seal(&stream, &body, 7, w.now);
    let hash = |stream: &StreamId, sender: &UserId, body: &EventBody| {
        proposal::signing_hash(stream, sender, &proposal::content_hash(body).unwrap(), &s.nonce, s.ts).unwrap()
    };
    let verifies = |h: [u8; 32]| {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&hub_b().public_key()).unwrap();
        key.verify_strict(&h, &ed25519_dalek::Signature::from_bytes(&s.signature.0)).is_ok()
    };
    assert!(verifies(hash(&stream, &erin(), &body)));
    assert!(!verifies(hash(&StreamId::Channel(chan(1)), &erin(), &body)));
    assert!(!verifies(hash(&stream, &"@frank:hub-b.test".parse().unwrap(), &body)));
    assert!(!verifies(hash(&stream, &erin(), &EventBody::MemberLeft { user: user("bob") })));
}
