//! Federation between real hubs: what a peer fetches and checks. (Transactions, the inbox
//! and the sender come next: docs/PROTOCOL.md says what is built.)

use openguild_domain::KeyRing;
use openguild_federation::keys::KeyDocument;
use openguild_store::Options;
use serde_json::json;

use crate::support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_publishes_its_keys_self_signed_and_every_event_it_signed_verifies_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, "", &[]);
    let ann = server.register("ann").await;
    server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Keys\"}) { id } }", json!({})).await;

    // Public: no authentication, the document carries its own signature.
    let response = reqwest::get(format!("{}/_openguild/federation/v1/keys", server.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: KeyDocument = response.json().await.unwrap();
    let keys = doc.verify(&"hub.test".parse().unwrap()).expect("the document is signed by its own key");
    assert_eq!(keys.len(), 1, "one current key, no old ones yet");
    let mut tampered = doc.clone();
    tampered.valid_until_ts += 1;
    assert!(tampered.verify(&"hub.test".parse().unwrap()).is_err(), "a changed document no longer verifies");
    assert!(doc.verify(&"other.test".parse().unwrap()).is_err(), "a document is only its own hub's");

    // A peer that holds only the published keys checks every event the hub signed.
    let mut ring = KeyRing::default();
    for (key_id, key) in keys {
        ring.insert(doc.server.clone(), key_id, key);
    }
    let options = Options { read_only: true, ..Options::default() };
    let store = openguild_store::open(&data.join("events.db").display().to_string(), options).await.unwrap();
    let events = store.read_all(0, 1_000).await.unwrap();
    assert!(events.len() >= 3, "registration, session and guild events were written");
    for e in &events {
        openguild_domain::event::verify(&e.raw, &ring).unwrap_or_else(|err| panic!("{}: {err}", e.event.id));
    }
    store.close().await;
}
