//! Read state and mentions over real HTTP and websockets: unread and mention counts per
//! channel, guild and DM, moved by `markRead` and by deletions; a read marker set on one
//! device reaching the user's other devices live; `myEvents` bringing mentions and DM
//! posts and nothing else; and `Reaction.me` after a reload.

use serde_json::{Value, json};

use crate::shared::{guild_with_channel, join_by_invite};
use crate::support::{Server, Ws};

const POST: &str = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
const COUNTS: &str = "query($c: ID!) { channel(id: $c) { unreadCount mentionCount lastReadMessageId } }";

async fn post(hub: &Server, token: &str, channel: &str, body: &str) -> String {
    hub.ok(Some(token), POST, json!({ "c": channel, "b": body })).await["sendMessage"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn counts(hub: &Server, token: &str, channel: &str) -> (i64, i64, Value) {
    let c = hub.ok(Some(token), COUNTS, json!({ "c": channel })).await;
    let c = &c["channel"];
    (c["unreadCount"].as_i64().unwrap(), c["mentionCount"].as_i64().unwrap(), c["lastReadMessageId"].clone())
}

async fn my_events(hub: &Server, token: &str) -> Ws {
    let mut ws = Ws::connect(&hub.ws_url(), token).await;
    ws.subscribe("me", "subscription { myEvents { kind channelId messageId message { id body } } }", json!({})).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.unwrap()["type"], "pong");
    ws
}

async fn next_mine(ws: &mut Ws) -> Value {
    loop {
        let got = ws.next().await.expect("an event on myEvents");
        if got["id"] == "me" {
            return got["payload"]["data"]["myEvents"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_and_mention_counts_follow_posts_reads_and_deletions_and_markers_reach_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let (guild, chat) = guild_with_channel(&hub, &ann, "G").await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    let mut phone = my_events(&hub, &bob).await;
    let mut laptop = my_events(&hub, &bob).await;

    let plain = post(&hub, &ann, &chat, "good morning").await;
    let named = post(&hub, &ann, &chat, "@bob:hub.test have a look").await;
    let everyone = post(&hub, &ann, &chat, "@everyone meeting at 10").await;
    // Bob hears of the two that call him, not of the plain one.
    for device in [&mut phone, &mut laptop] {
        let first = next_mine(device).await;
        assert_eq!(
            (first["kind"].as_str(), first["message"]["id"].as_str()),
            (Some("message.posted"), Some(named.as_str()))
        );
        assert_eq!(first["channelId"], chat.as_str());
        let second = next_mine(device).await;
        assert_eq!(second["message"]["id"], everyone.as_str(), "{second}");
    }

    assert_eq!(counts(&hub, &bob, &chat).await, (3, 2, Value::Null));
    assert_eq!(counts(&hub, &ann, &chat).await.0, 0, "one's own posts are never unread");
    let g = hub
        .ok(Some(&bob), "query($g: ID!) { guild(id: $g) { unreadCount mentionCount } }", json!({ "g": guild }))
        .await;
    assert_eq!(g["guild"], json!({ "unreadCount": 3, "mentionCount": 2 }));

    // Read on the phone up to the named one: the laptop hears of it.
    hub.ok(
        Some(&bob),
        "mutation($c: ID!, $m: ID!) { markRead(channelId: $c, messageId: $m) }",
        json!({ "c": chat, "m": named }),
    )
    .await;
    for device in [&mut laptop, &mut phone] {
        let read = next_mine(device).await;
        assert_eq!(read["kind"], "account.read", "{read}");
        assert_eq!(
            (read["channelId"].as_str(), read["messageId"].as_str()),
            (Some(chat.as_str()), Some(named.as_str()))
        );
    }
    assert_eq!(counts(&hub, &bob, &chat).await, (1, 1, json!(named)));
    // A deleted message is no longer news.
    hub.ok(Some(&ann), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": everyone })).await;
    assert_eq!(counts(&hub, &bob, &chat).await, (0, 0, json!(named)));
    let _ = plain;

    // A DM post is news for the other person, with its own count.
    let dm = hub.ok(Some(&ann), "mutation { openDm(userIds: [\"@bob:hub.test\"]) { id } }", json!({})).await;
    let dm = dm["openDm"]["id"].as_str().unwrap().to_owned();
    let hello = post(&hub, &ann, &dm, "psst").await;
    let heard = next_mine(&mut phone).await;
    assert_eq!((heard["channelId"].as_str(), heard["message"]["body"].as_str()), (Some(dm.as_str()), Some("psst")));
    let dms = hub.ok(Some(&bob), "{ dms { id unreadCount mentionCount } }", json!({})).await;
    assert_eq!(dms["dms"], json!([{ "id": dm, "unreadCount": 1, "mentionCount": 0 }]));

    // Refusals say what is wrong.
    let elsewhere = hub
        .gql(
            Some(&bob),
            "mutation($c: ID!, $m: ID!) { markRead(channelId: $c, messageId: $m) }",
            json!({ "c": chat, "m": hello }),
        )
        .await;
    assert_eq!(elsewhere["errors"][0]["extensions"]["code"], "INVALID_INPUT", "{elsewhere}");
    assert!(elsewhere["errors"][0]["message"].as_str().unwrap().contains("is not a message of channel"));
    let carl = hub.register("carl").await;
    let hidden = hub
        .gql(
            Some(&carl),
            "mutation($c: ID!, $m: ID!) { markRead(channelId: $c, messageId: $m) }",
            json!({ "c": dm, "m": hello }),
        )
        .await;
    assert_eq!(hidden["errors"][0]["extensions"]["code"], "NOT_FOUND", "{hidden}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewers_own_reactions_are_known_after_a_reload_and_pins_are_for_moderators() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let (guild, chat) = guild_with_channel(&hub, &ann, "G").await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    let m = post(&hub, &ann, &chat, "vote").await;
    // Pins in a guild are the moderators'.
    let pin = "mutation($m: ID!) { pinMessage(messageId: $m) }";
    let refused = hub.gql(Some(&bob), pin, json!({ "m": m })).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("MANAGE_MESSAGES"), "{refused}");
    hub.ok(Some(&ann), pin, json!({ "m": m })).await;
    let pins = hub.ok(Some(&bob), "query($c: ID!) { channel(id: $c) { pins { id } } }", json!({ "c": chat })).await;
    assert_eq!(pins["channel"]["pins"], json!([{ "id": m }]));
    hub.ok(Some(&ann), "mutation($m: ID!) { unpinMessage(messageId: $m) }", json!({ "m": m })).await;
    let pins = hub.ok(Some(&bob), "query($c: ID!) { channel(id: $c) { pins { id } } }", json!({ "c": chat })).await;
    assert_eq!(pins["channel"]["pins"], json!([]));
    let react = "mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) }";
    hub.ok(Some(&bob), react, json!({ "m": m, "e": "👍" })).await;
    hub.ok(Some(&ann), react, json!({ "m": m, "e": "🎉" })).await;
    hub.ok(Some(&bob), react, json!({ "m": m, "e": "🎉" })).await;
    let mine = |token: String| {
        let (hub, chat) = (&hub, chat.clone());
        async move {
            let r = hub
                .ok(
                    Some(&token),
                    "query($c: ID!) { channel(id: $c) { messages(last: 5) { nodes { reactions { emoji count me } } } } }",
                    json!({ "c": chat }),
                )
                .await;
            r["channel"]["messages"]["nodes"][0]["reactions"].clone()
        }
    };
    assert_eq!(
        mine(bob.clone()).await,
        json!([{ "emoji": "👍", "count": 1, "me": true }, { "emoji": "🎉", "count": 2, "me": true }])
    );
    assert_eq!(
        mine(ann.clone()).await,
        json!([{ "emoji": "👍", "count": 1, "me": false }, { "emoji": "🎉", "count": 2, "me": true }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_mentions_reach_the_roles_holders_and_a_muted_channel_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(&dir.path().join("data"), "", &[]);
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let carl = hub.register("carl").await;
    let (guild, chat) = guild_with_channel(&hub, &ann, "G").await;
    for token in [&bob, &carl] {
        join_by_invite(&hub, &ann, &guild, token).await;
    }
    let role = hub
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createRole(input: {guildId: $g, name: \"crew\", permissions: []}) { id } }",
            json!({ "g": guild }),
        )
        .await["createRole"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    hub.ok(
        Some(&ann),
        "mutation($g: ID!, $r: ID!) { assignRole(guildId: $g, userId: \"@bob:hub.test\", roleId: $r) }",
        json!({ "g": guild, "r": role }),
    )
    .await;
    let mut bobs = my_events(&hub, &bob).await;
    let mut carls = my_events(&hub, &carl).await;

    // A role's mention reaches its holder, not the others.
    let called = post(&hub, &ann, &chat, &format!("@&{role} deploy at 5")).await;
    assert_eq!(next_mine(&mut bobs).await["message"]["id"], called.as_str());
    let direct = post(&hub, &ann, &chat, "@carl:hub.test and you?").await;
    assert_eq!(next_mine(&mut carls).await["message"]["id"], direct.as_str(), "carl heard of the crew's call first");
    assert_eq!(counts(&hub, &bob, &chat).await.1, 1, "bob's mentions: the role's");
    let unknown = hub.gql(Some(&ann), POST, json!({ "c": chat, "b": "@&11111111111111111111111 hi" })).await;
    assert!(unknown.get("errors").is_none(), "a word that is no role id is just text: {unknown}");
    let stranger_role = format!("@&{}", openguild_domain::RoleId::from_bytes([7; 16]));
    let refused = hub.gql(Some(&ann), POST, json!({ "c": chat, "b": format!("{stranger_role} hi") })).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "INVALID_INPUT", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("not a role of this guild"), "{refused}");

    // Bob mutes the channel: mentions there no longer reach him; his DM still does.
    let level = "mutation($g: ID, $c: ID, $l: NotificationLevel) { setNotificationLevel(guildId: $g, channelId: $c, level: $l) }";
    hub.ok(Some(&bob), level, json!({ "g": null, "c": chat, "l": "NONE" })).await;
    post(&hub, &ann, &chat, "@bob:hub.test are you there?").await;
    let dm = hub.ok(Some(&ann), "mutation { openDm(userIds: [\"@bob:hub.test\"]) { id } }", json!({})).await;
    let dm = dm["openDm"]["id"].as_str().unwrap().to_owned();
    let psst = post(&hub, &ann, &dm, "psst").await;
    let heard = next_mine(&mut bobs).await;
    assert_eq!(heard["message"]["id"], psst.as_str(), "the muted channel's mention came through: {heard}");
    let levels =
        "query($g: ID!, $c: ID!) { guild(id: $g) { notificationLevel } channel(id: $c) { notificationLevel } }";
    let seen = hub.ok(Some(&bob), levels, json!({ "g": guild, "c": chat })).await;
    assert_eq!(seen, json!({ "guild": { "notificationLevel": "ALL" }, "channel": { "notificationLevel": "NONE" } }));
    // The channel back to its guild's level, the guild to mentions only.
    hub.ok(Some(&bob), level, json!({ "g": null, "c": chat, "l": null })).await;
    hub.ok(Some(&bob), level, json!({ "g": guild, "c": null, "l": "MENTIONS" })).await;
    let seen = hub.ok(Some(&bob), levels, json!({ "g": guild, "c": chat })).await;
    assert_eq!(seen["channel"]["notificationLevel"], "MENTIONS");
    let both = hub.gql(Some(&bob), level, json!({ "g": guild, "c": chat, "l": "ALL" })).await;
    assert_eq!(both["errors"][0]["extensions"]["code"], "INVALID_INPUT", "{both}");
}
