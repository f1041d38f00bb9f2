//! Between axum and `ruma`: a request's bytes parsed as an endpoint's request type, its
//! answer turned into a response, and the caller's access token (`Authorization: Bearer`, or
//! `?access_token=` as older clients send it) resolved to a viewer.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use openguild_api::Api;
use openguild_api::auth::Viewer;
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};

use crate::MatrixError;

/// The largest request body taken.
const MAX_BODY: usize = 1 << 20;

/// Parses `req` as `R`, with the path's arguments in order.
pub async fn parse<R: IncomingRequest>(
    req: Request,
    path_args: &[&str],
) -> Result<(R, http::request::Parts), MatrixError> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| MatrixError::new(413, "M_TOO_LARGE", format!("the request body is over {MAX_BODY} bytes")))?;
    let request = http::Request::from_parts(parts.clone(), bytes.as_ref());
    let parsed = R::try_from_http_request(request, path_args).map_err(MatrixError::bad_json)?;
    Ok((parsed, parts))
}

/// The response of an endpoint.
pub fn reply<T: OutgoingResponse>(response: T) -> Response {
    match response.try_into_http_response::<Vec<u8>>() {
        Ok(r) => r.map(Body::from).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "matrix: a response did not serialise");
            MatrixError::new(500, "M_UNKNOWN", "the hub failed to write its answer; it has been logged").into_response()
        }
    }
}

/// The caller's access token, if any.
pub fn token(parts: &http::request::Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = openguild_api::auth::bearer(v)
    {
        return Some(t.to_owned());
    }
    parts.uri.query()?.split('&').find_map(|kv| kv.strip_prefix("access_token=")).map(str::to_owned)
}

/// The viewer the caller's access token stands for.
pub async fn viewer(api: &Arc<Api>, parts: &http::request::Parts) -> Result<Viewer, MatrixError> {
    let token = token(parts).ok_or_else(MatrixError::missing_token)?;
    Ok(api.authenticate(&token, openguild_api::clock::now()).await?)
}
