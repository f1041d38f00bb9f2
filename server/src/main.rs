//! The `openguild` binary: configuration, wiring and the command line.
//!
//! With nothing set, `openguild` (or `openguild serve`) keeps everything under `./data` and
//! listens on 127.0.0.1:8080.

mod keys;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "openguild", version, about = "A self-hostable, event-sourced community backend")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
}

#[derive(clap::Parser, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OPENGUILD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the embedded event store, read models and server key live.
    #[arg(long, env = "OPENGUILD_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// This hub's server name, as it appears in user ids (`@handle:SERVER`).
    #[arg(long, env = "OPENGUILD_SERVER_NAME", default_value = "localhost")]
    server_name: String,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("OPENGUILD_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        None => runtime.block_on(serve(ServeArgs::parse_from(["openguild"]))),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let server: openguild_domain::ServerName =
        args.server_name.parse().with_context(|| format!("OPENGUILD_SERVER_NAME {:?}", args.server_name))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let key = keys::load_or_create(&args.data_dir, server)?;
    tracing::info!(server = %key.server(), key = %key.key_id(), data_dir = %args.data_dir.display(), "openguild ready");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    Ok(())
}
