//! `openguild serve`: the event store, the projections and the HTTP API, until SIGTERM or
//! Ctrl-C; then in-flight appends finish and nothing acknowledged is lost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use openguild_projections::{Projections, ReadDb};
use openguild_store::Options;

use crate::Settings as Place;
use crate::keys;
use crate::settings::Secret;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Peer tokens for the outbox pull, as `PEER=TOKEN`, comma-separated.
    #[arg(long, env = "OPENGUILD_FEDERATION_PEER_TOKENS", value_delimiter = ',')]
    peer_tokens: Option<Vec<String>>,
    /// The built web client to serve (default `ui/dist`).
    #[arg(long)]
    ui_dir: Option<PathBuf>,
}

impl Default for ServeArgs {
    /// What `openguild` with no subcommand uses: no flags (the settings hold the rest).
    fn default() -> Self {
        let peer_tokens =
            std::env::var("OPENGUILD_FEDERATION_PEER_TOKENS").ok().map(|t| t.split(',').map(str::to_owned).collect());
        Self { listen: None, peer_tokens, ui_dir: None }
    }
}

pub async fn serve(mut place: Place, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        place.listen = listen;
    }
    if let Some(ui_dir) = args.ui_dir {
        place.ui_dir = ui_dir;
    }
    for entry in args.peer_tokens.iter().flatten() {
        let (peer, token) =
            entry.split_once('=').with_context(|| format!("peer token {entry:?} must be PEER=TOKEN"))?;
        place.federation.peer_tokens.insert(peer.to_owned(), Secret::new(token.to_owned()));
    }
    let server: openguild_domain::ServerName =
        place.server_name.parse().with_context(|| format!("OPENGUILD_SERVER_NAME {:?}", place.server_name))?;
    std::fs::create_dir_all(&place.data_dir)
        .with_context(|| format!("creating the data directory {}", place.data_dir.display()))?;
    let key = keys::load_or_create(&place.data_dir, server)?;
    let store = openguild_store::open(&place.store_url(), Options::default()).await?;
    let db = ReadDb::open(&place.read_db_url()).await.context("opening the read model database")?;
    let projections =
        Arc::new(Projections::start(db, store.clone(), openguild_projections::all(&place.server_name)).await?);
    let peer_tokens: HashMap<String, String> =
        place.federation.peer_tokens.iter().map(|(peer, token)| (token.expose().to_owned(), peer.clone())).collect();
    let listener =
        tokio::net::TcpListener::bind(place.listen).await.with_context(|| format!("listening on {}", place.listen))?;
    if place.api.media.dir.is_empty() {
        place.api.media.dir = place.data_dir.join("media").display().to_string();
    }
    place.api.voice = place.voice.clone();
    if place.api.public_url.is_none() {
        place.api.public_url = Some(format!("http://{}", listener.local_addr()?));
    }
    let peers = openguild_api::FederationSetup {
        tokens: peer_tokens,
        hubs: place.peers()?,
        retired_keys: keys::old_keys(&place.data_dir)?,
        key_since: keys::current_since(&place.data_dir)?,
        retry_max: std::time::Duration::from_secs(place.federation.retry_max_seconds.max(1)),
    };
    let api = openguild_api::Api::start(store.clone(), projections.clone(), key, place.api.clone(), peers)
        .await
        .map_err(|e| anyhow::anyhow!("starting the API: {}", e.message))?;
    let app = openguild_api::router_with(api.clone(), place.ui_dir.clone(), openguild_matrix::router());
    let url = format!("http://{}", listener.local_addr()?);
    if !place.ui_dir.join("index.html").is_file() {
        tracing::warn!(
            ui_dir = %place.ui_dir.display(),
            "the web client is not built (no index.html); `make ui` builds it, and `/` says so until then"
        );
    }
    tracing::info!(%url, server = %api.server, data_dir = %place.data_dir.display(), "openguild ready on {url}");
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = (api.clone(), stop.clone());
    tokio::spawn(async move {
        shutdown().await;
        stopper.0.stop();
        stopper.1.cancel();
    });
    openguild_api::listen::serve(listener, app, api.connection_limits(), stop, std::time::Duration::from_secs(10))
        .await
        .context("serving HTTP")?;
    api.sockets_closed(std::time::Duration::from_secs(5)).await;
    tracing::info!("shutting down: finishing in-flight appends");
    drop(api);
    if let Ok(p) = Arc::try_unwrap(projections) {
        p.stop().await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
