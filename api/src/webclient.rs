//! The web client (`ui/`, built into the `ui_dir` setting): its files at every path the API
//! does not answer. A path that is no file gets `index.html`, so the client's own routes
//! (`/invite/CODE`, `/channels/G/C`) survive a reload. Built files under `/assets/` carry a
//! content hash in their name and are cached for good; everything else is revalidated.
//!
//! The directory is looked at on each request, so building the client (`make ui`) needs no
//! restart; until then `/` says how to build it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower_http::services::{ServeDir, ServeFile};

/// Paths that belong to the API: a miss there is a 404, never the client's page.
const API_PREFIXES: &[&str] =
    &["/graphql", "/auth", "/_openguild", "/_matrix", "/.well-known/matrix", "/healthz", "/readyz", "/metrics"];

/// Built files whose names change with their content.
const ASSETS: &str = "/assets/";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Serves one directory as the router's fallback.
#[derive(Clone)]
pub(crate) struct WebClient {
    dir: Arc<Path>,
}

impl WebClient {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir: dir.into() }
    }

    pub(crate) async fn serve(&self, req: Request) -> Response {
        let (parts, _) = req.into_parts();
        let path = parts.uri.path();
        if is_api(path) || (parts.method != Method::GET && parts.method != Method::HEAD) {
            let message = format!("{} {path}: no such endpoint; the API is at /graphql", parts.method);
            return crate::error(StatusCode::NOT_FOUND, "NOT_FOUND", &message);
        }
        if escapes(path) {
            return crate::error(StatusCode::BAD_REQUEST, "INVALID_INPUT", "a path may not contain `..`");
        }
        let asset = path.starts_with(ASSETS);
        let mut dir = ServeDir::new(&*self.dir).precompressed_gzip().append_index_html_on_directories(false);
        match dir.try_call(copy(&parts)).await {
            Ok(found) if found.status() != StatusCode::NOT_FOUND => {
                let cache = if asset && !found.status().is_client_error() { IMMUTABLE } else { REVALIDATE };
                file_response(found.map(Body::new), cache)
            }
            // A missing asset is a broken build or a stale page: index.html would only
            // confuse the browser with HTML where it wanted a script.
            Ok(_) if asset => StatusCode::NOT_FOUND.into_response(),
            Ok(_) => self.index(&parts).await,
            Err(e) => failed(&self.dir, e),
        }
    }

    /// `index.html` for the client's own routes, or a page saying it is not built.
    async fn index(&self, parts: &Parts) -> Response {
        let index = self.dir.join("index.html");
        if !tokio::fs::metadata(&index).await.is_ok_and(|m| m.is_file()) {
            return not_built(&self.dir);
        }
        match ServeFile::new(index).precompressed_gzip().try_call(copy(parts)).await {
            Ok(page) => file_response(page.map(Body::new), REVALIDATE),
            Err(e) => failed(&self.dir, e),
        }
    }
}

/// Whether `path` is the API's, segment by segment (`/authors` is not `/auth`).
fn is_api(path: &str) -> bool {
    API_PREFIXES.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Whether `path`, percent-decoded, climbs out of the directory. `ServeDir` refuses these
/// too; refusing them here keeps them from falling through to `index.html`.
fn escapes(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded.contains('\0') || decoded.split(['/', '\\']).any(|segment| segment == "..")
}

/// The request again, without its body (files need none).
fn copy(parts: &Parts) -> axum::http::Request<Body> {
    let mut req = axum::http::Request::new(Body::empty());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    req
}

fn file_response(mut res: Response, cache: &'static str) -> Response {
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // The same URL answers gzip or plain by Accept-Encoding: caches must keep both apart.
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    res
}

fn failed(dir: &Path, e: std::io::Error) -> Response {
    tracing::error!(error = %e, ui_dir = %dir.display(), "reading the web client's files failed");
    crate::error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the server could not read the web client's files")
}

fn not_built(dir: &Path) -> Response {
    let dir = escape_html(&dir.display().to_string());
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>OpenGuild</title></head>\n<body>\n\
         <h1>The web client is not built</h1>\n\
         <p>This OpenGuild server is running, but <code>{dir}/index.html</code> does not exist.</p>\n\
         <p>Build the client with <code>make ui</code> (that is, <code>cd ui &amp;&amp; npm ci &amp;&amp; npm run \
         build</code>), or point <code>ui_dir</code> (<code>OPENGUILD_UI_DIR</code>, <code>--ui-dir</code>) at a \
         built client, then reload this page.</p>\n\
         <p>The API is at <a href=\"/graphql\"><code>/graphql</code></a>.</p>\n</body>\n</html>\n"
    );
    let mut res = Html(page).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    res
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_matched_by_whole_segments() {
        assert!(is_api("/graphql"));
        assert!(is_api("/graphql/nope"));
        assert!(is_api("/auth/oidc/x/start"));
        assert!(is_api("/_openguild/federation/v2"));
        assert!(!is_api("/authors"));
        assert!(!is_api("/invite/abc"));
        assert!(!is_api("/"));
    }

    #[test]
    fn climbing_out_is_caught_however_it_is_spelled() {
        for path in ["/../etc/passwd", "/assets/../../x", "/%2e%2e/x", "/a/..%2f..%2fx", "/..%5cx", "/a/%2E%2E"] {
            assert!(escapes(path), "{path}");
        }
        for path in ["/", "/invite/abc", "/assets/app.3f2a.js", "/a..b/c", "/..."] {
            assert!(!escapes(path), "{path}");
        }
    }
}
