//! Hub operators, service tokens and provisioning (the first slice of the identity issue):
//! the first account runs the hub, guild owners gain no hub powers, a service token does
//! what its scope allows and nothing else, and a revoked one is refused on the next request.

use serde_json::json;

use crate::support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_service_tokens_and_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "", &[]);
    let root = server.register("root").await;
    let owner = server.register("owner").await;

    // The first account of a fresh hub is its operator; the second is not.
    let ops = server.ok(Some(&owner), "{ hubOperators { id } }", json!({})).await;
    assert_eq!(ops["hubOperators"], json!([{ "id": "@root:hub.test" }]));

    // A guild owner (every guild permission) still has no hub power.
    let g = server.ok(Some(&owner), "mutation { createGuild(input: {name: \"Mine\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let create = "mutation($n: String!, $h: Boolean, $g: [ID!]) { createServiceToken(name: $n, hub: $h, guildIds: $g) { id token hub guildIds } }";
    let (code, err) = server.refused(Some(&owner), create, json!({ "n": "sneaky", "h": true })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    let (code, _) =
        server.refused(Some(&owner), "mutation { grantOperator(userId: \"@owner:hub.test\") }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");
    let (code, _) = server.refused(Some(&owner), "{ serviceTokens { id } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");

    // The operator creates a hub-wide token and a token scoped to one guild.
    let made = server.ok(Some(&root), create, json!({ "n": "events app", "h": true })).await;
    let hub_token = made["createServiceToken"]["token"].as_str().unwrap().to_owned();
    let hub_token_id = made["createServiceToken"]["id"].as_str().unwrap().to_owned();
    assert!(hub_token.starts_with("ogs_"));
    let scoped = server.ok(Some(&root), create, json!({ "n": "one guild", "g": [guild] })).await;
    let guild_token = scoped["createServiceToken"]["token"].as_str().unwrap().to_owned();
    let listed = server.ok(Some(&root), "{ serviceTokens { id name token lastUsedAt createdAt } }", json!({})).await;
    assert_eq!(listed["serviceTokens"].as_array().unwrap().len(), 2);
    assert!(listed["serviceTokens"].as_array().unwrap().iter().all(|t| t["token"].is_null()), "secrets are shown once");
    assert!(
        listed["serviceTokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["lastUsedAt"].is_null() && t["createdAt"].is_string()),
        "not used yet: {listed}"
    );

    // Provisioning: the same external id is the same user, forever.
    let ensure =
        "mutation($x: String!, $h: String!) { ensureUser(externalId: $x, handle: $h, displayName: \"Dee\") { id } }";
    let first = server.ok(Some(&hub_token), ensure, json!({ "x": "crm-42", "h": "dee" })).await;
    assert_eq!(first["ensureUser"]["id"], "@dee:hub.test");
    let again = server.ok(Some(&hub_token), ensure, json!({ "x": "crm-42", "h": "someone-else" })).await;
    assert_eq!(again["ensureUser"]["id"], "@dee:hub.test", "idempotent by external id");
    let (code, _) = server.refused(Some(&hub_token), ensure, json!({ "x": "crm-43", "h": "owner" })).await;
    assert_eq!(code, "CONFLICT", "a taken handle is refused, not taken over");

    // Backfill: what exists is returned, what is missing is made, a clash is reported in place.
    let backfill = "mutation($u: [BackfillUser!]!) { backfillUsers(users: $u) { externalId userId error } }";
    let users = json!([
        { "externalId": "crm-42", "handle": "ignored" },
        { "externalId": "crm-50", "handle": "fifty" },
        { "externalId": "crm-51", "handle": "owner" },
    ]);
    let filled = server.ok(Some(&hub_token), backfill, json!({ "u": users })).await;
    let rows = filled["backfillUsers"].as_array().unwrap();
    assert_eq!(rows[0]["userId"], "@dee:hub.test");
    assert_eq!(rows[1]["userId"], "@fifty:hub.test");
    assert!(rows[2]["userId"].is_null() && rows[2]["error"].as_str().unwrap().contains("taken"), "{filled}");

    let used = server.ok(Some(&root), "{ serviceTokens { name lastUsedAt } }", json!({})).await;
    let events_app = used["serviceTokens"].as_array().unwrap().iter().find(|t| t["name"] == "events app").unwrap();
    assert!(events_app["lastUsedAt"].as_str().is_some_and(|t| t.starts_with("20")), "{used}");

    // A session issued for the provisioned user works as a login would.
    let issue = "mutation($u: ID!) { issueUserSession(userId: $u) { token user { id } } }";
    let session = server.ok(Some(&hub_token), issue, json!({ "u": "@dee:hub.test" })).await;
    let dee = session["issueUserSession"]["token"].as_str().unwrap().to_owned();
    for not_provisioned in ["@root:hub.test", "@owner:hub.test"] {
        let (code, err) = server.refused(Some(&hub_token), issue, json!({ "u": not_provisioned })).await;
        assert_eq!(code, "FORBIDDEN", "no session for {not_provisioned}: {err}");
    }
    let me = server.ok(Some(&dee), "{ me { id handle } }", json!({})).await;
    assert_eq!(me["me"]["handle"], "dee");

    // A guild-scoped token cannot act hub-wide.
    let (code, err) = server.refused(Some(&guild_token), ensure, json!({ "x": "crm-44", "h": "eve" })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    let (code, _) = server.refused(Some(&guild_token), issue, json!({ "u": "@dee:hub.test" })).await;
    assert_eq!(code, "FORBIDDEN");

    // Guilds and channels by the host application's ids; a token touches only its guilds.
    let ensure_guild = "mutation { ensureGuild(externalId: \"ev-1\", name: \"Events\") { id name } }";
    let events = server.ok(Some(&hub_token), ensure_guild, json!({})).await["ensureGuild"]["id"].clone();
    assert_eq!(server.ok(Some(&hub_token), ensure_guild, json!({})).await["ensureGuild"]["id"], events, "idempotent");
    let scoped_here = server.ok(Some(&root), create, json!({ "n": "events only", "g": [events] })).await;
    let events_token = scoped_here["createServiceToken"]["token"].as_str().unwrap().to_owned();
    let ensure_channel = "mutation($g: ID!, $x: String!, $a: String) { ensureChannel(guildId: $g, externalId: $x, name: \"general\", alias: $a) { id alias } }";
    let vars = json!({ "g": events, "x": "ch-1", "a": "#events-general:hub.test" });
    let made = server.ok(Some(&events_token), ensure_channel, vars.clone()).await;
    assert_eq!(made["ensureChannel"]["alias"], "#events-general:hub.test");
    assert_eq!(
        server.ok(Some(&events_token), ensure_channel, vars.clone()).await["ensureChannel"]["id"],
        made["ensureChannel"]["id"]
    );
    let (code, err) = server.refused(Some(&guild_token), ensure_channel, vars.clone()).await;
    assert_eq!(code, "FORBIDDEN", "a token scoped to another guild: {err}");
    assert!(err["message"].as_str().unwrap().contains("\"one guild\" is not scoped to guild"), "{err}");
    // Without any token the answer is the same refusal a person gets: it needs a service token.
    let (code, err) = server.refused(None, ensure_channel, vars.clone()).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(err["message"].as_str().unwrap().contains("needs a service token"), "{err}");
    let (code, _) = server
        .refused(
            Some(&events_token),
            ensure_channel,
            json!({ "g": events, "x": "ch-2", "a": "#events-general:hub.test" }),
        )
        .await;
    assert_eq!(code, "CONFLICT", "aliases are unique on the hub");
    let (code, _) =
        server.refused(Some(&events_token), ensure_channel, json!({ "g": events, "x": "ch-3", "a": "general" })).await;
    assert_eq!(code, "INVALID_INPUT");
    let by_alias = server
        .ok(Some(&owner), "{ channelByAlias(alias: \"#events-general:hub.test\") { id guildId } }", json!({}))
        .await;
    assert_eq!(by_alias["channelByAlias"]["id"], made["ensureChannel"]["id"]);

    // Revoked: refused from the next request on.
    server.ok(Some(&root), "mutation($i: String!) { revokeServiceToken(id: $i) }", json!({ "i": hub_token_id })).await;
    let (code, _) = server.refused(Some(&hub_token), ensure, json!({ "x": "crm-42", "h": "dee" })).await;
    assert_eq!(code, "UNAUTHENTICATED");
    // And the events say who did what.
    let ops = server.ok(Some(&root), "mutation { grantOperator(userId: \"@owner:hub.test\") }", json!({})).await;
    assert_eq!(ops["grantOperator"], true);
    let ops = server.ok(Some(&owner), "{ hubOperators { id } }", json!({})).await;
    assert_eq!(ops["hubOperators"].as_array().unwrap().len(), 2);
}

fn openguild(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let _ = std::fs::OpenOptions::new().create(true).append(true).open(data.join("none.toml"));
    std::process::Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(args)
        .env("OPENGUILD_DATA_DIR", data)
        .env("OPENGUILD_SERVER_NAME", "hub.test")
        .env("OPENGUILD_CONFIG", data.join("none.toml"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_grants_operators_and_creates_service_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::write(data.join("none.toml"), "").unwrap();
    let out = openguild(data, &["operators", "add", "@boss:hub.test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = openguild(data, &["tokens", "create-service", "--name", "crm", "--scope", "hub"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ogs_"), "only the token goes to stdout: {token:?}");
    let out = openguild(data, &["tokens", "create-service", "--name", "bad", "--scope", "nonsense"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected `hub` or a guild id"));

    let server = Server::start(data, "", &[]);
    let ops = server.ok(Some(&token), "{ hubOperators { id } }", json!({})).await;
    assert_eq!(ops["hubOperators"], json!([{ "id": "@boss:hub.test" }]));
    let made = server
        .ok(Some(&token), "mutation { ensureUser(externalId: \"e-1\", handle: \"provisioned\") { id } }", json!({}))
        .await;
    assert_eq!(made["ensureUser"]["id"], "@provisioned:hub.test");
    // The hub already has an operator: the first account does not become one.
    let first = server.register("first").await;
    let ops = server.ok(Some(&first), "{ hubOperators { id } }", json!({})).await;
    assert_eq!(ops["hubOperators"].as_array().unwrap().len(), 1);

    // On the embedded default the server holds the store: the CLI says so, and writes nothing.
    let out = openguild(data, &["operators", "add", "@first:hub.test"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_act_only_in_their_guild_and_creators_are_granted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "[api]\nguild_creation = \"creators\"\n", &[]);
    let root = server.register("root").await;
    let admin = server.register("admin").await;
    let member = server.register("member").await;

    // Only creators (and operators) create guilds here.
    let create = "mutation($n: String!) { createGuild(input: {name: $n}) { id } }";
    let (code, err) = server.refused(Some(&admin), create, json!({ "n": "nope" })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(err["message"].as_str().unwrap().contains("creators"), "{err}");
    let (code, _) =
        server.refused(Some(&admin), "mutation { grantCreator(userId: \"@admin:hub.test\") }", json!({})).await;
    assert_eq!(code, "FORBIDDEN", "nobody grants themselves");
    server.ok(Some(&root), "mutation { grantCreator(userId: \"@admin:hub.test\") }", json!({})).await;
    let mine = server.ok(Some(&admin), create, json!({ "n": "Bots' home" })).await;
    let home = mine["createGuild"]["id"].as_str().unwrap().to_owned();
    let other = server.ok(Some(&root), create, json!({ "n": "Elsewhere" })).await;
    let elsewhere = other["createGuild"]["id"].as_str().unwrap().to_owned();
    let invite = "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }";
    let home_code = server.ok(Some(&admin), invite, json!({ "g": home })).await["createInvite"]["code"].clone();
    let away_code = server.ok(Some(&root), invite, json!({ "g": elsewhere })).await["createInvite"]["code"].clone();
    server.ok(Some(&member), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": home_code })).await;

    // A guild admin (the owner) has no hub powers: every hub operator mutation is refused.
    for (query, vars) in [
        ("mutation { grantOperator(userId: \"@admin:hub.test\") }", json!({})),
        ("mutation { grantCreator(userId: \"@member:hub.test\") }", json!({})),
        ("mutation { createServiceToken(name: \"x\", hub: true) { id } }", json!({})),
        ("mutation { revokeServiceToken(id: \"0011223344556677\") }", json!({})),
        ("mutation { ensureUser(externalId: \"x\", handle: \"xx\") { id } }", json!({})),
        ("mutation { issueUserSession(userId: \"@member:hub.test\") { token } }", json!({})),
    ] {
        let (code, err) = server.refused(Some(&admin), query, vars).await;
        assert!(code == "FORBIDDEN" || code == "NOT_FOUND", "{query}: {err}");
    }

    // Only those who manage the guild make bots.
    let make = "mutation($g: ID!, $h: String!) { createBot(guildId: $g, handle: $h) { user { id } token } }";
    let (code, _) = server.refused(Some(&member), make, json!({ "g": home, "h": "sneakybot" })).await;
    assert_eq!(code, "FORBIDDEN");
    let bot = server.ok(Some(&admin), make, json!({ "g": home, "h": "helper-bot" })).await;
    let token = bot["createBot"]["token"].as_str().unwrap().to_owned();

    // The bot works in its guild...
    let channel = server
        .ok(
            Some(&admin),
            "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"c\", kind: TEXT}) { id } }",
            json!({ "g": home }),
        )
        .await["createChannel"]["id"]
        .clone();
    let send = "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"beep\"}) { author { id } } }";
    let sent = server.ok(Some(&token), send, json!({ "c": channel })).await;
    assert_eq!(sent["sendMessage"]["author"]["id"], "@helper-bot:hub.test");
    // ...and nowhere else: it cannot join, create, or reach another guild.
    let (code, err) = server
        .refused(Some(&token), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": away_code }))
        .await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    let (code, _) = server.refused(Some(&token), create, json!({ "n": "bot land" })).await;
    assert_eq!(code, "FORBIDDEN");
    let (code, _) =
        server.refused(Some(&token), "query($g: ID!) { guild(id: $g) { name } }", json!({ "g": elsewhere })).await;
    assert_eq!(code, "NOT_FOUND");
    let (code, _) = server.refused(Some(&token), make, json!({ "g": home, "h": "botbot" })).await;
    assert_eq!(code, "FORBIDDEN");

    // Its admins see it, with when it was last used.
    let bots = server
        .ok(
            Some(&admin),
            "query($g: ID!) { bots(guildId: $g) { user { id } lastUsedAt liveTokens } }",
            json!({ "g": home }),
        )
        .await;
    assert_eq!(bots["bots"][0]["user"]["id"], "@helper-bot:hub.test");
    assert!(bots["bots"][0]["lastUsedAt"].is_string(), "{bots}");
    assert_eq!(bots["bots"][0]["liveTokens"], 1);
    let (code, _) = server
        .refused(Some(&member), "query($g: ID!) { bots(guildId: $g) { user { id } } }", json!({ "g": home }))
        .await;
    assert_eq!(code, "FORBIDDEN");

    // Revoked: the next request is refused.
    server
        .ok(
            Some(&admin),
            "mutation($g: ID!) { revokeBotTokens(guildId: $g, botId: \"@helper-bot:hub.test\") }",
            json!({ "g": home }),
        )
        .await;
    let (code, _) = server.refused(Some(&token), send, json!({ "c": channel })).await;
    assert_eq!(code, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_application_syncs_roles_from_its_trust_levels() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[api.level_roles]]\nmin = 0\nrole = \"Newcomer\"\n[[api.level_roles]]\nmin = 5\nrole = \"Member\"\n\
                  [[api.level_roles]]\nmin = 15\nrole = \"Regular\"\n[[api.level_roles]]\nmin = 30\nrole = \"Trusted\"\n";
    let server = Server::start(dir.path(), config, &[]);
    let root = server.register("root").await;
    let made =
        server.ok(Some(&root), "mutation { createServiceToken(name: \"crm\", hub: true) { token } }", json!({})).await;
    let app = made["createServiceToken"]["token"].as_str().unwrap().to_owned();
    let guild = server
        .ok(Some(&app), "mutation { ensureGuild(externalId: \"club\", name: \"Club\") { id } }", json!({}))
        .await["ensureGuild"]["id"]
        .clone();
    let mut roles = std::collections::HashMap::new();
    for name in ["Newcomer", "Member", "Regular", "Trusted", "Volunteer"] {
        let r = server
            .ok(
                Some(&app),
                "mutation($g: ID!, $n: String!) { ensureRole(guildId: $g, name: $n) { id } }",
                json!({ "g": guild, "n": name }),
            )
            .await;
        roles.insert(name, r["ensureRole"]["id"].as_str().unwrap().to_owned());
    }
    let user = server
        .ok(Some(&app), "mutation { ensureUser(externalId: \"u-1\", handle: \"fan\") { id } }", json!({}))
        .await["ensureUser"]["id"]
        .clone();
    let names = |ids: &serde_json::Value| -> std::collections::BTreeSet<String> {
        ids.as_array()
            .unwrap()
            .iter()
            .map(|id| roles.iter().find(|(_, v)| v.as_str() == id.as_str().unwrap()).unwrap().0.to_string())
            .collect()
    };
    // Exactly these roles (the user is added to the guild on the way).
    let set = "mutation($g: ID!, $u: ID!, $r: [ID!]!) { syncMemberRoles(guildId: $g, userId: $u, roleIds: $r, reason: \"crm sync\") }";
    let now = server.ok(Some(&app), set, json!({ "g": guild, "u": user, "r": [roles["Volunteer"]] })).await;
    assert_eq!(names(&now["syncMemberRoles"]), ["Volunteer".to_owned()].into());
    // Levels move the mapped role and leave the others alone.
    let level = "mutation($g: ID!, $u: ID!, $l: Int!) { syncMemberLevel(guildId: $g, userId: $u, level: $l) }";
    for (l, expected) in [(7, "Member"), (31, "Trusted"), (15, "Regular"), (0, "Newcomer")] {
        let now = server.ok(Some(&app), level, json!({ "g": guild, "u": user, "l": l })).await;
        assert_eq!(names(&now["syncMemberLevel"]), [expected.to_owned(), "Volunteer".to_owned()].into(), "level {l}");
    }
    // Every change is a signed event of the guild, with its reason, by the service identity.
    let out = openguild(
        dir.path(),
        &["events", "tail", "--stream", &format!("guild:{}", guild.as_str().unwrap()), "-n", "100"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let changes: Vec<&str> =
        text.lines().filter(|l| l.contains("role.assigned") || l.contains("role.unassigned")).collect();
    assert_eq!(changes.len(), 8, "1 + 1 + 2 + 2 + 2 role changes:\n{text}");
    assert!(changes.iter().all(|l| l.contains("@_services:hub.test")), "{text}");
    assert!(changes.iter().any(|l| l.contains("crm sync")) && changes.iter().any(|l| l.contains("level 31")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_operators_act_in_any_guild_and_both_logs_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "", &[]);
    let root = server.register("root").await;
    let owner = server.register("owner").await;
    let troll = server.register("troll").await;
    let g = server.ok(Some(&owner), "mutation { createGuild(input: {name: \"G\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let code = server
        .ok(Some(&owner), "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }", json!({ "g": guild }))
        .await["createInvite"]["code"]
        .clone();
    server.ok(Some(&troll), "mutation($c: String!) { joinGuild(code: $c) { id } }", json!({ "c": code })).await;

    // The guild's owner cannot use hub powers, not even on their own guild.
    for (query, vars) in [
        ("mutation($g: ID!) { hubArchiveGuild(guildId: $g, reason: \"mine\") }", json!({ "g": guild })),
        ("mutation { hubBanUser(userId: \"@troll:hub.test\", reason: \"x\") }", json!({})),
        ("{ hubOperatorLog { kind } }", json!({})),
    ] {
        let (code, err) = server.refused(Some(&owner), query, vars).await;
        assert_eq!(code, "FORBIDDEN", "{query}: {err}");
    }

    // A hub-wide ban: the user's session stops working, and the guild bans them too.
    server
        .ok(Some(&root), "mutation { hubBanUser(userId: \"@troll:hub.test\", reason: \"spam everywhere\") }", json!({}))
        .await;
    // Repeating it (as after a partial failure) is harmless.
    server
        .ok(Some(&root), "mutation { hubBanUser(userId: \"@troll:hub.test\", reason: \"spam everywhere\") }", json!({}))
        .await;
    let (code, err) = server.refused(Some(&troll), "{ me { id } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(err["message"].as_str().unwrap().contains("banned from this hub"), "{err}");
    let bans = server
        .ok(
            Some(&owner),
            "query($g: ID!) { guild(id: $g) { bans { user { id } reason by { id } } } }",
            json!({ "g": guild }),
        )
        .await;
    assert_eq!(
        bans["guild"]["bans"][0],
        json!({ "user": { "id": "@troll:hub.test" }, "reason": "spam everywhere", "by": { "id": "@root:hub.test" } })
    );

    // Archiving any guild: read-only at once.
    server
        .ok(
            Some(&root),
            "mutation($g: ID!) { hubArchiveGuild(guildId: $g, reason: \"abandoned\") }",
            json!({ "g": guild }),
        )
        .await;
    let (code, _) = server
        .refused(
            Some(&owner),
            "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }",
            json!({ "g": guild }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");

    // Both acts are in the guild's audit log and in the hub's.
    let audit = server
        .ok(
            Some(&owner),
            "query($g: ID!) { auditLog(guildId: $g) { edges { node { kind actor reason } } } }",
            json!({ "g": guild }),
        )
        .await;
    let kinds: Vec<(String, String)> = audit["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["actor"] == "@root:hub.test")
        .map(|e| (e["node"]["kind"].as_str().unwrap().to_owned(), e["node"]["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("guild.archived".to_owned(), "abandoned".to_owned()),
            ("member.banned".to_owned(), "spam everywhere".to_owned())
        ]
    );
    let log = server.ok(Some(&root), "{ hubOperatorLog { guildId kind reason } }", json!({})).await;
    assert_eq!(
        log["hubOperatorLog"],
        json!([
            { "guildId": guild, "kind": "guild.archived", "reason": "abandoned" },
            { "guildId": guild, "kind": "member.banned", "reason": "spam everywhere" },
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_guild_is_read_only_and_its_bodies_are_erased_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    // Retention 0 days, checked every second: the erasure follows the archive at once.
    let server = Server::start(dir.path(), "[api]\nretention_days = 0\nretention_sweep_seconds = 1\n", &[]);
    let root = server.register("root").await;
    let app = server
        .ok(Some(&root), "mutation { createServiceToken(name: \"app\", hub: true) { token } }", json!({}))
        .await["createServiceToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let guild = server
        .ok(Some(&app), "mutation { ensureGuild(externalId: \"old\", name: \"Old\") { id } }", json!({}))
        .await["ensureGuild"]["id"]
        .clone();
    let channel = server
        .ok(
            Some(&app),
            "mutation($g: ID!) { ensureChannel(guildId: $g, externalId: \"c\", name: \"c\") { id } }",
            json!({ "g": guild }),
        )
        .await["ensureChannel"]["id"]
        .clone();
    let user = server
        .ok(Some(&app), "mutation { ensureUser(externalId: \"p\", handle: \"poster\") { id } }", json!({}))
        .await["ensureUser"]["id"]
        .clone();
    server
        .ok(
            Some(&app),
            "mutation($g: ID!, $u: ID!) { syncMemberRoles(guildId: $g, userId: $u, roleIds: []) }",
            json!({ "g": guild, "u": user }),
        )
        .await;
    let session = server
        .ok(Some(&app), "mutation($u: ID!) { issueUserSession(userId: $u) { token } }", json!({ "u": user }))
        .await;
    let poster = session["issueUserSession"]["token"].as_str().unwrap().to_owned();
    let send = "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"the secret plan\"}) { id } }";
    server.ok(Some(&poster), send, json!({ "c": channel })).await;

    // A channel archived alone: read-only at once, its text erased after retention.
    let side = server
        .ok(
            Some(&app),
            "mutation($g: ID!) { ensureChannel(guildId: $g, externalId: \"side\", name: \"side\") { id } }",
            json!({ "g": guild }),
        )
        .await["ensureChannel"]["id"]
        .clone();
    // A private channel is hidden from members without an overwrite letting them in.
    let hidden = server
        .ok(
            Some(&app),
            "mutation($g: ID!) { ensureChannel(guildId: $g, externalId: \"staff\", name: \"staff\", private: true) { id } }",
            json!({ "g": guild }),
        )
        .await["ensureChannel"]["id"]
        .clone();
    let (code, _) =
        server.refused(Some(&poster), "query($c: ID!) { channel(id: $c) { name } }", json!({ "c": hidden })).await;
    assert_eq!(code, "NOT_FOUND");
    let side_send = "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"side note\"}) { id } }";
    server.ok(Some(&poster), side_send, json!({ "c": side })).await;
    server
        .ok(Some(&app), "mutation($c: ID!) { archiveChannel(channelId: $c, reason: \"done\") }", json!({ "c": side }))
        .await;
    let (code, _) = server.refused(Some(&poster), side_send, json!({ "c": side })).await;
    assert_eq!(code, "FORBIDDEN");
    let side_history = "query($c: ID!) { channel(id: $c) { messages(last: 5) { edges { node { body } } } } }";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let h = server.ok(Some(&poster), side_history, json!({ "c": side })).await;
        if h["channel"]["messages"]["edges"][0]["node"]["body"].is_null() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "channel bodies not erased: {h}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The guild's other channel is untouched until the guild itself is archived.
    let kept = server.ok(Some(&poster), side_history, json!({ "c": channel })).await;
    assert_eq!(kept["channel"]["messages"]["edges"][0]["node"]["body"], "the secret plan");

    server
        .ok(
            Some(&app),
            "mutation($g: ID!) { archiveGuild(guildId: $g, reason: \"season over\") }",
            json!({ "g": guild }),
        )
        .await;
    let (code, err) = server.refused(Some(&poster), send, json!({ "c": channel })).await;
    assert_eq!(code, "FORBIDDEN", "read-only at once: {err}");

    // Within a few sweeps the text is gone from history and search...
    let history = "query($c: ID!) { channel(id: $c) { messages(last: 5) { edges { node { body } } } } }";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let h = server.ok(Some(&poster), history, json!({ "c": channel })).await;
        if h["channel"]["messages"]["edges"][0]["node"]["body"].is_null() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bodies not erased: {h}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let found = server
        .ok(
            Some(&poster),
            "query($g: ID!) { search(guildId: $g, query: \"secret\") { edges { cursor } } }",
            json!({ "g": guild }),
        )
        .await;
    assert_eq!(found["search"]["edges"], json!([]));
    // ...and from the event store, whose events still verify.
    let out = openguild(dir.path(), &["events", "tail", "--stream", &format!("channel:{}", channel.as_str().unwrap())]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"erased\":true") && !text.contains("secret plan"), "{text}");
    let verify = openguild(dir.path(), &["events", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
