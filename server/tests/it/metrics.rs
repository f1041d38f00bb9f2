//! `/metrics` as Prometheus reads it: parsed by an OpenMetrics parser (the format the server
//! says it serves), after a session that moves every metric an operator watches a hub by;
//! and every metric the Grafana dashboard (`ops/grafana/openguild.json`) and the alert rules
//! (`ops/prometheus/alerts.yml`) name is one the server exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use openmetrics_parser::{MetricFamily, OpenMetricsType, OpenMetricsValue};
use serde_json::{Value, json};

use crate::support::{Server, Ws};

type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

/// One scrape of `/metrics`, parsed.
struct Scrape {
    families: std::collections::HashMap<String, Family>,
    text: String,
}

impl Scrape {
    async fn of(server: &Server) -> Scrape {
        let response = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        let text = response.text().await.unwrap();
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e:?}\n{text}"));
        Scrape { families: parsed.families, text }
    }

    /// The family `name` (as declared: a counter without `_total`), of type `ty`.
    fn family(&self, name: &str, ty: OpenMetricsType) -> &Family {
        let family = self.families.get(name).unwrap_or_else(|| panic!("no {name} in\n{}", self.text));
        assert_eq!(family.family_type, ty, "{name}");
        family
    }

    /// The value of the series of `name` with exactly `labels`: a counter's total, a gauge's
    /// value, a histogram's count.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = self.families.get(name).unwrap_or_else(|| panic!("no {name} in\n{}", self.text));
        family
            .iter_samples()
            .find(|s| {
                let set = s.get_labelset().unwrap();
                let mut have: Vec<(&str, &str)> = set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut want = labels.to_vec();
                have.sort_unstable();
                want.sort_unstable();
                have == want
            })
            .map(|s| match &s.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) => g.as_f64(),
                OpenMetricsValue::Histogram(h) => h.count.unwrap_or_default() as f64,
                other => panic!("{name}: unexpected {other:?}"),
            })
    }

    /// [`Scrape::value`], failing the test when there is no such series.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    /// Every sample name a query can use: a gauge's name, a counter's `_total`, a
    /// histogram's `_bucket`, `_sum` and `_count`.
    fn sample_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, family) in &self.families {
            let suffixes: &[&str] = match family.family_type {
                OpenMetricsType::Counter => &["_total"],
                OpenMetricsType::Histogram => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
        names
    }
}

const ALLOW_PEER: &str = "mutation($n: String!, $u: String!) { allowPeer(name: $n, url: $u) { name } }";

const CHANNEL_EVENTS: &str =
    "subscription($c: ID!) { channelEvents(channelId: $c) { cursor kind message { id body } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_session_did() {
    let dir = tempfile::tempdir().unwrap();
    // Two registrations from one address, then a refusal.
    let server = Server::start(dir.path(), "[api.limits]\nregistrations_per_address = 2.0\n", &[]);
    let ann = server.register("ann").await;
    let bob = server.register("bob").await;
    let register = "mutation { register(handle: \"cat\", password: \"correct horse\") { token } }";
    let (code, err) = server.refused(None, register, json!({})).await;
    assert_eq!(code, "RATE_LIMITED", "{err}");

    let g = server.ok(Some(&ann), "mutation { createGuild(input: {name: \"Co-op\"}) { id } }", json!({})).await;
    let guild = g["createGuild"]["id"].as_str().unwrap().to_owned();
    let create = "mutation($g: ID!) { createChannel(input: {guildId: $g, name: \"general\", kind: TEXT}) { id } }";
    let c = server.ok(Some(&ann), create, json!({ "g": guild })).await;
    let channel = c["createChannel"]["id"].as_str().unwrap().to_owned();
    // A named query, and a refusal with a code: Bob is no operator.
    server.ok(Some(&ann), "query Whoami { me { id } }", json!({})).await;
    let allow = ALLOW_PEER;
    let peer = json!({ "n": "hub-b.test", "u": "http://127.0.0.1:9" });
    let (code, err) = server.refused(Some(&bob), allow, peer.clone()).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    // Ann is (the first account on a fresh hub is its operator): a peer with a queue.
    server.ok(Some(&ann), allow, peer).await;

    // Ann follows the channel; the subscription is registered once a ping after it returns.
    let mut ws = Ws::connect(&server.ws_url(), &ann).await;
    ws.subscribe("s", CHANNEL_EVENTS, json!({ "c": channel })).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.unwrap()["type"], "pong");
    let send = "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"hello\"}) { id } }";
    server.ok(Some(&ann), send, json!({ "c": channel })).await;
    let delivered = ws.next().await.unwrap();
    assert_eq!(delivered["payload"]["data"]["channelEvents"]["kind"], "MESSAGE_POSTED", "{delivered}");

    let m = Scrape::of(&server).await;
    // Appends, by kind, and their latency.
    m.family("openguild_appends", OpenMetricsType::Counter);
    assert_eq!(m.get("openguild_appends", &[("kind", "message.posted")]), 1.0);
    assert_eq!(m.get("openguild_appends", &[("kind", "guild.created")]), 1.0);
    assert_eq!(m.get("openguild_appends", &[("kind", "channel.created")]), 1.0);
    m.family("openguild_append_duration_seconds", OpenMetricsType::Histogram);
    assert!(m.get("openguild_append_duration_seconds", &[]) >= 4.0, "two accounts, a guild, a channel, a post");

    // GraphQL operations by type and name (an anonymous one by its root field), their
    // latency, and errors by code.
    m.family("openguild_graphql_operations", OpenMetricsType::Counter);
    let op = |ty: &'static str, name: &'static str| [("type", ty), ("operation", name)];
    assert_eq!(m.get("openguild_graphql_operations", &op("mutation", "register")), 3.0);
    assert_eq!(m.get("openguild_graphql_operations", &op("mutation", "sendMessage")), 1.0);
    assert_eq!(m.get("openguild_graphql_operations", &op("mutation", "allowPeer")), 2.0);
    assert_eq!(m.get("openguild_graphql_operations", &op("query", "Whoami")), 1.0);
    assert_eq!(m.get("openguild_graphql_operations", &op("subscription", "channelEvents")), 1.0);
    m.family("openguild_graphql_operation_duration_seconds", OpenMetricsType::Histogram);
    assert_eq!(m.get("openguild_graphql_operation_duration_seconds", &op("mutation", "sendMessage")), 1.0);
    m.family("openguild_graphql_errors", OpenMetricsType::Counter);
    assert_eq!(m.get("openguild_graphql_errors", &[("code", "RATE_LIMITED")]), 1.0);
    assert_eq!(m.get("openguild_graphql_errors", &[("code", "FORBIDDEN")]), 1.0);

    // The websocket, its subscription, the delivery and its lag.
    m.family("openguild_websocket_connections", OpenMetricsType::Gauge);
    assert_eq!(m.get("openguild_websocket_connections", &[]), 1.0);
    m.family("openguild_subscriptions_active", OpenMetricsType::Gauge);
    assert_eq!(m.get("openguild_subscriptions_active", &[]), 1.0);
    m.family("openguild_live_deliveries", OpenMetricsType::Counter);
    assert_eq!(m.get("openguild_live_deliveries", &[("what", "event")]), 1.0);
    m.family("openguild_fanout_lag_seconds", OpenMetricsType::Histogram);
    assert_eq!(m.get("openguild_fanout_lag_seconds", &[]), 1.0);

    // The refusal, and the password hashes: two ran (the refused registration hashed
    // nothing), none waits or runs now.
    m.family("openguild_refused", OpenMetricsType::Counter);
    assert_eq!(m.get("openguild_refused", &[("what", "register")]), 1.0);
    m.family("openguild_password_hashes", OpenMetricsType::Counter);
    assert_eq!(m.get("openguild_password_hashes", &[]), 2.0);
    m.family("openguild_password_hashes_waiting", OpenMetricsType::Gauge);
    assert_eq!(m.get("openguild_password_hashes_waiting", &[]), 0.0);
    m.family("openguild_password_hashes_running", OpenMetricsType::Gauge);
    assert_eq!(m.get("openguild_password_hashes_running", &[]), 0.0);

    // The process, from /proc/self.
    m.family("openguild_process_resident_memory_bytes", OpenMetricsType::Gauge);
    let rss = m.get("openguild_process_resident_memory_bytes", &[]);
    assert!((1e6..1e10).contains(&rss), "{rss} bytes resident");
    m.family("openguild_process_open_fds", OpenMetricsType::Gauge);
    let fds = m.get("openguild_process_open_fds", &[]);
    // At least stdin, stdout, stderr, the listener, the SQLite files and this websocket.
    assert!(fds >= 6.0, "{fds} open files");
    assert!(m.get("openguild_process_max_fds", &[]) >= fds);

    // The peer's federation queue, and what /metrics had before.
    m.family("openguild_federation_queue_depth", OpenMetricsType::Gauge);
    assert_eq!(m.get("openguild_federation_queue_depth", &[("peer", "hub-b.test")]), 0.0);
    m.family("openguild_federation_proposals_queued", OpenMetricsType::Gauge);
    assert_eq!(m.get("openguild_federation_proposals_queued", &[("peer", "hub-b.test")]), 0.0);
    m.family("openguild_federation_transactions", OpenMetricsType::Counter);
    m.get("openguild_federation_transactions", &[("peer", "hub-b.test"), ("outcome", "failed")]);
    m.family("openguild_federation_events_refused", OpenMetricsType::Counter);
    assert_eq!(m.get("openguild_federation_events_refused", &[("reason", "signature")]), 0.0);
    assert!(m.get("openguild_store_head_position", &[]) >= 6.0);
    for projection in ["directory", "timeline", "federation_outbox"] {
        assert_eq!(m.get("openguild_projection_stopped", &[("projection", projection)]), 0.0);
        m.get("openguild_projection_lag", &[("projection", projection)]);
    }

    // Closed, the socket and its subscription are counted no more.
    ws.socket.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = Scrape::of(&server).await;
        let open = (m.get("openguild_websocket_connections", &[]), m.get("openguild_subscriptions_active", &[]));
        if open == (0.0, 0.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still counted open 10 s after the close: {open:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A family with labels shows once it has a series (Prometheus's way): those whose values are
/// known show at 0 from the start, and a short session makes the others (an account, a
/// refusal, a peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_name_only_metrics_the_server_exports() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "", &[]);
    let ann = server.register("ann").await;
    let (code, err) =
        server.refused(None, "mutation { createGuild(input: {name: \"Co-op\"}) { id } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "{err}");
    server.ok(Some(&ann), ALLOW_PEER, json!({ "n": "hub-b.test", "u": "http://127.0.0.1:9" })).await;
    let exported = Scrape::of(&server).await.sample_names();

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("ops/grafana/openguild.json")).unwrap())
            .expect("ops/grafana/openguild.json is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| !p.is_empty()), "a dashboard with panels");
    let mut queries = Vec::new();
    strings_under(&dashboard, "expr", &mut queries);
    // The node picker's query too.
    strings_under(&dashboard, "definition", &mut queries);
    assert!(queries.len() >= 10, "the dashboard's queries: {queries:#?}");

    let alerts = yaml(&root().join("ops/prometheus/alerts.yml"));
    let rules: Vec<&Value> = alerts["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert!(rules.len() >= 7, "{rules:#?}");
    for rule in &rules {
        for field in ["alert", "expr"] {
            assert!(rule[field].is_string(), "a rule without {field}: {rule}");
        }
        assert!(rule["labels"]["severity"].is_string(), "a rule without a severity: {rule}");
        assert!(rule["annotations"]["summary"].is_string(), "a rule without a summary: {rule}");
        queries.push(rule["expr"].as_str().unwrap().to_owned());
    }

    let mut named = BTreeSet::new();
    for query in &queries {
        let metrics = metric_names(query);
        assert!(!metrics.is_empty(), "a query that names no openguild metric: {query}");
        named.extend(metrics);
    }
    let missing: Vec<&String> = named.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "named by ops/ but not exported: {missing:?}\nexported: {exported:#?}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A YAML file, as JSON (PyYAML, as the ops tests read the compose file).
fn yaml(path: &Path) -> Value {
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(path)
        .output()
        .expect("python3 (with PyYAML: scripts/ensure-services installs it)");
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every string under a key `key`, anywhere in `value`.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// The `openguild_…` metric names a PromQL expression uses.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("openguild_") {
        let preceded = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if !preceded {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}
