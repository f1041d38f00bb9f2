//! GraphQL operations the schema ran (over HTTP, in a batch, or on the websocket; a
//! subscription once, when it is registered, not per delivery), by type and name, with how
//! long each took; and every GraphQL error the API answered with, by its `extensions.code`,
//! including refusals given before an operation ran (a body too large, a query over the
//! field limit, a bad token).
//!
//! `operation` is the operation's name, or, for an anonymous operation, the name of its
//! first root field (`mutation { sendMessage(…) { id } }` counts as `sendMessage`), or
//! `unknown` when the document does not parse or does not say which operation to run.

use std::sync::LazyLock;
use std::time::Instant;

use async_graphql::ServerError;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Bounded;

type Labels = [(&'static str, String); 2];
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Operations run, by type and name.
static OPERATIONS: LazyLock<Family<Labels, Counter>> = LazyLock::new(Default::default);

/// Seconds an operation took to run, by type and name: 1 ms to 32 s.
static SECONDS: LazyLock<Histograms> =
    LazyLock::new(|| Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))));

/// Errors answered, by code.
static ERRORS: LazyLock<Family<[(&'static str, String); 1], Counter>> = LazyLock::new(Default::default);

/// Distinct operation names kept per type; clients ship a few dozen.
const NAMES: usize = 128;
/// Distinct error codes kept; the API has about a dozen.
const CODES: usize = 32;

/// The handles of each type's operations, by name.
static BY_TYPE: LazyLock<[Bounded<Operation>; 4]> = LazyLock::new(|| {
    [
        Bounded::new(NAMES, |name| Operation::new("query", name)),
        Bounded::new(NAMES, |name| Operation::new("mutation", name)),
        Bounded::new(NAMES, |name| Operation::new("subscription", name)),
        Bounded::new(NAMES, |name| Operation::new("unknown", name)),
    ]
});

static BY_CODE: LazyLock<Bounded<Counter>> =
    LazyLock::new(|| Bounded::new(CODES, |code| ERRORS.get_or_create(&[("code", code.to_owned())]).clone()));

/// One operation's series, resolved before it runs; [`Operation::ran`] records it.
#[derive(Clone)]
pub(crate) struct Operation {
    runs: Counter,
    seconds: Histogram,
}

impl Operation {
    fn new(ty: &'static str, name: &str) -> Self {
        let labels = [("type", ty.to_owned()), ("operation", name.to_owned())];
        Operation { runs: OPERATIONS.get_or_create(&labels).clone(), seconds: SECONDS.get_or_create(&labels).clone() }
    }

    /// The series of the operation `doc` runs when asked for `name` (the request's
    /// `operationName`); `doc` is `None` when it does not parse.
    pub(crate) fn of(doc: Option<&ExecutableDocument>, name: Option<&str>) -> Operation {
        let (index, name) = match doc.map(|doc| (&doc.operations, name)) {
            Some((DocumentOperations::Single(op), _)) => {
                let field = op.node.selection_set.node.items.first().and_then(|item| match &item.node {
                    Selection::Field(f) => Some(f.node.name.node.as_str()),
                    _ => None,
                });
                (type_index(op.node.ty), field.unwrap_or("anonymous"))
            }
            Some((DocumentOperations::Multiple(ops), Some(name))) => match ops.get_key_value(name) {
                Some((name, op)) => (type_index(op.node.ty), name.as_str()),
                None => (3, "unknown"),
            },
            Some((DocumentOperations::Multiple(ops), None)) if ops.len() == 1 => match ops.iter().next() {
                Some((name, op)) => (type_index(op.node.ty), name.as_str()),
                None => (3, "unknown"),
            },
            _ => (3, "unknown"),
        };
        match BY_TYPE.get(index) {
            Some(names) => names.get(name),
            None => Operation::new("unknown", "unknown"),
        }
    }

    /// Records one run that started at `started`.
    pub(crate) fn ran(&self, started: Instant) {
        self.runs.inc();
        self.seconds.observe(started.elapsed().as_secs_f64());
    }
}

fn type_index(ty: OperationType) -> usize {
    match ty {
        OperationType::Query => 0,
        OperationType::Mutation => 1,
        OperationType::Subscription => 2,
    }
}

/// Counts the errors of a response by their codes (an error without one is `INVALID_INPUT`,
/// as `http::with_codes` answers it).
pub(crate) fn errors(errors: &[ServerError]) {
    for e in errors {
        let code = e.extensions.as_ref().and_then(|ext| match ext.get("code") {
            Some(async_graphql::Value::String(code)) => Some(code.as_str()),
            _ => None,
        });
        error(code.unwrap_or("INVALID_INPUT"));
    }
}

/// Counts one error answered with `code`.
pub(crate) fn error(code: &str) {
    BY_CODE.get(code).inc();
}

pub(super) fn register(registry: &mut Registry) {
    registry.register("graphql_operations", "GraphQL operations run, by type and name", OPERATIONS.clone());
    registry.register(
        "graphql_operation_duration_seconds",
        "Seconds a GraphQL operation took to run, by type and name",
        SECONDS.clone(),
    );
    registry.register("graphql_errors", "GraphQL errors answered, by extensions.code", ERRORS.clone());
}
