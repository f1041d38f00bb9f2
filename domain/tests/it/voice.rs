//! Voice decisions (`voice`): who may join and how full a room may get, what the SFU's
//! reports change, moderators' acts — and a replica re-deciding each voice event.

use openguild_domain::body::{ChannelKind, EventBody, TrackSource};
use openguild_domain::channel::{self, ChannelState};
use openguild_domain::guild::GuildCommand as C;
use openguild_domain::permissions::{Overwrite, OverwriteTarget, Permissions as P};
use openguild_domain::replica;
use openguild_domain::voice::{self, VoiceCommand as V};
use openguild_domain::{ChannelId, DomainError, Place, StreamId};

use crate::guild::populated;
use crate::support::{World, chan, user};

const LOUNGE: u8 = 7;
const STAGE: u8 = 8;

fn with_voice() -> World {
    let mut w = populated();
    for (n, name) in [(LOUNGE, "lounge"), (STAGE, "stage")] {
        let cmd = C::CreateChannel {
            channel: chan(n),
            name: name.into(),
            kind: ChannelKind::Voice,
            category: None,
            topic: String::new(),
            overwrites: vec![],
        };
        w.ok("owner", cmd);
    }
    w
}

/// Runs a voice command as `actor` in `channel`, appending what it decides.
fn act(w: &mut World, actor: &str, channel: ChannelId, cmd: V) -> Result<Vec<EventBody>, DomainError> {
    let state = w.channels.get(&channel).cloned().unwrap_or_default();
    let bodies = voice::decide(&w.guild, channel, &state.voice, &user(actor), &cmd, w.now)?;
    let mut state = state;
    for body in bodies.clone() {
        let auth = w.guild.head.into_iter().collect();
        let signed = w.sign(StreamId::Channel(channel), state.version + 1, state.head, auth, &user(actor), body);
        state = channel::evolve(state, &signed.event);
        w.channel_events.entry(channel).or_default().push(signed);
    }
    w.channels.insert(channel, state);
    Ok(bodies)
}

fn join(w: &mut World, who: &str, channel: u8) -> Result<Vec<EventBody>, DomainError> {
    act(w, who, chan(channel), V::Join { session: format!("PA_{who}") })
}

#[test]
fn joining_takes_connect_a_seat_and_no_timeout_and_the_sfus_reports_repeat_harmlessly() {
    let mut w = with_voice();
    assert_eq!(join(&mut w, "bob", LOUNGE).unwrap().len(), 1);
    assert!(join(&mut w, "bob", LOUNGE).unwrap().is_empty(), "the same join twice changes nothing");
    w.ok("owner", C::SetUserLimit { channel: chan(LOUNGE), limit: 1 });
    let full = join(&mut w, "carol", LOUNGE).unwrap_err();
    assert!(full.to_string().contains("full (1 of 1)"), "{full}");
    // The owner (every permission, MOVE_MEMBERS among them) passes a full channel.
    join(&mut w, "owner", LOUNGE).unwrap();
    // No CONNECT by an overwrite; timed out; not a voice channel.
    let deny = Overwrite { allow: P::empty(), deny: P::CONNECT };
    w.ok(
        "owner",
        C::SetOverwrite {
            place: Place::Channel(chan(STAGE)),
            target: OverwriteTarget::Member(user("carol")),
            allow: deny.allow,
            deny: deny.deny,
        },
    );
    assert!(join(&mut w, "carol", STAGE).unwrap_err().to_string().contains("CONNECT"));
    w.ok("alice", C::Timeout { user: user("bob"), until: w.now.plus_millis(60_000), reason: String::new() });
    assert!(matches!(join(&mut w, "bob", STAGE), Err(DomainError::TimedOut { .. })));
    assert!(join(&mut w, "dave", crate::guild::GENERAL).unwrap_err().to_string().contains("not a voice channel"));
    // A leave of someone gone, or of an older session, decides nothing.
    assert!(act(&mut w, "bob", chan(LOUNGE), V::Leave { session: Some("PA_old".into()) }).unwrap().is_empty());
    assert_eq!(act(&mut w, "bob", chan(LOUNGE), V::Leave { session: None }).unwrap().len(), 1);
    assert!(act(&mut w, "bob", chan(LOUNGE), V::Leave { session: None }).unwrap().is_empty());
    assert!(w.user_limit_is(LOUNGE, 1));
}

impl World {
    fn user_limit_is(&self, channel: u8, limit: u32) -> bool {
        self.guild.channels[&chan(channel)].user_limit == limit
    }
}

#[test]
fn moderators_mute_disconnect_and_move_with_their_permissions_only() {
    let mut w = with_voice();
    join(&mut w, "bob", LOUNGE).unwrap();
    let mic = V::Track { track: "TR_mic".into(), source: TrackSource::Microphone, published: true, muted: false };
    act(&mut w, "bob", chan(LOUNGE), mic.clone()).unwrap();
    assert!(act(&mut w, "bob", chan(LOUNGE), mic).unwrap().is_empty(), "a track reported twice changes nothing");
    let mute = |muted| V::ServerMute { user: user("bob"), muted, deafened: false, reason: String::new() };
    // carol has no MUTE_MEMBERS; the owner has.
    assert!(act(&mut w, "carol", chan(LOUNGE), mute(true)).unwrap_err().to_string().contains("MUTE_MEMBERS"));
    act(&mut w, "owner", chan(LOUNGE), mute(true)).unwrap();
    let seat = &w.channels[&chan(LOUNGE)].voice[&user("bob")];
    assert!(seat.server_muted && seat.muted() && seat.microphones().eq(["TR_mic"]));
    let to_stage = V::Move { user: user("bob"), to: chan(STAGE), reason: "panel".into() };
    assert!(act(&mut w, "alice", chan(LOUNGE), to_stage.clone()).unwrap_err().to_string().contains("MOVE_MEMBERS"));
    act(&mut w, "owner", chan(LOUNGE), to_stage).unwrap();
    assert!(!w.channels[&chan(LOUNGE)].voice.contains_key(&user("bob")), "moved out");
    let gone = V::Disconnect { user: user("bob"), reason: String::new() };
    assert!(matches!(act(&mut w, "owner", chan(LOUNGE), gone), Err(DomainError::NotFound { .. })));
    assert!(act(&mut w, "bob", chan(LOUNGE), V::SetSelf { muted: true, deafened: true }).is_err(), "not in the room");
}

#[test]
fn a_replica_takes_the_voice_events_the_rules_decided_and_refuses_a_forged_join() {
    let mut w = with_voice();
    join(&mut w, "bob", LOUNGE).unwrap();
    act(&mut w, "bob", chan(LOUNGE), V::SetSelf { muted: true, deafened: false }).unwrap();
    act(
        &mut w,
        "owner",
        chan(LOUNGE),
        V::ServerMute { user: user("bob"), muted: true, deafened: true, reason: "loud".into() },
    )
    .unwrap();
    act(&mut w, "owner", chan(LOUNGE), V::Disconnect { user: user("bob"), reason: String::new() }).unwrap();
    let mut state = ChannelState::default();
    for e in w.channel_events[&chan(LOUNGE)].iter().map(|s| &s.event) {
        replica::check_channel_event(&w.guild, chan(LOUNGE), &state, e)
            .unwrap_or_else(|why| panic!("{} refused: {why}", e.content().kind()));
        state = channel::evolve(state, e);
    }
    // carol banned: an owner hub cannot seat her.
    w.ok("alice", C::Ban { user: user("carol"), reason: String::new(), purge_seconds: 0 });
    let forged = w.forge_in(chan(LOUNGE), "carol", EventBody::VoiceJoined { session: "PA_carol".into() });
    let why = replica::check_channel_event(&w.guild, chan(LOUNGE), &state, &forged).unwrap_err().to_string();
    assert!(why.contains("banned"), "{why}");
}
