//! The owner's side of proposals (`PUT /_openguild/federation/v1/propose/{nonce}`): a peer
//! hub under the test's control acts for its own user in a guild of a real hub — joins by
//! invite, posts — and tries what a hostile hub would: speaking for another hub's user, a
//! body its seal does not cover, a stale seal, a role it may not grant itself, a proposal
//! sent again. Each is refused with its reason and nothing is stored; the good ones are
//! appended with the peer's seal, and the hub's whole log still verifies.

use openguild_api::proposals::Proposal;
use openguild_domain::{EventBody, StreamId, Timestamp, UserId};
use serde_json::{Value, json};

use crate::federation::{TestPeer, now_ms, openguild};
use crate::shared::{guild_with_channel, invite_code};
use crate::support::Server;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

async fn propose(peer: &TestPeer, hub: &Server, proposal: &Proposal) -> (u16, Value) {
    let body = serde_json::to_vec(proposal).unwrap();
    peer.put_to(hub, "hub.test", &proposal.target(), body, now_ms()).await
}

fn post(text: &str) -> EventBody {
    EventBody::MessagePosted {
        mention_roles: Default::default(),
        attachments: Vec::new(),
        extra: None,
        text: text.into(),
        reply_to: None,
        mentions: Default::default(),
        mentions_everyone: false,
    }
}

/// The channel's messages stored before now, as `token` reads them. A proposal's answer
/// means its event is stored, not yet projected; `token` posts a fence first, so its
/// read waits (read-your-writes) for everything stored before it. The fence is left out.
async fn messages(hub: &Server, token: &str, channel: &str) -> Vec<Value> {
    hub.ok(
        Some(token),
        "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"fence\"}) { id } }",
        json!({ "c": channel }),
    )
    .await;
    let mut seen = last_messages(hub, token, channel).await;
    assert_eq!(seen.pop().map(|m| m["body"].clone()), Some(json!("fence")), "{seen:?}");
    seen.retain(|m| m["body"] != "fence");
    seen
}

/// The channel's last messages, as `token` reads them.
async fn last_messages(hub: &Server, token: &str, channel: &str) -> Vec<Value> {
    let m = hub
        .ok(
            Some(token),
            "query($c: ID!) { channel(id: $c) { messages(last: 10) { nodes { body author { id } } } } }",
            json!({ "c": channel }),
        )
        .await;
    m["channel"]["messages"]["nodes"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_acts_for_its_own_user_by_proposal_and_a_hostile_peer_gets_nothing_stored() {
    let peer = TestPeer::start("peer.test", 31);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("[federation]\npeers = [\"peer.test={}\"]\n", peer.url);
    let hub = Server::start(&data, &config, &[]);
    let ann = hub.register("ann").await;
    let (guild, channel) = guild_with_channel(&hub, &ann, "Shared").await;
    let code = invite_code(&hub, &ann, &guild).await;
    let guild_stream = StreamId::Guild(guild.parse().unwrap());
    let channel_stream = StreamId::Channel(channel.parse().unwrap());
    let erin: UserId = "@erin:peer.test".parse().unwrap();

    // Erin of peer.test joins by invite, through her hub.
    let join = EventBody::MemberJoined { user: erin.clone(), invite: Some(code.parse().unwrap()) };
    let proposal = Proposal::new(&peer.key, &guild_stream, &erin, &join, rand::random(), at(now_ms())).unwrap();
    let (status, answer) = propose(&peer, &hub, &proposal).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["event"]["core"].is_string(), "the appended event comes back: {answer}");

    // She posts; the message is in the channel, by her.
    let hello =
        Proposal::new(&peer.key, &channel_stream, &erin, &post("hello from afar"), rand::random(), at(now_ms()))
            .unwrap();
    let (status, first) = propose(&peer, &hub, &hello).await;
    assert_eq!(status, 200, "{first}");
    let seen = messages(&hub, &ann, &channel).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["body"], "hello from afar");
    assert_eq!(seen[0]["author"]["id"], "@erin:peer.test");

    // The same proposal again is answered as before, and stores nothing more.
    let (status, again) = propose(&peer, &hub, &hello).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(messages(&hub, &ann, &channel).await.len(), 1);

    // Speaking for a user of another hub: refused before anything is decided.
    let zed: UserId = "@zed:other.test".parse().unwrap();
    let forged =
        Proposal::new(&peer.key, &channel_stream, &zed, &post("not me"), rand::random(), at(now_ms())).unwrap();
    let (status, answer) = propose(&peer, &hub, &forged).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{answer}");

    // A body the seal does not cover.
    let mut swapped =
        Proposal::new(&peer.key, &channel_stream, &erin, &post("what I said"), rand::random(), at(now_ms())).unwrap();
    let other =
        Proposal::new(&peer.key, &channel_stream, &erin, &post("what I did not"), [0; 16], at(now_ms())).unwrap();
    swapped.body = other.body;
    let (status, answer) = propose(&peer, &hub, &swapped).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("not sealed by peer.test"), "{answer}");

    // A seal made six minutes ago: too far from the event it would make.
    let stale =
        Proposal::new(&peer.key, &channel_stream, &erin, &post("old"), rand::random(), at(now_ms() - 360_000)).unwrap();
    let (status, answer) = propose(&peer, &hub, &stale).await;
    assert_eq!((status, answer["refused"]["code"].as_str()), (200, Some("INVALID_INPUT")), "{answer}");
    assert!(answer["refused"]["message"].as_str().unwrap().contains("ms from the event"), "{answer}");

    // Granting herself a role: the guild's rules refuse it, as for a local member.
    let roles =
        hub.ok(Some(&ann), "query($g: ID!) { guild(id: $g) { roles { id name } } }", json!({ "g": guild })).await;
    let everyone = roles["guild"]["roles"][0]["id"].as_str().unwrap().parse().unwrap();
    let grant = EventBody::RoleAssigned { user: erin.clone(), role: everyone, reason: String::new() };
    let grab = Proposal::new(&peer.key, &guild_stream, &erin, &grant, rand::random(), at(now_ms())).unwrap();
    let (status, answer) = propose(&peer, &hub, &grab).await;
    assert_eq!((status, answer["refused"]["code"].as_str()), (200, Some("FORBIDDEN")), "{answer}");

    // Only the join and the one post were stored, and everything on the hub verifies,
    // the peer's seals included.
    assert_eq!(messages(&hub, &ann, &channel).await.len(), 1);
    let members = hub
        .ok(
            Some(&ann),
            "query($g: ID!) { guild(id: $g) { members(first: 100) { nodes { user { id } } } } }",
            json!({ "g": guild }),
        )
        .await;
    let ids: Vec<&str> = members["guild"]["members"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["user"]["id"].as_str())
        .collect();
    assert!(ids.contains(&"@erin:peer.test"), "{members}");
    drop(hub);
    let verify = openguild(&data, "hub.test", &["events", "verify"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.contains("ok:"), "events verify: {said}");
}
