//! The federation endpoints peers call (`/_openguild/federation/v1/…`); what they decide is
//! in the `openguild-federation` crate, this module only speaks HTTP.
//!
//! - `GET keys`: this hub's key document, self-signed (docs/PROTOCOL.md, "Keys").

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use openguild_domain::Timestamp;
use openguild_federation::keys::KeyDocument;

use crate::clock::now;
use crate::{AppState, error};

/// `GET /_openguild/federation/v1/keys`: no authentication (keys are public); a peer checks
/// the document's own signature.
pub(crate) async fn keys(State(api): State<AppState>) -> Response {
    match KeyDocument::publish(api.commands.key(), Timestamp::default(), Default::default(), now()) {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "publishing the key document failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "the key document could not be signed; it has been logged",
            )
        }
    }
}
