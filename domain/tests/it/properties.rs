//! Properties over arbitrary input: the signed-event format (encoding is deterministic, any
//! flipped bit of a signed event fails verification) and the names validation accepts.

use openguild_domain::body::{ChannelKind, Place, ReportAction, ReportTarget};
use openguild_domain::canonical;
use openguild_domain::event::{self, RawEvent, UnsignedEvent};
use openguild_domain::permissions::{OverwriteTarget, Permissions};
use openguild_domain::{CategoryId, ChannelId, EventBody, EventId, ReportId, RoleId, StreamId, Timestamp, UserId};
use proptest::prelude::*;

use crate::support::{key, keyring};

fn user() -> impl Strategy<Value = UserId> {
    ("[a-z0-9._=-]{1,64}", prop_oneof!["[a-z]{1,10}(\\.[a-z]{1,10}){0,2}", "127\\.0\\.0\\.[0-9]"])
        .prop_map(|(h, s)| format!("@{h}:{s}").parse().unwrap())
}

fn id16() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn event_id() -> impl Strategy<Value = EventId> {
    any::<[u8; 32]>().prop_map(EventId::from_hash)
}

fn ts() -> impl Strategy<Value = Timestamp> {
    (0..=Timestamp::MAX.as_millis()).prop_map(|ms| Timestamp::from_millis(ms).unwrap())
}

fn perms() -> impl Strategy<Value = Permissions> {
    any::<u64>().prop_map(Permissions::from_bits_truncate)
}

fn body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        (
            any::<String>(),
            proptest::option::of(event_id()),
            proptest::collection::btree_set(user(), 0..4),
            any::<bool>()
        )
            .prop_map(|(text, reply_to, mentions, mentions_everyone)| EventBody::MessagePosted {
                mention_roles: Default::default(),
                attachments: Vec::new(),
                extra: None,
                text,
                reply_to,
                mentions,
                mentions_everyone
            }),
        (event_id(), any::<String>()).prop_map(|(message, text)| EventBody::MessageEdited { message, text }),
        (event_id(), "\\PC{0,8}").prop_map(|(message, emoji)| EventBody::ReactionAdded { message, emoji }),
        (
            id16(),
            any::<String>(),
            prop_oneof![Just(ChannelKind::Text), Just(ChannelKind::Voice), Just(ChannelKind::Announcement)],
            proptest::option::of(id16()),
            any::<u32>(),
            any::<String>()
        )
            .prop_map(|(c, name, kind, cat, position, topic)| EventBody::ChannelCreated {
                channel: ChannelId::from_bytes(c),
                name,
                kind,
                category: cat.map(CategoryId::from_bytes),
                position,
                topic
            }),
        (id16(), any::<String>(), perms(), any::<u32>()).prop_map(|(r, name, permissions, position)| {
            EventBody::RoleCreated { role: RoleId::from_bytes(r), name, permissions, position }
        }),
        (
            id16(),
            prop_oneof![
                user().prop_map(OverwriteTarget::Member),
                id16().prop_map(|r| OverwriteTarget::Role(RoleId::from_bytes(r)))
            ],
            perms(),
            perms()
        )
            .prop_map(|(c, target, allow, deny)| EventBody::OverwriteSet {
                place: Place::Channel(ChannelId::from_bytes(c)),
                target,
                allow,
                deny
            }),
        (user(), any::<String>(), proptest::option::of(ts()))
            .prop_map(|(user, reason, purge_since)| EventBody::MemberBanned { user, reason, purge_since }),
        (user(), ts(), any::<String>()).prop_map(|(user, until, reason)| EventBody::MemberTimedOut {
            user,
            until,
            reason
        }),
        (id16(), user(), any::<String>()).prop_map(|(r, user, reason)| EventBody::ReportFiled {
            report: ReportId::from_bytes(r),
            target: ReportTarget::Member { user },
            reason
        }),
        (id16(), any::<String>()).prop_map(|(r, reason)| EventBody::ReportResolved {
            report: ReportId::from_bytes(r),
            action: ReportAction::Banned,
            reason
        }),
        (proptest::option::of(any::<String>()), proptest::option::of(any::<String>()))
            .prop_map(|(name, description)| EventBody::GuildUpdated { name, description }),
        Just(EventBody::GuildArchived { reason: String::new() }),
    ]
}

fn unsigned() -> impl Strategy<Value = UnsignedEvent> {
    (
        id16(),
        1..u64::MAX,
        proptest::collection::vec(event_id(), 0..2),
        proptest::collection::vec(event_id(), 0..3),
        user(),
        ts(),
        body(),
    )
        .prop_map(|(c, seq, prev, auth, sender, ts, body)| UnsignedEvent {
            stream: StreamId::Channel(ChannelId::from_bytes(c)),
            seq,
            prev,
            auth,
            sender,
            ts,
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encoding_is_deterministic(e in unsigned()) {
        let signed = event::sign(e.clone(), &key()).unwrap();
        let again = event::sign(e, &key()).unwrap();
        prop_assert_eq!(&signed.raw, &again.raw);
        // encode -> decode -> encode gives the same bytes.
        let decoded = signed.raw.decode().unwrap();
        prop_assert_eq!(&decoded, &signed.event);
        prop_assert_eq!(canonical::encode(&decoded.core).unwrap(), signed.raw.core.clone());
        prop_assert_eq!(canonical::encode(decoded.body.as_ref().unwrap()).unwrap(), signed.raw.body.clone().unwrap());
        // Erasing keeps it verifiable.
        prop_assert!(event::verify(&signed.raw.erased(), &keyring()).is_ok());
    }

    #[test]
    fn any_flipped_bit_fails_verification(e in unsigned(), pick in any::<prop::sample::Index>(), bit in 0..8u8, part in 0..3u8) {
        let raw = event::sign(e, &key()).unwrap().raw;
        prop_assert!(event::verify(&raw, &keyring()).is_ok());
        let flip = |bytes: &[u8]| {
            let mut b = bytes.to_vec();
            let i = pick.index(b.len());
            b[i] ^= 1 << bit;
            b
        };
        let tampered = match part {
            0 => RawEvent { core: flip(&raw.core), ..raw.clone() },
            1 => RawEvent { body: raw.body.as_deref().map(flip), ..raw.clone() },
            _ => RawEvent { signatures: flip(&raw.signatures), ..raw.clone() },
        };
        prop_assert!(event::verify(&tampered, &keyring()).is_err(), "a flipped bit in part {} verified", part);
    }
}

proptest! {
    /// Parsers never panic, and whatever they accept prints back as the same text.
    #[test]
    fn id_parsers_accept_only_what_round_trips(s in "\\PC{0,80}|@[a-z0-9._=-]{0,70}:[a-z0-9.:\\[\\]-]{0,20}") {
        use openguild_domain::{GuildId, InviteCode, KeyId, ServerName};
        if let Ok(id) = s.parse::<UserId>() { prop_assert_eq!(id.to_string(), s.clone()); }
        if let Ok(id) = s.parse::<ServerName>() { prop_assert_eq!(id.to_string(), s.clone()); }
        if let Ok(id) = s.parse::<StreamId>() { prop_assert_eq!(id.to_string(), s.clone()); }
        if let Ok(id) = s.parse::<EventId>() { prop_assert_eq!(id.to_string(), s.clone()); }
        if let Ok(id) = s.parse::<GuildId>() { prop_assert_eq!(id.to_string(), s.clone()); }
        if let Ok(id) = s.parse::<InviteCode>() { prop_assert_eq!(id.to_string(), s.clone()); }
        if let Ok(id) = s.parse::<KeyId>() { prop_assert_eq!(id.to_string(), s.clone()); }
    }

    /// Arbitrary bytes given as a stored event never panic the read check or verify.
    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(core in proptest::collection::vec(any::<u8>(), 0..300), body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)), sigs in proptest::collection::vec(any::<u8>(), 0..100)) {
        let raw = RawEvent { id: EventId::from_hash(event::hash(event::context::EVENT_ID, &core)), core, body, signatures: sigs };
        prop_assert!(event::verify(&raw, &keyring()).is_err());
    }
}

/// Unicode's format characters (general category Cf, Unicode 15.1), written out here apart
/// from the domain's own table so the property checks it rather than restates it.
const FORMAT: &[(u32, u32)] = &[
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Characters that are not format characters but show as nothing.
const BLANK: &[char] = &['\u{115F}', '\u{1160}', '\u{2800}', '\u{3164}', '\u{FFA0}', '\u{034F}', '\u{FE0F}'];

fn is_format(c: char) -> bool {
    FORMAT.iter().any(|(lo, hi)| (*lo..=*hi).contains(&u32::from(c)))
}

fn shows(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !is_format(c) && !BLANK.contains(&c)
}

/// Names built from what fools readers (format characters, blanks, joiners) among letters,
/// right-to-left script and emoji, and from any character at all.
fn name_like() -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        prop::sample::select(vec!['a', 'Z', '7', ' ', 'é', 'ж', '中', 'م', 'ی', 'ש', 'क', '👩', '💻', '🌈', '❤']),
        prop::sample::select(BLANK.to_vec()),
        prop::sample::select(vec!['\u{200C}', '\u{200D}', '\u{200D}']),
        prop::sample::select(FORMAT.to_vec())
            .prop_flat_map(|(lo, hi)| (lo..=hi).prop_map(|c| char::from_u32(c).unwrap())),
        any::<char>(),
    ];
    prop::collection::vec(tricky, 0..12).prop_map(String::from_iter)
}

proptest! {
    /// A name that is accepted can be seen and reads as typed: it has a visible character,
    /// and its only format characters are joiners between two visible characters (emoji
    /// sequences, Persian and Indic spelling), never bidi controls or zero-width spaces.
    #[test]
    fn accepted_names_have_a_visible_character_and_no_format_character(s in name_like()) {
        use openguild_domain::validate;
        for accepted in [validate::name("name", &s), validate::channel_name(&s)].into_iter().flatten() {
            prop_assert!(accepted.chars().any(shows), "{:?} was accepted but shows nothing", accepted);
            let chars: Vec<char> = accepted.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if !is_format(*c) {
                    continue;
                }
                let joined = matches!(c, '\u{200C}' | '\u{200D}')
                    && i > 0
                    && chars.get(i - 1).is_some_and(|p| shows(*p) || *p == '\u{FE0F}')
                    && chars.get(i + 1).is_some_and(|n| shows(*n));
                prop_assert!(joined, "{:?} was accepted with U+{:04X} at {}", accepted, u32::from(*c), i);
            }
        }
    }
}
