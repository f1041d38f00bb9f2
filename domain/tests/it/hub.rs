//! The hub's policy (`hub::policy`), given/when/then: for each rule, what every kind of
//! actor is told — an operator, a creator, a plain user, a bot, a hub-scoped service token,
//! a guild-scoped one, and the console. Then the peer allowlist the hub stream keeps
//! (`AllowPeer`, `DenyPeer`): who may change it, the URLs it takes, and how it folds.

use expect_test::{Expect, expect};
use openguild_domain::event::{self, UnsignedEvent};
use openguild_domain::hub::policy::{self, GuildCreation};
use openguild_domain::hub::{self, Hub, HubActor, HubCommand, PeerRule, TokenScope};
use openguild_domain::{DomainError, GuildId, StreamId};

use crate::support::{key, t, user};

fn hub_b() -> openguild_domain::ServerName {
    "hub-b.test".parse().unwrap()
}

/// The guild the guild-scoped token and the bot belong to.
fn home() -> GuildId {
    GuildId::from_bytes([7; 16])
}

fn elsewhere() -> GuildId {
    GuildId::from_bytes([8; 16])
}

/// Each kind of actor, by the name the tests use.
fn actor(who: &str) -> HubActor {
    let service = |name: &str, scope| HubActor::Service { name: name.into(), scopes: [scope].into() };
    match who {
        "operator" => HubActor::User(user("root")),
        "creator" => HubActor::User(user("carol")),
        "user" => HubActor::User(user("pat")),
        "bot" => HubActor::Bot { user: user("helper-bot"), guild: home() },
        "hub service" => service("crm", TokenScope::Hub),
        "guild service" => service("one guild", TokenScope::Guild(home())),
        "console" => HubActor::Console,
        _ => panic!("no actor {who:?}"),
    }
}

const ACTORS: [&str; 7] = ["operator", "creator", "user", "bot", "hub service", "guild service", "console"];

/// A hub as its events leave it: @root claimed it, made @carol a creator, and made two
/// service tokens; the host application provisioned @dee; @sso signed up through single
/// sign-on.
fn given() -> Hub {
    let root = user("root");
    let steps = [
        (HubActor::User(root.clone()), HubCommand::GrantOperator { user: root.clone() }),
        (HubActor::User(root.clone()), HubCommand::GrantCreator { user: user("carol") }),
        (
            HubActor::User(root.clone()),
            HubCommand::CreateServiceToken {
                token_hash: [1; 32],
                name: "crm".into(),
                scopes: [TokenScope::Hub].into(),
            },
        ),
        (
            HubActor::User(root.clone()),
            HubCommand::CreateServiceToken {
                token_hash: [2; 32],
                name: "one guild".into(),
                scopes: [TokenScope::Guild(home())].into(),
            },
        ),
        (actor("hub service"), HubCommand::LinkExternalUser { external_id: "crm-1".into(), user: user("dee") }),
        (
            HubActor::Console,
            HubCommand::LinkExternalUser { external_id: "oidc:https://id.test alice".into(), user: user("sso") },
        ),
    ];
    let mut state = Hub::default();
    for (who, cmd) in steps {
        state = run(state, &who, &cmd).unwrap();
    }
    state
}

/// `cmd` decided for `who` on `state`, its events signed and folded in: the hub after them.
fn run(state: Hub, who: &HubActor, cmd: &HubCommand) -> Result<Hub, DomainError> {
    let sender = who.user().cloned().unwrap_or_else(|| user("_services"));
    let mut state = state;
    for body in hub::decide(&state, who, cmd)? {
        let unsigned = UnsignedEvent {
            stream: StreamId::Hub,
            seq: state.version + 1,
            prev: state.head.into_iter().collect(),
            auth: vec![],
            sender: sender.clone(),
            ts: t(1_000_000),
            body,
        };
        state = hub::evolve(state, &event::sign(unsigned, &key()).unwrap().event);
    }
    Ok(state)
}

/// Given the hub, when `who` is asked about by `rule`, then the decision matches the snapshot.
fn check(who: &str, rule: impl Fn(&Hub, &HubActor) -> Result<(), DomainError>, expect: Expect) {
    let outcome = match rule(&given(), &actor(who)) {
        Ok(()) => "allowed".to_owned(),
        Err(e) => format!("refused: {e}  ({e:?})"),
    };
    expect.assert_eq(&outcome);
}

#[test]
fn the_seven_kinds_of_actor_each_rule_is_checked_for() {
    // Each rule below has one check per kind; this shows what each one is, once.
    let kinds: Vec<_> = ACTORS.iter().map(|who| format!("{who}: {:?}", actor(who))).collect();
    expect![[r#"
        operator: User(@root:hub.test)
        creator: User(@carol:hub.test)
        user: User(@pat:hub.test)
        bot: Bot { user: @helper-bot:hub.test, guild: sLDDSz4DCdAn1W1xf36N2 }
        hub service: Service { name: "crm", scopes: {Hub} }
        guild service: Service { name: "one guild", scopes: {Guild(sLDDSz4DCdAn1W1xf36N2)} }
        console: Console"#]]
    .assert_eq(&kinds.join("\n"));
}

#[test]
fn where_anyone_creates_guilds_bots_and_services_do_not() {
    let rule = |h: &Hub, a: &HubActor| policy::may_create_guild(h, a, GuildCreation::Anyone);
    check("operator", rule, expect!["allowed"]);
    check("creator", rule, expect!["allowed"]);
    check("user", rule, expect!["allowed"]);
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: a bot acts only in the guild it was made for; it cannot create guilds  (Forbidden(BotCreatesNoGuilds))"
        ],
    );
    check(
        "hub service",
        rule,
        expect![
            "refused: forbidden: a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity  (Forbidden(ServiceCreatesNoGuilds))"
        ],
    );
    check(
        "guild service",
        rule,
        expect![
            "refused: forbidden: a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity  (Forbidden(ServiceCreatesNoGuilds))"
        ],
    );
    check("console", rule, expect!["allowed"]);
}

#[test]
fn where_creators_create_guilds_operators_do_too() {
    let rule = |h: &Hub, a: &HubActor| policy::may_create_guild(h, a, GuildCreation::Creators);
    check("operator", rule, expect!["allowed"]);
    check("creator", rule, expect!["allowed"]);
    check(
        "user",
        rule,
        expect![
            "refused: forbidden: on this hub only creators may create guilds; ask a hub operator to make you one  (Forbidden(CreatorsOnly))"
        ],
    );
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: a bot acts only in the guild it was made for; it cannot create guilds  (Forbidden(BotCreatesNoGuilds))"
        ],
    );
    check(
        "hub service",
        rule,
        expect![
            "refused: forbidden: a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity  (Forbidden(ServiceCreatesNoGuilds))"
        ],
    );
    check(
        "guild service",
        rule,
        expect![
            "refused: forbidden: a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity  (Forbidden(ServiceCreatesNoGuilds))"
        ],
    );
    check("console", rule, expect!["allowed"]);
}

#[test]
fn where_operators_create_guilds_creators_do_not() {
    let rule = |h: &Hub, a: &HubActor| policy::may_create_guild(h, a, GuildCreation::Operators);
    check("operator", rule, expect!["allowed"]);
    check(
        "creator",
        rule,
        expect![
            "refused: forbidden: on this hub only hub operators create guilds; ask one of them to create it  (Forbidden(OperatorsCreateGuilds))"
        ],
    );
    check(
        "user",
        rule,
        expect![
            "refused: forbidden: on this hub only hub operators create guilds; ask one of them to create it  (Forbidden(OperatorsCreateGuilds))"
        ],
    );
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: a bot acts only in the guild it was made for; it cannot create guilds  (Forbidden(BotCreatesNoGuilds))"
        ],
    );
    check(
        "hub service",
        rule,
        expect![
            "refused: forbidden: a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity  (Forbidden(ServiceCreatesNoGuilds))"
        ],
    );
    check(
        "guild service",
        rule,
        expect![
            "refused: forbidden: a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity  (Forbidden(ServiceCreatesNoGuilds))"
        ],
    );
    check("console", rule, expect!["allowed"]);
}

#[test]
fn a_bot_made_an_operator_still_creates_no_guilds() {
    // Operator powers do not lift the bot's tie to its guild for guild creation.
    let mut hub = given();
    hub.operators.insert(user("helper-bot"));
    let bot = actor("bot");
    let outcome = policy::may_create_guild(&hub, &bot, GuildCreation::Anyone).unwrap_err();
    expect!["forbidden: a bot acts only in the guild it was made for; it cannot create guilds"]
        .assert_eq(&outcome.to_string());
}

#[test]
fn provisioning_users_and_guilds_needs_the_hub_scope_or_an_operator() {
    let rule = policy::may_provision;
    check("operator", rule, expect!["allowed"]);
    check(
        "creator",
        rule,
        expect![
            "refused: forbidden: only a hub operator or a service token with the hub scope can do this  (Forbidden(ProvisionersOnly))"
        ],
    );
    check(
        "user",
        rule,
        expect![
            "refused: forbidden: only a hub operator or a service token with the hub scope can do this  (Forbidden(ProvisionersOnly))"
        ],
    );
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: only a hub operator or a service token with the hub scope can do this  (Forbidden(ProvisionersOnly))"
        ],
    );
    check("hub service", rule, expect!["allowed"]);
    check(
        "guild service",
        rule,
        expect![[
            r#"refused: forbidden: this needs a service token with the hub scope; the service token "one guild" is scoped to guilds  (Forbidden(HubScopeNeeded { token: "one guild" }))"#
        ]],
    );
    check("console", rule, expect!["allowed"]);
}

#[test]
fn a_session_for_a_provisioned_user_is_issued_to_provisioners() {
    let rule = |h: &Hub, a: &HubActor| policy::may_issue_session(h, a, &user("dee"));
    check("operator", rule, expect!["allowed"]);
    check(
        "creator",
        rule,
        expect![
            "refused: forbidden: only a hub operator or a service token with the hub scope can do this  (Forbidden(ProvisionersOnly))"
        ],
    );
    check(
        "user",
        rule,
        expect![
            "refused: forbidden: only a hub operator or a service token with the hub scope can do this  (Forbidden(ProvisionersOnly))"
        ],
    );
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: only a hub operator or a service token with the hub scope can do this  (Forbidden(ProvisionersOnly))"
        ],
    );
    check("hub service", rule, expect!["allowed"]);
    check(
        "guild service",
        rule,
        expect![[
            r#"refused: forbidden: this needs a service token with the hub scope; the service token "one guild" is scoped to guilds  (Forbidden(HubScopeNeeded { token: "one guild" }))"#
        ]],
    );
    check("console", rule, expect!["allowed"]);
}

#[test]
fn no_session_is_issued_for_an_operator_a_sign_on_user_or_anyone_not_provisioned() {
    let for_user = |target: &'static str| move |h: &Hub, a: &HubActor| policy::may_issue_session(h, a, &user(target));
    check(
        "hub service",
        for_user("root"),
        expect![
            "refused: forbidden: @root:hub.test is a hub operator; sessions are never issued for operators, who log in themselves  (Forbidden(SessionForOperator(@root:hub.test)))"
        ],
    );
    check(
        "hub service",
        for_user("sso"),
        expect![
            "refused: forbidden: sessions can be issued only for users provisioned with ensureUser; @sso:hub.test is not one  (Forbidden(NotProvisioned(@sso:hub.test)))"
        ],
    );
    check(
        "hub service",
        for_user("pat"),
        expect![
            "refused: forbidden: sessions can be issued only for users provisioned with ensureUser; @pat:hub.test is not one  (Forbidden(NotProvisioned(@pat:hub.test)))"
        ],
    );
    check(
        "console",
        for_user("root"),
        expect![
            "refused: forbidden: @root:hub.test is a hub operator; sessions are never issued for operators, who log in themselves  (Forbidden(SessionForOperator(@root:hub.test)))"
        ],
    );
}

#[test]
fn acting_for_a_host_application_in_a_guild_needs_a_token_covering_it() {
    let rule = |_: &Hub, a: &HubActor| policy::may_provision_in(a, home());
    check(
        "operator",
        rule,
        expect![
            "refused: forbidden: this needs a service token whose scopes cover the guild; members use the guild's own mutations  (Forbidden(ServiceTokenOnly))"
        ],
    );
    check(
        "creator",
        rule,
        expect![
            "refused: forbidden: this needs a service token whose scopes cover the guild; members use the guild's own mutations  (Forbidden(ServiceTokenOnly))"
        ],
    );
    check(
        "user",
        rule,
        expect![
            "refused: forbidden: this needs a service token whose scopes cover the guild; members use the guild's own mutations  (Forbidden(ServiceTokenOnly))"
        ],
    );
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: this needs a service token whose scopes cover the guild; members use the guild's own mutations  (Forbidden(ServiceTokenOnly))"
        ],
    );
    check("hub service", rule, expect!["allowed"]);
    check("guild service", rule, expect!["allowed"]);
    check(
        "console",
        rule,
        expect![
            "refused: forbidden: this needs a service token whose scopes cover the guild; members use the guild's own mutations  (Forbidden(ServiceTokenOnly))"
        ],
    );
}

#[test]
fn a_guild_scoped_token_reaches_no_other_guild_a_hub_scoped_one_every_guild() {
    let rule = |_: &Hub, a: &HubActor| policy::may_provision_in(a, elsewhere());
    check(
        "guild service",
        rule,
        expect![[
            r#"refused: forbidden: the service token "one guild" is not scoped to guild zXExeyvPEHUk9rjXTu78T; use a token with the hub scope or one for this guild  (Forbidden(NotScopedTo { token: "one guild", guild: zXExeyvPEHUk9rjXTu78T }))"#
        ]],
    );
    check("hub service", rule, expect!["allowed"]);
}

#[test]
fn operator_powers_are_for_operators_and_the_console() {
    let rule = policy::may_act_as_operator;
    check("operator", rule, expect!["allowed"]);
    check(
        "creator",
        rule,
        expect![
            "refused: forbidden: only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators  (Forbidden(HubOperatorOnly))"
        ],
    );
    check(
        "user",
        rule,
        expect![
            "refused: forbidden: only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators  (Forbidden(HubOperatorOnly))"
        ],
    );
    check(
        "bot",
        rule,
        expect![
            "refused: forbidden: only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators  (Forbidden(HubOperatorOnly))"
        ],
    );
    check(
        "hub service",
        rule,
        expect![
            "refused: forbidden: only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators  (Forbidden(HubOperatorOnly))"
        ],
    );
    check(
        "guild service",
        rule,
        expect![
            "refused: forbidden: only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators  (Forbidden(HubOperatorOnly))"
        ],
    );
    check("console", rule, expect!["allowed"]);
}

#[test]
fn linking_external_ids_asks_the_same_rule_as_provisioning() {
    // `decide` and the API ask one rule: a guild-scoped token is told the same either way.
    let link = HubCommand::LinkExternalGuild { external_id: "ev-1".into(), guild: elsewhere() };
    let hub = given();
    for who in ACTORS {
        let decided = hub::decide(&hub, &actor(who), &link).err();
        assert_eq!(decided, policy::may_provision(&hub, &actor(who)).err(), "{who}");
    }
}

#[test]
fn guild_creation_reads_the_setting_as_configured() {
    // `api.guild_creation = "anyone" | "creators" | "operators"` keeps its spelling.
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, StrDeserializer};
    let read: Vec<_> = ["anyone", "creators", "operators", "everyone"]
        .into_iter()
        .map(|name| {
            let de: StrDeserializer<'_, Error> = name.into_deserializer();
            format!("{name}: {:?}", GuildCreation::deserialize(de))
        })
        .collect();
    expect![[r#"
        anyone: Ok(Anyone)
        creators: Ok(Creators)
        operators: Ok(Operators)
        everyone: Err(Error("unknown variant `everyone`, expected one of `anyone`, `creators`, `operators`"))"#]]
    .assert_eq(&read.join("\n"));
}

/// Given the hub, when `who` runs `cmd`, then the events it decides (kind and body), or the
/// refusal, match the snapshot.
fn check_cmd(hub: &Hub, who: &HubActor, cmd: &HubCommand, expect: Expect) {
    let outcome = match hub::decide(hub, who, cmd) {
        Ok(bodies) => bodies.iter().map(|b| format!("{} {b:?}", b.kind())).collect::<Vec<_>>().join("\n"),
        Err(e) => format!("refused: {e}"),
    };
    expect.assert_eq(&outcome);
}

#[test]
fn only_operators_and_the_console_allow_or_deny_a_peer() {
    let allow = HubCommand::AllowPeer { name: hub_b(), url: "https://hub-b.example/".into() };
    let deny = HubCommand::DenyPeer { name: hub_b() };
    let outcomes: Vec<String> = ACTORS
        .iter()
        .map(|who| {
            let said = |cmd| match hub::decide(&given(), &actor(who), cmd) {
                Ok(bodies) => format!("{:?}", bodies.iter().map(|b| b.kind()).collect::<Vec<_>>()),
                Err(e) => format!("{e:?}"),
            };
            format!("{who}: allow {}, deny {}", said(&allow), said(&deny))
        })
        .collect();
    expect![[r#"
        operator: allow ["hub.peer_allowed"], deny ["hub.peer_denied"]
        creator: allow Forbidden(HubOperatorOnly), deny Forbidden(HubOperatorOnly)
        user: allow Forbidden(HubOperatorOnly), deny Forbidden(HubOperatorOnly)
        bot: allow Forbidden(HubOperatorOnly), deny Forbidden(HubOperatorOnly)
        hub service: allow Forbidden(HubOperatorOnly), deny Forbidden(HubOperatorOnly)
        guild service: allow Forbidden(HubOperatorOnly), deny Forbidden(HubOperatorOnly)
        console: allow ["hub.peer_allowed"], deny ["hub.peer_denied"]"#]]
    .assert_eq(&outcomes.join("\n"));
    check_cmd(
        &given(),
        &actor("user"),
        &allow,
        expect![
            "refused: forbidden: only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators"
        ],
    );
}

#[test]
fn a_peer_is_allowed_at_an_https_url_or_plain_http_on_loopback_only() {
    let hub = given();
    let allow = |url: &str| HubCommand::AllowPeer { name: hub_b(), url: url.into() };
    let op = actor("operator");
    check_cmd(
        &hub,
        &op,
        &allow(" https://hub-b.example/base/ "),
        expect![[r#"hub.peer_allowed PeerAllowed { name: hub-b.test, url: "https://hub-b.example/base" }"#]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("http://127.0.0.1:18102"),
        expect![[r#"hub.peer_allowed PeerAllowed { name: hub-b.test, url: "http://127.0.0.1:18102" }"#]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("http://[::1]:9/"),
        expect![[r#"hub.peer_allowed PeerAllowed { name: hub-b.test, url: "http://[::1]:9" }"#]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("http://hub-b.example"),
        expect![[
            r#"refused: invalid url: the URL "http://hub-b.example" is plain HTTP to another machine; use https:// (http:// is for loopback only: 127.0.0.1, localhost, [::1])"#
        ]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("http://127.0.0.1.evil.example"),
        expect![[
            r#"refused: invalid url: the URL "http://127.0.0.1.evil.example" is plain HTTP to another machine; use https:// (http:// is for loopback only: 127.0.0.1, localhost, [::1])"#
        ]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("ftp://hub-b.example"),
        expect![[
            r#"refused: invalid url: the URL "ftp://hub-b.example" must start with https://; a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback (127.0.0.1, localhost, [::1])"#
        ]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("http://localhost@evil.example"),
        expect![[
            r#"refused: invalid url: the URL "http://localhost@evil.example" carries a user name or password; a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback (127.0.0.1, localhost, [::1])"#
        ]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("https://hub-b.example/?x=1"),
        expect![[
            r#"refused: invalid url: the URL "https://hub-b.example/?x=1" has a query or fragment; a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback (127.0.0.1, localhost, [::1])"#
        ]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("https://"),
        expect![[
            r#"refused: invalid url: the URL "https://" names no host; a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback (127.0.0.1, localhost, [::1])"#
        ]],
    );
    check_cmd(
        &hub,
        &op,
        &allow("https://hub b.example"),
        expect![[
            r#"refused: invalid url: the URL "https://hub b.example" contains spaces or control characters; a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback (127.0.0.1, localhost, [::1])"#
        ]],
    );
}

#[test]
fn the_latest_event_about_a_peer_decides_it_and_repeating_it_is_a_conflict() {
    let op = actor("operator");
    let allow = |url: &str| HubCommand::AllowPeer { name: hub_b(), url: url.into() };
    let deny = HubCommand::DenyPeer { name: hub_b() };
    let hub = run(given(), &op, &allow("https://hub-b.example")).unwrap();
    assert_eq!(hub.peers.get(&hub_b()), Some(&PeerRule::Allowed { url: "https://hub-b.example".into() }));
    check_cmd(
        &hub,
        &op,
        &allow("https://hub-b.example/"),
        expect!["refused: conflict: hub-b.test is already allowed at https://hub-b.example"],
    );
    // A new URL is a new event: the peer moved.
    let hub = run(hub, &op, &allow("https://b.example")).unwrap();
    assert_eq!(hub.peers.get(&hub_b()), Some(&PeerRule::Allowed { url: "https://b.example".into() }));
    let hub = run(hub, &HubActor::Console, &deny).unwrap();
    assert_eq!(hub.peers.get(&hub_b()), Some(&PeerRule::Denied));
    check_cmd(&hub, &op, &deny, expect!["refused: conflict: hub-b.test is already denied"]);
    // Allowed again after a deny: the latest word wins.
    let hub = run(hub, &op, &allow("https://b.example")).unwrap();
    assert_eq!(hub.peers.get(&hub_b()), Some(&PeerRule::Allowed { url: "https://b.example".into() }));
    // A name the hub stream never named may be denied: it may be a configured peer.
    let c: openguild_domain::ServerName = "hub-c.test".parse().unwrap();
    let hub = run(hub, &op, &HubCommand::DenyPeer { name: c.clone() }).unwrap();
    assert_eq!(hub.peers.get(&c), Some(&PeerRule::Denied));
    assert_eq!(hub.peers.len(), 2);
}
