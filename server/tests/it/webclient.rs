//! What the web client needs from the server, over real HTTP against a real `openguild
//! serve`: its files from `ui_dir` (the page for client-side routes, caching, gzip, the
//! not-built page, no way out of the directory), and the GraphQL it uses to manage a guild
//! (invites, roles, channels, categories, overwrites, its own membership, unread markers,
//! the live cursor), each with a refusal.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, Ws};

/// Lifts the mutation rate limit: these tests make many changes in a row.
const UNLIMITED: &str = "[api.limits]\nmutations_per_second = 1000.0\nmutation_burst = 1000.0\n";

const INDEX: &str = "<!doctype html><title>OpenGuild</title><div id=app></div>";

/// A built client: index.html (and a gzipped copy), a hashed script (and a gzipped copy),
/// a favicon. The `.gz` files hold marker bytes, not real gzip: the server must pass them
/// through untouched, and the client used here does not decompress.
fn built_client(dist: &Path) {
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("index.html.gz"), b"GZ-INDEX").unwrap();
    std::fs::write(dist.join("assets/app.3f2a.js"), "console.log('hi')").unwrap();
    std::fs::write(dist.join("assets/app.3f2a.js.gz"), b"GZ-SCRIPT").unwrap();
    std::fs::write(dist.join("favicon.svg"), "<svg/>").unwrap();
}

async fn get(url: &str, gzip: bool) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if gzip {
        req = req.header("accept-encoding", "gzip, deflate");
    }
    req.send().await.unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A raw request line, as a client that does not normalise `..` would send it.
async fn raw_get(server: &Server, target: &str) -> String {
    let addr = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_client_is_served_with_its_routes_caching_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    built_client(&dist);
    std::fs::write(dir.path().join("secret.txt"), "do not serve me").unwrap();
    let server = Server::start(&dir.path().join("data"), "", &[("OPENGUILD_UI_DIR", dist.to_str().unwrap())]);

    // `/` and any client-side route get index.html, revalidated on every load.
    for path in ["/", "/invite/abc", "/channels/G/C", "/settings/"] {
        let res = get(&format!("{}{path}", server.url), false).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
        assert!(header(&res, "content-type").starts_with("text/html"), "{path}");
        assert_eq!(res.text().await.unwrap(), INDEX, "{path}");
    }
    // Other files are themselves.
    let res = get(&format!("{}/favicon.svg", server.url), false).await;
    assert_eq!((res.status().as_u16(), header(&res, "content-type")), (200, "image/svg+xml"));
    assert_eq!(header(&res, "cache-control"), "no-cache");

    // Hashed assets are cached for good.
    let res = get(&format!("{}/assets/app.3f2a.js", server.url), false).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable");
    assert!(header(&res, "content-type").contains("javascript"), "{:?}", res.headers());
    assert_eq!(header(&res, "content-encoding"), "");
    assert_eq!(res.text().await.unwrap(), "console.log('hi')");

    // A client that accepts gzip gets the precompressed sibling, labelled so.
    let res = get(&format!("{}/assets/app.3f2a.js", server.url), true).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), "gzip");
    assert!(header(&res, "content-type").contains("javascript"), "{:?}", res.headers());
    assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable");
    assert!(header(&res, "vary").to_ascii_lowercase().contains("accept-encoding"));
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"GZ-SCRIPT");
    let res = get(&format!("{}/invite/abc", server.url), true).await;
    assert_eq!((header(&res, "content-encoding"), header(&res, "cache-control")), ("gzip", "no-cache"));
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"GZ-INDEX");

    // A missing asset is a 404, not the page (a browser wanted a script there).
    let res = get(&format!("{}/assets/gone.js", server.url), false).await;
    assert_eq!(res.status(), 404);

    // The API's own paths keep answering as the API: a miss is a 404 with a code.
    for path in ["/graphql/nope", "/auth/nope", "/_openguild/federation/v9/x", "/healthz/x", "/metrics/x"] {
        let res = get(&format!("{}{path}", server.url), false).await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}");
    }
    assert_eq!(get(&format!("{}/healthz", server.url), false).await.text().await.unwrap(), "ok");
    let post = reqwest::Client::new().post(format!("{}/invite/abc", server.url)).send().await.unwrap();
    assert_eq!(post.status(), 404, "only GET and HEAD reach the client's files");

    // No spelling of `..` leaves the directory.
    for target in ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/assets/../../secret.txt"] {
        let response = raw_get(&server, target).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{target}: {response}");
        assert!(!response.contains("do not serve me"), "{target}: {response}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_built_client_the_root_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("dist");
    std::fs::create_dir_all(&empty).unwrap();
    let server = Server::start(&dir.path().join("data"), "", &[("OPENGUILD_UI_DIR", empty.to_str().unwrap())]);
    for path in ["/", "/invite/abc"] {
        let res = get(&format!("{}{path}", server.url), false).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "cache-control"), "no-cache");
        let page = res.text().await.unwrap();
        assert!(page.contains("not built") && page.contains("make ui") && page.contains("npm run build"), "{page}");
    }
    assert_eq!(get(&format!("{}/graphql/nope", server.url), false).await.status(), 404);
    assert_eq!(get(&format!("{}/assets/app.js", server.url), false).await.status(), 404);
    // The API is unaffected.
    server.register("ann").await;

    // Building the client while the server runs needs no restart.
    built_client(&empty);
    let res = get(&format!("{}/invite/abc", server.url), false).await;
    assert_eq!(res.text().await.unwrap(), INDEX);
}

/// Ann's guild with a #general channel; Bob joined it with an invite and holds no role.
struct Setup {
    server: Server,
    ann: String,
    bob: String,
    guild: String,
    general: String,
    invite: String,
    _dir: tempfile::TempDir,
}

async fn guild() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), UNLIMITED, &[]);
    let ann = server.register("ann").await;
    let bob = server.register("bob").await;
    let g = server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Co-op\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let general = create_channel(&server, &ann, &guild, "general").await;
    let i = server
        .ok(Some(&ann), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await;
    let invite = i["createInvite"]["code"].as_str().unwrap().to_owned();
    server.ok(Some(&bob), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": invite })).await;
    Setup { server, ann, bob, guild, general, invite, _dir: dir }
}

async fn create_channel(server: &Server, token: &str, guild: &str, name: &str) -> String {
    let c = server
        .ok(
            Some(token),
            "mutation($g: ID!, $n: String!) { createChannel(input: {guildId: $g, name: $n, kind: TEXT}) { id } }",
            json!({ "g": guild, "n": name }),
        )
        .await;
    c["createChannel"]["id"].as_str().unwrap().to_owned()
}

async fn create_role(server: &Server, token: &str, guild: &str, name: &str) -> String {
    let r = server
        .ok(
            Some(token),
            "mutation($g: ID!, $n: String!) { createRole(input: {guildId: $g, name: $n, permissions: []}) { id } }",
            json!({ "g": guild, "n": name }),
        )
        .await;
    r["createRole"]["id"].as_str().unwrap().to_owned()
}

async fn expect_refusal(server: &Server, token: Option<&str>, query: &str, variables: Value, code: &str) {
    let (got, err) = server.refused(token, query, variables).await;
    assert_eq!(got, code, "{query}\n{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_and_roles_are_managed_from_the_client() {
    let Setup { server, ann, bob, guild, invite, .. } = guild().await;

    // revokeInvite: not Bob's invite, and he lacks MANAGE_GUILD; Ann made it.
    let revoke = "mutation($g: ID!, $c: String!) { revokeInvite(guildId: $g, code: $c) }";
    expect_refusal(&server, Some(&bob), revoke, json!({ "g": guild, "c": invite }), "FORBIDDEN").await;
    assert_eq!(server.ok(Some(&ann), revoke, json!({ "g": guild, "c": invite })).await["revokeInvite"], true);
    let invites =
        server.ok(Some(&ann), "query($g: ID!) { guild(id: $g) { invites { code } } }", json!({ "g": guild })).await;
    assert_eq!(invites["guild"]["invites"], json!([]));
    expect_refusal(&server, Some(&ann), revoke, json!({ "g": guild, "c": invite }), "NOT_FOUND").await;
    let cat = server.register("cat").await;
    let join = "mutation($c: String!) { joinGuild(code: $c) { id } }";
    expect_refusal(&server, Some(&cat), join, json!({ "c": invite }), "NOT_FOUND").await;

    // reorderRoles: given lowest first, answered highest first as Guild.roles.
    let low = create_role(&server, &ann, &guild, "low").await;
    let high = create_role(&server, &ann, &guild, "high").await;
    let reorder = "mutation($g: ID!, $r: [ID!]!) { reorderRoles(guildId: $g, roleIds: $r) { id name position } }";
    let roles = server.ok(Some(&ann), reorder, json!({ "g": guild, "r": [low, high] })).await;
    let names: Vec<&str> =
        roles["reorderRoles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["high", "low", "@everyone"]);
    assert_eq!(roles["reorderRoles"][0]["position"], 2);
    let listed =
        server.ok(Some(&ann), "query($g: ID!) { guild(id: $g) { roles { id } } }", json!({ "g": guild })).await;
    let ids: Vec<&Value> = roles["reorderRoles"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
    let listed: Vec<&Value> = listed["guild"]["roles"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, listed);
    expect_refusal(&server, Some(&bob), reorder, json!({ "g": guild, "r": [high, low] }), "FORBIDDEN").await;
    expect_refusal(&server, Some(&ann), reorder, json!({ "g": guild, "r": [high] }), "INVALID_INPUT").await;
    expect_refusal(&server, Some(&ann), reorder, json!({ "g": guild, "r": ["not a role"] }), "INVALID_INPUT").await;

    // deleteRole.
    let delete = "mutation($g: ID!, $r: ID!) { deleteRole(guildId: $g, roleId: $r) }";
    expect_refusal(&server, Some(&bob), delete, json!({ "g": guild, "r": low }), "FORBIDDEN").await;
    assert_eq!(server.ok(Some(&ann), delete, json!({ "g": guild, "r": low })).await["deleteRole"], true);
    expect_refusal(&server, Some(&ann), delete, json!({ "g": guild, "r": low }), "NOT_FOUND").await;
    let everyone = roles["reorderRoles"][2]["id"].clone();
    expect_refusal(&server, Some(&ann), delete, json!({ "g": guild, "r": everyone }), "INVALID_INPUT").await;
    let left =
        server.ok(Some(&ann), "query($g: ID!) { guild(id: $g) { roles { name } } }", json!({ "g": guild })).await;
    assert_eq!(left["guild"]["roles"], json!([{ "name": "high" }, { "name": "@everyone" }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_categories_are_managed_from_the_client() {
    let Setup { server, ann, bob, guild, general, .. } = guild().await;

    // updateChannel.
    let update = "mutation($c: ID!, $n: String, $t: String) { updateChannel(channelId: $c, name: $n, topic: $t) \
                  { id name topic } }";
    let updated = server.ok(Some(&ann), update, json!({ "c": general, "t": "say hi" })).await;
    assert_eq!(updated["updateChannel"], json!({ "id": general, "name": "general", "topic": "say hi" }));
    let updated = server.ok(Some(&ann), update, json!({ "c": general, "n": "lobby" })).await;
    assert_eq!(
        (updated["updateChannel"]["name"].as_str(), updated["updateChannel"]["topic"].as_str()),
        (Some("lobby"), Some("say hi"))
    );
    expect_refusal(&server, Some(&bob), update, json!({ "c": general, "n": "mine" }), "FORBIDDEN").await;

    // Categories: create, update, and moving channels into one.
    let created = server
        .ok(
            Some(&ann),
            "mutation($g: ID!) { createCategory(input: {guildId: $g, name: \"Rooms\"}) { id name position } }",
            json!({ "g": guild }),
        )
        .await;
    let category = created["createCategory"]["id"].as_str().unwrap().to_owned();
    let update_category = "mutation($g: ID!, $k: ID!, $n: String, $p: Int) { updateCategory(guildId: $g, \
                           categoryId: $k, name: $n, position: $p) { id name position } }";
    let renamed = server.ok(Some(&ann), update_category, json!({ "g": guild, "k": category, "n": "Voice" })).await;
    assert_eq!(renamed["updateCategory"], json!({ "id": category, "name": "Voice", "position": 0 }));
    let moved = server.ok(Some(&ann), update_category, json!({ "g": guild, "k": category, "p": 3 })).await;
    assert_eq!(moved["updateCategory"], json!({ "id": category, "name": "Voice", "position": 3 }));
    expect_refusal(&server, Some(&bob), update_category, json!({ "g": guild, "k": category, "n": "x" }), "FORBIDDEN")
        .await;

    let second = create_channel(&server, &ann, &guild, "second").await;
    let move_channel = "mutation($c: ID!, $k: ID, $p: Int) { moveChannel(channelId: $c, categoryId: $k, position: $p) \
                        { id categoryId position } }";
    let m = server.ok(Some(&ann), move_channel, json!({ "c": general, "k": category })).await;
    assert_eq!(m["moveChannel"], json!({ "id": general, "categoryId": category, "position": 0 }));
    // No position: after the last channel already in the category.
    let m = server.ok(Some(&ann), move_channel, json!({ "c": second, "k": category })).await;
    assert_eq!(m["moveChannel"], json!({ "id": second, "categoryId": category, "position": 1 }));
    let m = server.ok(Some(&ann), move_channel, json!({ "c": general, "k": category, "p": 5 })).await;
    assert_eq!(m["moveChannel"]["position"], 5);
    let order =
        server.ok(Some(&ann), "query($g: ID!) { guild(id: $g) { channels { id } } }", json!({ "g": guild })).await;
    assert_eq!(order["guild"]["channels"], json!([{ "id": second }, { "id": general }]));
    expect_refusal(&server, Some(&bob), move_channel, json!({ "c": general, "k": null }), "FORBIDDEN").await;
    // A well-formed id that names no category (a channel's).
    expect_refusal(&server, Some(&ann), move_channel, json!({ "c": general, "k": second }), "NOT_FOUND").await;
    expect_refusal(&server, Some(&ann), move_channel, json!({ "c": general, "p": -1 }), "INVALID_INPUT").await;

    // deleteCategory: its channels stay, uncategorised.
    let delete_category = "mutation($g: ID!, $k: ID!) { deleteCategory(guildId: $g, categoryId: $k) }";
    expect_refusal(&server, Some(&bob), delete_category, json!({ "g": guild, "k": category }), "FORBIDDEN").await;
    let done = server.ok(Some(&ann), delete_category, json!({ "g": guild, "k": category })).await;
    assert_eq!(done["deleteCategory"], true);
    let left = server
        .ok(
            Some(&ann),
            "query($g: ID!) { guild(id: $g) { categories { id } channels { categoryId } } }",
            json!({ "g": guild }),
        )
        .await;
    assert_eq!(left["guild"]["categories"], json!([]));
    assert_eq!(left["guild"]["channels"], json!([{ "categoryId": null }, { "categoryId": null }]));
    expect_refusal(&server, Some(&ann), delete_category, json!({ "g": guild, "k": category }), "NOT_FOUND").await;

    // deleteChannel.
    let delete = "mutation($c: ID!) { deleteChannel(channelId: $c) }";
    expect_refusal(&server, Some(&bob), delete, json!({ "c": second }), "FORBIDDEN").await;
    assert_eq!(server.ok(Some(&ann), delete, json!({ "c": second })).await["deleteChannel"], true);
    let gone = "query($c: ID!) { channel(id: $c) { id } }";
    expect_refusal(&server, Some(&ann), gone, json!({ "c": second }), "NOT_FOUND").await;
    expect_refusal(&server, Some(&ann), delete, json!({ "c": second }), "NOT_FOUND").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_membership_unread_markers_and_the_live_cursor() {
    let Setup { server, ann, bob, guild, general, .. } = guild().await;

    // Channel.overwrites: for those who may change them; an empty list for the others.
    let role = create_role(&server, &ann, &guild, "helpers").await;
    let set = "mutation($c: ID!, $r: ID, $u: ID, $a: [Permission!]!, $d: [Permission!]!) { \
               setChannelOverwrite(channelId: $c, roleId: $r, userId: $u, allow: $a, deny: $d) }";
    server
        .ok(Some(&ann), set, json!({ "c": general, "r": role, "a": ["SEND_MESSAGES"], "d": ["ADD_REACTIONS"] }))
        .await;
    server.ok(Some(&ann), set, json!({ "c": general, "u": "@bob:hub.test", "a": [], "d": ["ATTACH_FILES"] })).await;
    let overwrites = "query($c: ID!) { channel(id: $c) { overwrites { roleId userId allow deny } } }";
    let seen = server.ok(Some(&ann), overwrites, json!({ "c": general })).await;
    let mut list = seen["channel"]["overwrites"].as_array().unwrap().clone();
    list.sort_by_key(|o| o["roleId"].is_null());
    assert_eq!(
        list,
        [
            json!({ "roleId": role, "userId": null, "allow": ["SEND_MESSAGES"], "deny": ["ADD_REACTIONS"] }),
            json!({ "roleId": null, "userId": "@bob:hub.test", "allow": [], "deny": ["ATTACH_FILES"] }),
        ]
    );
    let hidden = server.ok(Some(&bob), overwrites, json!({ "c": general })).await;
    assert_eq!(hidden["channel"]["overwrites"], json!([]));

    // Guild.me: the viewer's own membership, timeout included.
    let assign = "mutation($g: ID!, $r: ID!) { assignRole(guildId: $g, userId: \"@bob:hub.test\", roleId: $r) }";
    server.ok(Some(&ann), assign, json!({ "g": guild, "r": role })).await;
    let me = "query($g: ID!) { guild(id: $g) { me { user { id } roles nickname timedOutUntil } } }";
    let bob_me = server.ok(Some(&bob), me, json!({ "g": guild })).await;
    assert_eq!(
        bob_me["guild"]["me"],
        json!({ "user": { "id": "@bob:hub.test" }, "roles": [role], "nickname": null, "timedOutUntil": null })
    );
    let ann_me = server.ok(Some(&ann), me, json!({ "g": guild })).await;
    assert_eq!(ann_me["guild"]["me"]["user"]["id"], "@ann:hub.test");
    let cat = server.register("cat").await;
    expect_refusal(&server, Some(&cat), me, json!({ "g": guild }), "NOT_FOUND").await;

    // Member.online on one node without Redis: a member with a websocket open is online,
    // and stops being so when it closes.
    let presence = "query($g: ID!) { guild(id: $g) { members { nodes { user { id } online } } } }";
    let online = |v: &Value, user: &str| {
        v["guild"]["members"]["nodes"].as_array().unwrap().iter().find(|m| m["user"]["id"] == user).unwrap()["online"]
            .clone()
    };
    let before = server.ok(Some(&ann), presence, json!({ "g": guild })).await;
    assert_eq!(online(&before, "@bob:hub.test"), json!(false), "{before}");
    let socket = Ws::connect(&server.ws_url(), &bob).await;
    let during = server.ok(Some(&ann), presence, json!({ "g": guild })).await;
    assert_eq!(online(&during, "@bob:hub.test"), json!(true), "{during}");
    assert_eq!(online(&during, "@ann:hub.test"), json!(false), "{during}");
    // Presence is worked out only when asked for, in every shape it can be asked in.
    let edges = "query($g: ID!) { guild(id: $g) { members { edges { node { user { id } online } } } } }";
    let by_edges = server.ok(Some(&ann), edges, json!({ "g": guild })).await;
    let bob_edge = by_edges["guild"]["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["user"]["id"] == "@bob:hub.test")
        .unwrap()
        .clone();
    assert_eq!(bob_edge["node"]["online"], json!(true), "{by_edges}");
    let own = "query($g: ID!) { guild(id: $g) { me { online } } }";
    let bob_me = server.ok(Some(&bob), own, json!({ "g": guild })).await;
    assert_eq!(bob_me["guild"]["me"]["online"], json!(true), "{bob_me}");
    drop(socket);
    let mut gone = false;
    for _ in 0..50 {
        let after = server.ok(Some(&ann), presence, json!({ "g": guild })).await;
        if online(&after, "@bob:hub.test") == json!(false) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "bob is still online after closing his only socket");

    // Channel.lastMessageCursor, alone and for the whole channel list at once.
    let quiet = create_channel(&server, &ann, &guild, "quiet").await;
    let last = "query($c: ID!) { channel(id: $c) { lastMessageCursor } }";
    let all = "query($g: ID!) { guild(id: $g) { channels { id lastMessageCursor } } }";
    assert_eq!(server.ok(Some(&bob), last, json!({ "c": general })).await["channel"]["lastMessageCursor"], Value::Null);
    let send = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id cursor } }";
    let first = server.ok(Some(&bob), send, json!({ "c": general, "b": "one" })).await["sendMessage"].clone();
    let second = server.ok(Some(&bob), send, json!({ "c": general, "b": "two" })).await["sendMessage"].clone();
    assert_eq!(
        server.ok(Some(&bob), last, json!({ "c": general })).await["channel"]["lastMessageCursor"],
        second["cursor"]
    );
    let listed = server.ok(Some(&bob), all, json!({ "g": guild })).await;
    assert_eq!(
        listed["guild"]["channels"],
        json!([
            { "id": general, "lastMessageCursor": second["cursor"] },
            { "id": quiet, "lastMessageCursor": null },
        ])
    );
    // A deleted message is no longer news.
    server.ok(Some(&bob), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": second["id"] })).await;
    assert_eq!(
        server.ok(Some(&bob), last, json!({ "c": general })).await["channel"]["lastMessageCursor"],
        first["cursor"]
    );
    let listed = server.ok(Some(&bob), all, json!({ "g": guild })).await;
    assert_eq!(listed["guild"]["channels"][0]["lastMessageCursor"], first["cursor"]);
    // A channel Bob cannot see has no cursor for him: it is not found.
    let hide = json!({ "c": quiet, "u": "@bob:hub.test", "a": [], "d": ["VIEW_CHANNEL"] });
    server.ok(Some(&ann), set, hide).await;
    expect_refusal(&server, Some(&bob), last, json!({ "c": quiet }), "NOT_FOUND").await;
    let listed = server.ok(Some(&bob), all, json!({ "g": guild })).await;
    assert_eq!(listed["guild"]["channels"].as_array().unwrap().len(), 1);

    // liveCursor: subscribe from it before loading history, and nothing is missed.
    expect_refusal(&server, None, "{ liveCursor }", json!({}), "UNAUTHENTICATED").await;
    let cursor = server.ok(Some(&bob), "{ liveCursor }", json!({})).await["liveCursor"].as_str().unwrap().to_owned();
    assert!(cursor.parse::<u64>().is_ok(), "{cursor}");
    let after =
        server.ok(Some(&ann), send, json!({ "c": general, "b": "after the cursor" })).await["sendMessage"].clone();
    let mut ws = Ws::connect(&server.ws_url(), &bob).await;
    ws.subscribe(
        "s",
        "subscription($c: ID!, $s: String) { channelEvents(channelId: $c, since: $s) { kind message { id } } }",
        json!({ "c": general, "s": cursor }),
    )
    .await;
    // Events between the cursor and the message may come first; the message must come.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let msg = ws.next().await.expect("the socket closed");
        assert_eq!(msg["type"], "next", "{msg}");
        seen.push(msg["payload"]["data"]["channelEvents"].clone());
        if seen.last().unwrap()["message"]["id"] == after["id"] {
            break;
        }
    }
    assert_eq!(seen.last().unwrap()["message"]["id"], after["id"], "{seen:#?}");

    // A timeout shows in Guild.me.
    let timeout = "mutation($g: ID!) { timeoutMember(guildId: $g, userId: \"@bob:hub.test\", seconds: 600) }";
    server.ok(Some(&ann), timeout, json!({ "g": guild })).await;
    let bob_me = server.ok(Some(&bob), me, json!({ "g": guild })).await;
    assert!(bob_me["guild"]["me"]["timedOutUntil"].is_string(), "{bob_me}");
}

/// Every report in the queue shows its message, also when several report the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_report_of_a_message_shows_it() {
    let Setup { server, ann, bob, guild, general, .. } = guild().await;
    let send = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let sent = server.ok(Some(&ann), send, json!({ "c": general, "b": "buy cheap watches" })).await;
    let report = "mutation($m: ID!, $r: String!) { reportMessage(messageId: $m, reason: $r) { id } }";
    for (who, why) in [(&bob, "spam"), (&ann, "spam, confirmed")] {
        server.ok(Some(who), report, json!({ "m": sent["sendMessage"]["id"], "r": why })).await;
    }
    let queue = "query($g: ID!) { reports(guildId: $g) { reason message { body } } }";
    let seen = server.ok(Some(&ann), queue, json!({ "g": guild })).await;
    let reports = seen["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{seen}");
    for r in reports {
        assert_eq!(r["message"]["body"], "buy cheap watches", "{seen}");
    }
}
