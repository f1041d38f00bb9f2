//! Spans a request leaves behind, for logs and trace export (`OPENGUILD_OTLP_ENDPOINT`): one
//! per HTTP request, one per GraphQL operation, one per root field resolved; the command and
//! append spans are the command path's (`commands`), the read-model wait is `read_models`.
//! Nested fields get none: a subscription delivered to thousands would pay for each.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, ResolveInfo};
use async_graphql::{Response as GqlResponse, ServerResult, Value};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The span of one HTTP request: method, path (never the query string, which may carry a
/// token) and status.
pub(crate) async fn request_span(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty
    );
    let response = next.run(req).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

/// Installs the operation and resolver spans on the schema.
pub struct Spans;

impl ExtensionFactory for Spans {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Spans)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Spans {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> GqlResponse {
        let span =
            tracing::info_span!("graphql", operation = operation_name.unwrap_or(""), errors = tracing::field::Empty);
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        if !response.errors.is_empty() {
            span.record("errors", response.errors.len());
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        let span = tracing::info_span!("resolver", field = %info.name, parent = info.parent_type);
        next.run(ctx, info).instrument(span).await
    }
}
