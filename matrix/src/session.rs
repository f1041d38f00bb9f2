//! Discovery, logging in and out, who am I, what the hub can do, and which rooms are mine.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use openguild_api::Api;
use openguild_api::clock::now;
use openguild_domain::Permissions;
use ruma::api::client::account::whoami;
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};
use ruma::api::client::membership::joined_rooms;
use ruma::api::client::push::get_pushrules_all;
use ruma::api::client::session::{get_login_types, login, logout};
use ruma::api::client::uiaa::UserIdentifier;
use ruma::{OwnedDeviceId, OwnedUserId};

use crate::MatrixError;
use crate::ids::{room_of, space_of};
use crate::ruma_io::{parse, reply, token, viewer};

/// The spec versions served: v1.5 onwards is what matrix-js-sdk asks for.
const VERSIONS: &[&str] = &["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"];

pub async fn well_known(State(api): State<Arc<Api>>) -> Response {
    let info = discover_homeserver::HomeserverInfo::new(api.public_url());
    reply(discover_homeserver::Response::new(info))
}

pub async fn versions() -> Response {
    reply(get_supported_versions::Response::new(VERSIONS.iter().map(|v| (*v).to_owned()).collect()))
}

pub async fn login_types(State(api): State<Arc<Api>>) -> Response {
    use get_login_types::v3::{IdentityProvider, LoginType, SsoLoginType};
    let mut flows = vec![LoginType::Password(Default::default())];
    if !api.oidc.providers.is_empty() {
        let mut sso = SsoLoginType::new();
        sso.identity_providers = api
            .oidc
            .providers
            .iter()
            .map(|(id, p)| IdentityProvider::new(id.clone(), p.display_name.clone().unwrap_or_else(|| id.clone())))
            .collect();
        flows.push(LoginType::Sso(sso));
        flows.push(LoginType::Token(Default::default()));
    }
    reply(get_login_types::v3::Response::new(flows))
}

/// `/login/sso/redirect` (and `…/{idpId}`): to the OpenID provider's login page; back from it,
/// to the client's `redirectUrl` with a `loginToken` for `m.login.token`.
pub async fn sso_redirect(
    State(api): State<Arc<Api>>,
    idp: Option<axum::extract::Path<String>>,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::session::{sso_login, sso_login_with_provider};
    let (provider, redirect_url) = match &idp {
        Some(axum::extract::Path(idp)) => {
            let (r, _) = parse::<sso_login_with_provider::v3::Request>(req, &[idp]).await?;
            (Some(r.idp_id), r.redirect_url)
        }
        None => {
            let (r, _) = parse::<sso_login::v3::Request>(req, &[]).await?;
            (None, r.redirect_url)
        }
    };
    let to = openguild_api::oidc::matrix_sso_start(&api, provider.as_deref(), &redirect_url).await?;
    Ok(axum::response::IntoResponse::into_response((http::StatusCode::FOUND, [(http::header::LOCATION, to)])))
}

/// A device id per session: Matrix clients key their state by it; OpenGuild has sessions.
fn device_of(token: &str) -> OwnedDeviceId {
    let hash = blake3::hash(token.as_bytes()).to_hex();
    OwnedDeviceId::from(format!("OG{}", &hash.as_str()[..10].to_ascii_uppercase()))
}

fn user_id(user: &openguild_domain::UserId) -> Result<OwnedUserId, MatrixError> {
    OwnedUserId::try_from(user.as_str())
        .map_err(|_| MatrixError::new(500, "M_UNKNOWN", format!("{user} is no Matrix user id")))
}

pub async fn login(
    State(api): State<Arc<Api>>,
    from: openguild_api::ClientAddr,
    req: Request,
) -> Result<Response, MatrixError> {
    let from = Some(from.0);
    let (request, _) = parse::<login::v3::Request>(req, &[]).await?;
    let password = match request.login_info {
        login::v3::LoginInfo::Password(password) => password,
        login::v3::LoginInfo::Token(t) => {
            let refused =
                || MatrixError::new(403, "M_FORBIDDEN", "the login token is unknown, used or expired; sign in again");
            let session = api.oidc.take_login_token(&t.token).ok_or_else(refused)?;
            let me = api.authenticate(&session, now()).await.map_err(|_| refused())?;
            let device = device_of(&session);
            #[allow(deprecated)]
            let response = login::v3::Response::new(user_id(&me.user)?, session, device);
            return Ok(reply(response));
        }
        _ => {
            return Err(MatrixError::new(
                400,
                "M_UNKNOWN",
                "this hub takes m.login.password and, with single sign-on, m.login.token (GET /login lists its flows)",
            ));
        }
    };
    #[allow(deprecated)]
    let given = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(m)), _) => m.user.clone(),
        (None, Some(user)) => user.clone(),
        _ => return Err(MatrixError::new(400, "M_UNKNOWN", "log in with an m.id.user identifier (your handle)")),
    };
    // `@handle:hub` or the bare handle; another hub's users log in there.
    let handle = match given.strip_prefix('@').and_then(|rest| rest.split_once(':')) {
        Some((handle, server)) if server == api.server.as_str() => handle.to_owned(),
        Some((_, server)) => {
            return Err(MatrixError::new(403, "M_FORBIDDEN", format!("{given} is a user of {server}; log in there")));
        }
        None => given,
    };
    let (token, user) = api.login(&handle, &password.password, from, now()).await.map_err(|e| {
        let mut e = MatrixError::from(e);
        if e.errcode == "M_UNKNOWN_TOKEN" {
            // A wrong password is M_FORBIDDEN in Matrix.
            e = MatrixError::new(403, "M_FORBIDDEN", e.error);
        }
        e
    })?;
    let device = device_of(&token);
    #[allow(deprecated)]
    let mut response = login::v3::Response::new(user_id(&user)?, token, device);
    response.well_known = None;
    Ok(reply(response))
}

pub async fn logout(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    let (_, parts) = parse::<logout::v3::Request>(req, &[]).await?;
    let me = viewer(&api, &parts).await?;
    api.logout(&me, now()).await?;
    Ok(reply(logout::v3::Response::new()))
}

pub async fn whoami(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    let (_, parts) = parse::<whoami::v3::Request>(req, &[]).await?;
    let me = viewer(&api, &parts).await?;
    let mut response = whoami::v3::Response::new(user_id(&me.user)?, false);
    response.device_id = token(&parts).map(|t| device_of(&t));
    Ok(reply(response))
}

pub async fn capabilities(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    let (_, parts) = parse::<get_capabilities::v3::Request>(req, &[]).await?;
    viewer(&api, &parts).await?;
    let mut caps = get_capabilities::v3::Capabilities::new();
    // Passwords change through OpenGuild's own API.
    caps.change_password.enabled = false;
    caps.thirdparty_id_changes.enabled = false;
    Ok(reply(get_capabilities::v3::Response::new(caps)))
}

pub async fn push_rules(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    let (_, parts) = parse::<get_pushrules_all::v3::Request>(req, &[]).await?;
    viewer(&api, &parts).await?;
    Ok(reply(get_pushrules_all::v3::Response::new(ruma::push::Ruleset::new())))
}

/// The spaces of the viewer's guilds and the rooms of the channels they can see (a DM is a
/// room alone).
pub async fn joined_rooms(State(api): State<Arc<Api>>, req: Request) -> Result<Response, MatrixError> {
    let (_, parts) = parse::<joined_rooms::v3::Request>(req, &[]).await?;
    let me = viewer(&api, &parts).await?;
    // The viewer's own last write (a guild just made or joined) is in the directory first.
    let wait = std::time::Duration::from_millis(api.settings.limits.read_your_writes_ms);
    api.projections.wait_for(&["directory"], api.last_write(&me.user), wait).await.map_err(crate::error::api_err)?;
    let guilds = openguild_projections::queries::guilds_of(api.projections.db(), &me.user)
        .await
        .map_err(crate::error::api_err)?;
    let mut rooms = Vec::new();
    let now = now();
    for id in guilds {
        let Ok(g) = api.member_view(&me.user, id).await else { continue };
        if !g.dm {
            rooms.extend(space_of(&g));
        }
        for channel in g.channels.keys() {
            if g.channel_permissions(&me.user, *channel, now).contains(Permissions::VIEW_CHANNEL) {
                rooms.extend(room_of(&g, *channel));
            }
        }
    }
    Ok(reply(joined_rooms::v3::Response::new(rooms)))
}

/// A filter's id is the filter itself (URL-safe base64 of its JSON): nothing is stored, and
/// any node answers for it. A sync takes filters and does not apply them yet (docs/MATRIX.md).
pub async fn create_filter(
    State(api): State<Arc<Api>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    use base64::Engine;
    use ruma::api::client::filter::create_filter;
    let (request, parts) = parse::<create_filter::v3::Request>(req, &[&user]).await?;
    let me = viewer(&api, &parts).await?;
    if request.user_id.as_str() != me.user.as_str() {
        return Err(MatrixError::new(403, "M_FORBIDDEN", "filters are made for oneself"));
    }
    let json = serde_json::to_vec(&request.filter).map_err(MatrixError::bad_json)?;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    Ok(reply(create_filter::v3::Response::new(id)))
}

pub async fn get_filter(
    State(api): State<Arc<Api>>,
    axum::extract::Path((user, id)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Result<Response, MatrixError> {
    use base64::Engine;
    use ruma::api::client::filter::get_filter;
    let (request, parts) = parse::<get_filter::v3::Request>(req, &[&user, &id]).await?;
    viewer(&api, &parts).await?;
    let unknown = || MatrixError::new(404, "M_NOT_FOUND", "no such filter");
    let json =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(request.filter_id.as_bytes()).map_err(|_| unknown())?;
    let filter = serde_json::from_slice(&json).map_err(|_| unknown())?;
    Ok(reply(get_filter::v3::Response::new(filter)))
}

/// `/profile/{userId}`: the display name (the handle, or the account's display name).
pub async fn profile(
    State(api): State<Arc<Api>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    req: Request,
) -> Result<Response, MatrixError> {
    let (request, parts) = parse::<ruma::api::client::profile::get_profile::v3::Request>(req, &[&user]).await?;
    viewer(&api, &parts).await?;
    let user: openguild_domain::UserId =
        request.user_id.as_str().parse().map_err(|_| MatrixError::new(404, "M_NOT_FOUND", "no such user"))?;
    let name = match api.commands.account_cell(&user).await {
        Ok(cell) => {
            let account = cell.lock().await;
            Some(account.display_name.clone()).filter(|n| !n.is_empty())
        }
        Err(_) => None,
    };
    let name = name.unwrap_or_else(|| user.handle().to_owned());
    Ok(axum::response::IntoResponse::into_response(axum::Json(serde_json::json!({ "displayname": name }))))
}

/// `/register` for a local account: user-interactive auth with one stage, `m.login.dummy`
/// (the hub's registration limits apply as on GraphQL's `register`).
pub async fn register(
    State(api): State<Arc<Api>>,
    from: openguild_api::ClientAddr,
    req: Request,
) -> Result<Response, MatrixError> {
    use ruma::api::client::account::register;
    use ruma::api::client::uiaa::AuthData;
    let (request, _) = parse::<register::v3::Request>(req, &[]).await?;
    if request.kind == register::RegistrationKind::Guest {
        return Err(MatrixError::new(403, "M_GUEST_ACCESS_FORBIDDEN", "this hub has no guest accounts"));
    }
    if !matches!(request.auth, Some(AuthData::Dummy(_))) {
        let session = blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes()).to_hex()[..16].to_owned();
        let body = serde_json::json!({ "flows": [{ "stages": ["m.login.dummy"] }], "params": {}, "session": session });
        return Ok(axum::response::IntoResponse::into_response((http::StatusCode::UNAUTHORIZED, axum::Json(body))));
    }
    let handle = request
        .username
        .ok_or_else(|| MatrixError::new(400, "M_INVALID_USERNAME", "choose a username (your handle)"))?;
    let password = request.password.ok_or_else(|| MatrixError::new(400, "M_MISSING_PARAM", "choose a password"))?;
    let (token, user) = api.register(&handle, &password, Some(from.0), now()).await.map_err(|e| {
        let conflict = e.code == "CONFLICT";
        let mut e = MatrixError::from(e);
        if conflict {
            e = MatrixError::new(400, "M_USER_IN_USE", e.error);
        }
        e
    })?;
    let mut response = register::v3::Response::new(user_id(&user)?);
    if !request.inhibit_login {
        response.device_id = Some(device_of(&token));
        response.access_token = Some(token);
    }
    Ok(reply(response))
}
