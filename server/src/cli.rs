//! The operator's commands: `events tail|show|verify`, `projections status|rebuild`,
//! `audit replay`, `federation status`, which open the event store read-only, so they work
//! beside a running server; and the console's acts (`operators add`, `tokens
//! create-service`, `federation allow|deny`), which append to the hub stream as
//! `@_console`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use openguild_domain::hub::{HubActor, HubCommand, TokenScope};
use openguild_domain::{EventId, GuildId, ServerName, StreamId, Timestamp, UserId};
use openguild_projections::replay::{Until, replay};
use openguild_projections::{ReadDb, RebuildProgress};
use openguild_store::{Direction, EventStore, Options, StoredEvent};
use serde_json::json;

use crate::Settings as Place;
use crate::keys;

#[derive(clap::Subcommand, Debug)]
pub enum EventsCommand {
    /// Print events as JSON lines, oldest first.
    Tail {
        /// Only this stream (e.g. `guild:<id>`, `channel:<id>`).
        #[arg(long)]
        stream: Option<String>,
        /// How many of the newest events to start with.
        #[arg(long, short = 'n', default_value_t = 20)]
        lines: usize,
        /// Keep printing new events as they are appended.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print one event as JSON.
    Show { id: String },
    /// Re-hash and re-check the signature of every event and the prev chain of every
    /// stream; exits non-zero naming the first broken event.
    Verify {
        #[arg(long)]
        stream: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Each projection's position, lag behind the store head, and state.
    Status,
    /// Rebuild from position 0 beside the live tables, then swap them in.
    Rebuild {
        /// The projection to rebuild.
        name: Option<String>,
        /// Rebuild every projection.
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// A guild's state and moderation history as of a moment, from the events alone.
    Replay {
        #[arg(long)]
        guild: String,
        /// A time (ms since the epoch, or RFC 3339 like 2026-11-21T10:00:00Z) or a position
        /// (`position:N`). Default: now.
        #[arg(long)]
        until: Option<String>,
    },
}

async fn open_store(place: &Place) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(openguild_store::open(&place.store_url(), Options { read_only: true, ..Options::default() }).await?)
}

pub async fn events(place: Place, cmd: EventsCommand) -> anyhow::Result<()> {
    let store = open_store(&place).await?;
    match cmd {
        EventsCommand::Show { id } => {
            let id: EventId = id.parse()?;
            match store.get(&id).await? {
                Some(e) => println!("{}", serde_json::to_string_pretty(&to_json(&e))?),
                None => bail!("no event {id} in {}", place.store_url()),
            }
        }
        EventsCommand::Tail { stream, lines, follow } => {
            let stream: Option<StreamId> = stream.map(|s| s.parse()).transpose()?;
            let start = match &stream {
                Some(s) => {
                    let newest = store.read_stream(s, u64::MAX, lines, Direction::Backward).await?;
                    newest.last().map_or(0, |e| e.position.saturating_sub(1))
                }
                None => store.head_position().await?.saturating_sub(lines as u64),
            };
            let mut feed = openguild_store::subscribe_all(store.clone(), start);
            loop {
                let next = if follow {
                    feed.next().await
                } else {
                    match tokio::time::timeout(Duration::from_millis(300), feed.next()).await {
                        Ok(n) => n,
                        Err(_) => break,
                    }
                };
                let Some(e) = next else { break };
                let e = e?;
                if stream.as_ref().is_none_or(|s| *s == e.event.core.stream) {
                    println!("{}", serde_json::to_string(&to_json(&e))?);
                }
            }
        }
        EventsCommand::Verify { stream } => {
            let stream: Option<StreamId> = stream.map(|s| s.parse()).transpose()?;
            let server = place.server_name.parse()?;
            let key = keys::load_or_create(&place.data_dir, server)?;
            let mut keys = keys::own_ring(&place.data_dir, &key)?;
            // Peers' events verify with the key documents this hub fetched from them.
            if let Ok(db) = ReadDb::open(&place.read_db_url()).await {
                let documents = openguild_projections::queries::peer_keys(&db).await.unwrap_or_default();
                add_peer_keys(&mut keys, &documents)?;
            }
            let head = store.head_position().await?;
            let bar = bar(head, "verifying");
            let result =
                openguild_store::verify::verify_all(&*store, &keys, stream.as_ref(), |n| bar.set_position(n)).await;
            bar.finish_and_clear();
            match result {
                Ok(v) => println!(
                    "ok: {} events in {} streams verify (hashes, signatures, prev chains)",
                    v.events, v.streams
                ),
                Err(broken) => bail!("verification failed: {broken}"),
            }
        }
    }
    store.close().await;
    Ok(())
}

/// An event as people and scripts read it.
fn to_json(e: &StoredEvent) -> serde_json::Value {
    let core = &e.event.core;
    json!({
        "position": e.position,
        "id": e.event.id,
        "stream": core.stream,
        "seq": core.seq,
        "prev": core.prev,
        "auth": core.auth,
        "origin": core.origin,
        "sender": core.sender,
        "ts": core.ts.as_millis(),
        "kind": core.redacted.kind(),
        "body": e.event.body,
        "erased": e.event.body.is_none(),
        "redacted": core.redacted,
        "signatures": e.event.signatures,
    })
}

pub async fn projections(place: Place, cmd: ProjectionsCommand) -> anyhow::Result<()> {
    let store = open_store(&place).await?;
    let db = ReadDb::open(&place.read_db_url()).await.context("opening the read model database")?;
    match cmd {
        ProjectionsCommand::Status => {
            let head = store.head_position().await?;
            let rows = openguild_projections::recorded_status(&db).await?;
            println!("{:<20} {:>10} {:>8}  state", "projection", "position", "lag");
            for (name, position, state, error) in rows {
                let lag = head.saturating_sub(position);
                let state = match (state.as_str(), error) {
                    ("stopped", Some(why)) => format!("stopped with error: {why}"),
                    _ if lag == 0 => "caught-up".to_owned(),
                    _ => "running".to_owned(),
                };
                println!("{name:<20} {position:>10} {lag:>8}  {state}");
            }
            println!("store head: {head}");
        }
        ProjectionsCommand::Rebuild { name, all } => {
            let list = openguild_projections::all(&place.server_name);
            let chosen: Vec<_> = match (name, all) {
                (_, true) => list,
                (Some(n), false) => {
                    let known: Vec<&str> = list.iter().map(|p| p.name()).collect();
                    let found: Vec<_> = list.iter().filter(|p| p.name() == n).cloned().collect();
                    if found.is_empty() {
                        bail!("no projection named {n:?}; known: {}", known.join(", "));
                    }
                    found
                }
                (None, false) => bail!("name a projection to rebuild, or pass --all"),
            };
            let names: Vec<&str> = chosen.iter().map(|p| p.name()).collect();
            let position = rebuild(&db, &store, &chosen).await?;
            for name in names {
                println!("{name}: rebuilt to position {position} and swapped in");
            }
        }
    }
    store.close().await;
    Ok(())
}

/// Rebuilds `chosen` to the store's head beside the live tables, swaps them in, and shows
/// progress: the position reached.
pub(crate) async fn rebuild(
    db: &ReadDb,
    store: &Arc<dyn EventStore>,
    chosen: &[Arc<dyn openguild_projections::Projection>],
) -> anyhow::Result<u64> {
    let bar = bar(store.head_position().await?, "rebuilding");
    let position =
        openguild_projections::rebuild(db, store.clone(), chosen, |RebuildProgress { position, head, elapsed }| {
            bar.set_length(head);
            bar.set_position(position);
            let rate = position as f64 / elapsed.as_secs_f64().max(0.001);
            bar.set_message(format!("{rate:.0} events/s"));
        })
        .await?;
    bar.finish_and_clear();
    Ok(position)
}

/// Adds the keys of peers' key documents (server, JSON) as this hub kept them, each checked
/// against its own signature.
pub(crate) fn add_peer_keys(
    keys: &mut openguild_domain::KeyRing,
    documents: &[(String, String)],
) -> anyhow::Result<()> {
    for (server, document) in documents {
        let doc: openguild_federation::keys::KeyDocument = serde_json::from_str(document)
            .with_context(|| format!("the kept key document of {server} is not readable"))?;
        let published = doc
            .verify(&server.parse()?)
            .with_context(|| format!("the kept key document of {server} does not verify"))?;
        for (key_id, k) in published {
            keys.insert(doc.server.clone(), key_id, k);
        }
    }
    Ok(())
}

pub(crate) fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>18} [{bar:40}] {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

pub async fn audit(place: Place, cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Replay { guild, until } = cmd;
    let store = open_store(&place).await?;
    let guild: GuildId = guild.parse()?;
    let until = match until.as_deref() {
        None => Until::Now,
        Some(u) => parse_until(u)?,
    };
    match replay(&*store, guild, until).await? {
        Some(state) => println!("{}", serde_json::to_string_pretty(&state)?),
        None => bail!("guild {guild} has no events by then"),
    }
    store.close().await;
    Ok(())
}

fn parse_until(text: &str) -> anyhow::Result<Until> {
    if let Some(p) = text.strip_prefix("position:") {
        return Ok(Until::Position(p.parse().context("position:N needs a number")?));
    }
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Until::Time(Timestamp::from_millis(ms)?));
    }
    let ms = parse_rfc3339(text).with_context(|| {
        format!("--until {text:?}: give ms since the epoch, an RFC 3339 time (2026-11-21T10:00:00Z) or position:N")
    })?;
    Ok(Until::Time(Timestamp::from_millis(ms)?))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` to ms since the epoch (UTC only, which is what logs print).
fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from((((days * 24 + h) * 60 + min) * 60 + s) * 1000 + ms).ok()
}

#[derive(clap::Subcommand, Debug)]
pub enum OperatorsCommand {
    /// Makes a user a hub operator (hub-wide powers). Writes to the event store: on the
    /// embedded SQLite default, stop the server first (or, as an operator, use the
    /// `grantOperator` mutation).
    Add { user: String },
    /// Lists the hub's operators.
    List,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokensCommand {
    /// Creates a service token for a host application and prints it once.
    CreateService {
        #[arg(long)]
        name: String,
        /// `hub`, or guild ids; repeat or separate with commas.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
    },
}

/// The store opened for writing, and the hub's signing key, for console acts.
async fn console(place: &Place) -> anyhow::Result<(Arc<dyn EventStore>, openguild_api::commands::Commands)> {
    let server: ServerName =
        place.server_name.parse().with_context(|| format!("OPENGUILD_SERVER_NAME {:?}", place.server_name))?;
    let key = crate::keys::load_or_create(&place.data_dir, server)?;
    let store = openguild_store::open(&place.store_url(), Options::default()).await.map_err(|e| {
        anyhow::anyhow!("{e}\n(is the server running on this data directory? stop it first, or act through the API as a hub operator)")
    })?;
    Ok((store.clone(), openguild_api::commands::Commands::new(store, key)))
}

fn console_user(place: &Place) -> anyhow::Result<UserId> {
    let server: ServerName = place.server_name.parse()?;
    Ok(UserId::new("_console", &server)?)
}

pub async fn operators(place: Place, cmd: OperatorsCommand) -> anyhow::Result<()> {
    match cmd {
        OperatorsCommand::Add { user } => {
            let user: UserId = user.parse()?;
            let (store, commands) = console(&place).await?;
            let grant = HubCommand::GrantOperator { user: user.clone() };
            let done = commands.hub(&console_user(&place)?, &HubActor::Console, &grant, now()).await;
            store.close().await;
            done?;
            println!("{user} is now a hub operator");
        }
        OperatorsCommand::List => {
            let store = open_store(&place).await?;
            let commands = openguild_api::commands::Commands::new(
                store.clone(),
                crate::keys::load_or_create(&place.data_dir, place.server_name.parse()?)?,
            );
            let hub = commands.hub_cell().await?;
            for user in &hub.lock().await.operators {
                println!("{user}");
            }
            store.close().await;
        }
    }
    Ok(())
}

pub async fn tokens(place: Place, cmd: TokensCommand) -> anyhow::Result<()> {
    let TokensCommand::CreateService { name, scope } = cmd;
    let mut scopes = std::collections::BTreeSet::new();
    for s in &scope {
        if s == "hub" {
            scopes.insert(TokenScope::Hub);
        } else {
            let guild: GuildId = s.parse().with_context(|| format!("scope {s:?}: expected `hub` or a guild id"))?;
            scopes.insert(TokenScope::Guild(guild));
        }
    }
    let (store, commands) = console(&place).await?;
    let (token, token_hash) = openguild_api::auth::new_service_token();
    let create = HubCommand::CreateServiceToken { token_hash, name: name.clone(), scopes };
    let done = commands.hub(&console_user(&place)?, &HubActor::Console, &create, now()).await;
    store.close().await;
    done?;
    eprintln!(
        "service token {name:?} (id {}) created; it is shown once, here:",
        openguild_api::auth::service_token_id(&token_hash)
    );
    println!("{token}");
    Ok(())
}

fn now() -> openguild_domain::Timestamp {
    openguild_api::gql::now()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_times_print_as_they_parse() {
        for ms in [0, 951_782_400_000, 1_795_255_200_000, 4_102_444_799_000] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339(ms)), Some(ms), "{}", super::rfc3339(ms));
        }
        assert_eq!(super::rfc3339(1_795_255_200_000), "2026-11-21T10:00:00Z");
    }

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(super::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(super::parse_rfc3339("2026-11-21T10:00:00.5Z"), Some(1_795_255_200_500));
        assert_eq!(super::parse_rfc3339("2026-11-21 10:00"), None);
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum FederationCommand {
    /// Each peer: allowed or denied and what decided it (the configuration or a hub event),
    /// where it is reached, events waiting for it, its last answer, its last error and the
    /// pause before the next try.
    Status,
    /// Federates with the hub NAME, reached at URL (https://…; http:// only to loopback),
    /// from now on: a signed `hub.peer_allowed` event on the hub stream, which overrides the
    /// configuration. A running server takes it up at once. Writes to the event store: on
    /// the embedded SQLite default, stop the server first (or, as an operator, use the
    /// `allowPeer` mutation).
    Allow { name: String, url: String },
    /// Stops federating with the hub NAME, even if the configuration lists it: a signed
    /// `hub.peer_denied` event on the hub stream. A running server refuses the peer and
    /// stops sending to it at once. On SQLite, stop the server first (or use `denyPeer`).
    Deny { name: String },
}

pub async fn federation(place: Place, cmd: FederationCommand) -> anyhow::Result<()> {
    let peer_name = |name: &str| -> anyhow::Result<ServerName> {
        name.trim().parse().with_context(|| format!("the peer {name:?} is not a server name (like hub-b.example)"))
    };
    match cmd {
        FederationCommand::Allow { name, url } => {
            let name = peer_name(&name)?;
            let (store, commands) = console(&place).await?;
            let allow = HubCommand::AllowPeer { name: name.clone(), url };
            let done = commands.hub(&console_user(&place)?, &HubActor::Console, &allow, now()).await;
            store.close().await;
            let url = match done?.events.first().map(|e| e.content()) {
                Some(openguild_domain::EventBody::PeerAllowed { url, .. }) => url.clone(),
                _ => bail!("the hub stream did not record the allow"),
            };
            println!("{name} is allowed at {url} (hub.peer_allowed, on the hub stream)");
            Ok(())
        }
        FederationCommand::Deny { name } => {
            let name = peer_name(&name)?;
            let (store, commands) = console(&place).await?;
            let deny = HubCommand::DenyPeer { name: name.clone() };
            let done = commands.hub(&console_user(&place)?, &HubActor::Console, &deny, now()).await;
            store.close().await;
            done?;
            println!("{name} is denied (hub.peer_denied, on the hub stream)");
            Ok(())
        }
        FederationCommand::Status => {
            let db = ReadDb::open(&place.read_db_url()).await.context("opening the read model database")?;
            let store = open_store(&place).await?;
            let us: ServerName = place.server_name.parse()?;
            let commands = openguild_api::commands::Commands::new(
                store.clone(),
                crate::keys::load_or_create(&place.data_dir, us.clone())?,
            );
            let config = place.peers()?;
            let listed = {
                let hub = commands.hub_cell().await?;
                let hub = hub.lock().await;
                openguild_federation::peers::Allowlist { us: &us, config: &config, hub: &hub.peers }.list()
            };
            store.close().await;
            let statuses = openguild_projections::queries::peer_statuses(&db).await?;
            let time = |ms: Option<u64>| ms.map_or_else(|| "never".to_owned(), rfc3339);
            println!(
                "{:<24} {:<8} {:<10} {:>8}  {:<24} {:<24} {:>9}  url / last error",
                "peer", "state", "from", "queued", "last success", "last error at", "backoff"
            );
            for entry in listed {
                let name = &entry.peer.name;
                let sent =
                    openguild_projections::queries::worker_position(&db, &openguild_api::sender::checkpoint(name))
                        .await?;
                let queued = openguild_projections::queries::outbox_depth(&db, name.as_str(), sent).await?;
                let status = statuses.iter().find(|s| s.peer == name.as_str()).cloned().unwrap_or_default();
                let note = match (&status.last_error, &entry.peer.url) {
                    (Some(error), _) if entry.allowed => error.clone(),
                    (_, Some(url)) => url.clone(),
                    (_, None) => "(pulls; nothing is pushed)".to_owned(),
                };
                println!(
                    "{:<24} {:<8} {:<10} {:>8}  {:<24} {:<24} {:>7}ms  {}",
                    name.as_str(),
                    if entry.allowed { "allowed" } else { "denied" },
                    match entry.source {
                        openguild_federation::peers::Source::Config => "config",
                        openguild_federation::peers::Source::HubEvent => "hub-event",
                    },
                    queued,
                    time(status.last_success),
                    time(status.last_error_at),
                    status.backoff_ms,
                    note,
                );
            }
            Ok(())
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, to the second.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Retires the hub's signing key and makes a new one. The old key stays published with
    /// the time it stopped, so everything it signed still verifies; restart the server to
    /// sign with the new key.
    Rotate,
}

pub async fn keys_command(place: Place, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate => {
            let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            let id = crate::keys::rotate(
                &place.data_dir,
                place.server_name.parse()?,
                openguild_domain::Timestamp::from_millis(ms)?,
            )?;
            println!("the hub now signs with {id}; restart `openguild serve` to use it (the old key stays published)");
            Ok(())
        }
    }
}
