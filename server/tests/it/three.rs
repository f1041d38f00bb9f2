//! Three real hubs: A owns a guild with a member on B and one on C. A's events reach both
//! peers through its sender, each verified there, including the joins that another hub
//! signed for its own user (B checks C's signature with the keys it fetches from C). C is
//! killed while A keeps writing; after its restart both peers hold exactly A's events.

use std::time::Duration;

use openguild_domain::{ServerKey, StreamId};

use crate::federation::{b_key, free_port, seed_guild_with, verify_on};
use crate::partition::{Writer, converge};
use crate::support::Server;

fn c_key() -> ServerKey {
    ServerKey::from_seed("hub-c.test".parse().unwrap(), "ed25519:a1".parse().unwrap(), [9; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_with_members_on_two_peer_hubs_reaches_both_verified_even_when_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let data = |hub: &str| dir.path().join(hub);
    let (a_data, b_data, c_data) = (data("a"), data("b"), data("c"));

    // A's owner registers on A; the guild is written beside the account, with B's and C's
    // members, each join signed by its member's own hub.
    std::fs::create_dir_all(&a_data).unwrap();
    std::fs::write(a_data.join("server.key"), [7u8; 32]).unwrap();
    let first = Server::start(&a_data, "", &[("OPENGUILD_SERVER_NAME", "hub-a.test")]);
    let token = first.register("owner").await;
    drop(first);
    let store_url = a_data.join("events.db").display().to_string();
    let guild = seed_guild_with(&a_data, &store_url, &[b_key(), c_key()], 2).await;
    let StreamId::Guild(guild_id) = &guild else { unreachable!() };

    let ports = [free_port(), free_port(), free_port()];
    let names = ["hub-a.test", "hub-b.test", "hub-c.test"];
    // Each hub allows the other two.
    let config = |me: usize| {
        let peers: Vec<String> =
            (0..3).filter(|&i| i != me).map(|i| format!("\"{}=http://127.0.0.1:{}\"", names[i], ports[i])).collect();
        format!("[federation]\npeers = [{}]\nretry_max_seconds = 2\n", peers.join(", "))
    };
    let start = |me: usize, data: &std::path::Path| {
        Server::start_on(
            data,
            &config(me),
            &[("OPENGUILD_SERVER_NAME", names[me])],
            &format!("127.0.0.1:{}", ports[me]),
        )
    };
    for (seed, data) in [(8u8, &b_data), (9, &c_data)] {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(data.join("server.key"), [seed; 32]).unwrap();
    }
    let b = start(1, &b_data);
    let mut c = start(2, &c_data);
    let a = start(0, &a_data);

    let mut writer = Writer { a: &a, token, guild: guild_id.to_string(), channels: Vec::new(), written: 0 };
    for _ in 0..6 {
        writer.write().await;
    }
    let streams = writer.streams(&guild);
    converge(&a_data, &b_data, &streams, Duration::from_secs(60), "B, all up").await;
    converge(&a_data, &c_data, &streams, Duration::from_secs(60), "C, all up").await;

    // C dies without warning while A keeps writing; B keeps up; C catches up once back.
    drop(c);
    for _ in 0..18 {
        writer.write().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let streams = writer.streams(&guild);
    converge(&a_data, &b_data, &streams, Duration::from_secs(60), "B, while C is down").await;
    c = start(2, &c_data);
    converge(&a_data, &c_data, &streams, Duration::from_secs(60), "C, after its restart").await;

    let on_c = crate::partition::all_ids(&c_data, &streams).await;
    let events: usize = on_c.iter().map(Vec::len).sum();
    // The seeded start (create, invite, two joins, two renames), then one event per write.
    assert_eq!(events, 6 + writer.written, "C holds the guild's start and every write, once");
    drop((a, b, c));
    for (data, hub) in [(&a_data, "hub-a.test"), (&b_data, "hub-b.test"), (&c_data, "hub-c.test")] {
        verify_on(data, hub);
    }
}
