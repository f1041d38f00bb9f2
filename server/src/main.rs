//! The `openguild` binary: configuration, wiring and the command line.
//!
//! With nothing set, `openguild` (or `openguild serve`) keeps everything under `./data` and
//! listens on 127.0.0.1:8080.

mod backup;
mod cli;
#[cfg(feature = "loadtest")]
mod gqlws;
mod keys;
#[cfg(feature = "loadtest")]
mod loadtest;
mod serve;
mod settings;
mod telemetry;

use settings::Settings;

/// mimalloc instead of glibc's allocator: events are decoded on one thread and dropped on
/// another, and glibc's allocator spends over a tenth of a projection rebuild's CPU on that
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "openguild", version, about = "A self-hostable, event-sourced community backend")]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Settings given on the command line; they override the configuration file and the
/// `OPENGUILD_*` variables (docs/CONFIG.md). The file's own path, the peers and Redis also
/// have short variables of their own (`OPENGUILD_CONFIG`, `OPENGUILD_FEDERATION_PEERS`,
/// `OPENGUILD_REDIS_URL`).
#[derive(clap::Args, Debug, Clone)]
pub struct Overrides {
    /// The configuration file (default: `./openguild.toml` if it exists).
    #[arg(long, global = true, env = "OPENGUILD_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded event store, read models and server key live.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The event store: a SQLite path or `postgres://…` (default: `<data dir>/events.db`).
    #[arg(long, global = true)]
    store_url: Option<String>,
    /// The read model database: a SQLite path or `postgres://…` (default: `<data dir>/read.db`).
    #[arg(long, global = true)]
    read_db_url: Option<String>,
    /// This hub's server name, as in user ids (`@handle:SERVER`).
    #[arg(long, global = true)]
    server_name: Option<String>,
    /// Allowlisted peer hubs, comma-separated, for the federation outbox.
    #[arg(long, global = true, env = "OPENGUILD_FEDERATION_PEERS", value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Redis, for typing notices and rate limits shared by every node (`redis://…`).
    #[arg(long, global = true, env = "OPENGUILD_REDIS_URL")]
    redis_url: Option<String>,
}

impl Overrides {
    /// The configuration file, overridden by the environment and flags.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings::load(self.config.as_deref())?;
        if let Some(v) = &self.data_dir {
            s.data_dir = v.clone();
        }
        if let Some(v) = &self.store_url {
            s.store_url = v.clone();
        }
        if let Some(v) = &self.read_db_url {
            s.read_db_url = v.clone();
        }
        if let Some(v) = &self.server_name {
            s.server_name = v.clone();
        }
        if let Some(v) = &self.peers {
            s.federation.peers = v.clone();
        }
        if let Some(v) = &self.redis_url {
            s.api.redis_url = Some(v.clone());
        }
        Ok(s)
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
    /// Hub operators.
    #[command(subcommand)]
    Operators(cli::OperatorsCommand),
    /// Service tokens for host applications.
    #[command(subcommand)]
    Tokens(cli::TokensCommand),
    /// The hub's signing keys.
    #[command(subcommand)]
    Keys(cli::KeysCommand),
    /// Peer hubs: allow and deny them, and see how sending to each is going.
    #[command(subcommand)]
    Federation(cli::FederationCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Back up the event log and the hub's key to a file, beside a running server.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty store (or continue one with an incremental backup),
    /// then rebuild the read models.
    Restore(backup::RestoreArgs),
    /// Load-test a running server: websocket subscribers, paced writers, delivery latency.
    #[cfg(feature = "loadtest")]
    Loadtest(loadtest::Args),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print every setting with its default, as TOML.
    Defaults,
    /// Print the environment variable of every setting, with its default.
    Env,
    /// Print the settings in force (file, environment, flags), secrets hidden.
    Show,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _telemetry = match telemetry::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Worker threads get 8 MiB stacks, not tokio's 2 MiB. Every GraphQL resolver's future
    // is as large as the largest, and an unoptimised build moves such futures on the stack:
    // at 2 MiB a post proposed to another hub overflowed. Only touched pages take memory.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 * 1024 * 1024).build();
    let result = runtime.context("starting the async runtime").and_then(|rt| {
        rt.block_on(async {
            // The load test is a client of any server: it needs no settings of this one.
            #[cfg(feature = "loadtest")]
            if let Some(Command::Loadtest(args)) = cli.command {
                return loadtest::run(args).await;
            }
            let settings = cli.overrides.settings()?;
            match cli.command {
                None => serve::serve(settings, serve::ServeArgs::default()).await,
                Some(Command::Serve(args)) => serve::serve(settings, args).await,
                Some(Command::Events(cmd)) => cli::events(settings, cmd).await,
                Some(Command::Projections(cmd)) => cli::projections(settings, cmd).await,
                Some(Command::Audit(cmd)) => cli::audit(settings, cmd).await,
                Some(Command::Operators(cmd)) => cli::operators(settings, cmd).await,
                Some(Command::Tokens(cmd)) => cli::tokens(settings, cmd).await,
                Some(Command::Federation(cmd)) => cli::federation(settings, cmd).await,
                Some(Command::Keys(cmd)) => cli::keys_command(settings, cmd).await,
                Some(Command::Backup(args)) => backup::backup(settings, args).await,
                Some(Command::Restore(args)) => backup::restore(settings, args).await,
                Some(Command::Config(ConfigCommand::Defaults)) => {
                    print!("{}", Settings::defaults_toml()?);
                    Ok(())
                }
                Some(Command::Config(ConfigCommand::Env)) => {
                    println!("{}", Settings::env_names()?.join("\n"));
                    Ok(())
                }
                Some(Command::Config(ConfigCommand::Show)) => {
                    println!("{settings:#?}");
                    Ok(())
                }
                #[cfg(feature = "loadtest")]
                Some(Command::Loadtest(_)) => unreachable!("dispatched before the settings are loaded"),
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
