//! The Matrix client-server API, for what OpenGuild models, so Matrix clients and bots log in
//! to a hub. A translation at the edge (docs/MATRIX.md): every endpoint parses its request
//! with `ruma`'s types, calls what the GraphQL resolvers call (`openguild_api::Api`), and
//! answers with `ruma`'s types. No Matrix state is kept anywhere.
//!
//! Ids: a guild is a space `!<guild id>:<owner hub>`, a channel a room `!<channel id>:<owner
//! hub>`; users are already `@handle:hub`.

mod error;
mod ids;
mod rooms;
mod ruma_io;
mod session;
mod sync;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use openguild_api::Api;

pub use error::MatrixError;

/// The Matrix routes: `/.well-known/matrix/client` and `/_matrix/client/…`. Anything else
/// under `/_matrix` answers `M_UNRECOGNIZED` (404, or 405 for a known path's other methods).
pub fn router() -> Router<Arc<Api>> {
    let client = Router::new()
        .route("/versions", get(session::versions))
        .route("/v3/login", get(session::login_types).post(session::login))
        .route("/v3/login/sso/redirect", get(session::sso_redirect))
        .route("/v3/login/sso/redirect/{idp}", get(session::sso_redirect))
        .route("/v3/logout", post(session::logout))
        .route("/v3/account/whoami", get(session::whoami))
        .route("/v3/capabilities", get(session::capabilities))
        .route("/v3/pushrules/", get(session::push_rules))
        .route("/v3/joined_rooms", get(session::joined_rooms))
        .route("/v3/sync", get(sync::sync))
        .route("/v3/user/{user}/filter", post(session::create_filter))
        .route("/v3/user/{user}/filter/{id}", get(session::get_filter))
        .route("/v3/rooms/{room}/send/{kind}/{txn}", axum::routing::put(rooms::send))
        .route("/v3/rooms/{room}/messages", get(rooms::messages))
        .route("/v3/rooms/{room}/redact/{event}/{txn}", axum::routing::put(rooms::redact))
        .route("/v3/rooms/{room}/leave", post(rooms::leave))
        .route("/v3/rooms/{room}/{what}", post(rooms::moderate))
        .route("/v3/rooms/{room}/state", get(rooms::state))
        .route("/v3/rooms/{room}/state/{kind}", get(rooms::state_for_key))
        .route("/v3/rooms/{room}/state/{kind}/{key}", get(rooms::state_for_key))
        .route("/v3/rooms/{room}/members", get(rooms::members))
        .route("/v3/rooms/{room}/typing/{user}", axum::routing::put(rooms::typing))
        .route("/v3/rooms/{room}/receipt/{kind}/{event}", post(rooms::receipt))
        .route("/v3/rooms/{room}/read_markers", post(rooms::read_markers))
        .route("/v3/profile/{user}", get(session::profile))
        .route("/v3/register", post(session::register))
        .route("/v3/createRoom", post(rooms::create_room))
        .route("/v1/rooms/{room}/hierarchy", get(rooms::hierarchy))
        .method_not_allowed_fallback(|| async { MatrixError::unrecognized(405) })
        .fallback(|| async { MatrixError::unrecognized(404) });
    Router::new()
        .route("/.well-known/matrix/client", get(session::well_known))
        .nest("/_matrix/client", client)
        .route("/_matrix/{*rest}", axum::routing::any(|| async { MatrixError::unrecognized(404) }))
        .layer(axum::Extension(Arc::new(rooms::Txns::default())))
}
