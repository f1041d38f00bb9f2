//! The `openguild` binary: configuration, wiring and the command line.
//!
//! With nothing set, `openguild` (or `openguild serve`) keeps everything under `./data` and
//! listens on 127.0.0.1:8080.

mod cli;
mod keys;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "openguild", version, about = "A self-hostable, event-sourced community backend")]
struct Cli {
    #[command(flatten)]
    place: Place,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the data lives; shared by every command.
#[derive(clap::Args, Debug, Clone)]
pub struct Place {
    /// Where the embedded event store, read models and server key live.
    #[arg(long, global = true, env = "OPENGUILD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The event store: a SQLite path or `postgres://…` (default: `<data dir>/events.db`).
    #[arg(long, global = true, env = "OPENGUILD_STORE_URL")]
    pub store_url: Option<String>,
    /// The read model database: a SQLite path or `postgres://…` (default: `<data dir>/read.db`).
    #[arg(long, global = true, env = "OPENGUILD_READ_DB_URL")]
    pub read_db_url: Option<String>,
    /// This hub's server name, as in user ids (`@handle:SERVER`).
    #[arg(long, global = true, env = "OPENGUILD_SERVER_NAME", default_value = "localhost")]
    pub server_name: String,
    /// Allowlisted peer hubs, comma-separated, for the federation outbox.
    #[arg(long, global = true, env = "OPENGUILD_FEDERATION_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
}

impl Place {
    pub fn store_url(&self) -> String {
        self.store_url.clone().unwrap_or_else(|| self.data_dir.join("events.db").display().to_string())
    }

    pub fn read_db_url(&self) -> String {
        self.read_db_url.clone().unwrap_or_else(|| self.data_dir.join("read.db").display().to_string())
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve(serve::ServeArgs),
    /// Inspect, dump and verify events.
    #[command(subcommand)]
    Events(cli::EventsCommand),
    /// Projection status and rebuilds.
    #[command(subcommand)]
    Projections(cli::ProjectionsCommand),
    /// Moderation history.
    #[command(subcommand)]
    Audit(cli::AuditCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("OPENGUILD_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new().context("starting the async runtime").and_then(|rt| {
        rt.block_on(async {
            match cli.command {
                None => serve::serve(cli.place, serve::ServeArgs::default()).await,
                Some(Command::Serve(args)) => serve::serve(cli.place, args).await,
                Some(Command::Events(cmd)) => cli::events(cli.place, cmd).await,
                Some(Command::Projections(cmd)) => cli::projections(cli.place, cmd).await,
                Some(Command::Audit(cmd)) => cli::audit(cli.place, cmd).await,
            }
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
