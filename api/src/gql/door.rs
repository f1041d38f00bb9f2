//! The one door every write passes through, whichever mutation it is and however it arrives
//! (HTTP, a batch, the websocket): each root field of a mutation takes a token from its
//! caller's bucket before it runs. The caller is the session's user, the service token, or,
//! for someone not logged in (register, login, signup), the client's address. A resolver
//! cannot forget the limit, because it never sees the request first.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{ServerResult, Value};

use crate::Api;
use crate::auth::{Service, Viewer, service_token_id};
use crate::errors::ApiError;
use crate::http::ClientAddr;
use crate::limits::Rate;

/// Installs the door on the schema.
pub struct Door;

impl ExtensionFactory for Door {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Door)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Door {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let is_mutation = ctx.schema_env.registry.mutation_type.as_deref() == Some(info.parent_type);
        if is_mutation && info.path_node.parent.is_none() {
            let pos = info.field.name.pos;
            if let Some(api) = ctx.data_opt::<Arc<Api>>() {
                let bucket = bucket(ctx.data_opt::<Viewer>(), ctx.data_opt::<Service>(), ctx.data_opt::<ClientAddr>());
                api.admit_write(&bucket).await.map_err(|e| async_graphql::Error::from(e).into_server_error(pos))?;
            }
        }
        next.run(ctx, info).await
    }
}

/// Whose bucket a write takes from.
fn bucket(viewer: Option<&Viewer>, service: Option<&Service>, addr: Option<&ClientAddr>) -> String {
    match (viewer, service, addr) {
        (Some(v), _, _) => format!("mutation:{}", v.user),
        (None, Some(s), _) => format!("mutation:service:{}", service_token_id(&s.token_hash)),
        (None, None, Some(ClientAddr(ip))) => format!("mutation:ip:{ip}"),
        (None, None, None) => "mutation:anonymous".to_owned(),
    }
}

impl Api {
    /// Takes one write from `bucket`, or says how long to wait.
    pub(crate) async fn admit_write(&self, bucket: &str) -> Result<(), ApiError> {
        let rate =
            Rate { per_second: self.settings.limits.mutations_per_second, burst: self.settings.limits.mutation_burst };
        self.limiter.take(bucket, rate).await.map_err(|e| {
            crate::metrics::refused("mutation");
            ApiError::rate_limited("too many changes at once; slow down", e.retry_after)
        })
    }
}
