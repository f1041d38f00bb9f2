//! Signing and verification: what verifies, what fails and why, erasure, upcasting, and
//! refusal of non-canonical bytes.

use expect_test::expect;
use openguild_domain::body::legacy::LegacyBody;
use openguild_domain::canonical::{self, CanonicalError};
use openguild_domain::event::{
    self, KeyRing, PublishedKey, RawEvent, ServerKey, UnsignedEvent, VerifyError, context, hash,
};
use openguild_domain::{EventBody, EventId, GuildId, StreamId};
use serde::Serialize;

use crate::guild::{GENERAL, populated};
use crate::support::{SERVER, World, chan, key, keyring, t, user};

/// A signed message event of the populated world.
fn message() -> RawEvent {
    let mut w = populated();
    w.post("bob", chan(GENERAL), "a message that will be erased");
    w.channel_events[&chan(GENERAL)][0].raw.clone()
}

/// Re-ids bytes, as an attacker who edits them would, so that the id check passes and the
/// next check has to catch the change.
fn with_core(raw: &RawEvent, core: Vec<u8>) -> RawEvent {
    RawEvent { id: EventId::from_hash(hash(context::EVENT_ID, &core)), core, ..raw.clone() }
}

#[test]
fn a_signed_event_verifies_and_decodes_to_what_was_signed() {
    let w = populated();
    for signed in &w.events {
        let event = event::verify(&signed.raw, &keyring()).unwrap();
        assert_eq!(event, signed.event);
    }
}

#[test]
fn an_erased_body_still_verifies_but_a_changed_body_does_not() {
    let raw = message();
    let erased = raw.erased();
    let event = event::verify(&erased, &keyring()).expect("an erased event still verifies");
    assert_eq!(event.body, None);
    expect![[r#"
        MessagePosted {
            text: "",
            reply_to: None,
            mentions: {},
            mentions_everyone: false,
            mention_roles: {},
            attachments: [],
            extra: None,
        }
    "#]]
    .assert_debug_eq(event.content());

    let other = EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: "something else".into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    };
    let changed = RawEvent { body: Some(canonical::encode(&other).unwrap()), ..raw.clone() };
    assert_eq!(event::verify(&changed, &keyring()), Err(VerifyError::BadContentHash));
    assert_eq!(changed.decode(), Err(VerifyError::BadContentHash), "the cheap read check catches it too");
}

#[test]
fn verification_says_why_it_fails() {
    let raw = message();
    let mut core = raw.core.clone();
    core[20] ^= 1;
    let tampered = RawEvent { core, ..raw.clone() };
    assert!(matches!(event::verify(&tampered, &keyring()), Err(VerifyError::BadId { .. })));

    let stranger = ServerKey::from_seed(SERVER.parse().unwrap(), "ed25519:k1".parse().unwrap(), [7; 32]);
    let wrong_keys = KeyRing::default().with_own(&stranger);
    expect!["bad signature by ed25519:k1 of hub.test"]
        .assert_eq(&event::verify(&raw, &wrong_keys).unwrap_err().to_string());
    expect!["unknown key ed25519:k1 of hub.test"]
        .assert_eq(&event::verify(&raw, &KeyRing::default()).unwrap_err().to_string());

    // A key retired before the event was signed does not cover it.
    let mut retired = KeyRing::default();
    retired.insert(
        SERVER.parse().unwrap(),
        "ed25519:k1".parse().unwrap(),
        PublishedKey { public_key: key().public_key(), valid_from: t(0), valid_until: Some(t(10)) },
    );
    expect!["key ed25519:k1 of hub.test was not valid at the event's time"]
        .assert_eq(&event::verify(&raw, &retired).unwrap_err().to_string());

    let unsigned = RawEvent { signatures: canonical::encode(&event::Signatures::new()).unwrap(), ..raw.clone() };
    expect!["no signature from the origin server hub.test"]
        .assert_eq(&event::verify(&unsigned, &keyring()).unwrap_err().to_string());
}

#[test]
fn a_second_create_cannot_claim_a_guild() {
    let w = World::new();
    let EventBody::GuildCreated(mut created) = w.events[0].event.content().clone() else { panic!() };
    created.name = "Impostor".into();
    created.nonce = [2; 16];
    let claim = UnsignedEvent {
        stream: StreamId::Guild(w.guild_id),
        seq: 1,
        prev: vec![],
        auth: vec![],
        sender: user("mallory"),
        ts: w.now,
        body: EventBody::GuildCreated(created),
    };
    let signed = event::sign(claim, &key()).unwrap();
    let err = event::verify(&signed.raw, &keyring()).unwrap_err();
    assert!(matches!(err, VerifyError::WrongGuildStream { .. }), "{err}");
    let _ = GuildId::from_bytes([0; 16]);
}

/// The core of an event written by an older version, whose body used a superseded tag.
#[derive(Serialize)]
struct OldCore {
    stream: StreamId,
    seq: u64,
    prev: Vec<EventId>,
    auth: Vec<EventId>,
    origin: String,
    sender: String,
    ts: u64,
    redacted: LegacyBody,
    #[serde(with = "serde_bytes")]
    content_hash: [u8; 32],
}

#[test]
fn old_event_bodies_are_upcast_on_read_and_never_rewritten() {
    let body = LegacyBody::MessageText { text: "from the old days".into(), reply_to: None };
    let body_bytes = canonical::encode(&body).unwrap();
    let core = OldCore {
        stream: StreamId::Channel(chan(1)),
        seq: 1,
        prev: vec![],
        auth: vec![],
        origin: SERVER.into(),
        sender: "@old:hub.test".into(),
        ts: 5,
        redacted: LegacyBody::MessageText { text: String::new(), reply_to: None },
        content_hash: hash(context::CONTENT_HASH, &body_bytes),
    };
    let core_bytes = canonical::encode(&core).unwrap();
    let id_hash = hash(context::EVENT_ID, &core_bytes);
    let mut sigs = event::Signatures::new();
    sigs.entry(SERVER.parse().unwrap()).or_default().insert("ed25519:k1".parse().unwrap(), key().sign_hash(&id_hash));
    let raw = RawEvent {
        id: EventId::from_hash(id_hash),
        core: core_bytes,
        body: Some(body_bytes.clone()),
        signatures: canonical::encode(&sigs).unwrap(),
    };
    let event = event::verify(&raw, &keyring()).unwrap();
    expect![[r#"
        Some(
            MessagePosted {
                text: "from the old days",
                reply_to: None,
                mentions: {},
                mentions_everyone: false,
                mention_roles: {},
                attachments: [],
                extra: None,
            },
        )
    "#]]
    .assert_debug_eq(&event.body);
    assert_eq!(raw.body.as_deref(), Some(&body_bytes[..]), "the stored bytes stay as they were");
}

#[test]
fn non_canonical_encodings_of_a_valid_event_are_refused() {
    let raw = message();
    let value = rmpv::decode::read_value(&mut &raw.core[..]).unwrap();
    let rmpv::Value::Map(entries) = value else { panic!("core is a map") };
    let encode = |entries: Vec<(rmpv::Value, rmpv::Value)>| {
        let mut out = vec![];
        rmpv::encode::write_value(&mut out, &rmpv::Value::Map(entries)).unwrap();
        out
    };
    assert_eq!(encode(entries.clone()), raw.core, "rmpv re-encodes the canonical form unchanged");
    let refused = |core: Vec<u8>| with_core(&raw, core).decode_strict().unwrap_err();

    // Keys in another order.
    let mut reordered = entries.clone();
    reordered.swap(0, 1);
    assert!(matches!(refused(encode(reordered)), VerifyError::Malformed(_)));

    // A wide integer: seq = 1 as uint64.
    let mut wide = vec![0x80 | entries.len() as u8];
    for (k, v) in &entries {
        rmpv::encode::write_value(&mut wide, k).unwrap();
        if k.as_str() == Some("seq") {
            wide.push(0xcf);
            wide.extend_from_slice(&v.as_u64().unwrap().to_be_bytes());
        } else {
            rmpv::encode::write_value(&mut wide, v).unwrap();
        }
    }
    assert_eq!(refused(wide), VerifyError::Malformed(CanonicalError::NotCanonical));

    // A float for the timestamp.
    let mut float = entries.clone();
    for (k, v) in &mut float {
        if k.as_str() == Some("ts") {
            *v = rmpv::Value::F64(v.as_u64().unwrap() as f64);
        }
    }
    assert!(matches!(refused(encode(float)), VerifyError::Malformed(CanonicalError::Malformed(_))));

    // A duplicated key.
    let mut dup = entries.clone();
    dup.push(entries[1].clone());
    assert!(matches!(refused(encode(dup)), VerifyError::Malformed(_)));

    // Trailing bytes.
    let mut trailing = raw.core.clone();
    trailing.push(0);
    assert_eq!(refused(trailing), VerifyError::Malformed(CanonicalError::TrailingBytes(1)));

    // Seq 0: canonical, and a valid unsigned integer, but no position in a stream.
    let mut zero = entries.clone();
    for (k, v) in &mut zero {
        if k.as_str() == Some("seq") {
            *v = rmpv::Value::from(0u64);
        }
    }
    assert_eq!(refused(encode(zero)), VerifyError::ZeroSeq);
}
