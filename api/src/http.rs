//! `POST /graphql` (queries and mutations, batched up to a limit) and `GET /graphql`
//! (queries only; GraphiQL when enabled). Every document is measured before it is
//! validated: too many field selections (aliases included) are refused at once, so a
//! 10,000-alias query costs a parse, not a quadratic validation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{BatchRequest, Request};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::Api;
use crate::auth::{Service, Viewer, bearer};
use crate::clock::now;
use crate::errors::ApiError;
use crate::metrics;

/// The caller's address, for per-address limits: the peer's address, or, when the peer is
/// one of `api.trusted_proxies`, the last address in `X-Forwarded-For` that is not a trusted
/// proxy (the one the nearest trusted proxy saw). Without trusted proxies the header is
/// ignored, since anyone can send it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub(crate) fn of(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> ClientAddr {
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
        if !is_trusted(&peer) {
            return ClientAddr(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if is_trusted(&ip) => continue,
                Ok(ip) => return ClientAddr(ip),
                // A hop we cannot read: the proxy's own view is all we can trust.
                Err(_) => return ClientAddr(peer),
            }
        }
        ClientAddr(peer)
    }
}

impl axum::extract::FromRequestParts<Arc<Api>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        api: &Arc<Api>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
        Ok(ClientAddr::of(peer, &parts.headers, &api.trusted_proxies))
    }
}

/// A position the client asks its reads to wait for (`OpenGuild-Read-After`), for clients
/// that write through one node and read through another.
#[derive(Clone, Copy, Debug)]
pub struct ReadAfter(pub u64);

fn refuse(status: StatusCode, e: ApiError) -> Response {
    metrics::graphql::error(e.code);
    let mut ext = json!({ "code": e.code });
    if let Some(wait) = e.retry_after {
        ext["retryAfter"] = json!(wait.as_secs_f64());
    }
    (status, axum::Json(json!({ "errors": [{ "message": e.message, "extensions": ext }] }))).into_response()
}

/// Who the Authorization header names: a user's session or a host application's service
/// token (`ogs_…`). `Ok(None)` without a header.
pub(crate) enum Caller {
    User(Viewer),
    Service(Service),
}

pub(crate) async fn viewer_of(api: &Api, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let token = value
        .to_str()
        .ok()
        .and_then(bearer)
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    if token.starts_with(crate::auth::SERVICE_PREFIX) {
        return api.authenticate_service(token).await.map(|s| Some(Caller::Service(s)));
    }
    api.authenticate(token, now()).await.map(|v| Some(Caller::User(v)))
}

fn prepare(
    api: &Arc<Api>,
    mut request: Request,
    caller: &Option<Caller>,
    headers: &HeaderMap,
    addr: IpAddr,
) -> Request {
    request = request.data(api.clone()).data(ClientAddr(addr));
    match caller {
        Some(Caller::User(v)) => request = request.data(v.clone()),
        Some(Caller::Service(s)) => request = request.data(s.clone()),
        None => {}
    }
    if let Some(p) = headers.get("openguild-read-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
        request = request.data(ReadAfter(p));
    }
    request
}

pub(crate) async fn post(
    State(api): State<Arc<Api>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                e.status(),
                ApiError::invalid(
                    "request",
                    format!("{}; the limit is {} bytes", e.body_text(), api.settings.limits.max_body_bytes),
                ),
            );
        }
    };
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                ApiError::invalid(
                    "request",
                    format!("expected a JSON object {{\"query\": …, \"variables\": …}} or an array of them: {e}"),
                ),
            );
        }
    };
    let requests = match batch {
        BatchRequest::Single(r) => vec![r],
        BatchRequest::Batch(list) => {
            if list.len() > api.settings.limits.max_batch {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    ApiError::invalid(
                        "batch",
                        format!("{} operations; at most {} per request", list.len(), api.settings.limits.max_batch),
                    ),
                );
            }
            list
        }
    };
    let is_batch = requests.len() != 1 || body.first() == Some(&b'[');
    let viewer = match viewer_of(&api, &headers).await {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e),
    };
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests {
        let doc = api.documents.parse(&request.query);
        if let Some(Err(e)) = doc.as_deref().map(|doc| measure_doc(doc, api.settings.limits.max_fields, false)) {
            responses.push(error_response(e));
            continue;
        }
        let operation = metrics::graphql::Operation::of(doc.as_deref(), request.operation_name.as_deref());
        let mut request = prepare(&api, request, &viewer, &headers, addr);
        if let Some(doc) = doc {
            request.set_parsed_query(ExecutableDocument::clone(&doc));
        }
        let user = match &viewer {
            Some(Caller::User(v)) => Some(v.user.clone()),
            _ => None,
        };
        let before = user.as_ref().map_or(0, |u| api.last_write(u));
        let started = Instant::now();
        let mut response = with_codes(api.schema.execute(request).await);
        operation.ran(started);
        metrics::graphql::errors(&response.errors);
        // A write tells its position, for `OpenGuild-Read-After` on another node.
        if let Some(after) = user.as_ref().map(|u| api.last_write(u)).filter(|after| *after > before) {
            response.extensions.insert("position".to_owned(), async_graphql::Value::from(after));
        }
        responses.push(serde_json::to_value(response).unwrap_or_default());
    }
    let out = if is_batch { serde_json::Value::Array(responses) } else { responses.pop().unwrap_or_default() };
    axum::Json(out).into_response()
}

#[derive(Deserialize)]
pub(crate) struct GetParams {
    query: Option<String>,
    variables: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

pub(crate) async fn get(
    State(api): State<Arc<Api>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(params): Query<GetParams>,
) -> Response {
    let Some(query) = params.query else {
        if api.settings.graphiql {
            return Html(
                async_graphql::http::GraphiQLSource::build()
                    .endpoint("/graphql")
                    .subscription_endpoint("/graphql/ws")
                    .finish(),
            )
            .into_response();
        }
        return refuse(
            StatusCode::BAD_REQUEST,
            ApiError::invalid("request", "pass ?query=… (GraphiQL is off; enable it with api.graphiql = true)"),
        );
    };
    let doc = api.documents.parse(&query);
    if let Some(Err(e)) = doc.as_deref().map(|doc| measure_doc(doc, api.settings.limits.max_fields, true)) {
        return refuse(
            if e.code == "INVALID_INPUT" { StatusCode::BAD_REQUEST } else { StatusCode::METHOD_NOT_ALLOWED },
            e,
        );
    }
    let operation = metrics::graphql::Operation::of(doc.as_deref(), params.operation_name.as_deref());
    let mut request = Request::new(query);
    if let Some(doc) = doc {
        request.set_parsed_query(ExecutableDocument::clone(&doc));
    }
    if let Some(vars) = params.variables {
        match serde_json::from_str(&vars) {
            Ok(v) => request = request.variables(async_graphql::Variables::from_json(v)),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, ApiError::invalid("variables", format!("not JSON: {e}"))),
        }
    }
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    let viewer = match viewer_of(&api, &headers).await {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e),
    };
    let request = prepare(&api, request, &viewer, &headers, addr);
    let started = Instant::now();
    let response = with_codes(api.schema.execute(request).await);
    operation.ran(started);
    metrics::graphql::errors(&response.errors);
    axum::Json(response).into_response()
}

/// Errors async-graphql raises itself (syntax, validation, input coercion) are the client's
/// mistakes: they get `INVALID_INPUT`, so every error carries a code.
pub(crate) fn with_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for e in &mut response.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "INVALID_INPUT");
        }
    }
    response
}

fn error_response(e: ApiError) -> serde_json::Value {
    metrics::graphql::error(e.code);
    json!({ "errors": [{ "message": e.message, "extensions": { "code": e.code } }] })
}

/// Refuses documents with more than `max_fields` field selections (fragments counted each
/// time they are spread), and, for GET, any mutation. Syntax errors are left to execution,
/// which reports them with their location.
/// Parsed GraphQL documents by query text. Clients send the same few queries again and
/// again; parsing one (twice: for the limits, then to run it) cost ~5% of the server's CPU
/// on the send path, cloning a parsed one a fraction of that. A query that does not parse
/// is not kept (the schema reports why when it runs).
pub(crate) struct Documents(quick_cache::sync::Cache<String, Arc<ExecutableDocument>>);

impl Documents {
    /// Distinct query texts kept: a client ships a few dozen.
    const KEPT: usize = 512;
    /// Longer texts are parsed each time, not kept.
    const LONGEST: usize = 16 * 1024;

    pub(crate) fn new() -> Self {
        Self(quick_cache::sync::Cache::new(Self::KEPT))
    }

    /// `query` parsed, or `None` if it does not parse.
    pub(crate) fn parse(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        if let Some(doc) = self.0.get(query) {
            return Some(doc);
        }
        let doc = Arc::new(async_graphql::parser::parse_query(query).ok()?);
        if query.len() <= Self::LONGEST {
            self.0.insert(query.to_owned(), doc.clone());
        }
        Some(doc)
    }
}

/// Checks a request's query against the limits before it runs (`measure_doc`); a query that
/// does not parse passes here and is refused by the schema with the parser's message.
#[cfg(test)]
pub(crate) fn measure(query: &str, max_fields: usize, queries_only: bool) -> Result<(), ApiError> {
    let Ok(doc) = async_graphql::parser::parse_query(query) else { return Ok(()) };
    measure_doc(&doc, max_fields, queries_only)
}

/// Refuses a parsed query over the limits: more than `max_fields` fields, directives and
/// variables, counted through fragments; with `queries_only`, anything but a query.
pub(crate) fn measure_doc(doc: &ExecutableDocument, max_fields: usize, queries_only: bool) -> Result<(), ApiError> {
    if queries_only {
        let mutation = match &doc.operations {
            DocumentOperations::Single(op) => op.node.ty != OperationType::Query,
            DocumentOperations::Multiple(ops) => ops.values().any(|op| op.node.ty != OperationType::Query),
        };
        if mutation {
            return Err(ApiError::new(
                "METHOD_NOT_ALLOWED",
                "mutations and subscriptions are not allowed over GET; POST them (subscriptions: /graphql/ws)",
            ));
        }
    }
    let mut count = doc.fragments.values().map(|f| f.node.directives.len()).sum::<usize>();
    count += match &doc.operations {
        DocumentOperations::Single(op) => op.node.directives.len() + op.node.variable_definitions.len(),
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| op.node.directives.len() + op.node.variable_definitions.len()).sum()
        }
    };
    let sets: Vec<&SelectionSet> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => ops.values().map(|op| &op.node.selection_set.node).collect(),
    };
    for set in sets {
        count_fields(doc, set, &mut count, max_fields, 0)?;
    }
    Ok(())
}

fn count_fields(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    count: &mut usize,
    max: usize,
    depth: usize,
) -> Result<(), ApiError> {
    let too_many = || {
        ApiError::invalid(
            "query",
            format!(
                "it has more than {max} fields, arguments and directives (aliases and fragment spreads count); split it"
            ),
        )
    };
    if depth > 64 {
        return Err(ApiError::invalid("query", "fragments nest more than 64 levels deep"));
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                // Arguments and directives count too: 20,000 unknown arguments or a directive
                // repeated 10,000 times would otherwise all be validated and executed.
                *count += 1 + f.node.arguments.len() + f.node.directives.len();
                if *count > max {
                    return Err(too_many());
                }
                count_fields(doc, &f.node.selection_set.node, count, max, depth + 1)?;
            }
            // Spreads count too: fragments that spread each other twice over would otherwise
            // make an exponential walk without a single field.
            Selection::InlineFragment(f) => {
                *count += 1 + f.node.directives.len();
                if *count > max {
                    return Err(too_many());
                }
                count_fields(doc, &f.node.selection_set.node, count, max, depth + 1)?;
            }
            Selection::FragmentSpread(s) => {
                *count += 1 + s.node.directives.len();
                if *count > max {
                    return Err(too_many());
                }
                if let Some(fragment) = doc.fragments.get(&s.node.fragment_name.node) {
                    count_fields(doc, &fragment.node.selection_set.node, count, max, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Documents, measure};

    #[test]
    fn a_query_sent_again_is_parsed_once_and_one_that_does_not_parse_is_not_kept() {
        let documents = Documents::new();
        let query = "query($c: ID!) { channel(id: $c) { id name } }";
        let first = documents.parse(query).unwrap();
        assert!(Arc::ptr_eq(&first, &documents.parse(query).unwrap()), "parsed again");
        assert!(documents.parse("query { channel(").is_none());
        assert_eq!(documents.0.len(), 1);
        let long = format!("{{ me {{ id }} }} # {}", "x".repeat(Documents::LONGEST));
        assert!(documents.parse(&long).is_some());
        assert_eq!(documents.0.len(), 1, "a long query is not kept");
    }
    use proptest::prelude::*;

    #[test]
    fn repeated_directives_and_piles_of_arguments_count_against_the_limit() {
        let directives = format!("{{ __typename {} }}", "@include(if: true) ".repeat(10_000));
        let e = measure(&directives, 500, false).unwrap_err();
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(e.message.contains("more than 500"), "{}", e.message);
        let args: Vec<String> = (0..20_000).map(|i| format!("a{i}: 1")).collect();
        let arguments = format!("{{ __typename({}) }}", args.join(", "));
        assert!(measure(&arguments, 500, false).is_err());
        let operation = format!("query Q {} {{ __typename }}", "@skip(if: false) ".repeat(600));
        assert!(measure(&operation, 500, false).is_err());
        // An ordinary query with a few arguments and directives passes.
        assert!(measure("query($c: ID!) { channel(id: $c) @include(if: true) { id name } }", 500, false).is_ok());
    }

    proptest! {
        /// Whatever a client sends, measuring it answers (yes or a refusal), never panics.
        #[test]
        fn measuring_any_document_never_panics(query in "[{}()a-z0-9:.@ \n]{0,200}|\\PC{0,200}") {
            let _ = measure(&query, 50, true);
            let _ = measure(&query, 50, false);
        }

        /// Fragments that spread each other (cycles) are bounded, not followed forever.
        #[test]
        fn fragment_cycles_are_bounded(n in 1usize..6) {
            let mut doc = "{ ...F0 }".to_owned();
            for i in 0..n {
                doc.push_str(&format!(" fragment F{i} on Query {{ me {{ id }} ...F{} }}", (i + 1) % n));
            }
            prop_assert!(measure(&doc, 10_000, false).is_err());
        }
    }

    #[test]
    fn fragments_spreading_each_other_twice_over_end_quickly() {
        let bomb = "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }";
        let started = std::time::Instant::now();
        assert!(measure(bomb, 500, false).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "bounded by the selection count");
    }

    #[test]
    fn alias_floods_and_get_mutations_are_refused_before_validation() {
        let flood =
            format!("{{ {} }}", (0..10_000).map(|i| format!("a{i}: me {{ id }}")).collect::<Vec<_>>().join(" "));
        assert_eq!(measure(&flood, 500, false).unwrap_err().code, "INVALID_INPUT");
        assert!(measure("{ me { id handle } }", 500, true).is_ok());
        assert_eq!(measure("mutation { logout }", 500, true).unwrap_err().code, "METHOD_NOT_ALLOWED");
        // Fragment spreads count every time: a fragment bomb is caught too.
        let bomb = "query { ...A ...A ...A ...A } fragment A on Query { me { id handle server } }";
        assert!(measure(bomb, 10, false).is_err());
        assert!(measure(bomb, 24, false).is_ok());
    }
}
