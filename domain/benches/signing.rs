//! Costs of the signed-event format per event: raw ed25519-dalek signing and verifying as
//! the baseline, then our encode+hash+sign, the full verify, and the cheap read check.
//! Figures go to docs/PERFORMANCE.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use openguild_domain::event::{self, KeyRing, ServerKey, UnsignedEvent};
use openguild_domain::{ChannelId, EventBody, EventId, StreamId, Timestamp};

fn message() -> UnsignedEvent {
    UnsignedEvent {
        stream: StreamId::Channel(ChannelId::from_bytes([3; 16])),
        seq: 12_345,
        prev: vec![EventId::from_hash([1; 32])],
        auth: vec![EventId::from_hash([2; 32])],
        sender: "@alice:hub.example.org".parse().unwrap(),
        ts: Timestamp::from_millis(1_790_000_000_000).unwrap(),
        body: EventBody::MessagePosted {
            mention_roles: Default::default(),
            attachments: Vec::new(),
            extra: None,
            text: "Hello everyone! The meetup is on Saturday at 3pm, see the pinned post for details.".into(),
            reply_to: None,
            mentions: Default::default(),
            mentions_everyone: false,
        },
    }
}

fn signing(c: &mut Criterion) {
    let key = ServerKey::from_seed("hub.example.org".parse().unwrap(), "ed25519:a1".parse().unwrap(), [9; 32]);
    let raw_key = SigningKey::from_bytes(&[9; 32]);
    let keys = KeyRing::default().with_own(&key);
    let unsigned = message();
    let signed = event::sign(unsigned.clone(), &key).unwrap();
    let digest = *signed.raw.id.as_bytes();
    let raw_sig = raw_key.sign(&digest);

    let mut g = c.benchmark_group("per event");
    g.bench_function("raw ed25519 sign (baseline)", |b| b.iter(|| raw_key.sign(black_box(&digest))));
    g.bench_function("sign: encode + hash + sign", |b| {
        b.iter(|| event::sign(black_box(unsigned.clone()), &key).unwrap())
    });
    g.bench_function("raw ed25519 verify_strict (baseline)", |b| {
        b.iter(|| raw_key.verifying_key().verify_strict(black_box(&digest), &raw_sig).unwrap())
    });
    g.bench_function("verify: decode + hashes + verify_strict", |b| {
        b.iter(|| event::verify(black_box(&signed.raw), &keys).unwrap())
    });
    g.bench_function("read check: hashes + decode", |b| b.iter(|| black_box(&signed.raw).decode().unwrap()));
    g.bench_function("strict format check: hashes + decode + re-encode", |b| {
        b.iter(|| black_box(&signed.raw).decode_strict().unwrap())
    });
    g.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
