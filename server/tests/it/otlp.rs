//! Trace export: a hub with `OPENGUILD_OTLP_ENDPOINT` sends its spans over OTLP/HTTP to a
//! collector, here a small receiver this test starts. One mutation's trace runs from the
//! HTTP request through the GraphQL operation and its resolver to the command and the
//! append that stored its event; and logs come as JSON lines on request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;

/// The spans received so far, flattened out of the OTLP/JSON requests.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Value>>>);

impl Collector {
    /// Listens on a free port for `POST /v1/traces`: its base URL.
    async fn start(&self) -> String {
        let spans = self.0.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let spans = spans.clone();
                async move {
                    let request: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
                    let mut found = Vec::new();
                    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                            found.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                        }
                    }
                    spans.lock().unwrap().extend(found);
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn spans(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

/// A span's attribute, as text.
fn attribute(span: &Value, key: &str) -> Option<String> {
    let a = span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let v = &a["value"];
    v["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v["intValue"].as_str().map(str::to_owned))
        .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mutations_trace_runs_from_the_request_to_the_append() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(
        dir.path(),
        "",
        &[
            ("OPENGUILD_OTLP_ENDPOINT", endpoint.as_str()),
            ("OPENGUILD_OTLP_PROTOCOL", "http/json"),
            // Batches leave every 200 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let ann = hub.register("ann").await;
    let (_, channel) = crate::shared::guild_with_channel(&hub, &ann, "Traced").await;
    let sent = hub
        .ok(
            Some(&ann),
            "mutation Post($c: ID!) { sendMessage(input: {channelId: $c, body: \"traced\"}) { id } }",
            json!({ "c": channel }),
        )
        .await;
    let id = sent["sendMessage"]["id"].as_str().unwrap().to_owned();

    // The append that stored the message names its event id; its ancestors are the rest.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (append, spans) = loop {
        let spans = collector.spans();
        if let Some(append) = spans
            .iter()
            .find(|s| s["name"] == "append" && attribute(s, "event_ids").is_some_and(|ids| ids.contains(&id)))
        {
            break (append.clone(), spans);
        }
        assert!(std::time::Instant::now() < deadline, "no append span naming {id} within 20 s: {} spans", spans.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let parent_of = |span: &Value| -> Value {
        let parent = span["parentSpanId"].as_str().unwrap_or_default().to_owned();
        assert!(!parent.is_empty(), "{} has no parent", span["name"]);
        // The parent may be exported in a later batch.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let all = collector.spans();
            if let Some(p) = all.iter().chain(&spans).find(|s| s["spanId"] == parent.as_str()) {
                return p.clone();
            }
            assert!(std::time::Instant::now() < deadline, "the parent of {} never arrived", span["name"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(attribute(&append, "kinds").is_some_and(|k| k.contains("message.posted")), "{append}");
    assert!(attribute(&append, "position").is_some_and(|p| p.parse::<u64>().unwrap() > 0), "{append}");
    let command = parent_of(&append);
    assert_eq!(command["name"], "command", "{command}");
    assert_eq!(attribute(&command, "stream").unwrap(), format!("channel:{channel}"));
    let resolver = parent_of(&command);
    assert_eq!(
        (resolver["name"].as_str(), attribute(&resolver, "field").as_deref()),
        (Some("resolver"), Some("sendMessage"))
    );
    let operation = parent_of(&resolver);
    assert_eq!(
        (operation["name"].as_str(), attribute(&operation, "operation").as_deref()),
        (Some("graphql"), Some("Post"))
    );
    let request = parent_of(&operation);
    assert_eq!((request["name"].as_str(), attribute(&request, "path").as_deref()), (Some("request"), Some("/graphql")));
    assert_eq!(attribute(&request, "status").as_deref(), Some("200"));
    for span in [&command, &resolver, &operation, &request] {
        assert_eq!(span["traceId"], append["traceId"], "one trace");
    }
    assert!(request["parentSpanId"].as_str().unwrap_or_default().is_empty(), "the request is the trace's root");
}

#[test]
fn logs_are_json_lines_on_request() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OPENGUILD_DATA_DIR", dir.path())
        .env("OPENGUILD_LOG_FORMAT", "json")
        .env("OPENGUILD_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line.contains("openguild ready on");
        lines.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.last().is_some_and(|l| l.contains("openguild ready on")), "{lines:#?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string() && v["fields"]["message"].is_string(), "{v}");
    }
    let ready: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(ready["fields"]["url"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{ready}");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["config", "show"])
        .env("OPENGUILD_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && said.contains("OPENGUILD_LOG_FORMAT") && said.contains("json"), "{said}");
}
