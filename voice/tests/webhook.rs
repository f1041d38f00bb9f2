//! The webhook check (`webhook::Webhooks`) against hostile input: whatever the body and the
//! `Authorization`, it answers (never panics), and only a body signed with our key, fresh
//! and new, is taken; a signed body with any one byte changed is refused.

use base64::Engine;
use livekit_api::access_token::AccessToken;
use livekit_protocol as proto;
use openguild_voice::webhook::{Refused, Report, report};
use openguild_voice::{Secret, VoiceSettings, Webhooks};
use proptest::prelude::*;
use sha2::Digest;

const NOW: i64 = 1_800_000_000;

fn settings() -> VoiceSettings {
    VoiceSettings {
        url: "wss://voice.test".into(),
        api_key: "devkey".into(),
        api_secret: Secret::new("a-secret-of-thirty-two-characters-at-least"),
        token_ttl_seconds: 600,
    }
}

fn sign(body: &str) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()));
    AccessToken::with_api_key("devkey", settings().api_secret.expose()).with_sha256(&hash).to_jwt().unwrap()
}

fn joined(id: &str) -> String {
    let e = proto::WebhookEvent {
        event: "participant_joined".into(),
        room: Some(proto::Room { name: "4vJ9JU1bJJE96FWSJKvHsb".into(), ..Default::default() }),
        participant: Some(proto::ParticipantInfo {
            sid: "PA_1".into(),
            identity: "@ann:hub.test".into(),
            ..Default::default()
        }),
        id: id.into(),
        created_at: NOW,
        ..Default::default()
    };
    serde_json::to_string(&e).unwrap()
}

#[test]
fn a_signed_fresh_webhook_is_taken_once_and_read() {
    let hooks = Webhooks::new(&settings());
    let body = joined("EV_1");
    let event = hooks.receive(&body, Some(&sign(&body)), NOW).unwrap();
    hooks.remember(&event, NOW);
    assert!(matches!(hooks.receive(&body, Some(&sign(&body)), NOW), Err(Refused::Replayed(_))));
    assert!(matches!(hooks.receive(&body, Some(&sign(&body)), NOW + 301), Err(Refused::Stale { .. })));
    match report(&event) {
        Report::Joined { user, session, .. } => {
            assert_eq!((user.as_str(), session.as_str()), ("@ann:hub.test", "PA_1"))
        }
        other => panic!("read as {other:?}"),
    }
    // A room that is no channel id of ours is left alone.
    let other = body.replace("4vJ9JU1bJJE96FWSJKvHsb", "someone-elses-room");
    let e = Webhooks::new(&settings()).receive(&other, Some(&sign(&other)), NOW).unwrap();
    assert!(matches!(report(&e), Report::Ignored(_)));
}

proptest! {
    #[test]
    fn any_body_and_authorization_is_answered_and_refused(body in ".{0,300}", auth in proptest::option::of(".{0,300}")) {
        let hooks = Webhooks::new(&settings());
        prop_assert!(hooks.receive(&body, auth.as_deref(), NOW).is_err());
    }

    #[test]
    fn a_signed_body_with_one_byte_changed_is_refused(at in 0usize..200, byte in 0x20u8..0x7f) {
        let body = joined("EV_2");
        let at = at % body.len();
        prop_assume!(body.as_bytes()[at] != byte);
        let mut changed = body.clone().into_bytes();
        changed[at] = byte;
        let changed = String::from_utf8(changed).unwrap();
        let hooks = Webhooks::new(&settings());
        prop_assert!(hooks.receive(&changed, Some(&sign(&body)), NOW).is_err());
    }
}
