//! Matrix's errors: `{"errcode": "M_…", "error": "…"}` with the status the spec gives, made
//! from OpenGuild's refusals (their words kept).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use openguild_api::errors::ApiError;
use serde_json::json;

#[derive(Debug)]
pub struct MatrixError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub error: String,
    pub retry_after_ms: Option<u64>,
}

impl MatrixError {
    pub fn new(status: u16, errcode: &'static str, error: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, errcode, error: error.into(), retry_after_ms: None }
    }

    pub fn unrecognized(status: u16) -> Self {
        Self::new(
            status,
            "M_UNRECOGNIZED",
            "this hub does not serve that Matrix endpoint (docs/MATRIX.md lists what it does)",
        )
    }

    pub fn missing_token() -> Self {
        Self::new(
            401,
            "M_MISSING_TOKEN",
            "no access token: log in (POST /_matrix/client/v3/login) and send it as a bearer token",
        )
    }

    pub fn bad_json(why: impl std::fmt::Display) -> Self {
        Self::new(400, "M_BAD_JSON", format!("the request does not parse: {why}"))
    }
}

impl From<ApiError> for MatrixError {
    fn from(e: ApiError) -> Self {
        let (status, errcode) = match e.code {
            "UNAUTHENTICATED" => (401, "M_UNKNOWN_TOKEN"),
            "FORBIDDEN" => (403, "M_FORBIDDEN"),
            "NOT_FOUND" => (404, "M_NOT_FOUND"),
            "INVALID_INPUT" => (400, "M_INVALID_PARAM"),
            "RATE_LIMITED" => (429, "M_LIMIT_EXCEEDED"),
            "UNAVAILABLE" | "VOICE_UNAVAILABLE" => (503, "M_UNKNOWN"),
            "CONFLICT" => (409, "M_UNKNOWN"),
            _ => (500, "M_UNKNOWN"),
        };
        let mut out = Self::new(status, errcode, e.message);
        out.retry_after_ms = e.retry_after.map(|d| d.as_millis() as u64);
        out
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let mut body = json!({ "errcode": self.errcode, "error": self.error });
        if let Some(ms) = self.retry_after_ms {
            body["retry_after_ms"] = json!(ms);
        }
        (self.status, Json(body)).into_response()
    }
}

/// An OpenGuild error (store, read model, refusal) as Matrix's.
pub fn api_err(e: impl Into<ApiError>) -> MatrixError {
    MatrixError::from(e.into())
}
