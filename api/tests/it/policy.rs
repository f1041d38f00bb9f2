//! Resolver policies, one small named test each, against the API in this process
//! (`spawn_app`): who may do what, and what a refusal says.

use serde_json::json;

use crate::app::{spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_another_members_message_needs_manage_messages() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let (_, channel, code) = app.guild(&ann).await;
    app.ok(Some(&bob), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": code })).await;
    let m = app
        .ok(
            Some(&ann),
            "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"mine\"}) { id } }",
            json!({ "c": channel }),
        )
        .await;
    let id = m["sendMessage"]["id"].as_str().unwrap();
    let (code, err) = app.refused(Some(&bob), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": id })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(err["message"].as_str().unwrap().contains("MANAGE_MESSAGES"), "the refusal names what is missing: {err}");
    app.ok(Some(&ann), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": id })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_wide_ban_needs_a_hub_operator_not_a_guild_owner() {
    let app = spawn_app().await;
    let _root = app.register("root").await; // the first account: the hub's operator
    let owner = app.register("owner").await;
    app.guild(&owner).await;
    let (code, err) = app
        .refused(Some(&owner), "mutation { hubBanUser(userId: \"@root:hub.test\", reason: \"coup\") }", json!({}))
        .await;
    assert_eq!(code, "FORBIDDEN", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_before_login_take_from_the_addresss_bucket() {
    let mut settings = openguild_api::ApiSettings::default();
    settings.limits.mutation_burst = 2.0;
    settings.limits.mutations_per_second = 0.01;
    let app = spawn_app_with(settings).await;
    let login = "mutation { login(handle: \"nobody\", password: \"wrong horse\") { token } }";
    for _ in 0..2 {
        let (code, _) = app.refused(None, login, json!({})).await;
        assert_eq!(code, "UNAUTHENTICATED");
    }
    let (code, err) = app.refused(None, login, json!({})).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_guild_id_is_not_found_and_leaves_nothing_cached() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let before = app.api.commands.cached();
    for i in 0..50 {
        let id = bs58_like(i);
        let (code, _) = app.refused(Some(&ann), "query($g: ID!) { guild(id: $g) { id } }", json!({ "g": id })).await;
        assert!(code == "NOT_FOUND" || code == "INVALID_INPUT", "{code}");
    }
    assert_eq!(app.api.commands.cached().0, before.0, "guilds that do not exist were cached");
}

/// A guild id of the right shape that names nothing.
fn bs58_like(i: u8) -> String {
    openguild_domain::GuildId::from_bytes([i; 16]).to_string()
}
