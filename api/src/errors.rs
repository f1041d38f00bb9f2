//! Every refusal the API gives: a code a program can branch on (`UNAUTHENTICATED`,
//! `FORBIDDEN`, `NOT_FOUND`, `CONFLICT`, `INVALID_INPUT`, `RATE_LIMITED` with `retryAfter`,
//! `UNAVAILABLE`, `INTERNAL`) and a sentence a person can act on. A user's mistake is never
//! `INTERNAL`; `INTERNAL` is logged with its cause and shown without it.

use std::time::Duration;

use async_graphql::ErrorExtensions;
use openguild_domain::DomainError;
use openguild_store::StoreError;

use crate::commands::CommandError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new("UNAUTHENTICATED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("FORBIDDEN", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("NOT_FOUND", message)
    }

    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new("INVALID_INPUT", format!("invalid {field}: {why}"))
    }

    pub fn rate_limited(message: &str, retry_after: Duration) -> Self {
        Self {
            code: "RATE_LIMITED",
            message: format!("{message} (retry after {:.1} s)", retry_after.as_secs_f64()),
            retry_after: Some(retry_after),
        }
    }

    /// A fault of the server's: the cause goes to the log, the user gets an apology.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new("INTERNAL", "the server failed to do this; it has been logged — try again later")
    }

    pub fn login_required() -> Self {
        Self::unauthenticated("log in first: send `Authorization: Bearer <token>` (register or login give a token)")
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let message = e.to_string();
        match e {
            DomainError::Forbidden(_) | DomainError::TimedOut { .. } => Self::forbidden(message),
            DomainError::NotFound { .. } => Self::not_found(message),
            DomainError::Conflict(_) => Self::new("CONFLICT", message),
            DomainError::InvalidInput { .. } => Self::new("INVALID_INPUT", message),
            DomainError::SlowMode { retry_after_ms } => {
                Self { code: "RATE_LIMITED", message, retry_after: Some(Duration::from_millis(retry_after_ms)) }
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(_) | StoreError::Open(_) | StoreError::Closed => {
                tracing::warn!(error = %e, "event store unavailable");
                Self::new("UNAVAILABLE", "the event store is unreachable; nothing was written — try again shortly")
            }
            StoreError::TooLarge { .. } => Self::new("INVALID_INPUT", e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Store(s) => s.into(),
            CommandError::Contended(_) => Self::new("CONFLICT", e.to_string()),
        }
    }
}

impl From<openguild_projections::ProjectionError> for ApiError {
    fn from(e: openguild_projections::ProjectionError) -> Self {
        match e {
            openguild_projections::ProjectionError::Timeout(..) => {
                Self::new("UNAVAILABLE", "the read models are behind your last write; try again in a moment")
            }
            other => Self::internal(other),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message).extend_with(|_, ext| {
            ext.set("code", e.code);
            if let Some(wait) = e.retry_after {
                ext.set("retryAfter", (wait.as_secs_f64() * 1000.0).ceil() / 1000.0);
            }
        })
    }
}

/// Results of resolvers.
pub type Res<T> = Result<T, async_graphql::Error>;
